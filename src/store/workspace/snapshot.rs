//! Taking a snapshot: the working tree as `git add -A` would stage it,
//! written as a git tree, without touching the user's index.
//!
//! The walk merges, directory by directory, what the index tracks with what
//! the file system holds:
//!
//! - a tracked path is always included, even if an ignore rule matches it;
//!   an untracked one only if no rule does (`.gitignore` files at every
//!   level, `info/exclude`, `core.excludesFile`), and an ignored directory is
//!   not descended into except for the tracked paths inside it;
//! - a file whose stat data matches its index entry, and is not racily clean,
//!   takes the index's blob id unread; otherwise wfe's own stat cache (see
//!   [`super::stat_cache`]) may know it; only what neither knows is read and
//!   hashed, and only objects the database lacks are written;
//! - submodules keep their index entry (a gitlink) and are never entered; an
//!   untracked nested repository becomes a gitlink to its `HEAD`, as
//!   `git add` would record it; entries of a sparse checkout
//!   (`skip-worktree`) keep their index entry;
//! - the executable bit gives mode 100755, a symlink is stored as a blob of
//!   its target (120000), empty directories are not recorded.
//!
//! Two deliberate differences from `git add -A`: file contents are stored raw,
//! without clean filters (`core.autocrlf`, `text`, `filter=lfs`), because a
//! restore must give back the exact bytes; and paths git would refuse (like
//! `.GIT` or `git~1`) or special files (fifos, sockets) are left out and
//! listed in [`SnapshotStats::skipped`] instead of failing the whole snapshot.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::ops::Range;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gix::ObjectId;
use gix::bstr::{BString, ByteSlice};
use gix::index::entry::stat::Time;
use gix::index::entry::{Flags, Mode, Stage, Stat};
use gix::objs::tree::{Entry as TreeEntry, EntryKind as GitEntryKind};
use rustix::fs::{AtFlags, Dir, FileType, Mode as RawMode, OFlags, RawMode as RawModeBits};
use rustix::io::Errno;

use super::stat_cache::{CachedFile, Kept, Stamp, StatCache, is_racy};
use super::{Skipped, SnapshotStats};
use crate::store::git::OrGit;
use crate::store::{Result, StoreError};

/// Records the working tree at `work_dir` as a tree in `repo`'s object
/// database; `cache_file` is wfe's stat cache for this work tree.
pub(super) fn take(
    repo: &gix::Repository,
    work_dir: &Path,
    cache_file: &Path,
    masker: &crate::secret::Masker,
) -> Result<SnapshotStats> {
    let hash = repo.object_hash();
    let index = repo
        .try_index()
        .or_git(|| format!("reading the index {}", repo.index_path().display()))?;
    let empty_index;
    let state: &gix::index::State = match &index {
        Some(index) => index,
        None => {
            empty_index = gix::index::State::new(hash);
            &empty_index
        }
    };
    let excludes = repo
        .excludes(
            state,
            None,
            gix::worktree::stack::state::ignore::Source::WorktreeThenIdMappingIfNotSkipped,
        )
        .or_git(|| "reading the ignore rules (core.excludesFile, info/exclude)".into())?
        .detach();
    let config = repo.config_snapshot();
    let file_mode = config.boolean("core.fileMode").unwrap_or(true);
    let stat_options = repo
        .stat_options()
        .or_git(|| "reading core.trustCTime and core.checkStat".into())?;
    let reuse_index = !filters_possible(repo, state, work_dir);
    let stamp = state.timestamp();
    let index_time = Stamp {
        secs: stamp.unix_seconds(),
        nsecs: stamp.nanoseconds(),
    };

    let cache = StatCache::load(cache_file, hash);
    let shared = Shared {
        index: state,
        index_time,
        stat_options,
        reuse_index,
        file_mode,
        cache: &cache,
        masker,
        hash,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS)),
    };
    let mut walk = Walk {
        shared: &shared,
        repo: repo.clone(),
        excludes,
        kept: Kept::default(),
        stats: SnapshotStats::default(),
        packs_refreshed: false,
        buf: Vec::new(),
        rel: BString::default(),
        abs: work_dir.to_path_buf(),
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root_fd =
        rustix::fs::open(work_dir, flags, RawMode::empty()).map_err(|e| StoreError::Io {
            action: "opening the work tree",
            path: work_dir.to_path_buf(),
            source: e.into(),
        })?;
    let all = 0..state.entries().len();
    let root = walk.dir(Some(root_fd), all, Listing::Read)?;
    let tree = match root {
        Some(id) => id,
        None => walk.write_tree(Vec::new())?,
    };
    // The cache only saves time: failing to update it must not fail the snapshot.
    let _ = cache.save(cache_file, &walk.kept);
    let mut stats = walk.stats;
    stats.tree = tree.to_string();
    stats.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(stats)
}

