//! The phase view: one phase of a run (a top-level phase, or a loop's child
//! in one iteration) with its current attempt, the earlier attempts kept
//! under `attempts/<n>/` and the outputs they had rejected, its log, its
//! comments and, for a loop, every iteration.

use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::super::{Comment, PhaseState, PhaseStatus, RunSnapshot, layout, operations};
use super::ViewError;
use super::files::{FileEntry, entries as file_entries};
use crate::attempt::{AttemptError, LogLine};
use crate::store::{EntryKind, RunId, RunStore};
use crate::template::PhaseKind;

/// One phase of a run, as `wfe show RUN PHASE` presents it.
///
/// Serialises as `wfe show RUN PHASE --json` prints it: `state`, `log`,
/// `failed_attempts`, `rejected`, `expected_schemas`, `comments`, and for a
/// loop `iterations`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseView {
    /// The run's id.
    pub run: String,
    /// The phase's id.
    pub phase: String,
    /// Where its files are: its id, or a loop child's [`layout::child_key`].
    pub key: String,
    /// A loop's child: the loop's id (inside a nested loop, after the
    /// loops around it with their iterations: `outer[2]/inner`) and the
    /// iteration shown.
    pub within: Option<(String, u32)>,
    /// How `wfe show` names it: its id, `CHILD@K` in a loop, `CHILD@J.K`
    /// in a loop inside a loop.
    pub address: String,
    /// Its `state.json`: status, the current (or last) attempt's number,
    /// exit code, error, duration, provider, model and token usage.
    pub state: PhaseState,
    /// A loop: how it iterates; `None` for any other phase.
    pub loop_spec: Option<LoopSpec>,
    /// A loop that has started: its children's states in each iteration,
    /// from the first; empty otherwise.
    pub iterations: Vec<Vec<PhaseState>>,
    /// The earlier attempts kept under `attempts/<n>/`, in the order of
    /// their directories.
    pub attempts: Vec<AttemptView>,
    /// When the last attempt's outputs did not match their schemas: each
    /// rejected artifact's frozen schema, by artifact name.
    pub expected_schemas: Map<String, Value>,
    /// An agent phase's recorded exchanges (a path in the checkpoint), if any.
    pub exchanges: Option<String>,
    /// An agent phase's recorded tool calls (a path in the checkpoint), if any.
    pub tool_calls: Option<String>,
    /// The comments left on this phase, oldest first.
    pub comments: Vec<Comment>,
    /// Its whole log, every attempt.
    pub log: Vec<LogLine>,
    /// Its file artifacts under `files/`, with sizes and hashes.
    pub files: Vec<FileEntry>,
}

/// How a loop iterates, from its template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopSpec {
    /// The most iterations it may run (1 when the template says nothing).
    pub max_iters: u32,
    /// The expression that ends it, if any.
    pub until: Option<String>,
    /// The phase it hands over to when it runs out (`on_exhausted: {"next": …}`).
    pub next: Option<String>,
}

/// An earlier attempt of a phase, kept under `attempts/<n>/`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptView {
    /// Its directory's name: the attempt's number.
    pub number: String,
    /// Why it failed, if its `error.json` says so.
    pub error: Option<AttemptError>,
    /// The outputs validation rejected, kept under `rejected/`.
    pub rejected: Vec<RejectedOutput>,
}

/// An output an attempt wrote and validation rejected, kept as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedOutput {
    /// The file's name under `rejected/` (`<artifact>.json`).
    pub file: String,
    /// Its text (invalid UTF-8 replaced).
    pub text: String,
}

