//! Live output: running attempts publish their output to
//! `<git-dir>/wfe/live/`, `wfe log RUN PHASE --follow` streams it from any
//! terminal, `wfe status RUN --watch` redraws as the run moves. Phases and
//! followers are synchronised through FIFOs and by reading the follower's
//! output line by line, never by sleeping.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{self, Repo, mkfifo, read_fifo_line, script, write_fifo_line};

const TOKEN: &str = "tok-LIVELEAK-0123456789";

fn live_file(repo: &Repo, run: &str, key: &str, attempt: u32) -> PathBuf {
    repo.path()
        .join(".git/wfe/live")
        .join(run)
        .join(key)
        .join(format!("{attempt}.jsonl"))
}

/// Starts wfe in the background with the secret in its environment.
fn spawn(repo: &Repo, args: &[&str]) -> Child {
    repo.wfe_cmd()
        .env("DEPLOY_TOKEN", TOKEN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the next line of a child's stdout (blocks until it comes).
fn next_line(out: &mut impl BufRead) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim_end_matches('\n').to_string()
}

/// Bounded polling of a condition (not a synchronisation by sleep).
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_late_follower_sees_earlier_lines_then_new_ones_and_the_live_file_goes_with_the_checkpoint() {
    let repo = Repo::new();
    repo.write(".wfe/config.json", r#"{ "secrets": ["DEPLOY_TOKEN"] }"#);
    let fifo = |name: &str| {
        let path = repo.path().join(name);
        mkfifo(&path);
        path
    };
    let (ready, go, ready2, go2, ready3, go3) = (
        fifo("ready"),
        fifo("go"),
        fifo("ready2"),
        fifo("go2"),
        fifo("ready3"),
        fifo("go3"),
    );
    let talk = format!(
        "echo \"one $DEPLOY_TOKEN\"; echo two; echo r > {}; read x < {}; echo three; echo r > {}; read x < {}; echo four",
        ready.display(),
        go.display(),
        ready2.display(),
        go2.display()
    );
    let mut talk_phase = script("talk", &[], &talk);
    talk_phase["secrets"] = json!(["DEPLOY_TOKEN"]);
    repo.template(
        "t",
        &json!({ "name": "t", "phases": [
            talk_phase,
            script("after", &["talk"], &format!("echo r > {}; read x < {}", ready3.display(), go3.display())),
        ]}),
    );
    let runner = spawn(&repo, &["run", "t", "--json"]);
    read_fifo_line(&ready);
    let id = repo.run_id();

    // Started after the phase printed its first lines.
    let mut follower = spawn(&repo, &["log", &id, "talk", "--follow"]);
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    assert_eq!(next_line(&mut out), "one ***");
    assert_eq!(next_line(&mut out), "two");
    write_fifo_line(&go, "go");
    read_fifo_line(&ready2);
    // The phase is blocked again: this line came live, not from a checkpoint.
    assert_eq!(next_line(&mut out), "three");

    // The live file has what the phase printed, masked as the log is.
    let file = live_file(&repo, &id, "talk", 1);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(TOKEN) && !text.contains("LIVELEAK"),
        "{text}"
    );
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["text"], "one ***");
    assert_eq!(first["kind"], "line");
    assert_eq!(first["stream"], "stdout");
    assert!(first["time"].is_string());

    write_fifo_line(&go2, "go");
    assert_eq!(next_line(&mut out), "four");
    let status = follower.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the phase completed");
    assert_eq!(next_line(&mut out), "", "nothing after the phase's end");

    // `after` runs only once `talk`'s result is committed: its live file is gone.
    read_fifo_line(&ready3);
    assert!(!file.exists(), "the checkpoint supersedes the live file");

    // `status --watch`, not on a terminal: a block now, another when the run moves.
    let mut watch = spawn(&repo, &["status", &id, "--watch"]);
    let mut watched = BufReader::new(watch.stdout.take().unwrap());
    loop {
        let line = next_line(&mut watched);
        if line.contains("after") {
            assert!(line.contains("running"), "{line}");
            break;
        }
    }
    write_fifo_line(&go3, "go");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut watched, &mut rest).unwrap();
    assert_eq!(watch.wait().unwrap().code(), Some(0), "the run completed");
    let last_after = rest
        .lines()
        .rfind(|l| l.contains(" after "))
        .unwrap_or_else(|| panic!("no new block:\n{rest}"));
    assert!(last_after.contains("completed"), "{rest}");
    common::Run::from(runner.wait_with_output().unwrap()).code(0);
    assert!(!repo.path().join(".git/wfe/live").join(&id).exists());
}

