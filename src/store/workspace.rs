//! Workspace snapshots: the working tree recorded as a git tree in a
//! checkpoint (`workspace/`), and restored from one.
//!
//! A snapshot holds what `git add -A` would stage, tracked files, changes and
//! untracked files that no ignore rule matches, built without touching the
//! user's index, HEAD or branches (see `snapshot.rs` for the exact rules and
//! the two deliberate differences from git). It is cheap when little
//! changed: files whose stat data match the index reuse its blob ids, and
//! wfe's own stat cache (`stat_cache.rs`, under `<common-dir>/wfe/`) does the
//! same for untracked and modified files, so a snapshot after editing one
//! file reads one file. Only objects missing from the database are written.
//!
//! Restoring (`restore.rs`) makes the working tree match a snapshot byte for
//! byte: contents, executable bits, symlinks, deletions. It never touches
//! ignored files, other repositories or `.git`, and first checks that it
//! can do everything without destroying anything no snapshot holds. If the
//! working tree holds changes that no snapshot of the run has, they are
//! first saved as a commit under `refs/wfe/trash/<run>/code-<n>`, which
//! [`GitStore::restore_code_from_trash`] (`wfe undo RUN --code`) brings back.
//!
//! This module owns the work tree side of the store; it never prints, and
//! it changes the work tree only in the two `restore_*` functions.

mod restore;
mod snapshot;
mod stat_cache;
#[cfg(test)]
mod tests;
mod worktree;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::lock::acquire::Fail;
use gix::refs::transaction::{Change as RefChange, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{Target, TargetRef};

use super::git::{
    OrGit, PACKED_REFS_LOCK_TIMEOUT, REF_LOCK_TIMEOUT, commit_tree, full_name, git_error,
    parse_checkpoint, read_tip, write_commit,
};
use super::{
    Change, CheckpointId, GitStore, Message, Result, RunId, RunStore, StoreError, Trailer,
};

pub(crate) use snapshot::plain_files;
pub use worktree::{Isolated, Merged, Worktrees};

/// Where a checkpoint holds the working tree's snapshot (DESIGN.md §3).
pub const WORKSPACE: &str = "workspace";

/// The ref namespace of abandoned tips (rollback, undo); code saved before a
/// restore lives at `<prefix><run>/code-<n>`.
const TRASH_PREFIX: &str = "refs/wfe/trash/";

/// Which names a snapshot records and a restore writes: what git itself
/// accepts on this platform (`core.protectNTFS` is on by default) less what
/// `git fsck` flags in any tree (HFS+ and NTFS look-alikes of `.git`).
const NAME_RULES: gix::validate::path::component::Options =
    gix::validate::path::component::Options {
        protect_windows: false,
        protect_hfs: true,
        protect_ntfs: true,
    };

/// What one snapshot found and did: for tests, benchmarks and diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// The snapshot's tree id (40 hex digits).
    pub tree: String,
    /// Files, symlinks and submodules recorded.
    pub entries: usize,
    /// Files whose blob id came from the index's stat data, unread.
    pub from_index: usize,
    /// Files whose blob id came from wfe's stat cache, unread.
    pub from_cache: usize,
    /// Files (and symlinks) read and hashed.
    pub hashed: usize,
    /// Blobs written because the object database lacked them.
    pub blobs_written: usize,
    /// Trees written because the object database lacked them.
    pub trees_written: usize,
    /// Paths left out that `git add -A` would have failed on or ignored
    /// silently, with the reason: the CLI may warn about them.
    pub skipped: Vec<Skipped>,
}

impl SnapshotStats {
    /// Adds another walker's counts (several threads walk one snapshot).
    fn merge(&mut self, other: SnapshotStats) {
        self.entries += other.entries;
        self.from_index += other.from_index;
        self.from_cache += other.from_cache;
        self.hashed += other.hashed;
        self.blobs_written += other.blobs_written;
        self.trees_written += other.trees_written;
        self.skipped.extend(other.skipped);
    }
}

/// A path a snapshot left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Relative to the work tree, `/`-separated (lossy for non-UTF-8 names).
    pub path: String,
    /// Why it was left out.
    pub reason: &'static str,
}

/// What [`GitStore::restore_code_from_trash`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRestore {
    /// The trash ref restored (and then deleted): `refs/wfe/trash/<run>/code-<n>`.
    pub restored: String,
    /// Where the working tree's own unsnapshotted changes were saved first,
    /// if it had any: the next `wfe undo RUN --code` brings them back.
    pub saved: Option<String>,
}

