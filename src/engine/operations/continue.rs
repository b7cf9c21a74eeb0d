//! `wfe continue`: only a live runner holds a run back after a phase
//! (auto mode off), so without one there is nothing to continue.

use crate::engine::Refusal;

/// Why `wfe continue` does not apply to a run no runner is running.
pub(super) fn offline() -> Refusal {
    Refusal::NoRunner
}
