//! Restoring the working tree to a snapshot, byte for byte.
//!
//! The restore is planned as a difference between two trees: a fresh
//! snapshot of the working tree as it is (what wfe may change) and the
//! target. Only paths in one of them are touched, so ignored files and
//! anything the snapshot left out (other repositories, unreadable
//! directories) are never written or removed, and submodules are left
//! alone. The whole plan is checked before the first change: if a path the
//! target needs is held by something no snapshot has (an ignored file with
//! other contents, a symlink where a directory must go), the restore stops
//! with [`StoreError::RestoreConflict`] and nothing is changed.
//!
//! Files are written to a temporary name beside them and renamed into place,
//! so a reader never sees half a file, and a symlink is replaced rather than
//! followed. Directories left empty by removals are removed.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gix::ObjectId;
use gix::bstr::{BString, ByteSlice};
use gix::objs::tree::EntryKind as GitEntryKind;

use crate::store::git::OrGit;
use crate::store::{Result, StoreError};

/// One step of a restore, on a path relative to the work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Remove a file or symlink the target does not have.
    RemoveFile(BString),
    /// Remove a directory that must become a file (checked to be empty by then).
    RemoveDir(BString),
    /// Create a directory the target has.
    MakeDir(BString),
    /// Write a file or symlink with the target's contents.
    Write {
        path: BString,
        kind: GitEntryKind,
        id: ObjectId,
    },
    /// Same contents, other executable bit.
    SetExecutable { path: BString, executable: bool },
}

/// The changes that turn the working tree into the target, checked.
#[derive(Debug, Default)]
pub(super) struct Plan {
    ops: Vec<Op>,
}

/// What is known about a directory of the work tree while planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disk {
    /// In the current snapshot: it exists, and every entry of it the
    /// snapshot lacks is ignored or was left out.
    Known,
    /// Exists but is not in the snapshot (an ignored directory): look
    /// before writing anything into it.
    Unknown,
    /// Created by this restore: empty.
    Fresh,
}

/// Plans turning the work tree, whose snapshot is `current`, into `target`.
/// Fails with [`StoreError::RestoreConflict`] if that would destroy anything
/// no snapshot holds; reads the work tree but changes nothing.
pub(super) fn plan(
    repo: &gix::Repository,
    work_dir: &Path,
    current: ObjectId,
    target: ObjectId,
) -> Result<Plan> {
    let mut planner = Planner {
        repo,
        work_dir,
        plan: Plan::default(),
    };
    planner.dir(BString::default(), Some(current), Some(target), Disk::Known)?;
    Ok(planner.plan)
}

struct Planner<'a> {
    repo: &'a gix::Repository,
    work_dir: &'a Path,
    plan: Plan,
}

type Entry = (BString, GitEntryKind, ObjectId);