impl GitStore {
    /// Records the working tree as a tree in the object database and returns
    /// its id (40 hex digits). The index, HEAD and branches are untouched.
    ///
    /// Fails with [`StoreError::NoWorkTree`] in a bare repository, and with
    /// [`StoreError::Io`] if a file cannot be read (a snapshot missing a file
    /// would make a later restore delete it).
    pub fn snapshot_workspace(&self) -> Result<String> {
        self.snapshot_workspace_with_stats().map(|stats| stats.tree)
    }

    /// [`GitStore::snapshot_workspace`], with what it cost.
    pub fn snapshot_workspace_with_stats(&self) -> Result<SnapshotStats> {
        let work_dir = self.work_dir()?;
        let repo = self.repo();
        let unmasked = crate::secret::Masker::default();
        snapshot::take(&repo, work_dir, &self.snapshot_cache_file(&repo), &unmasked)
    }

    /// The `workspace` tree recorded in checkpoint `at` (40 hex digits), or
    /// `None` if that checkpoint has no snapshot.
    pub fn workspace_tree(&self, at: &CheckpointId) -> Result<Option<String>> {
        let repo = self.repo();
        workspace_entry(&repo, parse_checkpoint(at)?).map(|tree| tree.map(|id| id.to_string()))
    }

    /// Makes the working tree match the snapshot `tree` (40 hex digits, as
    /// [`GitStore::workspace_tree`] returns) byte for byte, for
    /// `wfe rollback RUN --code`.
    ///
    /// Files that differ are rewritten, files the snapshot lacks are removed
    /// (tracked or untracked, never ignored ones), executable bits and
    /// symlinks are set as recorded, directories left empty are removed.
    /// The index is not touched, so `git status` then shows the snapshot's
    /// changes against it.
    ///
    /// If the working tree holds changes no snapshot of `run` has (its fresh
    /// snapshot is neither a checkpoint's `workspace` nor a trash ref of the
    /// run), they are first saved as a commit (signed at `time`, its parent
    /// the user's HEAD, so `git show REF` shows them as a diff) under
    /// `refs/wfe/trash/<run>/code-<n>`; the ref's name is returned, for
    /// the CLI to say that `wfe undo RUN --code` brings them back.
    ///
    /// Nothing is changed, and [`StoreError::RestoreConflict`] returned, if
    /// the restore would overwrite something no snapshot holds (an ignored
    /// file with other contents where the snapshot has a file, say).
    pub fn restore_workspace(&self, run: &RunId, tree: &str, time: i64) -> Result<Option<String>> {
        let repo = self.repo();
        let target = parse_tree(&repo, tree)?;
        self.restore_tree(&repo, run, target, time)
    }

    /// Brings back the working tree saved by the latest restore of `run`
    /// (`refs/wfe/trash/<run>/code-<n>` with the highest `n`), for
    /// `wfe undo RUN --code`; `None` if there is none.
    ///
    /// The ref is deleted once restored, so repeated calls walk back through
    /// older saves. Changes the working tree has that no snapshot holds are
    /// saved first, exactly as [`GitStore::restore_workspace`] does, so two
    /// calls in a row swap back and forth and nothing is ever lost.
    pub fn restore_code_from_trash(&self, run: &RunId, time: i64) -> Result<Option<CodeRestore>> {
        let repo = self.repo();
        let Some((name, commit)) = code_refs(&repo, run)?.pop() else {
            return Ok(None);
        };
        let tree = commit_tree(&repo, commit)?;
        let saved = self.restore_tree(&repo, run, tree, time)?;
        let delete = RefEdit {
            change: RefChange::Delete {
                expected: PreviousValue::MustExistAndMatch(Target::Object(commit)),
                log: RefLog::AndReference,
            },
            name: full_name(&name)?,
            deref: false,
        };
        repo.refs
            .transaction()
            .prepare(
                Some(delete),
                Fail::AfterDurationWithBackoff(REF_LOCK_TIMEOUT),
                Fail::AfterDurationWithBackoff(PACKED_REFS_LOCK_TIMEOUT),
            )
            .and_then(|tx| tx.commit(None))
            .or_git(|| format!("deleting {name}"))?;
        Ok(Some(CodeRestore {
            restored: name,
            saved,
        }))
    }

