//! Comparing two runs, checkpoints, phases or attempts: what `wfe diff A B`
//! shows, as a typed result.
//!
//! Each side is named by a [`Spec`] (`RUN`, `RUN@N`, `RUN@COMMIT`,
//! `RUN:PHASE`, `RUN:PHASE#ATTEMPT`), resolved in a [`RunStore`] to one
//! checkpoint and a set of phases, and the two sides' artifacts are diffed
//! per (phase, artifact name) with [`crate::artifact::diff`]. Phase and run
//! statuses come along as one-line changes. This module reads the store and
//! never prints: rendering belongs to the CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

use super::view::{FileEntry, file_entries};
use super::{EngineError, PhaseState, PhaseStatus, RunSnapshot, RunStatus, layout};
use crate::artifact::{self, Change};
use crate::store::{CheckpointId, EntryKind, RunId, RunStore, StoreError};

/// Checkpoint numbers have at most this many digits; a longer run of digits
/// after `@` is read as a commit prefix.
const MAX_NUMBER_DIGITS: usize = 6;
/// The shortest commit prefix accepted after `@`, as git's own minimum.
const MIN_COMMIT_PREFIX: usize = 4;

/// One side of a comparison as the user wrote it: `RUN[@AT][:PHASE[#ATTEMPT]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// A run id, a unique prefix of one, or `latest`.
    pub run: String,
    /// Which checkpoint; the run's tip when absent.
    pub at: Option<At>,
    /// Only this phase's artifacts.
    pub phase: Option<String>,
    /// Only this attempt of the phase (requires `phase`).
    pub attempt: Option<u32>,
}

/// A checkpoint of a run, named after `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The Nth checkpoint, counting from 1 (the run's creation), as `wfe log` numbers them.
    Number(usize),
    /// A commit id or a prefix of one (lowercase hex).
    Commit(String),
}

impl FromStr for Spec {
    type Err = CompareError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| CompareError::Malformed {
            spec: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let (head, tail) = match text.split_once(':') {
            Some((head, tail)) => (head, Some(tail)),
            None => (text, None),
        };
        if head.contains('#') {
            return Err(bad("`#ATTEMPT` needs a phase: RUN:PHASE#ATTEMPT"));
        }
        let (run, at) = match head.split_once('@') {
            Some((run, at)) => (run, Some(at)),
            None => (head, None),
        };
        if run.is_empty() {
            return Err(bad("it names no run (RUN comes first)"));
        }
        let at = at
            .map(|at| parse_at(at).map_err(|reason| bad(&reason)))
            .transpose()?;
        let (phase, attempt) = match tail {
            None => (None, None),
            Some(tail) => {
                let (phase, attempt) = match tail.split_once('#') {
                    Some((phase, attempt)) => (phase, Some(attempt)),
                    None => (tail, None),
                };
                if phase.is_empty() {
                    return Err(bad("it names no phase after `:`"));
                }
                if phase.contains([':', '@', '#']) {
                    return Err(bad(&format!("`{phase}` is not a phase id")));
                }
                let attempt = attempt
                    .map(|n| match n.parse::<u32>() {
                        Ok(n) if n >= 1 => Ok(n),
                        _ => Err(bad(&format!(
                            "attempt `{n}` is not a number from 1 (RUN:PHASE#ATTEMPT)"
                        ))),
                    })
                    .transpose()?;
                (Some(phase.to_string()), attempt)
            }
        };
        Ok(Spec {
            run: run.to_string(),
            at,
            phase,
            attempt,
        })
    }
}

