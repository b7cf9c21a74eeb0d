//! `wfe worker`: many clones of one bare remote (over file:// and over
//! `git daemon` on 127.0.0.1) run one queued run together: every phase
//! exactly once, never twice at the same time, claims taken over after a
//! killed worker's lease, a remote that goes away and comes back.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Repo;
use common::daemon::Daemon;
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

/// A DAG of `n` tiny script phases in layers of `width`: phase i needs
/// phase i-width. Each phase, under a lock on `dir/lock`, notes its start
/// (flagging an overlap if another attempt's marker names a live
/// process), then its end, in `dir/log`: so the log proves every phase
/// ran exactly once and never twice at the same time. A marker whose
/// process is gone is an attempt killed between its start and its end
/// (its worker was SIGKILLed and the guardian ended it), not an overlap.
fn dag(n: usize, width: usize, dir: &Path) -> serde_json::Value {
    let d = dir.display();
    let phases: Vec<_> = (0..n)
        .map(|i| {
            let id = format!("p{i}");
            // `$$` is the phase's own shell, alive until the phase ends.
            let run = format!(
                "flock {d}/lock sh -c 'if [ -e {d}/running-{id} ] && kill -0 \"$(cat {d}/running-{id})\" 2>/dev/null; then echo overlap {id} >> {d}/log; fi; echo \"$1\" > {d}/running-{id}; echo start {id} >> {d}/log' - $$; \
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
    assert!(
        out.status.success(),
        "git fsck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert_eq!(
        doc["include"],
        json!([{ "phase": "p0" }, { "phase": "p1" }])
    );
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
    // Its phases' ends are not the run's: no "run failed" after each.
    assert!(
        !stderr.contains("run failed") && !stderr.contains("blocked"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ended"], "run completed", "{doc:#}");
    assert_eq!(doc["ran"].as_array().unwrap().len(), 6);
    let (counts, overlaps) = tally(side.path());
    assert!(overlaps.is_empty());
    assert_eq!(counts.len(), 6);
    assert!(counts.values().all(|&c| c == (1, 1)), "{counts:?}");
    let workers = assert_completed(&url, &id, 6);
    assert!(
        workers.iter().all(|w| w.starts_with("solo@")),
        "{workers:?}"
    );
    // `wfe status` (what the examples' finalize job writes into the CI
    // job summary) names the worker of every phase.
    let c = clone(&url);
    assert_eq!(c.wfe(&["pull", "origin", &id]).code, 0);
    let status = c.wfe(&["status", &id]);
    assert_eq!(
        status.stdout.matches("on solo@").count(),
        6,
        "{}",
        status.stdout
    );
    fsck(&remote);
}

/// The fleet tests' size in the default suite, which runs beside every
/// other test on a 2-core CI machine: workers, phases, each worker's
/// `--jobs` (phases claimed in one push and run at once).
const FLEET: (usize, usize, usize) = (4, 120, 4);
/// Issue 14's size: 16 workers over 1,000 phases. These tests saturate
/// the machine for a minute or more, so they are `#[ignore]`d in the
/// default suite and `.ci/run` runs them on their own after it
/// (`cargo test --test integration -- --ignored workers::sixteen_workers`).
const FULL_FLEET: (usize, usize, usize) = (16, 1000, 8);

/// `workers` workers race over an `n`-phase DAG through `url`; each
/// worker exits when the run ends.
fn fleet(url: &str, remote: &Path, (workers, n, jobs): (usize, usize, usize)) {
    let side = tempfile::tempdir().unwrap();
    let (_a, id) = queued(url, &dag(n, 10, side.path()));
    let clones: Vec<Repo> = (0..workers).map(|_| clone(url)).collect();
    let started = Instant::now();
    let children: Vec<Child> = clones
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let jobs = jobs.to_string();
            worker(
                c,
                &id,
                &format!("w{k}"),
                &["--lease", "60s", "--jobs", &jobs],
            )
        })
        .collect();
    let mut ran = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["ended"], "run completed", "{doc:#}");
        ran += doc["ran"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["status"].is_null())
            .count();
    }
    eprintln!(
        "{workers} workers (--jobs {jobs}), {n} phases over {url}: {:.1?}",
        started.elapsed()
    );
    // Every phase exactly once: no claim was run twice, none lost.
    assert_eq!(ran, n);
    let (counts, overlaps) = tally(side.path());
    assert!(overlaps.is_empty(), "{overlaps:?}");
    assert_eq!(counts.len(), n);
    assert!(counts.values().all(|&c| c == (1, 1)), "{counts:?}");
    let by = assert_completed(url, &id, n);
    assert!(by.iter().all(|w| !w.is_empty()));
    fsck(remote);
}

fn fleet_over_file(size: (usize, usize, usize)) {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    fleet(&format!("file://{}", remote.display()), &remote, size);
}

fn fleet_over_git_daemon(size: (usize, usize, usize)) {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let daemon = Daemon::start(dir.path());
    fleet(
        &format!("git://127.0.0.1:{}/remote.git", daemon.port),
        &remote,
        size,
    );
}

#[test]
fn a_fleet_of_workers_runs_every_phase_exactly_once_over_a_file_remote() {
    fleet_over_file(FLEET);
}

#[test]
fn a_fleet_of_workers_runs_every_phase_exactly_once_over_git_daemon() {
    fleet_over_git_daemon(FLEET);
}

#[test]
#[ignore = "full size (16 workers, 1,000 phases): .ci/run runs it alone after the suite"]
fn sixteen_workers_run_a_thousand_phases_exactly_once_over_a_file_remote() {
    fleet_over_file(FULL_FLEET);
}

#[test]
#[ignore = "full size (16 workers, 1,000 phases): .ci/run runs it alone after the suite"]
fn sixteen_workers_run_a_thousand_phases_exactly_once_over_git_daemon() {
    fleet_over_git_daemon(FULL_FLEET);
}

/// A tiny seeded generator (xorshift), so the kills land the same way on
/// every run of the test.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What is not done in the remote's run: its status line, its claims,
/// and the state of every phase not completed (for a test that fails).
fn remote_unfinished(remote: &Path, id: &str) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(remote)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tip = format!("refs/wfe/runs/{id}");
    let mut out = git(&["log", "-3", "--format=%s", &tip]);
    out.push_str(&git(&["ls-tree", "-r", "--name-only", &tip, "claims"]));
    for path in git(&["ls-tree", "-r", "--name-only", &tip, "phases"]).lines() {
        if path.ends_with("/state.json") {
            let state = git(&["show", &format!("{tip}:{path}")]);
            if !state.contains("\"status\": \"completed\"") {
                out.push_str(&format!("{path}: {state}\n"));
            }
        }
    }
    out
}

/// Whether the remote's run has completed (read from the bare repo); a
/// run that ended otherwise fails the test at once, saying how.
fn remote_completed(remote: &Path, id: &str) -> bool {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(remote)
        .args(["show", &format!("refs/wfe/runs/{id}:run.json")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for ended in ["failed", "cancelled"] {
        assert!(
            !text.contains(&format!("\"status\": \"{ended}\"")),
            "the run {ended}:\n{text}"
        );
    }
    text.contains("\"status\": \"completed\"")
}

#[test]
fn workers_killed_at_random_moments_lose_their_claims_to_others_and_the_run_completes() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    // Enough instant phases that at least 30 kills land before the end
    // (a phase that sleeps could outlive its SIGKILLed worker as an
    // orphan and meet its own rerun).
    let n = 400;
    let template = dag(n, 4, side.path());
    let (_a, id) = queued(&url, &template);
    let clones: Vec<Repo> = (0..3).map(|_| clone(&url)).collect();
    let lease = ["--lease", "2s"];
    let mut generation = 0;
    let mut children: Vec<Child> = clones
        .iter()
        .enumerate()
        .map(|(k, c)| worker(c, &id, &format!("w{k}g0"), &lease))
        .collect();
    let mut rng = Seeded(0x5eed_1234_abcd_0001);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Kill a random worker at a random moment, restart it, until the
    // run is done and at least 30 kills landed.
    while !remote_completed(&remote, &id) {
        assert!(
            Instant::now() < deadline,
            "the run never completed:\n{}",
            remote_unfinished(&remote, &id)
        );
        let pause = Duration::from_millis(rng.next() % 1000);
        std::thread::sleep(pause); // a random moment, not a synchronisation
        if kills >= 30 && rng.next().is_multiple_of(2) {
            continue;
        }
        let k = usize::try_from(rng.next() % 3).unwrap();
        let _ = children[k].kill(); // SIGKILL
        let _ = children[k].wait();
        kills += 1;
        generation += 1;
        children[k] = worker(&clones[k], &id, &format!("w{k}g{generation}"), &lease);
    }
    for mut child in children {
        let _ = child.wait();
    }
    assert!(kills >= 30, "{kills} kills");
    let (counts, overlaps) = tally(side.path());
    // Never twice at the same time; every phase ran to its end at least once.
    assert!(overlaps.is_empty(), "{overlaps:?}");
    assert_eq!(counts.len(), n);
    assert!(
        counts.values().all(|&(s, d)| s >= 1 && d >= 1),
        "{counts:?}"
    );
    assert_completed(&url, &id, n);
    let log = Command::new("git")
        .arg("--git-dir")
        .arg(&remote)
        .args(["log", "--format=%s", &format!("refs/wfe/runs/{id}")])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    let takeovers = log.lines().filter(|l| l.contains("took over")).count();
    eprintln!("{kills} kills, {takeovers} claims taken over");
    assert!(takeovers >= 1, "no lapsed claim was taken over:\n{log}");
    fsck(&remote);
}

#[test]
fn workers_retry_while_the_remote_is_away_and_lose_nothing() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    let n = 12;
    let mut template = dag(n, 3, side.path());
    // p4 holds until the test lets it go, so the remote can be moved
    // away while it runs.
    let fifo = side.path().join("gate");
    common::mkfifo(&fifo);
    let held = template["phases"][4]["run"].as_str().unwrap().to_string();
    template["phases"][4]["run"] = json!(format!("read line < {}; {held}", fifo.display()));
    let (_a, id) = queued(&url, &template);
    let clones: Vec<Repo> = (0..2).map(|_| clone(&url)).collect();
    let mut children: Vec<Child> = clones
        .iter()
        .enumerate()
        .map(|(k, c)| worker(c, &id, &format!("w{k}"), &["--lease", "60s"]))
        .collect();
    // Every worker's stderr, line by line: (worker, line).
    let (lines_tx, lines) = std::sync::mpsc::channel::<(usize, String)>();
    for (k, child) in children.iter_mut().enumerate() {
        let stderr = child.stderr.take().unwrap();
        let tx = lines_tx.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send((k, line));
            }
        });
    }
    // p4 has been claimed and started: move the remote away.
    let deadline = Instant::now() + Duration::from_secs(120);
    let claimed = || {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&remote)
            .args(["show", &format!("refs/wfe/runs/{id}:claims/p4.json")])
            .output()
            .unwrap();
        out.status.success()
    };
    while !claimed() {
        assert!(Instant::now() < deadline, "p4 was never claimed");
        std::thread::yield_now();
    }
    let claim = Command::new("git")
        .arg("--git-dir")
        .arg(&remote)
        .args(["show", &format!("refs/wfe/runs/{id}:claims/p4.json")])
        .output()
        .unwrap();
    let claim: serde_json::Value = serde_json::from_slice(&claim.stdout).unwrap();
    let holder: usize = claim["worker"].as_str().unwrap()[1..].parse().unwrap();
    let away = dir.path().join("away.git");
    std::fs::rename(&remote, &away).unwrap();
    // Let p4 end: its worker must now put its result on a remote that is gone.
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        writeln!(f, "go").unwrap();
    }
    // Its worker ran it to the end and met the missing remote.
    loop {
        let (k, line) = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("p4's worker never reported the missing remote");
        if k == holder && line.contains("unreachable") {
            break;
        }
    }
    std::fs::rename(&away, &remote).unwrap();
    let mut retries = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["ended"], "run completed", "{doc:#}");
        retries += doc["retries"].as_u64().unwrap();
    }
    assert!(retries > 0, "no worker met the missing remote");
    let (counts, overlaps) = tally(side.path());
    assert!(overlaps.is_empty(), "{overlaps:?}");
    assert!(counts.values().all(|&c| c == (1, 1)), "{counts:?}");
    assert_completed(&url, &id, n);
    fsck(&remote);
}