    /// The tree for the [`Change::Snapshot`]s of a commit, taken before the
    /// commit locks the store; `None` if there are none. A writer whose
    /// `parent` is stale is refused first, as the commit itself would, so
    /// it does not snapshot for nothing.
    pub(super) fn snapshot_for_commit(
        &self,
        run: &RunId,
        parent: Option<&CheckpointId>,
        changes: &[Change],
    ) -> Result<Option<ObjectId>> {
        let Some(masker) = changes.iter().find_map(|change| match change {
            Change::Snapshot { masker, .. } => Some(masker),
            _ => None,
        }) else {
            return Ok(None);
        };
        let tip = self.tip(run)?;
        if tip.as_ref() != parent {
            return Err(StoreError::Conflict {
                run: run.clone(),
                expected: parent.map_or_else(|| "none".to_string(), |p| p.0.clone()),
                found: tip.map_or_else(|| "none".to_string(), |t| t.0),
            });
        }
        let work_dir = self.work_dir()?;
        let repo = self.repo();
        let tree = snapshot::take(&repo, work_dir, &self.snapshot_cache_file(&repo), masker)?.tree;
        ObjectId::from_hex(tree.as_bytes())
            .map(Some)
            .map_err(|err| git_error("reading the snapshot's tree id".into(), &err))
    }

    /// The work tree's root, or [`StoreError::NoWorkTree`].
    fn work_dir(&self) -> Result<&Path> {
        self.info()
            .work_dir
            .as_deref()
            .ok_or_else(|| StoreError::NoWorkTree {
                path: self.info().common_dir.clone(),
            })
    }

    /// `<common-dir>/wfe/snapshot-cache`, one per work tree: linked
    /// worktrees share the common dir but not their files.
    fn snapshot_cache_file(&self, repo: &gix::Repository) -> PathBuf {
        let git_dir = std::path::absolute(repo.git_dir()).unwrap_or_else(|_| repo.git_dir().into());
        let name = if git_dir == self.info().common_dir {
            "snapshot-cache".to_string()
        } else {
            let id = git_dir.file_name().unwrap_or_default().to_string_lossy();
            format!("snapshot-cache-{id}")
        };
        self.wfe_dir().join(name)
    }

    /// Restores `target`, saving unsnapshotted changes first.
    fn restore_tree(
        &self,
        repo: &gix::Repository,
        run: &RunId,
        target: ObjectId,
        time: i64,
    ) -> Result<Option<String>> {
        let work_dir = self.work_dir()?;
        // Saved as it is: a restore has no run's secrets to mask with.
        let unmasked = crate::secret::Masker::default();
        let current = snapshot::take(repo, work_dir, &self.snapshot_cache_file(repo), &unmasked)?;
        let current = ObjectId::from_hex(current.tree.as_bytes())
            .map_err(|err| git_error("reading the snapshot's tree id".into(), &err))?;
        if current == target {
            return Ok(None);
        }
        // Checked in full before anything is saved or changed.
        let plan = restore::plan(repo, work_dir, current, target)?;
        let saved = if captured_trees(repo, run)?.contains(&current) {
            None
        } else {
            Some(self.save_to_trash(repo, run, current, time)?)
        };
        restore::apply(repo, work_dir, &plan)?;
        Ok(saved)
    }

    /// Saves the snapshot `tree` as a commit under the next free
    /// `refs/wfe/trash/<run>/code-<n>` and returns that name.
    fn save_to_trash(
        &self,
        repo: &gix::Repository,
        run: &RunId,
        tree: ObjectId,
        time: i64,
    ) -> Result<String> {
        let signature = self.signature(time);
        let message = Message::new("wfe: working tree saved before restoring a snapshot")
            .trailer(Trailer::Run, run.as_str())
            .trailer(Trailer::Event, "code-saved");
        let head = repo.head_id().ok().map(|id| id.detach());
        let id = write_commit(repo, tree, head, &signature, &message)
            .or_git(|| format!("saving the working tree of run {run}"))?;
        let mut time_buf = gix::date::parse::TimeBuf::default();
        // Another process may take the same number at once: then try the next.
        let mut attempts = 0;
        loop {
            let n = code_refs(repo, run)?
                .last()
                .and_then(|(name, _)| code_number(name))
                .unwrap_or(0)
                + 1;
            let name = format!("{TRASH_PREFIX}{run}/code-{n}");
            let edit = RefEdit {
                change: RefChange::Update {
                    log: LogChange {
                        mode: RefLog::AndReference,
                        force_create_reflog: true,
                        message: message.summary.clone().into(),
                    },
                    expected: PreviousValue::MustNotExist,
                    new: Target::Object(id),
                },
                name: full_name(&name)?,
                deref: false,
            };
            let created = repo
                .refs
                .transaction()
                .prepare(
                    Some(edit),
                    Fail::AfterDurationWithBackoff(REF_LOCK_TIMEOUT),
                    Fail::AfterDurationWithBackoff(PACKED_REFS_LOCK_TIMEOUT),
                )
                .and_then(|tx| tx.commit(Some(signature.to_ref(&mut time_buf))));
            match created {
                Ok(_) => return Ok(name),
                Err(_) if attempts < 5 && read_tip(repo, &name)?.is_some() => attempts += 1,
                Err(err) => return Err(git_error(format!("creating {name}"), &err)),
            }
        }
    }
}

