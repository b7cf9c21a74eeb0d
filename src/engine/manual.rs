//! Changes a person makes to a run outside the runner: comments, and
//! accepting or editing artifacts.
//!
//! Each is one checkpoint made with compare-and-swap on the tip. Accepting
//! and editing change phase state, so the CLI takes the run's lock first;
//! comments only append to `comments.jsonl`, which a live runner rebases
//! over (see `Runner::rebase_over_comments`), so they need no lock.

use std::sync::Arc;

use serde_json::Value;

use super::control::Action;
use super::runner::COMMENT_EVENT;
use super::snapshot::parse;
use super::{Comment, EngineError, PhaseStatus, RunSnapshot, RunStatus, layout, to_file_bytes};
use crate::artifact::{Schema, Violation, parse_json_document};
use crate::attempt::AttemptError;
use crate::store::{Change, CheckpointId, Message, RunId, RunStore, StoreError};
use crate::time::Clock;

/// How often a comment is retried when another writer moves the tip.
const COMMENT_RETRIES: usize = 10;

/// `comments.jsonl`.
pub const COMMENTS: &str = "comments.jsonl";

/// Appends a comment to the run (about `phase` if given).
pub fn comment(
    store: &dyn RunStore,
    run: &RunId,
    phase: Option<&str>,
    author: &str,
    text: &str,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    let mut last = None;
    for _ in 0..COMMENT_RETRIES {
        let snap = RunSnapshot::load_tip(store, run)?;
        if let Some(phase) = phase {
            require_phase(&snap, phase)?;
        }
        let line = Comment {
            time: clock.stamp(),
            author: author.to_string(),
            phase: phase.map(String::from),
            text: text.to_string(),
        };
        let mut bytes = store.read(&snap.checkpoint, COMMENTS)?.unwrap_or_default();
        // One JSON object per line; plain strings cannot fail to serialise.
        bytes.extend(serde_json::to_vec(&line).unwrap_or_default());
        bytes.push(b'\n');
        let about = phase.map_or_else(|| "the run".to_string(), |p| format!("phase {p}"));
        let message = base_message(&snap, &format!("comment on {about}"), phase, COMMENT_EVENT);
        match store.commit(
            run,
            Some(&snap.checkpoint),
            &[Change::write(COMMENTS, bytes)],
            &message,
            clock.epoch_seconds(),
        ) {
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            other => return Ok(other?),
        }
    }
    Err(last.map_or_else(
        || {
            EngineError::Store(StoreError::NoSuchRun {
                run: run.to_string(),
            })
        },
        EngineError::Store,
    ))
}

/// Every comment on the run, oldest first.
pub fn comments(store: &dyn RunStore, snap: &RunSnapshot) -> Result<Vec<Comment>, EngineError> {
    let bytes = store.read(&snap.checkpoint, COMMENTS)?.unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse(&snap.record.id, &snap.checkpoint, COMMENTS, l.as_bytes()))
        .collect()
}

/// The frozen schema a phase's artifact must match, compiled.
pub fn artifact_schema(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
) -> Result<Arc<Schema>, EngineError> {
    let spec = require_phase(snap, phase)?;
    let name = spec
        .outputs
        .get(artifact)
        .ok_or_else(|| EngineError::NoSuchArtifact {
            run: snap.record.id.clone(),
            phase: phase.to_string(),
            artifact: artifact.to_string(),
            known: spec.outputs.keys().cloned().collect(),
        })?;
    snap.schemas(store)?
        .remove(name)
        .ok_or_else(|| EngineError::Corrupt {
            run: snap.record.id.clone(),
            checkpoint: snap.checkpoint.0.clone(),
            path: layout::RUN.to_string(),
            message: format!("schema `{name}` is not frozen in the run"),
        })
}

/// What a person would start editing: the current artifact, else the
/// output the last attempt wrote and validation rejected.
pub fn editable_artifact(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
) -> Result<Option<Vec<u8>>, EngineError> {
    let state = require_state(snap, phase)?;
    if let Some(bytes) = store.read(&snap.checkpoint, &layout::artifact(phase, artifact))? {
        return Ok(Some(bytes));
    }
    Ok(store.read(
        &snap.checkpoint,
        &rejected_path(phase, state.attempt, artifact),
    )?)
}