/// Runs `wfe` in `repo` with the real clock (claims are judged live or
/// lapsed against it).
fn real_clock(repo: &Repo, args: &[&str]) -> String {
    let out = repo
        .wfe_cmd()
        .env_remove("WFE_NOW")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_claimed_phase_shows_as_running_on_its_worker_and_a_lapsed_claim_as_lapsed() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    let go = side.path().join("go");
    // `hold` runs until the test is done looking at it.
    let template = json!({ "name": "fleet", "phases": [
        { "id": "hold", "kind": "script",
          "run": format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()) }
    ]});
    let (_a, id) = queued(&url, &template);
    let w = clone(&url);
    let mut child = worker(&w, &id, "w3", &["--lease", "3s"]);
    // Another clone pulls the run until the claim is there.
    let c = clone(&url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        assert!(
            Instant::now() < deadline,
            "the claim never reached the remote"
        );
        assert_eq!(c.wfe(&["pull", "origin", &id]).code, 0);
        let status = real_clock(&c, &["status", &id]);
        if status.contains("lease until") {
            break status;
        }
        std::thread::yield_now();
    };
    let line = status.lines().find(|l| l.contains("hold")).unwrap();
    assert!(line.contains("running"), "{status}");
    assert!(line.contains("on w3@"), "{status}");
    assert!(status.contains("running"), "{status}");
    assert!(!status.contains("interrupted"), "{status}");
    let doc: serde_json::Value =
        serde_json::from_str(&real_clock(&c, &["show", &id, "--json"])).unwrap();
    assert_eq!(doc["status"], "running", "{doc:#}");
    let phase = &doc["phases"][0];
    assert_eq!(phase["status"], "running", "{doc:#}");
    assert_eq!(phase["claim"]["worker"], "w3", "{doc:#}");
    assert_eq!(phase["claim"]["lapsed"], false, "{doc:#}");
    assert!(phase["claim"]["pid"].as_u64().unwrap() > 0, "{doc:#}");
    assert!(
        phase["claim"]["expires"].as_str().unwrap().ends_with('Z'),
        "{doc:#}"
    );
    let shown = real_clock(&c, &["show", &id]);
    assert!(shown.contains("on w3@"), "{shown}");
    // The web view reads the same run view.
    {
        let server = crate::web::Server::start(&c, &[]);
        let api = server.get(&format!("/api/runs/{id}"));
        assert_eq!(api.status, 200, "{}", api.body);
        let doc: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        assert_eq!(doc["phases"][0]["claim"]["worker"], "w3", "{doc:#}");
        let page = server.get(&format!("/runs/{id}"));
        assert!(page.body.contains("on w3@"), "{}", page.body);
    }
    // The worker dies: its claim lapses once its lease ends.
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        assert!(Instant::now() < deadline, "the claim never lapsed");
        let status = real_clock(&c, &["status", &id]);
        if status.contains("lapsed") {
            break status;
        }
        std::thread::yield_now();
    };
    let line = status.lines().find(|l| l.contains("hold")).unwrap();
    assert!(line.contains("pending"), "{status}");
    assert!(line.contains("claim by w3@"), "{status}");
    let doc: serde_json::Value =
        serde_json::from_str(&real_clock(&c, &["show", &id, "--json"])).unwrap();
    assert_eq!(doc["phases"][0]["claim"]["lapsed"], true, "{doc:#}");
    assert_eq!(doc["phases"][0]["status"], "pending", "{doc:#}");
    std::fs::write(&go, "").unwrap();
}

