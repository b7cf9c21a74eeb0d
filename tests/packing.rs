//! Runs write their checkpoints as packs, not loose objects, and the
//! repository stays packed: past a threshold a run starts a background
//! `git repack --geometric=2` (one at a time, under
//! `<git-dir>/wfe/maintenance.lock`) that leaves `git fsck --full` clean and
//! every object of the user's in place. `git config wfe.autoPack false`
//! turns the consolidation off.

use crate::common;

use std::fs::File;
use std::time::{Duration, Instant};

use common::{Repo, script};
use serde_json::json;

/// Runs in each test: enough checkpoints to pass the 16-pack threshold twice.
const RUNS: usize = 10;

fn template(repo: &Repo) {
    repo.template(
        "pair",
        &json!({ "name": "pair", "phases": [
            script("one", &[], "echo one"),
            script("two", &["one"], "echo two"),
        ]}),
    );
}

fn count(repo: &Repo, field: &str) -> usize {
    repo.git(&["count-objects", "-v"])
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

fn checkpoints(repo: &Repo) -> usize {
    repo.git(&["rev-list", "--count", "--glob=refs/wfe/runs"])
        .trim()
        .parse()
        .unwrap()
}

/// Waits (bounded) until no consolidation holds the maintenance lock.
fn settle(repo: &Repo) {
    let lock = repo.path().join(".git/wfe/maintenance.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let free = File::open(&lock).map_or(true, |file| {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok()
        });
        if free {
            return;
        }
        assert!(Instant::now() < deadline, "consolidation never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_all(repo: &Repo) {
    for _ in 0..RUNS {
        repo.wfe(&["run", "pair", "--no-output"]).code(0);
    }
}

#[test]
fn runs_leave_packs_not_loose_objects_and_the_repository_stays_packed() {
    let repo = Repo::new();
    template(&repo);
    let user_objects = repo.git(&["rev-list", "--objects", "main"]);
    let loose_before = count(&repo, "count:");
    run_all(&repo);
    settle(&repo);
    // A process checks the packs when it writes its first one; a check that
    // found a consolidation running left the packs written after it to the
    // next writer. One more checkpoint is that writer.
    repo.wfe(&["comment", "latest", "one more checkpoint"])
        .code(0);
    settle(&repo);
    let written = checkpoints(&repo);
    assert!(
        written > 2 * 16,
        "enough checkpoints to consolidate: {written}"
    );
    // No run wrote a loose object; the user's own were packed with the rest.
    assert!(count(&repo, "count:") <= loose_before);
    let packs = count(&repo, "packs:");
    assert!(
        packs <= 16 + written / RUNS,
        "{packs} packs after {written} checkpoints: consolidation kept them few"
    );
    repo.git(&["fsck", "--full", "--strict", "--no-progress"]);
    let still = repo.git(&["rev-list", "--objects", "--all"]);
    for line in user_objects.lines() {
        assert!(still.contains(line), "the user's {line} is gone");
    }
    // Every run still reads back whole.
    for run in repo.wfe_refs() {
        repo.git(&["cat-file", "-e", &format!("{run}:run.json")]);
    }
    let list = repo.wfe(&["list", "--json"]).code(0).json();
    assert_eq!(list.as_array().map(Vec::len), Some(RUNS), "{list}");
}

#[test]
fn auto_pack_off_leaves_one_pack_per_checkpoint() {
    let repo = Repo::new();
    template(&repo);
    repo.git(&["config", "wfe.autoPack", "false"]);
    let loose_before = count(&repo, "count:");
    run_all(&repo);
    assert!(!repo.path().join(".git/wfe/maintenance.lock").exists());
    assert_eq!(
        count(&repo, "count:"),
        loose_before,
        "no run wrote a loose object"
    );
    assert_eq!(count(&repo, "packs:"), checkpoints(&repo));
    repo.git(&["fsck", "--full", "--strict", "--no-progress"]);
}