/// A read buffer larger than this is freed after use rather than kept for
/// the rest of the walk.
const BIG_BUFFER: usize = 16 * 1024 * 1024;

/// At most this many threads walk the root's subdirectories.
const MAX_THREADS: usize = 4;

/// How a directory's own entries are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// Read the directory: untracked entries count.
    Read,
    /// Only its tracked entries count (it is ignored): look each one up.
    TrackedOnly,
    /// The directory does not exist: keep only what the index keeps
    /// without a file (sparse checkout entries).
    Missing,
}

/// What the file system holds at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fs {
    File,
    Symlink,
    Dir,
    /// A fifo, socket or device: git never adds those.
    Special,
    Missing,
}

impl Fs {
    fn of(file_type: FileType) -> Fs {
        match file_type {
            FileType::RegularFile => Fs::File,
            FileType::Symlink => Fs::Symlink,
            FileType::Directory => Fs::Dir,
            _ => Fs::Special,
        }
    }
}

/// What the index holds for one name in a directory.
#[derive(Debug, Clone)]
enum Tracked {
    None,
    /// One path's entries: one at stage 0, or up to three while conflicted.
    Path(Range<usize>),
    /// Entries below a directory of that name.
    Dir(Range<usize>),
}

/// What every walker of one snapshot reads.
struct Shared<'a> {
    index: &'a gix::index::State,
    /// When the index was written: its entries modified since are racy.
    index_time: Stamp,
    stat_options: gix::index::entry::stat::Options,
    /// False when clean filters may have made index blobs differ from the
    /// files' bytes, so the index's ids cannot be trusted for raw content.
    reuse_index: bool,
    /// `core.fileMode`: whether the executable bit on disk means anything.
    file_mode: bool,
    cache: &'a StatCache,
    /// Secrets masked in every file read. While there are any, the stat
    /// cache is not trusted: an id it kept from a snapshot without them
    /// may name the unmasked bytes.
    masker: &'a crate::secret::Masker,
    hash: gix::hash::Kind,
    /// How many threads may walk the root's subdirectories.
    threads: usize,
}

/// One walker's state. Directories are opened once and everything in them
/// is looked up relative to their descriptor (`fstatat`, `openat`), so the
/// kernel resolves one name per file instead of its whole path: that, one
/// `stat` per file, is most of the cost of a snapshot in which little
/// changed, and why the root's subdirectories are walked on several threads.
struct Walk<'a> {
    shared: &'a Shared<'a>,
    /// A handle of its own: object database handles are not shared between threads.
    repo: gix::Repository,
    excludes: gix::worktree::Stack,
    kept: Kept,
    stats: SnapshotStats,
    /// Whether this walker has looked for new packs already.
    packs_refreshed: bool,
    buf: Vec<u8>,
    /// The current path relative to the work tree, `/`-separated, no
    /// trailing slash; empty at the root.
    rel: BString,
    /// The current path on disk, for messages and nested repositories.
    abs: PathBuf,
}

