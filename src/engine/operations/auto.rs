//! `wfe auto`: whether the run advances without asking after each phase.

use super::Done;
use crate::engine::RunRecord;

/// Switches auto mode of `record` when no runner holds the run.
pub(super) fn offline(record: &mut RunRecord, on: bool) -> Done {
    record.auto = on;
    let word = if on { "on" } else { "off" };
    Done {
        summary: format!("auto mode {word}"),
        phase: None,
        outcome: format!("auto mode is {word}"),
    }
}