impl PhaseView {
    /// Phase `asked` of the run at its tip: a top-level phase (`PHASE`), or
    /// a loop's child in its loop's current iteration (`CHILD`) or in
    /// iteration N (`CHILD@N`).
    pub fn load(store: &dyn RunStore, run: &RunId, asked: &str) -> Result<Self, ViewError> {
        let snap = RunSnapshot::load_tip(store, run)?;
        let found = locate(store, &snap, asked)?;
        let comments = operations::comments(store, &snap)?
            .into_iter()
            .filter(|c| c.phase.as_deref() == Some(found.phase.as_str()))
            .collect();
        let log = read_log(store, &snap, &found.key)?;
        let attempts = attempts(store, &snap, &found.key)?;
        let expected_schemas = expected_schemas(store, &snap, &found)?;
        let iterations = iterations(store, &snap, &found)?;
        let files = file_entries(store, &snap.checkpoint, &layout::files(&found.key))?;
        let spec = snap.spec(&found.phase);
        let loop_spec = spec
            .filter(|p| p.kind == PhaseKind::Loop)
            .map(|p| LoopSpec {
                max_iters: p.max_iters.unwrap_or(1),
                until: p.until.clone(),
                next: p
                    .on_exhausted
                    .as_ref()
                    .and_then(|o| o.next())
                    .map(str::to_string),
            });
        let (exchanges, tool_calls) = if found.state.kind == PhaseKind::Agent {
            let files = store.list_dir(&snap.checkpoint, &layout::phase_dir(&found.key))?;
            let kept = |path: String| {
                let name = path.rsplit('/').next().unwrap_or_default();
                files.iter().any(|(n, _)| n == name).then_some(path)
            };
            (
                kept(layout::exchanges(&found.key)),
                kept(layout::tool_calls(&found.key)),
            )
        } else {
            (None, None)
        };
        Ok(PhaseView {
            run: snap.record.id.clone(),
            address: if found.at.is_empty() {
                found.phase.clone()
            } else {
                format!("{}@{}", found.phase, join(&found.at))
            },
            phase: found.phase,
            key: found.key,
            within: found.within,
            state: found.state,
            loop_spec,
            iterations,
            attempts,
            expected_schemas,
            exchanges,
            tool_calls,
            comments,
            log,
            files,
        })
    }

    /// Whether this is a top-level phase (not a loop's child).
    pub fn is_top_level(&self) -> bool {
        self.within.is_none()
    }

    /// The last `n` lines of the log, and how many lines come before them.
    pub fn log_tail(&self, n: usize) -> (usize, &[LogLine]) {
        let skip = self.log.len().saturating_sub(n);
        (skip, &self.log[skip..])
    }
}

/// Artifact `name` of phase `asked` (as [`PhaseView::load`] names phases)
/// of the run at its tip.
pub fn artifact(
    store: &dyn RunStore,
    run: &RunId,
    asked: &str,
    name: &str,
) -> Result<Value, ViewError> {
    let snap = RunSnapshot::load_tip(store, run)?;
    let found = locate(store, &snap, asked)?;
    snap.artifact(store, &found.key, name)?
        .ok_or_else(|| ViewError::NoSuchArtifact {
            run: run.to_string(),
            phase: found.phase,
            name: name.to_string(),
            have: found.state.artifacts,
        })
}

/// A phase found in a run.
pub(super) struct Found {
    /// Its id.
    pub(super) phase: String,
    /// Where its files are.
    pub(super) key: String,
    /// A loop's child: the loop and the iteration.
    pub(super) within: Option<(String, u32)>,
    /// The iterations of the loops it is inside, outermost first.
    pub(super) at: Vec<u32>,
    /// Its state.
    pub(super) state: PhaseState,
}

