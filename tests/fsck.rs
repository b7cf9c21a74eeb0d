//! One bad run never breaks the others: runs broken with the real git CLI
//! (a ref to a blob, a commit whose run.json is not JSON, a ref to an
//! object `git gc` pruned) are skipped with a warning by the commands that
//! span runs, leave commands on a healthy run alone, are reported by
//! `wfe fsck`, and are removed by `wfe rm` (back with `wfe undo`, gone for
//! good with `--purge`).

use crate::common;

use std::io::Write;
use std::process::{Child, Stdio};

use common::snapshot::{assert_run, assert_text, command};
use common::{Repo, mkfifo, read_fifo_line, script};
use serde_json::json;

/// A run id newer than any the harness makes: a ref that came with a fetch.
const FETCHED: &str = "7zzzzzzzzzzzzzzzzzzzzzzzzz";

fn noted(repo: &Repo) {
    repo.template(
        "noted",
        &json!({ "name": "noted", "phases": [{
            "id": "write", "kind": "script", "outputs": { "note": "message" },
            "run": "echo '{\"text\": \"zebra crossing\"}' > \"$WFE_OUT/note.json\""
        }]}),
    );
}

/// Runs `git ARGS` with `input` on stdin; its stdout, trimmed.
fn git_in(repo: &Repo, args: &[&str], input: &str) -> String {
    let mut child = repo
        .git_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run_ids(repo: &Repo) -> Vec<String> {
    let mut ids: Vec<String> = repo
        .wfe_refs()
        .iter()
        .filter_map(|r| r.strip_prefix("refs/wfe/runs/"))
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

fn refs(repo: &Repo) -> String {
    repo.git(&["for-each-ref", "--format=%(refname)", "refs/wfe/"])
}

/// Three runs, oldest first, the first two then broken: (bad run.json, blob, healthy).
fn broken_repo() -> (Repo, String, String, String) {
    let repo = Repo::new();
    noted(&repo);
    for _ in 0..3 {
        repo.wfe(&["run", "noted", "-q"]).code(0);
    }
    let ids = run_ids(&repo);
    let (bad_json, blob, healthy) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

    // A checkpoint made by hand on top of the run: run.json is not JSON.
    let bad = git_in(&repo, &["hash-object", "-w", "--stdin"], "{ not json");
    let tree = git_in(
        &repo,
        &["mktree"],
        &format!("100644 blob {bad}\trun.json\n"),
    );
    let tip = repo.git(&["rev-parse", &format!("refs/wfe/runs/{bad_json}")]);
    let message =
        format!("wfe: forged\n\nWfe-Run: {bad_json}\nWfe-Template: noted\nWfe-Status: completed\n");
    let forged = git_in(&repo, &["commit-tree", &tree, "-p", tip.trim()], &message);
    repo.git(&["update-ref", &format!("refs/wfe/runs/{bad_json}"), &forged]);

    // A run ref pointing at a blob.
    let text = git_in(&repo, &["hash-object", "-w", "--stdin"], "not a commit\n");
    repo.git(&["update-ref", &format!("refs/wfe/runs/{blob}"), &text]);

    // A fetched ref whose commit `git gc` pruned: written as git would
    // leave it, a loose ref to an object that is gone.
    let lost = git_in(&repo, &["commit-tree", &tree], "wfe: lost\n");
    repo.git(&["gc", "--prune=now", "--quiet"]);
    assert!(
        !repo.git_output(&["cat-file", "-e", &lost]).status.success(),
        "gc pruned the unreferenced commit"
    );
    let loose = repo.path().join(".git/refs/wfe/runs");
    std::fs::create_dir_all(&loose).unwrap();
    std::fs::write(loose.join(FETCHED), format!("{lost}\n")).unwrap();
    (repo, bad_json, blob, healthy)
}

#[test]
fn broken_runs_are_skipped_reported_and_removed() {
    let (repo, bad_json, blob, healthy) = broken_repo();
    let mut transcript = String::new();
    let mut step = |args: &[&str], code: i32| {
        let out = repo.wfe(args);
        out.code(code);
        transcript.push_str(&command(args, &out));
        out
    };

    // Commands that span runs skip the broken ones, one warning each.
    let list = step(&["list"], 0);
    assert!(list.stdout.contains(&healthy) && list.stdout.contains(&bad_json));
    assert!(!list.stdout.contains(&blob) && !list.stdout.contains(FETCHED));
    let search = step(&["search", "zebra"], 0);
    assert!(search.stdout.contains(&healthy), "{}", search.stdout);
    // (A tip whose run.json is not JSON is still indexed from what it has.)
    for broken in [&blob, &FETCHED.to_string()] {
        assert!(
            search
                .stderr
                .contains(&format!("warning: skipping run {broken}")),
            "{}",
            search.stderr
        );
    }
    step(&["index"], 0);
    // `latest` passes over the newest run, which is broken.
    step(&["status", "latest"], 0);
    // Commands on a healthy run do not see the broken ones at all.
    for args in [
        vec!["show", healthy.as_str()],
        vec!["status", healthy.as_str()],
        vec!["comment", healthy.as_str(), "still fine"],
    ] {
        let out = step(&args, 0);
        assert!(!out.stderr.contains("warning"), "{args:?}: {}", out.stderr);
    }

    // fsck names each problem with its checkpoint and path; exit 1.
    step(&["fsck"], 1);
    step(&["fsck", &healthy[..10]], 0);
    let report = repo.wfe(&["fsck", "--json"]).code(1).json();
    assert_eq!(report["ok"], false);
    let verdicts: Vec<(String, bool)> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run"].as_str().unwrap().to_string(), r["ok"] == true))
        .collect();
    assert_eq!(
        verdicts,
        [
            (FETCHED.to_string(), false),
            (healthy.clone(), true),
            (blob.clone(), false),
            (bad_json.clone(), false),
        ]
    );
    let bad_paths: Vec<&str> = report["runs"][3]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(bad_paths.contains(&"run.json"), "{bad_paths:?}");

    // rm moves them to the trash, broken or not.
    let refs_before = refs(&repo);
    step(&["rm", &bad_json, &blob[..12], FETCHED], 0);
    assert_eq!(
        refs(&repo),
        format!(
            "refs/wfe/runs/{healthy}\nrefs/wfe/trash/{bad_json}/1\nrefs/wfe/trash/{blob}/1\nrefs/wfe/trash/{FETCHED}/1\n"
        ),
        "before: {refs_before}"
    );
    let list = step(&["list"], 0);
    assert!(!list.stderr.contains("warning"), "{}", list.stderr);
    step(&["fsck"], 0);

    // undo brings a removed run back, broken as it was.
    step(&["undo", &blob], 0);
    assert!(refs(&repo).contains(&format!("refs/wfe/runs/{blob}\n")));
    step(&["fsck", &blob], 1);

    // --purge deletes a run's ref and its trash; a removed run's trash too.
    step(&["rm", "--purge", &blob, &bad_json], 0);
    assert_eq!(
        refs(&repo),
        format!("refs/wfe/runs/{healthy}\nrefs/wfe/trash/{FETCHED}/1\n")
    );
    // Nothing left to remove: bad input, nothing written.
    let before = refs(&repo);
    step(&["rm", &blob], 2);
    step(&["undo", &bad_json], 2);
    assert_eq!(refs(&repo), before);
    step(&["list"], 0);

    assert_text!(
        &repo,
        "fsck_broken_runs",
        transcript,
        [
            (bad_json, "[BAD-JSON]"),
            (blob, "[BLOB]"),
            (healthy, "[HEALTHY]")
        ]
    );
}

#[test]
fn rm_refuses_a_run_a_live_runner_holds() {
    let repo = Repo::new();
    let fifo = repo.path().join("running.fifo");
    mkfifo(&fifo);
    repo.template(
        "hang",
        &json!({ "name": "hang", "phases": [
            script("block", &[], &format!("echo $$ > {}; sleep 1000", fifo.display())),
        ]}),
    );
    let mut runner: Child = repo
        .wfe_cmd()
        .args(["run", "hang"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pgid = read_fifo_line(&fifo);
    let id = run_ids(&repo).remove(0);
    let before = refs(&repo);
    let mut transcript = String::new();
    for args in [vec!["rm", id.as_str()], vec!["rm", "--purge", id.as_str()]] {
        let out = repo.wfe(&args);
        out.code(1);
        assert_eq!(refs(&repo), before, "{args:?} removed nothing");
        transcript.push_str(&command(&args, &out));
    }
    let holder = format!("pid {}", runner.id());
    assert_text!(
        &repo,
        "rm_refused_while_live",
        transcript,
        [(holder, "pid [RUNNER]"), (id, "[RUN]")]
    );

    runner.kill().unwrap();
    runner.wait().unwrap();
    let killed = std::process::Command::new("sh")
        .args(["-c", &format!("kill -s KILL -- -{pgid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    // The runner is gone: its stale lock is taken over and the run removed.
    repo.wfe(&["rm", &run_ids(&repo)[0]]).code(0);
    assert!(run_ids(&repo).is_empty());
}

#[test]
fn a_force_accepted_artifact_that_does_not_validate_is_flagged() {
    let repo = Repo::new();
    repo.write(
        ".wfe/schemas/report.json",
        &json!({ "type": "object", "required": ["ok"], "properties": { "ok": { "type": "boolean" } } }).to_string(),
    );
    repo.template(
        "rep",
        &json!({ "name": "rep", "phases": [
            { "id": "make", "kind": "script", "outputs": { "report": "report" },
              "run": "echo '{\"ok\": \"yes\"}' > \"$WFE_OUT/report.json\"" },
        ]}),
    );
    repo.wfe(&["run", "rep"]).code(1);
    let id = repo.run_id();
    repo.wfe(&["fsck", &id]).code(0);
    repo.wfe(&["accept", &id, "make", "--force"]).code(0);
    let out = repo.wfe(&["fsck", &id]);
    out.code(1);
    assert!(
        out.stdout
            .contains("was force-accepted and does not match schema `report`")
            || out
                .stderr
                .contains("was force-accepted and does not match schema `report`"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_run!(&repo, "fsck_force_accepted", &out);
}
