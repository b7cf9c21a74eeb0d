//! `wfe accept`: a failed attempt's rejected outputs, committed as they are.

use super::{
    artifact_schema, base_message, commit_on, reopen_failed_run, require_phase, require_state,
};
use crate::artifact::parse_json_document;
use crate::attempt::AttemptError;
use crate::engine::{
    CheckpointEvent, EngineError, PhaseStatus, Refusal, RunSnapshot, Transition, layout,
    to_file_bytes,
};
use crate::store::{Change, CheckpointId, RunId, RunStore};
use crate::time::Clock;

/// Commits the outputs a failed attempt wrote, as they are, although they
/// fail their schemas: the phase completes, its artifacts are marked forced,
/// and a failed run becomes paused so resuming goes on.
pub fn accept(
    store: &dyn RunStore,
    run: &RunId,
    phase: &str,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let spec = require_phase(&snap, phase)?;
    let state = require_state(&snap, phase)?;
    let not_acceptable = |reason: Refusal| EngineError::NotAcceptable {
        run: run.to_string(),
        phase: phase.to_string(),
        reason,
    };
    if !matches!(state.error, Some(AttemptError::InvalidOutputs { .. }))
        || state.status == PhaseStatus::Completed
    {
        return Err(not_acceptable(Refusal::NoRejectedOutputs {
            status: state.status,
        }));
    }
    let mut changes = Vec::new();
    let mut forced = Vec::new();
    for name in spec.outputs.keys() {
        let path = layout::rejected(phase, state.attempt, name);
        let bytes = match store.read(&snap.checkpoint, &path)? {
            Some(bytes) => bytes,
            None if store
                .read(&snap.checkpoint, &layout::artifact(phase, name))?
                .is_some() =>
            {
                continue;
            }
            None => {
                return Err(not_acceptable(Refusal::NeverWritten {
                    artifact: name.clone(),
                }));
            }
        };
        let value = parse_json_document(&path, &bytes).map_err(|e| {
            not_acceptable(Refusal::Unparsable {
                artifact: name.clone(),
                message: e.to_string().into(),
            })
        })?;
        let schema = artifact_schema(store, &snap, phase, name)?;
        if !schema.validate(&value).is_empty() {
            forced.push(name.clone());
        }
        changes.push(Change::write(
            layout::artifact(phase, name),
            to_file_bytes(&value),
        ));
    }
    let now = clock.stamp();
    let mut state = state.clone();
    state
        .apply(Transition::Complete, &now)
        .map_err(|e| not_acceptable(e.into()))?;
    state.artifacts = spec.outputs.keys().cloned().collect();
    state.forced = forced;
    changes.push(Change::write(layout::state(phase), to_file_bytes(&state)));
    let mut message = base_message(
        &snap,
        &format!("{phase} accepted by hand (attempt {})", state.attempt),
        Some(phase),
        CheckpointEvent::PhaseAccepted,
    );
    message = reopen_failed_run(&snap, &mut changes, message, phase, &now);
    message.forced = true;
    Ok(commit_on(store, run, &snap, &changes, &message, clock)?)
}
