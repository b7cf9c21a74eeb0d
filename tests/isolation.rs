//! `isolation: "worktree"`: parallel phases in worktrees of their own,
//! merged back into the working tree; conflicts that change nothing; the
//! worktrees a killed runner left removed by the next one.

use crate::common;

use std::time::{Duration, Instant};

use common::Repo;
use serde_json::{Value, json};

/// The user's work tree, seen from a script running in a worktree.
const HOME: &str = "\"$(git rev-parse --git-common-dir)/..\"";

fn isolated(id: &str, run: &str, extra: Value) -> Value {
    let mut phase = json!({ "id": id, "kind": "script", "isolation": "worktree", "run": run });
    if let (Some(p), Some(extra)) = (phase.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    phase
}

/// A repo with `shared.txt` and `a.txt` committed.
fn repo() -> Repo {
    let repo = Repo::new();
    repo.write("shared.txt", "one\ntwo\nthree\n");
    repo.write("a.txt", "a\n");
    repo.git(&["add", "shared.txt", "a.txt"]);
    repo.git(&["commit", "-q", "-m", "files"]);
    repo
}

fn read(repo: &Repo, path: &str) -> String {
    std::fs::read_to_string(repo.path().join(path)).unwrap()
}

/// `git worktree list`: one line per worktree, the user's first.
fn worktrees(repo: &Repo) -> Vec<String> {
    repo.git(&["worktree", "list"])
        .lines()
        .map(String::from)
        .collect()
}

/// Polls (bounded) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_parallel_isolated_phases_editing_different_files_both_land() {
    let repo = repo();
    repo.template(
        "pair",
        &json!({ "name": "pair", "phases": [
            isolated("left", "echo left >> a.txt; pwd > where-left.txt", json!({})),
            isolated("right", "sed -i s/three/THREE/ shared.txt; pwd > where-right.txt", json!({})),
            { "id": "after", "kind": "script", "needs": ["left", "right"],
              "run": "grep -q left a.txt && grep -q THREE shared.txt" }
        ]}),
    );
    let run = repo.wfe(&["run", "pair"]);
    run.code(0);
    assert_eq!(read(&repo, "a.txt"), "a\nleft\n");
    assert_eq!(read(&repo, "shared.txt"), "one\ntwo\nTHREE\n");
    // Each ran in a worktree of its own under the git dir.
    let id = repo.run_id();
    for side in ["left", "right"] {
        let there = read(&repo, &format!("where-{side}.txt"));
        assert!(
            there.contains(&format!("/wfe/worktrees/{id}/{side}-1")),
            "{there}"
        );
    }
    assert_eq!(worktrees(&repo).len(), 1, "{:?}", worktrees(&repo));
    assert!(
        !repo
            .path()
            .join(format!(".git/wfe/worktrees/{id}/left-1"))
            .exists()
    );
}

/// `first` changes line 1 of shared.txt and lands; `second`, started from
/// the same code, changes the same line and waits until `first` landed.
fn conflicting(repo: &Repo, second_extra: Value) {
    repo.template(
        "clash",
        &json!({ "name": "clash", "phases": [
            isolated("first", "sed -i s/one/FIRST/ shared.txt", json!({})),
            isolated(
                "second",
                &format!("sed -i s/one/SECOND/ shared.txt; n=0; until grep -q FIRST {HOME}/shared.txt; do n=$((n+1)); [ $n -gt 1500 ] && exit 9; sleep 0.02; done"),
                second_extra,
            )
        ]}),
    );
}

#[test]
fn two_phases_editing_the_same_lines_conflict_and_leave_the_tree_alone() {
    let repo = repo();
    conflicting(&repo, json!({}));
    let run = repo.wfe(&["run", "clash"]);
    run.code(1);
    assert!(
        run.stderr.contains(
            "its changes conflict with the working tree in shared.txt; nothing was merged"
        ),
        "{}",
        run.stderr
    );
    // first's change is in; nothing of second's, and no conflict markers.
    assert_eq!(read(&repo, "shared.txt"), "FIRST\ntwo\nthree\n");
    let id = repo.run_id();
    let state: Value = serde_json::from_str(&repo.git(&[
        "show",
        &format!("refs/wfe/runs/{id}:phases/second/state.json"),
    ]))
    .unwrap();
    assert_eq!(state["status"], "failed");
    assert_eq!(state["error"]["kind"], "merge_conflict");
    assert_eq!(state["error"]["paths"], json!(["shared.txt"]));
    assert_eq!(worktrees(&repo).len(), 1, "{:?}", worktrees(&repo));
}

#[test]
fn on_conflict_gate_waits_for_a_person() {
    let repo = repo();
    conflicting(&repo, json!({ "on_conflict": "gate" }));
    let run = repo.wfe(&["run", "clash"]);
    run.code(3);
    let id = repo.run_id();
    let status = repo.wfe(&["status", &id, "--json"]);
    status.code(0);
    let status = status.json();
    assert_eq!(status["status"], "waiting", "{status}");
    assert_eq!(read(&repo, "shared.txt"), "FIRST\ntwo\nthree\n");
    // Approving takes the phase as it is, without its changes.
    repo.wfe(&["approve", &id, "second"]).code(0);
    assert_eq!(read(&repo, "shared.txt"), "FIRST\ntwo\nthree\n");
    assert_eq!(worktrees(&repo).len(), 1, "{:?}", worktrees(&repo));
}

