//! The runner end to end on the memory store: what it does with phases
//! that succeed or fail is tested with the scripted [`Fake`] executor;
//! outputs, loops and interrupts run real scripts, as wiring tests.

mod loops;

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::{NewRun, Settings, create, drive, ensure_runnable, resumable};
use crate::attempt::AttemptError;
use crate::engine::control::Action;
use crate::engine::testing::{self, Fake, Quiet, exited, succeeded};
use crate::engine::{
    PhaseState, PhaseStatus, RunSnapshot, RunStatus, StopReason, layout, to_file_bytes,
};
use crate::store::{Change, MemoryStore, Message, RunId, RunStore};
use crate::template::{PhaseKind, Template};
use crate::time::Clock;

struct Fixture {
    store: MemoryStore,
    dir: tempfile::TempDir,
    settings: Settings,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = testing::settings(dir.path(), 2);
        Fixture {
            store: MemoryStore::new(),
            dir,
            settings,
        }
    }

    /// Creates a run of `phases` (JSON) with `args`; returns its id.
    fn create(&self, phases: Value, args: Value) -> RunId {
        let template: Template =
            serde_json::from_value(json!({ "name": "t", "phases": phases })).unwrap();
        let schemas = vec![
            (
                "message".to_string(),
                json!({ "type": "object", "required": ["text"] }),
            ),
            (
                "result".to_string(),
                json!({ "type": "object", "required": ["passed"] }),
            ),
        ];
        let new = NewRun {
            id: RunId::generate(),
            template,
            template_source: "test".into(),
            args,
            schemas,
            base_commit: "0".repeat(40),
            auto: true,
            secret_args: Vec::new(),
            budget: None,
        };
        create(&self.store, &new, &Clock::system()).unwrap();
        new.id
    }

    async fn drive(&self, run: &RunId) -> RunStatus {
        testing::drive_quietly(&self.store, run, &self.settings).await
    }

    fn snapshot(&self, run: &RunId) -> RunSnapshot {
        RunSnapshot::load_tip(&self.store, run).unwrap()
    }

    fn status(&self, run: &RunId, phase: &str) -> PhaseStatus {
        self.snapshot(run).phase(phase).unwrap().status
    }

    /// Drives `run` to its end with `fake` running its scripts.
    async fn drive_fake(&self, run: &RunId, fake: &Arc<Fake>) -> RunStatus {
        testing::drive_with_quietly(&self.store, run, &self.settings, fake.clone()).await
    }

    /// Lines appended by phases to `ran.txt` (their side effects).
    fn ran(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("ran.txt"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

fn phase(id: &str, needs: &[&str], run: &str) -> Value {
    json!({ "id": id, "kind": "script", "needs": needs, "run": format!("echo {id} >> ran.txt; {run}") })
}

#[tokio::test]
async fn a_chain_takes_one_checkpoint_per_phase_plus_start_and_creation() {
    let f = Fixture::new();
    let run = f.create(
        json!([
            phase("a", &[], "true"),
            phase("b", &["a"], "true"),
            phase("c", &["b"], "true")
        ]),
        json!({}),
    );
    let fake = Fake::new(|_| succeeded());
    assert_eq!(f.drive_fake(&run, &fake).await, RunStatus::Completed);
    let summaries: Vec<String> = f
        .store
        .history(&run)
        .unwrap()
        .into_iter()
        .rev()
        .map(|c| c.message.summary)
        .collect();
    assert_eq!(
        summaries,
        [
            "wfe: run created from template t",
            "wfe: run started; a started (attempt 1)",
            "wfe: a completed (attempt 1); b started (attempt 1)",
            "wfe: b completed (attempt 1); c started (attempt 1)",
            "wfe: c completed (attempt 1); run completed",
        ]
    );
    assert_eq!(fake.ran(), ["a", "b", "c"]);
}

#[tokio::test]
async fn a_false_if_skips_the_phase_and_its_dependants_still_run() {
    let f = Fixture::new();
    let mut maybe = phase("maybe", &["a"], "true");
    maybe["if"] = json!("args.go");
    let run = f.create(
        json!([
            phase("a", &[], "true"),
            maybe,
            phase("z", &["maybe"], "test '{{ skipped | join(',') }}' = maybe")
        ]),
        json!({ "go": false }),
    );
    // z passes only if its command rendered `skipped` as the skipped phase.
    let fake = Fake::new(|job| {
        if job.phase == "z" && !job.command.ends_with("test 'maybe' = maybe") {
            exited(1)
        } else {
            succeeded()
        }
    });
    assert_eq!(f.drive_fake(&run, &fake).await, RunStatus::Completed);
    assert_eq!(f.status(&run, "maybe"), PhaseStatus::Skipped);
    assert_eq!(fake.ran(), ["a", "z"]);
    let snap = f.snapshot(&run);
    assert_eq!(
        snap.phase("maybe").unwrap().skip_reason.as_deref(),
        Some("`if: args.go` is false")
    );
}

#[tokio::test]
async fn a_failure_stops_new_phases_but_lets_running_ones_finish() {
    let f = Fixture::new();
    let run = f.create(
        json!([
            phase("bad", &[], "exit 3"),
            phase("next", &["bad"], "true"),
            phase("other", &[], "true")
        ]),
        json!({}),
    );
    let fake = Fake::new(|job| {
        if job.phase == "bad" {
            exited(3)
        } else {
            succeeded()
        }
    });
    assert_eq!(f.drive_fake(&run, &fake).await, RunStatus::Failed);
    assert_eq!(f.status(&run, "bad"), PhaseStatus::Failed);
    assert_eq!(f.status(&run, "next"), PhaseStatus::Pending);
    assert_eq!(
        f.status(&run, "other"),
        PhaseStatus::Completed,
        "started alongside, it runs to its end"
    );
    let snap = f.snapshot(&run);
    assert_eq!(
        snap.record.reason,
        Some(StopReason::PhasesFailed {
            phases: vec!["bad".into()]
        })
    );
    assert_eq!(
        snap.phase("bad").unwrap().error,
        Some(AttemptError::Exit { code: 3 })
    );
    assert!(!fake.ran().contains(&"next".to_string()));
}

#[tokio::test]
async fn a_render_error_fails_the_phase_without_retrying() {
    let f = Fixture::new();
    let mut p = phase("p", &[], "true");
    p["run"] = json!("echo {{ args.x | nosuchfilter }}");
    p["retry"] = json!({ "max_attempts": 3, "backoff": "1ms" });
    let run = f.create(json!([p]), json!({}));
    let fake = Fake::new(|_| succeeded());
    assert_eq!(f.drive_fake(&run, &fake).await, RunStatus::Failed);
    let snap = f.snapshot(&run);
    let state = snap.phase("p").unwrap();
    assert_eq!(state.attempt, 1);
    assert!(
        matches!(&state.error, Some(AttemptError::Render { field, .. }) if field == "run"),
        "{:?}",
        state.error
    );
    assert!(fake.ran().is_empty());
}

#[tokio::test]
async fn resuming_reruns_only_what_was_running() {
    let f = Fixture::new();
    let run = f.create(
        json!([
            phase("a", &[], "true"),
            phase("b", &["a"], "true"),
            phase("c", &["b"], "true")
        ]),
        json!({}),
    );
    // Forge what a runner killed inside `b` leaves behind: a done, b running.
    let tip = f.store.tip(&run).unwrap().unwrap();
    let a = PhaseState {
        status: PhaseStatus::Completed,
        attempt: 1,
        ..PhaseState::pending("a", PhaseKind::Script)
    };
    let b = PhaseState {
        status: PhaseStatus::Running,
        attempt: 1,
        ..PhaseState::pending("b", PhaseKind::Script)
    };
    let changes = [
        Change::write(layout::state("a"), to_file_bytes(&a)),
        Change::write(layout::state("b"), to_file_bytes(&b)),
    ];
    f.store
        .commit(&run, Some(&tip), &changes, &Message::new("forged"), 0)
        .unwrap();

    let fake = Fake::new(|_| succeeded());
    assert_eq!(f.drive_fake(&run, &fake).await, RunStatus::Completed);
    assert_eq!(
        fake.ran(),
        ["b", "c"],
        "a completed before the crash and never runs again"
    );
    let snap = f.snapshot(&run);
    assert_eq!(snap.phase("b").unwrap().attempt, 2);
    let archived = f
        .store
        .read(&snap.checkpoint, "phases/b/attempts/1/error.json")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&archived).contains("interrupted"));
}

