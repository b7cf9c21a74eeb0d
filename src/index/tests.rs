//! The index against the in-memory store: incremental catch-up, rollback,
//! removed runs, a busy writer, a kept writer and the background indexer
//! letting go of it, versions, and what a checkpoint yields.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::store::{
    Change, Checkpoint, CheckpointId, EntryKind, MemoryStore, Message, RunHead, RunId, RunStore,
};

/// A memory store whose refs can be moved back, as `wfe rollback` and
/// `wfe rm` would; clones share it (one for a background indexer's thread).
#[derive(Default, Clone)]
struct Store {
    inner: Arc<MemoryStore>,
    moved: Arc<Mutex<HashMap<RunId, Option<CheckpointId>>>>,
}

impl Store {
    fn set_tip(&self, run: &RunId, tip: Option<&CheckpointId>) {
        self.moved.lock().unwrap().insert(run.clone(), tip.cloned());
    }

    /// Commits `files` (path, JSON) on top of the run's tip.
    fn put(&self, run: &RunId, status: &str, files: &[(&str, serde_json::Value)]) -> CheckpointId {
        let tip = self.tip(run).unwrap();
        let mut changes = vec![Change::write(
            "run.json",
            json!({ "id": run.as_str(), "template": "t", "status": status }).to_string(),
        )];
        if tip.is_none() {
            changes.push(Change::write(
                "template.json",
                json!({ "name": "t", "phases": [ { "id": "review", "outputs": { "review": "review" } } ] })
                    .to_string(),
            ));
        }
        for (path, value) in files {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            changes.push(Change::write(*path, text));
        }
        self.moved.lock().unwrap().remove(run);
        self.inner
            .commit(
                run,
                tip.as_ref(),
                &changes,
                &Message::new("wfe: test"),
                1_700_000_000,
            )
            .unwrap()
    }
}

