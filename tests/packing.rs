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

/// Runs in each test: enough checkpoints to pass the 32-pack threshold twice.
const RUNS: usize = 20;
/// `PACK_LIMIT` in `src/store/maintenance.rs`.
const PACK_LIMIT: usize = 32;

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
        written > 2 * PACK_LIMIT,
        "enough checkpoints to consolidate: {written}"
    );
    // No run wrote a loose object; the user's own were packed with the rest.
    assert!(count(&repo, "count:") <= loose_before);
    let packs = count(&repo, "packs:");
    assert!(
        packs <= PACK_LIMIT + written / RUNS,
        "{packs} packs after {written} checkpoints: consolidation kept them few"
    );
    repo.git(&["fsck", "--full", "--strict", "--no-progress"]);
    // Run refs were packed too (a loose ref costs a disk block each), and
    // read the same as before.
    let packed = std::fs::read_to_string(repo.path().join(".git/packed-refs")).unwrap_or_default();
    assert!(
        packed.contains("refs/wfe/runs/"),
        "run refs packed:\n{packed}"
    );
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

/// A long run's `phases/` tree (over 4 KiB from about 135 phases) is
/// rewritten by every checkpoint and stored in its pack without deflate;
/// the packs stay valid for git, every phase's state reads back by its
/// path, and consolidation turns those trees into deltas of each other.
#[test]
fn a_long_runs_phases_trees_are_stored_and_consolidate_to_deltas() {
    const PHASES: usize = 160;
    let repo = Repo::new();
    repo.git(&["config", "wfe.autoPack", "false"]);
    let phases: Vec<_> = (0..PHASES)
        .map(|i| {
            let needs = if i == 0 {
                vec![]
            } else {
                vec![format!("p{}", i - 1)]
            };
            let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
            script(&format!("p{i}"), &needs, "true")
        })
        .collect();
    repo.template("long", &json!({ "name": "long", "phases": phases }));
    repo.wfe(&["run", "long", "--no-output", "--jobs", "1"])
        .code(0);
    repo.git(&["fsck", "--full", "--strict", "--no-progress"]);
    let run = repo.wfe_refs().pop().expect("a run ref");
    for i in [0, PHASES / 2, PHASES - 1] {
        let state = repo.git(&["show", &format!("{run}:phases/p{i}/state.json")]);
        assert!(state.contains("\"completed\""), "p{i}: {state}");
    }
    let tree = repo.git(&["rev-parse", &format!("{run}:phases")]);
    let tree = tree.trim();
    let size: usize = repo.git(&["cat-file", "-s", tree]).trim().parse().unwrap();
    assert!(size > 4096, "the phases tree is large: {size} bytes");
    // In its checkpoint's pack, stored: more bytes in the pack than inflated.
    let large_trees = |repo: &Repo| -> Vec<(usize, usize, bool)> {
        let pack_dir = repo.path().join(".git/objects/pack");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&pack_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "idx") {
                let listed = repo.git(&["verify-pack", "-v", &path.to_string_lossy()]);
                for line in listed.lines() {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    if fields.get(1) == Some(&"tree") {
                        let size: usize = fields[2].parse().unwrap();
                        let in_pack: usize = fields[3].parse().unwrap();
                        if size > 4096 {
                            found.push((size, in_pack, fields.len() > 5));
                        }
                    }
                }
            }
        }
        found
    };
    let before = large_trees(&repo);
    assert!(before.len() > 10, "{before:?}");
    assert!(
        before
            .iter()
            .all(|&(size, in_pack, delta)| !delta && in_pack > size),
        "stored whole, uncompressed: {before:?}"
    );
    repo.git(&[
        "repack",
        "-d",
        "-l",
        "-q",
        "--geometric=2",
        "--no-write-bitmap-index",
    ]);
    let after = large_trees(&repo);
    let whole = after.iter().filter(|&&(_, _, delta)| !delta).count();
    assert!(whole <= 2, "consolidated as deltas: {after:?}");
    repo.git(&["fsck", "--full", "--strict", "--no-progress"]);
}
