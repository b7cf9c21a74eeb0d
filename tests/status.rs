//! Status that tells the truth: a run whose runner was killed with SIGKILL
//! shows as interrupted (not running) with the command that continues it,
//! counts say how each phase ended, and a completed run with failed
//! phases (`on_failure: continue`) says so.

use crate::common;

use common::snapshot::assert_run;
use common::{Repo, mkfifo, read_fifo_line, script};
use serde_json::json;

#[test]
fn a_killed_runner_leaves_a_run_that_shows_as_interrupted() {
    let repo = Repo::new();
    let fifo = repo.path().join("started.fifo");
    mkfifo(&fifo);
    repo.template(
        "long",
        &json!({ "name": "long", "phases": [
            script("work", &[], &format!("echo $$ > {}; exec sleep 1000", fifo.display())),
        ]}),
    );
    let mut runner = repo.spawn(&["run", "long"]);
    let pid: i32 = read_fifo_line(&fifo).parse().unwrap();
    // While the runner lives the run is running, and --json names it.
    let live = repo.wfe(&["status", "--json"]);
    live.code(0);
    let doc = live.json();
    assert_eq!(doc["status"], "running");
    assert_eq!(doc["runner"]["pid"], runner.id());
    runner.kill().unwrap();
    runner.wait().unwrap();
    // The phase's own process may outlive the SIGKILLed runner; end it so
    // the test leaves nothing behind.
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    let id = repo.run_id();
    let status = repo.wfe(&["status"]);
    status.code(0);
    assert!(status.stdout.contains("interrupted"), "{}", status.stdout);
    assert!(!status.stdout.contains("running ·"), "{}", status.stdout);
    assert!(
        status
            .stdout
            .contains(&format!("`wfe resume {id}` goes on")),
        "{}",
        status.stdout
    );
    assert_run!(&repo, "status_interrupted", &status);
    let list = repo.wfe(&["list"]);
    assert!(list.stdout.contains("interrupted"), "{}", list.stdout);
    assert_run!(&repo, "list_interrupted", &list);
    // The filters tell the same truth: no runner holds it, so it is
    // interrupted, not running.
    let interrupted = repo
        .wfe(&["list", "--status", "interrupted", "--json"])
        .code(0)
        .json();
    assert_eq!(
        interrupted.as_array().map(Vec::len),
        Some(1),
        "{interrupted}"
    );
    let running = repo
        .wfe(&["list", "--status", "running", "--json"])
        .code(0)
        .json();
    assert_eq!(running.as_array().map(Vec::len), Some(0), "{running}");
    let show = repo.wfe(&["show", "latest"]);
    assert!(show.stdout.contains("interrupted"), "{}", show.stdout);
    assert_run!(&repo, "show_interrupted", &show);
    for cmd in [&["status", "--json"][..], &["show", "latest", "--json"]] {
        let doc = repo.wfe(cmd).json();
        assert_eq!(doc["status"], "running", "run.json is kept as it is");
        assert_eq!(doc["runner"], serde_json::Value::Null, "{cmd:?}");
    }
}

#[test]
fn a_cancelled_runs_counts_say_how_each_phase_ended() {
    let repo = Repo::new();
    let fifo = repo.path().join("started.fifo");
    mkfifo(&fifo);
    repo.template(
        "three",
        &json!({ "name": "three", "phases": [
            script("first", &[], "true"),
            script("work", &["first"], &format!("echo go > {}; exec sleep 1000", fifo.display())),
            script("after", &["work"], "true"),
        ]}),
    );
    let runner = repo.spawn(&["run", "three"]);
    read_fifo_line(&fifo);
    repo.wfe(&["cancel", "latest"]).code(0);
    runner.wait_with_output().unwrap();
    let status = repo.wfe(&["status"]);
    assert!(!status.stdout.contains("3/3"), "{}", status.stdout);
    assert!(status.stdout.contains("cancelled"), "{}", status.stdout);
    assert_run!(&repo, "status_cancelled_counts", &status);
}

