//! `wfe approve`: a phase waiting for a person completes, optionally with
//! the artifact they attach. The live runner and the offline path both
//! approve through [`approve_phase`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{Done, require_phase, require_state};
use crate::artifact::Schema;
use crate::engine::{
    EngineError, PhaseState, PhaseStatus, Refusal, RunRecord, RunSnapshot, RunStatus, StopReason,
    Transition, layout, to_file_bytes,
};
use crate::store::{Change, RunStore};
use crate::template::Phase;

/// Approves `phase` (in `state`) at `now`: it must be waiting, and an
/// attached artifact must match the phase's one declared output. The
/// phase completes with the artifact's name recorded; returns the
/// artifact to write as (name, value), or why the approval does not apply.
pub(crate) fn approve_phase(
    phase: &Phase,
    state: &mut PhaseState,
    artifact: Option<&Value>,
    schemas: &BTreeMap<String, Arc<Schema>>,
    now: &str,
) -> Result<Option<(String, Value)>, String> {
    let attach = check_approval(phase, state, artifact, schemas)?;
    // Checked above: the phase is waiting, which completing allows.
    state
        .apply(Transition::Complete, now)
        .map_err(|e| e.to_string())?;
    if let Some((name, _)) = &attach
        && !state.artifacts.contains(name)
    {
        state.artifacts.push(name.clone());
        state.artifacts.sort();
    }
    Ok(attach)
}

/// Approves `phase` of the run in `snap` when no runner holds it; a run
/// that waited for nothing else becomes paused, so resuming goes on; one
/// that still waits for others records which.
pub(super) fn offline(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    record: &mut RunRecord,
    changes: &mut Vec<Change>,
    phase: &str,
    artifact: Option<&Value>,
    now: &str,
) -> Result<Result<Done, Refusal>, EngineError> {
    let spec = require_phase(snap, phase)?;
    let mut state = require_state(snap, phase)?.clone();
    let schemas = snap.schemas(store)?;
    let attach = match approve_phase(spec, &mut state, artifact, &schemas, now) {
        Ok(attach) => attach,
        Err(reason) => return Ok(Err(Refusal::Approval(reason))),
    };
    if let Some((name, value)) = attach {
        changes.push(Change::write(
            layout::artifact(phase, &name),
            to_file_bytes(&value),
        ));
    }
    changes.push(Change::write(layout::state(phase), to_file_bytes(&state)));
    let others: Vec<String> = snap
        .phases
        .iter()
        .filter(|p| p.id != *phase && p.status == PhaseStatus::Waiting)
        .map(|p| p.id.clone())
        .collect();
    if record.status == RunStatus::Waiting && others.is_empty() {
        let reason = StopReason::Approved {
            phase: phase.to_string(),
        };
        record.set_status(RunStatus::Paused, Some(reason), now);
    } else if record.status == RunStatus::Waiting
        && matches!(record.reason, Some(StopReason::WaitingForApproval { .. }))
    {
        // Still waiting, for the others only.
        record.reason = Some(StopReason::WaitingForApproval { phases: others });
    }
    Ok(Ok(Done {
        summary: format!("{phase} approved"),
        phase: Some(phase.to_string()),
        outcome: "approved".to_string(),
    }))
}

/// Checks an approval of `phase` (in `state`): it must be waiting, and an
/// attached artifact must match the phase's one declared output. Returns
/// the artifact to record as (name, value).
fn check_approval(
    phase: &Phase,
    state: &PhaseState,
    artifact: Option<&Value>,
    schemas: &BTreeMap<String, Arc<Schema>>,
) -> Result<Option<(String, Value)>, String> {
    if state.status != PhaseStatus::Waiting {
        return Err(format!(
            "phase `{}` is {}, not waiting for an approval",
            phase.id,
            state.status.as_str()
        ));
    }
    let Some(value) = artifact else {
        return Ok(None);
    };
    let mut outputs = phase.outputs.iter();
    let (name, schema_name) = match (outputs.next(), outputs.next()) {
        (Some(only), None) => only,
        (None, _) => {
            return Err(format!(
                "phase `{}` declares no output to attach an artifact to",
                phase.id
            ));
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "phase `{}` declares several outputs; an approval attaches one",
                phase.id
            ));
        }
    };
    if let Some(schema) = schemas.get(schema_name) {
        let violations = schema.validate(value);
        if !violations.is_empty() {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Err(format!(
                "the artifact does not match schema `{schema_name}`:\n  {}",
                list.join("\n  ")
            ));
        }
    }
    Ok(Some((name.clone(), value.clone())))
}
