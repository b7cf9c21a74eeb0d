//! `wfe pause` when no runner holds the run: the run is marked paused at
//! once (a live runner instead starts nothing new and pauses once its
//! running phases end).

use super::Done;
use crate::engine::{Refusal, RunRecord, RunStatus, StopReason};

/// Pauses `record` for `by`; refuses (saying why) a run that already ended or is paused.
pub(super) fn offline(record: &mut RunRecord, by: &str, now: &str) -> Result<Done, Refusal> {
    if matches!(
        record.status,
        RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Paused
    ) {
        return Err(Refusal::Already(record.status));
    }
    let reason = StopReason::PausedOnRequest {
        by: Some(by.to_string()),
    };
    record.set_status(RunStatus::Paused, Some(reason), now);
    Ok(Done {
        summary: "run paused".to_string(),
        phase: None,
        outcome: "paused".to_string(),
    })
}
