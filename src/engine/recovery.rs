//! Recovery by hand: retrying a phase, skipping one, rolling a run back to
//! an earlier checkpoint, and undoing that.
//!
//! Retry and skip are checkpoints, like the changes in [`super::manual`]:
//! they change phase states with compare-and-swap on the tip, and a runner
//! (`wfe resume`) does the work afterwards. Rollback and undo make no
//! checkpoint: they move the run's ref ([`RunStore::reset`],
//! [`RunStore::undo`]) and the store keeps the abandoned tip under
//! `refs/wfe/trash/<run>/<n>`. The CLI holds the run's lock around all four
//! so no runner is active; the compare-and-swap catches the writers that
//! take no lock (comments). Nothing here prints.
//!
//! Old attempts are never overwritten: a phase sent back to pending keeps
//! its attempt count (the runner starts the next one), and what its last
//! attempt produced is archived under `attempts/<n>/` (`artifacts/`,
//! `log.jsonl`) before the phase's current artifacts are removed, so the
//! history and `wfe diff RUN:PHASE#n RUN:PHASE#m` keep both.

use super::compare::At;
use super::{
    Dag, EngineError, PhaseState, PhaseStatus, RunSnapshot, RunStatus, layout, resumable,
    to_file_bytes,
};
use crate::attempt::AttemptError;
use crate::store::{
    Change, Checkpoint, CheckpointId, EntryKind, Message, RunId, RunStore, StoreError, Trashed,
    Undone,
};
use crate::time::Clock;

/// How often a retry or skip starts over when another writer (a comment)
/// moved the tip between reading it and committing.
const CONFLICT_RETRIES: usize = 10;

/// The `Wfe-Event` of the phase a retry was asked for.
pub const RETRY_EVENT: &str = "phase-retry-requested";
/// The `Wfe-Event` of each dependant a retry sends back to pending.
pub const RESET_EVENT: &str = "phase-reset";
/// The `Wfe-Event` of a phase skipped (by its `if`, or by hand).
pub const SKIP_EVENT: &str = "phase-skipped";
/// The trailer naming who asked for a retry or skip (`Name <email>`).
pub const REQUESTED_BY: &str = "Wfe-Requested-By";
/// `skip_reason` of a phase skipped by hand.
pub const SKIPPED_BY_HAND: &str = "skipped by hand";

/// Choices for a retried phase's next attempt; `None` keeps what is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The provider to use instead of the template's.
    pub provider: Option<String>,
    /// The model to use instead of the template's.
    pub model: Option<String>,
}

/// What a retry request changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The checkpoint that records the request.
    pub checkpoint: CheckpointId,
    /// The attempt the phase runs next.
    pub next_attempt: u32,
    /// Dependants sent back to pending, in template order.
    pub reset: Vec<String>,
}

/// What a skip changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The checkpoint that records it.
    pub checkpoint: CheckpointId,
    /// True when the run was failed on this phase and is now paused.
    pub reopened: bool,
}