/// Parses what follows `@`: a checkpoint number or a commit prefix.
pub(crate) fn parse_at(text: &str) -> Result<At, String> {
    if text.is_empty() {
        return Err("nothing follows `@` (RUN@N or RUN@COMMIT)".into());
    }
    if text.len() <= MAX_NUMBER_DIGITS && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(At::Number(n)),
            _ => Err(format!(
                "checkpoints are numbered from 1 (the run's creation); `@{text}` names none"
            )),
        };
    }
    if (MIN_COMMIT_PREFIX..=40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(At::Commit(text.to_ascii_lowercase()));
    }
    Err(format!(
        "`@{text}` is neither a checkpoint number nor a commit ({MIN_COMMIT_PREFIX} to 40 hex digits)"
    ))
}

/// Why two sides could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The text of a side does not follow `RUN[@AT][:PHASE[#ATTEMPT]]`.
    #[error("`{spec}` is not something to compare: {reason}")]
    Malformed {
        /// The side as written.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `RUN@N` with N past the run's last checkpoint.
    #[error("run {run} has {count} checkpoint{}; there is no @{number}", if *.count == 1 { "" } else { "s" })]
    NoCheckpointNumber {
        /// The run.
        run: RunId,
        /// The number asked for.
        number: usize,
        /// How many checkpoints the run has.
        count: usize,
    },
    /// `RUN@COMMIT` with a commit outside the run's history.
    #[error("checkpoint {checkpoint} is not part of run {run}")]
    NotInRun {
        /// The run.
        run: RunId,
        /// The commit (prefix) asked for.
        checkpoint: String,
    },
    /// `RUN@COMMIT` with a prefix matching several of the run's checkpoints.
    #[error("checkpoint prefix `{prefix}` is ambiguous in run {run}: it matches {}", .candidates.join(", "))]
    AmbiguousCheckpoint {
        /// The run.
        run: RunId,
        /// The prefix given.
        prefix: String,
        /// The checkpoints it matches (short ids).
        candidates: Vec<String>,
    },
    /// `RUN:PHASE` with a phase the run does not have.
    #[error("run {run} has no phase `{phase}`; its phases: {}", .known.join(", "))]
    NoPhase {
        /// The run.
        run: RunId,
        /// The phase asked for.
        phase: String,
        /// The run's phases.
        known: Vec<String>,
    },
    /// `RUN:PHASE#N` with an attempt the phase has not made.
    #[error("phase `{phase}` of run {run} has no attempt {attempt}; its attempts: {}", attempt_range(*.current))]
    NoAttempt {
        /// The run.
        run: RunId,
        /// The phase.
        phase: String,
        /// The attempt asked for.
        attempt: u32,
        /// The phase's current (last) attempt; 0 before the first.
        current: u32,
    },
    /// Reading the runs failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for CompareError {
    fn from(e: StoreError) -> Self {
        CompareError::Engine(EngineError::Store(e))
    }
}

fn attempt_range(current: u32) -> String {
    match current {
        0 => "none yet".to_string(),
        1 => "1".to_string(),
        n => format!("1 to {n}"),
    }
}

/// One side as resolved: which run, checkpoint, phase and attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// The side as written.
    pub spec: String,
    /// The run's full id.
    pub run: String,
    /// The run's template.
    pub template: String,
    /// The checkpoint compared (full commit id).
    pub checkpoint: String,
    /// Its number in the run's history, from 1 (as `wfe log` shows it).
    pub number: usize,
    /// The phase compared, when one side named a phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The attempt compared, when the side named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// True when the attempt failed and its rejected outputs stand for its artifacts.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rejected: bool,
}

/// A status on each side; `None` where the side has no such phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusChange<T> {
    /// The status on side A.
    pub from: Option<T>,
    /// The status on side B.
    pub to: Option<T>,
}

/// How an artifact differs between the sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactChange {
    /// Only side B has it.
    Added,
    /// Only side A has it.
    Removed,
    /// Both have it, with different content.
    Changed,
}

/// One artifact that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactDiff {
    /// The artifact's name.
    pub name: String,
    /// Added, removed or changed.
    pub kind: ArtifactChange,
    /// The structured diff; for a whole artifact added or removed, one
    /// change at the root pointer `""` holding the document.
    pub changes: Vec<Change>,
}

