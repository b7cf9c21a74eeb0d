//! Recovery by hand through the real binary: `wfe retry`, `wfe skip`,
//! `wfe rollback`, `wfe undo`; refused while a runner is live, nothing
//! written on bad input, and no update ever lost when two processes race.

use crate::common;

use std::process::{Child, Stdio};

use common::snapshot::{assert_run, assert_text, command};
use common::{Repo, mkfifo, read_fifo_line, script};
use serde_json::{Value, json};

/// A script phase that appends `id` to `ran.txt` and writes `note`
/// (`"<id> <attempt>"`), so executions and attempts can be counted.
fn noting(id: &str, needs: &[&str]) -> Value {
    json!({
        "id": id, "kind": "script", "needs": needs, "outputs": { "note": "message" },
        "run": format!("echo {id} >> ran.txt; echo \"{{\\\"text\\\": \\\"{id} $WFE_ATTEMPT\\\"}}\" > \"$WFE_OUT/note.json\"")
    })
}

/// A repo with `chain`: p1 → p2 → p3 → p4 → p5.
fn chain_repo() -> Repo {
    let repo = Repo::new();
    repo.template(
        "chain",
        &json!({ "name": "chain", "phases": [
            noting("p1", &[]), noting("p2", &["p1"]), noting("p3", &["p2"]),
            noting("p4", &["p3"]), noting("p5", &["p4"]),
        ]}),
    );
    repo
}

/// The ids of every run, oldest first.
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

fn rev(repo: &Repo, name: &str) -> String {
    repo.git(&["rev-parse", name]).trim().to_string()
}

fn run_ref(id: &str) -> String {
    format!("refs/wfe/runs/{id}")
}

/// Every ref under refs/wfe/ with what it points at: nothing written means this is unchanged.
fn all_refs(repo: &Repo) -> String {
    repo.git(&[
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/wfe/",
    ])
}

/// The commit whose summary starts with `prefix` in the run's history.
fn checkpoint(repo: &Repo, id: &str, prefix: &str) -> String {
    repo.git(&["log", "--format=%H %s", &run_ref(id)])
        .lines()
        .find_map(|l| {
            let (hash, summary) = l.split_once(' ')?;
            summary.starts_with(prefix).then(|| hash.to_string())
        })
        .unwrap_or_else(|| panic!("no checkpoint `{prefix}` in run {id}"))
}

