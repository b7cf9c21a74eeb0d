//! `wfe continue`: only a live runner holds a run back after a phase
//! (auto mode off), so without one there is nothing to continue.

use crate::store::RunId;

/// Why `wfe continue` does not apply to a run no runner is running.
pub(super) fn offline(run: &RunId) -> String {
    format!("no runner is running it; `wfe resume {run}` goes on")
}
