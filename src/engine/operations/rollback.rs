//! `wfe rollback`: the run's ref moved back to an earlier checkpoint (the
//! old tip is kept in the trash). No checkpoint is made, except one that
//! carries the comments people wrote after the target onto the new tip: a
//! person's words are not run state, and must not vanish into the trash.
//!
//! Rollback is also the repair path for a run whose tip is corrupt (an
//! unparsable `run.json` or state, which a fetch can bring): the target is
//! then found without reading the tip's tree, and only a checkpoint that
//! reads cleanly is accepted as the place to go back to.

use super::locate_phase;
use crate::engine::compare::{At, parse_at};
use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, PhaseState, PhaseStatus, RunSnapshot, layout,
};
use std::collections::BTreeMap;

use crate::store::{Change, Checkpoint, CheckpointId, RunId, RunStore, StoreError, Trashed};
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
        let ids: Vec<&str> = snap.phases.iter().map(|p| p.id.as_str()).collect();
        Self::parse_among(&snap.record.id, &ids, text)
    }

    /// [`RollbackTarget::parse`] knowing only the run's id and its phase
    /// ids (from its template: when the tip's states cannot be read, the
    /// template's phases are still the ones a target may name).
    pub fn parse_among(run: &str, phases: &[&str], text: &str) -> Result<Self, EngineError> {
        let bad = |reason: String| EngineError::BadTarget {
            run: run.to_string(),
            target: text.to_string(),
            reason,
        };
        if let Some((run, at)) = text.split_once('@') {
            let at = parse_at(at).map_err(bad)?;
            let run = (!run.is_empty()).then(|| run.to_string());
            return Ok(RollbackTarget::Checkpoint { run, at });
        }
        if phases.contains(&text) {
            return Ok(RollbackTarget::Phase(text.to_string()));
        }
        if let Ok(at @ At::Commit(_)) = parse_at(text) {
            return Ok(RollbackTarget::Checkpoint { run: None, at });
        }
        Err(bad(format!(
            "it is neither a phase of the run ({}) nor a checkpoint (`@N`, `RUN@N`, or a commit of 4 to 40 hex digits)",
            phases.join(", ")
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
    /// Comments written after the target, carried onto the new tip.
    pub comments: usize,
    /// The run's tip now: `to`, or the checkpoint that carries the comments.
    pub tip: CheckpointId,
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
            // A tip that cannot be read (the run being repaired) is not
            // asked which phases there are: a phase that never completed
            // in the history is refused below all the same.
            if let Ok(snap) = RunSnapshot::load(store, run, &tip) {
                locate_phase(&snap, phase)?;
            }
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
    // Going back to a checkpoint that cannot be read would repair nothing.
    if let Err(e) = RunSnapshot::load(store, run, &history[k].id) {
        return Err(bad(format!(
            "checkpoint @{number} {} cannot be read ({e}); pick an earlier checkpoint of the run",
            history[k].id.short()
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
    // Read before the ref moves. A tip whose tree is gone keeps its
    // comments only in the trash: the rollback that repairs it must go on.
    let old_comments = store
        .read(&resolved.tip, layout::COMMENTS)
        .ok()
        .flatten()
        .unwrap_or_default();
    let trashed = store.reset(
        run,
        &resolved.tip,
        &resolved.to.id,
        &reason,
        clock.epoch_seconds(),
    )?;
    let (comments, tip) = carry_comments(store, run, resolved, &old_comments, clock)?;
    Ok(RolledBack {
        from: resolved.tip.clone(),
        to: resolved.to.clone(),
        number: resolved.number,
        trashed,
        comments,
        tip,
    })
}

/// How often carrying comments starts over when a new comment lands
/// between reading the tip and committing.
const CARRY_RETRIES: usize = 10;

/// Commits, on top of the rolled-back run, the comments the old tip had
/// (`old`, its `comments.jsonl`)
/// that the run's tip now lacks (those written after the target), in
/// their order; returns how many and the run's tip. Comments only ever
/// append, so a line the tip already has is not carried twice. The
/// checkpoint changes nothing else: the run's status stays the target's.
fn carry_comments(
    store: &dyn RunStore,
    run: &RunId,
    resolved: &Resolved,
    old: &[u8],
    clock: &Clock,
) -> Result<(usize, CheckpointId), EngineError> {
    let target = CheckpointMessage::parse(&resolved.to.message);
    let mut tip = resolved.to.id.clone();
    for _ in 0..CARRY_RETRIES {
        let current = store.read(&tip, layout::COMMENTS)?.unwrap_or_default();
        let missing = missing_lines(old, &current);
        if missing.is_empty() {
            return Ok((0, tip));
        }
        let mut bytes = current;
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        for line in &missing {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        let count = missing.len();
        let mut message = CheckpointMessage::new(
            run.as_str(),
            &target.template,
            format!(
                "{count} comment{} kept through the rollback to @{}",
                if count == 1 { "" } else { "s" },
                resolved.number
            ),
        )
        .event(None, CheckpointEvent::Comment);
        message.status = target.status;
        message.failed = target.failed.clone();
        match store.commit(
            run,
            Some(&tip),
            &[Change::write(layout::COMMENTS, bytes)],
            &message.to_message(),
            clock.epoch_seconds(),
        ) {
            Ok(id) => return Ok((count, id)),
            Err(StoreError::Conflict { .. }) => match store.tip(run)? {
                Some(moved) => tip = moved,
                None => break,
            },
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        run: run.clone(),
        expected: tip.0.clone(),
        found: "a tip that kept moving".into(),
    }
    .into())
}

/// The non-empty lines of `old` that `current` lacks, in order; a line
/// that occurs k times in `current` covers its first k occurrences in `old`.
fn missing_lines(old: &[u8], current: &[u8]) -> Vec<Vec<u8>> {
    let mut have: BTreeMap<&[u8], usize> = BTreeMap::new();
    for line in current.split(|&b| b == b'\n') {
        *have.entry(line).or_default() += 1;
    }
    let mut out = Vec::new();
    for line in old.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match have.get_mut(line) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(line.to_vec()),
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::missing_lines;

    #[test]
    fn only_lines_the_tip_lacks_are_carried_in_order() {
        let lines = |v: Vec<Vec<u8>>| -> Vec<String> {
            v.into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        };
        assert_eq!(lines(missing_lines(b"a\nb\nc\n", b"a\n")), ["b", "c"]);
        assert_eq!(
            lines(missing_lines(b"a\nb\n", b"a\nb\n")),
            Vec::<String>::new()
        );
        assert_eq!(
            lines(missing_lines(b"a\na\n", b"a\n")),
            ["a"],
            "twice said is kept twice"
        );
        assert_eq!(lines(missing_lines(b"x\n\n y\n", b"")), ["x", " y"]);
        assert_eq!(lines(missing_lines(b"", b"a\n")), Vec::<String>::new());
    }
}
