//! `wfe cancel`: every phase that could still run is cancelled, and the
//! run with them. The live runner (once its killed attempts have ended)
//! and the offline path cancel phases through [`cancel_open`].

use super::Done;
use crate::engine::{
    PhaseState, PhaseStatus, Refusal, RunRecord, RunSnapshot, RunStatus, StopReason, Transition,
};
use crate::engine::{layout, to_file_bytes};
use crate::store::Change;

/// Cancels a phase that could still run (pending, waiting, or a running
/// loop or attempt nobody will finish); true if it was one.
pub(crate) fn cancel_open(state: &mut PhaseState, now: &str) -> bool {
    is_open(state) && state.apply(Transition::Cancel, now).is_ok()
}

fn is_open(state: &PhaseState) -> bool {
    matches!(
        state.status,
        PhaseStatus::Pending | PhaseStatus::Running | PhaseStatus::Waiting
    )
}

/// Cancels the run in `snap` for `by` when no runner holds it: its open
/// phases, the open children of a loop that was going on, and the run.
pub(super) fn offline(
    snap: &RunSnapshot,
    record: &mut RunRecord,
    changes: &mut Vec<Change>,
    by: &str,
    now: &str,
) -> Result<Done, Refusal> {
    if matches!(record.status, RunStatus::Completed | RunStatus::Cancelled) {
        return Err(Refusal::Already(record.status));
    }
    for state in snap.phases.iter().filter(|s| is_open(s)) {
        let mut cancelled = state.clone();
        cancel_open(&mut cancelled, now);
        changes.push(Change::write(
            layout::state(&state.id),
            to_file_bytes(&cancelled),
        ));
        // A loop that was going on: so are its current iteration's
        // children (and a nested loop's, in its current iteration).
        for child in snap
            .descendants(&state.id)
            .into_iter()
            .filter(|c| is_open(c))
        {
            let mut cancelled = child.clone();
            cancel_open(&mut cancelled, now);
            let key = snap.key_at(&child.id, &snap.current_iterations(&child.id));
            changes.push(Change::write(
                layout::state(&key),
                to_file_bytes(&cancelled),
            ));
        }
    }
    let reason = StopReason::Cancelled {
        by: Some(by.to_string()),
    };
    record.set_status(RunStatus::Cancelled, Some(reason), now);
    Ok(Done {
        summary: "run cancelled".to_string(),
        phase: None,
        outcome: "cancelled".to_string(),
    })
}
