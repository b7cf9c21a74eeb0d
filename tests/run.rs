//! `wfe run` end to end: the real binary in temporary git repositories,
//! checked with the real git CLI.

use crate::common;

use common::snapshot::assert_run;
use common::{Repo, script};
use serde_json::json;

/// A 10-phase DAG with two parallel branches, fan-out and fan-in, passing artifacts.
fn ten_phases() -> serde_json::Value {
    let out = |name: &str, text: &str| {
        format!(
            "echo '{{\"text\": \"{text}\"}}' > \"$WFE_OUT/{name}.json\"; echo $WFE_PHASE >> \"$COUNT\""
        )
    };
    json!({
        "name": "ten",
        "args": { "type": "object", "properties": { "who": { "type": "string" } }, "required": ["who"] },
        "phases": [
            { "id": "start", "kind": "script", "run": out("note", "start"), "outputs": { "note": "message" } },
            script("a1", &["start"], &out("note", "a1")),
            script("a2", &["a1"], &out("note", "a2")),
            script("a3", &["a2"], &out("note", "a3")),
            script("b1", &["start"], &out("note", "b1")),
            script("b2", &["b1"], &out("note", "b2")),
            script("b3", &["b2"], &out("note", "b3")),
            script("c1", &["start"], "echo \"who=$WFE_ARG_WHO\"; echo c1 >> \"$COUNT\""),
            { "id": "join", "kind": "script", "needs": ["a3", "b3", "c1"],
              "run": "cat \"$WFE_IN/start/note.json\" > /dev/null && echo '{\"text\": {{ artifacts.start.note.text | tojson }}}' > \"$WFE_OUT/joined.json\"; echo join >> \"$COUNT\"",
              "outputs": { "joined": "message" } },
            script("end", &["join"], "echo end >> \"$COUNT\"")
        ]
    })
}

#[test]
fn a_ten_phase_dag_runs_to_completion_and_git_shows_every_transition() {
    let repo = Repo::new();
    let count = repo.path().join("count.txt");
    let mut t = ten_phases();
    for p in t["phases"].as_array_mut().unwrap() {
        p["env"] = json!({ "COUNT": count.to_str().unwrap() });
    }
    repo.template("ten", &t);
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "add template"]);
    let head_before = repo.git(&["rev-parse", "HEAD"]);
    let status_before = repo.git(&["status", "--porcelain"]);
    let branches_before = repo.git(&["for-each-ref", "refs/heads/"]);

    let run = repo.wfe(&["run", "ten", "--arg", "who=tester", "--jobs", "2", "--json"]);
    run.code(0);
    let doc = run.json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["template"], "ten");
    let phases = doc["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 10);
    assert!(
        phases
            .iter()
            .all(|p| p["status"] == "completed" && p["attempts"] == 1),
        "{phases:#?}"
    );
    let id = doc["id"].as_str().unwrap();
    assert_eq!(id.len(), 26);
    let r = format!("refs/wfe/runs/{id}");

    // Every phase ran exactly once.
    let mut ran: Vec<String> = std::fs::read_to_string(&count)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        [
            "a1", "a2", "a3", "b1", "b2", "b3", "c1", "end", "join", "start"
        ]
    );

    // One commit per transition, linear, each with trailers.
    let log = repo.git(&["log", "--format=%H%x00%P%x00%B%x01", &r]);
    let commits: Vec<&str> = log
        .split('\x01')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    // Transitions at the same moment may share a checkpoint, but the longest
    // chain (start, a1, a2, a3, join, end) alone needs creation, start and
    // one checkpoint per completion.
    assert!(
        commits.len() >= 8,
        "expected a checkpoint per transition, got {}",
        commits.len()
    );
    for c in &commits {
        let parts: Vec<&str> = c.split('\0').collect();
        assert!(
            parts[1].split_whitespace().count() <= 1,
            "checkpoints form a linear chain"
        );
        assert!(parts[2].starts_with("wfe: "), "summary: {}", parts[2]);
        assert!(parts[2].contains(&format!("Wfe-Run: {id}")));
        assert!(parts[2].contains("Wfe-Status: "));
    }
    let events = repo.git(&["log", "--format=%(trailers:key=Wfe-Event,valueonly)", &r]);
    for event in [
        "run-created",
        "run-started",
        "phase-started",
        "phase-completed",
        "run-completed",
    ] {
        assert!(events.contains(event), "no {event} in:\n{events}");
    }
    assert_eq!(events.matches("phase-completed").count(), 10);
    assert_eq!(events.matches("phase-started").count(), 10);
    let phases_trailers = repo.git(&["log", "--format=%(trailers:key=Wfe-Phase,valueonly)", &r]);
    assert!(phases_trailers.lines().any(|l| l == "join"));

    // Artifacts and state are readable with git alone.
    let joined: serde_json::Value = serde_json::from_str(
        &repo.git(&["show", &format!("{r}:phases/join/artifacts/joined.json")]),
    )
    .unwrap();
    assert_eq!(joined, json!({ "text": "start" }));
    let state: serde_json::Value =
        serde_json::from_str(&repo.git(&["show", &format!("{r}:phases/c1/state.json")])).unwrap();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["exit_code"], 0);
    let c1_log = repo.git(&["show", &format!("{r}:phases/c1/log.jsonl")]);
    assert!(c1_log.contains("who=tester"), "{c1_log}");
    let run_json: serde_json::Value =
        serde_json::from_str(&repo.git(&["show", &format!("{r}:run.json")])).unwrap();
    assert_eq!(run_json["status"], "completed");
    assert_eq!(run_json["args"], json!({ "who": "tester" }));
    assert_eq!(
        run_json["base_commit"].as_str().unwrap(),
        head_before.trim()
    );
    assert!(
        repo.git(&["show", &format!("{r}:schemas/message.json")])
            .contains("\"text\"")
    );
    let tree = repo.git(&["ls-tree", "--name-only", &r]);
    assert_eq!(
        tree.lines().collect::<Vec<_>>(),
        ["phases", "run.json", "schemas", "template.json"]
    );

    // The repository is sound and the user's work is untouched.
    let fsck = repo.git_output(&["fsck", "--strict", "--no-progress"]);
    assert!(
        fsck.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), head_before);
    assert_eq!(
        repo.git(&["status", "--porcelain"]),
        format!("{status_before}?? count.txt\n")
    );
    assert_eq!(repo.git(&["for-each-ref", "refs/heads/"]), branches_before);
    assert_eq!(
        repo.git(&["reflog", "show", &r]).lines().count(),
        commits.len(),
        "the run's ref keeps a reflog entry per checkpoint"
    );
}