/// Marks `phase` for another attempt and every phase downstream of it
/// pending; the run becomes paused, so `wfe resume` runs them again.
///
/// The phase keeps its attempt count (the runner starts the next one) and
/// its last attempt's artifacts and log are archived under
/// `attempts/<n>/`; the same happens to each dependant that is not already
/// pending, phases skipped by an `if` included (it is evaluated again).
/// `requested_by` is recorded as `Wfe-Requested-By`.
pub fn retry(
    store: &dyn RunStore,
    run: &RunId,
    phase: &str,
    requested_by: &str,
    overrides: &Overrides,
    clock: &Clock,
) -> Result<Retried, EngineError> {
    with_retries(|| {
        let snap = RunSnapshot::load_tip(store, run)?;
        let (i, dag) = locate_phase(&snap, phase)?;
        let state = &snap.phases[i];
        let refused = |reason: String| EngineError::Refused {
            action: "retry",
            run: run.to_string(),
            phase: phase.to_string(),
            reason,
        };
        match state.status {
            PhaseStatus::Pending if state.attempt == 0 => {
                return Err(refused(format!(
                    "it has not run yet; `wfe resume {run}` runs it"
                )));
            }
            PhaseStatus::Waiting => {
                return Err(refused("it is waiting for an approval".into()));
            }
            _ => {}
        }
        let mut changes = Vec::new();
        let mut again = set_aside(store, &snap, state, &mut changes)?;
        if overrides.provider.is_some() {
            again.provider.clone_from(&overrides.provider);
        }
        if overrides.model.is_some() {
            again.model.clone_from(&overrides.model);
        }
        changes.push(Change::write(layout::state(phase), to_file_bytes(&again)));
        let next_attempt = again.attempt + 1;

        let mut events = vec![(phase.to_string(), RETRY_EVENT)];
        let mut reset = Vec::new();
        for d in (0..dag.len()).filter(|&d| dag.ancestors(d).contains(&i)) {
            let dependant = &snap.phases[d];
            if dependant.status == PhaseStatus::Pending && dependant.attempt == 0 {
                continue;
            }
            let pending = set_aside(store, &snap, dependant, &mut changes)?;
            changes.push(Change::write(
                layout::state(&dependant.id),
                to_file_bytes(&pending),
            ));
            events.push((dependant.id.clone(), RESET_EVENT));
            reset.push(dependant.id.clone());
        }

        let mut record = snap.record.clone();
        let was = record.status;
        record.status = RunStatus::Paused;
        record.finished_at = None;
        record.reason = Some(format!("retry of {phase} requested"));
        changes.push(Change::write(layout::RUN, to_file_bytes(&record)));

        let mut summary = format!("wfe: retry of {phase} requested (attempt {next_attempt} next)");
        if !reset.is_empty() {
            summary.push_str(&format!("; {} back to pending", reset.join(", ")));
        }
        let mut message = head(Message::new(summary), &snap);
        for (id, event) in events {
            message = message.trailer("Wfe-Phase", id).trailer("Wfe-Event", event);
        }
        if was != RunStatus::Paused {
            message = message.trailer("Wfe-Event", "run-paused");
        }
        if let Some(provider) = &overrides.provider {
            message = message.trailer("Wfe-Provider", provider.as_str());
        }
        if let Some(model) = &overrides.model {
            message = message.trailer("Wfe-Model", model.as_str());
        }
        let message = tail(message, requested_by, RunStatus::Paused);
        let checkpoint = store.commit(
            run,
            Some(&snap.checkpoint),
            &changes,
            &message,
            clock.epoch_seconds(),
        )?;
        Ok(Retried {
            checkpoint,
            next_attempt,
            reset,
        })
    })
}

