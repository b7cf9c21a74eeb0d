//! Changes a person makes to a run outside its runner, one file per
//! operation as `cli/commands/` has one per command: pausing, cancelling,
//! approving, continuing and switching auto mode without a runner
//! ([`control_offline`]), commenting, accepting and editing outputs,
//! retrying and skipping phases, rolling a run back and undoing that,
//! sharing runs with a remote ([`push`], [`pull`]) and retention ([`plan_gc`]).
//!
//! Each operation that changes the run is one checkpoint made with
//! compare-and-swap on the tip (rollback and undo move the ref instead,
//! keeping the old tip in the trash). Phase statuses change only through
//! [`PhaseState::apply`], and the transitions a live runner also makes
//! (approving, cancelling) are the same functions here and there. The CLI
//! takes the run's lock around everything but comments, which only append
//! to `comments.jsonl` and which a live runner rebases over. Nothing here
//! prints.

mod accept;
mod approve;
mod auto;
pub(crate) mod cancel;
mod comment;
mod r#continue;
mod edit;
mod gc;
mod pause;
mod refresh;
mod remove;
mod retry;
mod rollback;
mod share;
mod skip;
#[cfg(test)]
mod tests;
mod undo;

pub use accept::accept;
pub(crate) use approve::{
    approve_budget, approve_phase, artifact_on_budget_pause, check_iteration, is_budget_pause,
    join_iterations, not_paused_at_budget, split_address,
};
pub use comment::{comment, comments};
pub use edit::{
    Checked, artifact_schema, check_artifact, editable_artifact, set_artifact, stale_dependants,
};
pub use gc::{GcPlan, GcPolicy, plan_gc};
pub use refresh::{Refreshed, refresh_template};
pub use remove::{Removed, remove};
pub use retry::{Overrides, Retried, retry};
pub use rollback::{Resolved, RollbackTarget, RolledBack, resolve, rollback};
pub use share::{RefOutcome, Synced, pull, push};
pub use skip::{SKIPPED_BY_HAND, Skipped, skip};
pub use undo::undo;

use super::control::Action;
use super::{
    CheckpointEvent, CheckpointMessage, Dag, EngineError, PhaseState, PhaseStatus, Refusal,
    RunSnapshot, RunStatus, StopReason, Transition, layout, to_file_bytes,
};
use crate::attempt::AttemptError;
use crate::store::{Change, CheckpointId, EntryKind, RunId, RunStore, StoreError};
use crate::time::Clock;

/// How often a retry or skip starts over when another writer (a comment)
/// moved the tip between reading it and committing.
const CONFLICT_RETRIES: usize = 10;

/// What a control action done without a runner changed, for its checkpoint.
struct Done {
    /// The checkpoint's summary (`by …` is added).
    summary: String,
    /// The phase it is about, if any.
    phase: Option<String>,
    /// What was done, for the person who asked.
    outcome: String,
}

/// What a control request done without a runner changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controlled {
    /// What was done, for the person who asked (`paused`, `approved`, …).
    pub outcome: String,
    /// The run's status afterwards.
    pub status: RunStatus,
    /// Why the run stands there afterwards.
    pub reason: Option<StopReason>,
}

