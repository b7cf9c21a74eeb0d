//! `cargo bench --bench repo`: how big a busy repository gets, next to the
//! same repository after `git gc`.
//!
//! The release `wfe` binary runs a 3-phase template (a chain of small script
//! phases) `RUNS` times, one process per run as a user would, in a fresh
//! repository on the project's filesystem. Then, once any background
//! consolidation wfe started has finished (its lock is free), it prints the
//! repository's size on disk, its loose objects and packs, and the bytes per
//! checkpoint; then the same after `git gc`, and the ratio. The goals: at
//! most 1.5× the `gc`'d size, at most 1 KB on disk per small checkpoint.
//!
//! `WFE_BENCH_BIN=/path/to/wfe` measures that build instead of the one
//! cargo built. `-- 200` runs another number of runs; `-- no-autopack` turns wfe's
//! consolidation off (`wfe.autoPack false`) to show what it saves.
//! It prints figures and never fails on them; it fails only if a run did not
//! complete or `git fsck --full` finds a problem, since its figures would
//! then be lies.

mod common;

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{first_line, fmt_duration, git, isolate, output};

/// Runs of the template, unless a number is given.
const RUNS: usize = 2000;
/// How long a consolidation may take to finish after the last run.
const SETTLE: Duration = Duration::from_secs(300);

fn main() {
    isolate(&[]);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = args
        .iter()
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(RUNS);
    let autopack = !args.iter().any(|arg| arg == "no-autopack");
    let wfe_bin = common::wfe_bin();
    let wfe = wfe_bin.as_path();
    let base = std::env::var_os("TMPDIR").map_or_else(
        || env!("CARGO_TARGET_TMPDIR").into(),
        std::path::PathBuf::from,
    );
    fs::create_dir_all(&base).expect("the bench's temp dir");
    let sandbox = tempfile::Builder::new()
        .prefix("wfe-bench-repo-")
        .tempdir_in(&base)
        .expect("a sandbox");
    let repo = sandbox.path().join("repo");
    fs::create_dir(&repo).expect("a repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "wfe bench"]);
    git(&repo, &["config", "user.email", "bench@wfe.invalid"]);
    if !autopack {
        git(&repo, &["config", "wfe.autoPack", "false"]);
    }
    fs::write(repo.join("README"), "a user's file\n").expect("write README");
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "initial commit"]);
    let template = sandbox.path().join("three.json");
    let phases = json!({
        "name": "three",
        "phases": [
            { "id": "fetch", "kind": "script", "run": "echo fetched" },
            { "id": "build", "kind": "script", "run": "echo built", "needs": ["fetch"] },
            { "id": "test", "kind": "script", "run": "echo tested", "needs": ["build"] },
        ]
    });
    fs::write(&template, phases.to_string()).expect("write the template");

    println!("wfe repository bench: {}", wfe.display());
    println!(
        "  {}; {runs} runs of a 3-phase template through the binary above, one process each; \
         consolidation {}",
        first_line(&output(Command::new("git").arg("--version"))),
        if autopack {
            "on"
        } else {
            "off (wfe.autoPack false)"
        }
    );
    println!("  repository under {}", repo.display());

    let start = Instant::now();
    for n in 0..runs {
        let status = Command::new(wfe)
            .args(["run"])
            .arg(&template)
            .arg("--no-output")
            .current_dir(&repo)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run wfe");
        assert!(status.success(), "run {n} failed: {status}");
        if (n + 1) % 500 == 0 {
            println!(
                "  {} runs in {}; {}",
                n + 1,
                fmt_duration(start.elapsed()),
                Counts::of(&repo).short()
            );
        }
    }
    let elapsed = start.elapsed();
    println!(
        "  {runs} runs in {} ({} per run)",
        fmt_duration(elapsed),
        fmt_duration(elapsed / runs.max(1) as u32)
    );
    let waited = settle(&repo);
    println!(
        "  waited {} for wfe's background consolidation to finish",
        fmt_duration(waited)
    );

    let checkpoints: u64 = git(&repo, &["rev-list", "--count", "--glob=refs/wfe/runs"])
        .trim()
        .parse()
        .expect("a count");
    let listed = git(&repo, &["for-each-ref", "--format=x", "refs/wfe/runs/"]);
    assert_eq!(listed.lines().count(), runs, "one ref per run");
    git(&repo, &["fsck", "--full", "--no-progress"]);

    let before = Counts::of(&repo);
    git(&repo, &["gc", "-q"]);
    let after = Counts::of(&repo);
    println!(
        "\n  {:<22} {:>10} {:>10} {:>8}",
        "", "on disk", "objects", "loose"
    );
    for (what, counts) in [("as wfe left it", &before), ("after git gc", &after)] {
        println!(
            "  {what:<22} {:>10} {:>10} {:>8}   {} packs",
            mib(counts.disk),
            mib(counts.objects),
            counts.loose,
            counts.packs
        );
    }
    let ratio = before.disk as f64 / after.disk.max(1) as f64;
    let per_checkpoint = before.objects as f64 / checkpoints.max(1) as f64;
    println!(
        "\n  {checkpoints} checkpoints; objects {:.0} bytes per checkpoint (goal ≤ 1024: {})",
        per_checkpoint,
        met(per_checkpoint <= 1024.0)
    );
    println!(
        "  on disk {ratio:.2}× its git-gc'd size (goal ≤ 1.5×: {})",
        met(ratio <= 1.5)
    );
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "missed" }
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Waits until no consolidation holds wfe's maintenance lock.
fn settle(repo: &Path) -> Duration {
    let lock = repo.join(".git/wfe/maintenance.lock");
    let start = Instant::now();
    loop {
        let free = match OpenOptions::new().read(true).open(&lock) {
            Err(_) => true,
            Ok(file) => try_flock(&file),
        };
        if free {
            return start.elapsed();
        }
        assert!(start.elapsed() < SETTLE, "consolidation still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn try_flock(file: &File) -> bool {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok()
}

/// Sizes of a repository.
struct Counts {
    /// Everything under `.git`, in allocated blocks (what `du` says).
    disk: u64,
    /// Everything under `.git/objects`, in allocated blocks.
    objects: u64,
    loose: u64,
    packs: u64,
}

impl Counts {
    fn of(repo: &Path) -> Counts {
        let counted = git(repo, &["count-objects", "-v"]);
        let field = |name: &str| -> u64 {
            counted
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)
        };
        Counts {
            disk: du(&repo.join(".git")),
            objects: du(&repo.join(".git/objects")),
            loose: field("count:"),
            packs: field("packs:"),
        }
    }

    fn short(&self) -> String {
        format!(
            "{} on disk, {} loose objects, {} packs",
            mib(self.disk),
            self.loose,
            self.packs
        )
    }
}

/// Allocated bytes under `path`, as `du` counts them.
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    own + fs::read_dir(path).map_or(0, |entries| {
        entries
            .filter_map(|entry| entry.ok())
            .map(|entry| du(&entry.path()))
            .sum()
    })
}