/// Commits the outputs a failed attempt wrote, as they are, although they
/// fail their schemas: the phase completes, its artifacts are marked forced,
/// and a failed run becomes paused so `wfe resume` goes on.
pub fn accept(
    store: &dyn RunStore,
    run: &RunId,
    phase: &str,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let spec = require_phase(&snap, phase)?;
    let state = require_state(&snap, phase)?;
    let not_acceptable = |reason: String| EngineError::NotAcceptable {
        run: run.to_string(),
        phase: phase.to_string(),
        reason,
    };
    if !matches!(state.error, Some(AttemptError::InvalidOutputs { .. }))
        || state.status == PhaseStatus::Completed
    {
        return Err(not_acceptable(format!(
            "it is {} and its last attempt has no rejected outputs; accept takes outputs that failed their schema",
            state.status.as_str()
        )));
    }
    let mut changes = Vec::new();
    let mut forced = Vec::new();
    for name in spec.outputs.keys() {
        let path = rejected_path(phase, state.attempt, name);
        let bytes = match store.read(&snap.checkpoint, &path)? {
            Some(bytes) => bytes,
            None if store
                .read(&snap.checkpoint, &layout::artifact(phase, name))?
                .is_some() =>
            {
                continue;
            }
            None => {
                return Err(not_acceptable(format!(
                    "output `{name}` was never written, so there is nothing to accept; `wfe edit {run} {phase} {name}` writes it"
                )));
            }
        };
        let value = parse_json_document(&path, &bytes)
            .map_err(|e| not_acceptable(format!("{e}; `wfe edit` can fix it")))?;
        let schema = artifact_schema(store, &snap, phase, name)?;
        if !schema.validate(&value).is_empty() {
            forced.push(name.clone());
        }
        changes.push(Change::write(
            layout::artifact(phase, name),
            to_file_bytes(&value),
        ));
    }
    let mut state = state.clone();
    state.status = PhaseStatus::Completed;
    state.error = None;
    state.finished_at = Some(clock.stamp());
    state.artifacts = spec.outputs.keys().cloned().collect();
    state.forced = forced;
    changes.push(Change::write(layout::state(phase), to_file_bytes(&state)));
    let mut message = base_message(
        &snap,
        &format!("{phase} accepted by hand (attempt {})", state.attempt),
        Some(phase),
        "phase-accepted",
    );
    message = reopen_failed_run(&snap, &mut changes, message, phase);
    message = message.trailer("Wfe-Forced", "true");
    Ok(store.commit(
        run,
        Some(&snap.checkpoint),
        &changes,
        &message,
        clock.epoch_seconds(),
    )?)
}

/// The result of checking an artifact a person wrote.
#[derive(Debug)]
pub enum Checked {
    /// It matches its schema.
    Valid(Value),
    /// It is JSON but fails its schema.
    Invalid(Value, Vec<Violation>),
}

/// Parses and validates an edited artifact against the run's frozen schema.
pub fn check_artifact(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
    what: &str,
    bytes: &[u8],
) -> Result<Result<Checked, crate::artifact::ArtifactError>, EngineError> {
    let schema = artifact_schema(store, snap, phase, artifact)?;
    Ok(parse_json_document(what, bytes).map(|value| {
        let violations = schema.validate(&value);
        if violations.is_empty() {
            Checked::Valid(value)
        } else {
            Checked::Invalid(value, violations)
        }
    }))
}

