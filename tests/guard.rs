//! The guardian: a runner's or worker's phases die with it, even when it
//! is killed with SIGKILL, without a `wfe resume` and before another
//! worker takes the phase over; a `setsid` grandchild too (its environment
//! carries the driver's tag); and the signals that stop a worker's process
//! group do not reach the guardian before it has swept.
//!
//! Phases say they started through files the test polls with a bound;
//! nothing here sleeps to synchronise.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Repo, pid_alive, script};
use serde_json::json;

/// Polls `ready` every few milliseconds for at most `bound`.
#[track_caller]
fn wait_for_within(what: &str, bound: Duration, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + bound;
    while !ready() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How long a phase may outlive its killed driver: the guardian's sweep.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// The pid written (atomically: temporary file, then rename) to `path`,
/// once it is there.
fn pid_in(path: &Path) -> u32 {
    wait_for_within(
        &format!("{} to be written", path.display()),
        Duration::from_secs(60),
        || path.exists(),
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A phase whose first attempt writes its pid to `dir/pid.1` and runs
/// for ever (until a signal: it logs `killed <pid>`), and whose later
/// attempts log `overlap` if the first attempt's process still runs when
/// they start. Every start and end goes to `dir/log`.
fn long_once(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "exec 2>/dev/null; \
         if [ ! -e {d}/pid.1 ]; then \
           trap 'echo killed $$ >> {d}/log; exit 143' TERM; \
           echo start first $$ >> {d}/log; echo $$ > {d}/pid.tmp; mv {d}/pid.tmp {d}/pid.1; \
           sleep 60 & wait; echo end first >> {d}/log; \
         else \
           first=$(cat {d}/pid.1); \
           if [ -e /proc/$first ] && ! grep -q '^State:.*Z' /proc/$first/status 2>/dev/null; then echo overlap >> {d}/log; fi; \
           echo start again $$ >> {d}/log; echo end again >> {d}/log; \
         fi"
    )
}

/// The log of [`long_once`]: the first attempt ended (or was killed)
/// before the second started, which saw no overlap and ran to its end.
fn assert_never_overlapped(dir: &Path) {
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    assert!(!log.contains("overlap"), "{log}");
    let again = lines
        .iter()
        .position(|l| l.starts_with("start again"))
        .unwrap_or_else(|| panic!("the phase never ran again:\n{log}"));
    assert!(lines[0].starts_with("start first"), "{log}");
    // The first attempt's end (its TERM trap) precedes the second start,
    // or it was killed outright (no line): never after.
    assert!(
        lines[again..]
            .iter()
            .all(|l| !l.starts_with("killed") && !l.starts_with("end first")),
        "{log}"
    );
    assert_eq!(lines.last(), Some(&"end again"), "{log}");
}

/// A bare repository to share through, in a temporary directory.
fn bare() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(dir.path().join("remote.git"))
        .output()
        .unwrap();
    assert!(out.status.success());
    dir
}

/// The origin clone with `template` committed and its run queued and
/// pushed to `url`, and the run's id.
fn queued(url: &str, template: &serde_json::Value) -> (Repo, String) {
    let a = Repo::new();
    a.template("guarded", template);
    a.git(&["add", ".wfe"]);
    a.git(&["commit", "-q", "-m", "template"]);
    a.git(&["remote", "add", "origin", url]);
    a.git(&["push", "-q", "-u", "origin", "main"]);
    let out = a.wfe(&["run", "guarded", "--queue", "--json"]);
    out.code(0);
    let id = out.json()["run"].as_str().unwrap().to_string();
    a.wfe(&["push", "origin", &id]).code(0);
    (a, id)
}

/// A fresh clone of `url`.
fn clone(url: &str) -> Repo {
    let b = Repo::empty();
    b.git(&["remote", "add", "origin", url]);
    b.git(&["fetch", "-q", "origin"]);
    b.git(&["reset", "-q", "--hard", "origin/main"]);
    b
}

/// Starts a worker on run `id` in `repo` (the real clock: leases are real
/// time), leading its own process group so the test can signal the group.
fn worker(repo: &Repo, id: &str, name: &str) -> Child {
    let mut cmd = repo.wfe_cmd();
    cmd.env_remove("WFE_NOW");
    cmd.args([
        "worker",
        "--run",
        id,
        "--id",
        name,
        "--no-output",
        "--lease",
        "2s",
    ]);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

#[test]
fn a_sigkilled_workers_phase_dies_with_it_and_the_next_worker_never_overlaps_it() {
    let remote = bare();
    let url = format!("file://{}", remote.path().join("remote.git").display());
    let side = tempfile::tempdir().unwrap();
    let template =
        json!({ "name": "guarded", "phases": [script("slow", &[], &long_once(side.path()))] });
    let (_origin, id) = queued(&url, &template);
    let w = clone(&url);
    let mut first = worker(&w, &id, "first");
    let pid = pid_in(&side.path().join("pid.1"));
    assert!(pid_alive(pid));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    wait_for_within("the phase to die with its worker", GONE_WITHIN, || {
        !pid_alive(pid)
    });

    // Another worker takes the phase over once the 2s lease lapses.
    let w2 = clone(&url);
    let second = worker(&w2, &id, "second");
    let out = common::Run::from(second.wait_with_output().unwrap());
    out.code(0);
    assert!(out.stderr.contains("run completed"), "{}", out.stderr);
    assert_never_overlapped(side.path());
}

#[test]
fn a_sigkilled_runners_phase_dies_with_it_without_a_resume() {
    let repo = Repo::new();
    let side = tempfile::tempdir().unwrap();
    repo.template(
        "long",
        &json!({ "name": "long", "phases": [script("slow", &[], &long_once(side.path()))] }),
    );
    let mut runner = repo.spawn(&["run", "long"]);
    let pid = pid_in(&side.path().join("pid.1"));
    runner.kill().unwrap();
    runner.wait().unwrap();
    wait_for_within("the phase to die with its runner", GONE_WITHIN, || {
        !pid_alive(pid)
    });
    // The first attempt was ended gracefully: its TERM trap ran.
    let log = std::fs::read_to_string(side.path().join("log")).unwrap();
    assert!(log.contains(&format!("killed {pid}")), "{log}");

    // Nothing was left for the resume to end.
    let resumed = repo.wfe(&["resume", "latest"]);
    resumed.code(0);
    assert!(!resumed.stderr.contains("leftover"), "{}", resumed.stderr);
    assert_never_overlapped(side.path());
}

/// A phase that starts a grandchild in a session of its own (out of the
/// phase's process group, its pipes let go), writes both pids, and waits.
fn with_setsid_grandchild(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "exec 2>/dev/null; setsid sh -c 'echo $$ > {d}/g.tmp; mv {d}/g.tmp {d}/grandchild; exec sleep 1000' >/dev/null 2>&1 </dev/null & \
         while [ ! -e {d}/grandchild ]; do sleep 0.01; done; echo $$ > {d}/pid.tmp; mv {d}/pid.tmp {d}/pid; wait"
    )
}

#[test]
fn a_setsid_grandchild_of_a_sigkilled_runners_phase_dies_too() {
    let repo = Repo::new();
    let side = tempfile::tempdir().unwrap();
    repo.template(
        "escape",
        &json!({ "name": "escape", "phases": [script("work", &[], &with_setsid_grandchild(side.path()))] }),
    );
    let mut runner = repo.spawn(&["run", "escape"]);
    let pid = pid_in(&side.path().join("pid"));
    let grandchild = pid_in(&side.path().join("grandchild"));
    assert!(pid_alive(grandchild));
    runner.kill().unwrap();
    runner.wait().unwrap();
    let ended = |p: u32| {
        let until = Instant::now() + GONE_WITHIN;
        while pid_alive(p) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        !pid_alive(p)
    };
    let (phase_gone, grandchild_gone) = (ended(pid), ended(grandchild));
    // Not left running whatever the assertions say.
    let _ = Command::new("kill")
        .args(["-s", "KILL", &grandchild.to_string()])
        .status();
    assert!(phase_gone, "the phase outlived its SIGKILLed runner");
    assert!(
        grandchild_gone,
        "the setsid grandchild outlived its SIGKILLed runner"
    );
}

#[test]
fn sigterm_or_sigint_to_a_workers_process_group_does_not_stop_its_guardian_before_it_sweeps() {
    for signal in ["TERM", "INT"] {
        let remote = bare();
        let url = format!("file://{}", remote.path().join("remote.git").display());
        let side = tempfile::tempdir().unwrap();
        let template = json!({ "name": "guarded", "phases": [script("work", &[], &with_setsid_grandchild(side.path()))] });
        let (_origin, id) = queued(&url, &template);
        let w = clone(&url);
        let worker = worker(&w, &id, "w");
        let grandchild = pid_in(&side.path().join("grandchild"));
        pid_in(&side.path().join("pid"));
        let guardian = common::guardian_of(worker.id()).expect("the worker has a guardian");
        // The worker stops its phase's group itself; the grandchild left
        // that group, and a worker is no subreaper: only the guardian can
        // end it, after the worker has gone.
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -s {signal} -- -{}", worker.id())])
            .status()
            .unwrap()
            .success();
        assert!(sent, "{signal}");
        let out = common::Run::from(worker.wait_with_output().unwrap());
        let until = Instant::now() + GONE_WITHIN;
        while pid_alive(grandchild) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let gone = !pid_alive(grandchild);
        let _ = Command::new("kill")
            .args(["-s", "KILL", &grandchild.to_string()])
            .status();
        out.code(3);
        assert!(
            gone,
            "{signal}: the grandchild outlived its worker: the guardian was stopped"
        );
        wait_for_within("the guardian to exit after its sweep", GONE_WITHIN, || {
            !pid_alive(guardian)
        });
    }
}

#[test]
fn a_guardian_ends_only_its_own_runners_phases() {
    // Two runs of one repository, each with its runner and guardian.
    let repo = Repo::new();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (name, dir) in [("a", &a), ("b", &b)] {
        repo.template(
            name,
            &json!({ "name": name, "phases": [script("slow", &[], &long_once(dir.path()))] }),
        );
    }
    let mut runner_a = repo.spawn(&["run", "a"]);
    let mut runner_b = repo.spawn(&["run", "b"]);
    let pid_a = pid_in(&a.path().join("pid.1"));
    let pid_b = pid_in(&b.path().join("pid.1"));
    let guardian_a = common::guardian_of(runner_a.id()).expect("runner a has a guardian");
    runner_a.kill().unwrap();
    runner_a.wait().unwrap();
    wait_for_within("a's guardian to sweep and exit", GONE_WITHIN, || {
        !pid_alive(guardian_a)
    });
    let (a_gone, b_alive) = (!pid_alive(pid_a), pid_alive(pid_b));
    // b's runner stops its own phase.
    let _ = Command::new("kill")
        .args(["-s", "TERM", &runner_b.id().to_string()])
        .status();
    runner_b.wait().unwrap();
    assert!(a_gone, "a's phase outlived its runner");
    assert!(b_alive, "a's guardian ended b's phase");
}

/// A phase that writes its pid to `dir/<name>.pid`, waits for `dir/go`,
/// then logs its end to `dir/<name>.log` (one line per attempt).
fn waits_for_go(dir: &Path, name: &str) -> String {
    let d = dir.display();
    format!(
        "echo $$ > {d}/{name}.tmp; mv {d}/{name}.tmp {d}/{name}.pid; \
         while [ ! -e {d}/go ]; do sleep 0.05; done; echo ended >> {d}/{name}.log"
    )
}

#[test]
fn a_second_worker_of_a_run_in_the_same_clone_is_refused_and_leaves_the_first_alone() {
    // The clone's local ref and process records are the first worker's; a
    // second driver there would fight over them (and used to sweep the
    // first one's phases as leftovers of the run).
    let remote = bare();
    let url = format!("file://{}", remote.path().join("remote.git").display());
    let side = tempfile::tempdir().unwrap();
    let template = json!({ "name": "guarded", "phases": [
        script("a", &[], &waits_for_go(side.path(), "a")),
    ] });
    let (_origin, id) = queued(&url, &template);
    let w = clone(&url);
    let first = worker(&w, &id, "first");
    let pid = pid_in(&side.path().join("a.pid"));
    let second = common::Run::from(worker(&w, &id, "second").wait_with_output().unwrap());
    second.code(2);
    assert!(
        second.stderr.contains("one worker per run and clone"),
        "{}",
        second.stderr
    );
    assert!(pid_alive(pid), "the first worker's phase still runs");
    std::fs::write(side.path().join("go"), "").unwrap();
    common::Run::from(first.wait_with_output().unwrap()).code(0);
    let log = std::fs::read_to_string(side.path().join("a.log")).unwrap();
    assert_eq!(log, "ended\n", "a ran once, to its end");
}
