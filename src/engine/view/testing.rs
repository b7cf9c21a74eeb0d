//! Runs for the views' unit tests, written straight into a memory store as
//! a runner would have left them, so each test knows every file exactly.

use serde_json::{Value, json};

use crate::attempt::{ArtifactProblem, AttemptError, AttemptUsage, LogLine, Stream};
use crate::engine::layout::COMMENTS;
use crate::engine::{PhaseState, PhaseStatus, RunRecord, RunStatus, layout, to_file_bytes};
use crate::store::{Change, MemoryStore, Message, RunId, RunStore, Trailer};
use crate::template::{PhaseKind, Template};

/// A memory store and the runs written into it.
pub(super) struct Fixture {
    /// The store.
    pub(super) store: MemoryStore,
}

impl Fixture {
    pub(super) fn new() -> Self {
        Fixture {
            store: MemoryStore::new(),
        }
    }

    /// Run `failing` (failed): `ok` completed with a 50-line log; `boom`
    /// failed twice (exit 3, then an output its schema rejected), both
    /// attempts kept; `after` pending. A comment on the run and one on `boom`.
    pub(super) fn failed_run(&self) -> RunId {
        let run = RunId::parse("01aaaaaaaaaaaaaaaaaaaaaaaa").expect("a ULID");
        let template = template(json!({ "name": "failing", "phases": [
            { "id": "ok", "kind": "script", "run": "true" },
            { "id": "boom", "kind": "script", "needs": ["ok"], "run": "exit 3",
              "outputs": { "note": "message" } },
            { "id": "after", "kind": "script", "needs": ["boom"], "run": "true" },
        ]}));
        let mut ok = state("ok", PhaseKind::Script, PhaseStatus::Completed, 1);
        ok.duration_ms = Some(1500);
        ok.exit_code = Some(0);
        ok.artifacts = vec!["greeting".into()];
        let problem = ArtifactProblem {
            artifact: "note".into(),
            schema: "message".into(),
            message: "does not match schema `message`".into(),
            violations: Vec::new(),
        };
        let invalid = AttemptError::InvalidOutputs {
            problems: vec![problem],
        };
        let mut boom = state("boom", PhaseKind::Script, PhaseStatus::Failed, 2);
        boom.exit_code = Some(0);
        boom.error = Some(invalid.clone());
        let after = state("after", PhaseKind::Script, PhaseStatus::Pending, 0);
        let log: Vec<LogLine> = (1..=50).map(|n| line(1, &format!("line {n}"))).collect();
        let comments = [
            json!({ "time": "2026-01-01T00:00:00Z", "author": "A <a@x>", "text": "on the run" }),
            json!({ "time": "2026-01-01T00:00:01Z", "author": "B <b@x>", "phase": "boom", "text": "on boom" }),
        ];
        let mut files = vec![
            Change::write(layout::log("ok"), log_bytes(&log)),
            Change::write(layout::artifact("ok", "greeting"), "{\"text\": \"hi\"}\n"),
            Change::write(
                layout::log("boom"),
                log_bytes(&[line(1, "first"), line(2, "second")]),
            ),
            Change::write(
                format!("{}/error.json", layout::attempt("boom", 1)),
                to_file_bytes(&AttemptError::Exit { code: 3 }),
            ),
            Change::write(
                format!("{}/error.json", layout::attempt("boom", 2)),
                to_file_bytes(&invalid),
            ),
            Change::write(
                format!("{}/rejected/note.json", layout::attempt("boom", 2)),
                "{\"nottext\": 1}\n",
            ),
            Change::write(
                "schemas/message.json",
                to_file_bytes(&json!({
                    "type": "object", "required": ["text"],
                    "properties": { "text": { "type": "string" } }
                })),
            ),
            Change::write(
                COMMENTS,
                comments
                    .iter()
                    .map(|c| format!("{c}\n"))
                    .collect::<String>(),
            ),
        ];
        let mut record = record(&run, "failing", RunStatus::Failed);
        record
            .schemas
            .insert("message".into(), "schemas/message.json".into());
        files.extend(self.base(&record, &template, &[ok, boom, after]));
        self.write(
            &run,
            "failing",
            "failed",
            "wfe: boom failed (attempt 2)",
            files,
        );
        run
    }