/// One phase that differs: its status, its artifacts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseDiff {
    /// The phase's id (side A's when both sides name different phases).
    pub phase: String,
    /// Side B's phase id, when it is not the same as `phase`.
    #[serde(rename = "phase_b", skip_serializing_if = "Option::is_none")]
    pub other_phase: Option<String>,
    /// The phase's status on each side, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusChange<PhaseStatus>>,
    /// The artifacts that differ, by name.
    pub artifacts: Vec<ArtifactDiff>,
    /// The file artifacts that differ (by size and hash), by path under `files/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDiff>,
}

/// One file artifact that differs between the sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// Its path under the phase's `files/`.
    pub path: String,
    /// Added, removed or changed.
    pub kind: ArtifactChange,
    /// Side A's size and hash, when it has the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<FileEntry>,
    /// Side B's size and hash, when it has the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<FileEntry>,
}

/// Everything that differs between two sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Side A, resolved.
    pub a: Side,
    /// Side B, resolved.
    pub b: Side,
    /// `run.json`'s status on each side, when whole runs are compared and it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_status: Option<StatusChange<RunStatus>>,
    /// The phases that differ: side A's in template order, then side B's own.
    pub phases: Vec<PhaseDiff>,
    /// Things worth knowing about the comparison itself (e.g. an attempt that kept nothing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Comparison {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.run_status.is_none() && self.phases.is_empty()
    }
}

/// Resolves the sides `a` and `b` (see [`Spec`]) and compares them.
///
/// Whole runs are compared phase by phase by phase id. When both sides name
/// a phase, those two phases are compared even if their ids differ; when
/// only one does, the other side is narrowed to the phase of the same id.
pub fn compare(store: &dyn RunStore, a: &str, b: &str) -> Result<Comparison, CompareError> {
    // Both parsed before anything is read, so a typo costs no I/O.
    let (spec_a, spec_b): (Spec, Spec) = (a.parse()?, b.parse()?);
    let phase_a = spec_a.phase.clone().or_else(|| spec_b.phase.clone());
    let phase_b = spec_b.phase.clone().or_else(|| spec_a.phase.clone());
    let mut notes = Vec::new();
    let side_a = load(store, a, &spec_a, phase_a.as_deref(), &mut notes)?;
    let side_b = load(store, b, &spec_b, phase_b.as_deref(), &mut notes)?;

    let whole = phase_a.is_none();
    let with_status = spec_a.attempt.is_none() && spec_b.attempt.is_none();
    let run_status = (whole && side_a.run_status != side_b.run_status).then_some(StatusChange {
        from: Some(side_a.run_status),
        to: Some(side_b.run_status),
    });
    if whole && side_a.side.template != side_b.side.template {
        notes.push(format!(
            "the runs are of different templates ({} and {}); phases are matched by id",
            side_a.side.template, side_b.side.template
        ));
    }

    let mut pairs: Vec<(Option<&Part>, Option<&Part>)> = Vec::new();
    if whole {
        for part in &side_a.parts {
            pairs.push((Some(part), side_b.parts.iter().find(|p| p.id == part.id)));
        }
        for part in &side_b.parts {
            if !side_a.parts.iter().any(|p| p.id == part.id) {
                pairs.push((None, Some(part)));
            }
        }
    } else {
        pairs.push((side_a.parts.first(), side_b.parts.first()));
    }
    let phases = pairs
        .into_iter()
        .filter_map(|(a, b)| diff_parts(a, b, with_status))
        .collect();
    Ok(Comparison {
        a: side_a.side,
        b: side_b.side,
        run_status,
        phases,
        notes,
    })
}

/// One side's content: the run's status and the phases in scope.
struct Loaded {
    side: Side,
    run_status: RunStatus,
    parts: Vec<Part>,
}

/// One phase's content on one side.
struct Part {
    id: String,
    /// `None` for an attempt, whose status is not recorded on its own.
    status: Option<PhaseStatus>,
    artifacts: BTreeMap<String, Value>,
    files: BTreeMap<String, FileEntry>,
}