#[test]
fn the_live_file_is_capped() {
    let repo = Repo::new();
    repo.write(".wfe/config.json", r#"{ "max_log_bytes": 65536 }"#);
    let (ready, go) = (repo.path().join("ready"), repo.path().join("go"));
    mkfifo(&ready);
    mkfifo(&go);
    let run = format!(
        "seq -f 'line %06g ..........................................................' 1 40000; echo r > {}; read x < {}",
        ready.display(),
        go.display()
    );
    repo.template(
        "t",
        &json!({ "name": "t", "phases": [script("noisy", &[], &run)] }),
    );
    // Its progress is not read here: it must not fill a pipe and block.
    let mut runner = repo
        .wfe_cmd()
        .args(["run", "t"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    read_fifo_line(&ready);
    let file = live_file(&repo, &repo.run_id(), "noisy", 1);
    eventually("the cap's marker is written", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("live output capped"))
    });
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size <= 65536 + 512, "{size} bytes");
    write_fifo_line(&go, "go");
    assert_eq!(runner.wait().unwrap().code(), Some(0));
}

#[test]
fn following_an_ended_phase_prints_its_log_and_exits_as_it_ended() {
    let repo = Repo::new();
    repo.template(
        "t",
        &json!({ "name": "t", "phases": [
            script("ok", &[], "echo fine"),
            script("bad", &["ok"], "echo trying; echo oops >&2; exit 3"),
        ]}),
    );
    repo.wfe(&["run", "t"]).code(1);
    let id = repo.run_id();
    let ok = repo.wfe(&["log", &id, "ok", "--follow"]);
    ok.code(0);
    assert_eq!(ok.stdout, "fine\n");
    let bad = repo.wfe(&["log", &id, "bad", "--follow"]);
    bad.code(1);
    // Two pipes: their lines' order is the order the runner read them in.
    let mut lines: Vec<&str> = bad.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["stderr oops", "trying"]);
    // Without --follow: the same output, exit 0.
    repo.wfe(&["log", &id, "bad"]).code(0);
    // An unknown phase is bad input.
    repo.wfe(&["log", &id, "nope", "--follow"]).code(2);
}

#[test]
fn a_matrix_combination_is_followed_live() {
    let repo = Repo::new();
    let (ready, go) = (repo.path().join("ready"), repo.path().join("go"));
    mkfifo(&ready);
    mkfifo(&go);
    repo.template(
        "t",
        &json!({ "name": "t", "phases": [
            { "id": "m", "kind": "script", "matrix": { "x": ["a"] },
              "run": format!("echo hello; echo r > {}; read x < {}; echo bye", ready.display(), go.display()) }
        ]}),
    );
    let runner = spawn(&repo, &["run", "t", "--json"]);
    read_fifo_line(&ready);
    let id = repo.run_id();
    let mut follower = spawn(&repo, &["log", &id, "m[x=a]", "--follow"]);
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    assert_eq!(next_line(&mut out), "hello");
    write_fifo_line(&go, "go");
    assert_eq!(next_line(&mut out), "bye");
    assert_eq!(follower.wait().unwrap().code(), Some(0));
    common::Run::from(runner.wait_with_output().unwrap()).code(0);
}