    /// Run `loopy` (failed): `build` completed; loop `repair` of `fix` then
    /// `test` failed in its second iteration (of at most 3); `ship` pending.
    /// `fix` is an agent with tokens and recorded exchanges.
    pub(super) fn loop_run(&self) -> RunId {
        let run = RunId::parse("01bbbbbbbbbbbbbbbbbbbbbbbb").expect("a ULID");
        let template = template(json!({ "name": "loopy", "phases": [
            { "id": "build", "kind": "script", "run": "true" },
            { "id": "repair", "kind": "loop", "needs": ["build"], "max_iters": 3,
              "until": "artifacts.test.result.passed",
              "phases": [
                { "id": "fix", "kind": "agent", "prompt": "fix it" },
                { "id": "test", "kind": "script", "needs": ["fix"], "run": "exit 1" },
              ] },
            { "id": "ship", "kind": "script", "needs": ["repair"], "run": "true" },
        ]}));
        let build = state("build", PhaseKind::Script, PhaseStatus::Completed, 1);
        let mut repair = state("repair", PhaseKind::Loop, PhaseStatus::Failed, 1);
        repair.iteration = 2;
        let ship = state("ship", PhaseKind::Script, PhaseStatus::Pending, 0);
        let mut files = self.base(
            &record(&run, "loopy", RunStatus::Failed),
            &template,
            &[build, repair, ship],
        );
        for k in 1..=2 {
            let mut fix = state("fix", PhaseKind::Agent, PhaseStatus::Completed, 1);
            fix.iteration = k;
            fix.usage = Some(AttemptUsage {
                provider: Some("claude".into()),
                model: Some("claude-test".into()),
                requests: k,
                input_tokens: 100,
                output_tokens: 20,
                cost_usd: None,
                ..AttemptUsage::default()
            });
            let mut test = state("test", PhaseKind::Script, PhaseStatus::Failed, 1);
            test.iteration = k;
            test.exit_code = Some(1);
            test.error = Some(AttemptError::Exit { code: 1 });
            let fix_key = layout::child_key("repair", k, "fix");
            let test_key = layout::child_key("repair", k, "test");
            files.push(Change::write(layout::state(&fix_key), to_file_bytes(&fix)));
            files.push(Change::write(
                layout::state(&test_key),
                to_file_bytes(&test),
            ));
            files.push(Change::write(layout::exchanges(&fix_key), "{}\n"));
            files.push(Change::write(
                layout::log(&test_key),
                log_bytes(&[line(1, &format!("test {k}"))]),
            ));
        }
        self.write(
            &run,
            "loopy",
            "failed",
            "wfe: test failed (attempt 1)",
            files,
        );
        run
    }

    /// `run.json`, `template.json` and each top-level phase's `state.json`.
    fn base(&self, record: &RunRecord, template: &Template, states: &[PhaseState]) -> Vec<Change> {
        let mut files = vec![
            Change::write(layout::RUN, to_file_bytes(record)),
            Change::write(layout::TEMPLATE, to_file_bytes(template)),
        ];
        for s in states {
            files.push(Change::write(layout::state(&s.id), to_file_bytes(s)));
        }
        files
    }

    fn write(&self, run: &RunId, template: &str, status: &str, summary: &str, files: Vec<Change>) {
        let message = Message::new(summary)
            .trailer(Trailer::Run, run.as_str())
            .trailer(Trailer::Template, template)
            .trailer(Trailer::Status, status);
        self.store
            .commit(run, None, &files, &message, 1_700_000_000)
            .expect("commit");
    }
}

fn template(json: Value) -> Template {
    serde_json::from_value(json).expect("a template")
}

fn record(run: &RunId, template: &str, status: RunStatus) -> RunRecord {
    RunRecord {
        id: run.to_string(),
        template: template.into(),
        template_source: ".wfe/templates/t.json".into(),
        template_digest: "sha256:0".into(),
        args: json!({}),
        status,
        auto: true,
        base_commit: "0".repeat(40),
        created_at: "2026-01-01T00:00:00Z".into(),
        finished_at: Some("2026-01-01T00:01:00Z".into()),
        schemas: Default::default(),
        reason: Some(crate::engine::StopReason::PhasesFailed {
            phases: vec!["boom".into()],
        }),
        secret_args: Vec::new(),
        budget: None,
        budget_approved: None,
    }
}

fn state(id: &str, kind: PhaseKind, status: PhaseStatus, attempt: u32) -> PhaseState {
    let mut s = PhaseState::pending(id, kind);
    s.status = status;
    s.attempt = attempt;
    s
}

fn line(attempt: u32, text: &str) -> LogLine {
    LogLine {
        time: "2026-01-01T00:00:00Z".into(),
        attempt,
        stream: Stream::Stdout,
        line: text.into(),
    }
}

fn log_bytes(lines: &[LogLine]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{}\n", serde_json::to_string(l).unwrap_or_default()))
        .collect::<String>()
        .into_bytes()
}

/// A run view made in memory, for the layout tests: run `01bbbbbbbbbbbbbbbbbbbbbbbb`
/// with one script phase per `(id, status, needs)`.
pub(super) fn synthetic_view(phases: &[(&str, PhaseStatus, &[&str])]) -> super::RunView {
    let run = RunId::parse("01bbbbbbbbbbbbbbbbbbbbbbbb").expect("a ULID");
    super::RunView {
        checkpoint: "0".repeat(40),
        record: record(&run, "synthetic", RunStatus::Running),
        phases: phases
            .iter()
            .map(|(id, status, needs)| super::PhaseRow {
                state: state(
                    id,
                    PhaseKind::Script,
                    *status,
                    u32::from(*status != PhaseStatus::Pending),
                ),
                needs: needs.iter().map(|n| n.to_string()).collect(),
                max_iters: None,
                children: Vec::new(),
                budget: None,
                nested: Default::default(),
                claim: None,
            })
            .collect(),
        layers: Vec::new(),
    }
}
