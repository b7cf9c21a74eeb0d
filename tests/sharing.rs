//! Sharing runs between clones through a bare remote (over file:// and
//! over `git daemon` on 127.0.0.1): `wfe push`, `wfe pull`, approve and
//! resume anywhere, divergence reported and never forced, `wfe remote
//! setup` with plain git; and retention with `wfe gc`.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{Repo, mkfifo, write_fifo_line};
use serde_json::json;

/// A gated template: `build` → `approve` (gate) → `ship`; every script
/// execution is appended to `ran.txt`, so redone phases show.
fn gated() -> serde_json::Value {
    json!({ "name": "gated", "phases": [
        { "id": "build", "kind": "script", "run": "echo build >> ran.txt; echo zanzibar-build-log" },
        { "id": "approve", "kind": "gate", "needs": ["build"] },
        { "id": "ship", "kind": "script", "needs": ["approve"], "run": "echo ship >> ran.txt" }
    ]})
}

/// A bare repository to share through.
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

/// Clone A (with the template committed and pushed) and clone B (a fresh
/// clone of it), both with `origin` at `url`.
fn clones(url: &str) -> (Repo, Repo) {
    let a = Repo::new();
    a.template("gated", &gated());
    a.git(&["add", ".wfe"]);
    a.git(&["commit", "-q", "-m", "template"]);
    a.git(&["remote", "add", "origin", url]);
    a.git(&["push", "-q", "-u", "origin", "main"]);
    let b = Repo::empty();
    b.git(&["remote", "add", "origin", url]);
    b.git(&["fetch", "-q", "origin"]);
    b.git(&["reset", "-q", "--hard", "origin/main"]);
    b.git(&["branch", "-q", "-u", "origin/main"]);
    (a, b)
}

fn rev(repo: &Repo, name: &str) -> String {
    repo.git(&["rev-parse", name]).trim().to_string()
}

/// What the remote's ref points at, if anything.
fn remote_ref(remote: &Path, name: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(remote)
        .args(["rev-parse", "--verify", "--quiet", name])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ran(repo: &Repo) -> String {
    std::fs::read_to_string(repo.path().join("ran.txt")).unwrap_or_default()
}

/// The whole round trip: a run waiting at a gate pushed from A; B pulls
/// it, sees it everywhere, approves and pushes; A pulls and resumes
/// without redoing `build`; B retries `ship`, A pulls the new attempt.
fn round_trip(url: &str, remote: &Path) {
    let (a, b) = clones(url);
    a.wfe(&["run", "gated"]).code(3);
    let id = a.run_id();
    let run_ref = format!("refs/wfe/runs/{id}");
    assert_eq!(ran(&a), "build\n");

    let pushed = a.wfe(&["push"]);
    pushed.code(0);
    assert!(pushed.stderr.contains("pushed (new"), "{}", pushed.stderr);
    assert_eq!(remote_ref(remote, &run_ref), Some(rev(&a, &run_ref)));
    // The pushed run names its template relative to the repository, so no
    // path of A's machine travels.
    let record = a.git(&["show", &format!("{run_ref}:run.json")]);
    assert!(
        record.contains("\"template_source\": \".wfe/templates/gated.json\""),
        "{record}"
    );
    let a_path = a.path().to_string_lossy().to_string();
    assert!(!record.contains(&a_path), "{record}");

    b.wfe(&["pull"]).code(0);
    assert_eq!(rev(&b, &run_ref), rev(&a, &run_ref));
    let list = b.wfe(&["list", "--json"]);
    list.code(0);
    assert!(list.stdout.contains(&id), "{}", list.stdout);
    b.wfe(&["status", &id]).code(0);
    let shown = b.wfe(&["show", &id, "--json"]);
    shown.code(0);
    assert_eq!(shown.json()["status"], "waiting");
    let found = b.wfe(&["search", "zanzibar"]);
    found.code(0);
    assert!(
        found.stdout.contains(&id),
        "{}\n{}",
        found.stdout,
        found.stderr
    );

    b.wfe(&["approve", &id, "approve"]).code(0);
    b.wfe(&["push", "origin", &id[..10]]).code(0);
    assert_eq!(remote_ref(remote, &run_ref), Some(rev(&b, &run_ref)));

    let pulled = a.wfe(&["pull", "origin", &id]);
    pulled.code(0);
    assert!(pulled.stderr.contains("pulled ("), "{}", pulled.stderr);
    a.wfe(&["resume", &id]).code(0);
    assert_eq!(
        ran(&a),
        "build\nship\n",
        "build is not redone after the pull"
    );
    a.wfe(&["push"]).code(0);

    // A retry done on B travels back the same way.
    b.wfe(&["pull"]).code(0);
    b.wfe(&["retry", &id, "ship"]).code(0);
    assert_eq!(ran(&b), "ship\n");
    b.wfe(&["push"]).code(0);
    a.wfe(&["pull"]).code(0);
    let ship = a.wfe(&["show", &id, "ship", "--json"]);
    ship.code(0);
    assert_eq!(ship.json()["state"]["attempt"], 2, "{}", ship.stdout);
    // Pulling again changes nothing.
    let again = a.wfe(&["pull"]);
    again.code(0);
    assert!(
        again.stderr.contains("already up to date"),
        "{}",
        again.stderr
    );
}

#[test]
fn runs_round_trip_through_a_file_remote() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    round_trip(&format!("file://{}", remote.display()), &remote);
}

