//! Crashes, locks and timeouts: kill -9 of the runner, `wfe resume`, a
//! second runner refused, process groups killed.
//!
//! Synchronisation uses FIFOs: a phase writes to one and the test's
//! blocking read returns exactly when the phase is running.

use crate::common;

use common::snapshot::assert_run;
use common::{Repo, mkfifo, read_fifo_line, script};
use serde_json::json;

/// Sends `signal` to `target` (a pid, or `-pgid` for a group) with the
/// shell's built-in `kill`, which every machine has.
fn send_signal(signal: &str, target: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -s {signal} -- {target}")])
        .status()
        .unwrap()
        .success()
}

fn kill_group(pgid: i32) {
    send_signal("KILL", &format!("-{pgid}"));
}

/// A template whose `block` phase, on its first attempt only, reports its
/// process group on the FIFO and then hangs.
fn crash_template(repo: &Repo) -> (std::path::PathBuf, std::path::PathBuf) {
    let fifo = repo.path().join("running.fifo");
    mkfifo(&fifo);
    let count = repo.path().join("count.txt");
    let side = |id: &str| format!("echo {id} >> {}", count.display());
    let block = format!(
        "{}; if [ \"$WFE_ATTEMPT\" = 1 ]; then echo $$ > {}; sleep 1000; fi; echo '{{\"text\": \"done\"}}' > \"$WFE_OUT/note.json\"",
        side("block"),
        fifo.display()
    );
    repo.template(
        "crash",
        &json!({ "name": "crash", "phases": [
            script("first", &[], &side("first")),
            script("second", &["first"], &side("second")),
            { "id": "block", "kind": "script", "needs": ["second"], "run": block, "outputs": { "note": "message" } },
            script("after", &["block"], &format!("{}; cat \"$WFE_IN/block/note.json\"", side("after"))),
        ]}),
    );
    (fifo, count)
}

#[test]
fn kill_9_mid_run_then_resume_completes_without_rerunning_completed_phases() {
    let repo = Repo::new();
    let (fifo, count) = crash_template(&repo);
    let mut runner = repo.spawn(&["run", "crash", "--jobs", "1"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();

    // The runner is inside `block`: kill it the hard way.
    runner.kill().unwrap();
    runner.wait().unwrap();
    kill_group(pgid);
    let refs = repo.wfe_refs();
    assert_eq!(refs.len(), 1, "{refs:?}");
    let tip_before = repo.git(&["rev-parse", &refs[0]]);
    let state: serde_json::Value =
        serde_json::from_str(&repo.git(&["show", &format!("{}:phases/block/state.json", refs[0])]))
            .unwrap();
    assert_eq!(
        state["status"], "running",
        "the start of `block` was committed before it ran"
    );

    let id = refs[0].trim_start_matches("refs/wfe/runs/").to_string();
    let resumed = repo.wfe(&["resume", &id[..6], "--json"]);
    resumed.code(0);
    let doc = resumed.json();
    assert_eq!(doc["status"], "completed");
    let block = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "block")
        .unwrap()
        .clone();
    assert_eq!(
        block["attempts"], 2,
        "the interrupted attempt counts; the re-run is attempt 2"
    );

    let ran: Vec<String> = std::fs::read_to_string(&count)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        ran,
        ["first", "second", "block", "block", "after"],
        "completed phases never ran twice"
    );

    // No checkpoint lost: the old tip is an ancestor of the new one.
    let ancestor = repo.git_output(&["merge-base", "--is-ancestor", tip_before.trim(), &refs[0]]);
    assert!(
        ancestor.status.success(),
        "the pre-crash tip is part of the run's history"
    );
    let err = repo.git(&[
        "show",
        &format!("{}:phases/block/attempts/1/error.json", refs[0]),
    ]);
    assert!(err.contains("interrupted"), "{err}");
    assert!(
        repo.git_output(&["fsck", "--strict", "--no-progress"])
            .status
            .success()
    );
}

