//! The gix implementation of [`RunStore`].
//!
//! Objects are written straight into the object database and refs moved with
//! gix's ref transactions: the user's index, work tree, HEAD and branches are
//! never touched (only [`GitStore::init_with_empty_commit`], which creates a
//! repository, sets a branch, and [`GitStore::restore_workspace`], which
//! rewrites the work tree when asked to; see `workspace.rs`). A checkpoint
//! is built by editing its parent's tree, so its cost grows with the number
//! of changed paths, not with the size of the run. One `gix::Repository` is kept open behind a mutex, so its
//! object cache and packed-refs snapshot serve every call, and the trees of
//! each run's last checkpoint stay in memory for the next one.
//!
//! What a checkpoint costs is mostly the filesystem's: one loose object per
//! changed tree level plus the blob and the commit, and the ref's lock file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use gix::ObjectId;
use gix::bstr::{BString, ByteSlice};
use gix::lock::acquire::Fail;
use gix::objs::tree::EntryKind as GitEntryKind;
use gix::refs::transaction::{Change as RefChange, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target, TargetRef};
use gix::sec::trust::DefaultForLevel;

use super::loose_ref;
use super::summaries::{self, SummaryCache};
use super::{
    BrokenRun, Change, Checkpoint, CheckpointId, EntryKind, LockHolder, Message, Purged,
    RUNS_PREFIX, Result, RunHead, RunId, RunLock, RunRef, RunStore, StoreError, Trashed, Undone,
    path,
};

#[path = "claims.rs"]
mod claims;
#[path = "maintenance.rs"]
mod maintenance;
#[path = "pack.rs"]
mod pack;
#[path = "remote.rs"]
mod remote;
#[path = "retention.rs"]
mod retention;
#[path = "trash.rs"]
mod trash;

pub use claims::WORK_PREFIX;
pub use remote::{PushStatus, REMOTES_PREFIX, RUNS_REFSPEC, RefPair, Relation, RemoteSetup};
pub use retention::TrashAge;

/// Who signs checkpoints when the repository has no `user.name`/`user.email`.
const FALLBACK_NAME: &str = "wfe";
/// See [`FALLBACK_NAME`].
const FALLBACK_EMAIL: &str = "wfe@localhost";

/// How long to wait for another writer's lock on a run's ref. Ref updates hold
/// the lock for well under a millisecond, so this only rides out contention.
pub(super) const REF_LOCK_TIMEOUT: Duration = Duration::from_millis(200);
/// A ref lock file older than this was left by a process that died in the
/// middle of an update (a writer holds one for microseconds).
const STALE_REF_LOCK: Duration = Duration::from_secs(1);
/// How long to wait for `packed-refs.lock`: git's own default is one
/// second, but a user's `git gc` or `git pack-refs` on a loaded machine can
/// hold it longer, and a checkpoint that gives up fails its run.
pub(super) const PACKED_REFS_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Memory for recently decoded objects: parent trees are read again by the
/// next checkpoint, and listing runs reads the same tips repeatedly.
const OBJECT_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Facts about the repository that the CLI needs.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    /// The work tree's root, `None` for a bare repository.
    pub work_dir: Option<PathBuf>,
    /// The common git dir (shared by all worktrees): `<git-dir>` in DESIGN.md.
    pub common_dir: PathBuf,
    /// The commit HEAD points at, `None` in a repository without commits.
    pub head_commit: Option<String>,
    /// `user.name` and `user.email` from git config, when set.
    pub identity: Option<(String, String)>,
}

/// Runs stored as commits in a git repository, through gix.
pub struct GitStore {
    shared: Mutex<Shared>,
    info: RepoInfo,
    /// Whether checkpoint packs are fsynced (git's `core.fsync` or
    /// `core.fsyncObjectFiles` asks for object files to be).
    fsync_objects: bool,
    /// Whether a run's ref and its log are fsynced before the ref moves
    /// (git's `core.fsync` names `reference`, `committed` or `all`).
    fsync_refs: bool,
    /// When to consolidate the packs checkpoints write.
    maintenance: maintenance::Maintenance,
}

/// What every call needs, behind the store's one lock.
struct Shared {
    repo: gix::Repository,
    /// Per run, the trees of the last checkpoint this store wrote.
    recent: HashMap<RunId, Recent>,
    /// Big directories (a run's `phases/` of 1,000 entries) read lately,
    /// by tree id: reading every phase's state would otherwise inflate
    /// and scan that tree once per phase, quadratic in the run's size.
    dirs: HashMap<ObjectId, HashMap<BString, (gix::objs::tree::EntryMode, ObjectId)>>,
}

/// A directory with at least this many entries is kept in [`Shared::dirs`].
const BIG_DIR: usize = 64;
/// How many big directories [`Shared::dirs`] keeps (then it starts over).
const BIG_DIRS: usize = 32;

/// The entry `name` of tree `tree_id`: through `dirs` for a big tree,
/// else by scanning it.
fn tree_entry(
    repo: &gix::Repository,
    dirs: &mut HashMap<ObjectId, HashMap<BString, (gix::objs::tree::EntryMode, ObjectId)>>,
    tree_id: ObjectId,
    name: &[u8],
) -> Result<Option<(gix::objs::tree::EntryMode, ObjectId)>> {
    if let Some(entries) = dirs.get(&tree_id) {
        return Ok(entries.get(name.as_bstr()).copied());
    }
    let tree = repo
        .find_tree(tree_id)
        .or_git(|| format!("reading tree {tree_id}"))?;
    let decoded = tree
        .decode()
        .or_git(|| format!("decoding tree {tree_id}"))?;
    if decoded.entries.len() < BIG_DIR {
        return Ok(decoded
            .entries
            .iter()
            .find(|e| e.filename.as_bytes() == name)
            .map(|e| (e.mode, e.oid.to_owned())));
    }
    let entries: HashMap<BString, (gix::objs::tree::EntryMode, ObjectId)> = decoded
        .entries
        .iter()
        .map(|e| (e.filename.to_owned(), (e.mode, e.oid.to_owned())))
        .collect();
    let found = entries.get(name.as_bstr()).copied();
    if dirs.len() >= BIG_DIRS {
        dirs.clear();
    }
    dirs.insert(tree_id, entries);
    Ok(found)
}

/// The trees a checkpoint wrote, kept so the next checkpoint of the same run
/// edits them in memory instead of reading back and inflating the loose
/// objects just written. Ids are content hashes, so an entry can never be
/// wrong; it is only used while its commit is still the run's tip, which
/// keeps every tree it names reachable and thus on disk.
struct Recent {
    commit: ObjectId,
    tree: ObjectId,
    /// Encoded tree objects by id.
    trees: HashMap<ObjectId, Vec<u8>>,
}

/// How many runs' recent trees to keep; a runner writes one or a few runs.
const RECENT_RUNS: usize = 16;

