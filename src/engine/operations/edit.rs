//! `wfe edit`: a person's new value of a phase's artifact, checked against
//! the run's frozen schema.

use std::sync::Arc;

use serde_json::Value;

use super::{base_message, commit_on, reopen_failed_run, require_phase, require_state};
use crate::artifact::{Schema, Violation, parse_json_document};
use crate::attempt::AttemptError;
use crate::engine::{
    CheckpointEvent, Dag, EngineError, PhaseStatus, RunSnapshot, Transition, layout, to_file_bytes,
};
use crate::store::{Change, CheckpointId, RunId, RunStore, StoreError};
use crate::time::Clock;

/// The frozen schema a phase's artifact must match, compiled.
pub fn artifact_schema(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
) -> Result<Arc<Schema>, EngineError> {
    let spec = require_phase(snap, phase)?;
    let name = spec
        .outputs
        .get(artifact)
        .ok_or_else(|| EngineError::NoSuchArtifact {
            run: snap.record.id.clone(),
            phase: phase.to_string(),
            artifact: artifact.to_string(),
            known: spec.outputs.keys().cloned().collect(),
        })?;
    snap.schemas(store)?
        .remove(name)
        .ok_or_else(|| EngineError::Corrupt {
            run: snap.record.id.clone(),
            checkpoint: snap.checkpoint.0.clone(),
            path: layout::RUN.to_string(),
            message: format!("schema `{name}` is not frozen in the run"),
        })
}

/// What a person would start editing: the current artifact, else the
/// output the last attempt wrote and validation rejected.
pub fn editable_artifact(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
) -> Result<Option<Vec<u8>>, EngineError> {
    let state = require_state(snap, phase)?;
    if let Some(bytes) = store.read(&snap.checkpoint, &layout::artifact(phase, artifact))? {
        return Ok(Some(bytes));
    }
    Ok(store.read(
        &snap.checkpoint,
        &layout::rejected(phase, state.attempt, artifact),
    )?)
}

/// The result of checking an artifact a person wrote.
#[derive(Debug)]
pub enum Checked {
    /// It matches its schema.
    Valid(Value),
    /// It is JSON but fails its schema.
    Invalid(Value, Vec<Violation>),
}

/// Parses and validates an edited artifact against the run's frozen schema.
pub fn check_artifact(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
    what: &str,
    bytes: &[u8],
) -> Result<Result<Checked, crate::artifact::ArtifactError>, EngineError> {
    let schema = artifact_schema(store, snap, phase, artifact)?;
    Ok(parse_json_document(what, bytes).map(|value| {
        let violations = schema.validate(&value);
        if violations.is_empty() {
            Checked::Valid(value)
        } else {
            Checked::Invalid(value, violations)
        }
    }))
}

/// Commits a new value of a phase's artifact; `forced` when it fails its
/// schema. A phase that failed on invalid outputs completes once all its
/// outputs are present.
pub fn set_artifact(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
    value: &Value,
    forced: bool,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    let spec = require_phase(snap, phase)?;
    let mut state = require_state(snap, phase)?.clone();
    let mut changes = vec![Change::write(
        layout::artifact(phase, artifact),
        to_file_bytes(value),
    )];
    if !state.artifacts.iter().any(|a| a == artifact) {
        state.artifacts.push(artifact.to_string());
        state.artifacts.sort();
    }
    state.forced.retain(|a| a != artifact);
    if forced {
        state.forced.push(artifact.to_string());
    }
    let mut message = base_message(
        snap,
        &format!("{phase}/{artifact} edited by hand"),
        Some(phase),
        CheckpointEvent::ArtifactEdited,
    );
    let all_present = spec
        .outputs
        .keys()
        .all(|name| state.artifacts.contains(name));
    let now = clock.stamp();
    if matches!(state.error, Some(AttemptError::InvalidOutputs { .. }))
        && state.status != PhaseStatus::Completed
        && all_present
        && state.apply(Transition::Complete, &now).is_ok()
    {
        message = reopen_failed_run(snap, &mut changes, message, phase, &now);
    }
    changes.push(Change::write(layout::state(phase), to_file_bytes(&state)));
    message.forced = forced;
    let run = RunId::parse(&snap.record.id).ok_or_else(|| StoreError::NoSuchRun {
        run: snap.record.id.clone(),
    })?;
    Ok(commit_on(store, &run, snap, &changes, &message, clock)?)
}

/// Phases downstream of `phase` that already ran with its old artifacts.
pub fn stale_dependants(snap: &RunSnapshot, phase: &str) -> Vec<String> {
    let dag = Dag::new(&snap.template.phases);
    dag.index(phase)
        .map(|i| {
            (0..dag.len())
                .filter(|&d| {
                    dag.ancestors(d).contains(&i) && snap.phases[d].status == PhaseStatus::Completed
                })
                .map(|d| dag.id(d).to_string())
                .collect()
        })
        .unwrap_or_default()
}