impl RunStore for Store {
    fn tip(&self, run: &RunId) -> crate::store::Result<Option<CheckpointId>> {
        match self.moved.lock().unwrap().get(run) {
            Some(tip) => Ok(tip.clone()),
            None => self.inner.tip(run),
        }
    }
    fn commit(
        &self,
        run: &RunId,
        parent: Option<&CheckpointId>,
        changes: &[Change],
        message: &Message,
        time: i64,
    ) -> crate::store::Result<CheckpointId> {
        self.inner.commit(run, parent, changes, message, time)
    }
    fn read(&self, at: &CheckpointId, path: &str) -> crate::store::Result<Option<Vec<u8>>> {
        self.inner.read(at, path)
    }
    fn list_dir(
        &self,
        at: &CheckpointId,
        path: &str,
    ) -> crate::store::Result<Vec<(String, EntryKind)>> {
        self.inner.list_dir(at, path)
    }
    fn checkpoint(&self, id: &CheckpointId) -> crate::store::Result<Checkpoint> {
        self.inner.checkpoint(id)
    }
    fn reset(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        to: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> crate::store::Result<crate::store::Trashed> {
        self.inner.reset(run, expected, to, reason, time)
    }
    fn trashed(&self, run: &RunId) -> crate::store::Result<Vec<crate::store::Trashed>> {
        self.inner.trashed(run)
    }
    fn undo(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> crate::store::Result<crate::store::Undone> {
        self.inner.undo(run, expected, reason, time)
    }
    fn scan_each(
        &self,
        each: &mut dyn FnMut(RunHead),
    ) -> crate::store::Result<Vec<crate::store::BrokenRun>> {
        let list = self.inner.scan()?;
        for head in list.heads {
            match self.tip(&head.run)? {
                Some(tip) => each(RunHead {
                    tip: self.checkpoint(&tip)?,
                    run: head.run,
                }),
                None => continue,
            }
        }
        Ok(list.broken)
    }
    fn remove(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> crate::store::Result<crate::store::Trashed> {
        self.inner.remove(run, expected, reason, time)
    }
    fn restore(
        &self,
        run: &RunId,
        reason: &str,
        time: i64,
    ) -> crate::store::Result<crate::store::Trashed> {
        self.inner.restore(run, reason, time)
    }
    fn purge(
        &self,
        run: &RunId,
        expected: Option<&CheckpointId>,
    ) -> crate::store::Result<crate::store::Purged> {
        self.inner.purge(run, expected)
    }
    fn removed(&self) -> crate::store::Result<Vec<RunId>> {
        self.inner.removed()
    }
}

const WAIT: Duration = Duration::from_millis(100);

fn run_id(n: u8) -> RunId {
    RunId::parse(&format!("01kaxz{:020}", n)).unwrap()
}

fn review(verdict: &str, summary: &str) -> serde_json::Value {
    json!({ "verdict": verdict, "summary": summary, "findings": [ { "severity": "major", "message": "flaky widget test" } ] })
}

fn runs_of(index: &SearchIndex, store: &Store, query: &str) -> Vec<String> {
    let mut runs: Vec<String> = index
        .search(store, &Search::new(query))
        .unwrap()
        .into_iter()
        .map(|h| format!("{}:{}", &h.run[24..], h.path))
        .collect();
    runs.sort();
    runs
}

#[test]
fn catch_up_replaces_only_what_changed_and_follows_rollback_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::default();
    let (a, b) = (run_id(1), run_id(2));
    let a1 = store.put(
        &a,
        "running",
        &[(
            "phases/review/artifacts/review.json",
            review("approve", "The parser is fine"),
        )],
    );
    store.put(&b, "running", &[("comments.jsonl", json!("{\"time\":\"2026-01-01T00:00:00Z\",\"author\":\"ada\",\"text\":\"ship the parser\"}"))]);

    let (mut index, rebuilt) = SearchIndex::open(&dir.path().join("index")).unwrap();
    assert_eq!(rebuilt, Some(Rebuilt::Missing));
    let report = index.catch_up(&store, WAIT).unwrap();
    assert_eq!((report.runs_indexed, report.docs_added), (2, 2));
    assert_eq!(
        runs_of(&index, &store, "parser"),
        [
            "01:phases/review/artifacts/review.json",
            "02:comments.jsonl"
        ]
    );
    assert_eq!(
        index.catch_up(&store, WAIT).unwrap(),
        CatchUp::default(),
        "nothing new"
    );

    // A new checkpoint with one more file: only that file is added.
    let a2 = store.put(&a, "running", &[("phases/review/log.jsonl", json!("{\"time\":\"2026-01-01T00:00:00Z\",\"attempt\":1,\"stream\":\"stdout\",\"line\":\"reviewing the tokenizer\"}"))]);
    let report = index.catch_up(&store, WAIT).unwrap();
    assert_eq!((report.docs_added, report.docs_removed), (1, 0));
    assert_eq!(
        runs_of(&index, &store, "tokenizer"),
        ["01:phases/review/log.jsonl"]
    );
    let hit = &index.search(&store, &Search::new("parser")).unwrap();
    assert!(
        hit.iter().any(|h| h.checkpoint == a1.0),
        "unchanged documents keep their checkpoint"
    );

    // A changed artifact replaces its document.
    store.put(
        &a,
        "running",
        &[(
            "phases/review/artifacts/review.json",
            review("changes_requested", "The lexer needs work"),
        )],
    );
    let report = index.catch_up(&store, WAIT).unwrap();
    assert_eq!((report.docs_added, report.docs_removed), (1, 1));
    assert!(runs_of(&index, &store, "verdict:approve").is_empty());
    assert_eq!(
        runs_of(&index, &store, "verdict:changes_requested"),
        ["01:phases/review/artifacts/review.json"]
    );

    // The status changing re-reads the whole run.
    store.put(&a, "completed", &[]);
    let report = index.catch_up(&store, WAIT).unwrap();
    assert_eq!((report.docs_added, report.docs_removed), (2, 2));
    let mut search = Search::new("lexer");
    search.status = Some("completed".into());
    assert_eq!(index.search(&store, &search).unwrap().len(), 1);

    // Rollback to a2: the old artifact is back, the new one is gone.
    store.set_tip(&a, Some(&a2));
    index.catch_up(&store, WAIT).unwrap();
    assert!(runs_of(&index, &store, "lexer").is_empty());
    assert_eq!(
        runs_of(&index, &store, "verdict:approve"),
        ["01:phases/review/artifacts/review.json"]
    );
    assert_eq!(index.state().unwrap().tip(a.as_str()), Some(a2.0.as_str()));

    // A removed run loses its documents.
    store.set_tip(&b, None);
    let report = index.catch_up(&store, WAIT).unwrap();
    assert_eq!((report.runs_removed, report.docs_removed), (1, 1));
    assert!(runs_of(&index, &store, "ship").is_empty());
}

#[test]
fn a_busy_writer_is_skipped_and_the_index_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let store = Store::default();
    let a = run_id(1);
    store.put(
        &a,
        "running",
        &[(
            "phases/review/artifacts/review.json",
            review("approve", "Parser fine"),
        )],
    );
    let (mut index, _) = SearchIndex::open(&dir.join("index")).unwrap();
    index.catch_up(&store, WAIT).unwrap();

    let (other, rebuilt) = SearchIndex::open(&dir.join("index")).unwrap();
    assert_eq!(rebuilt, None);
    let writer = other.writer(WAIT).unwrap().expect("the writer is free");
    store.put(
        &a,
        "running",
        &[(
            "phases/review/log.jsonl",
            json!("{\"attempt\":1,\"line\":\"tokenizer\"}"),
        )],
    );
    let started = std::time::Instant::now();
    let report = index.catch_up(&store, WAIT).unwrap();
    assert!(report.busy);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        runs_of(&index, &store, "parser").len(),
        1,
        "answers from the index as it is"
    );
    drop(writer);
    assert_eq!(index.catch_up(&store, WAIT).unwrap().docs_added, 1);
}