/// Finds a top-level phase (`PHASE`), or a loop's child in its loop's
/// current iteration (`CHILD`) or in iteration N (`CHILD@N`).
pub(super) fn locate(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    asked: &str,
) -> Result<Found, ViewError> {
    let run = &snap.record.id;
    let (phase, at) = match asked.split_once('@') {
        Some((phase, n)) => {
            let at = n
                .split('.')
                .map(|k| k.parse().ok())
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| ViewError::BadIteration {
                    asked: asked.to_string(),
                })?;
            (phase, Some(at))
        }
        None => (asked, None),
    };
    if let Some(state) = snap.phase(phase) {
        if at.is_some() {
            return Err(ViewError::NotInLoop {
                phase: phase.to_string(),
            });
        }
        return Ok(Found {
            phase: phase.to_string(),
            key: phase.to_string(),
            within: None,
            at: Vec::new(),
            state: state.clone(),
        });
    }
    let enclosing = snap.enclosing(phase);
    let Some(parent) = enclosing.last() else {
        let known = snap
            .template
            .phases
            .iter()
            .map(|p| match p.kind {
                PhaseKind::Loop => {
                    let children: Vec<&str> = p.phases.iter().map(|c| c.id.as_str()).collect();
                    format!("{} (loop of {})", p.id, children.join(", "))
                }
                _ => p.id.clone(),
            })
            .collect();
        return Err(super::super::EngineError::NoSuchPhase {
            run: run.clone(),
            phase: phase.to_string(),
            known,
        }
        .into());
    };
    let at = match at {
        Some(at) if at.len() != enclosing.len() => {
            return Err(ViewError::BadIteration {
                asked: asked.to_string(),
            });
        }
        Some(at) => at,
        None => snap.current_iterations(phase),
    };
    // Each enclosing loop, in the iterations of those around it, must
    // have reached the iteration asked for.
    for (i, l) in enclosing.iter().enumerate() {
        let ran = match i {
            0 => snap.phase(&l.id).map_or(0, |p| p.iteration),
            _ => snap
                .iteration_in(store, &enclosing[i - 1].id, &at[..i - 1], at[i - 1])?
                .into_iter()
                .find(|c| c.id == l.id)
                .filter(|c| c.status != PhaseStatus::Pending)
                .map_or(0, |c| c.iteration),
        };
        if ran == 0 {
            return Err(ViewError::NoIterationYet {
                run: run.clone(),
                parent: l.id.clone(),
                phase: phase.to_string(),
            });
        }
        if at[i] == 0 || at[i] > ran {
            return Err(ViewError::NoSuchIteration {
                run: run.clone(),
                parent: l.id.clone(),
                phase: phase.to_string(),
                ran,
                asked: join(&at),
            });
        }
    }
    let n = at.len();
    let state = snap
        .iteration_in(store, &parent.id, &at[..n - 1], at[n - 1])?
        .into_iter()
        .find(|c| c.id == phase)
        .ok_or_else(|| ViewError::NoSuchChild {
            run: run.clone(),
            phase: phase.to_string(),
        })?;
    // `outer[2]/inner` for a child of a nested loop.
    let mut label = String::new();
    for (l, k) in enclosing.iter().zip(&at).take(n - 1) {
        label.push_str(&format!("{}[{k}]/", l.id));
    }
    label.push_str(&parent.id);
    Ok(Found {
        phase: phase.to_string(),
        key: snap.key_at(phase, &at),
        within: Some((label, at[n - 1])),
        at,
        state,
    })
}