fn load(
    store: &dyn RunStore,
    text: &str,
    spec: &Spec,
    phase: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Loaded, CompareError> {
    let run = store.resolve(&spec.run)?;
    let (checkpoint, number) = locate(store, &run, spec.at.as_ref())?;
    let snap = RunSnapshot::load(store, &run, &checkpoint)?;
    let mut side = Side {
        spec: text.to_string(),
        run: run.to_string(),
        template: snap.record.template.clone(),
        checkpoint: checkpoint.0.clone(),
        number,
        phase: phase.map(str::to_string),
        attempt: spec.attempt,
        rejected: false,
    };
    let parts = match phase {
        None => snap
            .phases
            .iter()
            .map(|state| current(store, &snap, state, notes))
            .collect::<Result<Vec<_>, _>>()?,
        Some(id) => {
            let state = snap.phase(id).ok_or_else(|| CompareError::NoPhase {
                run: run.clone(),
                phase: id.to_string(),
                known: snap.phases.iter().map(|p| p.id.clone()).collect(),
            })?;
            let part = match spec.attempt {
                None => current(store, &snap, state, notes)?,
                Some(n) => {
                    let (part, rejected) = attempt(store, &run, &snap, state, n, notes)?;
                    side.rejected = rejected;
                    part
                }
            };
            vec![part]
        }
    };
    Ok(Loaded {
        side,
        run_status: snap.record.status,
        parts,
    })
}

/// The checkpoint `at` names in `run`'s history, with its number from 1.
fn locate(
    store: &dyn RunStore,
    run: &RunId,
    at: Option<&At>,
) -> Result<(CheckpointId, usize), CompareError> {
    // Newest first: the tip is number `count`, the creation number 1.
    let history = store.history(run)?;
    let count = history.len();
    if count == 0 {
        return Err(StoreError::NoSuchRun {
            run: run.to_string(),
        }
        .into());
    }
    match at {
        None => Ok((history[0].id.clone(), count)),
        Some(At::Number(n)) if (1..=count).contains(n) => Ok((history[count - n].id.clone(), *n)),
        Some(At::Number(n)) => Err(CompareError::NoCheckpointNumber {
            run: run.clone(),
            number: *n,
            count,
        }),
        Some(At::Commit(prefix)) => {
            let hits: Vec<(usize, &CheckpointId)> = history
                .iter()
                .enumerate()
                .filter(|(_, c)| c.id.0.starts_with(prefix.as_str()))
                .map(|(k, c)| (count - k, &c.id))
                .collect();
            match hits.as_slice() {
                [] => Err(CompareError::NotInRun {
                    run: run.clone(),
                    checkpoint: prefix.clone(),
                }),
                [(number, id)] => Ok(((*id).clone(), *number)),
                many => Err(CompareError::AmbiguousCheckpoint {
                    run: run.clone(),
                    prefix: prefix.clone(),
                    candidates: many
                        .iter()
                        .map(|(n, id)| format!("@{n} {}", id.short()))
                        .collect(),
                }),
            }
        }
    }
}

/// A phase's current artifacts: those its `state.json` lists.
fn current(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    state: &PhaseState,
    notes: &mut Vec<String>,
) -> Result<Part, CompareError> {
    let mut artifacts = BTreeMap::new();
    for name in &state.artifacts {
        match snap.artifact(store, &state.id, name)? {
            Some(value) => {
                artifacts.insert(name.clone(), value);
            }
            None => notes.push(format!(
                "run {} at {}: phase `{}` lists artifact `{name}` but its file is missing",
                snap.record.id,
                snap.checkpoint.short(),
                state.id
            )),
        }
    }
    Ok(Part {
        id: state.id.clone(),
        status: Some(state.status),
        artifacts,
        files: files_at(store, &snap.checkpoint, &layout::files(&state.id))?,
    })
}

/// Attempt `n` of a phase: its artifacts if it is the current attempt and
/// was not archived, else the artifacts archived with it (a completed
/// attempt set aside by a retry), else the outputs it had rejected.
/// Returns whether the rejected outputs were used.
fn attempt(
    store: &dyn RunStore,
    run: &RunId,
    snap: &RunSnapshot,
    state: &PhaseState,
    n: u32,
    notes: &mut Vec<String>,
) -> Result<(Part, bool), CompareError> {
    if n == 0 || n > state.attempt {
        return Err(CompareError::NoAttempt {
            run: run.clone(),
            phase: state.id.clone(),
            attempt: n,
            current: state.attempt,
        });
    }
    let dir = layout::attempt(&state.id, n);
    let archived = !store.list_dir(&snap.checkpoint, &dir)?.is_empty();
    if n == state.attempt && !archived {
        let mut part = current(store, snap, state, notes)?;
        part.status = None;
        return Ok((part, false));
    }
    // A completed attempt set aside by `wfe retry` kept its artifacts.
    let kept = layout::attempt_artifacts(&state.id, n);
    let used_rejected = store.list_dir(&snap.checkpoint, &kept)?.is_empty();
    let source = if used_rejected {
        layout::rejected_dir(&state.id, n)
    } else {
        kept
    };
    let mut artifacts = BTreeMap::new();
    for (file, kind) in store.list_dir(&snap.checkpoint, &source)? {
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        if kind != EntryKind::File {
            continue;
        }
        let path = format!("{source}/{file}");
        let Some(bytes) = store.read(&snap.checkpoint, &path)? else {
            continue;
        };
        // A rejected output may not even be JSON: compare its text then.
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            notes.push(format!(
                "attempt {n} of phase `{}` wrote `{name}` as text that is not JSON; compared as a string",
                state.id
            ));
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        artifacts.insert(name.to_string(), value);
    }
    if artifacts.is_empty() {
        notes.push(format!(
            "attempt {n} of phase `{}` in run {run} kept no outputs; it compares as empty",
            state.id
        ));
    }
    let part = Part {
        id: state.id.clone(),
        status: None,
        artifacts,
        files: files_at(
            store,
            &snap.checkpoint,
            &layout::attempt_files(&state.id, n),
        )?,
    };
    Ok((part, used_rejected))
}

/// The differences of one pair of phases; `None` when there are none.
fn diff_parts(a: Option<&Part>, b: Option<&Part>, with_status: bool) -> Option<PhaseDiff> {
    let (id_a, id_b) = (a.map(|p| p.id.as_str()), b.map(|p| p.id.as_str()));
    let phase = id_a.or(id_b)?.to_string();
    let other_phase = match (id_a, id_b) {
        (Some(x), Some(y)) if x != y => Some(y.to_string()),
        _ => None,
    };
    let (from, to) = (a.and_then(|p| p.status), b.and_then(|p| p.status));
    let status = (with_status && from != to).then_some(StatusChange { from, to });
    let empty = BTreeMap::new();
    let (arts_a, arts_b) = (
        a.map_or(&empty, |p| &p.artifacts),
        b.map_or(&empty, |p| &p.artifacts),
    );
    let names: BTreeSet<&String> = arts_a.keys().chain(arts_b.keys()).collect();
    let artifacts: Vec<ArtifactDiff> = names
        .into_iter()
        .filter_map(|name| {
            let (kind, changes) = match (arts_a.get(name), arts_b.get(name)) {
                (Some(x), Some(y)) => (ArtifactChange::Changed, artifact::diff(x, y)),
                (Some(x), None) => (
                    ArtifactChange::Removed,
                    vec![Change::Removed {
                        path: String::new(),
                        value: x.clone(),
                    }],
                ),
                (None, Some(y)) => (
                    ArtifactChange::Added,
                    vec![Change::Added {
                        path: String::new(),
                        value: y.clone(),
                    }],
                ),
                (None, None) => return None,
            };
            (!changes.is_empty()).then(|| ArtifactDiff {
                name: name.clone(),
                kind,
                changes,
            })
        })
        .collect();
    let files = diff_files(a.map(|p| &p.files), b.map(|p| &p.files));
    (status.is_some() || !artifacts.is_empty() || !files.is_empty()).then_some(PhaseDiff {
        phase,
        other_phase,
        status,
        artifacts,
        files,
    })
}

/// A phase's file artifacts under `dir`, by path.
fn files_at(
    store: &dyn RunStore,
    at: &CheckpointId,
    dir: &str,
) -> Result<BTreeMap<String, FileEntry>, CompareError> {
    Ok(file_entries(store, at, dir)?
        .into_iter()
        .map(|e| (e.path.clone(), e))
        .collect())
}

/// The files added, removed, or changed in size or hash.
fn diff_files(
    a: Option<&BTreeMap<String, FileEntry>>,
    b: Option<&BTreeMap<String, FileEntry>>,
) -> Vec<FileDiff> {
    let empty = BTreeMap::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    let paths: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let (from, to) = (a.get(path), b.get(path));
            let kind = match (from, to) {
                (Some(x), Some(y)) if x == y => return None,
                (Some(_), Some(_)) => ArtifactChange::Changed,
                (Some(_), None) => ArtifactChange::Removed,
                (None, Some(_)) => ArtifactChange::Added,
                (None, None) => return None,
            };
            Some(FileDiff {
                path: path.clone(),
                kind,
                from: from.cloned(),
                to: to.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::{NewRun, create, to_file_bytes};
    use crate::store::{self, MemoryStore, Message};
    use crate::template::{PhaseKind, Template};
    use crate::time::Clock;

    /// A run of script phases `ids` in `store`, as `create` leaves it (checkpoint @1).
    fn new_run(store: &MemoryStore, template: &str, ids: &[&str]) -> RunId {
        let phases: Vec<Value> = ids
            .iter()
            .map(|id| json!({ "id": id, "kind": "script", "run": "true" }))
            .collect();
        let template: Template =
            serde_json::from_value(json!({ "name": template, "phases": phases })).unwrap();
        let new = NewRun {
            id: RunId::generate(),
            template,
            template_source: "test".into(),
            args: json!({}),
            schemas: Vec::new(),
            base_commit: "0".repeat(40),
            auto: true,
            secret_args: Vec::new(),
            budget: None,
        };
        create(store, &new, &Clock::system()).unwrap();
        new.id
    }

    /// Commits `phase` with `status`, `attempt` and `artifacts`, plus `extra` files.
    fn set_phase(
        store: &MemoryStore,
        run: &RunId,
        phase: &str,
        status: PhaseStatus,
        attempt: u32,
        artifacts: &[(&str, Value)],
        extra: &[(String, &str)],
    ) -> CheckpointId {
        let mut state = PhaseState::pending(phase, PhaseKind::Script);
        state.status = status;
        state.attempt = attempt;
        state.artifacts = artifacts.iter().map(|(n, _)| n.to_string()).collect();
        let mut changes = vec![store::Change::write(
            layout::state(phase),
            to_file_bytes(&state),
        )];
        for (name, value) in artifacts {
            changes.push(store::Change::write(
                layout::artifact(phase, name),
                to_file_bytes(value),
            ));
        }
        for (path, text) in extra {
            changes.push(store::Change::write(path.clone(), text.as_bytes()));
        }
        let tip = store.tip(run).unwrap();
        store
            .commit(run, tip.as_ref(), &changes, &Message::new("test"), 0)
            .unwrap()
    }

    #[test]
    fn specs_parse() {
        let ok = [
            ("latest", "latest", None, None, None),
            ("01ab", "01ab", None, None, None),
            ("r@2", "r", Some(At::Number(2)), None, None),
            (
                "r@00ABcd",
                "r",
                Some(At::Commit("00abcd".into())),
                None,
                None,
            ),
            (
                "r@1234567",
                "r",
                Some(At::Commit("1234567".into())),
                None,
                None,
            ),
            ("r:build", "r", None, Some("build"), None),
            (
                "r@3:build#2",
                "r",
                Some(At::Number(3)),
                Some("build"),
                Some(2),
            ),
        ];
        for (text, run, at, phase, attempt) in ok {
            let spec: Spec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            let expected = Spec {
                run: run.into(),
                at,
                phase: phase.map(String::from),
                attempt,
            };
            assert_eq!(spec, expected, "{text}");
        }
        let bad = [
            ("", "it is empty"),
            ("@2", "it names no run"),
            ("r@", "nothing follows `@`"),
            ("r@0", "numbered from 1"),
            ("r@xyz", "neither a checkpoint number nor a commit"),
            ("r@abc", "neither a checkpoint number nor a commit"),
            ("r:", "no phase"),
            ("r:p#0", "attempt `0` is not a number from 1"),
            ("r:p#x", "attempt `x`"),
            ("r#2", "needs a phase"),
            ("r:p:q", "`p:q` is not a phase id"),
        ];
        for (text, reason) in bad {
            let err = text.parse::<Spec>().unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn a_run_against_its_first_checkpoint() {
        let store = MemoryStore::new();
        let run = new_run(&store, "t", &["a", "b"]);
        set_phase(
            &store,
            &run,
            "a",
            PhaseStatus::Completed,
            1,
            &[("note", json!({"text": "hi"}))],
            &[],
        );
        let cmp = compare(&store, &format!("{run}@1"), run.as_str()).unwrap();
        assert_eq!((cmp.a.number, cmp.b.number), (1, 2));
        assert_eq!(cmp.run_status, None, "run.json did not change");
        assert_eq!(cmp.phases.len(), 1, "b did not change: {:?}", cmp.phases);
        let a = &cmp.phases[0];
        assert_eq!(a.phase, "a");
        assert_eq!(
            a.status,
            Some(StatusChange {
                from: Some(PhaseStatus::Pending),
                to: Some(PhaseStatus::Completed)
            })
        );
        assert_eq!(
            serde_json::to_value(&a.artifacts).unwrap(),
            json!([{ "name": "note", "kind": "added", "changes": [
                { "kind": "added", "path": "", "value": { "text": "hi" } }
            ] }])
        );
        let same = compare(&store, run.as_str(), "latest").unwrap();
        assert!(same.is_empty(), "{same:?}");
    }

    #[test]
    fn checkpoints_are_named_by_number_or_commit_of_that_run() {
        let store = MemoryStore::new();
        let run = new_run(&store, "t", &["a"]);
        let second = set_phase(&store, &run, "a", PhaseStatus::Running, 1, &[], &[]);
        let other = new_run(&store, "t", &["a"]);
        let other_tip = store.tip(&other).unwrap().unwrap();

        let cmp = compare(&store, &format!("{run}@{}", second.0), run.as_str()).unwrap();
        assert_eq!(cmp.a.number, 2);
        assert_eq!(cmp.a.checkpoint, second.0);

        let cases = [
            (
                format!("{run}@3"),
                format!("run {run} has 2 checkpoints; there is no @3"),
            ),
            (
                format!("{run}@{}", other_tip.0),
                format!("checkpoint {} is not part of run {run}", other_tip.0),
            ),
            (
                format!("{run}@0000000"),
                format!("checkpoint prefix `0000000` is ambiguous in run {run}"),
            ),
            (
                format!("{run}:nope"),
                format!("run {run} has no phase `nope`; its phases: a"),
            ),
            (
                format!("{run}:a#2"),
                format!("phase `a` of run {run} has no attempt 2; its attempts: 1"),
            ),
            ("zzzz".to_string(), "no run zzzz".to_string()),
        ];
        for (spec, message) in cases {
            let err = compare(&store, &spec, run.as_str())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&message), "{spec}: {err}");
        }
    }

    #[test]
    fn phases_with_different_ids_compare_by_artifact_name() {
        let store = MemoryStore::new();
        let one = new_run(&store, "t", &["plan"]);
        let two = new_run(&store, "u", &["draft"]);
        set_phase(
            &store,
            &one,
            "plan",
            PhaseStatus::Completed,
            1,
            &[("spec", json!({"v": 1}))],
            &[],
        );
        set_phase(
            &store,
            &two,
            "draft",
            PhaseStatus::Completed,
            1,
            &[("spec", json!({"v": 2}))],
            &[],
        );
        let cmp = compare(&store, &format!("{one}:plan"), &format!("{two}:draft")).unwrap();
        assert_eq!(
            cmp.run_status, None,
            "a phase comparison leaves run.json out"
        );
        assert_eq!(cmp.phases.len(), 1);
        let p = &cmp.phases[0];
        assert_eq!(
            (p.phase.as_str(), p.other_phase.as_deref()),
            ("plan", Some("draft"))
        );
        assert_eq!(p.status, None);
        assert_eq!(p.artifacts[0].kind, ArtifactChange::Changed);
        assert_eq!(
            p.artifacts[0].changes,
            [Change::Changed {
                path: "/v".into(),
                from: json!(1),
                to: json!(2)
            }]
        );

        // Whole runs of different templates: phases by id, and a note.
        let whole = compare(&store, one.as_str(), two.as_str()).unwrap();
        let ids: Vec<&str> = whole.phases.iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(ids, ["plan", "draft"]);
        assert_eq!(whole.phases[0].status.unwrap().to, None);
        assert_eq!(whole.phases[0].artifacts[0].kind, ArtifactChange::Removed);
        assert!(
            whole.notes[0].contains("different templates (t and u)"),
            "{:?}",
            whole.notes
        );

        // One side names a phase: the other is narrowed to it.
        let narrowed = compare(&store, &format!("{one}@1"), &format!("{one}:plan")).unwrap();
        assert_eq!(narrowed.a.phase.as_deref(), Some("plan"));
        assert_eq!(narrowed.phases.len(), 1);
    }

    #[test]
    fn attempts_compare_rejected_outputs_with_current_artifacts() {
        let store = MemoryStore::new();
        let run = new_run(&store, "t", &["p"]);
        let rejected = [
            (format!("{}/error.json", layout::attempt("p", 1)), "{}"),
            (
                format!("{}/rejected/out.json", layout::attempt("p", 1)),
                "{\"tasks\": []}",
            ),
            (format!("{}/log.jsonl", layout::attempt("p", 2)), ""),
        ];
        set_phase(
            &store,
            &run,
            "p",
            PhaseStatus::Completed,
            3,
            &[("out", json!({"tasks": [1]}))],
            &rejected,
        );
        let cmp = compare(&store, &format!("{run}:p#1"), &format!("{run}:p#3")).unwrap();
        assert!(cmp.a.rejected && !cmp.b.rejected);
        assert_eq!(cmp.phases[0].status, None, "attempts carry no status");
        assert_eq!(
            cmp.phases[0].artifacts[0].changes,
            [Change::Added {
                path: "/tasks/0".into(),
                value: json!(1)
            }]
        );
        assert!(cmp.notes.is_empty(), "{:?}", cmp.notes);

        let empty = compare(&store, &format!("{run}:p#2"), &format!("{run}:p#3")).unwrap();
        assert_eq!(empty.phases[0].artifacts[0].kind, ArtifactChange::Added);
        assert!(
            empty.notes[0].contains("attempt 2 of phase `p`"),
            "{:?}",
            empty.notes
        );
        assert!(
            empty.notes[0].contains("kept no outputs"),
            "{:?}",
            empty.notes
        );
    }
}