/// Commits a new value of a phase's artifact; `forced` when it fails its
/// schema. A phase that failed on invalid outputs completes once all its
/// outputs are present.
pub fn set_artifact(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    phase: &str,
    artifact: &str,
    value: &Value,
    forced: bool,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    let spec = require_phase(snap, phase)?;
    let mut state = require_state(snap, phase)?.clone();
    let mut changes = vec![Change::write(
        layout::artifact(phase, artifact),
        to_file_bytes(value),
    )];
    if !state.artifacts.iter().any(|a| a == artifact) {
        state.artifacts.push(artifact.to_string());
        state.artifacts.sort();
    }
    state.forced.retain(|a| a != artifact);
    if forced {
        state.forced.push(artifact.to_string());
    }
    let mut message = base_message(
        snap,
        &format!("{phase}/{artifact} edited by hand"),
        Some(phase),
        "artifact-edited",
    );
    let all_present = spec
        .outputs
        .keys()
        .all(|name| state.artifacts.contains(name));
    if matches!(state.error, Some(AttemptError::InvalidOutputs { .. }))
        && state.status != PhaseStatus::Completed
        && all_present
    {
        state.status = PhaseStatus::Completed;
        state.error = None;
        state.finished_at = Some(clock.stamp());
        message = reopen_failed_run(snap, &mut changes, message, phase);
    }
    changes.push(Change::write(layout::state(phase), to_file_bytes(&state)));
    if forced {
        message = message.trailer("Wfe-Forced", "true");
    }
    let run = RunId::parse(&snap.record.id).ok_or_else(|| StoreError::NoSuchRun {
        run: snap.record.id.clone(),
    })?;
    Ok(store.commit(
        &run,
        Some(&snap.checkpoint),
        &changes,
        &message,
        clock.epoch_seconds(),
    )?)
}