impl fmt::Debug for GitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitStore")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl GitStore {
    /// Finds the repository containing `path` (like `git` does from a subdirectory).
    ///
    /// Honours `GIT_DIR` and `GIT_CEILING_DIRECTORIES` as git does.
    pub fn discover(path: &Path) -> Result<GitStore> {
        let options = gix::discover::upwards::Options {
            // Like git, ignore ceiling directories that are not above `path`.
            match_ceiling_dir_or_error: false,
            ..Default::default()
        };
        let trust = gix::sec::trust::Mapping {
            full: with_slots(gix::open::Options::default_for_level(gix::sec::Trust::Full)),
            reduced: with_slots(gix::open::Options::default_for_level(
                gix::sec::Trust::Reduced,
            )),
        };
        match gix::ThreadSafeRepository::discover_with_environment_overrides_opts(
            path, options, trust,
        ) {
            Ok(repo) => GitStore::from_repo(repo.into()),
            Err(err) => Err(discover_error(path, err)),
        }
    }

    /// Creates a new repository at `path` with one empty commit on `main`,
    /// leaving the work tree and index clean (used by `wfe demo`).
    pub fn init_with_empty_commit(path: &Path, time: i64) -> Result<GitStore> {
        GitStore::init_with_first_commit(path, time, false)
    }

    /// Creates a new repository at `path` whose one commit on `main` holds
    /// the files already there, with an index to match, so `git status` is
    /// clean and `git diff` shows what changes next (used by `wfe demo
    /// --template`, whose pipelines review and test diffs).
    pub fn init_committing_work_tree(path: &Path, time: i64) -> Result<GitStore> {
        GitStore::init_with_first_commit(path, time, true)
    }

    fn init_with_first_commit(path: &Path, time: i64, files: bool) -> Result<GitStore> {
        let repo = gix::init(path)
            .or_git(|| format!("creating a git repository at {}", path.display()))?;
        let tree = if files {
            let tree = GitStore::from_repo(repo.clone())?.snapshot_workspace()?;
            gix::ObjectId::from_hex(tree.as_bytes())
                .or_git(|| format!("reading the snapshot's tree id {tree}"))?
        } else {
            repo.write_object(gix::objs::Tree::empty())
                .or_git(|| "writing the empty tree".into())?
                .detach()
        };
        let signature = signature(FALLBACK_NAME, FALLBACK_EMAIL, time);
        let commit = gix::objs::Commit {
            tree,
            parents: Default::default(),
            author: signature.clone(),
            committer: signature.clone(),
            encoding: None,
            message: "initial commit\n".into(),
            extra_headers: Vec::new(),
        };
        let id = repo
            .write_object(&commit)
            .or_git(|| "writing the initial commit".into())?
            .detach();
        let head = full_name("HEAD")?;
        let main = full_name("refs/heads/main")?;
        let mut time_buf = gix::date::parse::TimeBuf::default();
        let committer = signature.to_ref(&mut time_buf);
        // HEAD first names `main` (whatever init.defaultBranch says), then the
        // commit goes through HEAD so both get the reflog entry `git commit` writes.
        let point_head = RefEdit {
            change: RefChange::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: BString::default(),
                },
                expected: PreviousValue::Any,
                new: Target::Symbolic(main),
            },
            name: head.clone(),
            deref: false,
        };
        let first_commit = RefEdit {
            change: RefChange::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "commit (initial): initial commit".into(),
                },
                expected: PreviousValue::MustNotExist,
                new: Target::Object(id),
            },
            name: head,
            deref: true,
        };
        for edit in [point_head, first_commit] {
            repo.refs
                .transaction()
                .prepare(
                    Some(edit),
                    Fail::AfterDurationWithBackoff(REF_LOCK_TIMEOUT),
                    Fail::AfterDurationWithBackoff(PACKED_REFS_LOCK_TIMEOUT),
                )
                .and_then(|tx| tx.commit(Some(committer)))
                .or_git(|| "pointing main at the initial commit".into())?;
        }
        if files {
            let mut index = repo
                .index_from_tree(&tree)
                .or_git(|| "building the index of the initial commit".into())?;
            index
                .write(Default::default())
                .or_git(|| "writing the index".into())?;
        }
        // Opened again with room for the packs runs will add (see `with_slots`).
        let reopened = gix::open_opts(
            repo.git_dir(),
            with_slots(gix::open::Options::default_for_level(gix::sec::Trust::Full)),
        )
        .or_git(|| format!("opening the new repository at {}", path.display()))?;
        GitStore::from_repo(reopened)
    }

    /// Opens the store on an already opened repository.
    fn from_repo(mut repo: gix::Repository) -> Result<GitStore> {
        let common_dir = absolute(repo.common_dir());
        let work_dir = repo.workdir().map(absolute);
        let reftable = repo
            .config_snapshot()
            .string("extensions.refStorage")
            .is_some_and(|value| value.eq_ignore_ascii_case(b"reftable"));
        if reftable || common_dir.join("reftable").is_dir() {
            return Err(StoreError::Reftable {
                path: work_dir.unwrap_or(common_dir),
            });
        }
        // Bare repositories default to core.logAllRefUpdates=false, which makes
        // gix drop even forced reflogs. Run refs must keep their history, so
        // allow reflogs in memory: every wfe ref edit asks for its log
        // explicitly, and nothing is written to the repository's config.
        if repo.refs.write_reflog == gix::refs::store::WriteReflog::Disable
            && repo.workdir().is_none()
        {
            repo.refs.write_reflog = gix::refs::store::WriteReflog::Normal;
        }
        repo.object_cache_size_if_unset(OBJECT_CACHE_BYTES);

        let config = repo.config_snapshot();
        let identity = match (config.string("user.name"), config.string("user.email")) {
            (Some(name), Some(email)) if !name.is_empty() && !email.is_empty() => Some((
                name.to_str_lossy().into_owned(),
                email.to_str_lossy().into_owned(),
            )),
            _ => None,
        };
        let fsync_objects = config.boolean("core.fsyncObjectFiles") == Some(true)
            || config.string("core.fsync").is_some_and(|value| {
                value.to_str_lossy().split(',').any(|part| {
                    matches!(
                        part.trim(),
                        "all" | "committed" | "added" | "objects" | "loose-object" | "pack"
                    )
                })
            });
        let fsync_refs = config.string("core.fsync").is_some_and(|value| {
            value
                .to_str_lossy()
                .split(',')
                .any(|part| matches!(part.trim(), "all" | "committed" | "reference"))
        });
        let auto_pack = config.boolean("wfe.autoPack") != Some(false);
        let head = repo.head().or_git(|| "reading HEAD".into())?;
        let head_commit = head.id().map(|id| id.to_string());
        drop(head);

        let info = RepoInfo {
            work_dir,
            common_dir,
            head_commit,
            identity,
        };
        Ok(GitStore {
            shared: Mutex::new(Shared {
                repo,
                recent: HashMap::new(),
                dirs: HashMap::new(),
            }),
            info,
            fsync_objects,
            fsync_refs,
            maintenance: maintenance::Maintenance::new(auto_pack),
        })
    }

    /// Facts about the repository.
    pub fn info(&self) -> &RepoInfo {
        &self.info
    }

    /// `<common-dir>/wfe`: locks, control files, scratch space, the index.
    pub fn wfe_dir(&self) -> PathBuf {
        self.info().common_dir.join("wfe")
    }

    /// Takes the run's lock for this process, or reports who holds it.
    pub fn lock(&self, run: &RunId, since: &str) -> Result<RunLock> {
        RunLock::acquire(&self.locks_dir(), run, since)
    }

    /// Who holds the run's lock now, if anyone: a live runner (or another
    /// command changing the run). A lock whose process died counts as none.
    pub fn lock_holder(&self, run: &RunId) -> Result<Option<LockHolder>> {
        RunLock::holder(&self.locks_dir(), run)
    }

    /// `<common-dir>/wfe/locks`: one lock file per run being changed.
    fn locks_dir(&self) -> PathBuf {
        self.wfe_dir().join("locks")
    }

    /// A handle on the repository of its own, for long work (workspace
    /// snapshots) that must not hold the store's lock.
    pub(super) fn repo(&self) -> gix::Repository {
        self.shared().repo.clone()
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        // Neither the repository nor the cache holds an invariant a panicking
        // caller could break (cache entries are content-addressed).
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Who signs checkpoints: the repository's identity, or wfe's own.
    pub(super) fn signature(&self, time: i64) -> gix::actor::Signature {
        match &self.info.identity {
            Some((name, email)) => signature(name, email, time),
            None => signature(FALLBACK_NAME, FALLBACK_EMAIL, time),
        }
    }
}

impl RunStore for GitStore {
    fn tip(&self, run: &RunId) -> Result<Option<CheckpointId>> {
        let shared = self.shared();
        let repo = &shared.repo;
        Ok(read_tip(repo, &run.ref_name())?.map(checkpoint_id))
    }

    fn commit(
        &self,
        run: &RunId,
        parent: Option<&CheckpointId>,
        changes: &[Change],
        message: &Message,
        time: i64,
    ) -> Result<CheckpointId> {
        path::validate_changes(changes)?;
        // Taken before the lock: a snapshot reads the whole work tree.
        let snapshot = self.snapshot_for_commit(run, parent, changes)?;
        let mut shared = self.shared();
        let Shared { repo, recent, .. } = &mut *shared;
        let repo = &*repo;
        let ref_name = run.ref_name();

        // Check the expectation before writing anything, so a stale writer
        // leaves no orphan objects behind. The ref transaction below checks
        // it again under the ref's lock, which is what makes this a CAS.
        let current = read_tip(repo, &ref_name)?;
        let matches = match (current, parent) {
            (Some(current), Some(parent)) => current.to_string().eq_ignore_ascii_case(&parent.0),
            (None, None) => true,
            _ => false,
        };
        if !matches {
            return Err(conflict(run, parent, current));
        }
        let cached = recent.remove(run).filter(|r| Some(r.commit) == current);
        let base_tree = match (&cached, current) {
            (Some(cached), _) => cached.tree,
            (None, Some(id)) => commit_tree(repo, id)?,
            (None, None) => ObjectId::empty_tree(repo.object_hash()),
        };
        let mut objects = pack::ObjectSet::new(repo.object_hash());
        let (tree, written) = write_tree(
            repo,
            &mut objects,
            base_tree,
            cached.map(|c| c.trees),
            changes,
            snapshot,
        )?;

        let signature = self.signature(time);
        let id = objects.add_object(
            &repo.objects,
            &commit_object(tree, current, &signature, message),
        )?;
        // Every object reaches the disk (one pack) before the ref names it.
        let packed = self.write_pack(repo, objects)?;

        // The ref moves as git moves a loose ref (`loose_ref.rs`): under
        // its own lock, never `packed-refs.lock`.
        let summary = message.summary.replace('\n', " ");
        let update = loose_ref::Update {
            common_dir: repo.common_dir(),
            name: &ref_name,
            old: current,
            new: id,
            signature: &signature,
            message: &summary,
            fsync: self.fsync_refs,
            lock_timeout: REF_LOCK_TIMEOUT,
        };
        let mut cleared = false;
        loop {
            let updated = update.apply(|| read_tip(repo, &ref_name));
            match updated {
                Ok(()) => {
                    if packed {
                        self.packed(repo);
                    }
                    if recent.len() >= RECENT_RUNS {
                        recent.clear();
                    }
                    recent.insert(
                        run.clone(),
                        Recent {
                            commit: id,
                            tree,
                            trees: written,
                        },
                    );
                    return Ok(checkpoint_id(id));
                }
                Err(err) => {
                    let found = read_tip(repo, &ref_name)?;
                    if found != current {
                        return Err(conflict(run, parent, found));
                    }
                    if !cleared
                        && matches!(err, loose_ref::RefUpdateError::Locked(_))
                        && clear_stale_ref_lock(repo, &ref_name)
                    {
                        cleared = true;
                        continue;
                    }
                    return Err(StoreError::Git {
                        message: format!("updating {ref_name}: {err}"),
                    });
                }
            }
        }
    }

