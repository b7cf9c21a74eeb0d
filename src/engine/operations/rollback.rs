//! `wfe rollback`: the run's ref moved back to an earlier checkpoint (no
//! checkpoint is made; the old tip is kept in the trash).

use super::locate_phase;
use crate::engine::compare::{At, parse_at};
use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, PhaseState, PhaseStatus, RunSnapshot, layout,
};
use crate::store::{Checkpoint, CheckpointId, RunId, RunStore, StoreError, Trashed};
use crate::time::Clock;

/// Where `wfe rollback --to` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The checkpoint just after the phase last completed.
    Phase(String),
    /// A checkpoint by number or commit, of this run (`run: None`) or of
    /// the named run, which must then be this run.
    Checkpoint {
        /// The run named before `@`, as given.
        run: Option<String>,
        /// The checkpoint.
        at: At,
    },
}

impl RollbackTarget {
    /// Reads `--to`: a phase of the run, `@N`, `RUN@N`, `RUN@COMMIT`, or a
    /// commit (4 to 40 hex digits). A phase id wins over a commit prefix
    /// that happens to be spelled the same.
    pub fn parse(snap: &RunSnapshot, text: &str) -> Result<Self, EngineError> {
        let bad = |reason: String| EngineError::BadTarget {
            run: snap.record.id.clone(),
            target: text.to_string(),
            reason,
        };
        if let Some((run, at)) = text.split_once('@') {
            let at = parse_at(at).map_err(bad)?;
            let run = (!run.is_empty()).then(|| run.to_string());
            return Ok(RollbackTarget::Checkpoint { run, at });
        }
        if snap.phase(text).is_some() {
            return Ok(RollbackTarget::Phase(text.to_string()));
        }
        if let Ok(at @ At::Commit(_)) = parse_at(text) {
            return Ok(RollbackTarget::Checkpoint { run: None, at });
        }
        Err(bad(format!(
            "it is neither a phase of the run ({}) nor a checkpoint (`@N`, `RUN@N`, or a commit of 4 to 40 hex digits)",
            snap.phases
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// A rollback target found in the run's history, before anything moves
/// (so the CLI can check what else it needs, e.g. a workspace snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The run's tip when the target was resolved: the rollback's expected tip.
    pub tip: CheckpointId,
    /// The checkpoint to go back to.
    pub to: Checkpoint,
    /// Its number in the run's history, from 1 (as `wfe log` shows it).
    pub number: usize,
    /// The target as the user wrote it, for the reflog.
    pub text: String,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq)]
pub struct RolledBack {
    /// The tip before, now kept in the trash.
    pub from: CheckpointId,
    /// The checkpoint the run is at now.
    pub to: Checkpoint,
    /// Its number in the run's history, from 1 (as `wfe log` shows it).
    pub number: usize,
    /// The trash entry that keeps `from`.
    pub trashed: Trashed,
}

/// Finds the checkpoint `target` (written as `text`) names in the run's
/// history; refuses one outside it, and the current tip.
pub fn resolve(
    store: &dyn RunStore,
    run: &RunId,
    target: &RollbackTarget,
    text: &str,
) -> Result<Resolved, EngineError> {
    let history = store.history(run)?;
    let Some(tip) = history.first().map(|c| c.id.clone()) else {
        return Err(StoreError::NoSuchRun {
            run: run.to_string(),
        }
        .into());
    };
    let count = history.len();
    let bad = |reason: String| EngineError::BadTarget {
        run: run.to_string(),
        target: text.to_string(),
        reason,
    };
    let k = match target {
        RollbackTarget::Phase(phase) => {
            locate_phase(&RunSnapshot::load(store, run, &tip)?, phase)?;
            completion(store, run, &history, phase)?.ok_or_else(|| {
                bad(format!(
                    "phase `{phase}` has not completed in the run's history, so there is no checkpoint after it"
                ))
            })?
        }
        RollbackTarget::Checkpoint { run: other, at } => {
            let named = match other {
                Some(name) => store.resolve(name)?,
                None => run.clone(),
            };
            if &named == run {
                find(&history, run, at, text)?
            } else {
                let theirs = store.history(&named)?;
                let id = theirs[find(&theirs, &named, at, text)?].id.clone();
                match history.iter().position(|c| c.id == id) {
                    Some(k) => k,
                    None => {
                        return Err(EngineError::NotInRun {
                            run: run.to_string(),
                            checkpoint: format!("{} (of run {named})", id.short()),
                        });
                    }
                }
            }
        }
    };
    let number = count - k;
    if k == 0 {
        return Err(bad(format!(
            "that is the run's current tip (@{number} {}); nothing to roll back",
            tip.short()
        )));
    }
    Ok(Resolved {
        tip,
        to: history[k].clone(),
        number,
        text: text.to_string(),
    })
}

/// Moves the run back to a resolved target (a ref reset: no checkpoint is
/// made); the old tip is kept as the run's next trash entry. Fails with a
/// conflict, changing nothing, if the tip moved since [`resolve`].
///
/// The run then stands exactly as it did at that checkpoint: phases that
/// had started there are `running`, and `wfe resume` runs them again as a
/// new attempt, as after a crash.
pub fn rollback(
    store: &dyn RunStore,
    run: &RunId,
    resolved: &Resolved,
    clock: &Clock,
) -> Result<RolledBack, EngineError> {
    let reason = format!(
        "wfe: rollback to @{} {} ({})",
        resolved.number,
        resolved.to.id.short(),
        resolved.text
    );
    let trashed = store.reset(
        run,
        &resolved.tip,
        &resolved.to.id,
        &reason,
        clock.epoch_seconds(),
    )?;
    Ok(RolledBack {
        from: resolved.tip.clone(),
        to: resolved.to.clone(),
        number: resolved.number,
        trashed,
    })
}

/// The position in `history` (newest first) of the newest checkpoint in
/// which `phase` completed: by the runner, accepted by hand, or edited
/// into completion (checked against the state files, since most edits
/// leave the phase as it was).
fn completion(
    store: &dyn RunStore,
    run: &RunId,
    history: &[Checkpoint],
    phase: &str,
) -> Result<Option<usize>, EngineError> {
    let completed_at = |id: &CheckpointId| -> Result<bool, EngineError> {
        let Some(bytes) = store.read(id, &layout::state(phase))? else {
            return Ok(false);
        };
        let state: PhaseState =
            crate::engine::snapshot::parse(run.as_str(), id, &layout::state(phase), &bytes)?;
        Ok(state.status == PhaseStatus::Completed)
    };
    for (k, checkpoint) in history.iter().enumerate() {
        for noted in CheckpointMessage::parse(&checkpoint.message).events {
            if noted.phase.as_deref() != Some(phase) {
                continue;
            }
            let found = match noted.event {
                CheckpointEvent::PhaseCompleted | CheckpointEvent::PhaseAccepted => true,
                CheckpointEvent::ArtifactEdited => {
                    completed_at(&checkpoint.id)?
                        && !match &checkpoint.parent {
                            Some(parent) => completed_at(parent)?,
                            None => false,
                        }
                }
                _ => false,
            };
            if found {
                return Ok(Some(k));
            }
        }
    }
    Ok(None)
}

/// The position in `history` (newest first) of the checkpoint `at` names.
fn find(history: &[Checkpoint], run: &RunId, at: &At, text: &str) -> Result<usize, EngineError> {
    let count = history.len();
    let bad = |reason: String| EngineError::BadTarget {
        run: run.to_string(),
        target: text.to_string(),
        reason,
    };
    match at {
        At::Number(n) if (1..=count).contains(n) => Ok(count - n),
        At::Number(n) => Err(bad(format!(
            "run {run} has {count} checkpoint{}; there is no @{n}",
            if count == 1 { "" } else { "s" }
        ))),
        At::Commit(prefix) => {
            let hits: Vec<usize> = (0..count)
                .filter(|&k| history[k].id.0.starts_with(prefix.as_str()))
                .collect();
            match hits.as_slice() {
                [] => Err(EngineError::NotInRun {
                    run: run.to_string(),
                    checkpoint: prefix.clone(),
                }),
                [k] => Ok(*k),
                many => Err(bad(format!(
                    "the prefix matches {}; give more digits",
                    many.iter()
                        .map(|&k| format!("@{} {}", count - k, history[k].id.short()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}