#[test]
fn runs_round_trip_through_git_daemon() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let daemon = Daemon::start(dir.path());
    round_trip(
        &format!("git://127.0.0.1:{}/remote.git", daemon.port),
        &remote,
    );
}

#[test]
fn a_run_resumed_on_two_machines_is_refused_as_diverged_and_never_forced() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let (a, b) = clones(&format!("file://{}", remote.display()));
    a.wfe(&["run", "gated"]).code(3);
    let id = a.run_id();
    let run_ref = format!("refs/wfe/runs/{id}");
    a.wfe(&["push"]).code(0);
    b.wfe(&["pull"]).code(0);
    let base = rev(&a, &run_ref);

    // Both approve and resume at once.
    for repo in [&a, &b] {
        repo.wfe(&["approve", &id, "approve"]).code(0);
        repo.wfe(&["resume", &id]).code(0);
    }
    let (tip_a, tip_b) = (rev(&a, &run_ref), rev(&b, &run_ref));
    assert_ne!(tip_a, tip_b);
    a.wfe(&["push"]).code(0);

    let refused = b.wfe(&["push"]);
    refused.code(1);
    assert!(refused.stderr.contains("diverged"), "{}", refused.stderr);
    assert!(refused.stderr.contains(&tip_b[..12]), "{}", refused.stderr);
    assert!(refused.stderr.contains(&tip_a[..12]), "{}", refused.stderr);
    assert!(refused.stderr.contains(&base[..12]), "{}", refused.stderr);
    assert_eq!(
        remote_ref(&remote, &run_ref),
        Some(tip_a.clone()),
        "not forced"
    );
    assert_eq!(rev(&b, &run_ref), tip_b);

    let pulled = b.wfe(&["pull"]);
    pulled.code(1);
    assert!(pulled.stderr.contains("diverged"), "{}", pulled.stderr);
    assert_eq!(
        rev(&b, &run_ref),
        tip_b,
        "a pull never overwrites a local run"
    );

    // The advice works: roll back to the common checkpoint, then pull.
    b.wfe(&["rollback", &id, "--to", &base[..12]]).code(0);
    b.wfe(&["pull"]).code(0);
    assert_eq!(rev(&b, &run_ref), tip_a);
    // B's own tip is kept in its trash, and can travel with --trash.
    let trash = format!("refs/wfe/trash/{id}/1");
    assert_eq!(rev(&b, &trash), tip_b);
    b.wfe(&["push", "--trash"]).code(0);
    assert_eq!(remote_ref(&remote, &trash), Some(tip_b.clone()));
    a.wfe(&["pull", "--trash"]).code(0);
    assert_eq!(rev(&a, &trash), tip_b);
}

#[test]
fn unknown_remotes_are_bad_input_and_named_runs_must_exist() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let (a, _b) = clones(&format!("file://{}", remote.display()));
    let unknown = a.wfe(&["push", "nowhere"]);
    unknown.code(2);
    assert!(
        unknown.stderr.contains("no remote `nowhere`"),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stderr.contains("origin"), "{}", unknown.stderr);
    a.wfe(&["pull", "nowhere"]).code(2);
    a.wfe(&["remote", "setup", "nowhere"]).code(2);
    a.wfe(&["pull", "origin", "01zzzz"]).code(2);
    assert_eq!(a.wfe_refs(), Vec::<String>::new());
}