#[test]
fn on_conflict_without_isolation_is_refused() {
    let repo = repo();
    repo.template(
        "bad",
        &json!({ "name": "bad", "phases": [
            { "id": "x", "kind": "script", "run": "true", "on_conflict": "gate" }
        ]}),
    );
    let run = repo.wfe(&["run", "bad"]);
    run.code(2);
    assert!(
        run.stderr.contains("phases[0].on_conflict"),
        "{}",
        run.stderr
    );
}

#[test]
fn kill_9_mid_phase_then_resume_leaves_no_stray_worktree() {
    let repo = repo();
    repo.template(
        "slow",
        &json!({ "name": "slow", "phases": [
            isolated(
                "work",
                &format!("echo started > {HOME}/started; echo done >> a.txt; n=0; until [ -f {HOME}/go ]; do n=$((n+1)); [ $n -gt 1500 ] && exit 9; sleep 0.02; done"),
                json!({}),
            )
        ]}),
    );
    let mut child = repo.spawn(&["run", "slow"]);
    wait_for("the phase to start", || {
        repo.path().join("started").exists()
    });
    assert_eq!(worktrees(&repo).len(), 2, "{:?}", worktrees(&repo));
    child.kill().unwrap();
    child.wait().unwrap();
    let id = repo.run_id();
    std::fs::write(repo.path().join("go"), "").unwrap();
    let resumed = repo.wfe(&["resume", &id]);
    resumed.code(0);
    assert!(
        resumed
            .stderr
            .contains("removed 1 stray worktree(s) of a stopped runner: work-1"),
        "{}",
        resumed.stderr
    );
    assert_eq!(worktrees(&repo).len(), 1, "{:?}", worktrees(&repo));
    let left: Vec<_> = std::fs::read_dir(repo.path().join(".git/wfe/worktrees"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // The second attempt's change landed, the lost one's did not.
    assert_eq!(read(&repo, "a.txt"), "a\ndone\n");
}

#[test]
fn two_parallel_isolated_agent_phases_editing_different_files_both_land() {
    use wfe::testing::llm::{FakeServer as Server, Part, Reply};
    // Whichever agent asks first gets the first edit: both edits land
    // either way, each in the worktree of the phase that made it.
    let server = Server::spawn(vec![
        Reply::anthropic(vec![Part::Tool(
            "edit_file",
            json!({ "path": "a.txt", "old": "a\n", "new": "a by agent\n" }),
        )]),
        Reply::anthropic(vec![Part::Tool(
            "edit_file",
            json!({ "path": "shared.txt", "old": "two\n", "new": "two by agent\n" }),
        )]),
        Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": "done" }))]),
        Reply::anthropic(vec![Part::Tool("submit_plan", json!({ "text": "done" }))]),
    ]);
    let repo = repo();
    repo.write(
        ".wfe/config.json",
        &serde_json::to_string_pretty(&json!({
            "providers": { "claude": { "kind": "anthropic", "base_url": server.url(),
                "retry": { "max_attempts": 1, "backoff": "10ms" } } },
            "roles": { "primary": { "provider": "claude", "model": "claude-test" } }
        }))
        .unwrap(),
    );
    let agent = |id: &str| {
        json!({ "id": id, "kind": "agent", "role": "primary", "isolation": "worktree",
                "prompt": "Edit a file.", "tools": ["edit_file"], "outputs": { "plan": "message" } })
    };
    repo.template(
        "agents",
        &json!({ "name": "agents", "phases": [agent("one"), agent("two")] }),
    );
    let out = repo
        .wfe_cmd()
        .env("ANTHROPIC_API_KEY", "sk-ant-test")
        .args(["run", "agents"])
        .output()
        .unwrap();
    let run = common::Run::from(out);
    run.code(0);
    assert_eq!(read(&repo, "a.txt"), "a by agent\n");
    assert_eq!(read(&repo, "shared.txt"), "one\ntwo by agent\nthree\n");
    assert_eq!(server.requests().len(), 4);
    // The workspace snapshot of the last checkpoint holds the merged code,
    // so `wfe rollback --code` brings it back.
    let id = repo.run_id();
    let snap = |path: &str| repo.git(&["show", &format!("refs/wfe/runs/{id}:workspace/{path}")]);
    assert_eq!(snap("a.txt"), "a by agent\n");
    assert_eq!(snap("shared.txt"), "one\ntwo by agent\nthree\n");
    assert_eq!(worktrees(&repo).len(), 1, "{:?}", worktrees(&repo));
}

#[test]
fn kill_9_mid_phase_then_cancel_leaves_no_stray_worktree() {
    let repo = repo();
    repo.template(
        "slow",
        &json!({ "name": "slow", "phases": [
            isolated(
                "work",
                &format!("echo started > {HOME}/started; n=0; until [ -f {HOME}/go ]; do n=$((n+1)); [ $n -gt 1500 ] && exit 9; sleep 0.02; done"),
                json!({}),
            )
        ]}),
    );
    let mut child = repo.spawn(&["run", "slow"]);
    wait_for("the phase to start", || {
        repo.path().join("started").exists()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let id = repo.run_id();
    assert_eq!(worktrees(&repo).len(), 2, "{:?}", worktrees(&repo));
    let cancelled = repo.wfe(&["cancel", &id]);
    cancelled.code(0);
    assert!(
        cancelled
            .stderr
            .contains("removed 1 stray worktree(s) of a stopped runner: work-1"),
        "{}",
        cancelled.stderr
    );
    assert_eq!(worktrees(&repo).len(), 1, "{:?}", worktrees(&repo));
}
