//! What a phase costs the repository and the disk: a phase that never
//! started has no state file (and still reads as pending everywhere),
//! attempts share a reused scratch directory that each finds empty, and a
//! read-only tool call waits for the next checkpoint without losing
//! anything to a kill -9.

use std::time::{Duration, Instant};

use crate::common;

use common::{Repo, script};
use serde_json::json;

/// The paths in the run's tip tree.
fn tree(repo: &Repo, id: &str) -> Vec<String> {
    repo.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &format!("refs/wfe/runs/{id}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn phases_that_never_started_have_no_state_file_and_read_as_pending() {
    let repo = Repo::new();
    repo.template(
        "stops",
        &json!({ "name": "stops", "phases": [
            script("a", &[], "exit 3"),
            script("b", &["a"], "true"),
            script("c", &["b"], "true"),
        ]}),
    );
    repo.wfe(&["run", "stops"]).code(1);
    let id = repo.run_id();
    let files = tree(&repo, &id);
    assert!(
        files.contains(&"phases/a/state.json".to_string()),
        "{files:?}"
    );
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("phases/b/") || f.starts_with("phases/c/")),
        "phases that never started leave no files: {files:?}"
    );
    // The run's first checkpoint holds run.json, the template and nothing per phase.
    let first = repo.git(&[
        "rev-list",
        "--max-parents=0",
        &format!("refs/wfe/runs/{id}"),
    ]);
    let first_files = repo.git(&["ls-tree", "-r", "--name-only", first.trim()]);
    assert!(!first_files.contains("phases/"), "{first_files}");

    for args in [&["show", &id, "--json"][..], &["status", &id, "--json"][..]] {
        let doc = repo.wfe(args).code(0).json();
        let phases = doc["phases"].as_array().expect("a phases array");
        let status = |p: &str| {
            phases
                .iter()
                .find(|s| s["id"] == p)
                .map(|s| s["status"].clone())
        };
        assert_eq!(status("a"), Some(json!("failed")), "{args:?}: {doc}");
        assert_eq!(status("b"), Some(json!("pending")), "{args:?}: {doc}");
        assert_eq!(status("c"), Some(json!("pending")), "{args:?}: {doc}");
    }
    let shown = repo.wfe(&["show", &id, "b"]);
    shown.code(0);
    assert!(shown.stdout.contains("pending"), "{}", shown.stdout);
    let status = repo.wfe(&["status", &id]);
    status.code(0);
    assert!(status.stdout.contains("pending"), "{}", status.stdout);
    repo.wfe(&["fsck"]).code(0);

    // Skipping the failure lets the run go on: b and c get their files then.
    repo.wfe(&["skip", &id, "a"]).code(0);
    repo.wfe(&["resume", &id]).code(0);
    let files = tree(&repo, &id);
    for phase in ["b", "c"] {
        assert!(
            files.contains(&format!("phases/{phase}/state.json")),
            "{files:?}"
        );
    }
    repo.wfe(&["fsck"]).code(0);
}

#[test]
fn attempts_reuse_a_scratch_directory_each_finds_empty_and_the_run_leaves_none() {
    let repo = Repo::new();
    // Each phase fails unless its `in/` and `out/` start empty, then
    // leaves files in both; `flaky` also needs a second attempt, which
    // must not see the first one's leftovers.
    let log_path = repo.path().join("scratch.log");
    let second = repo.path().join("second");
    let check = format!(
        r#"[ -d "$WFE_OUT" ] && [ -d "$WFE_IN" ] && [ -z "$(ls -A "$WFE_OUT")" ] || {{ echo "dirty $WFE_OUT: $(ls -A "$WFE_OUT")"; exit 7; }}; echo "$WFE_OUT" >> {log}; echo x > "$WFE_OUT/leftover"; echo y > "$WFE_OUT/report.json""#,
        log = log_path.display()
    );
    let flaky = format!(
        r#"{check}; if [ ! -e {second} ]; then touch {second}; exit 1; fi"#,
        second = second.display()
    );
    let mut phases: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            let needs: Vec<String> = if i == 0 {
                vec![]
            } else {
                vec![format!("p{}", i - 1)]
            };
            let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
            script(&format!("p{i}"), &needs, &check)
        })
        .collect();
    let mut flaky_phase = script("flaky", &["p5"], &flaky);
    flaky_phase["retry"] = json!({ "max_attempts": 2, "backoff": "0s" });
    phases.push(flaky_phase);
    repo.template("scratch", &json!({ "name": "scratch", "phases": phases }));
    let run = repo.wfe(&["run", "scratch"]);
    run.code(0);
    let id = repo.run_id();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let dirs: std::collections::BTreeSet<&str> = log.lines().collect();
    assert_eq!(log.lines().count(), 8, "{log}");
    assert_eq!(dirs.len(), 1, "a chain reuses one scratch directory: {log}");
    assert!(
        !repo.path().join(".git/wfe/work").join(&id).exists(),
        "the run's scratch directory goes with the run"
    );
}