#[test]
fn an_index_of_another_version_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let (index, _) = SearchIndex::open(&path).unwrap();
    let mut writer = index.writer(WAIT).unwrap().unwrap();
    let mut prepared = writer.prepare_commit().unwrap();
    prepared.set_payload("wfe-index 0 1");
    prepared.commit().unwrap();
    drop(writer);
    drop(index);
    let (_, rebuilt) = SearchIndex::open(&path).unwrap();
    assert_eq!(rebuilt, Some(Rebuilt::Version { found: Some(0) }));
    let (_, rebuilt) = SearchIndex::open(&path).unwrap();
    assert_eq!(rebuilt, None, "rebuilt once, then fine");
}

#[test]
fn a_checkpoint_yields_artifacts_logs_per_attempt_errors_comments_and_tool_calls() {
    let store = Store::default();
    let a = run_id(1);
    let log = |attempt: u32, text: &str| {
        format!(
            "{{\"time\":\"2026-01-01T00:00:00Z\",\"attempt\":{attempt},\"stream\":\"stdout\",\"line\":\"{text}\"}}\n"
        )
    };
    let tip = store.put(
        &a,
        "failed",
        &[
            ("phases/review/state.json", json!({ "attempt": 2, "finished_at": "2026-01-02T00:00:00Z" })),
            ("phases/review/artifacts/review.json", review("reject", "No")),
            ("phases/review/log.jsonl", json!(log(2, "second try"))),
            ("phases/review/attempts/1/log.jsonl", json!(log(1, "first try"))),
            ("phases/review/attempts/1/error.json", json!({ "kind": "exit", "code": 3 })),
            ("phases/review/attempts/2/log.jsonl", json!(log(2, "second try"))),
            ("phases/review/reviews/2-1.json", review("changes_requested", "Say why")),
            ("phases/review/tool-calls.jsonl", json!("{\"attempt\":2,\"tool\":\"grep\",\"input\":{\"pattern\":\"fn main\"}}\n{\"attempt\":2,\"tool\":\"read_file\",\"input\":{}}\n")),
            ("comments.jsonl", json!("{\"author\":\"ada\",\"phase\":\"review\",\"text\":\"why reject?\"}\n")),
        ],
    );
    let read = extract::read_checkpoint(&store, &tip).unwrap();
    let mut seen: Vec<(String, Kind, Option<u32>, usize)> = read
        .sources
        .iter()
        .map(|s| (s.path.clone(), s.kind, s.attempt, s.entries().len()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("comments.jsonl".into(), Kind::Comment, None, 1),
            (
                "phases/review/artifacts/review.json".into(),
                Kind::Artifact,
                Some(2),
                1
            ),
            (
                "phases/review/attempts/1/error.json".into(),
                Kind::Error,
                Some(1),
                1
            ),
            (
                "phases/review/attempts/1/log.jsonl".into(),
                Kind::Log,
                Some(1),
                1
            ),
            ("phases/review/log.jsonl".into(), Kind::Log, Some(2), 1),
            (
                "phases/review/reviews/2-1.json".into(),
                Kind::Artifact,
                Some(2),
                1
            ),
            (
                "phases/review/tool-calls.jsonl".into(),
                Kind::ToolCall,
                None,
                2
            ),
        ],
        "the latest log is indexed once, not from its archive"
    );
    let artifact = read
        .sources
        .iter()
        .find(|s| s.kind == Kind::Artifact)
        .unwrap();
    assert_eq!(artifact.schema.as_deref(), Some("review"));
    assert_eq!(artifact.time, extract::parse_time("2026-01-02T00:00:00Z"));
    assert_eq!(read.facts.status, "failed");
}

