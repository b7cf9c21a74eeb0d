//! `wfe pause` when no runner holds the run: the run is marked paused at
//! once (a live runner instead starts nothing new and pauses once its
//! running phases end).

use super::Done;
use crate::engine::{RunRecord, RunStatus};

/// Pauses `record` for `by`; refuses (saying why) a run that already ended or is paused.
pub(super) fn offline(record: &mut RunRecord, by: &str, now: &str) -> Result<Done, String> {
    if matches!(
        record.status,
        RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Paused
    ) {
        return Err(format!("it is already {}", record.status.as_str()));
    }
    record.set_status(RunStatus::Paused, Some(format!("paused by {by}")), now);
    Ok(Done {
        summary: "run paused".to_string(),
        phase: None,
        outcome: "paused; `wfe resume` goes on".to_string(),
    })
}
