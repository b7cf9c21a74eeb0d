//! Retry, skip, rollback and undo end to end on the memory store.

use serde_json::{Value, json};

use super::*;
use crate::engine::testing;
use crate::engine::{CheckpointEvent, CheckpointMessage, NewRun, Settings, create};
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
            secret_args: Vec::new(),
            budget: None,
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
        ..Overrides::default()
    };
    let retried = retry(&f.store, &run, "c", ME, &overrides, &f.clock).expect("retry");
    assert_eq!(retried.next_attempt, 2);
    assert_eq!(retried.reset, ["d", "e"]);
    let snap = f.snap(&run);
    assert_eq!(snap.record.status, RunStatus::Paused);
    assert_eq!(
        snap.record.reason,
        Some(StopReason::RetryRequested { phase: "c".into() })
    );
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
    let message = CheckpointMessage::parse(&cp.message);
    let events: Vec<(Option<&str>, &CheckpointEvent)> = message
        .events
        .iter()
        .map(|n| (n.phase.as_deref(), &n.event))
        .collect();
    assert_eq!(
        events,
        vec![
            (Some("c"), &CheckpointEvent::PhaseRetryRequested),
            (Some("d"), &CheckpointEvent::PhaseReset),
            (Some("e"), &CheckpointEvent::PhaseReset),
            (None, &CheckpointEvent::RunPaused),
        ]
    );
    assert_eq!(message.requested_by, [ME]);
    assert_eq!(message.model.as_deref(), Some("m2"));
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