#[test]
fn a_missing_state_file_means_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let store = Store::default();
    store.put(
        &run_id(1),
        "running",
        &[(
            "phases/review/artifacts/review.json",
            review("approve", "Parser fine"),
        )],
    );
    let (mut index, _) = SearchIndex::open(&path).unwrap();
    index.catch_up(&store, WAIT).unwrap();
    let states: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tips-")
        })
        .collect();
    assert_eq!(states.len(), 1, "one state file, the old ones removed");
    std::fs::remove_file(&states[0]).unwrap();
    drop(index);
    let (mut index, rebuilt) = SearchIndex::open(&path).unwrap();
    assert!(matches!(rebuilt, Some(Rebuilt::Corrupt(why)) if why.contains("missing")));
    assert_eq!(index.catch_up(&store, WAIT).unwrap().runs_indexed, 1);
    assert_eq!(runs_of(&index, &store, "parser").len(), 1);
}

fn log(text: &str) -> serde_json::Value {
    json!(format!("{{\"attempt\":1,\"line\":\"{text}\"}}\n"))
}

#[test]
fn a_kept_writer_commits_every_update_and_lets_go_when_asked_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let store = Store::default();
    let (a, b) = (run_id(1), run_id(2));
    store.put(&a, "running", &[]);
    let (mut index, _) = SearchIndex::open(&path).unwrap();
    index.keep_writer(true);
    index.catch_up(&store, WAIT).unwrap();
    assert!(index.holds_writer());

    // Consecutive checkpoints through the one writer, each committed: a
    // second index (as another process would) finds them all.
    let words = ["alpha", "bravo", "charlie"];
    let mut tip = None;
    for (i, word) in words.iter().enumerate() {
        let log_path = format!("phases/p{i}/log.jsonl");
        tip = Some(store.put(&a, "running", &[(log_path.as_str(), log(word))]));
        let report = index.catch_up_run(&store, &a, WAIT).unwrap();
        assert_eq!((report.docs_added, report.busy), (1, false));
        assert!(index.holds_writer());
    }
    let mut other = reopened(&path);
    for word in words {
        assert_eq!(runs_of(&other, &store, word).len(), 1, "{word}");
    }
    assert_eq!(
        other.state().unwrap().tip(a.as_str()),
        tip.as_ref().map(|t| t.0.as_str())
    );

    // Held, the writer is not another's: it finds `b` but cannot add it.
    store.put(&b, "running", &[("phases/q/log.jsonl", log("delta"))]);
    let report = other.catch_up(&store, WAIT).unwrap();
    assert!(report.busy);
    assert!(runs_of(&other, &store, "delta").is_empty());
    index.release_writer().unwrap();
    assert!(!index.holds_writer());
    assert_eq!(other.catch_up(&store, WAIT).unwrap().runs_indexed, 1);
    assert_eq!(runs_of(&other, &store, "delta").len(), 1);
    assert_eq!(runs_of(&index, &store, "delta").len(), 1);

    // The next update takes it again; dropping the index lets go of it.
    store.put(&a, "running", &[("phases/p9/log.jsonl", log("echo"))]);
    index.catch_up_run(&store, &a, WAIT).unwrap();
    assert!(index.holds_writer());
    assert!(other.writer(Duration::ZERO).unwrap().is_none());
    drop(index);
    assert!(other.writer(Duration::ZERO).unwrap().is_some());
    assert_eq!(runs_of(&reopened(&path), &store, "echo").len(), 1);
}