/// The `workspace` tree of the checkpoint `commit`, if it has one.
fn workspace_entry(repo: &gix::Repository, commit: ObjectId) -> Result<Option<ObjectId>> {
    let root = commit_tree(repo, commit)?;
    let tree = repo
        .find_tree(root)
        .or_git(|| format!("reading the tree of checkpoint {commit}"))?;
    let entry = tree
        .lookup_entry([WORKSPACE])
        .or_git(|| format!("looking up {WORKSPACE} in checkpoint {commit}"))?;
    Ok(entry
        .filter(|entry| entry.mode().is_tree())
        .map(|entry| entry.object_id()))
}

/// Every snapshot tree `run` holds: the `workspace` of each checkpoint of
/// its history and of its trash refs (tips abandoned by rollbacks), and the
/// trees of its saved code (`code-<n>`, whose root is the snapshot itself).
fn captured_trees(repo: &gix::Repository, run: &RunId) -> Result<HashSet<ObjectId>> {
    let mut trees = HashSet::new();
    let mut tips: Vec<ObjectId> = read_tip(repo, &run.ref_name())?.into_iter().collect();
    let prefix = format!("{TRASH_PREFIX}{run}/");
    for (name, id) in trash_refs(repo, &prefix)? {
        if code_number(&name).is_some() {
            trees.insert(commit_tree(repo, id)?);
        } else {
            tips.push(id);
        }
    }
    let mut seen = HashSet::new();
    for tip in tips {
        let mut next = Some(tip);
        while let Some(commit) = next.filter(|id| seen.insert(*id)) {
            trees.extend(workspace_entry(repo, commit)?);
            let object = repo
                .find_commit(commit)
                .or_git(|| format!("reading checkpoint {commit}"))?;
            next = object.parent_ids().next().map(|id| id.detach());
        }
    }
    Ok(trees)
}

/// The run's `code-<n>` trash refs, by increasing `n`.
fn code_refs(repo: &gix::Repository, run: &RunId) -> Result<Vec<(String, ObjectId)>> {
    let mut refs: Vec<(u64, String, ObjectId)> =
        trash_refs(repo, &format!("{TRASH_PREFIX}{run}/"))?
            .into_iter()
            .filter_map(|(name, id)| code_number(&name).map(|n| (n, name, id)))
            .collect();
    refs.sort();
    Ok(refs.into_iter().map(|(_, name, id)| (name, id)).collect())
}

/// Direct refs under `prefix`, with the commits they name.
fn trash_refs(repo: &gix::Repository, prefix: &str) -> Result<Vec<(String, ObjectId)>> {
    let platform = repo.references().or_git(|| "listing refs".into())?;
    let refs = platform
        .prefixed(prefix)
        .or_git(|| format!("listing {prefix}*"))?;
    let mut out = Vec::new();
    for reference in refs {
        let reference = reference.or_git(|| format!("listing {prefix}*"))?;
        if let TargetRef::Object(id) = reference.target() {
            out.push((
                reference.name().as_bstr().to_str_lossy().into_owned(),
                id.to_owned(),
            ));
        }
    }
    Ok(out)
}

/// `n` of a ref named `…/code-<n>`.
fn code_number(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.strip_prefix("code-")?.parse().ok()
}

/// A tree id given as hex, checked to name a tree in the repository.
fn parse_tree(repo: &gix::Repository, hex: &str) -> Result<ObjectId> {
    let malformed = |reason: &str| StoreError::Malformed {
        id: hex.to_string(),
        reason: reason.to_string(),
    };
    let id = ObjectId::from_hex(hex.as_bytes()).map_err(|_| malformed("not a tree id"))?;
    let object = repo
        .try_find_object(id)
        .or_git(|| format!("reading tree {hex}"))?
        .ok_or_else(|| malformed("no such tree in the repository"))?;
    if object.kind != gix::objs::Kind::Tree {
        return Err(malformed(&format!("it is a {}, not a tree", object.kind)));
    }
    Ok(id)
}