#[test]
fn a_read_only_tool_call_waits_for_the_next_checkpoint_and_survives_a_kill_9() {
    use wfe::testing::llm::{FakeServer, Part, Reply};
    let server = FakeServer::spawn(Vec::new());
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": { "kind": "anthropic", "base_url": server.url() } },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    repo.write("notes.txt", "read me\n");
    repo.template(
        "reader",
        &json!({ "name": "reader", "phases": [{
            "id": "plan", "kind": "agent",
            "prompt": "Read notes.txt, then submit a plan.",
            "tools": ["read_file"],
            "outputs": { "plan": "message" }
        }]}),
    );
    let read = || {
        Reply::anthropic(vec![Part::Tool(
            "read_file",
            json!({ "path": "notes.txt" }),
        )])
    };
    let submit = || Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": "done" }))]);
    // The second request is held: the runner is killed while it waits.
    server.push(vec![read(), submit().held()]);
    let wfe = |args: &[&str]| {
        let mut cmd = repo.wfe_cmd();
        cmd.env("ANTHROPIC_API_KEY", "sk-test-0000000000")
            .args(args);
        cmd
    };
    let mut runner = wfe(&["run", "reader"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    server.wait_for_request(2);
    // The agent went on to its next request without waiting for a commit
    // of the read: the tip has the first exchange, not the call.
    let refs = repo.wfe_refs();
    let run_ref = refs.first().expect("the run's ref").clone();
    let tip_has = |path: &str| {
        repo.git_output(&["cat-file", "-e", &format!("{run_ref}:{path}")])
            .status
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tip_has("phases/plan/exchanges.jsonl") {
        assert!(
            Instant::now() < deadline,
            "the first exchange was never committed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !tip_has("phases/plan/tool-calls.jsonl"),
        "the read-only call waits for the next checkpoint"
    );
    runner.kill().unwrap();
    runner.wait().unwrap();

    // Resumed, the agent reads again (harmless) and asks the model the
    // question whose answer was lost, never the one already answered.
    server.push(vec![submit()]);
    let resumed = common::Run::from(wfe(&["resume", "latest"]).output().unwrap());
    resumed.code(0);
    assert_eq!(
        server.request_count(),
        3,
        "the answered request is not asked again"
    );
    let id = repo.run_id();
    let calls = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/plan/tool-calls.jsonl"),
    ]);
    let reads = calls
        .lines()
        .filter(|l| l.contains("\"read_file\""))
        .count();
    assert_eq!(
        reads, 1,
        "the lost call is made once more and kept once: {calls}"
    );

    // A run that is not killed commits each read with its turn's exchange.
    server.push(vec![read(), read(), submit()]);
    common::Run::from(wfe(&["run", "reader"]).output().unwrap()).code(0);
    let id = repo
        .wfe_refs()
        .pop()
        .expect("two runs")
        .trim_start_matches("refs/wfe/runs/")
        .to_string();
    let log = repo.git(&["log", "--format=%s", &format!("refs/wfe/runs/{id}")]);
    let alone = log
        .lines()
        .filter(|s| s.contains("tool read_file") && !s.contains("turn"))
        .count();
    let folded = log
        .lines()
        .filter(|s| s.contains("tool read_file") && s.contains("turn"))
        .count();
    assert_eq!((alone, folded), (0, 2), "{log}");
}

/// A chain of `n` no-op phases `p0` … `p{n-1}`.
fn chain(repo: &Repo, name: &str, n: usize) {
    let phases: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let need = format!("p{}", i.saturating_sub(1));
            let needs: Vec<&str> = if i == 0 { vec![] } else { vec![&need] };
            script(&format!("p{i}"), &needs, "true")
        })
        .collect();
    repo.template(name, &json!({ "name": name, "phases": phases }));
}

