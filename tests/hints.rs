//! Every hint printed is a command that works at that moment: each test
//! puts a run in a state, takes every `` `wfe …` `` command wfe suggests
//! there, runs it, and checks it is accepted (never exit 2) and, when it
//! says it goes on, that the run does (exit 0, or 3 when it stops again).

use crate::common;

use common::snapshot::assert_run;
use common::{Repo, script};
use serde_json::json;

/// The concrete commands in `text`'s `` `wfe …` `` spans (placeholders
/// such as RUN or TEMPLATE are templates of commands, not commands).
fn hinted(text: &str) -> Vec<(Vec<String>, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("`wfe ") {
        let after = &rest[start + 5..];
        let Some(end) = after.find('`') else { break };
        let command = &after[..end];
        let tail = &after[end + 1..];
        let words: Vec<String> = command.split_whitespace().map(String::from).collect();
        let placeholder = words
            .iter()
            .any(|w| w.chars().any(|c| c.is_ascii_uppercase()) || w.contains("@N"));
        if !placeholder {
            let goes_on = tail.starts_with(" goes on") || tail.starts_with(" approves");
            out.push((words, goes_on));
        }
        rest = tail;
    }
    out
}

/// Runs every hint in `out`'s stderr and stdout; returns how many ran.
#[track_caller]
fn follow(repo: &Repo, out: &common::Run) -> usize {
    let hints = hinted(&format!("{}\n{}", out.stdout, out.stderr));
    for (words, goes_on) in &hints {
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let run = repo.wfe(&args);
        let code = run.code;
        assert_ne!(
            code,
            2,
            "hint `wfe {}` was refused:\n{}",
            words.join(" "),
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        if *goes_on {
            assert!(
                code == 0 || code == 3,
                "hint `wfe {}` should go on, exited {code}:\n{}",
                words.join(" "),
                run.stderr
            );
        }
    }
    hints.len()
}

#[test]
fn with_auto_mode_off_and_no_wait_the_hints_go_on() {
    let repo = Repo::new();
    repo.write(".wfe/config.json", r#"{ "auto": false }"#);
    repo.template(
        "three",
        &json!({ "name": "three", "phases": [
            script("a", &[], "true"), script("b", &["a"], "true"), script("c", &["b"], "true"),
        ]}),
    );
    let run = repo.wfe(&["run", "three"]);
    run.code(3);
    let id = repo.run_id();
    assert!(
        run.stderr.contains(&format!("`wfe resume {id}` goes on")),
        "{}",
        run.stderr
    );
    // `wfe continue` needs a live runner; without one it says what does go on.
    let cont = repo.wfe(&["continue", &id]);
    cont.code(2);
    assert_run!(&repo, "continue_without_a_runner", &cont);
    let status = repo.wfe(&["status"]);
    assert_eq!(
        follow(&repo, &run) + follow(&repo, &cont) + follow(&repo, &status),
        3
    );
    // The resumes above took the run through b and c: it is over, and
    // `wfe continue` now says so without sending anyone anywhere.
    let doc = repo.wfe(&["status", "--json"]).json();
    assert_eq!(doc["status"], "completed");
    let over = repo.wfe(&["continue", &id]);
    over.code(2);
    assert!(
        over.stderr.contains("completed and nothing is left to run"),
        "{}",
        over.stderr
    );
    assert!(!over.stderr.contains("hint:"), "{}", over.stderr);
}

#[test]
fn a_gate_hints_approve_and_then_resume() {
    let repo = Repo::new();
    repo.template(
        "gated",
        &json!({ "name": "gated", "phases": [
            script("a", &[], "true"),
            { "id": "ok", "kind": "gate", "needs": ["a"] },
            script("b", &["ok"], "true"),
        ]}),
    );
    let run = repo.wfe(&["run", "gated"]);
    run.code(3);
    let id = repo.run_id();
    // `wfe continue` without a runner names the approval, not a resume
    // that would stop at the same gate.
    let cont = repo.wfe(&["continue", &id]);
    cont.code(2);
    assert!(
        cont.stderr.contains(&format!("`wfe approve {id} ok`")),
        "{}",
        cont.stderr
    );
    let approved = repo.wfe(&["approve", &id, "ok"]);
    approved.code(0);
    assert_eq!(follow(&repo, &approved), 1);
    assert_eq!(
        repo.wfe(&["status", "--json"]).json()["status"],
        "completed"
    );
}

#[test]
fn skip_hints_resume_only_when_resuming_goes_on() {
    let repo = Repo::new();
    repo.template(
        "both",
        &json!({ "name": "both", "defaults": { "fail_fast": false }, "phases": [
            script("a", &[], "exit 1"), script("b", &[], "exit 1"), script("c", &["a", "b"], "true"),
        ]}),
    );
    repo.wfe(&["run", "both", "--jobs", "2"]).code(1);
    let id = repo.run_id();
    // b still failed: resuming would do nothing, so no resume is hinted.
    let first = repo.wfe(&["skip", &id, "a"]);
    first.code(0);
    assert!(!first.stderr.contains("wfe resume"), "{}", first.stderr);
    assert_eq!(follow(&repo, &first), 0);
    let second = repo.wfe(&["skip", &id, "b"]);
    second.code(0);
    assert!(second.stderr.contains("wfe resume"), "{}", second.stderr);
    assert_eq!(follow(&repo, &second), 1);
    assert_eq!(
        repo.wfe(&["status", "--json"]).json()["status"],
        "completed"
    );
}