/// Iterations as addresses spell them: `2.3`.
fn join(at: &[u32]) -> String {
    at.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// The earlier attempts under `attempts/`, with their errors and rejected outputs.
fn attempts(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    key: &str,
) -> Result<Vec<AttemptView>, ViewError> {
    let at = &snap.checkpoint;
    let dir = layout::attempts(key);
    let mut out = Vec::new();
    for (number, kind) in store.list_dir(at, &dir)? {
        if kind != EntryKind::Dir {
            continue;
        }
        // An error file a later version wrote differently is shown as no
        // error rather than making the whole phase unreadable.
        let error = store
            .read(at, &layout::attempt_error(key, &number))?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let rejected_dir = layout::rejected_dir(key, &number);
        let mut rejected = Vec::new();
        for (file, _) in store.list_dir(at, &rejected_dir)? {
            if let Some(bytes) = store.read(at, &format!("{rejected_dir}/{file}"))? {
                rejected.push(RejectedOutput {
                    file,
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
        }
        out.push(AttemptView {
            number,
            error,
            rejected,
        });
    }
    Ok(out)
}

/// The frozen schemas the last attempt's rejected outputs had to match.
fn expected_schemas(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    found: &Found,
) -> Result<Map<String, Value>, ViewError> {
    let mut expected = Map::new();
    if let Some(AttemptError::InvalidOutputs { problems }) = &found.state.error {
        let schemas = snap.schemas(store)?;
        let outputs = snap.spec(&found.phase).map(|p| &p.outputs);
        for p in problems {
            let schema = outputs
                .and_then(|o| o.get(&p.artifact))
                .and_then(|name| schemas.get(name));
            if let Some(schema) = schema {
                expected.insert(p.artifact.clone(), schema.json().clone());
            }
        }
    }
    Ok(expected)
}

/// A started loop's iterations (its children's states in each, from the
/// first); empty for any other phase.
fn iterations(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    found: &Found,
) -> Result<Vec<Vec<PhaseState>>, ViewError> {
    let is_loop = found.state.kind == PhaseKind::Loop
        && found.state.status != PhaseStatus::Pending
        && found.state.iteration > 0;
    if !is_loop {
        return Ok(Vec::new());
    }
    (1..=found.state.iteration)
        .map(|k| Ok(snap.iteration_in(store, &found.phase, &found.at, k)?))
        .collect()
}

/// The phase's log; lines that do not parse are left out.
fn read_log(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    key: &str,
) -> Result<Vec<LogLine>, ViewError> {
    let bytes = store
        .read(&snap.checkpoint, &layout::log(key))?
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
        .collect())
}

impl Serialize for PhaseView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct PhaseJson<'a> {
            state: &'a PhaseState,
            log: &'a [LogLine],
            failed_attempts: Vec<&'a str>,
            rejected: Map<String, Value>,
            expected_schemas: &'a Map<String, Value>,
            comments: &'a [Comment],
            #[serde(skip_serializing_if = "Option::is_none")]
            iterations: Option<Vec<Value>>,
            #[serde(skip_serializing_if = "<[FileEntry]>::is_empty")]
            files: &'a [FileEntry],
        }
        let rejected = self
            .attempts
            .iter()
            .flat_map(|a| {
                a.rejected
                    .iter()
                    .map(move |r| (format!("{}/{}", a.number, r.file), json!(r.text)))
            })
            .collect();
        let iterations = self.loop_spec.as_ref().map(|_| {
            self.iterations
                .iter()
                .enumerate()
                .map(|(k, children)| json!({ "iteration": k + 1, "children": children }))
                .collect()
        });
        PhaseJson {
            state: &self.state,
            log: &self.log,
            failed_attempts: self.attempts.iter().map(|a| a.number.as_str()).collect(),
            rejected,
            expected_schemas: &self.expected_schemas,
            comments: &self.comments,
            iterations,
            files: &self.files,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::Fixture;
    use super::*;
    use crate::engine::PhaseStatus;

    #[test]
    fn a_phase_view_has_its_attempts_rejected_outputs_schemas_comments_and_log() {
        let f = Fixture::new();
        let run = f.failed_run();
        let view = PhaseView::load(&f.store, &run, "boom").unwrap();
        assert_eq!((view.phase.as_str(), view.key.as_str()), ("boom", "boom"));
        assert!(view.is_top_level());
        assert_eq!(view.state.status, PhaseStatus::Failed);
        assert_eq!(view.state.attempt, 2);
        let numbers: Vec<&str> = view.attempts.iter().map(|a| a.number.as_str()).collect();
        assert_eq!(numbers, ["1", "2"]);
        assert_eq!(view.attempts[0].error, Some(AttemptError::Exit { code: 3 }));
        assert!(view.attempts[0].rejected.is_empty());
        assert!(matches!(
            view.attempts[1].error,
            Some(AttemptError::InvalidOutputs { .. })
        ));
        assert_eq!(
            view.attempts[1].rejected,
            [RejectedOutput {
                file: "note.json".into(),
                text: "{\"nottext\": 1}\n".into()
            }]
        );
        assert_eq!(view.expected_schemas["note"]["required"], json!(["text"]));
        let comments: Vec<&str> = view.comments.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(comments, ["on boom"], "only the phase's own comments");
        let log: Vec<&str> = view.log.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(log, ["first", "second"]);
        assert_eq!((view.loop_spec.clone(), view.iterations.len()), (None, 0));
        assert_eq!(
            (view.exchanges.clone(), view.tool_calls.clone()),
            (None, None)
        );

        let doc = serde_json::to_value(&view).unwrap();
        assert_eq!(doc["failed_attempts"], json!(["1", "2"]));
        assert_eq!(
            doc["rejected"],
            json!({ "2/note.json": "{\"nottext\": 1}\n" })
        );
        assert_eq!(doc["state"], json!(view.state));
        assert_eq!(doc["comments"][0]["text"], "on boom");
        assert_eq!(doc["log"][1]["line"], "second");
        assert!(doc.get("iterations").is_none(), "not a loop: {doc}");
    }

    #[test]
    fn the_log_tail_says_how_many_lines_it_left_out() {
        let f = Fixture::new();
        let run = f.failed_run();
        let view = PhaseView::load(&f.store, &run, "ok").unwrap();
        let (skipped, tail) = view.log_tail(40);
        assert_eq!((skipped, tail.len()), (10, 40));
        assert_eq!(tail[0].line, "line 11");
        let (skipped, tail) = view.log_tail(100);
        assert_eq!((skipped, tail.len()), (0, 50));
        assert!(view.attempts.is_empty());
        assert!(view.expected_schemas.is_empty());
    }

    #[test]
    fn a_loop_view_has_every_iteration_and_a_child_is_found_in_any() {
        let f = Fixture::new();
        let run = f.loop_run();
        let repair = PhaseView::load(&f.store, &run, "repair").unwrap();
        assert_eq!(
            repair.loop_spec,
            Some(LoopSpec {
                max_iters: 3,
                until: Some("artifacts.test.result.passed".into()),
                next: None,
            })
        );
        assert_eq!(repair.iterations.len(), 2);
        assert_eq!(repair.iterations[1][1].id, "test");
        let doc = serde_json::to_value(&repair).unwrap();
        assert_eq!(doc["iterations"][1]["iteration"], 2);
        assert_eq!(doc["iterations"][0]["children"][0]["id"], "fix");

        let fix = PhaseView::load(&f.store, &run, "fix").unwrap();
        assert_eq!(fix.within, Some(("repair".to_string(), 2)));
        assert_eq!(fix.key, "repair/iterations/2/fix");
        assert_eq!(fix.state.usage.as_ref().map(|u| u.requests), Some(2));
        assert_eq!(
            fix.exchanges.as_deref(),
            Some("phases/repair/iterations/2/fix/exchanges.jsonl")
        );
        assert_eq!(fix.tool_calls, None, "no tool calls were recorded");
        let first = PhaseView::load(&f.store, &run, "fix@1").unwrap();
        assert_eq!(first.state.usage.as_ref().map(|u| u.requests), Some(1));
        let test = PhaseView::load(&f.store, &run, "test@1").unwrap();
        assert_eq!(test.log[0].line, "test 1");
        assert!(test.iterations.is_empty());
    }

    #[test]
    fn phases_iterations_and_artifacts_not_in_the_run_are_refused_in_words() {
        let f = Fixture::new();
        let run = f.loop_run();
        let id = run.as_str();
        let error = |asked: &str| {
            PhaseView::load(&f.store, &run, asked)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("test@x"),
            "`test@x`: expected CHILD@N with N an iteration number (CHILD@J.K inside a loop in a loop: one per loop, outermost first)"
        );
        assert_eq!(
            error("build@1"),
            "`build` is not inside a loop; `@N` picks an iteration of a loop's child phase"
        );
        assert_eq!(
            error("test@3"),
            format!("loop `repair` of run {id} has iterations 1 to 2; there is no `test@3`")
        );
        assert_eq!(
            error("test@0"),
            format!("loop `repair` of run {id} has iterations 1 to 2; there is no `test@0`")
        );
        assert_eq!(
            error("nope"),
            format!(
                "run {id} has no phase `nope`; its phases: build, repair (loop of fix, test), ship"
            )
        );

        let failed = f.failed_run();
        assert_eq!(
            artifact(&f.store, &failed, "ok", "greeting").unwrap(),
            json!({ "text": "hi" })
        );
        let missing = artifact(&f.store, &failed, "boom", "note").unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!("phase `boom` of run {failed} has no artifact `note`; it has: none")
        );
        let missing = artifact(&f.store, &failed, "ok", "nope").unwrap_err();
        assert!(
            missing.to_string().ends_with("it has: greeting"),
            "{missing}"
        );
    }
}