impl<'a> Walk<'a> {
    /// Records the current directory (`self.rel`), open as `fd` unless it is
    /// missing, whose index entries are `range`; `None` if nothing in it is
    /// recorded.
    fn dir(
        &mut self,
        fd: Option<OwnedFd>,
        range: Range<usize>,
        listing: Listing,
    ) -> Result<Option<ObjectId>> {
        let tracked = self.tracked_children(range);
        let mut dir = match fd {
            Some(fd) => Some(Dir::new(fd).map_err(|e| self.io("listing", e.into()))?),
            None => None,
        };
        let mut on_disk: Vec<(BString, Fs)> = Vec::new();
        if listing == Listing::Read
            && let Some(dir) = dir.as_mut()
        {
            let mut unknown = Vec::new();
            for entry in dir.by_ref() {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(Errno::ACCESS) => {
                        // Like git, go on without it; keep what the index says
                        // is there, so a restore never deletes what it could not see.
                        self.skip("the directory cannot be read (permission denied)");
                        return self.keep_index_entries(&tracked);
                    }
                    Err(e) => return Err(self.io("listing", e.into())),
                };
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let fs = match entry.file_type() {
                    // The directory entry does not say on some file systems.
                    FileType::Unknown => {
                        unknown.push(on_disk.len());
                        Fs::Missing
                    }
                    file_type => Fs::of(file_type),
                };
                on_disk.push((BString::from(name), fs));
            }
            for i in unknown {
                on_disk[i].1 = lookup(dir.fd().ok(), &on_disk[i].0, &self.abs)?;
            }
            on_disk.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        let at = dir.as_ref().and_then(|dir| dir.fd().ok());

        let mut children: Vec<(BString, Fs, Tracked)> = Vec::new();
        let mut disk = on_disk.into_iter().peekable();
        let mut index = tracked.into_iter().peekable();
        loop {
            let order = match (disk.peek(), index.peek()) {
                (None, None) => break,
                (Some((d, _)), Some((i, _))) => d.cmp(i),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
            };
            let (name, fs, tracked) = match order {
                std::cmp::Ordering::Less => match disk.next() {
                    Some((name, fs)) => (name, fs, Tracked::None),
                    None => break,
                },
                std::cmp::Ordering::Equal => match (disk.next(), index.next()) {
                    (Some((name, fs)), Some((_, tracked))) => (name, fs, tracked),
                    _ => break,
                },
                std::cmp::Ordering::Greater => match index.next() {
                    Some((name, tracked)) => {
                        // Not listed: only an ignored directory is looked up name by name.
                        let fs = match (listing, at) {
                            (Listing::TrackedOnly, Some(at)) => lookup(Some(at), &name, &self.abs)?,
                            _ => Fs::Missing,
                        };
                        (name, fs, tracked)
                    }
                    None => break,
                },
            };
            if name.as_slice() != b".git" {
                children.push((name, fs, tracked));
            }
        }
        let untracked_allowed = listing == Listing::Read;
        let subdirs = children.iter().filter(|c| c.1 == Fs::Dir).count();
        let entries = if self.rel.is_empty() && self.shared.threads > 1 && subdirs > 1 {
            self.children_in_parallel(at, children, untracked_allowed)?
        } else {
            let mut entries = Vec::with_capacity(children.len());
            for (name, fs, tracked) in children {
                entries.extend(self.child(at, name, fs, tracked, untracked_allowed)?);
            }
            entries
        };
        if entries.is_empty() {
            return Ok(None);
        }
        self.write_tree(entries).map(Some)
    }

    /// The root's children: files here, subdirectories on worker threads
    /// that each take the next one until none is left.
    fn children_in_parallel(
        &mut self,
        at: Option<BorrowedFd<'_>>,
        children: Vec<(BString, Fs, Tracked)>,
        untracked_allowed: bool,
    ) -> Result<Vec<TreeEntry>> {
        let (dirs, files): (Vec<_>, Vec<_>) = children.into_iter().partition(|c| c.1 == Fs::Dir);
        let mut entries = Vec::with_capacity(files.len() + dirs.len());
        for (name, fs, tracked) in files {
            entries.extend(self.child(at, name, fs, tracked, untracked_allowed)?);
        }
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let workers: Vec<Walk<'a>> = (0..self.shared.threads.min(dirs.len()))
            .map(|_| self.fork())
            .collect();
        let (dirs, next, failed) = (&dirs, &next, &failed);
        let done = std::thread::scope(|scope| {
            let handles: Vec<_> = workers
                .into_iter()
                .map(|mut worker| {
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        while !failed.load(Ordering::Relaxed) {
                            let Some((name, fs, tracked)) =
                                dirs.get(next.fetch_add(1, Ordering::Relaxed))
                            else {
                                break;
                            };
                            match worker.child(
                                at,
                                name.clone(),
                                *fs,
                                tracked.clone(),
                                untracked_allowed,
                            ) {
                                Ok(entry) => out.extend(entry),
                                Err(err) => {
                                    failed.store(true, Ordering::Relaxed);
                                    return Err(err);
                                }
                            }
                        }
                        Ok((worker.stats, worker.kept, out))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join())
                .collect::<Vec<_>>()
        });
        for result in done {
            let (stats, kept, out) = result.map_err(|_| StoreError::Git {
                message: "a thread taking the work tree's snapshot panicked".into(),
            })??;
            self.stats.merge(stats);
            self.kept.merge(kept);
            entries.extend(out);
        }
        Ok(entries)
    }

    /// A walker for another thread, at the root.
    fn fork(&self) -> Walk<'a> {
        // Only the root forks: `rel` is empty and `abs` the work tree.
        Walk {
            shared: self.shared,
            repo: self.repo.clone(),
            excludes: self.excludes.clone(),
            kept: Kept::default(),
            stats: SnapshotStats::default(),
            packs_refreshed: false,
            buf: Vec::new(),
            rel: BString::default(),
            abs: self.abs.clone(),
        }
    }

