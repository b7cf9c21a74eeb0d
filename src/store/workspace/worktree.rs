//! Isolated worktrees: a phase with `isolation: "worktree"` works in a git
//! worktree of its own under `<git-dir>/wfe/worktrees/<run>/<name>/`, made
//! from the run's current code, and its changes come back into the user's
//! working tree when it completes.
//!
//! "The run's current code" is the user's working tree when the attempt
//! starts, recorded as a workspace snapshot would record it (what `git add
//! -A` would stage): the base commit plus what earlier phases of the run
//! changed (they merged back, or wrote in place, before their dependants
//! start) plus the person's own uncommitted edits. It is checked out as a
//! commit whose parent is HEAD, on a detached HEAD, so `git diff HEAD` in
//! the worktree shows the phase's own changes only.
//!
//! Merging back is a three-way merge of trees: the start tree is the base,
//! the user's working tree now is "ours", the worktree's final snapshot is
//! "theirs". When the working tree did not move it is a fast-forward; else
//! `git merge-tree --write-tree --merge-base` computes the result, and a
//! conflict names its paths and changes nothing. The result is written with
//! the workspace restore, which checks every path before it writes any, so
//! the user's tree is never left half-merged. Merges are serialised (one
//! lock per handle), so parallel phases land one after the other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use gix::ObjectId;

use super::{restore, snapshot};
use crate::store::{GitStore, Result, StoreError};

/// The directory under `<git-dir>/wfe/` that holds the worktrees.
const WORKTREES: &str = "worktrees";

/// Creates, merges back and removes isolated worktrees; cheap to clone and
/// safe to use from several tasks (each call opens the repository anew).
#[derive(Debug, Clone)]
pub struct Worktrees {
    /// The user's work tree.
    work_dir: PathBuf,
    /// `<git-dir>/wfe/worktrees`.
    root: PathBuf,
    /// The user's work tree's snapshot cache.
    cache: PathBuf,
    /// Held while a merge reads and writes the user's work tree.
    merging: Arc<Mutex<()>>,
}

/// One attempt's worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolated {
    /// Where the attempt works.
    pub path: PathBuf,
    /// The tree it started from (40 hex digits).
    pub base: String,
}

/// What merging a worktree back did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The attempt changed nothing.
    Unchanged,
    /// The working tree had not moved: it now holds the attempt's tree.
    FastForward,
    /// Both moved; the three-way merge was clean and is written.
    ThreeWay,
    /// Both changed these paths; nothing was written.
    Conflict {
        /// The conflicting paths, relative to the work tree.
        paths: Vec<String>,
        /// The attempt's final tree (40 hex digits), to look at by hand.
        theirs: String,
    },
}

impl GitStore {
    /// The handle isolated phases of this repository's runs use; `None`
    /// in a bare repository.
    pub fn worktrees(&self) -> Option<Worktrees> {
        let work_dir = self.info().work_dir.clone()?;
        let repo = self.repo();
        Some(Worktrees {
            cache: self.snapshot_cache_file(&repo),
            work_dir,
            root: self.wfe_dir().join(WORKTREES),
            merging: Arc::new(Mutex::new(())),
        })
    }
}

impl Worktrees {
    /// `<git-dir>/wfe/worktrees/<run>/`.
    pub fn run_dir(&self, run: &str) -> PathBuf {
        self.root.join(run)
    }