/// The index as a new process opens it: a reader that sees every commit
/// made elsewhere.
fn reopened(path: &std::path::Path) -> SearchIndex {
    let (index, rebuilt) = SearchIndex::open(path).unwrap();
    assert_eq!(rebuilt, None);
    index
}

/// An observer that ignores everything.
struct Quiet;

impl crate::attempt::LogSink for Quiet {
    fn line(&self, _: &str, _: &crate::attempt::LogLine) {}
}

impl crate::engine::Observer for Quiet {
    fn event(&self, _: &crate::engine::Event<'_>) {}
}

#[test]
fn the_background_indexer_lets_go_of_the_writer_when_quiet_and_at_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let store = Store::default();
    let a = run_id(1);
    store.put(&a, "running", &[]);
    let (mut other, _) = SearchIndex::open(&path).unwrap();
    other.catch_up(&store, WAIT).unwrap();

    let shared = store.clone();
    let indexer = Background::start(move || Some(shared), path.clone(), a.clone());
    let observer = indexer.observer(Arc::new(Quiet));
    let checkpoint = |word: &str| {
        let id = store.put(&a, "running", &[("phases/p/log.jsonl", log(word))]);
        observer.event(&crate::engine::Event::Checkpoint {
            id: &id,
            summary: "wfe: test",
        });
        id
    };

    let first = checkpoint("alpha");
    // Waits for a condition, not a duration: the indexer's commit of the
    // checkpoint, which `other` only reads.
    let deadline = Instant::now() + Duration::from_secs(30);
    while other.state().unwrap().tip(a.as_str()) != Some(first.0.as_str()) {
        assert!(Instant::now() < deadline, "the checkpoint was not indexed");
        std::thread::yield_now();
    }
    // The run goes on; once quiet, the indexer lets go and another process
    // can write (it had nothing left to do: the indexer did it).
    let report = other.catch_up(&store, Duration::from_secs(30)).unwrap();
    assert_eq!((report.busy, report.runs_indexed), (false, 0));
    assert_eq!(runs_of(&reopened(&path), &store, "alpha").len(), 1);

    // The last checkpoint is indexed at finish, and the writer let go.
    let last = checkpoint("bravo");
    assert_eq!(indexer.finish(Duration::from_secs(30)), None);
    assert_eq!(
        other.state().unwrap().tip(a.as_str()),
        Some(last.0.as_str())
    );
    assert!(other.writer(Duration::ZERO).unwrap().is_some());
    assert_eq!(runs_of(&reopened(&path), &store, "bravo").len(), 1);
}