/// Phases downstream of `phase` that already ran with its old artifacts.
pub fn stale_dependants(snap: &RunSnapshot, phase: &str) -> Vec<String> {
    let dag = super::Dag::new(&snap.template.phases);
    dag.index(phase)
        .map(|i| {
            (0..dag.len())
                .filter(|&d| {
                    dag.ancestors(d).contains(&i) && snap.phases[d].status == PhaseStatus::Completed
                })
                .map(|d| dag.id(d).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A failed run whose failing phase was just fixed by hand becomes paused,
/// so `wfe resume` goes on from there.
fn reopen_failed_run(
    snap: &RunSnapshot,
    changes: &mut Vec<Change>,
    message: Message,
    phase: &str,
) -> Message {
    if snap.record.status != RunStatus::Failed {
        return message;
    }
    let mut record = snap.record.clone();
    record.status = RunStatus::Paused;
    record.finished_at = None;
    record.reason = Some(format!("{phase} fixed by hand; `wfe resume` goes on"));
    changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
    let mut message = message;
    // The status trailer is last; replace it with the new status.
    message.trailers.retain(|(k, _)| k != "Wfe-Status");
    message
        .trailer("Wfe-Event", "run-paused")
        .trailer("Wfe-Status", RunStatus::Paused.as_str())
}

fn base_message(snap: &RunSnapshot, summary: &str, phase: Option<&str>, event: &str) -> Message {
    let mut message = Message::new(format!("wfe: {summary}"))
        .trailer("Wfe-Run", snap.record.id.as_str())
        .trailer("Wfe-Template", snap.record.template.as_str());
    if let Some(phase) = phase {
        message = message.trailer("Wfe-Phase", phase);
    }
    message
        .trailer("Wfe-Event", event)
        .trailer("Wfe-Status", snap.record.status.as_str())
}

fn rejected_path(phase: &str, attempt: u32, artifact: &str) -> String {
    format!(
        "{}/rejected/{artifact}.json",
        layout::attempt(phase, attempt)
    )
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

/// Acts on a control request when no runner holds the run (the caller has
/// taken the run's lock): the change is committed to the ref directly.
/// Returns what was done, for the person who asked.
pub fn control_offline(
    store: &dyn RunStore,
    run: &RunId,
    action: &Action,
    by: &str,
    clock: &Clock,
) -> Result<String, EngineError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let mut record = snap.record.clone();
    let mut changes = Vec::new();
    let refuse = |reason: String| EngineError::NotControllable {
        run: run.to_string(),
        reason,
    };
    let (summary, phase, outcome) = match action {
        Action::Pause => {
            if matches!(
                record.status,
                RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Paused
            ) {
                return Err(refuse(format!("it is already {}", record.status.as_str())));
            }
            record.status = RunStatus::Paused;
            record.reason = Some(format!("paused by {by}"));
            (
                "run paused".to_string(),
                None,
                "paused; `wfe resume` goes on".to_string(),
            )
        }
        Action::Cancel => {
            if matches!(record.status, RunStatus::Completed | RunStatus::Cancelled) {
                return Err(refuse(format!("it is already {}", record.status.as_str())));
            }
            let open = |s: &super::PhaseState| {
                matches!(
                    s.status,
                    PhaseStatus::Pending | PhaseStatus::Running | PhaseStatus::Waiting
                )
            };
            for state in snap.phases.iter().filter(|s| open(s)) {
                let mut cancelled = state.clone();
                cancelled.status = PhaseStatus::Cancelled;
                changes.push(Change::write(
                    layout::state(&state.id),
                    to_file_bytes(&cancelled),
                ));
                // A loop that was going on: so are its current iteration's children.
                let children = snap.children.get(&state.id).into_iter().flatten();
                for child in children.filter(|c| open(c)) {
                    let mut cancelled = child.clone();
                    cancelled.status = PhaseStatus::Cancelled;
                    let key = layout::child_key(&state.id, state.iteration, &child.id);
                    changes.push(Change::write(
                        layout::state(&key),
                        to_file_bytes(&cancelled),
                    ));
                }
            }
            record.status = RunStatus::Cancelled;
            record.reason = Some(format!("cancelled by {by}"));
            record.finished_at = Some(clock.stamp());
            ("run cancelled".to_string(), None, "cancelled".to_string())
        }
        Action::Approve { phase, artifact } => {
            let spec = require_phase(&snap, phase)?;
            let mut state = require_state(&snap, phase)?.clone();
            let schemas = snap.schemas(store)?;
            let attach = super::control::check_approval(spec, &state, artifact.as_ref(), &schemas)
                .map_err(refuse)?;
            if let Some((name, value)) = attach {
                changes.push(Change::write(
                    layout::artifact(phase, &name),
                    to_file_bytes(&value),
                ));
                if !state.artifacts.contains(&name) {
                    state.artifacts.push(name);
                    state.artifacts.sort();
                }
            }
            state.status = PhaseStatus::Completed;
            state.finished_at = Some(clock.stamp());
            changes.push(Change::write(layout::state(phase), to_file_bytes(&state)));
            let others_wait = snap
                .phases
                .iter()
                .any(|p| p.id != *phase && p.status == PhaseStatus::Waiting);
            if record.status == RunStatus::Waiting && !others_wait {
                record.status = RunStatus::Paused;
                record.reason = Some(format!("{phase} approved; `wfe resume` goes on"));
            }
            (
                format!("{phase} approved"),
                Some(phase.as_str()),
                "approved; `wfe resume` goes on".to_string(),
            )
        }
        Action::Continue => {
            return Err(refuse(format!(
                "no runner is running it; `wfe resume {run}` goes on"
            )));
        }
        Action::Auto { on } => {
            record.auto = *on;
            (
                format!("auto mode {}", if *on { "on" } else { "off" }),
                None,
                format!("auto mode is {}", if *on { "on" } else { "off" }),
            )
        }
    };
    if record != snap.record {
        changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
    }
    let mut message = Message::new(format!("wfe: {summary} by {by}"))
        .trailer("Wfe-Run", snap.record.id.as_str())
        .trailer("Wfe-Template", snap.record.template.as_str());
    if let Some(phase) = phase {
        message = message.trailer("Wfe-Phase", phase);
    }
    message = message
        .trailer("Wfe-Event", action.event())
        .trailer("Wfe-Requested-By", by)
        .trailer("Wfe-Status", record.status.as_str());
    store.commit(
        run,
        Some(&snap.checkpoint),
        &changes,
        &message,
        clock.epoch_seconds(),
    )?;
    Ok(outcome)
}
