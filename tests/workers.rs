//! `wfe worker`: many clones of one bare remote (over file:// and over
//! `git daemon` on 127.0.0.1) run one queued run together: every phase
//! exactly once, never twice at the same time, claims taken over after a
//! killed worker's lease, a remote that goes away and comes back.

use crate::common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Repo;
use serde_json::json;

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

/// `git daemon` serving `base` on a free port of 127.0.0.1, killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(daemon.child.try_wait().unwrap().is_none(), "git daemon exited");
            assert!(Instant::now() < deadline, "git daemon never listened");
            std::thread::yield_now();
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DAG of `n` tiny script phases in layers of `width`: phase i needs
/// phase i-width. Each phase, under a lock on `dir/lock`, notes its start
/// (flagging an overlap if its marker exists), then its end, in
/// `dir/log`: so the log proves every phase ran exactly once and never
/// twice at the same time.
fn dag(n: usize, width: usize, dir: &Path) -> serde_json::Value {
    let d = dir.display();
    let phases: Vec<_> = (0..n)
        .map(|i| {
            let id = format!("p{i}");
            let run = format!(
                "flock {d}/lock sh -c 'if [ -e {d}/running-{id} ]; then echo overlap {id} >> {d}/log; fi; touch {d}/running-{id}; echo start {id} >> {d}/log'; \
                 flock {d}/lock sh -c 'rm -f {d}/running-{id}; echo done {id} >> {d}/log'"
            );
            let mut phase = json!({ "id": id, "kind": "script", "run": run });
            if i >= width {
                phase["needs"] = json!([format!("p{}", i - width)]);
            }
            phase
        })
        .collect();
    json!({ "name": "fleet", "phases": phases })
}

/// The origin clone (template committed, run queued and pushed) and the
/// queued run's id.
fn queued(url: &str, template: &serde_json::Value) -> (Repo, String) {
    let a = Repo::new();
    a.template("fleet", template);
    a.git(&["add", ".wfe"]);
    a.git(&["commit", "-q", "-m", "template"]);
    a.git(&["remote", "add", "origin", url]);
    a.git(&["push", "-q", "-u", "origin", "main"]);
    let out = a.wfe(&["run", "fleet", "--queue", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["status"], "pending");
    let id = doc["run"].as_str().unwrap().to_string();
    let pushed = a.wfe(&["push", "origin", &id]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    (a, id)
}

/// A fresh clone of `url` for one worker.
fn clone(url: &str) -> Repo {
    let b = Repo::empty();
    b.git(&["remote", "add", "origin", url]);
    b.git(&["fetch", "-q", "origin"]);
    b.git(&["reset", "-q", "--hard", "origin/main"]);
    b
}

/// Starts a worker in `repo` on run `id` (the real clock: leases are real time).
fn worker(repo: &Repo, id: &str, name: &str, extra: &[&str]) -> Child {
    let mut cmd = repo.wfe_cmd();
    cmd.env_remove("WFE_NOW");
    cmd.args(["worker", "--run", id, "--id", name, "--no-output", "--json"]);
    cmd.args(extra);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// What the phases' log says: per phase, (starts, ends), and overlaps.
fn tally(dir: &Path) -> (std::collections::BTreeMap<String, (u32, u32)>, Vec<String>) {
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let mut counts = std::collections::BTreeMap::new();
    let mut overlaps = Vec::new();
    for line in log.lines() {
        let (what, id) = line.split_once(' ').unwrap();
        let entry = counts.entry(id.to_string()).or_insert((0, 0));
        match what {
            "start" => entry.0 += 1,
            "done" => entry.1 += 1,
            _ => overlaps.push(id.to_string()),
        }
    }
    (counts, overlaps)
}

/// The run's state on the remote, as a fresh clone pulls it.
fn remote_show(url: &str, id: &str) -> serde_json::Value {
    let c = clone(url);
    let pulled = c.wfe(&["pull", "origin", id]);
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    let shown = c.wfe(&["show", id, "--json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    serde_json::from_str(&shown.stdout).unwrap()
}

fn fsck(remote: &Path) {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(remote)
        .args(["fsck", "--full", "--no-progress"])
        .output()
        .unwrap();
    assert!(out.status.success(), "git fsck: {}", String::from_utf8_lossy(&out.stderr));
}

/// Every phase of the run on the remote completed, and the run with them;
/// returns who ran each phase.
fn assert_completed(url: &str, id: &str, n: usize) -> Vec<String> {
    let doc = remote_show(url, id);
    assert_eq!(doc["status"], "completed", "{doc:#}");
    let phases = doc["phases"].as_array().unwrap();
    assert_eq!(phases.len(), n);
    phases
        .iter()
        .map(|p| {
            assert_eq!(p["status"], "completed", "{p:#}");
            p["worker"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn a_queued_run_is_pending_and_plan_lists_its_ready_phases_as_a_matrix() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    let (a, id) = queued(&url, &dag(4, 2, side.path()));
    // Nothing ran.
    assert!(!side.path().join("log").exists());
    let listed = a.wfe(&["list", "--status", "pending"]);
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    let plan = a.wfe(&["plan", &id, "--ready", "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let doc: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(doc["include"], json!([{ "phase": "p0" }, { "phase": "p1" }]));
    let human = a.wfe(&["plan", &id, "--ready"]);
    assert!(human.stdout.contains("p0  ready"), "{}", human.stdout);
}

#[test]
fn one_worker_runs_a_queued_run_to_the_end_and_is_recorded_as_its_runner() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    let (_a, id) = queued(&url, &dag(6, 2, side.path()));
    let w = clone(&url);
    let out = worker(&w, &id, "solo", &[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ended"], "run completed", "{doc:#}");
    assert_eq!(doc["ran"].as_array().unwrap().len(), 6);
    let (counts, overlaps) = tally(side.path());
    assert!(overlaps.is_empty());
    assert_eq!(counts.len(), 6);
    assert!(counts.values().all(|&c| c == (1, 1)), "{counts:?}");
    let workers = assert_completed(&url, &id, 6);
    assert!(workers.iter().all(|w| w.starts_with("solo@")), "{workers:?}");
    fsck(&remote);
}