#[test]
fn a_completed_run_with_failed_phases_says_so_everywhere() {
    let repo = Repo::new();
    let mut flaky = script("flaky", &[], "exit 3");
    flaky["on_failure"] = json!("continue");
    repo.template(
        "lenient",
        // `after` needs `flaky` so the tip's summary is the same every time.
        &json!({ "name": "lenient", "phases": [flaky, script("after", &["flaky"], "true")] }),
    );
    repo.wfe(&["run", "lenient"]).code(0);
    let status = repo.wfe(&["status"]);
    status.code(0);
    assert!(status.stdout.contains("flaky"), "{}", status.stdout);
    assert_run!(&repo, "status_completed_with_failures", &status);
    let show = repo.wfe(&["show", "latest"]);
    assert!(show.stdout.contains("completed despite"), "{}", show.stdout);
    assert_run!(&repo, "show_completed_with_failures", &show);
    for cmd in [&["status", "--json"][..], &["show", "latest", "--json"]] {
        let doc = repo.wfe(cmd).json();
        assert_eq!(doc["status"], "completed");
        assert_eq!(doc["failed_phases"], json!(["flaky"]), "{cmd:?}");
    }
    // `wfe list` reads only the tips' trailers, and they say it too.
    let list = repo.wfe(&["list"]);
    list.code(0);
    assert!(
        list.stdout.contains("completed (1 failed)"),
        "{}",
        list.stdout
    );
    assert_run!(&repo, "list_completed_with_failures", &list);
    let rows = repo.wfe(&["list", "--json"]).json();
    assert_eq!(rows[0]["failed_phases"], json!(["flaky"]));
    let tip = repo.git(&[
        "log",
        "-1",
        "--format=%B",
        &format!("refs/wfe/runs/{}", repo.run_id()),
    ]);
    assert!(tip.contains("Wfe-Failed: flaky\n"), "{tip}");
    // A comment on the run makes a new tip; it still says so.
    repo.wfe(&["comment", "latest", "flaky is known"]).code(0);
    let rows = repo.wfe(&["list", "--json"]).json();
    assert_eq!(rows[0]["failed_phases"], json!(["flaky"]));
    // A clean run says nothing of the kind.
    repo.template(
        "fine",
        &json!({ "name": "fine", "phases": [script("ok", &[], "true")] }),
    );
    repo.wfe(&["run", "fine"]).code(0);
    let rows = repo.wfe(&["list", "--json"]).json();
    assert_eq!(rows[0]["failed_phases"], json!([]));
    assert_eq!(rows[0]["status"], "completed");
}

#[test]
fn a_run_written_before_failed_trailers_still_lists() {
    let repo = Repo::new();
    let mut flaky = script("flaky", &[], "exit 3");
    flaky["on_failure"] = json!("continue");
    repo.template("lenient", &json!({ "name": "lenient", "phases": [flaky] }));
    repo.wfe(&["run", "lenient"]).code(0);
    let id = repo.run_id();
    // Rewrite the tip's message as an older wfe wrote it: no Wfe-Failed.
    let reference = format!("refs/wfe/runs/{id}");
    let message = repo.git(&["log", "-1", "--format=%B", &reference]);
    let old: String = message
        .lines()
        .filter(|l| !l.starts_with("Wfe-Failed:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(old, message);
    let tree = repo.git(&["rev-parse", &format!("{reference}^{{tree}}")]);
    let parent = repo.git(&["rev-parse", &format!("{reference}^")]);
    let commit = repo.git(&["commit-tree", tree.trim(), "-p", parent.trim(), "-m", &old]);
    repo.git(&["update-ref", &reference, commit.trim()]);
    let list = repo.wfe(&["list"]);
    list.code(0);
    assert!(list.stdout.contains("completed "), "{}", list.stdout);
    assert!(!list.stdout.contains("failed)"), "{}", list.stdout);
    let rows = repo.wfe(&["list", "--json"]).json();
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(rows[0]["failed_phases"], json!([]));
}

#[test]
fn quiet_still_says_why_a_run_stopped() {
    let repo = Repo::new();
    repo.template(
        "boom",
        &json!({ "name": "boom", "phases": [script("boom", &[], "exit 3")] }),
    );
    let run = repo.wfe(&["-q", "run", "boom"]);
    run.code(1);
    let id = repo.run_id();
    assert_eq!(run.stdout, "", "quiet prints nothing on stdout");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", run.stderr);
    assert!(
        lines[0].starts_with(&format!("run {id} failed: ")) && lines[0].contains("boom"),
        "{}",
        run.stderr
    );
    // A run that completes stays silent.
    repo.template(
        "fine",
        &json!({ "name": "fine", "phases": [script("ok", &[], "true")] }),
    );
    let fine = repo.wfe(&["-q", "run", "fine"]);
    fine.code(0);
    assert_eq!((fine.stdout.as_str(), fine.stderr.as_str()), ("", ""));
}