#[tokio::test]
async fn outputs_are_validated_and_passed_to_dependants() {
    let f = Fixture::new();
    let mut make = phase(
        "make",
        &[],
        "echo '{\"text\": \"hi\"}' > \"$WFE_OUT/note.json\"",
    );
    make["outputs"] = json!({ "note": "message" });
    let mut bad = phase("bad", &[], "echo '{}' > \"$WFE_OUT/note.json\"");
    bad["outputs"] = json!({ "note": "message" });
    bad["on_failure"] = json!("continue");
    let use_it = phase(
        "use",
        &["make"],
        "test \"$(cat $WFE_IN/make/note.json | tr -d ' \\n')\" = '{\"text\":\"hi\"}' && test '{{ artifacts.make.note.text }}' = hi",
    );
    let run = f.create(json!([make, bad, use_it]), json!({}));
    assert_eq!(f.drive(&run).await, RunStatus::Completed);
    assert_eq!(f.status(&run, "use"), PhaseStatus::Completed);
    assert_eq!(f.status(&run, "bad"), PhaseStatus::Failed);
    let snap = f.snapshot(&run);
    assert_eq!(
        snap.artifact(&f.store, "make", "note").unwrap(),
        Some(json!({ "text": "hi" }))
    );
    assert_eq!(snap.artifact(&f.store, "bad", "note").unwrap(), None);
    let rejected = f
        .store
        .read(&snap.checkpoint, "phases/bad/attempts/1/rejected/note.json")
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rejected).trim(), "{}");
}