#[test]
fn a_second_runner_is_refused_with_the_lock_holder() {
    let repo = Repo::new();
    let (fifo, _) = crash_template(&repo);
    let mut runner = repo.spawn(&["run", "crash"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    let refs = repo.wfe_refs();
    let id = refs[0].trim_start_matches("refs/wfe/runs/");
    let tip = repo.git(&["rev-parse", &refs[0]]);

    let second = repo.wfe(&["resume", id]);
    second.code(2);
    // The message names the holder: this runner, on this host.
    let holder = format!("pid {}", runner.id());
    assert_run!(
        &repo,
        "a_second_runner_refused",
        &second,
        [(holder, "pid [RUNNER]")]
    );
    assert_eq!(
        repo.git(&["rev-parse", &refs[0]]),
        tip,
        "the refused runner wrote nothing"
    );

    runner.kill().unwrap();
    runner.wait().unwrap();
    kill_group(pgid);
    // The holder is dead now: its stale lock is taken over.
    repo.wfe(&["resume", id]).code(0);
}

#[test]
fn a_timeout_kills_the_whole_process_group_and_retries() {
    let repo = Repo::new();
    let pids = repo.path().join("pgids");
    repo.template(
        "slow",
        &json!({ "name": "slow", "phases": [{
            "id": "sleepy", "kind": "script",
            "run": format!("echo $$ >> {}; sleep 1000 & sleep 1000; wait", pids.display()),
            "timeout": "1s",
            "retry": { "max_attempts": 2, "backoff": "10ms" }
        }]}),
    );
    let run = repo.wfe(&["run", "slow", "--json"]);
    run.code(1);
    let doc = run.json();
    assert_eq!(doc["phases"][0]["status"], "timed_out");
    assert_eq!(
        doc["phases"][0]["attempts"], 2,
        "the retry policy applies to timeouts"
    );
    let groups: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(groups.len(), 2);
    for pgid in groups {
        assert!(
            !common::group_alive(pgid),
            "process group {pgid} survived the timeout"
        );
    }
    let r = format!("refs/wfe/runs/{}", doc["id"].as_str().unwrap());
    let err = repo.git(&["show", &format!("{r}:phases/sleepy/attempts/1/error.json")]);
    assert!(err.contains("timed_out"), "{err}");
    assert_run!(&repo, "a_timeout_retries_then_fails", &run);
    // The snapshot's duration filter blurs the timeout itself.
    assert!(run.stderr.contains("timed out after 1s"), "{}", run.stderr);
}

#[test]
fn ctrl_c_kills_running_phases_pauses_the_run_and_resume_finishes_it() {
    let repo = Repo::new();
    let (fifo, count) = crash_template(&repo);
    let runner = repo.spawn(&["run", "crash"]);
    let pgid: i32 = read_fifo_line(&fifo).parse().unwrap();
    assert!(send_signal("INT", &runner.id().to_string()));
    let out = common::Run::from(runner.wait_with_output().unwrap());
    out.code(3);
    // The interrupted phase and the paused run.
    assert_run!(&repo, "ctrl_c_pauses_the_run", &out);
    assert!(
        !common::group_alive(pgid),
        "the interrupted phase's process group is gone"
    );

    let id = repo.wfe_refs()[0]
        .trim_start_matches("refs/wfe/runs/")
        .to_string();
    let doc = repo.wfe(&["show", &id, "--json"]).code(0).json();
    assert_eq!(doc["status"], "paused");
    assert_eq!(
        doc["phases"][2]["status"], "pending",
        "the interrupted phase goes back to pending"
    );

    let doc = repo.wfe(&["resume", &id, "--json"]).code(0).json();
    assert_eq!(doc["status"], "completed");
    let ran: Vec<String> = std::fs::read_to_string(&count)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ran, ["first", "second", "block", "block", "after"]);
}