    /// One name in the current directory, open as `at`.
    fn child(
        &mut self,
        at: Option<BorrowedFd<'_>>,
        name: BString,
        fs: Fs,
        tracked: Tracked,
        untracked_allowed: bool,
    ) -> Result<Option<TreeEntry>> {
        let parent_len = self.rel.len();
        let parent_abs_len = self.abs.as_os_str().len();
        if !self.rel.is_empty() {
            self.rel.push(b'/');
        }
        self.rel.extend_from_slice(&name);
        self.abs.push(OsStr::from_bytes(&name));
        let child = Child {
            at,
            name: name.as_ref(),
        };
        let result = self.child_here(child, fs, tracked, untracked_allowed);
        self.rel.truncate(parent_len);
        // Back to the parent by length: exact for any name, unlike `pop`.
        let mut abs = std::mem::take(&mut self.abs).into_os_string().into_vec();
        abs.truncate(parent_abs_len);
        self.abs = PathBuf::from(OsString::from_vec(abs));
        let id_and_kind = result?;
        Ok(id_and_kind.map(|(kind, oid)| TreeEntry {
            mode: kind.into(),
            filename: name,
            oid,
        }))
    }

    /// [`Walk::child`] with `self.rel` and `self.abs` naming the child.
    fn child_here(
        &mut self,
        child: Child<'_, '_>,
        fs: Fs,
        tracked: Tracked,
        untracked_allowed: bool,
    ) -> Result<Option<(GitEntryKind, ObjectId)>> {
        let index = self.shared.index;
        match tracked {
            Tracked::Path(range) => {
                let entries = &index.entries()[range];
                let first = &entries[0];
                let single = entries.len() == 1 && first.stage() == Stage::Unconflicted;
                if single && first.mode == Mode::COMMIT {
                    // A submodule: keep what the index records, never look inside.
                    return Ok(match fs {
                        Fs::Dir => Some((GitEntryKind::Commit, first.id)),
                        Fs::File | Fs::Symlink if untracked_allowed => self.untracked(child, fs)?,
                        _ => None,
                    });
                }
                if single && first.mode == Mode::DIR {
                    // A sparse index's directory entry: a whole tree left out of the checkout.
                    return Ok(Some((GitEntryKind::Tree, first.id)));
                }
                match fs {
                    Fs::File | Fs::Symlink => {
                        let reusable = single.then_some(first);
                        self.file(child, reusable, Some(first.mode))
                    }
                    Fs::Missing if single && first.flags.contains(Flags::SKIP_WORKTREE) => {
                        Ok(first
                            .mode
                            .to_tree_entry_mode()
                            .map(|mode| (mode.kind(), first.id)))
                    }
                    Fs::Dir if untracked_allowed => self.untracked(child, fs),
                    Fs::Special => {
                        self.skip("not a regular file, directory or symlink");
                        Ok(None)
                    }
                    _ => Ok(None),
                }
            }
            Tracked::Dir(range) => match fs {
                Fs::Dir => {
                    let listing = if untracked_allowed && !self.is_excluded(true)? {
                        Listing::Read
                    } else {
                        Listing::TrackedOnly
                    };
                    self.subdir(child, range, listing)
                }
                Fs::Missing => Ok(self
                    .dir(None, range, Listing::Missing)?
                    .map(|id| (GitEntryKind::Tree, id))),
                Fs::File | Fs::Symlink if untracked_allowed => self.untracked(child, fs),
                Fs::Special => {
                    self.skip("not a regular file, directory or symlink");
                    Ok(None)
                }
                _ => Ok(None),
            },
            Tracked::None if untracked_allowed => self.untracked(child, fs),
            Tracked::None => Ok(None),
        }
    }