    fn read(&self, at: &CheckpointId, path: &str) -> Result<Option<Vec<u8>>> {
        let components = path::components(path);
        let mut shared = self.shared();
        let Shared { repo, dirs, .. } = &mut *shared;
        let mut id = commit_tree(repo, parse_checkpoint(at)?)?;
        let Some((last, dirs_on_the_way)) = components.split_last() else {
            return Ok(None);
        };
        for dir in dirs_on_the_way {
            match tree_entry(repo, dirs, id, dir.as_bytes())? {
                Some((mode, tree)) if mode.is_tree() => id = tree,
                _ => return Ok(None),
            }
        }
        match tree_entry(repo, dirs, id, last.as_bytes())? {
            Some((mode, blob)) if mode.is_blob_or_symlink() => {
                let mut blob = repo
                    .find_blob(blob)
                    .or_git(|| format!("reading {path} in {at}"))?;
                Ok(Some(blob.take_data()))
            }
            _ => Ok(None),
        }
    }

    fn list_dir(&self, at: &CheckpointId, path: &str) -> Result<Vec<(String, EntryKind)>> {
        let components = path::components(path);
        let shared = self.shared();
        let repo = &shared.repo;
        let mut tree_id = commit_tree(repo, parse_checkpoint(at)?)?;
        if !components.is_empty() {
            let root = repo
                .find_tree(tree_id)
                .or_git(|| format!("reading the tree of checkpoint {at}"))?;
            match root
                .lookup_entry(components.iter().copied())
                .or_git(|| format!("looking up {path} in {at}"))?
            {
                Some(entry) if entry.mode().is_tree() => tree_id = entry.object_id(),
                _ => return Ok(Vec::new()),
            }
        }
        let tree = repo
            .find_tree(tree_id)
            .or_git(|| format!("reading directory {path} in {at}"))?;
        let decoded = tree
            .decode()
            .or_git(|| format!("decoding directory {path} in {at}"))?;
        let mut entries: Vec<(String, EntryKind)> = decoded
            .entries
            .iter()
            .filter_map(|entry| {
                let kind = if entry.mode.is_tree() {
                    EntryKind::Dir
                } else if entry.mode.is_blob_or_symlink() {
                    EntryKind::File
                } else {
                    // Submodule links have nothing wfe could read.
                    return None;
                };
                Some((entry.filename.to_str_lossy().into_owned(), kind))
            })
            .collect();
        // Git orders a directory as if its name ended in `/`; callers want plain names.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    fn checkpoint(&self, id: &CheckpointId) -> Result<Checkpoint> {
        let shared = self.shared();
        let repo = &shared.repo;
        read_checkpoint(repo, parse_checkpoint(id)?)
    }

    fn scan_each(&self, each: &mut dyn FnMut(RunHead)) -> Result<Vec<BrokenRun>> {
        let shared = self.shared();
        let repo = &shared.repo;
        let mut refs = list_run_refs(repo, &self.info().common_dir)?;
        // Newest first, as the list and the cache file give them (already
        // sorted the other way round from the files: a cheap sort).
        refs.sort_by(|a, b| b.run.cmp(&a.run));
        // Tips that have not moved since the cache was written are not
        // read again; the others are, and the cache is rewritten. Its new
        // lines are the old ones where they still hold (no copy).
        let cache = SummaryCache::new(&self.wfe_dir());
        let entries = cache.load();
        let mut cursor = entries.cursor();
        let mut lines: Vec<Cow<'_, str>> = Vec::with_capacity(refs.len());
        let mut broken = Vec::new();
        for RunRef { run, tip } in refs {
            let mut cached = None;
            let tip = tip.and_then(|tip| match cursor.take(&run, &tip) {
                Some((checkpoint, line)) => {
                    cached = Some(line);
                    Ok(checkpoint)
                }
                None => read_checkpoint(repo, parse_checkpoint(&tip)?),
            });
            match tip {
                Ok(tip) => {
                    let head = RunHead { run, tip };
                    lines.push(match cached {
                        Some(line) => Cow::Borrowed(line),
                        None => Cow::Owned(summaries::line(&head)),
                    });
                    each(head);
                }
                Err(error) => broken.push(BrokenRun { run, error }),
            }
        }
        let unchanged = lines.iter().all(|l| matches!(l, Cow::Borrowed(_)));
        if !unchanged || lines.len() != cursor.total() {
            // Derived data: failing to write it costs only speed next time.
            let _ = cache.save(&lines);
        }
        Ok(broken)
    }

    fn newest_ref(&self) -> Result<Option<RunRef>> {
        // One pass over the files, keeping only the highest id: `latest`
        // costs the same whatever the number of runs (almost).
        if let Some(newest) = super::run_refs::highest(&self.info().common_dir) {
            return Ok(newest);
        }
        Ok(self.refs()?.into_iter().next())
    }

    fn refs(&self) -> Result<Vec<RunRef>> {
        let shared = self.shared();
        let mut refs = list_run_refs(&shared.repo, &self.info().common_dir)?;
        refs.sort_by(|a, b| b.run.cmp(&a.run));
        Ok(refs)
    }