#[test]
fn remote_setup_makes_plain_git_carry_runs_without_ever_forcing() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let (a, b) = clones(&format!("file://{}", remote.display()));
    for repo in [&a, &b] {
        repo.wfe(&["remote", "setup"]).code(0);
        let fetch = repo.git(&["config", "--get-all", "remote.origin.fetch"]);
        assert!(fetch.contains("refs/wfe/runs/*:refs/wfe/runs/*"), "{fetch}");
        assert!(!fetch.contains("+refs/wfe"), "never forced: {fetch}");
        let push = repo.git(&["config", "--get-all", "remote.origin.push"]);
        assert_eq!(push, "HEAD\nrefs/wfe/runs/*:refs/wfe/runs/*\n");
        // Setting up twice adds nothing.
        repo.wfe(&["remote", "setup", "origin"]).code(0);
        assert_eq!(
            repo.git(&["config", "--get-all", "remote.origin.push"]),
            push
        );
    }
    a.wfe(&["run", "gated"]).code(3);
    let id = a.run_id();
    let run_ref = format!("refs/wfe/runs/{id}");
    a.git(&["push", "-q"]);
    assert_eq!(remote_ref(&remote, &run_ref), Some(rev(&a, &run_ref)));
    b.git(&["fetch", "-q"]);
    assert_eq!(rev(&b, &run_ref), rev(&a, &run_ref));

    // Both sides comment: a plain fetch refuses to overwrite B's run.
    a.wfe(&["comment", &id, "from a"]).code(0);
    b.wfe(&["comment", &id, "from b"]).code(0);
    let tip_b = rev(&b, &run_ref);
    a.git(&["push", "-q"]);
    let fetched = b.git_output(&["fetch", "-q"]);
    assert!(
        !fetched.status.success(),
        "a non-fast-forward fetch is refused"
    );
    assert_eq!(rev(&b, &run_ref), tip_b, "B's comment survives");
    let pushed = b.git_output(&["push", "-q"]);
    assert!(
        !pushed.status.success(),
        "a non-fast-forward push is refused"
    );
    assert_eq!(remote_ref(&remote, &run_ref), Some(rev(&a, &run_ref)));
}

/// A repository with four finished runs of `quick` (two completed, two failed).
fn gc_repo() -> (Repo, Vec<String>) {
    let repo = Repo::new();
    repo.template(
        "ok",
        &json!({ "name": "ok", "phases": [ { "id": "a", "kind": "script", "run": "true" } ] }),
    );
    repo.template(
        "bad",
        &json!({ "name": "bad", "phases": [ { "id": "a", "kind": "script", "run": "false" } ] }),
    );
    repo.wfe(&["run", "ok"]).code(0);
    repo.wfe(&["run", "bad"]).code(1);
    repo.wfe(&["run", "ok"]).code(0);
    repo.wfe(&["run", "bad"]).code(1);
    let mut ids: Vec<String> = repo
        .wfe_refs()
        .iter()
        .filter_map(|r| r.strip_prefix("refs/wfe/runs/"))
        .map(String::from)
        .collect();
    ids.sort();
    (repo, ids)
}