    /// Makes the worktree `<run>/<name>` from the working tree as it is now
    /// (see the module's doc); a stale one of the same name goes first.
    pub fn add(&self, run: &str, name: &str) -> Result<Isolated> {
        let path = self.run_dir(run).join(name);
        if path.exists() {
            self.remove(&path)?;
        }
        let _merging = self.lock();
        let repo = open(&self.work_dir)?;
        let unmasked = crate::secret::Masker::default();
        let base = snapshot::take(&repo, &self.work_dir, &self.cache, &unmasked)?.tree;
        let mut commit_tree = vec![
            "-c",
            "user.name=wfe",
            "-c",
            "user.email=wfe@localhost",
            "commit-tree",
            base.as_str(),
            "-m",
            "wfe: the run's current code",
        ];
        let head = repo.head_id().ok().map(|id| id.to_string());
        if let Some(head) = &head {
            commit_tree.extend(["-p", head.as_str()]);
        }
        let commit = git(&self.work_dir, &commit_tree)?;
        let parent = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
            action: "creating the worktrees directory",
            path: parent.to_path_buf(),
            source,
        })?;
        let at = path.to_string_lossy();
        git(
            &self.work_dir,
            &["worktree", "add", "--quiet", "--detach", &at, commit.trim()],
        )?;
        Ok(Isolated { path, base })
    }

    /// Brings the attempt's changes into the user's working tree: a
    /// fast-forward, a clean three-way merge, or a conflict that changes
    /// nothing.
    pub fn merge(&self, isolated: &Isolated) -> Result<Merged> {
        let _merging = self.lock();
        let theirs_repo = open(&isolated.path)?;
        let unmasked = crate::secret::Masker::default();
        let cache = isolated.path.with_extension("cache");
        let theirs = snapshot::take(&theirs_repo, &isolated.path, &cache, &unmasked)?.tree;
        if theirs == isolated.base {
            return Ok(Merged::Unchanged);
        }
        let repo = open(&self.work_dir)?;
        let ours = snapshot::take(&repo, &self.work_dir, &self.cache, &unmasked)?.tree;
        let (target, merged) = if ours == isolated.base {
            (theirs.clone(), Merged::FastForward)
        } else {
            let merge_base = format!("--merge-base={}", isolated.base);
            let out = Command::new("git")
                .current_dir(&self.work_dir)
                .args([
                    "merge-tree",
                    "--write-tree",
                    "--name-only",
                    "--no-messages",
                    &merge_base,
                    &ours,
                    &theirs,
                ])
                .output()
                .map_err(|e| StoreError::Git {
                    message: format!("cannot run git merge-tree: {e}"),
                })?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let tree = lines.next().unwrap_or_default().trim().to_string();
            match out.status.code() {
                Some(0) => (tree, Merged::ThreeWay),
                Some(1) => {
                    let mut paths: Vec<String> = lines
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect();
                    paths.dedup();
                    return Ok(Merged::Conflict { paths, theirs });
                }
                _ => {
                    return Err(StoreError::Git {
                        message: format!(
                            "git merge-tree failed: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    });
                }
            }
        };
        let parse = |hex: &str| {
            ObjectId::from_hex(hex.as_bytes()).map_err(|e| StoreError::Git {
                message: format!("reading tree id `{hex}`: {e}"),
            })
        };
        // Every path is checked before any is written.
        let plan = restore::plan(&repo, &self.work_dir, parse(&ours)?, parse(&target)?)?;
        restore::apply(&repo, &self.work_dir, &plan)?;
        Ok(merged)
    }

    /// Removes an attempt's worktree: its directory and git's record of it.
    pub fn remove(&self, path: &Path) -> Result<()> {
        // Not while another attempt's worktree is being made in the same
        // run directory, which this may remove.
        let _merging = self.lock();
        let at = path.to_string_lossy();
        // git may have lost track of it (a half-made worktree): the
        // directory goes regardless, and `prune` drops the record.
        let _ = git(
            &self.work_dir,
            &["worktree", "remove", "--force", "--force", &at],
        );
        remove_all(path)?;
        let cache = path.with_extension("cache");
        if cache.exists() {
            let _ = std::fs::remove_file(&cache);
        }
        git(&self.work_dir, &["worktree", "prune"])?;
        // The run's directory goes with its last worktree (a non-empty one
        // stays: another attempt still works there).
        if let Some(run_dir) = path.parent() {
            let _ = std::fs::remove_dir(run_dir);
        }
        Ok(())
    }

    /// Removes every worktree of `run` left behind (a runner that died
    /// mid-attempt) and returns their names, sorted.
    pub fn sweep(&self, run: &str) -> Result<Vec<String>> {
        let dir = self.run_dir(run);
        let mut names = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(names);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
                self.remove(&path)?;
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        let _ = std::fs::remove_dir(&dir);
        git(&self.work_dir, &["worktree", "prune"])?;
        names.sort();
        Ok(names)
    }

    /// Holds the merge lock; a panic elsewhere does not make it unusable.
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.merging
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Opens the repository of a work tree (the user's or a linked worktree).
fn open(dir: &Path) -> Result<gix::Repository> {
    gix::open(dir).map_err(|e| StoreError::Git {
        message: format!("opening the repository at {}: {e}", dir.display()),
    })
}

/// Runs the git CLI in `dir` and returns its standard output.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| StoreError::Git {
            message: format!("cannot run git {}: {e}", args.join(" ")),
        })?;
    if !out.status.success() {
        return Err(StoreError::Git {
            message: format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes a directory tree; one already gone is fine.
fn remove_all(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
            action: "removing a worktree",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}
