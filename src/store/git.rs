//! The gix implementation of [`RunStore`].

use std::path::{Path, PathBuf};

use super::{
    Change, Checkpoint, CheckpointId, EntryKind, Message, Result, RunHead, RunId, RunLock, RunStore,
};

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
    _todo: (),
}

impl GitStore {
    /// Finds the repository containing `path` (like `git` does from a subdirectory).
    pub fn discover(path: &Path) -> Result<GitStore> {
        let _ = path;
        todo!("helper implements")
    }

    /// Creates a new repository at `path` with one empty commit on `main`,
    /// leaving the work tree and index clean (used by `wfe demo`).
    pub fn init_with_empty_commit(path: &Path, time: i64) -> Result<GitStore> {
        let _ = (path, time);
        todo!("helper implements")
    }

    /// Facts about the repository.
    pub fn info(&self) -> &RepoInfo {
        todo!("helper implements")
    }

    /// `<common-dir>/wfe`: locks, control files, scratch space, the index.
    pub fn wfe_dir(&self) -> PathBuf {
        self.info().common_dir.join("wfe")
    }

    /// Takes the run's lock for this process, or reports who holds it.
    pub fn lock(&self, run: &RunId, since: &str) -> Result<RunLock> {
        RunLock::acquire(&self.wfe_dir().join("locks"), run, since)
    }
}

impl RunStore for GitStore {
    fn tip(&self, run: &RunId) -> Result<Option<CheckpointId>> {
        let _ = run;
        todo!("helper implements")
    }

    fn commit(
        &self,
        run: &RunId,
        parent: Option<&CheckpointId>,
        changes: &[Change],
        message: &Message,
        time: i64,
    ) -> Result<CheckpointId> {
        let _ = (run, parent, changes, message, time);
        todo!("helper implements")
    }

    fn read(&self, at: &CheckpointId, path: &str) -> Result<Option<Vec<u8>>> {
        let _ = (at, path);
        todo!("helper implements")
    }

    fn list_dir(&self, at: &CheckpointId, path: &str) -> Result<Vec<(String, EntryKind)>> {
        let _ = (at, path);
        todo!("helper implements")
    }

    fn checkpoint(&self, id: &CheckpointId) -> Result<Checkpoint> {
        let _ = id;
        todo!("helper implements")
    }

    fn runs(&self) -> Result<Vec<RunHead>> {
        todo!("helper implements")
    }
}