fn runs_left(repo: &Repo) -> Vec<String> {
    let mut ids: Vec<String> = repo
        .wfe_refs()
        .iter()
        .filter_map(|r| r.strip_prefix("refs/wfe/runs/"))
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

/// `wfe gc` with the clock at `now`.
fn gc_at(repo: &Repo, now: &str, args: &[&str]) -> common::Run {
    let out = repo
        .wfe_cmd()
        .env("WFE_NOW", now)
        .arg("gc")
        .args(args)
        .output()
        .unwrap();
    common::Run::from(out)
}

fn all_refs(repo: &Repo) -> String {
    repo.git(&["for-each-ref", "--format=%(objectname) %(refname)"])
}

fn objects(repo: &Repo) -> String {
    repo.git(&["count-objects", "-v"])
}

#[test]
fn gc_dry_run_writes_nothing() {
    let (repo, ids) = gc_repo();
    let (refs, objs) = (all_refs(&repo), objects(&repo));
    let dry = repo.wfe(&["gc", "--keep", "1", "--dry-run"]);
    dry.code(0);
    for id in &ids[..3] {
        assert!(
            dry.stderr.contains(&format!("would move run {id}")),
            "{}",
            dry.stderr
        );
    }
    assert!(
        !dry.stderr.contains(&format!("run {}", ids[3])),
        "{}",
        dry.stderr
    );
    assert!(dry.stderr.contains("nothing was changed"), "{}", dry.stderr);
    assert_eq!(all_refs(&repo), refs);
    assert_eq!(objects(&repo), objs);
}

#[test]
fn gc_keep_moves_all_but_the_newest_to_the_trash_and_repacks() {
    let (repo, ids) = gc_repo();
    assert!(objects(&repo).contains("count: ") && !objects(&repo).contains("count: 0\n"));
    repo.wfe(&["gc", "--keep", "2"]).code(0);
    assert_eq!(runs_left(&repo), ids[2..]);
    // Moved as `wfe rm` moves: `wfe undo` brings one back.
    repo.wfe(&["undo", &ids[0]]).code(0);
    assert_eq!(
        runs_left(&repo),
        [ids[0].clone(), ids[2].clone(), ids[3].clone()]
    );
    let counted = objects(&repo);
    assert!(counted.contains("count: 0\n"), "packed: {counted}");
    let fsck = repo.git_output(&["fsck", "--full"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
fn gc_selects_by_status_and_age_and_empties_old_trash() {
    let (repo, ids) = gc_repo();
    repo.wfe(&["gc", "--status", "failed"]).code(0);
    assert_eq!(runs_left(&repo), [ids[0].clone(), ids[2].clone()]);

    // The runs' last checkpoints are at common::NOW (2026-01-02).
    gc_at(&repo, "2026-01-20T00:00:00Z", &["--older-than", "30d"]).code(0);
    assert_eq!(
        runs_left(&repo),
        [ids[0].clone(), ids[2].clone()],
        "younger than 30 days"
    );
    let trash = |repo: &Repo| {
        repo.wfe_refs()
            .into_iter()
            .filter(|r| r.starts_with("refs/wfe/trash/"))
            .count()
    };
    assert_eq!(trash(&repo), 2, "trash younger than 30 days is kept");
    gc_at(&repo, "2026-02-15T00:00:00Z", &["--older-than", "30d"]).code(0);
    assert_eq!(runs_left(&repo), Vec::<String>::new());
    // The failed runs were set aside at NOW: past the 30-day trash limit now,
    // while the runs just moved are fresh trash.
    assert_eq!(trash(&repo), 2);
    let dropped = gc_at(&repo, "2026-03-20T00:00:00Z", &[]);
    dropped.code(0);
    assert_eq!(trash(&repo), 0, "{}", dropped.stderr);
    let fsck = repo.git_output(&["fsck", "--full"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );

    gc_at(&repo, "2026-03-20T00:00:00Z", &["--status", "nonsense"]).code(2);
    gc_at(&repo, "2026-03-20T00:00:00Z", &["--older-than", "soon"]).code(2);
}

#[test]
fn gc_never_removes_a_run_a_live_runner_holds() {
    let repo = Repo::new();
    let fifo = repo.path().join("go");
    mkfifo(&fifo);
    repo.template(
        "slow",
        &json!({ "name": "slow", "phases": [ { "id": "a", "kind": "script", "run": "read line < go" } ] }),
    );
    let mut child = repo.spawn(&["run", "slow"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while repo.wfe_refs().is_empty() {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = repo.run_id();
    let kept = repo.wfe(&["gc", "--keep", "0"]);
    kept.code(0);
    assert!(
        kept.stderr.contains("a live runner holds it"),
        "{}",
        kept.stderr
    );
    assert_eq!(runs_left(&repo), [id]);
    write_fifo_line(&fifo, "go");
    assert!(child.wait().unwrap().success());
    repo.wfe(&["gc", "--keep", "0"]).code(0);
    assert_eq!(runs_left(&repo), Vec::<String>::new());
}

#[test]
fn a_pull_never_moves_a_run_a_live_runner_holds() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let (a, b) = clones(&format!("file://{}", remote.display()));
    a.wfe(&["run", "gated"]).code(3);
    let id = a.run_id();
    let run_ref = format!("refs/wfe/runs/{id}");

    // A runner on A holds the run, waiting at its gate once it has
    // recorded that it resumed.
    let stopped = rev(&a, &run_ref);
    let mut runner = a.spawn(&["resume", &id, "--wait"]);
    let lock = a.path().join(format!(".git/wfe/locks/{id}.lock"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lock.exists() || rev(&a, &run_ref) == stopped {
        assert!(Instant::now() < deadline, "the runner never resumed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Pushing only reads the run: fine while it is held.
    a.wfe(&["push"]).code(0);
    b.wfe(&["pull"]).code(0);
    b.wfe(&["comment", &id, "from b"]).code(0);
    b.wfe(&["push"]).code(0);

    let before = rev(&a, &run_ref);
    let held = a.wfe(&["pull"]);
    held.code(1);
    assert!(
        held.stderr.contains("a live runner holds it"),
        "{}",
        held.stderr
    );
    assert_eq!(rev(&a, &run_ref), before);

    runner.kill().unwrap();
    runner.wait().unwrap();
    a.wfe(&["pull"]).code(0);
    assert_eq!(rev(&a, &run_ref), rev(&b, &run_ref));
}
