//! Artifacts by hand: accept, edit (with `EDITOR` set to a script),
//! comments (also while a runner is live), and inputs checked again when a
//! run resumes.

use crate::common;

use std::process::{Command, Stdio};

use common::snapshot::{assert_run, assert_text, command};
use common::{Repo, mkfifo, read_fifo_line, script, write_fifo_line};
use serde_json::{Value, json};

/// A repo with a `report` schema and a template whose `make` phase writes
/// an invalid report (the `ok` field is a string) that `after` reads.
fn failing_repo() -> Repo {
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
            script("after", &["make"], "echo \"got $(tr -d ' \\n' < \"$WFE_IN/make/report.json\")\""),
        ]}),
    );
    repo
}

fn tip_json(repo: &Repo, id: &str, path: &str) -> Value {
    serde_json::from_str(&repo.git(&["show", &format!("refs/wfe/runs/{id}:{path}")])).unwrap()
}

fn tip(repo: &Repo, id: &str) -> String {
    repo.git(&["rev-parse", &format!("refs/wfe/runs/{id}")])
}

/// An editor: a script that runs `body` with the file as `$1`.
fn editor(repo: &Repo, name: &str, body: &str) -> String {
    let path = repo.write(&format!("{name}.sh"), &format!("#!/bin/sh\n{body}\n"));
    let ok = Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    path.display().to_string()
}

fn edit(repo: &Repo, editor: &str, args: &[&str]) -> common::Run {
    let out = repo
        .wfe_cmd()
        .env("EDITOR", editor)
        .env_remove("VISUAL")
        .args(args)
        .output()
        .unwrap();
    common::Run::from(out)
}

#[test]
fn accept_force_commits_the_rejected_output_marked_forced_and_resume_goes_on() {
    let repo = failing_repo();
    repo.wfe(&["run", "rep"]).code(1);
    let id = repo.run_id();

    // `show` has the rejected output (`"yes"`) and the schema it failed
    // (`"boolean"`); resume has nothing to do; accept wants `--force` and
    // refuses a phase with no rejected output.
    let mut session = String::new();
    for (args, code) in [
        (vec!["show", &id, "make"], 0),
        (vec!["resume", &id], 1),
        (vec!["accept", &id, "make"], 2),
    ] {
        let out = repo.wfe(&args);
        out.code(code);
        session.push_str(&command(&args, &out));
    }
    let before = tip(&repo, &id);
    let wrong_args = ["accept", &id, "after", "--force"];
    let wrong = repo.wfe(&wrong_args);
    wrong.code(2);
    assert_eq!(tip(&repo, &id), before, "a refused accept writes nothing");
    session.push_str(&command(&wrong_args, &wrong));
    assert_text!(&repo, "accept_a_rejected_output", session);

    repo.wfe(&["accept", &id, "make", "--force"]).code(0);
    let state = tip_json(&repo, &id, "phases/make/state.json");
    assert_eq!(state["status"], "completed");
    assert_eq!(state["forced"], json!(["report"]));
    assert_eq!(
        tip_json(&repo, &id, "phases/make/artifacts/report.json"),
        json!({ "ok": "yes" })
    );
    assert_eq!(tip_json(&repo, &id, "run.json")["status"], "paused");
    let trailers = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers)",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert!(
        trailers.contains("Wfe-Forced: true") && trailers.contains("Wfe-Event: phase-accepted"),
        "{trailers}"
    );

    let resumed = repo.wfe(&["resume", &id, "--json"]);
    resumed.code(0);
    assert_eq!(resumed.json()["status"], "completed");
    let log = repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/after/log.jsonl"),
    ]);
    assert!(
        log.contains(r#"got {\"ok\":\"yes\"}"#),
        "the forced artifact is the input: {log}"
    );
}

