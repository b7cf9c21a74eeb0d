//! The run store: the only code that talks to git.
//!
//! A run is a linear chain of checkpoint commits on `refs/wfe/runs/<id>`;
//! each commit's tree is the whole state of the run (see DESIGN.md §3).
//! [`RunStore`] speaks in plain types (paths, bytes, ids, trailers) so the
//! engine can be tested against [`MemoryStore`] and never sees gix.
//! Every ref update is a compare-and-swap on the expected old tip. A tip
//! that a rollback moves away from is kept under `refs/wfe/trash/<id>/<n>`
//! (see [`RunStore::reset`]), so no checkpoint ever becomes unreachable.

#[cfg(test)]
mod contract;
mod git;
mod lock;
mod loose_ref;
mod memory;
mod message;
mod path;
mod processes;
mod run_refs;
mod secret_args;
mod summaries;
#[cfg(test)]
mod test_git;
mod workspace;

use std::fmt;
use std::path::PathBuf;

pub use git::{
    GitStore, PushStatus, REMOTES_PREFIX, RUNS_REFSPEC, RefPair, Relation, RemoteSetup, RepoInfo,
    TrashAge, WORK_PREFIX,
};
pub use lock::{LockHolder, RunLock};
pub use memory::MemoryStore;
pub use message::{Message, Trailer};
pub use processes::{AttemptRecorder, ProcessRecord, ProcessRegistry, Registered};
pub use secret_args::SecretArgs;
pub use workspace::{CodeRestore, Isolated, Merged, Skipped, SnapshotStats, WORKSPACE, Worktrees};

/// The ref namespace of runs.
pub const RUNS_PREFIX: &str = "refs/wfe/runs/";
/// The ref namespace of tips set aside by rollback and undo.
pub const TRASH_PREFIX: &str = "refs/wfe/trash/";

/// A run's id: a lowercase ULID (26 characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

impl RunId {
    /// A fresh id from the current time and randomness.
    pub fn generate() -> Self {
        RunId(ulid::Ulid::generate().to_string().to_lowercase())
    }