    fn remove(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Trashed> {
        self.remove_run(run, expected, reason, time)
    }

    fn restore(&self, run: &RunId, reason: &str, time: i64) -> Result<Trashed> {
        self.restore_run(run, reason, time)
    }

    fn purge(&self, run: &RunId, expected: Option<&CheckpointId>) -> Result<Purged> {
        self.purge_run(run, expected)
    }

    fn removed(&self) -> Result<Vec<RunId>> {
        self.removed_runs()
    }

    fn reset(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        to: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Trashed> {
        self.reset_run(run, expected, to, reason, time)
    }

    fn trashed(&self, run: &RunId) -> Result<Vec<Trashed>> {
        self.trashed_of(run)
    }

    fn undo(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Undone> {
        self.undo_run(run, expected, reason, time)
    }
}

/// Maps gix failures to [`StoreError::Git`], saying what wfe was doing.
pub(super) trait OrGit<T> {
    fn or_git(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + 'static> OrGit<T> for std::result::Result<T, E> {
    fn or_git(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| git_error(action(), &err))
    }
}

pub(super) fn git_error(action: String, err: &(dyn std::error::Error + 'static)) -> StoreError {
    StoreError::Git {
        message: format!("{action}: {}", describe(err)),
    }
}

/// One line with every cause, outermost first, as gix reports them.
pub(super) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut push = |text: String| {
        if !text.is_empty() && !causes.iter().any(|seen| seen.contains(&text)) {
            causes.push(text);
        }
    };
    match err.downcast_ref::<gix::Error>() {
        Some(err) => err.iter_errors().for_each(|cause| push(cause.to_string())),
        None => {
            let mut next = Some(err);
            while let Some(cause) = next {
                push(cause.to_string());
                next = cause.source();
            }
        }
    }
    causes.join(": ")
}

fn discover_error(path: &Path, err: gix::Error) -> StoreError {
    use gix::discover::upwards::Error as Upwards;
    let not_found = err.downcast_any_ref::<Upwards>().is_some_and(|e| {
        matches!(
            e,
            Upwards::NoGitRepository { .. }
                | Upwards::NoGitRepositoryWithinCeiling { .. }
                | Upwards::NoGitRepositoryWithinFs { .. }
        )
    });
    if not_found {
        return StoreError::NotARepo {
            path: path.to_path_buf(),
        };
    }
    // gix may refuse to open a reftable repository at all; say why plainly.
    if let Ok((found, _)) = gix::discover::upwards(path) {
        let (git_dir, work_dir) = found.into_repository_and_work_tree_directories();
        let common = git_dir.join("commondir");
        let common_dir = std::fs::read_to_string(&common)
            .map(|rel| git_dir.join(rel.trim()))
            .unwrap_or_else(|_| git_dir.clone());
        if common_dir.join("reftable").is_dir() {
            return StoreError::Reftable {
                path: work_dir.unwrap_or(git_dir),
            };
        }
    }
    git_error(
        format!("opening the git repository at or above {}", path.display()),
        &err,
    )
}

/// Room for the packs checkpoints add while this process runs.
///
/// gix sizes its table of packs when it opens the repository (by default
/// the packs found then, at least 32, and only 32 for a repository it does
/// not fully trust) and fails a lookup once more packs exist. A long run
/// adds a pack per checkpoint faster than a background consolidation may
/// remove them, so leave room for many; a slot is a few dozen bytes.
fn with_slots(options: gix::open::Options) -> gix::open::Options {
    options.object_store_slots(gix::odb::store::init::Slots::AsNeededByDiskState {
        multiplier: 2.0,
        minimum: OBJECT_STORE_SLOTS,
    })
}

/// See [`with_slots`].
const OBJECT_STORE_SLOTS: usize = 4096;

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn signature(name: &str, email: &str, time: i64) -> gix::actor::Signature {
    gix::actor::Signature {
        name: name.into(),
        email: email.into(),
        time: gix::date::Time::new(time, 0),
    }
}

pub(super) fn full_name(name: &str) -> Result<FullName> {
    FullName::try_from(name).or_git(|| format!("`{name}` is not a valid ref name"))
}

fn checkpoint_id(id: ObjectId) -> CheckpointId {
    CheckpointId(id.to_string())
}

/// A checkpoint id as a git object id; anything else names no checkpoint.
pub(super) fn parse_checkpoint(id: &CheckpointId) -> Result<ObjectId> {
    ObjectId::from_hex(id.0.as_bytes())
        .map_err(|_| StoreError::NoSuchCheckpoint { id: id.0.clone() })
}

fn conflict(run: &RunId, parent: Option<&CheckpointId>, found: Option<ObjectId>) -> StoreError {
    StoreError::Conflict {
        run: run.clone(),
        expected: parent.map_or_else(|| "none".to_string(), |p| p.0.clone()),
        found: found.map_or_else(|| "none".to_string(), |id| id.to_string()),
    }
}

/// The commit a ref points at, `None` if there is no such ref.
pub(super) fn read_tip(repo: &gix::Repository, ref_name: &str) -> Result<Option<ObjectId>> {
    let reference = repo
        .try_find_reference(ref_name)
        .or_git(|| format!("reading {ref_name}"))?;
    match reference {
        None => Ok(None),
        Some(reference) => match reference.target() {
            TargetRef::Object(id) => Ok(Some(id.to_owned())),
            TargetRef::Symbolic(other) => Err(StoreError::Git {
                message: format!(
                    "{ref_name} is a symbolic ref to {}; wfe writes only direct refs there",
                    other.as_bstr()
                ),
            }),
        },
    }
}

/// Every run ref with its target, in ref order, reading no object.
/// Only canonical names count (`RunId::parse` lowercases).
fn list_run_refs(repo: &gix::Repository, common_dir: &Path) -> Result<Vec<RunRef>> {
    // The files themselves in one pass when they hold only what wfe
    // writes; gix otherwise (see `run_refs`).
    if let Some(refs) = super::run_refs::read(common_dir) {
        return Ok(refs);
    }
    let platform = repo.references().or_git(|| "listing refs".into())?;
    let refs = platform
        .prefixed(RUNS_PREFIX)
        .or_git(|| format!("listing {RUNS_PREFIX}*"))?;
    let mut out = Vec::new();
    for reference in refs {
        let reference = reference.or_git(|| format!("listing {RUNS_PREFIX}*"))?;
        let name = reference.name().as_bstr().to_str_lossy();
        let Some(run) = name.strip_prefix(RUNS_PREFIX).and_then(RunId::parse) else {
            continue;
        };
        if run.as_str() != &name[RUNS_PREFIX.len()..] {
            continue;
        }
        // One unreadable ref (it can arrive with a fetch) must not hide
        // the other runs: it is set apart with why.
        let tip = match reference.target() {
            TargetRef::Object(tip) => Ok(checkpoint_id(tip.to_owned())),
            TargetRef::Symbolic(other) => Err(StoreError::Git {
                message: format!(
                    "{name} is a symbolic ref to {}; wfe writes only direct refs there",
                    other.as_bstr()
                ),
            }),
        };
        out.push(RunRef { run, tip });
    }
    Ok(out)
}

/// Finds the commit `id`, or says there is no such checkpoint.
fn find_commit(repo: &gix::Repository, id: ObjectId) -> Result<gix::Commit<'_>> {
    let object = repo
        .try_find_object(id)
        .or_git(|| format!("reading checkpoint {id}"))?;
    match object {
        None => Err(StoreError::NoSuchCheckpoint { id: id.to_string() }),
        Some(object) if object.kind == gix::objs::Kind::Commit => Ok(object.into_commit()),
        Some(object) => Err(StoreError::Malformed {
            id: id.to_string(),
            reason: format!("it is a {}, not a commit", object.kind),
        }),
    }
}

/// Writes a commit object (no ref moves): `tree` with at most one parent,
/// signed by `signature` as author and committer.
pub(super) fn write_commit(
    repo: &gix::Repository,
    tree: ObjectId,
    parent: Option<ObjectId>,
    signature: &gix::actor::Signature,
    message: &Message,
) -> std::result::Result<ObjectId, gix::Error> {
    Ok(repo
        .write_object(commit_object(tree, parent, signature, message))?
        .detach())
}

/// A checkpoint's commit object: `tree` with at most one parent, signed by
/// `signature` as author and committer.
fn commit_object(
    tree: ObjectId,
    parent: Option<ObjectId>,
    signature: &gix::actor::Signature,
    message: &Message,
) -> gix::objs::Commit {
    gix::objs::Commit {
        tree,
        parents: parent.into_iter().collect(),
        author: signature.clone(),
        committer: signature.clone(),
        encoding: None,
        message: message.render().into(),
        extra_headers: Vec::new(),
    }
}

pub(super) fn commit_tree(repo: &gix::Repository, id: ObjectId) -> Result<ObjectId> {
    let commit = find_commit(repo, id)?;
    let tree = commit.tree_id().map_err(|err| StoreError::Malformed {
        id: id.to_string(),
        reason: describe(&err),
    })?;
    Ok(tree.detach())
}

fn read_checkpoint(repo: &gix::Repository, id: ObjectId) -> Result<Checkpoint> {
    let commit = find_commit(repo, id)?;
    let malformed = |err: gix::Error| StoreError::Malformed {
        id: id.to_string(),
        reason: describe(&err),
    };
    let decoded = commit.decode().map_err(malformed)?;
    let time = decoded.time().map_err(malformed)?.seconds;
    let parent = decoded.parents().next().map(checkpoint_id);
    let message = Message::parse(&decoded.message.to_str_lossy());
    Ok(Checkpoint {
        id: checkpoint_id(id),
        parent,
        time,
        message,
    })
}

/// Writes `base` with `changes` applied and returns the new root tree, with
/// every tree object written (to edit the next checkpoint from memory).
/// `snapshot` is the work tree's tree for [`Change::Snapshot`], already written.
///
/// Only trees on the paths of changes are read and rewritten; every other
/// subtree keeps its id. Trees in `known` (the run's previous checkpoint)
/// are not read from disk. Names were validated by [`path::validate`],
/// which is why gix's plumbing editor (no existence check of every entry of
/// every changed directory) is used rather than the validating one.
fn write_tree<'a>(
    repo: &gix::Repository,
    objects: &mut pack::ObjectSet<'a>,
    base: ObjectId,
    known: Option<HashMap<ObjectId, Vec<u8>>>,
    changes: &'a [Change],
    snapshot: Option<ObjectId>,
) -> Result<(ObjectId, HashMap<ObjectId, Vec<u8>>)> {
    let known = known.unwrap_or_default();
    let find = KnownFirst {
        known: &known,
        objects: &repo.objects,
    };
    let root: gix::objs::Tree = if base.is_empty_tree() {
        gix::objs::Tree::empty()
    } else {
        let mut buf = Vec::new();
        let tree = gix::objs::FindExt::find_tree(&find, &base, &mut buf)
            .or_git(|| format!("reading tree {base}"))?;
        tree.into()
    };
    let mut editor = gix::objs::tree::Editor::new(root, &find, repo.object_hash());
    for change in net_changes(changes) {
        match change {
            Change::Write { path, bytes } => {
                let blob = objects.add(&repo.objects, gix::objs::Kind::Blob, &bytes[..])?;
                editor
                    .upsert(path.split('/'), GitEntryKind::Blob, blob)
                    .or_git(|| format!("adding {path} to the tree"))?;
            }
            Change::Remove { path } => {
                editor
                    .remove(path.split('/'))
                    .or_git(|| format!("removing {path} from the tree"))?;
            }
            Change::Snapshot { path, .. } => {
                let tree = snapshot.ok_or_else(|| StoreError::Git {
                    message: format!("no snapshot of the work tree was taken for {path}"),
                })?;
                editor
                    .upsert(path.split('/'), GitEntryKind::Tree, tree)
                    .or_git(|| format!("adding the work tree's snapshot at {path}"))?;
            }
        }
    }
    let mut written = HashMap::new();
    let tree = editor.write(|tree| -> std::result::Result<ObjectId, StoreError> {
        let mut encoded = Vec::new();
        gix::objs::WriteTo::write_to(tree, &mut encoded).or_git(|| "encoding a tree".into())?;
        let id = objects.add(&repo.objects, gix::objs::Kind::Tree, encoded.clone())?;
        written.insert(id, encoded);
        Ok(id)
    })?;
    if tree.is_empty_tree() {
        // The editor returns the well-known empty tree id without writing it;
        // a commit must not point at an object git cannot find.
        objects.add_object(&repo.objects, &gix::objs::Tree::empty())?;
    }
    Ok((tree, written))
}

/// Looks objects up in `known` first, then in the object database.
struct KnownFirst<'a> {
    known: &'a HashMap<ObjectId, Vec<u8>>,
    objects: &'a gix::OdbHandle,
}