#[test]
fn human_commands_show_the_run() {
    let repo = Repo::new();
    // One job, so the order of the progress lines is the same every time.
    let run = repo.wfe(&["run", "hello", "--arg", "name=Ada", "--jobs", "1"]);
    run.code(0);
    // Each phase's progress, and where the run lives.
    assert_run!(&repo, "human_run", &run);

    let list = repo.wfe(&["list"]);
    list.code(0);
    assert_run!(&repo, "human_list", &list);

    let status = repo.wfe(&["status"]);
    status.code(0);
    // Every phase, with what it needs (`← shout, whisper, count`).
    assert_run!(&repo, "human_status", &status);

    let art = repo.wfe(&["show", "latest", "combine", "summary"]);
    art.code(0);
    assert_eq!(art.json()["text"], "hello, ada! / HELLO, ADA! / 2 words");

    let phase = repo.wfe(&["show", "latest", "count"]);
    phase.code(0);
    // The phase with its log (`the greeting has 2 words`).
    assert_run!(&repo, "human_show_phase", &phase);

    let log = repo.wfe(&["log", "latest"]);
    log.code(0);
    // Every checkpoint with its trailers, from `run-created` to `run completed`.
    assert_run!(&repo, "human_log", &log);

    let skipped = repo.wfe(&["run", "hello", "--arg", "shout=false", "--json"]);
    skipped.code(0);
    let doc = skipped.json();
    let shout = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "shout")
        .unwrap()
        .clone();
    assert_eq!(shout["status"], "skipped");
    let id = doc["id"].as_str().unwrap();
    let summary = repo.wfe(&["show", id, "combine", "summary"]);
    assert_eq!(
        summary.json()["text"],
        "hello, world! / (not shouted) / 2 words"
    );
}