#[test]
fn edit_validates_on_save_reopens_on_errors_and_commits_once_valid() {
    let repo = failing_repo();
    repo.wfe(&["run", "rep"]).code(1);
    let id = repo.run_id();
    let before = tip(&repo, &id);

    // Saved unchanged: nothing to commit.
    let args = ["edit", &id, "make", "report"];
    let same = edit(&repo, "true", &args);
    same.code(0);
    assert_eq!(tip(&repo, &id), before);

    // Invalid twice in a row: the user gave up; nothing committed.
    let bad = editor(&repo, "bad", "echo '{\"ok\": 3}' > \"$1\"");
    let refused = edit(&repo, &bad, &args);
    refused.code(2);
    assert_eq!(tip(&repo, &id), before);

    // Not JSON, then fixed on the second opening: committed.
    let count = repo.path().join("opened");
    let fixer = editor(
        &repo,
        "fixer",
        &format!(
            "echo x >> {0}; if [ $(wc -l < {0}) -eq 1 ]; then echo 'not json' > \"$1\"; else echo '{{\"ok\": true}}' > \"$1\"; fi",
            count.display()
        ),
    );
    let fixed = edit(&repo, &fixer, &args);
    fixed.code(0);
    // Unchanged: no changes; invalid twice: what is wrong at `/ok`, then
    // still invalid; not JSON, then fixed: why it reopens.
    let session = [
        command(&args, &same),
        command(&args, &refused),
        command(&args, &fixed),
    ]
    .concat();
    assert_text!(&repo, "edit_an_artifact", session);
    assert_eq!(
        std::fs::read_to_string(&count).unwrap().lines().count(),
        2,
        "the editor re-opened once"
    );
    assert_eq!(
        tip_json(&repo, &id, "phases/make/artifacts/report.json"),
        json!({ "ok": true })
    );
    let state = tip_json(&repo, &id, "phases/make/state.json");
    assert_eq!(state["status"], "completed");
    assert!(state.get("forced").is_none());
    let trailers = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers)",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert!(
        trailers.contains("Wfe-Event: artifact-edited") && !trailers.contains("Wfe-Forced"),
        "{trailers}"
    );

    // --force commits an invalid value, marked forced.
    let forced = edit(&repo, &bad, &["edit", &id, "make", "report", "--force"]);
    forced.code(0);
    assert_eq!(
        tip_json(&repo, &id, "phases/make/state.json")["forced"],
        json!(["report"])
    );

    repo.wfe(&["resume", &id]).code(0);
    let unknown = edit(&repo, &bad, &["edit", &id, "make", "nope"]);
    unknown.code(2);
    assert_run!(&repo, "edit_an_unknown_output", &unknown);
}

