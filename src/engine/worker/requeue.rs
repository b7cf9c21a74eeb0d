//! `wfe resume RUN --queue`: hand a run that stopped back to workers,
//! without running anything here.
//!
//! Workers claim nothing from a run paused on request (see
//! [`super::held_back`]); this is how a person lets them go on. The run
//! becomes `pending` again, as `wfe run --queue` leaves a new one, and
//! turns `running` when a worker brings back its next phase. It must not
//! start phases or touch their states: only the run's status moves.

use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, PhaseStatus, RunSnapshot, RunStatus, layout,
    resumable, to_file_bytes,
};
use crate::store::{Change, RunId, RunStore};
use crate::time::Clock;

/// What handing a run back to workers did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    /// The run is `pending` again, for workers to claim from.
    Queued,
    /// It already was `pending`: nothing written.
    AlreadyQueued,
    /// These phases wait for an approval: workers could start nothing
    /// until someone approves them, so nothing was written.
    Waiting(Vec<String>),
    /// The run is over: nothing left for workers.
    Over(RunStatus),
}

/// Hands `run` (at its tip here) back to workers for `by`: a checkpoint
/// that makes it `pending`, by compare-and-swap on the tip it read.
pub fn requeue(
    store: &dyn RunStore,
    run: &RunId,
    by: &str,
    clock: &Clock,
) -> Result<Requeued, EngineError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let status = snap.record.status;
    if !resumable(&snap) {
        return Ok(Requeued::Over(status));
    }
    if status == RunStatus::Pending {
        return Ok(Requeued::AlreadyQueued);
    }
    let waiting: Vec<String> = snap
        .phases
        .iter()
        .filter(|s| s.status == PhaseStatus::Waiting)
        .map(|s| s.id.clone())
        .collect();
    if status == RunStatus::Waiting && !waiting.is_empty() {
        return Ok(Requeued::Waiting(waiting));
    }
    let mut record = snap.record.clone();
    record.set_status(RunStatus::Pending, None, &clock.stamp());
    let message = CheckpointMessage::new(
        &snap.record.id,
        &snap.record.template,
        format!("run handed back to workers by {by}"),
    )
    .event(None, CheckpointEvent::RunPending)
    .requested_by(by)
    .status(RunStatus::Pending)
    .to_message();
    store.commit(
        run,
        Some(&snap.checkpoint),
        &[Change::write(layout::RUN, to_file_bytes(&record))],
        &message,
        clock.epoch_seconds(),
    )?;
    Ok(Requeued::Queued)
}
