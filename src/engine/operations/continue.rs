//! `wfe continue`: only a live runner holds a run back after a phase
//! (auto mode off), so without one there is nothing to continue.

use crate::engine::{Refusal, RunSnapshot, runner::resumable};

/// Why `wfe continue` does not apply to a run no runner is running: a run
/// that resuming would move on only lacks a runner; one that is over
/// (completed, cancelled, failed for good) has nothing left at all, and
/// saying "resume it" there would send the user to a command that does
/// nothing.
pub(super) fn offline(snap: &RunSnapshot) -> Refusal {
    if resumable(snap) {
        Refusal::NoRunner {
            status: snap.record.status,
            reason: snap.record.reason.clone().map(Box::new),
        }
    } else {
        Refusal::Over(snap.record.status)
    }
}