    /// Accepts a full 26-character id (any case); `None` if it is not a ULID.
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.to_ascii_lowercase();
        (lower.len() == 26 && ulid::Ulid::from_string(&lower).is_ok()).then_some(RunId(lower))
    }

    /// Accepts an id only as wfe spells it (lowercase), as [`RunId::parse`]
    /// would: ref names are read this way, ten thousand at a time, without
    /// a case-folded copy of each.
    pub fn parse_exact(text: &str) -> Option<Self> {
        // The ULID alphabet (Crockford's base32: no i, l, o, u).
        let digit = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'h' | b'j' | b'k' | b'm' | b'n' | b'p'..=b't' | b'v'..=b'z');
        (text.len() == 26 && text.as_bytes().iter().all(digit)).then(|| RunId(text.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as text, without a copy.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The run's ref: `refs/wfe/runs/<id>`.
    pub fn ref_name(&self) -> String {
        format!("{RUNS_PREFIX}{}", self.0)
    }

    /// Trash entry `number` of the run: `refs/wfe/trash/<id>/<number>`.
    pub fn trash_ref(&self, number: u32) -> String {
        format!("{TRASH_PREFIX}{}/{number}", self.0)
    }
}

/// Where new run ids come from: the clock and randomness, or (for tests) a
/// seed and a counter, so that ids are the same on every test run.
///
/// Seeded ids are still lowercase 26-character ULIDs. Their time part is
/// the clock's plus a second per unit of seed and a millisecond per id made,
/// so ids made by processes with successive seeds (a test harness gives each
/// process the next one) sort in the order they were made and differ in
/// their first ten characters, as real ids made apart in time do, even with
/// the clock pinned. Their 80 random bits are the seed's low 48 bits and the
/// counter, so they are unique within a process whatever the time.
#[derive(Debug, Default)]
pub struct RunIds {
    seed: Option<u64>,
    made: std::sync::atomic::AtomicU32,
}

impl RunIds {
    /// Fresh random ids ([`RunId::generate`]).
    pub fn random() -> Self {
        RunIds::default()
    }

    /// Deterministic ids from `seed`, one counter step per id.
    pub fn seeded(seed: u64) -> Self {
        RunIds {
            seed: Some(seed),
            made: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The next id; `clock` gives a seeded id its time.
    pub fn next(&self, clock: &crate::time::Clock) -> RunId {
        let Some(seed) = self.seed else {
            return RunId::generate();
        };
        let count = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let millis = clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .saturating_add(seed.saturating_mul(1000))
            .saturating_add(u64::from(count));
        let random = (u128::from(seed & 0xffff_ffff_ffff) << 32) | u128::from(count);
        RunId(
            ulid::Ulid::from_parts(millis, random)
                .to_string()
                .to_lowercase(),
        )
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checkpoint (commit) id as 40 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(pub String);

impl CheckpointId {
    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One change to a checkpoint's tree. Paths are `/`-separated and relative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create or replace the file at `path`.
    Write {
        /// Where, e.g. `phases/build/state.json`.
        path: String,
        /// The file's new content.
        bytes: Vec<u8>,
    },
    /// Remove the file or whole subtree at `path` (no error if absent).
    Remove {
        /// What to remove.
        path: String,
    },
    /// Record the repository's working tree, as `git add -A` would stage it
    /// (without touching the index), as the directory at `path` ([`WORKSPACE`]).
    ///
    /// [`GitStore`] stores the snapshot's tree there, so `git diff A B --
    /// workspace/` shows what happened to the code between two checkpoints.
    /// [`MemoryStore`] copies the files of its work tree, if it was given one.
    Snapshot {
        /// Where, normally [`WORKSPACE`].
        path: String,
        /// Secrets masked in every file the snapshot reads (a file the
        /// index already holds unchanged is in git already and not read).
        masker: crate::secret::Masker,
    },
}

impl Change {
    /// A write of `bytes` at `path`.
    pub fn write(path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Change::Write {
            path: path.into(),
            bytes: bytes.into(),
        }
    }
}

/// What a directory entry in a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A file.
    File,
    /// A directory.
    Dir,
}

/// A checkpoint as history shows it, read without opening its tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The commit.
    pub id: CheckpointId,
    /// The previous checkpoint; `None` for the first.
    pub parent: Option<CheckpointId>,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
    /// Summary line and trailers.
    pub message: Message,
}

/// A run as listing shows it: its tip commit and trailers.
#[derive(Debug, Clone, PartialEq)]
pub struct RunHead {
    /// The run.
    pub run: RunId,
    /// The run's latest checkpoint.
    pub tip: Checkpoint,
}

/// A tip set aside by [`RunStore::reset`] or [`RunStore::undo`]:
/// `refs/wfe/trash/<run>/<number>` pointing at `checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trashed {
    /// The entry's number, from 1; a later entry has a higher number.
    pub number: u32,
    /// The tip it keeps.
    pub checkpoint: CheckpointId,
}

/// What [`RunStore::undo`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undone {
    /// The trash entry restored as the run's tip (its ref is gone now).
    pub restored: Trashed,
    /// The tip undo replaced, when it had to be kept because the restored
    /// tip does not contain it (checkpoints were added after the rollback).
    pub trashed: Option<Trashed>,
}

/// A run whose ref does not lead to a readable checkpoint (a ref to a
/// missing object, to a blob, a symbolic ref): commands that span runs
/// skip it and name it, `wfe fsck` reports it, `wfe rm` removes it.
#[derive(Debug)]
pub struct BrokenRun {
    /// The run, from its ref's name.
    pub run: RunId,
    /// Why its tip cannot be read.
    pub error: StoreError,
}

/// Every run under `refs/wfe/runs/`: the readable ones and the broken ones.
#[derive(Debug, Default)]
pub struct RunList {
    /// Runs whose tip is a readable checkpoint, newest run id first.
    pub heads: Vec<RunHead>,
    /// Runs whose ref cannot be read as a checkpoint, newest run id first.
    pub broken: Vec<BrokenRun>,
}

/// A run's ref and where it points, read without opening any object.
#[derive(Debug)]
pub struct RunRef {
    /// The run, from its ref's name.
    pub run: RunId,
    /// The commit the ref names, or why it names none (a symbolic ref).
    pub tip: Result<CheckpointId>,
}

/// What [`RunStore::purge`] deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Purged {
    /// The run's own ref pointed here (`None` if it was already gone).
    pub tip: Option<CheckpointId>,
    /// Trash entries deleted.
    pub trash: Vec<Trashed>,
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No git repository at or above the path.
    #[error("not a git repository (or any parent up to the filesystem root): {path}")]
    NotARepo {
        /// Where the search started.
        path: PathBuf,
    },
    /// The repository has no commit yet, so a run has nothing to start from.
    #[error("the repository at {path} has no commits yet")]
    NoCommits {
        /// The repository's work tree or git dir.
        path: PathBuf,
    },
    /// The repository uses a ref storage gix cannot write.
    #[error(
        "the repository at {path} uses the reftable ref storage, which wfe does not support yet"
    )]
    Reftable {
        /// The repository.
        path: PathBuf,
    },
    /// No run has this id.
    #[error("no run {run}")]
    NoSuchRun {
        /// The id asked for.
        run: String,
    },
    /// A prefix matches more than one run.
    #[error("run prefix `{prefix}` is ambiguous: it matches {}", .candidates.join(", "))]
    AmbiguousRun {
        /// The prefix given.
        prefix: String,
        /// Some runs it matches.
        candidates: Vec<String>,
    },
    /// The ref moved since it was read: another writer committed first.
    #[error("run {run} changed underneath this writer (expected tip {expected}, found {found})")]
    Conflict {
        /// The run.
        run: RunId,
        /// The tip the writer expected (`none` for a new run).
        expected: String,
        /// The tip found (`none` if the ref is gone).
        found: String,
    },
    /// The run is locked by a live process.
    #[error("run {run} is locked by pid {} on {}", .holder.pid, .holder.host)]
    Locked {
        /// The run.
        run: RunId,
        /// Who holds the lock.
        holder: LockHolder,
    },
    /// Undo found nothing to restore.
    #[error("run {run} has no trashed tip to restore: nothing was rolled back")]
    NothingTrashed {
        /// The run.
        run: RunId,
    },
    /// No checkpoint (commit) has this id.
    #[error("no checkpoint {id}")]
    NoSuchCheckpoint {
        /// The id asked for.
        id: String,
    },
    /// A change names a path that cannot be stored in a checkpoint's tree.
    #[error("invalid path `{path}` in a checkpoint: {reason}")]
    InvalidPath {
        /// The path given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A checkpoint's commit or tree is not what wfe writes.
    #[error("checkpoint {id} is malformed: {reason}")]
    Malformed {
        /// The commit.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem error outside git (locks, control files).
    #[error("{action} {path}")]
    Io {
        /// What wfe was doing.
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The repository is bare: there is no working tree to snapshot or restore.
    #[error("the repository at {path} has no working tree (it is bare)")]
    NoWorkTree {
        /// The repository's git dir.
        path: PathBuf,
    },
    /// Restoring the working tree would destroy something no snapshot holds;
    /// nothing was changed.
    #[error("cannot restore the working tree: {path}: {reason}")]
    RestoreConflict {
        /// The path in the way, relative to the work tree.
        path: String,
        /// What is there and why it stops the restore.
        reason: String,
    },
    /// A remote named for sharing runs is not one of the repository's remotes.
    #[error("no remote `{remote}` in this repository (remotes: {})", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
    NoSuchRemote {
        /// The name given.
        remote: String,
        /// The repository's remotes.
        known: Vec<String>,
    },
    /// An error from git itself (gix).
    #[error("git: {message}")]
    Git {
        /// What failed, with gix's own words.
        message: String,
    },
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Storage of runs as chains of checkpoints.
///
/// Implementations must make [`RunStore::commit`] a compare-and-swap: it
/// fails with [`StoreError::Conflict`] unless the run's tip is `parent`.
pub trait RunStore: Send + Sync {
    /// The run's current tip, or `None` if the run does not exist.
    fn tip(&self, run: &RunId) -> Result<Option<CheckpointId>>;

    /// Writes a checkpoint: `parent`'s tree with `changes` applied, then
    /// moves the run's ref from `parent` to it (`None` creates the run).
    /// Costs O(changed paths): unchanged subtrees are reused.
    fn commit(
        &self,
        run: &RunId,
        parent: Option<&CheckpointId>,
        changes: &[Change],
        message: &Message,
        time: i64,
    ) -> Result<CheckpointId>;

    /// The file at `path` in a checkpoint, or `None` if there is none.
    fn read(&self, at: &CheckpointId, path: &str) -> Result<Option<Vec<u8>>>;

    /// The entries of the directory at `path` (`""` for the root), sorted by
    /// name; empty if there is no such directory.
    fn list_dir(&self, at: &CheckpointId, path: &str) -> Result<Vec<(String, EntryKind)>>;

    /// Every file below the directory at `path`, recursively, as paths
    /// relative to it (`a/b.txt`), sorted; empty if there is no such directory.
    fn list_files(&self, at: &CheckpointId, path: &str) -> Result<Vec<String>> {
        let mut files = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(rel) = dirs.pop() {
            let full = if rel.is_empty() {
                path.to_string()
            } else {
                format!("{path}/{rel}")
            };
            for (name, kind) in self.list_dir(at, &full)? {
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                match kind {
                    EntryKind::File => files.push(child),
                    EntryKind::Dir => dirs.push(child),
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// One checkpoint's metadata (no tree read).
    fn checkpoint(&self, id: &CheckpointId) -> Result<Checkpoint>;

    /// Every run: those whose tip is a readable checkpoint, and apart from
    /// them those whose ref is broken. Reads no trees. Fails only when the
    /// refs themselves cannot be listed.
    fn scan(&self) -> Result<RunList> {
        let mut heads = Vec::new();
        let broken = self.scan_each(&mut |head| heads.push(head))?;
        Ok(RunList { heads, broken })
    }

    /// [`RunStore::scan`] one run at a time: `each` gets the readable runs,
    /// newest run id first, and the broken ones are returned. A caller that
    /// keeps a little of each run (listing) need not hold every tip at once.
    fn scan_each(&self, each: &mut dyn FnMut(RunHead)) -> Result<Vec<BrokenRun>>;

    /// The ref of the run with the highest id (the newest), as
    /// [`RunStore::refs`] would list it first; none when there is no run.
    fn newest_ref(&self) -> Result<Option<RunRef>> {
        Ok(self.refs()?.into_iter().next())
    }

    /// Every run's ref with its target, newest run id first, without
    /// reading a single commit: what resolving a name and comparing tips
    /// need, at the cost of listing refs alone. (A ref to a missing object
    /// is listed with its target; [`RunStore::scan`] would call it broken.)
    fn refs(&self) -> Result<Vec<RunRef>> {
        let RunList { heads, broken } = self.scan()?;
        let mut refs: Vec<RunRef> = heads
            .into_iter()
            .map(|h| RunRef {
                run: h.run,
                tip: Ok(h.tip.id),
            })
            .chain(broken.into_iter().map(|b| RunRef {
                run: b.run,
                tip: Err(b.error),
            }))
            .collect();
        refs.sort_by(|a, b| b.run.cmp(&a.run));
        Ok(refs)
    }

    /// The readable runs with their tips, newest run id first (broken runs
    /// are left out: [`RunStore::scan`] names them). Reads no trees.
    fn runs(&self) -> Result<Vec<RunHead>> {
        Ok(self.scan()?.heads)
    }

    /// Removes a run: its ref moves from `expected` to a new trash entry
    /// `refs/wfe/trash/<run>/<n>` (one transaction; on
    /// [`StoreError::Conflict`] nothing changes). `expected` need not be a
    /// readable checkpoint, so a broken run can be removed too.
    fn remove(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Trashed>;

    /// Brings back a removed run: its highest trash entry becomes its ref
    /// again and the entry goes. Fails with [`StoreError::Conflict`] when
    /// the run's ref exists, [`StoreError::NothingTrashed`] when it has no entry.
    fn restore(&self, run: &RunId, reason: &str, time: i64) -> Result<Trashed>;

    /// Deletes the run's ref (if it points at `expected`) and every trash
    /// entry of the run. What it pointed at is left to `git gc`.
    fn purge(&self, run: &RunId, expected: Option<&CheckpointId>) -> Result<Purged>;

    /// Runs with trash entries but no ref (removed by [`RunStore::remove`]), sorted.
    fn removed(&self) -> Result<Vec<RunId>>;

    /// Moves the run's ref from `expected` to the existing checkpoint `to`
    /// (a reset, no new commit) and keeps `expected` under
    /// `refs/wfe/trash/<run>/<n>`, `n` one above the highest entry so far.
    /// Both refs change together: on [`StoreError::Conflict`] (the tip is not
    /// `expected`) neither does. `reason` goes to both reflogs.
    fn reset(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        to: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Trashed>;

    /// The run's trash entries, lowest number first.
    fn trashed(&self, run: &RunId) -> Result<Vec<Trashed>>;

    /// Restores the highest-numbered trash entry as the run's tip, moving
    /// the ref from `expected` (compare-and-swap), and removes that entry.
    ///
    /// When the restored tip contains `expected` (the usual case: nothing
    /// was committed since the rollback) nothing is lost and nothing more is
    /// kept. Otherwise `expected` goes to a new trash entry first, so a
    /// second undo swaps back. Fails with [`StoreError::NothingTrashed`]
    /// when there is no entry.
    fn undo(&self, run: &RunId, expected: &CheckpointId, reason: &str, time: i64)
    -> Result<Undone>;

    /// Whether `ancestor` is `from` or one of its parents, transitively.
    fn reaches(&self, from: &CheckpointId, ancestor: &CheckpointId) -> Result<bool> {
        let mut next = Some(from.clone());
        while let Some(id) = next {
            if &id == ancestor {
                return Ok(true);
            }
            next = self.checkpoint(&id)?.parent;
        }
        Ok(false)
    }

    /// Whether `checkpoint` is part of the run's history (its tip back to its creation).
    fn contains(&self, run: &RunId, checkpoint: &CheckpointId) -> Result<bool> {
        match self.tip(run)? {
            Some(tip) => self.reaches(&tip, checkpoint),
            None => Ok(false),
        }
    }

    /// A run's checkpoints, newest first.
    fn history(&self, run: &RunId) -> Result<Vec<Checkpoint>> {
        let mut out = Vec::new();
        let mut next = self.tip(run)?;
        while let Some(id) = next {
            let cp = self.checkpoint(&id)?;
            next = cp.parent.clone();
            out.push(cp);
        }
        Ok(out)
    }

    /// Resolves `latest`, a full id or a unique prefix to a run id.
    fn resolve(&self, name: &str) -> Result<RunId> {
        Ok(self.resolve_skipping(name)?.0)
    }

    /// [`RunStore::resolve`], also giving the broken runs `latest` passed
    /// over (newer than the run it names). A prefix or id names a broken
    /// run as well as a readable one, so it can be checked and removed.
    ///
    /// Reads no more than it must: a full id is one ref lookup, a prefix
    /// lists the refs' names, and `latest` reads the newest runs' tip
    /// commits only until one is readable.
    fn resolve_skipping(&self, name: &str) -> Result<(RunId, Vec<BrokenRun>)> {
        if let Some(run) = RunId::parse(name) {
            // A full id cannot be the prefix of another: look it up alone.
            // A ref that exists but cannot be read still names its run.
            return match self.tip(&run) {
                Ok(None) => Err(StoreError::NoSuchRun {
                    run: name.to_string(),
                }),
                Ok(Some(_)) | Err(_) => Ok((run, Vec::new())),
            };
        }
        if name == "latest"
            && let Some(RunRef { run, tip: Ok(tip) }) = self.newest_ref()?
            && self.checkpoint(&tip).is_ok()
        {
            // The newest run reads: no other ref need be listed.
            return Ok((run, Vec::new()));
        }
        let refs = self.refs()?;
        if name == "latest" {
            let none = if refs.is_empty() {
                "latest (there are no runs yet)"
            } else {
                "latest (no run is readable)"
            };
            let mut skipped = Vec::new();
            for RunRef { run, tip } in refs {
                match tip.and_then(|tip| self.checkpoint(&tip)) {
                    Ok(_) => return Ok((run, skipped)),
                    Err(error) => skipped.push(BrokenRun { run, error }),
                }
            }
            return Err(StoreError::NoSuchRun { run: none.into() });
        }
        let lower = name.to_ascii_lowercase();
        let mut hits: Vec<RunId> = refs
            .into_iter()
            .map(|r| r.run)
            .filter(|r| !lower.is_empty() && r.as_str().starts_with(&lower))
            .collect();
        match hits.len() {
            0 => Err(StoreError::NoSuchRun {
                run: name.to_string(),
            }),
            1 => Ok((hits.remove(0), Vec::new())),
            _ => {
                hits.sort();
                Err(StoreError::AmbiguousRun {
                    prefix: name.to_string(),
                    candidates: hits.iter().take(5).map(|r| r.to_string()).collect(),
                })
            }
        }
    }
}

#[cfg(test)]
mod run_id_tests {
    use super::{RunId, RunIds};
    use crate::time::Clock;

    #[test]
    fn seeded_ids_are_stable_valid_unique_and_ordered() {
        let clock = Clock::parse_fixed("2026-01-02T03:04:05Z").expect("a time");
        let ids = RunIds::seeded(7);
        let made: Vec<RunId> = (0..3).map(|_| ids.next(&clock)).collect();
        assert_eq!(
            RunIds::seeded(7).next(&clock),
            made[0],
            "the same seed makes the same ids"
        );
        for id in &made {
            assert_eq!(RunId::parse(id.as_str()).as_ref(), Some(id));
        }
        assert!(made.windows(2).all(|w| w[0] < w[1]), "{made:?}");
        let next_process = RunIds::seeded(8).next(&clock);
        assert!(made.iter().all(|id| *id < next_process), "{made:?}");
        assert!(
            made.iter()
                .all(|id| id.as_str()[..10] != next_process.as_str()[..10]),
            "{made:?} {next_process}"
        );
    }

    #[test]
    fn random_ids_differ() {
        let ids = RunIds::random();
        assert_ne!(ids.next(&Clock::system()), ids.next(&Clock::system()));
    }
}