impl Planner<'_> {
    fn dir(
        &mut self,
        rel: BString,
        current: Option<ObjectId>,
        target: Option<ObjectId>,
        disk: Disk,
    ) -> Result<()> {
        if current.is_some() && current == target {
            return Ok(());
        }
        let current = match current {
            Some(id) => read_tree(self.repo, id)?,
            None => Vec::new(),
        };
        let target = match target {
            Some(id) => read_tree(self.repo, id)?,
            None => Vec::new(),
        };
        let mut current = current.into_iter().peekable();
        let mut target = target.into_iter().peekable();
        loop {
            let order = match (current.peek(), target.peek()) {
                (None, None) => break,
                (Some(c), Some(t)) => c.0.cmp(&t.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
            };
            let (c, t) = match order {
                std::cmp::Ordering::Less => (current.next(), None),
                std::cmp::Ordering::Equal => (current.next(), target.next()),
                std::cmp::Ordering::Greater => (None, target.next()),
            };
            let name = match (&c, &t) {
                (Some(c), _) => c.0.clone(),
                (None, Some(t)) => t.0.clone(),
                (None, None) => break,
            };
            let path = join(&rel, &name);
            if let Some(t) = &t {
                check_name(&path, t)?;
            }
            self.entry(path, c.map(|c| (c.1, c.2)), t.map(|t| (t.1, t.2)), disk)?;
        }
        Ok(())
    }

    /// One name: `current` and `target` are its kind and id in each tree.
    fn entry(
        &mut self,
        path: BString,
        current: Option<(GitEntryKind, ObjectId)>,
        target: Option<(GitEntryKind, ObjectId)>,
        disk: Disk,
    ) -> Result<()> {
        use GitEntryKind::{Commit, Tree};
        match (current, target) {
            (None, None) => Ok(()),
            (Some(c), Some(t)) if c == t => Ok(()),
            // Submodules are other repositories: never created, changed or removed.
            (Some((Commit, _)), None) | (Some((Commit, _)), Some((Commit, _))) => Ok(()),
            (Some((Commit, _)), Some(_)) => Err(conflict(
                &path,
                "a submodule is where the snapshot has other content",
            )),
            (Some((Tree, c)), Some((Tree, t))) => self.dir(path, Some(c), Some(t), Disk::Known),
            (Some((Tree, c)), None | Some((Commit, _))) => self.remove_tree(&path, c),
            (Some((Tree, c)), Some((kind, id))) => {
                self.check_holds_only(&path, c)?;
                self.remove_tree(&path, c)?;
                self.plan.ops.push(Op::RemoveDir(path.clone()));
                self.plan.ops.push(Op::Write { path, kind, id });
                Ok(())
            }
            (Some(_), None | Some((Commit, _))) => {
                self.plan.ops.push(Op::RemoveFile(path));
                Ok(())
            }
            (Some(_), Some((Tree, t))) => {
                self.plan.ops.push(Op::RemoveFile(path.clone()));
                self.plan.ops.push(Op::MakeDir(path.clone()));
                self.dir(path, None, Some(t), Disk::Fresh)
            }
            (Some((c_kind, c_id)), Some((kind, id))) => {
                let modes_only =
                    c_id == id && c_kind != GitEntryKind::Link && kind != GitEntryKind::Link;
                if modes_only {
                    self.plan.ops.push(Op::SetExecutable {
                        path,
                        executable: kind == GitEntryKind::BlobExecutable,
                    });
                } else {
                    self.plan.ops.push(Op::Write { path, kind, id });
                }
                Ok(())
            }
            (None, Some(t)) => self.add(path, t, disk),
        }
    }

    /// A path the current snapshot does not have: on disk it is absent, or
    /// ignored, or was left out; only the first may be written freely.
    fn add(
        &mut self,
        path: BString,
        (kind, id): (GitEntryKind, ObjectId),
        disk: Disk,
    ) -> Result<()> {
        let abs = self.abs(&path);
        let existing = match disk {
            Disk::Fresh => None,
            Disk::Known | Disk::Unknown => match std::fs::symlink_metadata(&abs) {
                Ok(meta) => Some(meta),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(StoreError::Io {
                        action: "reading the metadata of",
                        path: abs,
                        source,
                    });
                }
            },
        };
        match (existing, kind) {
            (_, GitEntryKind::Commit) => Ok(()),
            (None, GitEntryKind::Tree) => {
                self.plan.ops.push(Op::MakeDir(path.clone()));
                self.dir(path, None, Some(id), Disk::Fresh)
            }
            (None, _) => {
                self.plan.ops.push(Op::Write { path, kind, id });
                Ok(())
            }
            (Some(meta), GitEntryKind::Tree) if meta.is_dir() => {
                self.dir(path, None, Some(id), Disk::Unknown)
            }
            (Some(meta), GitEntryKind::Tree) => Err(conflict(
                &path,
                if meta.file_type().is_symlink() {
                    "an ignored symlink is where the snapshot has a directory"
                } else {
                    "an ignored file is where the snapshot has a directory"
                },
            )),
            (Some(meta), _) if meta.is_dir() => Err(conflict(
                &path,
                "an ignored directory is where the snapshot has a file",
            )),
            (Some(_), _) => {
                if self.same_file(&abs, kind, id)? {
                    Ok(())
                } else {
                    Err(conflict(
                        &path,
                        "an ignored file differs from the snapshot's; move it away first",
                    ))
                }
            }
        }
    }

    /// Plans removing every file of the current snapshot's tree `id` at `path`.
    fn remove_tree(&mut self, path: &[u8], id: ObjectId) -> Result<()> {
        for (name, kind, id) in read_tree(self.repo, id)? {
            let child = join(path, &name);
            match kind {
                GitEntryKind::Tree => self.remove_tree(&child, id)?,
                // A submodule stays, and keeps its directory.
                GitEntryKind::Commit => {}
                _ => self.plan.ops.push(Op::RemoveFile(child)),
            }
        }
        Ok(())
    }

    /// Checks that the directory at `path` holds nothing but the current
    /// snapshot's tree `id`, so removing that leaves it empty.
    fn check_holds_only(&self, path: &[u8], id: ObjectId) -> Result<()> {
        let abs = self.abs(path);
        let known = read_tree(self.repo, id)?;
        let listing = std::fs::read_dir(&abs).map_err(|source| StoreError::Io {
            action: "listing",
            path: abs.clone(),
            source,
        })?;
        for entry in listing {
            let entry = entry.map_err(|source| StoreError::Io {
                action: "listing",
                path: abs.clone(),
                source,
            })?;
            let name = BString::from(entry.file_name().as_bytes());
            let child = join(path, &name);
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match (known.iter().find(|k| k.0 == name), is_dir) {
                (Some((_, GitEntryKind::Tree, id)), true) => {
                    self.check_holds_only(&child, *id)?;
                }
                (Some((_, GitEntryKind::Commit, _)), _) => {
                    return Err(conflict(
                        &child,
                        "a submodule is inside a directory the snapshot has a file in place of",
                    ));
                }
                (Some((_, GitEntryKind::Tree, _)), false) | (Some(_), true) | (None, _) => {
                    return Err(conflict(
                        &child,
                        "ignored content is inside a directory the snapshot has a file in place of",
                    ));
                }
                (Some(_), false) => {}
            }
        }
        Ok(())
    }

    /// Whether the file at `abs` already has the target's kind and contents.
    fn same_file(&self, abs: &Path, kind: GitEntryKind, id: ObjectId) -> Result<bool> {
        let meta = std::fs::symlink_metadata(abs).map_err(|source| StoreError::Io {
            action: "reading the metadata of",
            path: abs.to_path_buf(),
            source,
        })?;
        let on_disk = if meta.file_type().is_symlink() {
            GitEntryKind::Link
        } else if meta.permissions().mode() & 0o100 != 0 {
            GitEntryKind::BlobExecutable
        } else {
            GitEntryKind::Blob
        };
        if on_disk != kind {
            return Ok(false);
        }
        let bytes = match kind {
            GitEntryKind::Link => {
                std::fs::read_link(abs).map(|t| t.as_os_str().as_bytes().to_vec())
            }
            _ => std::fs::read(abs),
        }
        .map_err(|source| StoreError::Io {
            action: "reading",
            path: abs.to_path_buf(),
            source,
        })?;
        let hash = gix::objs::compute_hash(self.repo.object_hash(), gix::objs::Kind::Blob, &bytes)
            .or_git(|| format!("hashing {}", abs.display()))?;
        Ok(hash == id)
    }

    fn abs(&self, path: &[u8]) -> PathBuf {
        self.work_dir.join(OsStr::from_bytes(path))
    }
}