fn summaries(f: &Fixture, run: &RunId) -> Vec<String> {
    f.store
        .history(run)
        .unwrap()
        .into_iter()
        .rev()
        .map(|c| c.message.summary)
        .collect()
}

/// Commits `files` (path, JSON) on top of the run's tip.
fn forge(f: &Fixture, run: &RunId, files: &[(String, Value)]) {
    let tip = f.store.tip(run).unwrap().unwrap();
    let changes: Vec<Change> = files
        .iter()
        .map(|(path, value)| Change::write(path.clone(), to_file_bytes(value)))
        .collect();
    f.store
        .commit(run, Some(&tip), &changes, &Message::new("forged"), 0)
        .unwrap();
}

fn forged_state(id: &str, status: PhaseStatus, attempt: u32, iteration: u32) -> Value {
    let kind = if id == "fix" {
        PhaseKind::Loop
    } else {
        PhaseKind::Script
    };
    // Forged as a dead runner would leave it, not through transitions.
    let mut state = PhaseState {
        status,
        attempt,
        iteration,
        ..PhaseState::pending(id, kind)
    };
    if id == "b" && status == PhaseStatus::Completed {
        state.artifacts = vec!["result".into()];
    }
    serde_json::to_value(state).unwrap()
}

/// An executor whose script attempts say they started, then run until
/// they are cancelled.
struct UntilCancelled {
    started: tokio::sync::mpsc::UnboundedSender<String>,
}

impl crate::engine::Executor for UntilCancelled {
    fn run_script(
        &self,
        job: crate::exec::ScriptJob,
        mut cancel: watch::Receiver<bool>,
        _: Arc<dyn crate::attempt::LogSink>,
        _: Clock,
    ) -> futures_util::future::BoxFuture<'static, crate::attempt::AttemptOutcome> {
        let started = self.started.clone();
        Box::pin(async move {
            let _ = started.send(job.phase.clone());
            let _ = cancel.wait_for(|c| *c).await;
            crate::attempt::AttemptOutcome {
                result: Err(AttemptError::Cancelled),
                exit_code: None,
                log: Vec::new(),
                rejected: Vec::new(),
                usage: None,
                files: Vec::new(),
            }
        })
    }

    fn run_agent(
        &self,
        _: crate::agent::AgentJob,
        _: watch::Receiver<bool>,
        _: Arc<dyn crate::attempt::LogSink>,
        _: crate::agent::Progress,
        _: Clock,
    ) -> futures_util::future::BoxFuture<'static, crate::attempt::AttemptOutcome> {
        let outcome = crate::attempt::AttemptOutcome {
            result: Err(AttemptError::Internal {
                message: "no agent phases here".into(),
            }),
            exit_code: None,
            log: Vec::new(),
            rejected: Vec::new(),
            usage: None,
            files: Vec::new(),
        };
        Box::pin(async move { outcome })
    }
}

#[tokio::test]
async fn a_request_sent_while_the_runner_waits_on_its_phases_is_handled() {
    // The runner lists the control directory only when its watch says it
    // changed: a request made once the runner is waiting on a phase that
    // never ends by itself must still be seen, or this run never ends.
    let mut f = Fixture::new();
    let run = f.create(json!([phase("a", &[], "true")]), json!({}));
    let control = crate::engine::control::ControlDir::new(f.dir.path(), run.as_str());
    f.settings.control = Some(control.clone());
    let (started, mut phases) = tokio::sync::mpsc::unbounded_channel();
    let executor = Arc::new(UntilCancelled { started });
    let drive = testing::drive_with_quietly(&f.store, &run, &f.settings, executor);
    let cancel = async {
        // The phase runs: the runner has listed the directory and waits.
        assert_eq!(phases.recv().await.as_deref(), Some("a"));
        control.send(Action::Cancel, "tester").unwrap()
    };
    // The bound only turns a hang into a failure.
    let (status, id) = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        tokio::join!(drive, cancel)
    })
    .await
    .expect("the cancel request was never handled");
    assert_eq!(status, RunStatus::Cancelled);
    assert_eq!(f.status(&run, "a"), PhaseStatus::Cancelled);
    assert!(control.take_reply(&id).is_some_and(|r| r.ok));
}