/// Marks `phase` skipped by hand: its dependants run as if its `if` had
/// been false and see no artifact of it. A run that failed on this phase
/// alone becomes paused, so `wfe resume` goes on.
pub fn skip(
    store: &dyn RunStore,
    run: &RunId,
    phase: &str,
    requested_by: &str,
    clock: &Clock,
) -> Result<Skipped, EngineError> {
    with_retries(|| {
        let snap = RunSnapshot::load_tip(store, run)?;
        let (i, _) = locate_phase(&snap, phase)?;
        let state = &snap.phases[i];
        let refused = |reason: &str| EngineError::Refused {
            action: "skip",
            run: run.to_string(),
            phase: phase.to_string(),
            reason: reason.to_string(),
        };
        match state.status {
            PhaseStatus::Completed => {
                return Err(refused(
                    "it completed and its artifacts stand; `wfe retry` runs it again, `wfe rollback --to` goes back before it",
                ));
            }
            PhaseStatus::Skipped => return Err(refused("it is already skipped")),
            PhaseStatus::Waiting => return Err(refused("it is waiting for an approval")),
            _ => {}
        }
        let mut changes = Vec::new();
        let mut skipped = set_aside(store, &snap, state, &mut changes)?;
        skipped.status = PhaseStatus::Skipped;
        skipped.skip_reason = Some(SKIPPED_BY_HAND.to_string());
        skipped.finished_at = Some(clock.stamp());
        changes.push(Change::write(layout::state(phase), to_file_bytes(&skipped)));

        let mut message = head(Message::new(format!("wfe: {phase} skipped by hand")), &snap)
            .trailer("Wfe-Phase", phase)
            .trailer("Wfe-Event", SKIP_EVENT);
        let mut after = snap.clone();
        after.phases[i] = skipped;
        let reopened = snap.record.status == RunStatus::Failed && resumable(&after);
        let mut status = snap.record.status;
        if reopened {
            let mut record = snap.record.clone();
            record.status = RunStatus::Paused;
            record.finished_at = None;
            record.reason = Some(format!("{phase} skipped by hand; `wfe resume` goes on"));
            changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
            message = message.trailer("Wfe-Event", "run-paused");
            status = RunStatus::Paused;
        }
        let message = tail(message, requested_by, status);
        let checkpoint = store.commit(
            run,
            Some(&snap.checkpoint),
            &changes,
            &message,
            clock.epoch_seconds(),
        )?;
        Ok(Skipped {
            checkpoint,
            reopened,
        })
    })
}

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
            let at = super::compare::parse_at(at).map_err(bad)?;
            let run = (!run.is_empty()).then(|| run.to_string());
            return Ok(RollbackTarget::Checkpoint { run, at });
        }
        if snap.phase(text).is_some() {
            return Ok(RollbackTarget::Phase(text.to_string()));
        }
        if let Ok(at @ At::Commit(_)) = super::compare::parse_at(text) {
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

/// Restores the tip the last rollback (or undo) set aside; see
/// [`RunStore::undo`] for when the current tip is kept in the trash.
pub fn undo(store: &dyn RunStore, run: &RunId, clock: &Clock) -> Result<Undone, EngineError> {
    let tip = store.tip(run)?.ok_or_else(|| StoreError::NoSuchRun {
        run: run.to_string(),
    })?;
    let last = store
        .trashed(run)?
        .pop()
        .ok_or_else(|| StoreError::NothingTrashed { run: run.clone() })?;
    let reason = format!(
        "wfe: undo: restored {} ({})",
        run.trash_ref(last.number),
        last.checkpoint.short()
    );
    Ok(store.undo(run, &tip, &reason, clock.epoch_seconds())?)
}

/// The `(phase, event)` pairs of a checkpoint's trailers, in order: an
/// event belongs to the `Wfe-Phase` right before it, if any (how the
/// runner writes folded checkpoints).
pub fn events(message: &Message) -> Vec<(Option<&str>, &str)> {
    let mut out = Vec::new();
    let mut phase = None;
    for (key, value) in &message.trailers {
        if key.eq_ignore_ascii_case("Wfe-Phase") {
            phase = Some(value.as_str());
        } else if key.eq_ignore_ascii_case("Wfe-Event") {
            out.push((phase.take(), value.as_str()));
        } else {
            phase = None;
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
            super::snapshot::parse(run.as_str(), id, &layout::state(phase), &bytes)?;
        Ok(state.status == PhaseStatus::Completed)
    };
    for (k, checkpoint) in history.iter().enumerate() {
        for (p, event) in events(&checkpoint.message) {
            if p != Some(phase) {
                continue;
            }
            let found = match event {
                "phase-completed" | "phase-accepted" => true,
                "artifact-edited" => {
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
) -> Result<PhaseState, EngineError> {
    let id = state.id.as_str();
    let at = &snap.checkpoint;
    if state.attempt > 0 {
        let archive = layout::attempt(id, state.attempt);
        let archived = format!("{archive}/artifacts");
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
        let log = format!("{archive}/log.jsonl");
        if store.read(at, &log)?.is_none()
            && let Some(bytes) = store.read(at, &layout::log(id))?
        {
            changes.push(Change::write(log, bytes));
        }
        let error = format!("{archive}/error.json");
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
        path: layout::log(id),
    });
    Ok(PhaseState {
        status: PhaseStatus::Pending,
        started_at: None,
        finished_at: None,
        duration_ms: None,
        exit_code: None,
        artifacts: Vec::new(),
        error: None,
        skip_reason: None,
        forced: Vec::new(),
        usage: None,
        continues: false,
        ..state.clone()
    })
}

/// The first trailers of every checkpoint: the run and its template.
fn head(message: Message, snap: &RunSnapshot) -> Message {
    message
        .trailer("Wfe-Run", snap.record.id.as_str())
        .trailer("Wfe-Template", snap.record.template.as_str())
}

/// Who asked, then the run's status last (where tools look for it).
fn tail(message: Message, requested_by: &str, status: RunStatus) -> Message {
    message
        .trailer(REQUESTED_BY, requested_by)
        .trailer("Wfe-Status", status.as_str())
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::engine::testing;
    use crate::engine::{NewRun, Settings, create};
    use crate::store::MemoryStore;
    use crate::template::Template;

    const ME: &str = "Test User <test@example.com>";

    struct Fixture {
        store: MemoryStore,
        dir: tempfile::TempDir,
        settings: Settings,
        clock: Clock,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let settings = testing::settings(dir.path(), 1);
            Fixture {
                store: MemoryStore::new(),
                dir,
                settings,
                clock: Clock::system(),
            }
        }

        fn create(&self, phases: Value) -> RunId {
            let template: Template =
                serde_json::from_value(json!({ "name": "t", "phases": phases })).expect("template");
            let new = NewRun {
                id: RunId::generate(),
                template,
                template_source: "test".into(),
                args: json!({}),
                schemas: vec![(
                    "message".to_string(),
                    json!({ "type": "object", "required": ["text"] }),
                )],
                base_commit: "0".repeat(40),
                auto: true,
            };
            create(&self.store, &new, &self.clock).expect("create");
            new.id
        }

        async fn drive(&self, run: &RunId) -> RunStatus {
            testing::drive_quietly(&self.store, run, &self.settings).await
        }

        fn snap(&self, run: &RunId) -> RunSnapshot {
            RunSnapshot::load_tip(&self.store, run).expect("snapshot")
        }

        fn state(&self, run: &RunId, phase: &str) -> PhaseState {
            self.snap(run).phase(phase).expect("phase").clone()
        }

        fn ran(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("ran.txt"))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect()
        }
    }

    /// A phase that appends its id (and `extra`) to `ran.txt` and writes a `note`.
    fn phase(id: &str, needs: &[&str], extra: &str) -> Value {
        json!({
            "id": id, "kind": "script", "needs": needs,
            "run": format!("echo {id} >> ran.txt{extra}; echo '{{\"text\": \"{id} '$WFE_ATTEMPT'\"}}' > \"$WFE_OUT/note.json\""),
            "outputs": { "note": "message" }
        })
    }

    fn chain() -> Value {
        json!([
            phase("a", &[], ""),
            phase("b", &["a"], ""),
            phase("c", &["b"], ""),
            phase("d", &["c"], ""),
            phase("e", &["d"], ""),
            phase("side", &["a"], ""),
        ])
    }

    #[test]
    fn events_pair_each_event_with_the_phase_right_before_it() {
        let message = Message::new("x")
            .trailer("Wfe-Run", "r")
            .trailer("Wfe-Phase", "a")
            .trailer("Wfe-Event", "phase-completed")
            .trailer("Wfe-Phase", "b")
            .trailer("Wfe-Event", "phase-started")
            .trailer("Wfe-Event", "run-completed")
            .trailer("Wfe-Phase", "c")
            .trailer("Wfe-Status", "running")
            .trailer("Wfe-Event", "odd");
        assert_eq!(
            events(&message),
            vec![
                (Some("a"), "phase-completed"),
                (Some("b"), "phase-started"),
                (None, "run-completed"),
                (None, "odd"),
            ]
        );
    }

    #[tokio::test]
    async fn retry_of_a_middle_phase_reruns_it_and_its_dependants_only() {
        let f = Fixture::new();
        let run = f.create(chain());
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(f.ran().len(), 6);
        let before = f.snap(&run).checkpoint;

        let overrides = Overrides {
            provider: None,
            model: Some("m2".into()),
        };
        let retried = retry(&f.store, &run, "c", ME, &overrides, &f.clock).expect("retry");
        assert_eq!(retried.next_attempt, 2);
        assert_eq!(retried.reset, ["d", "e"]);
        let snap = f.snap(&run);
        assert_eq!(snap.record.status, RunStatus::Paused);
        assert_eq!(snap.record.reason.as_deref(), Some("retry of c requested"));
        for id in ["c", "d", "e"] {
            let state = f.state(&run, id);
            assert_eq!(state.status, PhaseStatus::Pending, "{id}");
            assert_eq!(state.attempt, 1, "{id} keeps its attempt count");
            assert!(state.artifacts.is_empty() && state.finished_at.is_none());
            assert_eq!(snap.artifact(&f.store, id, "note").expect("read"), None);
            let archived = |file: &str| {
                f.store
                    .read(&snap.checkpoint, &format!("phases/{id}/attempts/1/{file}"))
                    .expect("read")
            };
            assert_eq!(
                archived("artifacts/note.json")
                    .map(|b| serde_json::from_slice::<Value>(&b).expect("json")),
                Some(json!({ "text": format!("{id} 1") })),
                "the old artifact of {id} is archived"
            );
            assert!(
                archived("log.jsonl").is_some(),
                "the old log of {id} is archived"
            );
            assert_eq!(
                f.store
                    .read(&snap.checkpoint, &layout::log(id))
                    .expect("read"),
                None
            );
        }
        assert_eq!(f.state(&run, "c").model.as_deref(), Some("m2"));
        assert_eq!(f.state(&run, "d").model, None);
        for id in ["a", "b", "side"] {
            assert_eq!(f.state(&run, id).status, PhaseStatus::Completed, "{id}");
        }
        let cp = f.store.checkpoint(&snap.checkpoint).expect("checkpoint");
        assert_eq!(cp.parent, Some(before));
        assert_eq!(
            events(&cp.message),
            vec![
                (Some("c"), RETRY_EVENT),
                (Some("d"), RESET_EVENT),
                (Some("e"), RESET_EVENT),
                (None, "run-paused"),
            ]
        );
        assert_eq!(cp.message.get(REQUESTED_BY), Some(ME));
        assert_eq!(cp.message.get("Wfe-Model"), Some("m2"));
        assert_eq!(
            cp.message.trailers.last().map(|t| t.1.as_str()),
            Some("paused")
        );

        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(
            f.ran()[6..],
            ["c", "d", "e"],
            "only the retried phase and its dependants ran again"
        );
        let snap = f.snap(&run);
        assert_eq!(f.state(&run, "c").attempt, 2);
        assert_eq!(
            snap.artifact(&f.store, "c", "note").expect("read"),
            Some(json!({ "text": "c 2" }))
        );
        assert_eq!(f.state(&run, "a").attempt, 1);
    }

    #[tokio::test]
    async fn retry_and_skip_refuse_what_does_not_apply() {
        let f = Fixture::new();
        let run = f.create(json!([
            phase("a", &[], ""),
            phase("bad", &["a"], "; exit 4"),
            phase("after", &["bad"], ""),
        ]));
        assert_eq!(f.drive(&run).await, RunStatus::Failed);
        let tip = f.snap(&run).checkpoint;
        let none = Overrides::default();
        let cases: Vec<(Result<(), EngineError>, &str)> = vec![
            (
                retry(&f.store, &run, "after", ME, &none, &f.clock).map(|_| ()),
                "cannot retry phase `after`",
            ),
            (
                retry(&f.store, &run, "nope", ME, &none, &f.clock).map(|_| ()),
                "has no phase `nope`; its phases: a, bad, after",
            ),
            (
                skip(&f.store, &run, "a", ME, &f.clock).map(|_| ()),
                "cannot skip phase `a`",
            ),
            (
                skip(&f.store, &run, "nope", ME, &f.clock).map(|_| ()),
                "has no phase `nope`",
            ),
        ];
        for (result, expected) in cases {
            let err = result.expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
        }
        assert_eq!(f.snap(&run).checkpoint, tip, "nothing was written");
    }

    #[tokio::test]
    async fn skipping_a_failed_phase_lets_its_dependants_run_without_its_artifacts() {
        let f = Fixture::new();
        let mut after = phase("after", &["bad"], "");
        after["run"] = json!(
            "echo after-{{ 'none' if not artifacts.bad else 'some' }}-{{ 'a' if artifacts.a else 'no-a' }} >> ran.txt"
        );
        after["outputs"] = json!({});
        let run = f.create(json!([
            phase("a", &[], ""),
            phase("bad", &["a"], "; exit 4"),
            after,
        ]));
        assert_eq!(f.drive(&run).await, RunStatus::Failed);
        let skipped = skip(&f.store, &run, "bad", ME, &f.clock).expect("skip");
        assert!(skipped.reopened);
        let snap = f.snap(&run);
        assert_eq!(snap.record.status, RunStatus::Paused);
        let bad = f.state(&run, "bad");
        assert_eq!(bad.status, PhaseStatus::Skipped);
        assert_eq!(bad.skip_reason.as_deref(), Some(SKIPPED_BY_HAND));
        assert_eq!(bad.error, None);
        let err = f
            .store
            .read(&snap.checkpoint, "phases/bad/attempts/1/error.json")
            .expect("read");
        assert!(err.is_some(), "the failed attempt stays archived");
        assert!(matches!(
            skip(&f.store, &run, "bad", ME, &f.clock),
            Err(EngineError::Refused { .. })
        ));

        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(f.ran(), ["a", "bad", "after-none-a"]);
    }

    #[tokio::test]
    async fn rollback_to_a_phase_resets_to_just_after_it_completed_and_undo_restores() {
        let f = Fixture::new();
        let run = f.create(chain());
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        let history = f.store.history(&run).expect("history");
        let tip = history[0].id.clone();
        let after_c = history
            .iter()
            .find(|c| c.message.summary.starts_with("wfe: c completed"))
            .expect("c completed")
            .clone();

        let snap = f.snap(&run);
        let target = RollbackTarget::parse(&snap, "c").expect("parse");
        assert_eq!(target, RollbackTarget::Phase("c".into()));
        let back = resolve(&f.store, &run, &target, "c")
            .and_then(|r| rollback(&f.store, &run, &r, &f.clock))
            .expect("rollback");
        assert_eq!(back.to.id, after_c.id);
        assert_eq!(back.from, tip);
        assert_eq!(back.trashed.number, 1);
        assert_eq!(f.store.tip(&run).expect("tip"), Some(after_c.id.clone()));
        assert_eq!(
            back.number,
            history.len()
                - history
                    .iter()
                    .position(|c| c.id == after_c.id)
                    .expect("in history")
        );

        // At the tip already: nothing to do, nothing written.
        let again = resolve(&f.store, &run, &target, "c")
            .and_then(|r| rollback(&f.store, &run, &r, &f.clock))
            .expect_err("at the tip");
        assert!(again.to_string().contains("current tip"), "{again}");

        let undone = undo(&f.store, &run, &f.clock).expect("undo");
        assert_eq!(undone.restored.checkpoint, tip);
        assert_eq!(f.store.tip(&run).expect("tip"), Some(tip.clone()));
        assert!(matches!(
            undo(&f.store, &run, &f.clock),
            Err(EngineError::Store(StoreError::NothingTrashed { .. }))
        ));

        // By number, and by commit prefix.
        let at2 = RollbackTarget::parse(&snap, "@2").expect("parse");
        let back = resolve(&f.store, &run, &at2, "@2")
            .and_then(|r| rollback(&f.store, &run, &r, &f.clock))
            .expect("rollback");
        assert_eq!(back.number, 2);
        assert_eq!(back.to.id, history[history.len() - 2].id);
        undo(&f.store, &run, &f.clock).expect("undo");
        // (The memory store's ids share long prefixes: name it in full.)
        let prefix = history[1].id.0.as_str();
        let by_commit = RollbackTarget::parse(&snap, prefix).expect("parse");
        let back = resolve(&f.store, &run, &by_commit, prefix)
            .and_then(|r| rollback(&f.store, &run, &r, &f.clock))
            .expect("rollback");
        assert_eq!(back.to.id, history[1].id);
        assert_eq!(back.trashed.number, 1, "undo used up the entries before");
    }

    #[tokio::test]
    async fn rollback_refuses_targets_outside_the_run() {
        let f = Fixture::new();
        let run = f.create(json!([phase("a", &[], ""), phase("b", &["a"], "; exit 1")]));
        let other = f.create(json!([phase("x", &[], "")]));
        assert_eq!(f.drive(&run).await, RunStatus::Failed);
        let snap = f.snap(&run);
        let tip = snap.checkpoint.clone();
        let foreign = f.store.tip(&other).expect("tip").expect("exists");
        let texts = [
            (foreign.0.clone(), "is not part of run"),
            (format!("{other}@1"), "is not part of run"),
            ("@99".to_string(), "there is no @99"),
            ("b".to_string(), "phase `b` has not completed"),
            (
                "zz".to_string(),
                "neither a phase of the run (a, b) nor a checkpoint",
            ),
            ("@".to_string(), "nothing follows `@`"),
        ];
        for (text, expected) in texts {
            let err = RollbackTarget::parse(&snap, &text)
                .and_then(|target| resolve(&f.store, &run, &target, &text))
                .and_then(|r| rollback(&f.store, &run, &r, &f.clock))
                .expect_err(&text)
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        assert_eq!(f.store.tip(&run).expect("tip"), Some(tip));
        assert!(f.store.trashed(&run).expect("trashed").is_empty());
    }
}
