//! Steering runs from another process: pause, cancel, approve (gates and
//! `approval: "after"`), auto mode and continue — to a live runner through
//! the control directory, or straight to the ref when no runner is alive.

use crate::common;

use std::process::{Child, Stdio};

use common::snapshot::{assert_run, assert_text, command};
use common::{Repo, mkfifo, read_fifo_line, script, write_fifo_line};
use serde_json::{Value, json};

fn phase<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()
}

#[test]
fn pause_from_another_process_lets_running_phases_finish_then_exits_3() {
    let repo = Repo::new();
    let (ready, go) = (repo.path().join("ready.fifo"), repo.path().join("go.fifo"));
    mkfifo(&ready);
    mkfifo(&go);
    repo.template(
        "two",
        &json!({ "name": "two", "phases": [
            script("first", &[], &format!("echo ready > {}; read x < {}", ready.display(), go.display())),
            script("second", &["first"], "true"),
        ]}),
    );
    let runner = repo.spawn(&["run", "two", "--json"]);
    read_fifo_line(&ready);
    let id = repo.run_id();

    let pause = repo.wfe(&["pause", &id]);
    pause.code(0);
    write_fifo_line(&go, "go");
    let runner_pid = format!("pid {}", runner.id());
    let out = common::Run::from(runner.wait_with_output().unwrap());
    out.code(3);
    // The live runner took the request: the run pauses once its running
    // phases end.
    assert_run!(
        &repo,
        "pause_a_live_run",
        &pause,
        [(runner_pid, "pid [RUNNER]")]
    );
    assert_run!(&repo, "paused_by_another_process", &out);
    let doc = out.json();
    assert_eq!(doc["status"], "paused");
    assert_eq!(
        phase(&doc, "first")["status"],
        "completed",
        "the running phase finished"
    );
    assert_eq!(
        phase(&doc, "second")["status"],
        "pending",
        "nothing new started"
    );
    let trailers = repo.git(&[
        "log",
        "--format=%(trailers)",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert!(
        trailers.contains("Wfe-Event: pause-requested"),
        "{trailers}"
    );
    assert!(
        trailers.contains("Wfe-Requested-By: Test User <test@example.com> (pid "),
        "{trailers}"
    );

    let resumed = repo.wfe(&["resume", &id, "--json"]);
    resumed.code(0);
    assert_eq!(resumed.json()["status"], "completed");
}

#[test]
fn cancel_kills_the_running_phase_group_and_ends_the_run_cancelled() {
    let repo = Repo::new();
    let fifo = repo.path().join("pgid.fifo");
    mkfifo(&fifo);
    repo.template(
        "long",
        &json!({ "name": "long", "phases": [
            script("sleepy", &[], &format!("echo $$ > {}; sleep 1000 & sleep 1000; wait", fifo.display())),
            script("never", &["sleepy"], "true"),
        ]}),
    );
    let runner = repo.spawn(&["run", "long", "--json"]);
    let pgid = read_fifo_line(&fifo);
    let id = repo.run_id();
    repo.wfe(&["cancel", &id]).code(0);
    let out = common::Run::from(runner.wait_with_output().unwrap());
    out.code(3);
    assert!(
        !common::group_alive(pgid.parse().unwrap()),
        "the phase's process group is gone"
    );
    let doc = out.json();
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(phase(&doc, "sleepy")["status"], "cancelled");
    assert_eq!(phase(&doc, "never")["status"], "cancelled");
    let again = repo.wfe(&["cancel", &id]);
    again.code(2);
    assert_run!(&repo, "cancel_a_cancelled_run", &again);
}

#[test]
fn a_gate_waits_and_an_approval_with_an_artifact_lets_the_run_go_on() {
    let repo = Repo::new();
    repo.template(
        "gated",
        &json!({ "name": "gated", "phases": [
            script("build", &[], "true"),
            { "id": "ok", "kind": "gate", "needs": ["build"], "outputs": { "note": "message" } },
            script("ship", &["ok"], "cat \"$WFE_IN/ok/note.json\""),
        ]}),
    );
    let first = repo.wfe(&["run", "gated", "--json"]);
    first.code(3);
    let doc = first.json();
    assert_eq!(doc["status"], "waiting");
    assert_eq!(phase(&doc, "ok")["status"], "waiting");
    let id = doc["id"].as_str().unwrap().to_string();
    // It says how to approve (`wfe approve ID ok`).
    assert_run!(&repo, "a_gate_waits", &first);

    let tip = repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")]);
    repo.write("bad.json", r#"{"txt": 1}"#);
    let bad_args = ["approve", &id, "ok", "--artifact", "bad.json"];
    let bad = repo.wfe(&bad_args);
    bad.code(2);
    let wrong_args = ["approve", &id, "build"];
    let wrong = repo.wfe(&wrong_args);
    wrong.code(2);
    assert_eq!(
        repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")]),
        tip,
        "refused approvals write nothing"
    );

    repo.write("good.json", r#"{"text": "ship it"}"#);
    let good_args = ["approve", &id, "ok", "--artifact", "good.json"];
    let approve = repo.wfe(&good_args);
    approve.code(0);
    // An artifact that does not match schema `message`, a phase that is
    // not waiting, then an approval with no runner running.
    let session = [
        command(&bad_args, &bad),
        command(&wrong_args, &wrong),
        command(&good_args, &approve),
    ]
    .concat();
    assert_text!(&repo, "approve_a_gate", session);
    let done = repo.wfe(&["resume", &id, "--json"]);
    done.code(0);
    assert_eq!(done.json()["status"], "completed");
    let log = repo.git(&["show", &format!("refs/wfe/runs/{id}:phases/ship/log.jsonl")]);
    assert!(
        log.contains("ship it"),
        "the approval's artifact is the next phase's input: {log}"
    );
}

#[test]
fn a_live_runner_with_wait_takes_the_approval_of_an_approval_after_phase() {
    let repo = Repo::new();
    repo.template(
        "review",
        &json!({ "name": "review", "phases": [
            { "id": "draft", "kind": "script", "approval": "after", "run": "echo drafted" },
            script("publish", &["draft"], "true"),
        ]}),
    );
    let runner = repo.spawn(&["run", "review", "--wait", "--json"]);
    // The runner answers only once the phase waits, so retry until it does.
    let id = loop {
        if let Some(r) = repo.wfe_refs().first() {
            let id = r.trim_start_matches("refs/wfe/runs/").to_string();
            let state = repo.git_output(&["show", &format!("{r}:phases/draft/state.json")]);
            if String::from_utf8_lossy(&state.stdout).contains("\"waiting\"") {
                break id;
            }
        }
        std::thread::yield_now();
    };
    let approve = repo.wfe(&["approve", &id, "draft"]);
    approve.code(0);
    // The live runner answered.
    let runner_pid = format!("pid {}", runner.id());
    assert_run!(
        &repo,
        "approve_through_a_live_runner",
        &approve,
        [(runner_pid, "pid [RUNNER]")]
    );
    let out = common::Run::from(runner.wait_with_output().unwrap());
    out.code(0);
    assert_eq!(out.json()["status"], "completed");
}

#[test]
fn with_auto_mode_off_each_resume_advances_one_phase_until_auto_is_on() {
    let repo = Repo::new();
    repo.write(".wfe/config.json", r#"{"auto": false}"#);
    repo.template(
        "steps",
        &json!({ "name": "steps", "phases": [
            script("one", &[], "true"), script("two", &["one"], "true"), script("three", &["two"], "true"),
        ]}),
    );
    let first = repo.wfe(&["run", "steps", "--json"]);
    first.code(3);
    let doc = first.json();
    assert_eq!(doc["status"], "waiting");
    assert!(
        doc["reason"].as_str().unwrap().contains("auto mode is off"),
        "{doc}"
    );
    assert_eq!(phase(&doc, "two")["status"], "pending");
    let id = doc["id"].as_str().unwrap().to_string();

    let second = repo.wfe(&["resume", &id, "--json"]);
    second.code(3);
    assert_eq!(phase(&second.json(), "two")["status"], "completed");
    assert_eq!(phase(&second.json(), "three")["status"], "pending");

    let cont = repo.wfe(&["continue", &id]);
    cont.code(2);
    // It points at `wfe resume`.
    assert_run!(&repo, "continue_a_run_with_auto_off", &cont);
    repo.wfe(&["auto", &id, "on"]).code(0);
    let run_json = repo.git(&["show", &format!("refs/wfe/runs/{id}:run.json")]);
    assert!(run_json.contains("\"auto\": true"), "{run_json}");
    let last = repo.wfe(&["resume", &id, "--json"]);
    last.code(0);
    assert_eq!(last.json()["status"], "completed");
}

#[test]
fn concurrent_control_requests_are_never_lost() {
    let repo = Repo::new();
    repo.template(
        "gate2",
        &json!({ "name": "gate2", "phases": [ { "id": "g", "kind": "gate" } ]}),
    );
    repo.wfe(&["run", "gate2"]).code(3);
    let id = repo.run_id();
    // Many requests at once, no runner: each takes the lock in turn and commits on top.
    let children: Vec<Child> = (0..6)
        .map(|n| {
            let mode = if n % 2 == 0 { "off" } else { "on" };
            repo.wfe_cmd()
                .args(["auto", &id, mode])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ok = 0;
    for child in children {
        let out = common::Run::from(child.wait_with_output().unwrap());
        assert!(out.code == 0 || out.code == 2, "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        ok += usize::from(out.code == 0);
    }
    let events = repo.git(&[
        "log",
        "--format=%(trailers:key=Wfe-Event,valueonly)",
        &format!("refs/wfe/runs/{id}"),
    ]);
    let committed = events.matches("auto-o").count();
    assert_eq!(
        committed, ok,
        "every request that succeeded has its checkpoint:\n{events}"
    );
    assert!(ok >= 1);
    assert!(
        repo.git_output(&["fsck", "--strict", "--no-progress"])
            .status
            .success()
    );
}

/// The entries of `<git-dir>/wfe/control/`, if it exists.
fn control_entries(repo: &Repo) -> Vec<String> {
    std::fs::read_dir(repo.path().join(".git/wfe/control"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_finished_run_leaves_no_control_directory_behind() {
    let repo = Repo::new();
    repo.template(
        "two",
        &json!({ "name": "two", "phases": [
            script("first", &[], "true"),
            script("second", &["first"], "true"),
        ]}),
    );
    repo.wfe(&["run", "two"]).code(0);
    let id = repo.run_id();
    let left = control_entries(&repo);
    assert!(
        !left.contains(&id),
        "run {id} left its control directory: {left:?}"
    );

    // A run paused by a live request, then resumed to its end: neither
    // runner leaves the directory.
    let repo = Repo::new();
    let (ready, go) = (repo.path().join("ready.fifo"), repo.path().join("go.fifo"));
    mkfifo(&ready);
    mkfifo(&go);
    repo.template(
        "held",
        &json!({ "name": "held", "phases": [
            script("first", &[], &format!("echo ready > {}; read x < {}", ready.display(), go.display())),
            script("second", &["first"], "true"),
        ]}),
    );
    let runner = repo.spawn(&["run", "held"]);
    read_fifo_line(&ready);
    let id = repo.run_id();
    assert!(
        control_entries(&repo).contains(&id),
        "a live runner listens on its control directory"
    );
    repo.wfe(&["pause", &id]).code(0);
    write_fifo_line(&go, "go");
    common::Run::from(runner.wait_with_output().unwrap()).code(3);
    assert!(!control_entries(&repo).contains(&id), "paused run left it");
    repo.wfe(&["resume", &id]).code(0);
    assert_eq!(control_entries(&repo), Vec::<String>::new());
}

#[test]
fn a_request_to_a_run_with_no_runner_removes_a_leftover_control_directory() {
    let repo = Repo::new();
    repo.template(
        "gate",
        &json!({ "name": "gate", "phases": [
            { "id": "ok", "kind": "gate" },
            script("after", &["ok"], "true"),
        ]}),
    );
    repo.wfe(&["run", "gate"]).code(3);
    let id = repo.run_id();
    // What a request that came too late for the last runner leaves.
    let dir = repo.path().join(".git/wfe/control").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    repo.wfe(&["cancel", &id]).code(0);
    assert!(!dir.exists(), "the sender acting alone tidies it");
}

#[test]
fn a_cancelled_live_run_leaves_no_control_directory_behind() {
    let repo = Repo::new();
    let ready = repo.path().join("ready.fifo");
    mkfifo(&ready);
    repo.template(
        "slow",
        &json!({ "name": "slow", "phases": [
            script("first", &[], &format!("echo ready > {}; exec sleep 60", ready.display())),
        ]}),
    );
    let runner = repo.spawn(&["run", "slow"]);
    read_fifo_line(&ready);
    let id = repo.run_id();
    // The runner answers, then ends at once: whoever is last (it, or the
    // command taking the answer) removes the directory.
    repo.wfe(&["cancel", &id]).code(0);
    let out = common::Run::from(runner.wait_with_output().unwrap());
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert_eq!(control_entries(&repo), Vec::<String>::new());
}
