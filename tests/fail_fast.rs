//! Fail fast: a phase that fails with `on_failure: stop` stops the phases
//! still running (gracefully: their `trap` cleanup runs) and the run ends
//! at once, failed, with the stopped siblings cancelled (not failed);
//! `defaults.fail_fast: false` lets them finish first.
//!
//! The failing phase waits until its sibling runs (through a FIFO), so
//! the sibling is surely running when the failure happens; nothing here
//! sleeps to synchronise.

use crate::common;

use std::time::{Duration, Instant};

use common::{Repo, mkfifo, script, write_fifo_line};
use serde_json::{Value, json};

/// Polls `ready` every few milliseconds for at most 30 s.
#[track_caller]
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The statuses of the run's phases, by id.
fn phase_status(doc: &Value, id: &str) -> String {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .map(|p| p["status"].as_str().unwrap_or("?").to_string())
        .unwrap_or_default()
}

/// A template: `boom` fails once `slow` runs; `slow` traps SIGTERM
/// (writing `trapped` to a marker) and otherwise runs until released (or
/// for ever). `after` needs both and must never start.
fn template(repo: &Repo, fail_fast: Option<bool>, slow_body: &str) {
    let started = repo.path().join("started.fifo");
    let marker = repo.path().join("trapped.txt");
    let pgid = repo.path().join("pgid.txt");
    mkfifo(&started);
    let boom = format!(
        "read pid < {started}; echo $pid > {pgid}; exit 1",
        started = started.display(),
        pgid = pgid.display()
    );
    // dash runs the TERM trap only once the `wait` builtin is interrupted:
    // the sibling reports only once it waits there (see tests/signals.rs).
    let slow = format!(
        "trap 'echo trapped > {marker}; exit 143' TERM; {slow_body} & echo $$ > {started}; wait $!",
        marker = marker.display(),
        started = started.display(),
    );
    let mut defaults = json!({ "kill_grace": "60s" });
    if let Some(on) = fail_fast {
        defaults["fail_fast"] = json!(on);
    }
    repo.template(
        "ff",
        &json!({ "name": "ff", "defaults": defaults, "phases": [
            script("boom", &[], &boom),
            script("slow", &[], &slow),
            script("after", &["boom", "slow"], "true"),
        ]}),
    );
}

/// Waits (bounded) for the runner to exit; kills it and fails the test otherwise.
fn finish(mut runner: std::process::Child, within: Duration) -> common::Run {
    let until = Instant::now() + within;
    loop {
        if runner.try_wait().unwrap().is_some() {
            return common::Run::from(runner.wait_with_output().unwrap());
        }
        if Instant::now() > until {
            let _ = runner.kill();
            let _ = runner.wait();
            panic!("the run did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failing_phase_cancels_its_running_sibling_and_the_run_ends_at_once() {
    let repo = Repo::new();
    template(&repo, None, "sleep 1000");
    let started = Instant::now();
    let runner = repo.spawn(&["run", "ff", "--jobs", "2", "--json"]);
    // `kill_grace` is 60 s: ending well within it proves the sibling
    // stopped on SIGTERM (its trap ran), not on the SIGKILL after it.
    let out = finish(runner, Duration::from_secs(45));
    let elapsed = started.elapsed();
    out.code(1);
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    let marker = repo.path().join("trapped.txt");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        "trapped",
        "the sibling's trap ran"
    );
    let pgid: i32 = std::fs::read_to_string(repo.path().join("pgid.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!common::group_alive(pgid), "the sibling's group is gone");
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(phase_status(&doc, "boom"), "failed");
    assert_eq!(phase_status(&doc, "slow"), "cancelled");
    assert_eq!(phase_status(&doc, "after"), "pending");
    // The reason names the phase that failed, not the one it stopped.
    let reason = doc["reason"].to_string();
    assert!(
        reason.contains("boom") && !reason.contains("slow"),
        "{reason}"
    );
}

#[test]
fn with_fail_fast_off_the_sibling_finishes_first() {
    let repo = Repo::new();
    let release = repo.path().join("release.fifo");
    mkfifo(&release);
    template(
        &repo,
        Some(false),
        &format!("read x < {}", release.display()),
    );
    let runner = repo.spawn(&["run", "ff", "--jobs", "2", "--json"]);
    // The failure is committed while the sibling still runs; only then is
    // the sibling let go.
    wait_for("boom to fail", || {
        let status = repo.wfe(&["status", "--json"]);
        status.stdout.starts_with('{') && phase_status(&status.json(), "boom") == "failed"
    });
    let doc = repo.wfe(&["status", "--json"]).json();
    assert_eq!(phase_status(&doc, "slow"), "running");
    write_fifo_line(&release, "go");
    let out = finish(runner, Duration::from_secs(30));
    out.code(1);
    assert!(!repo.path().join("trapped.txt").exists(), "no SIGTERM");
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(phase_status(&doc, "slow"), "completed");
    assert_eq!(phase_status(&doc, "after"), "pending");
}
