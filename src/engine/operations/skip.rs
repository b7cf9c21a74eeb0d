//! `wfe skip`: a phase marked skipped by hand, so its dependants run as if
//! its `if` had been false.

use super::{commit_on, locate_phase, set_aside, with_retries};
use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, PhaseStatus, Refusal, RunSnapshot, RunStatus,
    StopReason, Transition, layout, resumable, to_file_bytes,
};
use crate::store::{Change, CheckpointId, RunId, RunStore};
use crate::time::Clock;

/// `skip_reason` of a phase skipped by hand.
pub const SKIPPED_BY_HAND: &str = "skipped by hand";

/// What a skip changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The checkpoint that records it.
    pub checkpoint: CheckpointId,
    /// True when the run was failed on this phase and is now paused.
    pub reopened: bool,
}

/// Marks `phase` skipped by hand: its dependants run as if its `if` had
/// been false and see no artifact of it. A run that failed on this phase
/// alone becomes paused, so resuming goes on.
pub fn skip(
    store: &dyn RunStore,
    run: &RunId,
    phase: &str,
    requested_by: &str,
    clock: &Clock,
) -> Result<Skipped, EngineError> {
    with_retries(|| {
        let snap = RunSnapshot::load_tip(store, run)?;
        let (i, _) = locate_phase(&snap, phase)?;
        let state = &snap.phases[i];
        let refused = |reason: Refusal| EngineError::Refused {
            action: "skip",
            run: run.to_string(),
            phase: phase.to_string(),
            reason,
        };
        match state.status {
            PhaseStatus::Completed => {
                return Err(refused(Refusal::Completed));
            }
            PhaseStatus::Skipped => return Err(refused(Refusal::AlreadySkipped)),
            PhaseStatus::Waiting => return Err(refused(Refusal::WaitingForApproval)),
            _ => {}
        }
        let mut changes = Vec::new();
        let now = clock.stamp();
        let mut skipped = set_aside(store, &snap, state, &mut changes, &now)?;
        let reason = SKIPPED_BY_HAND.to_string();
        skipped
            .apply(Transition::Skip { reason }, &now)
            .map_err(|e| refused(e.into()))?;
        changes.push(Change::write(layout::state(phase), to_file_bytes(&skipped)));

        let mut message = CheckpointMessage::new(
            &snap.record.id,
            &snap.record.template,
            format!("{phase} skipped by hand"),
        )
        .event(Some(phase), CheckpointEvent::PhaseSkipped);
        let mut after = snap.clone();
        after.phases[i] = skipped;
        let reopened = snap.record.status == RunStatus::Failed && resumable(&after);
        let mut status = snap.record.status;
        if reopened {
            let mut record = snap.record.clone();
            let reason = StopReason::SkippedByHand {
                phase: phase.to_string(),
            };
            record.set_status(RunStatus::Paused, Some(reason), &now);
            changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
            message = message.event(None, CheckpointEvent::RunPaused);
            status = RunStatus::Paused;
        }
        let message = message.requested_by(requested_by).status(status);
        let checkpoint = commit_on(store, run, &snap, &changes, &message, clock)?;
        Ok(Skipped {
            checkpoint,
            reopened,
        })
    })
}
