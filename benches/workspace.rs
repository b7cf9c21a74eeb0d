//! What a workspace snapshot costs, next to git doing the same job.
//!
//! `cargo bench --bench workspace` generates a repository of 10,000 ~1 KB
//! files in three directory levels (plus a `.gitignore` and an ignored
//! `target/` of 500 files), commits it with `git add -A && git commit` so
//! the index holds stat data, and times in the same run:
//!
//! - wfe: the first snapshot (a cold stat cache), a snapshot with nothing
//!   changed, and one after changing one file (median of several);
//! - git: `git add -A` into a temporary copy of `.git/index` plus
//!   `git write-tree`, after changing the same file (median of several; the
//!   copy itself is not timed);
//! - both again with 1,000 untracked files added;
//! - a restore of the snapshot taken before one file changed.
//!
//! Goals: the incremental snapshot at least as fast as git's, and at most
//! 50 ms. Figures are printed, nothing is asserted: machines differ.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use wfe::store::{GitStore, RunId, RunStore};

const FILES: usize = 10_000;
const UNTRACKED: usize = 1_000;
const ROUNDS: usize = 15;

fn git(dir: &Path, index: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    if let Some(index) = index {
        cmd.env("GIT_INDEX_FILE", index);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("running git: {e}")));
    if !out.status.success() {
        fail(&format!(
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn fail(message: &str) -> ! {
    eprintln!("bench failed: {message}");
    std::process::exit(1)
}

/// About 1 KB of text that differs per file.
fn contents(n: usize) -> String {
    let line = format!("line of file {n:05}: the quick brown fox jumps over the lazy dog\n");
    line.repeat(1024 / line.len() + 1)
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
    }
    std::fs::write(path, text).unwrap_or_else(|e| fail(&format!("write: {e}")));
}

/// `FILES` files as `dNN/eNN/fNNNNN.txt`, a `.gitignore`, and an ignored `target/`.
fn generate(root: &Path) {
    for n in 0..FILES {
        let path = root
            .join(format!("d{:02}", n % 10))
            .join(format!("e{:02}", (n / 10) % 10))
            .join(format!("f{n:05}.txt"));
        write(&path, &contents(n));
    }
    write(&root.join(".gitignore"), "target/\n*.log\n");
    for n in 0..500 {
        write(
            &root.join(format!("target/obj{n}.o")),
            "ignored build output\n",
        );
    }
    // Files edited long before the last `git add`, as in a real checkout:
    // stat data written in the same second would be racily clean.
    let past = SystemTime::now() - Duration::from_secs(3600);
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| fail(&format!("list: {e}"))) {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(file) = std::fs::File::options().write(true).open(&path) {
                let _ = file.set_modified(past);
            }
        }
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `git add -A` into a copy of the index, then `git write-tree`; the tree.
fn git_snapshot(root: &Path, scratch: &Path) -> (Duration, String) {
    let index = scratch.join("index");
    std::fs::copy(root.join(".git/index"), &index)
        .unwrap_or_else(|e| fail(&format!("copying the index: {e}")));
    let start = Instant::now();
    git(root, Some(&index), &["add", "-A"]);
    let tree = git(root, Some(&index), &["write-tree"]);
    (start.elapsed(), tree)
}

struct Row {
    case: &'static str,
    wfe: Duration,
    git: Option<Duration>,
    note: String,
}

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let scratch = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("tempdir: {e}")));
    let root = dir.path();
    git(root, None, &["init", "-q", "-b", "main"]);
    generate(root);
    // No `gc --auto` in the background while timing: pack now, as a
    // repository that has lived a while is.
    git(root, None, &["config", "gc.auto", "0"]);
    git(root, None, &["add", "-A"]);
    git(root, None, &["commit", "-q", "-m", "generated"]);
    git(root, None, &["gc", "-q"]);
    let store = GitStore::discover(root).unwrap_or_else(|e| fail(&e.to_string()));
    let snapshot = || {
        let start = Instant::now();
        let stats = store
            .snapshot_workspace_with_stats()
            .unwrap_or_else(|e| fail(&e.to_string()));
        (start.elapsed(), stats)
    };
    let changed = root.join("d03/e04/f00043.txt");
    let mut rows = Vec::new();

    for untracked in [0, UNTRACKED] {
        for n in 0..untracked {
            write(
                &root.join(format!("new/u{:02}/n{n:04}.txt", n % 20)),
                &contents(FILES + n),
            );
        }
        let label =
            |base: &'static str, with: &'static str| if untracked == 0 { base } else { with };

        let (first, stats) = snapshot();
        rows.push(Row {
            case: label("first snapshot", "first snapshot, +1,000 untracked"),
            wfe: first,
            git: None,
            note: format!(
                "{} from the index, {} hashed, {} blobs + {} trees written",
                stats.from_index, stats.hashed, stats.blobs_written, stats.trees_written
            ),
        });
        let (_, again) = snapshot();
        let unchanged = median((0..ROUNDS).map(|_| snapshot().0).collect());
        rows.push(Row {
            case: label("nothing changed", "nothing changed, +1,000 untracked"),
            wfe: unchanged,
            git: None,
            note: format!(
                "{} hashed, {} from the cache",
                again.hashed, again.from_cache
            ),
        });

        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut last = None;
        for round in 0..ROUNDS {
            write(&changed, &format!("{}round {round}\n", contents(43)));
            let (took, stats) = snapshot();
            ours.push(took);
            let (git_took, git_tree) = git_snapshot(root, scratch.path());
            theirs.push(git_took);
            if git_tree != stats.tree {
                fail(&format!(
                    "snapshot {} differs from git's tree {git_tree}",
                    stats.tree
                ));
            }
            last = Some(stats);
        }
        let last = last.unwrap_or_default();
        rows.push(Row {
            case: label("one file changed", "one file changed, +1,000 untracked"),
            wfe: median(ours),
            git: Some(median(theirs)),
            note: format!(
                "{} hashed, {} blobs + {} trees written; same tree as git's",
                last.hashed, last.blobs_written, last.trees_written
            ),
        });
    }

    // Restore: back to the snapshot taken before one file changed.
    let run = RunId::generate();
    let before = store
        .snapshot_workspace()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut restores = Vec::new();
    for round in 0..ROUNDS {
        write(
            &changed,
            &format!("{}restore round {round}\n", contents(43)),
        );
        let start = Instant::now();
        store
            .restore_workspace(&run, &before, 0)
            .unwrap_or_else(|e| fail(&e.to_string()));
        restores.push(start.elapsed());
    }
    rows.push(Row {
        case: "restore after one file changed",
        wfe: median(restores),
        git: None,
        note: "a snapshot, the plan, one file written (unsaved changes go to a trash ref)".into(),
    });
    let _ = store.runs();

    println!(
        "workspace snapshot of {FILES} files (~1 KB, 3 levels; median of {ROUNDS} where repeated)\n"
    );
    println!("{:<40} {:>9} {:>9}  notes", "case", "wfe ms", "git ms");
    for row in &rows {
        let git = row
            .git
            .map_or_else(|| "-".to_string(), |g| format!("{:.1}", ms(g)));
        println!(
            "{:<40} {:>9.1} {:>9}  {}",
            row.case,
            ms(row.wfe),
            git,
            row.note
        );
    }
    println!();
    for row in rows.iter().filter(|r| r.git.is_some()) {
        let git = row.git.unwrap_or_default();
        println!(
            "goal for `{}`: <= git ({}) and <= 50 ms ({})",
            row.case,
            if row.wfe <= git { "met" } else { "MISSED" },
            if row.wfe <= Duration::from_millis(50) {
                "met"
            } else {
                "MISSED"
            },
        );
    }
}