#[test]
fn a_failing_phase_fails_the_run_with_exit_1_and_stops_dependants() {
    let repo = Repo::new();
    repo.template(
        "fails",
        &json!({ "name": "fails", "phases": [
            script("ok", &[], "true"),
            script("bad", &["ok"], "echo boom >&2; exit 7"),
            script("after", &["bad"], "true"),
        ]}),
    );
    let run = repo.wfe(&["run", "fails", "--json"]);
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["status"], "failed");
    let by_id = |id: &str| {
        doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("bad")["status"], "failed");
    assert_eq!(by_id("after")["status"], "pending");
    assert_run!(&repo, "failed_phase", &run);
    let r = format!("refs/wfe/runs/{}", doc["id"].as_str().unwrap());
    let err = repo.git(&["show", &format!("{r}:phases/bad/attempts/1/error.json")]);
    assert!(
        err.contains("\"kind\": \"exit\"") && err.contains("\"code\": 7"),
        "{err}"
    );
    assert!(
        repo.git(&["show", &format!("{r}:phases/bad/log.jsonl")])
            .contains("boom")
    );
}

#[test]
fn on_failure_continue_lets_dependants_run_and_the_run_complete() {
    let repo = Repo::new();
    repo.template(
        "tolerant",
        &json!({ "name": "tolerant", "phases": [
            { "id": "lint", "kind": "script", "run": "exit 1", "on_failure": "continue" },
            script("build", &["lint"], "true"),
        ]}),
    );
    let doc = repo.wfe(&["run", "tolerant", "--json"]).code(0).json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["phases"][0]["status"], "failed");
    assert_eq!(doc["phases"][1]["status"], "completed");
}

#[test]
fn an_invalid_artifact_fails_the_attempt_and_keeps_the_raw_output() {
    let repo = Repo::new();
    repo.write(
        ".wfe/schemas/report.json",
        &json!({ "type": "object", "required": ["ok", "count"],
                 "properties": { "ok": { "type": "boolean" }, "count": { "type": "integer" } } })
        .to_string(),
    );
    repo.template(
        "forge",
        &json!({ "name": "forge", "phases": [{
            "id": "make", "kind": "script",
            "run": "echo '{\"ok\": \"yes\", \"count\": 1.5}' > \"$WFE_OUT/report.json\"",
            "outputs": { "report": "report", "missing": "report" }
        }]}),
    );
    let run = repo.wfe(&["run", "forge", "--json"]);
    run.code(1);
    // Every violation is listed (`/ok`, `/count`, the missing field).
    assert_run!(&repo, "forged_artifact_violations", &run);
    let id = run.json()["id"].as_str().unwrap().to_string();
    let r = format!("refs/wfe/runs/{id}");
    let raw = repo.git(&[
        "show",
        &format!("{r}:phases/make/attempts/1/rejected/report.json"),
    ]);
    assert_eq!(raw.trim(), "{\"ok\": \"yes\", \"count\": 1.5}");
    let state: serde_json::Value =
        serde_json::from_str(&repo.git(&["show", &format!("{r}:phases/make/state.json")])).unwrap();
    assert_eq!(state["status"], "failed");
    assert_eq!(state["error"]["kind"], "invalid_outputs");
    let problems = state["error"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2);
    let paths: Vec<&str> = problems
        .iter()
        .flat_map(|p| p["violations"].as_array().into_iter().flatten())
        .map(|v| v["instance_path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/ok") && paths.contains(&"/count"),
        "{paths:?}"
    );
    let artifacts = repo.git_output(&["show", &format!("{r}:phases/make/artifacts/report.json")]);
    assert!(
        !artifacts.status.success(),
        "a rejected artifact is never committed as an artifact"
    );

    let show = repo.wfe(&["show", &id, "make"]);
    show.code(0);
    // The rejected output, as the phase wrote it (`"yes"`).
    assert_run!(&repo, "show_a_rejected_output", &show);
}

#[test]
fn retries_keep_every_attempt() {
    let repo = Repo::new();
    let counter = repo.path().join("tries");
    repo.template(
        "flaky",
        &json!({ "name": "flaky", "phases": [{
            "id": "flaky", "kind": "script",
            "run": format!("echo x >> {0}; [ $(wc -l < {0}) -ge 3 ]", counter.display()),
            "retry": { "max_attempts": 3, "backoff": "10ms" }
        }]}),
    );
    let doc = repo.wfe(&["run", "flaky", "--json"]).code(0).json();
    assert_eq!(doc["phases"][0]["attempts"], 3);
    let r = format!("refs/wfe/runs/{}", doc["id"].as_str().unwrap());
    let attempts = repo.git(&[
        "ls-tree",
        "--name-only",
        &format!("{r}:phases/flaky/attempts"),
    ]);
    assert_eq!(attempts.lines().collect::<Vec<_>>(), ["1", "2"]);
    let events = repo.git(&["log", "--format=%(trailers:key=Wfe-Event,valueonly)", &r]);
    assert_eq!(events.matches("attempt-failed").count(), 2);
}