#[test]
fn comments_are_checkpoints_listed_by_show_even_during_a_live_run() {
    let repo = Repo::new();
    let ready = repo.path().join("ready.fifo");
    let go = repo.path().join("go.fifo");
    mkfifo(&ready);
    mkfifo(&go);
    repo.template(
        "wait",
        &json!({ "name": "wait", "phases": [
            script("hold", &[], &format!("echo ready > {}; read x < {}", ready.display(), go.display())),
            script("next", &["hold"], "true"),
        ]}),
    );
    let runner = repo
        .wfe_cmd()
        .args(["run", "wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(read_fifo_line(&ready), "ready");
    let id = repo.run_id();

    repo.wfe(&["comment", &id, "looks good so far"]).code(0);
    repo.wfe(&["comment", &id, "hold", "this one waits for a FIFO"])
        .code(0);
    repo.wfe(&["comment", &id, "nosuch", "text"]).code(2);
    write_fifo_line(&go, "go");
    let out = common::Run::from(runner.wait_with_output().unwrap());
    out.code(0);

    let comments = repo.git(&["show", &format!("refs/wfe/runs/{id}:comments.jsonl")]);
    let lines: Vec<Value> = comments
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["author"], "Test User <test@example.com>");
    assert_eq!(lines[0]["text"], "looks good so far");
    assert_eq!(lines[1]["phase"], "hold");
    let events = repo.git(&[
        "log",
        "--format=%(trailers:key=Wfe-Event,valueonly)",
        &format!("refs/wfe/runs/{id}"),
    ]);
    assert_eq!(events.matches("comment").count(), 2);
    assert!(
        events.contains("run-completed"),
        "the runner went on past the comments"
    );

    let show = repo.wfe(&["show", &id]);
    // The comments, with their author.
    assert_run!(&repo, "show_with_comments", &show);
    let phase = repo.wfe(&["show", &id, "hold", "--json"]).json();
    assert_eq!(phase["comments"][0]["text"], "this one waits for a FIFO");
}

#[test]
fn an_input_edited_by_hand_fails_the_phase_that_needs_it_before_it_starts() {
    let repo = Repo::new();
    let fifo = repo.path().join("block.fifo");
    mkfifo(&fifo);
    let ran = repo.path().join("ran");
    repo.template(
        "chain",
        &json!({ "name": "chain", "phases": [
            { "id": "a", "kind": "script", "outputs": { "note": "message" },
              "run": "echo '{\"text\": \"hi\"}' > \"$WFE_OUT/note.json\"" },
            script("b", &["a"], &format!("if [ \"$WFE_ATTEMPT\" = 1 ]; then echo $$ > {}; sleep 1000; fi; echo b >> {}", fifo.display(), ran.display())),
        ]}),
    );
    let mut runner = repo
        .wfe_cmd()
        .args(["run", "chain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pgid = read_fifo_line(&fifo);
    runner.kill().unwrap();
    runner.wait().unwrap();
    Command::new("sh")
        .args(["-c", &format!("kill -s KILL -- -{pgid}")])
        .status()
        .unwrap();
    let id = repo.run_id();

    // Forge a checkpoint whose artifact no longer matches `message`.
    let r = format!("refs/wfe/runs/{id}");
    let index = repo.path().join(".git/forge-index");
    let git = |args: &[&str], input: Option<&str>| -> String {
        let mut cmd = Command::new("git");
        cmd.current_dir(repo.path())
            .env("GIT_INDEX_FILE", &index)
            .args(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = input {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["read-tree", &r], None);
    let blob = git(&["hash-object", "-w", "--stdin"], Some("{\"txt\": 1}\n"));
    git(
        &[
            "update-index",
            "--cacheinfo",
            &format!("100644,{blob},phases/a/artifacts/note.json"),
        ],
        None,
    );
    let tree = git(&["write-tree"], None);
    let old = git(&["rev-parse", &r], None);
    let commit = git(
        &["commit-tree", &tree, "-p", &old, "-m", "forged by hand"],
        None,
    );
    git(&["update-ref", &r, &commit, &old], None);

    let resumed = repo.wfe(&["resume", &id, "--json"]);
    resumed.code(1);
    // It names the invalid input, `a/note`.
    assert_run!(&repo, "resume_with_an_input_edited_by_hand", &resumed);
    assert!(!ran.exists(), "b's script never started");
    let state = tip_json(&repo, &id, "phases/b/state.json");
    assert_eq!(state["error"]["kind"], "invalid_inputs");
    let paths: Vec<&str> = state["error"]["problems"][0]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["instance_path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&""),
        "the missing `text` is reported at the root: {paths:?}"
    );
}

#[test]
fn bad_output_files_each_fail_with_a_message_naming_the_file() {
    let repo = Repo::new();
    repo.write(
        ".wfe/config.json",
        &json!({ "max_artifact_bytes": 4096 }).to_string(),
    );
    repo.write(".wfe/schemas/any.json", "{}");
    let deep = format!("{}{}", "[".repeat(1500), "]".repeat(1500));
    repo.write("deep.json", &deep);
    let cases = [
        (
            "notjson",
            "echo 'not json' > \"$WFE_OUT/out.json\"",
            "not JSON",
        ),
        ("empty", ": > \"$WFE_OUT/out.json\"", "empty"),
        (
            "huge",
            "head -c 5000 /dev/zero | tr '\\0' ' ' > \"$WFE_OUT/out.json\"",
            "too large",
        ),
        (
            "deep",
            "cp deep.json \"$WFE_OUT/out.json\"",
            "recursion limit",
        ),
        (
            "dupkeys",
            "echo '{\"a\": 1, \"a\": 2}' > \"$WFE_OUT/out.json\"",
            "duplicate",
        ),
    ];
    let phases: Vec<Value> = cases
        .iter()
        .map(|(id, run, _)| json!({ "id": id, "kind": "script", "run": run, "outputs": { "out": "any" }, "on_failure": "continue" }))
        .collect();
    repo.template("bad", &json!({ "name": "bad", "phases": phases }));
    let run = repo.wfe(&["run", "bad", "--json"]);
    run.code(0);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let doc = run.json();
    for (n, (id, _, fragment)) in cases.iter().enumerate() {
        let phase = &doc["phases"][n];
        assert_eq!(phase["status"], "failed", "{id}: {phase}");
        let error = phase["error"].as_str().unwrap();
        assert!(
            error.contains(fragment),
            "{id}: expected `{fragment}` in {error}"
        );
        assert!(
            error.contains("out"),
            "{id}: the message names the output: {error}"
        );
    }
}

#[test]
fn a_run_validates_against_its_frozen_schema_after_the_repo_schema_changes() {
    let repo = Repo::new();
    repo.write(
        ".wfe/schemas/note.json",
        &json!({ "type": "object", "required": ["text"] }).to_string(),
    );
    let ready = repo.path().join("ready.fifo");
    let go = repo.path().join("go.fifo");
    mkfifo(&ready);
    mkfifo(&go);
    repo.template(
        "frozen",
        &json!({ "name": "frozen", "phases": [
            script("hold", &[], &format!("echo ready > {}; read x < {}", ready.display(), go.display())),
            { "id": "write", "kind": "script", "needs": ["hold"], "outputs": { "n": "note" },
              "run": "echo '{\"text\": \"old shape\"}' > \"$WFE_OUT/n.json\"" },
        ]}),
    );
    let runner = repo
        .wfe_cmd()
        .args(["run", "frozen", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    read_fifo_line(&ready);
    // The repo's schema changes while the run is under way: it now needs `author`.
    repo.write(
        ".wfe/schemas/note.json",
        &json!({ "type": "object", "required": ["text", "author"] }).to_string(),
    );
    write_fifo_line(&go, "go");
    let out = common::Run::from(runner.wait_with_output().unwrap());
    out.code(0);
    let id = out.json()["id"].as_str().unwrap().to_string();
    let frozen = tip_json(&repo, &id, "schemas/note.json");
    assert_eq!(
        frozen["required"],
        json!(["text"]),
        "the run keeps the schema it started with"
    );

    // A new run uses the new schema and fails on the old shape.
    let (tx, rx) = std::sync::mpsc::channel();
    let go2 = go.clone();
    let release = std::thread::spawn(move || {
        read_fifo_line(&ready);
        write_fifo_line(&go2, "go");
        tx.send(()).unwrap();
    });
    let second = repo.wfe(&["run", "frozen"]);
    rx.recv().unwrap();
    release.join().unwrap();
    second.code(1);
    // The new schema's missing `author`.
    assert_run!(&repo, "a_new_run_uses_the_new_schema", &second);
}