    /// Opens the directory `child` and records it.
    fn subdir(
        &mut self,
        child: Child<'_, '_>,
        range: Range<usize>,
        listing: Listing,
    ) -> Result<Option<(GitEntryKind, ObjectId)>> {
        let Some(at) = child.at else {
            return Ok(self
                .dir(None, range, Listing::Missing)?
                .map(|id| (GitEntryKind::Tree, id)));
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let (fd, listing) = match rustix::fs::openat(at, child.name, flags, RawMode::empty()) {
            Ok(fd) => (Some(fd), listing),
            // Gone, or replaced by a file or symlink since it was listed.
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => (None, Listing::Missing),
            Err(Errno::ACCESS) => {
                self.skip("the directory cannot be read (permission denied)");
                let tracked = self.tracked_children(range);
                return Ok(self
                    .keep_index_entries(&tracked)?
                    .map(|id| (GitEntryKind::Tree, id)));
            }
            Err(e) => return Err(self.io("opening the directory", e.into())),
        };
        Ok(self
            .dir(fd, range, listing)?
            .map(|id| (GitEntryKind::Tree, id)))
    }

    /// An untracked path: included unless ignored or unstorable.
    fn untracked(
        &mut self,
        child: Child<'_, '_>,
        fs: Fs,
    ) -> Result<Option<(GitEntryKind, ObjectId)>> {
        match fs {
            Fs::Missing => Ok(None),
            Fs::Special => {
                if !self.is_excluded(false)? {
                    self.skip("not a regular file, directory or symlink");
                }
                Ok(None)
            }
            Fs::Dir => {
                if self.is_excluded(true)? || !self.valid_name(None) {
                    return Ok(None);
                }
                if let Some(at) = child.at {
                    let mut dot_git = BString::from(child.name);
                    dot_git.extend_from_slice(b"/.git");
                    if rustix::fs::statat(at, dot_git.as_slice(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
                    {
                        return Ok(self.nested_repository());
                    }
                }
                self.subdir(child, 0..0, Listing::Read)
            }
            Fs::File | Fs::Symlink => {
                if self.is_excluded(false)? {
                    return Ok(None);
                }
                let link =
                    (fs == Fs::Symlink).then_some(gix::validate::path::component::Mode::Symlink);
                if !self.valid_name(link) {
                    return Ok(None);
                }
                self.file(child, None, None)
            }
        }
    }

    /// An untracked directory holding a repository of its own: recorded as
    /// `git add` does, a gitlink to that repository's `HEAD`.
    fn nested_repository(&mut self) -> Option<(GitEntryKind, ObjectId)> {
        let head = gix::open_opts(&self.abs, gix::open::Options::isolated())
            .ok()
            .and_then(|repo| repo.head_id().ok().map(|id| id.detach()));
        match head {
            Some(id) => Some((GitEntryKind::Commit, id)),
            None => {
                self.skip("a nested git repository without a commit checked out");
                None
            }
        }
    }

    /// A file or symlink. `index` is its index entry when that entry's stat
    /// data may be reused; `index_mode` the mode the index records, which
    /// stands in for the executable bit when `core.fileMode` is false.
    fn file(
        &mut self,
        child: Child<'_, '_>,
        index: Option<&gix::index::Entry>,
        index_mode: Option<Mode>,
    ) -> Result<Option<(GitEntryKind, ObjectId)>> {
        let Some(at) = child.at else {
            return Ok(None);
        };
        let st = match rustix::fs::statat(at, child.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Deleted since the directory was listed: it is simply gone.
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.io("reading the metadata of", e.into())),
        };
        let kind = match FileType::from_raw_mode(st.st_mode as RawModeBits) {
            FileType::Symlink => GitEntryKind::Link,
            FileType::RegularFile => {
                let executable = if self.shared.file_mode {
                    st.st_mode as RawModeBits & 0o100 != 0
                } else {
                    index_mode == Some(Mode::FILE_EXECUTABLE)
                };
                if executable {
                    GitEntryKind::BlobExecutable
                } else {
                    GitEntryKind::Blob
                }
            }
            // It changed type since the directory was listed; the next snapshot sees it.
            _ => return Ok(None),
        };
        let stat = index_stat(&st);

        if let Some(entry) = index {
            let same_kind = entry.mode.to_tree_entry_mode().map(|m| m.kind()) == Some(kind);
            if self.shared.reuse_index
                && same_kind
                && !entry.flags.contains(Flags::INTENT_TO_ADD)
                && !is_racy(
                    entry.stat.mtime,
                    self.shared.index_time,
                    self.shared.stat_options.use_nsec && self.shared.stat_options.check_stat,
                )
                && entry.stat.matches(&stat, self.shared.stat_options)
            {
                self.stats.from_index += 1;
                return Ok(Some((kind, entry.id)));
            }
        }
        if let Some(id) = self
            .shared
            .masker
            .is_empty()
            .then(|| self.shared.cache.lookup(self.rel.as_bstr(), kind, &stat))
            .flatten()
        {
            // The cache's objects may have been pruned since, if no run kept them.
            if self.exists(&id) {
                self.stats.from_cache += 1;
                let file = CachedFile { kind, stat, id };
                self.kept
                    .keep(self.shared.cache, self.rel.as_bstr(), file, false);
                return Ok(Some((kind, id)));
            }
        }

        let stat = match kind {
            GitEntryKind::Link => {
                let target = match rustix::fs::readlinkat(at, child.name, Vec::new()) {
                    Ok(target) => target,
                    Err(Errno::NOENT) => return Ok(None),
                    Err(e) => return Err(self.io("reading the symlink", e.into())),
                };
                self.buf.clear();
                self.buf.extend_from_slice(target.as_bytes());
                Some(stat)
            }
            _ => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = match rustix::fs::openat(at, child.name, flags, RawMode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(None),
                    Err(e) => return Err(self.io("reading", e.into())),
                };
                // The stat that goes with the bytes read is the open file's.
                let opened = rustix::fs::fstat(&fd).ok().map(|st| index_stat(&st));
                self.buf.clear();
                std::fs::File::from(fd)
                    .read_to_end(&mut self.buf)
                    .map_err(|source| self.io("reading", source))?;
                // A file that changed while being read is recorded as read, not cached.
                opened.filter(|s| s.size == self.buf.len() as u32)
            }
        };
        // A secret never reaches git: the file is recorded masked (and not
        // cached, its id no longer being that of its bytes).
        let stat = match self.shared.masker.mask_bytes(&self.buf) {
            std::borrow::Cow::Borrowed(_) => stat,
            std::borrow::Cow::Owned(masked) => {
                self.buf = masked;
                None
            }
        };
        let id = self.write_object(gix::objs::Kind::Blob)?;
        self.stats.hashed += 1;
        if self.buf.capacity() > BIG_BUFFER {
            self.buf = Vec::new();
        }
        if let Some(stat) = stat {
            let file = CachedFile { kind, stat, id };
            self.kept
                .keep(self.shared.cache, self.rel.as_bstr(), file, true);
        }
        Ok(Some((kind, id)))
    }

    /// The index's children of the current directory, from its `range`
    /// (every entry below it), sorted by name.
    fn tracked_children(&self, range: Range<usize>) -> Vec<(BString, Tracked)> {
        let index = self.shared.index;
        let entries = index.entries();
        let prefix_len = if self.rel.is_empty() {
            0
        } else {
            self.rel.len() + 1
        };
        let mut out = Vec::new();
        let mut i = range.start;
        while i < range.end {
            let path = entries[i].path(index);
            let rest = &path[prefix_len.min(path.len())..];
            match rest.find_byte(b'/') {
                Some(slash) => {
                    let dir = &path[..prefix_len + slash + 1];
                    let len =
                        entries[i..range.end].partition_point(|e| e.path(index).starts_with(dir));
                    out.push((BString::from(&rest[..slash]), Tracked::Dir(i..i + len)));
                    i += len;
                }
                None => {
                    let len = entries[i..range.end].partition_point(|e| e.path(index) == path);
                    out.push((BString::from(rest), Tracked::Path(i..i + len.max(1))));
                    i += len.max(1);
                }
            }
        }
        // A directory sorts after names like `a-b` in the index (`a/` > `a-`).
        out.sort_by(|a, b| a.0.cmp(&b.0));
        // Only a corrupt index names a path both as a file and a directory.
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// Keeps the index's entries below the current directory as they are
    /// (for a directory that cannot be read).
    fn keep_index_entries(&mut self, tracked: &[(BString, Tracked)]) -> Result<Option<ObjectId>> {
        let index = self.shared.index;
        let mut entries = Vec::new();
        for (name, tracked) in tracked {
            let kept = match tracked {
                Tracked::None => None,
                Tracked::Path(range) => {
                    let entry = &index.entries()[range.start];
                    entry
                        .mode
                        .to_tree_entry_mode()
                        .filter(|_| entry.stage() == Stage::Unconflicted)
                        .map(|mode| (mode.kind(), entry.id))
                }
                Tracked::Dir(range) => {
                    let parent_len = self.rel.len();
                    if !self.rel.is_empty() {
                        self.rel.push(b'/');
                    }
                    self.rel.extend_from_slice(name);
                    let sub = self.tracked_children(range.clone());
                    let id = self.keep_index_entries(&sub);
                    self.rel.truncate(parent_len);
                    id?.map(|id| (GitEntryKind::Tree, id))
                }
            };
            if let Some((kind, oid)) = kept {
                entries.push(TreeEntry {
                    mode: kind.into(),
                    filename: name.clone(),
                    oid,
                });
            }
        }
        if entries.is_empty() {
            return Ok(None);
        }
        self.write_tree(entries).map(Some)
    }

    /// Whether an ignore rule excludes the current path.
    fn is_excluded(&mut self, is_dir: bool) -> Result<bool> {
        let mode = is_dir.then_some(Mode::DIR);
        let platform = self
            .excludes
            .at_entry(self.rel.as_bstr(), mode, &self.repo.objects)
            .map_err(|source| StoreError::Io {
                action: "reading the ignore rules for",
                path: self.abs.clone(),
                source,
            })?;
        Ok(platform.is_excluded())
    }

    /// Whether git could store the current path's last component; if not,
    /// it is recorded as skipped.
    fn valid_name(&mut self, mode: Option<gix::validate::path::component::Mode>) -> bool {
        let name = match self.rel.rfind_byte(b'/') {
            Some(slash) => &self.rel[slash + 1..],
            None => &self.rel[..],
        };
        match gix::validate::path::component(name.as_bstr(), mode, super::NAME_RULES) {
            Ok(_) => true,
            Err(_) => {
                self.skip("git refuses this name (it could stand for .git on some file systems)");
                false
            }
        }
    }

    fn skip(&mut self, reason: &'static str) {
        self.stats.skipped.push(Skipped {
            path: self.rel.to_str_lossy().into_owned(),
            reason,
        });
    }

    fn io(&self, action: &'static str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: self.abs.clone(),
            source,
        }
    }

    /// Hashes `self.buf` as an object of `kind` and writes it unless the
    /// database has it already.
    fn write_object(&mut self, kind: gix::objs::Kind) -> Result<ObjectId> {
        let id = gix::objs::compute_hash(self.shared.hash, kind, &self.buf)
            .or_git(|| format!("hashing {}", self.rel))?;
        if !self.exists(&id) {
            gix::objs::Write::write_buf_with_known_id(&self.repo.objects, kind, &self.buf, id)
                .or_git(|| format!("writing the snapshot of {}", self.rel))?;
            match kind {
                gix::objs::Kind::Tree => self.stats.trees_written += 1,
                _ => self.stats.blobs_written += 1,
            }
        }
        Ok(id)
    }

    /// Whether the object database has `id`. A new object always misses, and
    /// a miss normally lists the pack directory again; that is done once per
    /// snapshot (a `git gc` since the last one may have packed loose
    /// objects), after which a miss costs at most a redundant write.
    fn exists(&mut self, id: &gix::oid) -> bool {
        if self.packs_refreshed {
            return self.repo.objects.exists_without_refresh(id);
        }
        let found = gix::objs::Exists::exists(&self.repo.objects, id);
        self.packs_refreshed = !found;
        found
    }

    /// Writes one directory's tree (entries in any order).
    fn write_tree(&mut self, mut entries: Vec<TreeEntry>) -> Result<ObjectId> {
        self.stats.entries += entries.iter().filter(|e| !e.mode.is_tree()).count();
        entries.sort();
        let tree = gix::objs::Tree { entries };
        self.buf.clear();
        gix::objs::WriteTo::write_to(&tree, &mut self.buf)
            .map_err(|source| self.io("encoding the tree of", source))?;
        self.write_object(gix::objs::Kind::Tree)
    }
}

/// A name in a directory that is open as `at` (`None`: the directory is missing).
#[derive(Clone, Copy)]
struct Child<'fd, 'name> {
    at: Option<BorrowedFd<'fd>>,
    name: &'name [u8],
}

/// What is at `name` in the directory open as `at`, without following a symlink.
fn lookup(at: Option<BorrowedFd<'_>>, name: &[u8], dir: &Path) -> Result<Fs> {
    let Some(at) = at else {
        return Ok(Fs::Missing);
    };
    match rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Fs::of(FileType::from_raw_mode(st.st_mode as RawModeBits))),
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(Fs::Missing),
        Err(e) => Err(StoreError::Io {
            action: "reading the metadata of",
            path: dir.join(OsStr::from_bytes(name)),
            source: e.into(),
        }),
    }
}