impl gix::objs::Find for KnownFirst<'_> {
    fn try_find<'a>(
        &self,
        id: &gix::oid,
        buffer: &'a mut Vec<u8>,
    ) -> gix::Result<Option<gix::objs::Data<'a>>> {
        match self.known.get(id) {
            Some(encoded) => {
                buffer.clear();
                buffer.extend_from_slice(encoded);
                Ok(Some(gix::objs::Data {
                    kind: gix::objs::Kind::Tree,
                    object_hash: id.kind(),
                    data: buffer,
                }))
            }
            None => self.objects.try_find(id, buffer),
        }
    }
}

/// The changes that matter, in order: a change to a path drops every earlier
/// change at or below it, since it overwrites or removes their result.
///
/// Beyond saving work, this keeps gix's editor correct: it caches every
/// subtree it has loaded, and a subtree removed and then re-created in the
/// same edit would come back with its old entries.
fn net_changes(changes: &[Change]) -> Vec<&Change> {
    let mut kept: Vec<&Change> = Vec::with_capacity(changes.len());
    for change in changes {
        let path = change_path(change);
        kept.retain(|earlier| !is_at_or_below(change_path(earlier), path));
        kept.push(change);
    }
    kept
}

fn change_path(change: &Change) -> &str {
    match change {
        Change::Write { path, .. } | Change::Remove { path } | Change::Snapshot { path, .. } => {
            path
        }
    }
}

fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl GitStore {
    /// Writes a checkpoint's new objects as one pack in `repo`; whether
    /// there was anything to write. Call [`Self::packed`] once the ref that
    /// names them has moved.
    fn write_pack(&self, repo: &gix::Repository, objects: pack::ObjectSet<'_>) -> Result<bool> {
        let pack_dir = repo.objects.store_ref().path().join("pack");
        let packed = objects
            .write(&pack_dir, self.fsync_objects)
            .map_err(|source| StoreError::Io {
                action: "writing a checkpoint's pack in",
                path: pack_dir.clone(),
                source,
            })?;
        Ok(packed.is_some())
    }

    /// Counts a pack written, starting a background consolidation when
    /// they pile up (`maintenance.rs`).
    fn packed(&self, repo: &gix::Repository) {
        self.maintenance
            .packed(&self.info.common_dir, repo.objects.store_ref().path());
    }
}

#[cfg(test)]
impl GitStore {
    /// Opens the repository at `path` seeing only its own config, so tests
    /// don't depend on the user's global git settings.
    pub(crate) fn open_isolated(path: &Path) -> Result<GitStore> {
        let repo = gix::open_opts(path, with_slots(gix::open::Options::isolated()))
            .or_git(|| format!("opening {}", path.display()))?;
        GitStore::from_repo(repo)
    }
}

/// Removes the lock file of `ref_name` if a dead writer left it (kill -9
/// between locking and renaming); waits until it is old enough to be sure.
/// Returns true when updating the ref again is worth it.
fn clear_stale_ref_lock(repo: &gix::Repository, ref_name: &str) -> bool {
    let path = repo.common_dir().join(format!("{ref_name}.lock"));
    let Some(age) = lock_age(&path) else {
        // Gone already: its writer finished; try again.
        return true;
    };
    if age < STALE_REF_LOCK {
        std::thread::sleep(STALE_REF_LOCK - age);
        if !path.exists() {
            return true;
        }
    }
    std::fs::remove_file(&path).is_ok()
}

/// How long ago the lock file at `path` was written (zero if its time
/// cannot be read); none when there is no such file.
fn lock_age(path: &Path) -> Option<Duration> {
    let meta = std::fs::metadata(path).ok()?;
    Some(
        meta.modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .unwrap_or_default(),
    )
}

