//! `cargo bench --bench workers`: what sharing one run between workers
//! through a git remote costs and gains.
//!
//! - **Throughput**: a 32-phase DAG of 1-second script phases (two layers
//!   of 16) run by 1, 4 and 16 `wfe worker` processes (each in its own
//!   clone of a bare remote over file://), next to one local runner
//!   (`wfe run --jobs 16`) on the same DAG; phases per second. Then 1
//!   worker with `--jobs 16` and 4 with `--jobs 4` (phases claimed in
//!   one push and run at once).
//! - **Claim latency**: one claim as a worker makes it (fetch the run's
//!   ref, write the claim checkpoint, `git push --atomic
//!   --force-with-lease`), in-process through the store, p50/p99 over
//!   file:// and git:// (`git daemon` on 127.0.0.1), with 10 and with
//!   1,000 runs on the remote: a claim touches one ref, so it should not
//!   grow with the namespace.
//!
//! `WFE_BENCH_BIN=/path/to/wfe` measures that build (e.g. a release
//! one) instead of the one cargo built.
//!
//! It prints figures; it never fails on a timing.

mod common;
#[path = "../tests/common/daemon.rs"]
mod daemon;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon::Daemon;
use wfe::store::{Change, GitStore, Message, RunId};

fn wfe(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(common::wfe_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("wfe");
    assert!(
        out.status.success(),
        "wfe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository at `dir` with `.wfe/templates/dag.json` committed and
/// pushed to `url`.
fn origin(dir: &Path, url: &str) {
    std::fs::create_dir_all(dir.join(".wfe/templates")).expect("dirs");
    let phases: Vec<_> = (0..32)
        .map(|i| {
            let mut p =
                serde_json::json!({ "id": format!("p{i}"), "kind": "script", "run": "sleep 1" });
            if i >= 16 {
                p["needs"] = serde_json::json!([format!("p{}", i - 16)]);
            }
            p
        })
        .collect();
    let template = serde_json::json!({ "name": "dag", "phases": phases });
    std::fs::write(dir.join(".wfe/templates/dag.json"), template.to_string()).expect("template");
    common::git(dir, &["init", "-q", "-b", "main"]);
    common::git(dir, &["config", "user.name", "bench"]);
    common::git(dir, &["config", "user.email", "bench@example.com"]);
    common::git(dir, &["add", "."]);
    common::git(dir, &["commit", "-q", "-m", "dag"]);
    common::git(dir, &["remote", "add", "origin", url]);
    common::git(dir, &["push", "-q", "origin", "main"]);
}

fn bare(dir: &Path) {
    common::git(
        dir.parent().expect("parent"),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            dir.to_str().expect("utf-8"),
        ],
    );
}

/// `workers` workers, each claiming up to `jobs` phases at once.
fn throughput(root: &Path, workers: usize, jobs: usize) -> Duration {
    let remote = root.join(format!("t{workers}j{jobs}.git"));
    bare(&remote);
    let url = format!("file://{}", remote.display());
    let a = root.join(format!("t{workers}j{jobs}-origin"));
    origin(&a, &url);
    let id = wfe(&a, &["run", "dag", "--queue"]);
    wfe(&a, &["push", "origin", &id]);
    let clones: Vec<_> = (0..workers)
        .map(|k| {
            let c = root.join(format!("t{workers}j{jobs}-w{k}"));
            common::git(root, &["clone", "-q", &url, c.to_str().expect("utf-8")]);
            common::git(&c, &["config", "user.name", "bench"]);
            common::git(&c, &["config", "user.email", "bench@example.com"]);
            c
        })
        .collect();
    let started = Instant::now();
    let children: Vec<Child> = clones
        .iter()
        .enumerate()
        .map(|(k, c)| {
            Command::new(common::wfe_bin())
                .args([
                    "worker",
                    "--run",
                    &id,
                    "--no-output",
                    "--id",
                    &format!("w{k}"),
                    "--jobs",
                    &jobs.to_string(),
                ])
                .current_dir(c)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("worker")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("worker").success());
    }
    started.elapsed()
}

fn local(root: &Path) -> Duration {
    let remote = root.join("local.git");
    bare(&remote);
    let a = root.join("local-origin");
    origin(&a, &format!("file://{}", remote.display()));
    let started = Instant::now();
    wfe(&a, &["run", "dag", "--jobs", "16", "--no-output"]);
    started.elapsed()
}

/// Claims (fetch, claim checkpoint, CAS push) of one run, `n` times, on a
/// remote holding `runs` runs; the latencies, sorted.
fn claims(
    root: &Path,
    url: &str,
    remote: &Path,
    runs: usize,
    n: usize,
    tag: &str,
) -> Vec<Duration> {
    let a = root.join(format!("c-{tag}-{runs}"));
    origin(&a, url);
    let id = wfe(&a, &["run", "dag", "--queue"]);
    wfe(&a, &["push", "origin", &id]);
    // Fill the namespace: runs-1 more runs (refs to the same checkpoint).
    let tip = common::git(&a, &["rev-parse", &format!("refs/wfe/runs/{id}")]);
    let ids = wfe::store::RunIds::seeded(7);
    let clock = wfe::time::Clock::system();
    let stdin: String = (1..runs)
        .map(|_| format!("create {} {}\n", ids.next(&clock).ref_name(), tip.trim()))
        .collect();
    let mut up = Command::new("git")
        .arg("--git-dir")
        .arg(remote)
        .args(["update-ref", "--stdin"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("update-ref");
    use std::io::Write;
    up.stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    assert!(up.wait().expect("update-ref").success());
    let store = GitStore::discover(&a).expect("store");
    let run = RunId::parse(&id).expect("id");
    let mut took = Vec::new();
    for k in 0..n {
        let started = Instant::now();
        let tip = store
            .fetch_run("origin", &run)
            .expect("fetch")
            .expect("the run");
        let claim = store
            .commit_detached(
                &run,
                &tip,
                &[Change::write(
                    "claims/p0.json",
                    format!("{{\"n\":{k}}}").into_bytes(),
                )],
                &Message::new("claim"),
                0,
            )
            .expect("claim");
        assert!(
            store
                .push_run_cas("origin", &run, Some(&tip), &claim)
                .expect("push")
        );
        took.push(started.elapsed());
    }
    took.sort();
    took
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    common::isolate(&[]);
    let dir = tempfile::tempdir_in(
        std::env::var_os("CARGO_TARGET_TMPDIR")
            .unwrap_or_else(|| std::env::temp_dir().into_os_string()),
    )
    .expect("temp dir");
    let root = dir.path();
    println!("throughput: 32 phases of `sleep 1` (two layers of 16)");
    let t = local(root);
    println!(
        "  local runner --jobs 16   {:>6.1} s  {:>5.2} phases/s",
        t.as_secs_f64(),
        32.0 / t.as_secs_f64()
    );
    for (workers, jobs) in [(1, 1), (4, 1), (16, 1), (1, 16), (4, 4)] {
        let t = throughput(root, workers, jobs);
        println!(
            "  {workers:>2} worker(s) --jobs {jobs:<2}    {:>6.1} s  {:>5.2} phases/s",
            t.as_secs_f64(),
            32.0 / t.as_secs_f64()
        );
    }
    println!("claim latency (fetch the run's ref, claim checkpoint, CAS push), 40 claims each");
    let base = root.join("served");
    std::fs::create_dir_all(&base).expect("dir");
    let daemon = Daemon::start(&base);
    let port = daemon.port;
    for runs in [10, 1000] {
        for (scheme, tag) in [("file", "f"), ("git", "g")] {
            let remote = base.join(format!("{tag}{runs}.git"));
            bare(&remote);
            let url = match scheme {
                "file" => format!("file://{}", remote.display()),
                _ => format!("git://127.0.0.1:{port}/{tag}{runs}.git"),
            };
            let took = claims(root, &url, &remote, runs, 40, tag);
            println!(
                "  {scheme}://  {runs:>5} runs on the remote   p50 {:>6.1} ms   p99 {:>6.1} ms",
                pct(&took, 0.5),
                pct(&took, 0.99)
            );
        }
    }
    drop(daemon);
}