fn ran(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("ran.txt"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn rollback_to_a_phase_then_undo_restores_the_exact_tip() {
    let repo = chain_repo();
    repo.wfe(&["run", "chain"]).code(0);
    let id = run_ids(&repo).remove(0);
    let old_tip = rev(&repo, &run_ref(&id));
    let after_p2 = checkpoint(&repo, &id, "wfe: p2 completed");

    let back_args = ["rollback", &id[..8], "--to", "p2"];
    let back = repo.wfe(&back_args);
    back.code(0);
    assert_eq!(rev(&repo, &run_ref(&id)), after_p2);
    let trash = format!("refs/wfe/trash/{id}/1");
    assert_eq!(rev(&repo, &trash), old_tip);
    let reflog = repo.git(&["reflog", "show", "--format=%gs", &run_ref(&id)]);
    assert!(
        reflog
            .lines()
            .next()
            .unwrap()
            .starts_with("wfe: rollback to @"),
        "{reflog}"
    );
    assert!(
        repo.git(&["reflog", "show", "--format=%gs", &trash])
            .starts_with("wfe: rollback to @"),
        "the trash ref has a reflog too"
    );

    // The run reads as it stood then.
    let doc = repo.wfe(&["show", &id, "--json"]).code(0).json();
    let status = |p: &str| {
        doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == p)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("p2"), "completed");
    assert_eq!(status("p4"), "pending");

    let undo = repo.wfe(&["undo", &id]);
    undo.code(0);
    assert_eq!(rev(&repo, &run_ref(&id)), old_tip, "the exact previous tip");
    assert_eq!(
        repo.wfe_refs(),
        vec![run_ref(&id)],
        "the trash entry is used up"
    );
    let nothing = repo.wfe(&["undo", &id]);
    nothing.code(2);
    // What each said: the trash ref and how to undo, the tip restored,
    // nothing left to undo.
    let session = [
        command(&back_args, &back),
        command(&["undo", &id], &undo),
        command(&["undo", &id], &nothing),
    ]
    .concat();
    assert_text!(
        &repo,
        "rollback_to_a_phase_then_undo",
        session,
        [
            (old_tip, "[OLD-TIP]"),
            (old_tip[..12], "[OLD-TIP]"),
            (after_p2, "[AFTER-P2]"),
            (after_p2[..12], "[AFTER-P2]"),
        ]
    );

    // By checkpoint number and by commit, too.
    repo.wfe(&["rollback", &id, "--to", "@3"]).code(0);
    let third = repo.git(&["rev-list", "--reverse", &run_ref(&id)]);
    assert_eq!(rev(&repo, &run_ref(&id)), third.lines().nth(2).unwrap());
    repo.wfe(&["undo", &id]).code(0);
    repo.wfe(&["rollback", &id, "--to", &after_p2[..10]])
        .code(0);
    assert_eq!(rev(&repo, &run_ref(&id)), after_p2);

    // Resuming from there runs the rest again as new attempts.
    std::fs::remove_file(repo.path().join("ran.txt")).unwrap();
    repo.wfe(&["resume", &id]).code(0);
    assert_eq!(ran(&repo), ["p3", "p4", "p5"]);
    assert!(
        repo.git_output(&["fsck", "--strict", "--no-progress"])
            .status
            .success()
    );
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let repo = chain_repo();
    repo.wfe(&["run", "chain"]).code(0);
    repo.wfe(&["run", "chain"]).code(0);
    let ids = run_ids(&repo);
    let (id, other) = (&ids[0], &ids[1]);
    let foreign = rev(&repo, &run_ref(other));
    let before = all_refs(&repo);

    // Each case's message is in the snapshot `rollback_bad_input`; the
    // comment says what it must name.
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "rollback".into(),
                id.clone(),
                "--to".into(),
                foreign.clone(),
            ],
            "is not part of run",
        ),
        (
            vec![
                "rollback".into(),
                id.clone(),
                "--to".into(),
                format!("{other}@2"),
            ],
            "is not part of run",
        ),
        (
            vec!["rollback".into(), id.clone(), "--to".into(), "nope".into()],
            "neither a phase of the run",
        ),
        (
            vec!["rollback".into(), id.clone(), "--to".into(), "@99".into()],
            "there is no @99",
        ),
        (
            vec!["rollback".into(), id.clone(), "--to".into(), "p5".into()],
            "current tip",
        ),
        (
            vec![
                "rollback".into(),
                "7zzzzzzz".into(),
                "--to".into(),
                "p1".into(),
            ],
            "no run 7zzzzzzz",
        ),
        (vec!["undo".into(), "7zzzzzzz".into()], "no run 7zzzzzzz"),
        (vec!["undo".into(), id.clone()], "no trashed tip"),
        (
            vec!["retry".into(), id.clone(), "nope".into()],
            "has no phase `nope`",
        ),
        (
            vec!["retry".into(), "7zzzzzzz".into(), "p1".into()],
            "no run",
        ),
        (
            vec!["skip".into(), id.clone(), "nope".into()],
            "has no phase `nope`",
        ),
        (
            vec!["skip".into(), id.clone(), "p3".into()],
            "cannot skip phase `p3`",
        ),
    ];
    let mut transcripts = String::new();
    for (args, _says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = repo.wfe(&args);
        out.code(2);
        assert_eq!(all_refs(&repo), before, "{args:?} wrote nothing");
        transcripts.push_str(&command(&args, &out));
    }
    assert_text!(
        &repo,
        "rollback_bad_input",
        transcripts,
        [
            (foreign, "[FOREIGN]"),
            (foreign[..12], "[FOREIGN]"),
            (other, "[OTHER-RUN]"),
        ]
    );

    // A bare repository has no work tree for wfe to run in.
    let bare = tempfile::tempdir().unwrap();
    repo.git(&["clone", "-q", "--bare", ".", bare.path().to_str().unwrap()]);
    let out = repo
        .wfe_cmd()
        .args([
            "-C",
            bare.path().to_str().unwrap(),
            "rollback",
            "latest",
            "--to",
            "p1",
        ])
        .output()
        .unwrap();
    let out = common::Run::from(out);
    out.code(2);
    let bare_dir = bare.path().display().to_string();
    assert_run!(
        &repo,
        "rollback_in_a_bare_repository",
        &out,
        [(bare_dir, "[BARE]")]
    );
}