/// Stat data as git's index records it: times and sizes cut to 32 bits.
#[allow(clippy::unnecessary_cast)] // The field types differ between platforms.
fn index_stat(st: &rustix::fs::Stat) -> Stat {
    Stat {
        mtime: Time {
            secs: st.st_mtime as u32,
            nsecs: st.st_mtime_nsec as u32,
        },
        ctime: Time {
            secs: st.st_ctime as u32,
            nsecs: st.st_ctime_nsec as u32,
        },
        dev: st.st_dev as u32,
        ino: st.st_ino as u32,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        size: st.st_size as u32,
    }
}

/// Whether a clean filter could make an index blob differ from the file's
/// bytes: `core.autocrlf`, or an attributes file naming a conversion. Then
/// the index's ids are not reused (wfe's own cache still is).
///
/// Attributes are not evaluated (that would need gix's attribute stack); any
/// attributes file mentioning a conversion anywhere turns reuse off, which
/// costs speed, never correctness.
fn filters_possible(repo: &gix::Repository, index: &gix::index::State, work_dir: &Path) -> bool {
    let config = repo.config_snapshot();
    let autocrlf = config
        .string("core.autocrlf")
        .is_some_and(|v| !v.eq_ignore_ascii_case(b"false"));
    if autocrlf {
        return true;
    }
    let mut files: Vec<PathBuf> = vec![
        repo.common_dir().join("info").join("attributes"),
        work_dir.join(".gitattributes"),
    ];
    match config.trusted_path("core.attributesFile") {
        Ok(Some(path)) => files.push(path),
        // Where git looks by default, found the way gix finds `ignore` there.
        _ => files.extend(gix::path::env::xdg_config("attributes", &mut |name| {
            std::env::var_os(name)
        })),
    }
    for entry in index.entries() {
        let path = entry.path(index);
        if path.ends_with(b"/.gitattributes") {
            files.push(work_dir.join(OsStr::from_bytes(path)));
        }
    }
    files.iter().any(|file| {
        std::fs::read(file).is_ok_and(|text| {
            const CONVERSIONS: [&[u8]; 6] = [
                b"text",
                b"eol",
                b"crlf",
                b"filter",
                b"ident",
                b"working-tree-encoding",
            ];
            CONVERSIONS.iter().any(|word| text.find(word).is_some())
        })
    })
}

/// Files of a work tree as plain bytes by `/`-separated path: every regular
/// file and symlink (as its target), no ignore rules, `.git` skipped, names
/// that are not UTF-8 left out. Used by [`crate::store::MemoryStore`].
pub(crate) fn plain_files(root: &Path) -> Result<HashMap<String, Vec<u8>>> {
    fn walk(dir: &Path, rel: &str, out: &mut HashMap<String, Vec<u8>>) -> Result<()> {
        let io = |action, source| StoreError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(|e| io("listing", e))? {
            let entry = entry.map_err(|e| io("listing", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name == ".git" {
                continue;
            }
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry.file_type().map_err(|e| io("listing", e))?;
            if file_type.is_dir() {
                walk(&entry.path(), &path, out)?;
            } else if file_type.is_symlink() {
                let target = std::fs::read_link(entry.path()).map_err(|e| io("reading", e))?;
                out.insert(path, target.as_os_str().as_bytes().to_vec());
            } else if file_type.is_file() {
                let bytes = std::fs::read(entry.path()).map_err(|e| io("reading", e))?;
                out.insert(path, bytes);
            }
        }
        Ok(())
    }
    let mut out = HashMap::new();
    walk(root, "", &mut out)?;
    Ok(out)
}