/// Carries out a checked plan. An I/O error stops it midway; what was done
/// stays done (the caller saved anything unsnapshotted beforehand).
pub(super) fn apply(repo: &gix::Repository, work_dir: &Path, plan: &Plan) -> Result<()> {
    let abs = |path: &BString| work_dir.join(OsStr::from_bytes(path));
    let io = |action: &'static str, path: PathBuf| {
        move |source: std::io::Error| StoreError::Io {
            action,
            path,
            source,
        }
    };
    // Directories to remove afterwards if removals emptied them.
    let mut emptied: BTreeSet<BString> = BTreeSet::new();
    for op in &plan.ops {
        match op {
            Op::RemoveFile(path) => {
                let target = abs(path);
                match std::fs::remove_file(&target) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(io("removing", target)(source)),
                }
                emptied.extend(parent(path));
            }
            Op::RemoveDir(path) => {
                let target = abs(path);
                remove_empty_dirs(&target).map_err(io("removing the directory", target))?;
            }
            Op::MakeDir(path) => {
                let target = abs(path);
                match std::fs::create_dir(&target) {
                    Ok(()) => {}
                    Err(err)
                        if err.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() => {}
                    Err(source) => return Err(io("creating the directory", target)(source)),
                }
            }
            Op::Write { path, kind, id } => {
                let target = abs(path);
                let blob = repo
                    .find_blob(*id)
                    .or_git(|| format!("reading the snapshot's {}", path.to_str_lossy()))?;
                write_file(&target, *kind, &blob.data).map_err(io("writing", target))?;
            }
            Op::SetExecutable { path, executable } => {
                let target = abs(path);
                set_executable(&target, *executable).map_err(io("changing the mode of", target))?;
            }
        }
    }
    // Deepest first; stop at the first directory something else still holds.
    for dir in emptied.iter().rev() {
        let mut dir = dir.clone();
        while !dir.is_empty() {
            if std::fs::remove_dir(abs(&dir)).is_err() {
                break;
            }
            dir = parent(&dir).unwrap_or_default();
        }
    }
    Ok(())
}