/// Acts on a control request when no runner holds the run (the caller has
/// taken the run's lock): the change is committed to the ref directly.
/// Returns what was done and where the run stands now.
pub fn control_offline(
    store: &dyn RunStore,
    run: &RunId,
    action: &Action,
    by: &str,
    clock: &Clock,
) -> Result<Controlled, EngineError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let mut record = snap.record.clone();
    let mut changes = Vec::new();
    let now = clock.stamp();
    let refuse = |reason: Refusal| EngineError::NotControllable {
        run: run.to_string(),
        reason,
    };
    let done = match action {
        Action::Pause => pause::offline(&mut record, by, &now).map_err(refuse)?,
        Action::Cancel => {
            cancel::offline(&snap, &mut record, &mut changes, by, &now).map_err(refuse)?
        }
        Action::Approve {
            phase,
            artifact,
            budget,
        } => approve::offline(
            store,
            &snap,
            &mut record,
            &mut changes,
            phase,
            artifact.as_ref(),
            budget.as_ref(),
            &now,
        )?
        .map_err(refuse)?,
        Action::Continue => return Err(refuse(r#continue::offline(&snap))),
        Action::Auto { on } => auto::offline(&mut record, *on),
    };
    if record != snap.record {
        changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
    }
    let message = CheckpointMessage::new(
        &snap.record.id,
        &snap.record.template,
        format!("{} by {by}", done.summary),
    )
    .event(done.phase.as_deref(), action.event())
    .requested_by(by)
    .status(record.status);
    commit_on(store, run, &snap, &changes, &message, clock)?;
    Ok(Controlled {
        outcome: done.outcome,
        status: record.status,
        reason: record.reason,
    })
}

/// Commits `changes` with `message` on top of the checkpoint `snap` was
/// read from: if another writer moved the run meanwhile, the store refuses
/// (compare-and-swap) and nothing is written. A completed run's message
/// keeps naming the phases that failed in it (`Wfe-Failed`), so the tip
/// tells `wfe list` the truth whichever operation wrote it.
fn commit_on(
    store: &dyn RunStore,
    run: &RunId,
    snap: &RunSnapshot,
    changes: &[Change],
    message: &CheckpointMessage,
    clock: &Clock,
) -> Result<CheckpointId, StoreError> {
    let mut message = message.clone();
    if message.status == Some(RunStatus::Completed) && message.failed.is_empty() {
        message.failed = failed_after(snap, changes);
    }
    store.commit(
        run,
        Some(&snap.checkpoint),
        changes,
        &message.to_message(),
        clock.epoch_seconds(),
    )
}

/// The phases that failed or timed out once `changes` apply on `snap`:
/// a phase whose `state.json` is rewritten counts as the new file says.
fn failed_after(snap: &RunSnapshot, changes: &[Change]) -> Vec<String> {
    let current = |state: &PhaseState, key: &str| -> PhaseStatus {
        let path = layout::state(key);
        changes
            .iter()
            .rev()
            .find_map(|c| match c {
                Change::Write { path: p, bytes } if *p == path => {
                    serde_json::from_slice::<PhaseState>(bytes).ok()
                }
                _ => None,
            })
            .map_or(state.status, |s| s.status)
    };
    let mut failed = Vec::new();
    for state in &snap.phases {
        if current(state, &state.id).is_unclean_end() {
            failed.push(state.id.clone());
        }
        failed.extend(
            snap.descendants(&state.id)
                .into_iter()
                .filter(|c| c.status.is_unclean_end())
                .map(|c| c.id.clone()),
        );
    }
    failed
}

/// A failed run whose failing phase was just fixed by hand becomes paused,
/// so resuming goes on from there.
fn reopen_failed_run(
    snap: &RunSnapshot,
    changes: &mut Vec<Change>,
    message: CheckpointMessage,
    phase: &str,
    now: &str,
) -> CheckpointMessage {
    if snap.record.status != RunStatus::Failed {
        return message;
    }
    let mut record = snap.record.clone();
    let reason = StopReason::FixedByHand {
        phase: phase.to_string(),
    };
    record.set_status(RunStatus::Paused, Some(reason), now);
    changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
    message
        .event(None, CheckpointEvent::RunPaused)
        .status(RunStatus::Paused)
}

/// A checkpoint about one event of the run (or of `phase`), leaving its status as it is.
fn base_message(
    snap: &RunSnapshot,
    summary: &str,
    phase: Option<&str>,
    event: CheckpointEvent,
) -> CheckpointMessage {
    CheckpointMessage::new(&snap.record.id, &snap.record.template, summary)
        .event(phase, event)
        .status(snap.record.status)
}

fn require_phase<'a>(
    snap: &'a RunSnapshot,
    phase: &str,
) -> Result<&'a crate::template::Phase, EngineError> {
    snap.template
        .phases
        .iter()
        .find(|p| p.id == phase)
        .ok_or_else(|| EngineError::NoSuchPhase {
            run: snap.record.id.clone(),
            phase: phase.to_string(),
            known: snap.phases.iter().map(|p| p.id.clone()).collect(),
        })
}