#[test]
fn a_worker_queues_a_run_of_a_template_and_others_join_it_by_prefix_or_latest() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    // The origin pushes the template (and one queued run, so `latest`
    // has to pick the newer one).
    let (_a, older) = queued(&url, &dag(4, 2, side.path()));
    let w = clone(&url);
    let mut cmd = w.wfe_cmd();
    cmd.env_remove("WFE_NOW");
    let out = cmd
        .args([
            "worker",
            "--template",
            "fleet",
            "--id",
            "maker",
            "--no-output",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.lines().next().unwrap().trim().to_string();
    assert_ne!(id, older);
    assert!(stderr.contains(&format!("--run {id}")), "{stderr}");
    // It ran the new run to its end, and the remote has it.
    assert_completed(&url, &id, 4);
    // Another worker finds it by `latest` and by a prefix, as the remote has them.
    let other = clone(&url);
    for name in ["latest", &id[..id.len() - 6]] {
        let out = worker(&other, name, "joiner", &["--once"])
            .wait_with_output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(doc["run"], id.as_str(), "{doc:#}");
        assert_eq!(doc["ended"], "run completed", "{doc:#}");
    }
    // A prefix both runs share is ambiguous, one no run has is unknown:
    // bad input, exit 2.
    let shared: String = id
        .chars()
        .zip(older.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    for name in [shared.as_str(), "zzzz"] {
        let out = worker(&other, name, "joiner", &[])
            .wait_with_output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Waits for `child` to exit within `bound`; a worker that does not is
/// killed and the test fails with what it printed.
fn exited(mut child: Child, bound: Duration) -> std::process::Output {
    let deadline = Instant::now() + bound;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the worker did not exit within {bound:?}\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20)); // polling an exit, not a synchronisation
    }
}

/// A worker's exit code and JSON document.
fn report(out: &std::process::Output) -> (Option<i32>, serde_json::Value) {
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

/// `hold` (writes its pid, tells the test it started through the fifo
/// `started`, then waits for a line on the fifo `go`) and `after`, which
/// needs it; both note their start and end in `dir/log`.
fn held(dir: &Path) -> serde_json::Value {
    let d = dir.display();
    common::mkfifo(&dir.join("started"));
    common::mkfifo(&dir.join("go"));
    json!({ "name": "fleet", "phases": [
        { "id": "hold", "kind": "script", "run": format!(
            "echo $$ > {d}/hold.pid; echo start hold >> {d}/log; echo up > {d}/started; \
             read line < {d}/go; echo done hold >> {d}/log") },
        { "id": "after", "kind": "script", "needs": ["hold"], "run": format!(
            "echo start after >> {d}/log; echo done after >> {d}/log") }
    ]})
}

/// In clone `c`: `wfe pull`, then `wfe ARGS…`, then `wfe push`, as a user
/// would do it. A worker that moves the run between the pull and the push
/// does not make the push fail (the request is made again on the
/// remote's tip). Returns the push's stderr.
fn pull_then_push(c: &Repo, id: &str, args: &[&str]) -> String {
    let pulled = c.wfe(&["pull", "origin", id]);
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    let done = c.wfe(args);
    assert_eq!(done.code, 0, "wfe {args:?}: {}", done.stderr);
    let pushed = c.wfe(&["push", "origin", id]);
    assert_eq!(
        pushed.code, 0,
        "wfe {args:?} never reached the remote: {}",
        pushed.stderr
    );
    pushed.stderr
}

/// The run's tip on the bare remote.
fn remote_tip(remote: &Path, id: &str) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(remote)
        .args(["rev-parse", &format!("refs/wfe/runs/{id}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits (bounded) until process `pid` is gone.
fn gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::pid_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} outlived its phase"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling /proc, not a synchronisation
    }
}

fn pid_file(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A queued run of [`held`] on a bare file:// remote, its first worker
/// (`w1`, a 3 s lease) running `hold`, and `hold`'s pid. The directories
/// live as long as this does.
struct Holding {
    _dir: tempfile::TempDir,
    remote: std::path::PathBuf,
    url: String,
    side: tempfile::TempDir,
    id: String,
    _origin: Repo,
    _w1: Repo,
    first: Child,
    pid: u32,
}

fn holding() -> Holding {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    let (origin, id) = queued(&url, &held(side.path()));
    let w1 = clone(&url);
    let first = worker(&w1, &id, "w1", &["--lease", "3s"]);
    // `hold` runs on w1.
    assert_eq!(common::read_fifo_line(&side.path().join("started")), "up");
    let pid = pid_file(&side.path().join("hold.pid"));
    Holding {
        _dir: dir,
        remote,
        url,
        side,
        id,
        _origin: origin,
        _w1: w1,
        first,
        pid,
    }
}

#[test]
fn a_pause_from_another_clone_stops_the_running_phase_and_workers_until_requeued() {
    let Holding {
        _dir,
        remote,
        url,
        side,
        id,
        _origin,
        _w1,
        first,
        pid,
    } = holding();
    let s = side.path();
    assert!(common::pid_alive(pid));
    // Someone pauses the run from another clone; before they push, the
    // worker's heartbeat moves the run on the remote (a renewal): the push
    // still goes through, the pause made again on the remote's tip.
    let c = clone(&url);
    assert_eq!(c.wfe(&["pull", "origin", &id]).code, 0);
    let pulled = remote_tip(&remote, &id);
    let paused = c.wfe(&["pause", &id]);
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while remote_tip(&remote, &id) == pulled {
        assert!(
            Instant::now() < deadline,
            "the worker never renewed its claim"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling the remote, not a synchronisation
    }
    let pushed = c.wfe(&["push", "origin", &id]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    assert!(
        pushed.stderr.contains("`pause` made again on origin"),
        "{}",
        pushed.stderr
    );
    // w1 stops `hold` at its next heartbeat, gives it back and exits.
    assert!(
        paused.stderr.contains(&format!("wfe resume {id} --queue")),
        "{}",
        paused.stderr
    );
    let out = exited(first, Duration::from_secs(60));
    let (code, doc) = report(&out);
    assert_eq!(doc["ended"], "run paused", "{doc:#}");
    assert_eq!(code, Some(3), "{doc:#}");
    assert_eq!(
        doc["ran"],
        json!([{ "phase": "hold", "status": null, "took_over": false }])
    );
    gone(pid);
    let shown = remote_show(&url, &id);
    assert_eq!(shown["status"], "paused", "{shown:#}");
    let hold = &shown["phases"][0];
    assert_eq!(hold["status"], "pending", "{shown:#}");
    assert!(
        hold["claim"].is_null(),
        "the claim was given back: {shown:#}"
    );
    // A worker started now claims nothing and says why.
    let w2 = clone(&url);
    let out = exited(
        worker(&w2, &id, "w2", &["--lease", "3s"]),
        Duration::from_secs(60),
    );
    let (code, doc) = report(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(doc["ended"], "run paused", "{doc:#}");
    assert_eq!(code, Some(3));
    assert_eq!(doc["ran"], json!([]));
    let hint = format!("wfe resume {id} --queue");
    assert!(stderr.contains(&hint), "{stderr}");
    // Handed back to workers (as the hint says), they finish the run.
    let pushed = pull_then_push(&c, &id, &["resume", &id, "--queue"]);
    assert!(pushed.contains("pushed"), "{pushed}");
    let again = worker(&w2, &id, "w2", &["--lease", "3s"]);
    assert_eq!(common::read_fifo_line(&s.join("started")), "up");
    common::write_fifo_line(&s.join("go"), "go");
    let out = exited(again, Duration::from_secs(120));
    let (code, doc) = report(&out);
    assert_eq!(doc["ended"], "run completed", "{doc:#}");
    assert_eq!(code, Some(0));
    let (counts, overlaps) = tally(s);
    assert!(overlaps.is_empty());
    // `hold` started twice (its first attempt was stopped), and each
    // phase completed exactly once.
    assert_eq!(counts["hold"], (2, 1), "{counts:?}");
    assert_eq!(counts["after"], (1, 1), "{counts:?}");
    assert_completed(&url, &id, 2);
    fsck(&remote);
}

#[test]
fn a_cancel_from_another_clone_ends_the_running_phase_and_the_run_on_the_remote() {
    let Holding {
        _dir,
        remote,
        url,
        side,
        id,
        _origin,
        _w1,
        first,
        pid,
    } = holding();
    let s = side.path();
    let c = clone(&url);
    pull_then_push(&c, &id, &["cancel", &id]);
    let out = exited(first, Duration::from_secs(60));
    let (code, doc) = report(&out);
    assert_eq!(doc["ended"], "run cancelled", "{doc:#}");
    assert_eq!(code, Some(3), "{doc:#}");
    assert_eq!(doc["ran"][0]["phase"], "hold", "{doc:#}");
    assert!(doc["ran"][0]["status"].is_null(), "{doc:#}");
    // The phase's process is gone; it never finished.
    gone(pid);
    let shown = remote_show(&url, &id);
    assert_eq!(shown["status"], "cancelled", "{shown:#}");
    for phase in shown["phases"].as_array().unwrap() {
        assert_eq!(phase["status"], "cancelled", "{shown:#}");
        assert!(phase["claim"].is_null(), "{shown:#}");
    }
    let (counts, _) = tally(s);
    assert_eq!(counts["hold"], (1, 0), "{counts:?}");
    assert!(!counts.contains_key("after"), "{counts:?}");
    // A worker started later finds the run over at once.
    let w2 = clone(&url);
    let out = exited(worker(&w2, &id, "w2", &[]), Duration::from_secs(60));
    let (code, doc) = report(&out);
    assert_eq!(doc["ended"], "run cancelled", "{doc:#}");
    assert_eq!(code, Some(3));
    assert_eq!(doc["ran"], json!([]));
    fsck(&remote);
}

#[test]
fn workers_stop_at_a_gate_and_finish_the_run_once_another_clone_approves_it() {
    let dir = bare();
    let remote = dir.path().join("remote.git");
    let url = format!("file://{}", remote.display());
    let side = tempfile::tempdir().unwrap();
    let d = side.path().display();
    let note = |id: &str| format!("echo start {id} >> {d}/log; echo done {id} >> {d}/log");
    let template = json!({ "name": "fleet", "phases": [
        { "id": "build", "kind": "script", "run": note("build") },
        { "id": "ok", "kind": "gate", "needs": ["build"] },
        { "id": "ship", "kind": "script", "needs": ["ok"], "run": note("ship") }
    ]});
    let (_a, id) = queued(&url, &template);
    let clones: Vec<Repo> = (0..2).map(|_| clone(&url)).collect();
    let start = |tag: &str| -> Vec<Child> {
        clones
            .iter()
            .enumerate()
            .map(|(k, c)| worker(c, &id, &format!("w{k}{tag}"), &["--lease", "3s"]))
            .collect()
    };
    // Both workers stop at the gate: the run waits for a person.
    for child in start("a") {
        let out = exited(child, Duration::from_secs(120));
        let (code, doc) = report(&out);
        assert_eq!(doc["ended"], "run waiting", "{doc:#}");
        assert_eq!(code, Some(3), "{doc:#}");
    }
    let shown = remote_show(&url, &id);
    assert_eq!(shown["status"], "waiting", "{shown:#}");
    let status = |doc: &serde_json::Value, p: usize| doc["phases"][p]["status"].clone();
    assert_eq!(status(&shown, 0), "completed", "{shown:#}");
    assert_eq!(status(&shown, 1), "waiting", "{shown:#}");
    assert_eq!(status(&shown, 2), "pending", "{shown:#}");
    assert_eq!(tally(side.path()).0.get("ship"), None);
    // Another clone approves the gate and pushes; workers started again
    // finish the run.
    let c = clone(&url);
    assert_eq!(c.wfe(&["pull", "origin", &id]).code, 0);
    let plan = c.wfe(&["plan", &id, "--ready", "--json"]);
    assert_eq!(plan.json()["include"], json!([]), "{}", plan.stdout);
    pull_then_push(&c, &id, &["approve", &id, "ok"]);
    // A CI plan job now gives the workers `ship`.
    let plan = c.wfe(&["plan", &id, "--ready", "--json"]);
    assert_eq!(
        plan.json()["include"],
        json!([{ "phase": "ship" }]),
        "{}",
        plan.stdout
    );
    let mut ran = 0;
    for child in start("b") {
        let out = exited(child, Duration::from_secs(120));
        let (code, doc) = report(&out);
        assert_eq!(doc["ended"], "run completed", "{doc:#}");
        assert_eq!(code, Some(0), "{doc:#}");
        ran += doc["ran"].as_array().unwrap().len();
    }
    assert_eq!(ran, 1, "only `ship` was left");
    let (counts, overlaps) = tally(side.path());
    assert!(overlaps.is_empty());
    assert_eq!(counts["build"], (1, 1), "{counts:?}");
    assert_eq!(counts["ship"], (1, 1), "{counts:?}");
    assert_completed(&url, &id, 3);
    fsck(&remote);
}