/// Removes the directory `dir` and the (empty) directories inside it; what
/// they held was removed before, so anything left is an error.
fn remove_empty_dirs(dir: &Path) -> std::io::Result<()> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in listing {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_dirs(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Writes `bytes` at `target` as a file or symlink of `kind`, replacing what
/// is there through a rename (a symlink in the way is replaced, not followed).
fn write_file(target: &Path, kind: GitEntryKind, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = target.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".wfe-restore-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = match kind {
        GitEntryKind::Link => std::os::unix::fs::symlink(OsStr::from_bytes(bytes), &tmp),
        _ => {
            let executable = kind == GitEntryKind::BlobExecutable;
            // As git checks out: 0666 or 0777, less the umask.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if executable { 0o777 } else { 0o666 })
                .open(&tmp)
                .and_then(|mut file| {
                    file.write_all(bytes)?;
                    if executable {
                        // Even under a umask that drops the owner's x bit.
                        let mode = file.metadata()?.permissions().mode();
                        if mode & 0o100 == 0 {
                            file.set_permissions(std::fs::Permissions::from_mode(mode | 0o100))?;
                        }
                    }
                    Ok(())
                })
        }
    };
    let renamed = written.and_then(|()| std::fs::rename(&tmp, target));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Sets or clears the executable bits, as `chmod +x` / `chmod -x` would.
fn set_executable(target: &Path, executable: bool) -> std::io::Result<()> {
    let mode = std::fs::symlink_metadata(target)?.permissions().mode();
    let mode = if executable {
        mode | ((mode & 0o444) >> 2) | 0o100
    } else {
        mode & !0o111
    };
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
}

/// The entries of a tree, sorted by name.
fn read_tree(repo: &gix::Repository, id: ObjectId) -> Result<Vec<Entry>> {
    let tree = repo
        .find_tree(id)
        .or_git(|| format!("reading the snapshot tree {id}"))?;
    let decoded = tree
        .decode()
        .or_git(|| format!("decoding the snapshot tree {id}"))?;
    let mut entries: Vec<Entry> = decoded
        .entries
        .iter()
        .map(|e| (BString::from(e.filename), e.mode.kind(), e.oid.to_owned()))
        .collect();
    // Git orders a directory as if its name ended in `/`; merging wants plain names.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Refuses a name a snapshot could not have written, such as `..` or `.git`
/// (a run's refs may come from another machine).
fn check_name(path: &[u8], (name, kind, _): &Entry) -> Result<()> {
    let mode =
        (*kind == GitEntryKind::Link).then_some(gix::validate::path::component::Mode::Symlink);
    match gix::validate::path::component(name.as_ref(), mode, super::NAME_RULES) {
        Ok(_) => Ok(()),
        Err(err) => Err(StoreError::InvalidPath {
            path: path.to_str_lossy().into_owned(),
            reason: match err {
                gix::validate::path::component::Error::DotGitDir => "a snapshot never holds `.git`",
                _ => "a snapshot never holds such a name",
            },
        }),
    }
}

fn conflict(path: &[u8], reason: &str) -> StoreError {
    StoreError::RestoreConflict {
        path: path.to_str_lossy().into_owned(),
        reason: reason.to_string(),
    }
}

fn join(dir: &[u8], name: &[u8]) -> BString {
    let mut path = BString::from(dir);
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn parent(path: &[u8]) -> Option<BString> {
    path.rfind_byte(b'/')
        .map(|slash| BString::from(&path[..slash]))
}