/// Removes the lock files of `names` older than [`STALE_REF_LOCK`], and a
/// `packed-refs.lock` older than [`PACKED_REFS_LOCK_TIMEOUT`] (git holds
/// it while it rewrites the file, which never takes that long); whether
/// any was removed.
pub(super) fn clear_stale_locks(common_dir: &Path, names: &[String]) -> bool {
    let stale = |path: &Path, older_than: Duration| {
        lock_age(path).is_some_and(|age| age >= older_than) && std::fs::remove_file(path).is_ok()
    };
    let mut cleared = false;
    for name in names {
        cleared |= stale(&common_dir.join(format!("{name}.lock")), STALE_REF_LOCK);
    }
    cleared |= stale(
        &common_dir.join("packed-refs.lock"),
        PACKED_REFS_LOCK_TIMEOUT,
    );
    cleared
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::store::contract::{self, message, run_id};
    use crate::store::test_git::{git, git_command};

    /// A repository with one commit on main, a local identity, and an untracked file.
    fn user_repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        git(path, &["init", "-q", "-b", "main"]);
        git(path, &["config", "user.name", "Repo User"]);
        git(path, &["config", "user.email", "user@example.com"]);
        std::fs::write(path.join("README"), "hello\n").expect("write README");
        git(path, &["add", "README"]);
        git(path, &["commit", "-q", "-m", "first"]);
        std::fs::write(path.join("untracked.txt"), "mine\n").expect("write untracked");
        dir
    }

    /// The user-visible state wfe must never change.
    fn user_state(path: &Path) -> String {
        [
            git(path, &["status", "--porcelain"]),
            git(path, &["symbolic-ref", "HEAD"]),
            git(path, &["rev-parse", "HEAD"]),
            git(path, &["for-each-ref", "refs/heads", "refs/tags"]),
        ]
        .concat()
    }

    #[test]
    fn git_store_meets_the_contract() {
        let dirs = RefCell::new(Vec::new());
        contract::check_all(&|| {
            let dir = user_repo();
            let store = GitStore::open_isolated(dir.path()).expect("open");
            dirs.borrow_mut().push(dir);
            Box::new(store)
        });
        for dir in dirs.borrow().iter() {
            git(dir.path(), &["fsck", "--strict", "--no-progress"]);
        }
    }

    #[test]
    fn checkpoints_are_plain_git_history() {
        let dir = user_repo();
        let path = dir.path();
        let before = user_state(path);
        let store = GitStore::open_isolated(path).expect("open");
        let run = run_id("1");
        let refname = run.ref_name();

        let c1 = store
            .commit(
                &run,
                None,
                &[Change::write("run.json", "{\"id\": 1}\n")],
                &message(&run, "wfe: run started"),
                1_700_000_100,
            )
            .expect("c1");
        let c2 = store
            .commit(
                &run,
                Some(&c1),
                &[Change::write(
                    "phases/a/state.json",
                    "{\"status\": \"running\"}\n",
                )],
                &message(&run, "wfe: a started"),
                1_700_000_200,
            )
            .expect("c2");
        let msg = message(&run, "wfe: a completed (attempt 1)")
            .trailer(crate::store::Trailer::Phase, "a");
        let c3 = store
            .commit(
                &run,
                Some(&c2),
                &[Change::write(
                    "phases/a/state.json",
                    "{\"status\": \"completed\"}\n",
                )],
                &msg,
                1_700_000_300,
            )
            .expect("c3");

        assert_eq!(git(path, &["rev-parse", &refname]).trim(), c3.0);
        let log = git(path, &["log", "--format=%B", &refname]);
        assert!(log.starts_with(&msg.render()), "{log}");
        assert!(log.contains("wfe: a started\n\nWfe-Run: "), "{log}");
        assert!(
            log.contains(&format!("Wfe-Run: {run}\nWfe-Event: test\nWfe-Phase: a\n")),
            "{log}"
        );
        assert_eq!(git(path, &["rev-list", "--count", &refname]).trim(), "3");
        assert_eq!(
            git(path, &["show", &format!("{refname}:phases/a/state.json")]),
            "{\"status\": \"completed\"}\n"
        );
        assert_eq!(
            git(path, &["show", &format!("{}:phases/a/state.json", c2.0)]),
            "{\"status\": \"running\"}\n"
        );
        assert_eq!(
            git(
                path,
                &[
                    "log",
                    "-1",
                    "--format=%an <%ae> %at|%cn <%ce> %ct",
                    &refname
                ]
            )
            .trim(),
            "Repo User <user@example.com> 1700000300|Repo User <user@example.com> 1700000300"
        );

        let reflog = git(path, &["reflog", "show", "--format=%gs", &refname]);
        assert_eq!(
            reflog.lines().collect::<Vec<_>>(),
            vec![
                "wfe: a completed (attempt 1)",
                "wfe: a started",
                "wfe: run started"
            ]
        );

        git(path, &["fsck", "--strict", "--no-progress"]);
        assert_eq!(
            user_state(path),
            before,
            "the user's index, work tree and branches are untouched"
        );
        assert!(!path.join(".git/index.lock").exists());
    }

    #[test]
    fn unchanged_subtrees_keep_their_ids() {
        let dir = user_repo();
        let path = dir.path();
        let store = GitStore::open_isolated(path).expect("open");
        let run = run_id("2");
        let refname = run.ref_name();
        let c1 = store
            .commit(
                &run,
                None,
                &[
                    Change::write("phases/x/state.json", "x"),
                    Change::write("phases/x/log.jsonl", "l"),
                    Change::write("phases/y/state.json", "y"),
                ],
                &message(&run, "one"),
                1,
            )
            .expect("c1");
        let x_before = git(path, &["rev-parse", &format!("{refname}:phases/x")]);
        let y_before = git(path, &["rev-parse", &format!("{refname}:phases/y")]);
        store
            .commit(
                &run,
                Some(&c1),
                &[Change::write("phases/y/artifacts/out.json", "{}")],
                &message(&run, "two"),
                2,
            )
            .expect("c2");
        assert_eq!(
            git(path, &["rev-parse", &format!("{refname}:phases/x")]),
            x_before
        );
        assert_ne!(
            git(path, &["rev-parse", &format!("{refname}:phases/y")]),
            y_before
        );
        git(path, &["fsck", "--strict", "--no-progress"]);
    }

    #[test]
    fn concurrent_writers_never_lose_a_checkpoint() {
        let dir = user_repo();
        let store = GitStore::open_isolated(dir.path()).expect("open");
        let run = run_id("3");
        store
            .commit(&run, None, &[], &message(&run, "start"), 1)
            .expect("create");
        let wins = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let (store, run, wins) = (&store, &run, &wins);
                scope.spawn(move || {
                    for n in 0..10 {
                        // Re-read the tip and retry on conflict, as the engine's single writer would.
                        loop {
                            let tip = store.tip(run).expect("tip");
                            let change = Change::write(format!("w{writer}/{n}"), "x");
                            match store.commit(
                                run,
                                tip.as_ref(),
                                &[change],
                                &message(run, "step"),
                                2,
                            ) {
                                Ok(_) => {
                                    wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    break;
                                }
                                Err(StoreError::Conflict { .. }) => continue,
                                Err(other) => panic!("unexpected error: {other}"),
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(wins.into_inner(), 40);
        assert_eq!(store.history(&run).expect("history").len(), 41);
        let tip = store.tip(&run).expect("tip").expect("exists");
        for writer in 0..4 {
            assert_eq!(
                store
                    .list_dir(&tip, &format!("w{writer}"))
                    .expect("list")
                    .len(),
                10
            );
        }
        // A second store on the same repository (another process) sees the same tip and loses a stale CAS.
        let other = GitStore::open_isolated(dir.path()).expect("open again");
        assert_eq!(other.tip(&run).expect("tip"), Some(tip.clone()));
        let stale = store.history(&run).expect("history")[1].id.clone();
        assert!(matches!(
            other.commit(&run, Some(&stale), &[], &message(&run, "x"), 3),
            Err(StoreError::Conflict { .. })
        ));
        git(dir.path(), &["fsck", "--strict", "--no-progress"]);
    }

    #[test]
    fn runs_survive_pack_refs_and_gc() {
        let dir = user_repo();
        let path = dir.path();
        let store = GitStore::open_isolated(path).expect("open");
        let ids = [run_id("a1"), run_id("a2"), run_id("b3")];
        let mut tips = Vec::new();
        for run in &ids {
            tips.push(
                store
                    .commit(
                        run,
                        None,
                        &[Change::write("run.json", run.as_str())],
                        &message(run, "start"),
                        1,
                    )
                    .expect("create"),
            );
        }
        // Not a run: ignored by listing.
        git(path, &["update-ref", "refs/wfe/runs/not-a-run", "HEAD"]);
        git(path, &["update-ref", "refs/wfe/trash/x/1", "HEAD"]);

        git(path, &["pack-refs", "--all"]);
        assert!(
            !path.join(".git").join(ids[0].ref_name()).exists(),
            "the ref is packed now"
        );
        let listed: Vec<_> = store
            .runs()
            .expect("runs")
            .into_iter()
            .map(|h| h.run)
            .collect();
        assert_eq!(listed, vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]);
        assert_eq!(store.resolve("latest").expect("latest"), ids[2]);
        assert!(matches!(
            store.resolve(&ids[0].as_str()[..25]),
            Err(StoreError::AmbiguousRun { .. })
        ));
        assert_eq!(store.tip(&ids[0]).expect("tip"), Some(tips[0].clone()));

        // CAS against a packed ref writes a loose one that shadows it.
        let c2 = store
            .commit(
                &ids[0],
                Some(&tips[0]),
                &[Change::write("phases/a/state.json", "1")],
                &message(&ids[0], "two"),
                2,
            )
            .expect("advance");
        assert!(matches!(
            store.commit(&ids[0], Some(&tips[0]), &[], &message(&ids[0], "stale"), 3),
            Err(StoreError::Conflict { .. })
        ));

        git(path, &["gc", "--prune=now", "--quiet"]);
        assert_eq!(store.tip(&ids[0]).expect("tip"), Some(c2.clone()));
        assert_eq!(
            store.read(&c2, "phases/a/state.json").expect("read"),
            Some(b"1".to_vec())
        );
        assert_eq!(store.history(&ids[0]).expect("history").len(), 2);
        let c3 = store
            .commit(
                &ids[0],
                Some(&c2),
                &[Change::write("phases/b/state.json", "2")],
                &message(&ids[0], "three"),
                4,
            )
            .expect("after gc");
        assert_eq!(
            store.read(&c3, "phases/a/state.json").expect("read"),
            Some(b"1".to_vec())
        );
        let fresh = GitStore::open_isolated(path).expect("reopen");
        assert_eq!(fresh.runs().expect("runs").len(), 3);
        assert_eq!(
            fresh.resolve(&ids[2].as_str()[..25]).expect("prefix"),
            ids[2]
        );
        git(path, &["fsck", "--strict", "--no-progress"]);
    }

    #[test]
    fn discover_finds_the_repository_from_a_subdirectory() {
        let dir = user_repo();
        let sub = dir.path().join("deep/er");
        std::fs::create_dir_all(&sub).expect("mkdir");
        let store = GitStore::discover(&sub).expect("discover");
        let info = store.info();
        let root = dir.path().canonicalize().expect("canonical");
        assert_eq!(
            info.work_dir
                .as_ref()
                .map(|p| p.canonicalize().expect("canonical")),
            Some(root.clone())
        );
        assert_eq!(
            info.common_dir.canonicalize().expect("canonical"),
            root.join(".git")
        );
        assert_eq!(
            info.head_commit.as_deref(),
            Some(git(dir.path(), &["rev-parse", "HEAD"]).trim())
        );
        assert_eq!(
            info.identity,
            Some(("Repo User".to_string(), "user@example.com".to_string()))
        );
        assert!(store.wfe_dir().ends_with(".git/wfe"));
    }

    #[test]
    fn discover_outside_a_repository_is_not_a_repo() {
        let dir = tempfile::tempdir().expect("tempdir");
        match GitStore::discover(dir.path()) {
            Err(StoreError::NotARepo { path }) => assert_eq!(path, dir.path()),
            other => panic!("expected NotARepo, got {other:?}"),
        }
    }

    #[test]
    fn a_repository_without_commits_has_no_head_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let store = GitStore::open_isolated(dir.path()).expect("open");
        assert_eq!(store.info().head_commit, None);
        assert_eq!(store.info().identity, None);
        // Runs still work, signed by wfe itself.
        let run = run_id("4");
        store
            .commit(
                &run,
                None,
                &[Change::write("run.json", "{}")],
                &message(&run, "start"),
                42,
            )
            .expect("commit");
        assert_eq!(
            git(
                dir.path(),
                &["log", "-1", "--format=%an <%ae> %ct", &run.ref_name()]
            )
            .trim(),
            "wfe <wfe@localhost> 42"
        );
        assert_eq!(git(dir.path(), &["status", "--porcelain"]), "");
    }

    #[test]
    fn a_linked_worktree_shares_the_runs() {
        let dir = user_repo();
        let main = GitStore::open_isolated(dir.path()).expect("open main");
        let run = run_id("5");
        let c1 = main
            .commit(
                &run,
                None,
                &[Change::write("run.json", "{}")],
                &message(&run, "start"),
                1,
            )
            .expect("commit");

        let linked = dir.path().join("linked");
        git(
            dir.path(),
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                "side",
                linked.to_str().expect("utf-8 path"),
            ],
        );
        let side = GitStore::discover(&linked).expect("discover in the worktree");
        assert_eq!(
            side.info().common_dir.canonicalize().expect("canonical"),
            main.info().common_dir.canonicalize().expect("canonical")
        );
        assert_eq!(
            side.info()
                .work_dir
                .as_ref()
                .map(|p| p.canonicalize().expect("canonical")),
            Some(linked.canonicalize().expect("canonical"))
        );
        assert_eq!(side.tip(&run).expect("tip"), Some(c1.clone()));
        let c2 = side
            .commit(
                &run,
                Some(&c1),
                &[Change::write("a", "b")],
                &message(&run, "from the worktree"),
                2,
            )
            .expect("commit");
        assert_eq!(main.tip(&run).expect("tip"), Some(c2));
        assert_eq!(main.runs().expect("runs").len(), 1);
    }

    #[test]
    fn a_bare_repository_keeps_run_reflogs() {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "--bare"]);
        let store = GitStore::open_isolated(dir.path()).expect("open bare");
        assert_eq!(store.info().work_dir, None);
        let run = run_id("6");
        let c1 = store
            .commit(&run, None, &[], &message(&run, "start"), 1)
            .expect("commit");
        store
            .commit(&run, Some(&c1), &[], &message(&run, "next"), 2)
            .expect("commit");
        let reflog = git(
            dir.path(),
            &["reflog", "show", "--format=%gs", &run.ref_name()],
        );
        assert_eq!(reflog.lines().collect::<Vec<_>>(), vec!["next", "start"]);
        let config = git_command(dir.path(), &["config", "--get", "core.logAllRefUpdates"])
            .output()
            .expect("run git");
        assert_eq!(
            config.status.code(),
            Some(1),
            "the repository's config is untouched"
        );
    }

    #[test]
    fn a_reftable_repository_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let init = git_command(dir.path(), &["init", "-q", "--ref-format=reftable"])
            .output()
            .expect("run git");
        if !init.status.success() {
            eprintln!("skipped: this git (older than 2.45) cannot create a reftable repository");
            return;
        }
        assert!(matches!(
            GitStore::open_isolated(dir.path()),
            Err(StoreError::Reftable { .. })
        ));
        assert!(matches!(
            GitStore::discover(dir.path()),
            Err(StoreError::Reftable { .. })
        ));
    }

    #[test]
    fn init_committing_work_tree_commits_the_files_with_a_matching_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("demo");
        std::fs::create_dir_all(path.join("src")).expect("mkdir");
        std::fs::write(path.join("src/a.py"), "print(1)\n").expect("write");
        std::fs::write(path.join("README.md"), "hi\n").expect("write");
        GitStore::init_committing_work_tree(&path, 1_700_000_000).expect("init");
        assert_eq!(git(&path, &["status", "--porcelain"]), "");
        assert_eq!(
            git(&path, &["ls-tree", "-r", "--name-only", "HEAD"]),
            "README.md\nsrc/a.py\n"
        );
        // An edit shows as a diff against the commit.
        std::fs::write(path.join("src/a.py"), "print(2)\n").expect("write");
        assert!(git(&path, &["diff", "HEAD"]).contains("+print(2)"));
        git(&path, &["fsck", "--strict", "--no-progress"]);
    }

    #[test]
    fn init_with_empty_commit_leaves_a_clean_repository() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("demo");
        let store = GitStore::init_with_empty_commit(&path, 1_700_000_000).expect("init");
        assert_eq!(git(&path, &["status", "--porcelain"]), "");
        assert!(git(&path, &["status"]).contains("nothing to commit"));
        assert_eq!(
            git(&path, &["log", "--format=%s|%an <%ae> %at"]),
            "initial commit|wfe <wfe@localhost> 1700000000\n"
        );
        assert_eq!(
            git(&path, &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/main"
        );
        assert_eq!(git(&path, &["ls-tree", "HEAD"]), "");
        let head = git(&path, &["rev-parse", "HEAD"]);
        assert_eq!(store.info().head_commit.as_deref(), Some(head.trim()));
        git(&path, &["fsck", "--strict", "--no-progress"]);

        let run = run_id("7");
        store
            .commit(
                &run,
                None,
                &[Change::write("run.json", "{}")],
                &message(&run, "start"),
                1,
            )
            .expect("a run");
        assert_eq!(git(&path, &["status", "--porcelain"]), "");
        assert!(matches!(
            GitStore::init_with_empty_commit(&path, 1),
            Err(StoreError::Git { .. })
        ));
    }

    #[test]
    fn errors_say_what_was_being_done_and_stale_ref_locks_are_cleared() {
        let dir = user_repo();
        let store = GitStore::open_isolated(dir.path()).expect("open");
        let blob = git(dir.path(), &["rev-parse", "HEAD:README"]);
        match store.checkpoint(&CheckpointId(blob.trim().to_string())) {
            Err(StoreError::Malformed { reason, .. }) => {
                assert!(reason.contains("blob"), "{reason}")
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
        // A lock left by a writer killed mid-update (kill -9) would block the
        // ref for good; once it is clearly stale the store removes it.
        let run = run_id("8");
        let c1 = store
            .commit(&run, None, &[], &message(&run, "start"), 1)
            .expect("commit");
        let lock = dir
            .path()
            .join(".git")
            .join(format!("{}.lock", run.ref_name()));
        std::fs::write(&lock, "").expect("plant a ref lock");
        let c2 = store
            .commit(
                &run,
                Some(&c1),
                &[],
                &message(&run, "after the stale lock"),
                2,
            )
            .expect("a stale ref lock is cleared");
        assert!(!lock.exists());
        assert_eq!(store.tip(&run).expect("tip"), Some(c2));
    }

    #[test]
    fn ref_transactions_clear_locks_a_killed_writer_left_but_never_a_fresh_one() {
        let dir = user_repo();
        let path = dir.path();
        let store = GitStore::open_isolated(path).expect("open");
        let run = run_id("9");
        let c1 = store
            .commit(&run, None, &[], &message(&run, "start"), 1)
            .expect("commit");
        // With a packed-refs file, gix takes packed-refs.lock for updates.
        git(path, &["pack-refs", "--all"]);
        let git_dir = path.join(".git");
        let ref_lock = git_dir.join(format!("{}.lock", run.ref_name()));
        let packed_lock = git_dir.join("packed-refs.lock");
        // A fresh lock is someone's: the update fails, the lock stays.
        std::fs::create_dir_all(ref_lock.parent().expect("a parent")).expect("dir");
        std::fs::write(&ref_lock, "").expect("plant a ref lock");
        assert!(store.follow_remote(&run, &c1).is_err());
        assert!(ref_lock.exists(), "a fresh lock is left alone");
        // Old ones were left by a dead writer (a worker killed with
        // SIGKILL): cleared, and the update goes through.
        std::fs::write(&packed_lock, "").expect("plant packed-refs.lock");
        for lock in [&ref_lock, &packed_lock] {
            let out = std::process::Command::new("touch")
                .args(["-d", "1 hour ago"])
                .arg(lock)
                .output()
                .expect("touch");
            assert!(out.status.success());
        }
        store
            .follow_remote(&run, &c1)
            .expect("stale locks are cleared");
        assert!(!ref_lock.exists() && !packed_lock.exists());
        assert_eq!(store.tip(&run).expect("tip"), Some(c1));
    }

    #[test]
    fn a_packed_run_ref_moves_by_compare_and_swap_without_packed_refs_lock() {
        let dir = user_repo();
        let path = dir.path();
        git(path, &["config", "core.fsync", "reference"]);
        let store = GitStore::open_isolated(path).expect("open");
        assert!(store.fsync_refs);
        let run = run_id("9");
        let refname = run.ref_name();
        let c1 = store
            .commit(&run, None, &[], &message(&run, "start"), 1)
            .expect("commit");
        // As after `wfe gc`: the run's ref only in packed-refs.
        git(path, &["pack-refs", "--all", "--prune"]);
        assert!(!path.join(".git").join(&refname).exists());
        // Another writer holds packed-refs.lock (git pack-refs, a deletion):
        // a checkpoint neither waits for it nor touches it.
        let packed_lock = path.join(".git/packed-refs.lock");
        std::fs::write(&packed_lock, "").expect("hold packed-refs.lock");
        let started = std::time::Instant::now();
        let c2 = store
            .commit(&run, Some(&c1), &[], &message(&run, "next"), 2)
            .expect("a checkpoint on a packed ref");
        assert!(started.elapsed() < PACKED_REFS_LOCK_TIMEOUT);
        assert_eq!(std::fs::read(&packed_lock).expect("still there"), b"");
        std::fs::remove_file(&packed_lock).expect("release");
        assert_eq!(store.tip(&run).expect("tip"), Some(c2.clone()));
        // The packed value is what the swap compared against: a stale
        // parent (the packed one, now superseded) is a conflict.
        match store.commit(&run, Some(&c1), &[], &message(&run, "stale"), 3) {
            Err(StoreError::Conflict {
                expected, found, ..
            }) => {
                assert_eq!((expected, found), (c1.0.clone(), c2.0.clone()));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // A new run must not exist yet, packed or loose.
        match store.commit(&run, None, &[], &message(&run, "again"), 4) {
            Err(StoreError::Conflict { .. }) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            git(path, &["rev-parse", &refname]).trim(),
            c2.0,
            "git reads the loose ref over the packed one"
        );
        let reflog = git(path, &["reflog", "show", "--format=%H %gs", &refname]);
        assert_eq!(
            reflog.lines().collect::<Vec<_>>(),
            [format!("{} next", c2.0), format!("{} start", c1.0)]
        );
        assert!(!path.join(".git").join(format!("{refname}.lock")).exists());
        git(path, &["fsck", "--full", "--strict", "--no-progress"]);
    }

    fn loose_objects(path: &Path) -> usize {
        let counted = git(path, &["count-objects", "-v"]);
        counted
            .lines()
            .find_map(|line| line.strip_prefix("count: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("count-objects prints a count")
    }

    fn packs(path: &Path) -> usize {
        std::fs::read_dir(path.join(".git/objects/pack"))
            .expect("pack dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
            .count()
    }

    #[test]
    fn a_checkpoint_is_one_pack_that_every_reader_sees() {
        let dir = user_repo();
        let path = dir.path();
        git(path, &["config", "wfe.autoPack", "false"]);
        // Asks for fsync: the same objects, synced before the ref moves.
        git(path, &["config", "core.fsync", "objects,reference"]);
        let store = GitStore::open_isolated(path).expect("open");
        assert!(store.fsync_objects);
        let before = (loose_objects(path), packs(path));
        let run = run_id("1");
        let first = store
            .commit(
                &run,
                None,
                &[
                    Change::write("run.json", "{}"),
                    Change::write("phases/a/state.json", "1"),
                ],
                &message(&run, "start"),
                1,
            )
            .expect("first");
        // Read back through the handle that wrote it...
        assert_eq!(
            store.read(&first, "phases/a/state.json").expect("read"),
            Some(b"1".to_vec())
        );
        // ...through one opened before the pack existed, which must look again...
        let other = GitStore::open_isolated(path).expect("open");
        let second = store
            .commit(
                &run,
                Some(&first),
                &[Change::write("phases/b/state.json", "2")],
                &message(&run, "two"),
                2,
            )
            .expect("second");
        assert_eq!(
            other.read(&second, "phases/b/state.json").expect("read"),
            Some(b"2".to_vec())
        );
        // ...and through a fresh one and the git CLI.
        let fresh = GitStore::open_isolated(path).expect("open");
        assert_eq!(
            fresh.checkpoint(&second).expect("checkpoint").parent,
            Some(first)
        );
        assert_eq!(
            git(
                path,
                &["cat-file", "-p", &format!("{second}:phases/b/state.json")]
            ),
            "2"
        );
        assert_eq!(
            (loose_objects(path), packs(path)),
            (before.0, before.1 + 2),
            "no loose objects, one pack per checkpoint"
        );
        // A checkpoint that changes nothing new writes only its commit.
        let third = store
            .commit(&run, Some(&second), &[], &message(&run, "three"), 3)
            .expect("third");
        assert_eq!(packs(path), before.1 + 3);
        git(path, &["fsck", "--full", "--strict", "--no-progress"]);
        assert_eq!(
            git(path, &["rev-list", "--count", &third.to_string()]),
            "3\n"
        );
    }

    #[test]
    fn many_checkpoints_are_consolidated_in_the_background() {
        let dir = user_repo();
        let path = dir.path();
        let user_objects = git(path, &["rev-list", "--objects", "--all"]);
        let store = GitStore::open_isolated(path).expect("open");
        let mut tips = Vec::new();
        let runs: Vec<RunId> = (0..8).map(|n| run_id(&format!("c{n}"))).collect();
        for round in 0..12 {
            for run in &runs {
                let parent = store.tip(run).expect("tip");
                let id = store
                    .commit(
                        run,
                        parent.as_ref(),
                        &[Change::write(
                            format!("phases/p{round}/state.json"),
                            format!("{round} of {run}"),
                        )],
                        &message(run, "step"),
                        round,
                    )
                    .expect("commit");
                tips.push(id);
            }
        }
        // 96 checkpoints, one pack each: consolidation started along the way
        // (still running, or it has already removed packs).
        assert!(
            maintenance::is_running(&store.info.common_dir) || packs(path) < 96,
            "no consolidation started: {} packs",
            packs(path)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while maintenance::is_running(&store.info.common_dir)
            || maintenance::is_due(&path.join(".git/objects"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "consolidation never finished: {} packs",
                packs(path)
            );
            if !maintenance::is_running(&store.info.common_dir) {
                // Due but idle: what the next checkpoint would do.
                maintenance::start(&store.info.common_dir).expect("start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            packs(path) <= maintenance::PACK_LIMIT,
            "{} packs",
            packs(path)
        );
        git(path, &["fsck", "--full", "--strict", "--no-progress"]);
        // Every checkpoint and every object of the user's is still there.
        for tip in &tips {
            git(path, &["cat-file", "-e", &tip.to_string()]);
        }
        let still = git(path, &["rev-list", "--objects", "--all"]);
        for line in user_objects.lines() {
            assert!(still.contains(line), "{line} is gone");
        }
        // The store keeps reading and writing across the repack.
        let run = &runs[0];
        let tip = store.tip(run).expect("tip").expect("a tip");
        assert_eq!(
            store.read(&tip, "phases/p11/state.json").expect("read"),
            Some(format!("11 of {run}").into_bytes())
        );
        store
            .commit(
                run,
                Some(&tip),
                &[Change::write("x", "y")],
                &message(run, "after"),
                99,
            )
            .expect("commit after consolidation");
    }

    /// Cost of one checkpoint that adds or changes one ~1 KB file in a run of
    /// 1000 checkpoints. Run with
    /// `cargo test --release checkpoint_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, run by hand"]
    fn checkpoint_cost() {
        let dir = user_repo();
        let store = GitStore::open_isolated(dir.path()).expect("open");
        let run = run_id("9");
        let mut tip = None;
        let payload = "x".repeat(1000);
        let start = std::time::Instant::now();
        for n in 0..1000 {
            let path = format!("phases/p{}/artifacts/a{}.json", n % 20, n % 97);
            let bytes = format!("{{\"n\": {n}, \"pad\": \"{payload}\"}}\n");
            let id = store
                .commit(
                    &run,
                    tip.as_ref(),
                    &[Change::write(path, bytes)],
                    &message(&run, "step"),
                    n,
                )
                .expect("commit");
            tip = Some(id);
        }
        let elapsed = start.elapsed();
        eprintln!(
            "1000 checkpoints in {elapsed:?}: {:?} per checkpoint",
            elapsed / 1000
        );
        git(dir.path(), &["fsck", "--strict", "--no-progress"]);
    }
}