fn require_state<'a>(
    snap: &'a RunSnapshot,
    phase: &str,
) -> Result<&'a super::PhaseState, EngineError> {
    require_phase(snap, phase)?;
    snap.phase(phase).ok_or_else(|| EngineError::NoSuchPhase {
        run: snap.record.id.clone(),
        phase: phase.to_string(),
        known: snap.phases.iter().map(|p| p.id.clone()).collect(),
    })
}

/// The phase's index and the run's DAG, or which phases there are.
fn locate_phase(snap: &RunSnapshot, phase: &str) -> Result<(usize, Dag), EngineError> {
    let dag = Dag::new(&snap.template.phases);
    match dag.index(phase).filter(|&i| i < snap.phases.len()) {
        Some(i) => Ok((i, dag)),
        None => Err(EngineError::NoSuchPhase {
            run: snap.record.id.clone(),
            phase: phase.to_string(),
            known: snap.phases.iter().map(|p| p.id.clone()).collect(),
        }),
    }
}

/// Archives what the phase's last attempt left (artifacts, log; an attempt
/// whose runner died is recorded as interrupted) under `attempts/<n>/`,
/// removes the phase's current artifacts and log, and returns its state as
/// pending for the next attempt (attempt count, provider and model kept).
fn set_aside(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    state: &PhaseState,
    changes: &mut Vec<Change>,
    now: &str,
) -> Result<PhaseState, EngineError> {
    let id = state.id.as_str();
    let at = &snap.checkpoint;
    if state.attempt > 0 {
        let archived = layout::attempt_artifacts(id, state.attempt);
        // A failed attempt was archived by its runner; only a completed one
        // still has its outputs where the next attempt will write.
        if store.list_dir(at, &archived)?.is_empty() {
            for (name, kind) in store.list_dir(at, &layout::artifacts(id))? {
                if kind != EntryKind::File {
                    continue;
                }
                let from = format!("{}/{name}", layout::artifacts(id));
                if let Some(bytes) = store.read(at, &from)? {
                    changes.push(Change::write(format!("{archived}/{name}"), bytes));
                }
            }
        }
        // File artifacts likewise, unless the attempt already has some set aside.
        let kept = layout::attempt_files(id, state.attempt);
        if store.list_dir(at, &kept)?.is_empty() {
            for rel in store.list_files(at, &layout::files(id))? {
                if let Some(bytes) = store.read(at, &layout::file(id, &rel))? {
                    changes.push(Change::write(format!("{kept}/{rel}"), bytes));
                }
            }
        }
        let log = layout::attempt_log(id, state.attempt);
        if store.read(at, &log)?.is_none()
            && let Some(bytes) = store.read(at, &layout::log(id))?
        {
            changes.push(Change::write(log, bytes));
        }
        let error = layout::attempt_error(id, state.attempt);
        if state.status == PhaseStatus::Running && store.read(at, &error)?.is_none() {
            let interrupted = AttemptError::Internal {
                message: "interrupted: the runner stopped during this attempt".into(),
            };
            changes.push(Change::write(error, to_file_bytes(&interrupted)));
        }
    }
    changes.push(Change::Remove {
        path: layout::artifacts(id),
    });
    changes.push(Change::Remove {
        path: layout::files(id),
    });
    changes.push(Change::Remove {
        path: layout::log(id),
    });
    let mut pending = state.clone();
    // A reset is allowed from every status.
    let _ = pending.apply(Transition::Reset, now);
    Ok(pending)
}

/// Runs `attempt` again while it loses a compare-and-swap to another
/// writer; each round re-reads the tip, so nothing it decided is stale.
fn with_retries<T>(mut attempt: impl FnMut() -> Result<T, EngineError>) -> Result<T, EngineError> {
    let mut rounds = 0;
    loop {
        match attempt() {
            Err(EngineError::Store(StoreError::Conflict { .. }))
                if rounds + 1 < CONFLICT_RETRIES =>
            {
                rounds += 1;
            }
            other => return other,
        }
    }
}