#[test]
fn rollback_and_undo_are_refused_while_a_runner_is_live() {
    let repo = Repo::new();
    let fifo = repo.path().join("running.fifo");
    mkfifo(&fifo);
    repo.template(
        "hang",
        &json!({ "name": "hang", "phases": [
            script("first", &[], "true"),
            script("block", &["first"], &format!("echo $$ > {}; sleep 1000", fifo.display())),
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
    let before = all_refs(&repo);

    let mut transcripts = String::new();
    for args in [vec!["rollback", &id, "--to", "first"], vec!["undo", &id]] {
        let out = repo.wfe(&args);
        out.code(2);
        assert_eq!(all_refs(&repo), before, "{args:?} wrote nothing");
        transcripts.push_str(&command(&args, &out));
    }
    // Each names this runner's pid and says how to pause it.
    let holder = format!("pid {}", runner.id());
    assert_text!(
        &repo,
        "rollback_and_undo_refused_while_live",
        transcripts,
        [(holder, "pid [RUNNER]")]
    );

    runner.kill().unwrap();
    runner.wait().unwrap();
    let killed = std::process::Command::new("sh")
        .args(["-c", &format!("kill -s KILL -- -{pgid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    // With the runner gone, its stale lock no longer stands in the way.
    repo.wfe(&["rollback", &id, "--to", "@2"]).code(0);
}

#[test]
fn retry_of_a_middle_phase_reruns_it_and_its_dependants_only() {
    let repo = chain_repo();
    repo.wfe(&["run", "chain"]).code(0);
    let id = run_ids(&repo).remove(0);
    assert_eq!(ran(&repo), ["p1", "p2", "p3", "p4", "p5"]);
    let old_tip = rev(&repo, &run_ref(&id));

    let retried = repo.wfe(&["retry", &id, "p3", "--json", "--no-output"]);
    retried.code(0);
    // It says p4 and p5 go back to pending with p3.
    assert_run!(
        &repo,
        "retry_of_a_middle_phase",
        &retried,
        [(old_tip[..12], "[OLD-TIP]")]
    );
    assert_eq!(
        ran(&repo),
        ["p1", "p2", "p3", "p4", "p5", "p3", "p4", "p5"],
        "p3 and its dependants ran again, nothing else"
    );
    let doc = retried.json();
    assert_eq!(doc["status"], "completed");
    let attempts: Vec<(String, u64)> = doc["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [("p1", 1), ("p2", 1), ("p3", 2), ("p4", 2), ("p5", 2)]
        .iter()
        .map(|(p, n)| (p.to_string(), *n))
        .collect();
    assert_eq!(attempts, expected);

    // History keeps the old attempt; the tip archives it beside the new one.
    let r = run_ref(&id);
    assert!(
        repo.git_output(&["merge-base", "--is-ancestor", &old_tip, &r])
            .status
            .success()
    );
    let show = |path: &str| repo.git(&["show", path]);
    assert!(show(&format!("{old_tip}:phases/p3/artifacts/note.json")).contains("p3 1"));
    assert!(show(&format!("{r}:phases/p3/attempts/1/artifacts/note.json")).contains("p3 1"));
    assert!(show(&format!("{r}:phases/p3/artifacts/note.json")).contains("p3 2"));
    let request = checkpoint(&repo, &id, "wfe: retry of p3 requested");
    let trailers = repo.git(&["log", "-1", "--format=%(trailers)", &request]);
    for line in [
        "Wfe-Phase: p3\nWfe-Event: phase-retry-requested",
        "Wfe-Phase: p4\nWfe-Event: phase-reset",
        "Wfe-Requested-By: Test User <test@example.com>",
        "Wfe-Status: paused",
    ] {
        assert!(trailers.contains(line), "{line}:\n{trailers}");
    }
    // The two attempts compare like any two sides.
    let diff = repo.wfe(&["diff", &format!("{id}:p3#1"), &format!("{id}:p3#2")]);
    diff.code(0);
    assert_run!(&repo, "retry_diff_of_the_two_attempts", &diff);

    // --no-run only marks; resume runs them.
    repo.wfe(&["retry", &id, "p5", "--no-run"]).code(0);
    assert_eq!(ran(&repo).len(), 8);
    repo.wfe(&["resume", &id]).code(0);
    assert_eq!(ran(&repo).last().map(String::as_str), Some("p5"));
    assert_eq!(ran(&repo).len(), 9);
}

#[test]
fn skip_of_a_failed_phase_lets_resume_complete_without_its_artifact() {
    let repo = Repo::new();
    repo.template(
        "skippy",
        &json!({ "name": "skippy", "phases": [
            noting("a", &[]),
            { "id": "bad", "kind": "script", "needs": ["a"], "outputs": { "note": "message" },
              "run": "echo bad >> ran.txt; exit 3" },
            script("after", &["bad"],
                "echo after-{{ 'none' if not artifacts.bad else 'some' }}-{{ artifacts.a.note.text }} >> ran.txt"),
        ]}),
    );
    repo.wfe(&["run", "skippy"]).code(1);
    let id = run_ids(&repo).remove(0);

    let skipped = repo.wfe(&["skip", &id, "bad"]);
    skipped.code(0);
    // It says how the run goes on.
    assert_run!(&repo, "skip_of_a_failed_phase", &skipped);
    let state: Value = serde_json::from_str(
        &repo.git(&["show", &format!("{}:phases/bad/state.json", run_ref(&id))]),
    )
    .unwrap();
    assert_eq!(state["status"], "skipped");
    assert_eq!(state["skip_reason"], "skipped by hand");
    let doc = repo.wfe(&["show", &id, "--json"]).code(0).json();
    assert_eq!(doc["status"], "paused");

    let done = repo.wfe(&["resume", &id, "--json"]);
    done.code(0);
    assert_eq!(done.json()["status"], "completed");
    assert_eq!(ran(&repo), ["a", "bad", "after-none-a 1"]);
}

/// What one racing command did.
struct Outcome {
    what: &'static str,
    /// The process id of the other command of the round.
    rival: u32,
    out: common::Run,
}

/// The short (12 hex digits) checkpoint ids a command's notes name.
fn short_ids(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| "(),;".contains(c)))
        .filter(|w| w.len() == 12 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(String::from)
        .collect()
}

#[test]
fn racing_control_commands_never_lose_an_update() {
    let repo = chain_repo();
    repo.wfe(&["run", "chain"]).code(0);
    let id = run_ids(&repo).remove(0);
    let r = run_ref(&id);
    let commands: [(&'static str, Vec<&str>); 4] = [
        ("rollback", vec!["rollback", &id, "--to", "@3"]),
        ("undo", vec!["undo", &id]),
        ("skip", vec!["skip", &id, "p5"]),
        ("comment", vec!["comment", &id, "racing"]),
    ];
    let pairs = [
        (0, 1),
        (0, 0),
        (0, 2),
        (1, 2),
        (0, 3),
        (1, 3),
        (1, 1),
        (2, 3),
        (2, 2),
    ];
    let mut seen: Vec<String> = vec![rev(&repo, &r)];
    for round in 0..20 {
        let (x, y) = pairs[round % pairs.len()];
        let first = repo.spawn(&commands[x].1);
        let second = repo.spawn(&commands[y].1);
        let (first_pid, second_pid) = (first.id(), second.id());
        let outcomes: Vec<Outcome> = [
            (commands[x].0, second_pid, first),
            (commands[y].0, first_pid, second),
        ]
        .into_iter()
        .map(|(what, rival, child)| Outcome {
            what,
            rival,
            out: common::Run::from(child.wait_with_output().unwrap()),
        })
        .collect();
        for Outcome { what, rival, out } in &outcomes {
            assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
            // Whoever held the run's lock was the other command.
            for words in ["is being run by pid ", "waiting up to 10s for pid "] {
                if let Some((_, rest)) = out.stderr.split_once(words) {
                    // Pid 0: the rival had created its lock file but not yet written it.
                    assert!(
                        rest.starts_with(&format!("{rival} ")) || rest.starts_with("0 on unknown"),
                        "round {round}, {what}: {}",
                        out.stderr
                    );
                }
            }
            match out.code {
                0 => seen.extend(short_ids(&out.stderr)),
                // A skip may say it waits for the lock before its error.
                2 => assert!(
                    out.stderr.starts_with("error: ") || out.stderr.contains("\nerror: "),
                    "round {round}, {what}: {}",
                    out.stderr
                ),
                // Lost a compare-and-swap to the rival: a conflict, which
                // wrote nothing and says what to do.
                1 => assert!(
                    out.stderr.contains("changed underneath this writer")
                        && out.stderr.contains("then run the command again"),
                    "round {round}, {what}: {}",
                    out.stderr
                ),
                other => panic!("round {round}, {what} exited {other}: {}", out.stderr),
            }
        }
        seen.push(rev(&repo, &r));
    }
    // Every checkpoint any command reported or any round ended on is still
    // reachable from the run's ref or one of its trash entries.
    let reachable = repo.git(&["rev-list", "--glob=refs/wfe/"]);
    for id in &seen {
        assert!(
            reachable.lines().any(|l| l.starts_with(id.as_str())),
            "checkpoint {id} was lost"
        );
    }
    assert!(
        repo.git_output(&["fsck", "--strict", "--no-progress"])
            .status
            .success()
    );
}

#[test]
fn rollback_code_restores_files_byte_for_byte_and_keeps_dirty_changes() {
    let repo = Repo::new();
    repo.write(".gitignore", "*.log\n");
    repo.write("other.txt", "keep me\n");
    repo.write("tool.sh", "#!/bin/sh\necho tool\n");
    repo.git(&["add", "-A"]);
    repo.git(&["commit", "-qm", "files"]);
    repo.template(
        "code",
        &json!({ "name": "code", "defaults": { "snapshot": true }, "phases": [
            script("p1", &[], "printf 'one\\n' > code.txt"),
            script("p2", &["p1"], "printf 'two\\n' > code.txt; rm other.txt; printf 'new\\n' > added.txt; chmod +x tool.sh"),
        ]}),
    );
    repo.wfe(&["run", "code"]).code(0);
    let id = run_ids(&repo)[0].clone();
    let r = run_ref(&id);
    let diff = repo.git(&["diff", &format!("{r}~1"), &r, "--", "workspace/code.txt"]);
    assert!(
        diff.contains("-one") && diff.contains("+two"),
        "git diff shows what p2 changed in the code:\n{diff}"
    );
    let tip = rev(&repo, &r);

    // Changes in no snapshot, and an ignored file that must be left alone.
    repo.write("notes.txt", "dirty\n");
    repo.write("build.log", "ignored\n");
    let back = repo.wfe(&["rollback", &id, "--to", "p1", "--code"]);
    back.code(0);
    // It names where the dirty files were set aside.
    assert_run!(&repo, "rollback_code", &back, [(tip[..12], "[OLD-TIP]")]);
    let read = |p: &str| std::fs::read(repo.path().join(p)).ok();
    assert_eq!(read("code.txt").as_deref(), Some(&b"one\n"[..]));
    assert_eq!(
        read("other.txt").as_deref(),
        Some(&b"keep me\n"[..]),
        "a deleted file comes back"
    );
    assert_eq!(read("added.txt"), None, "a file added later is gone");
    assert_eq!(
        read("notes.txt"),
        None,
        "dirty files are set aside, not left"
    );
    assert_eq!(
        read("build.log").as_deref(),
        Some(&b"ignored\n"[..]),
        "ignored files are untouched"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(repo.path().join("tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "the executable bit p2 set is undone");

    let undo = repo.wfe(&["undo", &id, "--code"]);
    undo.code(0);
    assert_run!(&repo, "undo_code", &undo, [(tip[..12], "[OLD-TIP]")]);
    assert_eq!(rev(&repo, &r), tip, "the ref is back at the old tip");
    assert_eq!(
        read("notes.txt").as_deref(),
        Some(&b"dirty\n"[..]),
        "the dirty file is back"
    );
    assert!(
        repo.git_output(&["fsck", "--strict", "--no-progress"])
            .status
            .success()
    );

    // A checkpoint without a snapshot: exit 2, nothing moves.
    repo.template("plain", &json!({ "name": "plain", "phases": [script("a", &[], "true"), script("b", &["a"], "true")] }));
    let doc = repo.wfe(&["run", "plain", "--json"]).code(0).json();
    let plain = doc["id"].as_str().unwrap().to_string();
    let before = all_refs(&repo);
    let refused = repo.wfe(&["rollback", &plain, "--to", "a", "--code"]);
    refused.code(2);
    assert_run!(&repo, "rollback_code_without_a_snapshot", &refused);
    assert_eq!(all_refs(&repo), before);
}

#[test]
fn code_in_a_bare_repository_exits_2() {
    let repo = Repo::new();
    let bare = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(repo.path())
        .arg(bare.path().join("b.git"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success());
    let b = bare.path().join("b.git");
    let run = repo.wfe(&[
        "-C",
        b.to_str().unwrap(),
        "rollback",
        "latest",
        "--to",
        "x",
        "--code",
    ]);
    run.code(2);
    let bare_dir = b.display().to_string();
    assert_run!(
        &repo,
        "rollback_code_in_a_bare_repository",
        &run,
        [(bare_dir, "[BARE]")]
    );
}

/// The lines of `comments.jsonl` at `rev`, as their `text` fields.
fn comment_texts(repo: &Repo, rev: &str) -> Vec<String> {
    let out = repo.git_output(&["show", &format!("{rev}:comments.jsonl")]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn comments_written_after_the_target_survive_a_rollback() {
    let repo = chain_repo();
    repo.wfe(&["run", "chain"]).code(0);
    let id = run_ids(&repo).remove(0);
    repo.wfe(&["comment", &id, "p3 looks slow"]).code(0);
    repo.wfe(&["comment", &id, "p4", "check p4's note"]).code(0);
    let old_tip = rev(&repo, &run_ref(&id));
    let after_p2 = checkpoint(&repo, &id, "wfe: p2 completed");

    let back = repo.wfe(&["rollback", &id, "--to", "p2"]);
    back.code(0);
    assert_run!(&repo, "rollback_keeps_comments", &back);
    // The new tip sits on the target and only adds the comments.
    let tip = rev(&repo, &run_ref(&id));
    assert_ne!(tip, after_p2);
    assert_eq!(rev(&repo, &format!("{tip}^")), after_p2);
    let changed = repo.git(&[
        "diff-tree",
        "--no-commit-id",
        "--name-only",
        "-r",
        &after_p2,
        &tip,
    ]);
    assert_eq!(changed.trim(), "comments.jsonl");
    assert_eq!(
        comment_texts(&repo, &tip),
        ["p3 looks slow", "check p4's note"]
    );
    let message = repo.git(&["log", "-1", "--format=%B", &tip]);
    assert!(message.contains("Wfe-Event: comment\n"), "{message}");
    let target_status = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Wfe-Status,valueonly)",
        &after_p2,
    ]);
    assert!(
        message.contains(&format!("Wfe-Status: {}", target_status.trim())),
        "{message}"
    );
    assert_eq!(rev(&repo, &format!("refs/wfe/trash/{id}/1")), old_tip);
    // wfe show lists them; the phase's comment keeps its phase.
    let show = repo.wfe(&["show", &id, "--json"]).json();
    assert_eq!(show["comments"][1]["phase"], "p4");

    // Rolling back again to a checkpoint that already has the first
    // comment carries only what is newer: nothing is said twice.
    repo.wfe(&["comment", &id, "after the rollback"]).code(0);
    repo.wfe(&["rollback", &id, "--to", &tip]).code(0);
    let tip2 = rev(&repo, &run_ref(&id));
    assert_eq!(rev(&repo, &format!("{tip2}^")), tip);
    assert_eq!(
        comment_texts(&repo, &tip2),
        ["p3 looks slow", "check p4's note", "after the rollback"]
    );
    // Without comments after the target, the ref lands on the target itself.
    let repo2 = chain_repo();
    repo2.wfe(&["run", "chain"]).code(0);
    let id2 = run_ids(&repo2).remove(0);
    let p3 = checkpoint(&repo2, &id2, "wfe: p3 completed");
    repo2.wfe(&["rollback", &id2, "--to", "p3"]).code(0);
    assert_eq!(rev(&repo2, &run_ref(&id2)), p3);
    // `wfe undo` still restores the exact old tip, comments and all.
    repo2.wfe(&["undo", &id2]).code(0);
    repo2.wfe(&["comment", &id2, "kept"]).code(0);
    let commented = rev(&repo2, &run_ref(&id2));
    repo2.wfe(&["rollback", &id2, "--to", "p3"]).code(0);
    assert_ne!(rev(&repo2, &run_ref(&id2)), p3);
    repo2.wfe(&["undo", &id2]).code(0);
    assert_eq!(rev(&repo2, &run_ref(&id2)), commented);
}

/// Commits on top of `reference` a checkpoint whose `run.json` is not
/// JSON (the rest of the tree as it was), as a bad fetch could bring.
fn forge_corrupt(repo: &Repo, reference: &str) -> String {
    let index = repo.path().join(".git/forge-index");
    let git = |args: &[&str], input: Option<&str>| -> String {
        let mut cmd = repo.git_cmd(args);
        cmd.env("GIT_INDEX_FILE", &index);
        let out = match input {
            Some(text) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
            None => cmd.output().unwrap(),
        };
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let tip = rev(repo, reference);
    git(&["read-tree", &tip], None);
    let bad = git(&["hash-object", "-w", "--stdin"], Some("{ not json"));
    git(
        &[
            "update-index",
            "--cacheinfo",
            &format!("100644,{bad},run.json"),
        ],
        None,
    );
    let tree = git(&["write-tree"], None);
    let message = "wfe: forged\n\nWfe-Event: forged\nWfe-Status: running\n";
    let forged = git(&["commit-tree", &tree, "-p", &tip], Some(message));
    repo.git(&["update-ref", reference, &forged]);
    let _ = std::fs::remove_file(&index);
    forged
}

#[test]
fn rollback_repairs_a_run_whose_tip_is_corrupt() {
    let repo = chain_repo();
    repo.wfe(&["run", "chain"]).code(0);
    let id = run_ids(&repo).remove(0);
    let after_p3 = checkpoint(&repo, &id, "wfe: p3 completed");
    let first = forge_corrupt(&repo, &run_ref(&id));
    let second = forge_corrupt(&repo, &run_ref(&id));
    repo.wfe(&["status", &id]).code(1);

    // Onto a checkpoint that does not read either: refused, nothing moves.
    let before = all_refs(&repo);
    let onto = repo.wfe(&["rollback", &id, "--to", &first[..12]]);
    onto.code(2);
    assert!(onto.stderr.contains("cannot be read"), "{}", onto.stderr);
    assert_eq!(all_refs(&repo), before);

    // To a phase of the run (named by the template the broken tip still
    // holds): the ref goes back, the broken tip is kept in the trash.
    let back = repo.wfe(&["rollback", &id, "--to", "p3"]);
    back.code(0);
    assert!(
        back.stderr.contains("tip cannot be read"),
        "{}",
        back.stderr
    );
    assert_eq!(rev(&repo, &run_ref(&id)), after_p3);
    assert_eq!(rev(&repo, &format!("refs/wfe/trash/{id}/1")), second);
    repo.wfe(&["status", &id]).code(0);
    repo.wfe(&["fsck", &id]).code(0);
}