/// The status a phase's committed state gives at `rev`, if it has one.
fn committed_status(repo: &Repo, rev: &str, phase: &str) -> Option<String> {
    let out = repo.git_output(&["show", &format!("{rev}:phases/{phase}/state.json")]);
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    state["status"].as_str().map(str::to_string)
}

#[test]
fn a_burst_of_short_phases_folds_into_few_checkpoints_and_loses_no_transition() {
    let repo = Repo::new();
    chain(&repo, "burst", 30);
    // An interval longer than the run: its first transitions are committed
    // at once, everything after folds into the run's last checkpoint.
    let out = repo
        .wfe_cmd()
        .env("WFE_CHECKPOINT_INTERVAL_MS", "3600000")
        .args(["run", "burst"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = repo.run_id();
    let rev = format!("refs/wfe/runs/{id}");
    let commits = repo.git(&["rev-list", "--count", &rev]);
    assert_eq!(commits.trim(), "3", "created, started, the rest folded");
    for i in 0..30 {
        assert_eq!(
            committed_status(&repo, &rev, &format!("p{i}")).as_deref(),
            Some("completed"),
            "p{i}"
        );
    }
    let last = repo.git(&["log", "-1", "--format=%B", &rev]);
    assert!(last.contains("p29 completed"), "{last}");
    assert!(last.contains("Wfe-Status: completed"), "{last}");
    // The same run a checkpoint per transition (as every other test runs).
    repo.wfe(&["run", "burst"]).code(0);
    let second = repo
        .wfe_refs()
        .into_iter()
        .find(|r| !r.ends_with(&id))
        .unwrap();
    let commits: usize = repo
        .git(&["rev-list", "--count", &second])
        .trim()
        .parse()
        .unwrap();
    assert!(commits > 30, "{commits} commits");
}

#[test]
fn folded_transitions_are_committed_within_the_interval_while_a_phase_runs() {
    let repo = Repo::new();
    let go = repo.path().join("go");
    common::mkfifo(&go);
    repo.template(
        "fold",
        &json!({ "name": "fold", "phases": [
            script("a", &[], "true"),
            script("b", &["a"], &format!("read line < {}", go.display())),
        ]}),
    );
    let runner = repo
        .wfe_cmd()
        .env("WFE_CHECKPOINT_INTERVAL_MS", "2000")
        .args(["run", "fold"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // `a` ends and `b` starts right after the run's first checkpoint, so
    // both wait for the interval; `b` then blocks, and nothing else
    // happens: they must be committed when the interval ends, not when
    // `b` does.
    let until = Instant::now() + Duration::from_secs(60);
    let (id, rev) = loop {
        assert!(Instant::now() < until, "b never showed as running in git");
        if let Some(r) = repo.wfe_refs().first() {
            let rev = r.clone();
            if committed_status(&repo, &rev, "b").as_deref() == Some("running") {
                break (repo.run_id(), rev);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        committed_status(&repo, &rev, "a").as_deref(),
        Some("completed")
    );
    // a's end and b's start came in one checkpoint: no commit shows `a`
    // completed with `b` not yet started.
    let log = repo.git(&["log", "--format=%s", &rev]);
    assert_eq!(log.lines().count(), 3, "created, started, folded:\n{log}");
    common::write_fifo_line(&go, "go");
    let mut runner = runner;
    assert!(runner.wait().unwrap().success());
    assert_eq!(
        committed_status(&repo, &format!("refs/wfe/runs/{id}"), "b").as_deref(),
        Some("completed")
    );
}

#[test]
fn a_checkpoint_interval_that_is_not_a_number_is_refused_before_anything_runs() {
    let repo = Repo::new();
    chain(&repo, "burst", 2);
    let out = repo
        .wfe_cmd()
        .env("WFE_CHECKPOINT_INTERVAL_MS", "soon")
        .args(["run", "burst"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WFE_CHECKPOINT_INTERVAL_MS=soon: expected a whole number of milliseconds"),
        "{stderr}"
    );
    assert!(repo.wfe_refs().is_empty());
}
