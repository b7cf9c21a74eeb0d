//! Moving a run's ref the way git itself moves a loose ref: lock the ref,
//! check its value, write the new one, append the reflog, rename the lock
//! into place. Nothing else.
//!
//! gix's ref transaction does the same, and more: whenever a `packed-refs`
//! file exists (after `wfe gc`, `git gc` or `git pack-refs`) it also
//! creates and removes `packed-refs.lock` for every update, even one that
//! leaves `packed-refs` alone (it locks the file to read it). That is two
//! more file creations per checkpoint, and every runner of the repository
//! queues on that one lock. git takes `packed-refs.lock` only to delete a
//! ref or to pack refs, and `git pack-refs` takes each loose ref's lock
//! before it prunes the loose file, so holding the ref's own lock is all
//! an update needs: the compare-and-swap is as strict as before.
//!
//! Checkpoints use this for the run's ref; every other ref edit (creating
//! a branch, deleting or trashing a run) still goes through gix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gix::ObjectId;

/// Why a ref was not moved.
#[derive(Debug)]
pub(super) enum RefUpdateError {
    /// Another writer held the ref's lock for longer than the wait.
    Locked(PathBuf),
    /// The ref's value was not the one expected (read under its lock).
    Moved,
    /// Reading the ref's current value failed.
    Read(super::StoreError),
    /// Writing the lock, the reflog or renaming failed.
    Io(PathBuf, io::Error),
}

impl std::fmt::Display for RefUpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefUpdateError::Locked(path) => {
                write!(f, "{} is held by another writer", path.display())
            }
            RefUpdateError::Moved => write!(f, "the ref moved while it was being updated"),
            RefUpdateError::Read(err) => write!(f, "{err}"),
            RefUpdateError::Io(path, err) => write!(f, "{}: {err}", path.display()),
        }
    }
}

/// One update of the direct ref `name` (`refs/...`) in `common_dir`: from
/// `old` (`None`: it must not exist) to `new`, logged with `signature` and
/// `message`. `current` reads the ref's value (loose, else packed) and is
/// called with the lock held. With `fsync`, the ref file and its log are
/// synced before the rename makes the new value visible.
pub(super) struct Update<'a> {
    pub common_dir: &'a Path,
    pub name: &'a str,
    pub old: Option<ObjectId>,
    pub new: ObjectId,
    pub signature: &'a gix::actor::Signature,
    pub message: &'a str,
    pub fsync: bool,
    pub lock_timeout: Duration,
}

impl Update<'_> {
    /// Moves the ref, or says why not (leaving it and its log as they were).
    pub(super) fn apply(
        &self,
        current: impl FnOnce() -> super::Result<Option<ObjectId>>,
    ) -> Result<(), RefUpdateError> {
        let path = self.common_dir.join(self.name);
        let lock_path = self.common_dir.join(format!("{}.lock", self.name));
        let mut lock = self.lock(&lock_path)?;
        let result = (|| {
            if current().map_err(RefUpdateError::Read)? != self.old {
                return Err(RefUpdateError::Moved);
            }
            let io = |e| RefUpdateError::Io(lock_path.clone(), e);
            lock.write_all(format!("{}\n", self.new).as_bytes())
                .map_err(io)?;
            if self.fsync {
                lock.sync_all().map_err(io)?;
            }
            self.append_log()?;
            fs::rename(&lock_path, &path).map_err(io)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&lock_path);
        }
        result
    }

    /// Creates the ref's lock file, waiting with backoff while another
    /// writer holds it (as gix's `Fail::AfterDurationWithBackoff`).
    fn lock(&self, lock_path: &Path) -> Result<File, RefUpdateError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut made_dir = false;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(lock_path)
            {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound && !made_dir => {
                    // The first ref under `refs/wfe/runs/`.
                    made_dir = true;
                    if let Some(dir) = lock_path.parent() {
                        fs::create_dir_all(dir)
                            .map_err(|e| RefUpdateError::Io(dir.to_path_buf(), e))?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if started.elapsed() >= self.lock_timeout {
                        return Err(RefUpdateError::Locked(lock_path.to_path_buf()));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(RefUpdateError::Io(lock_path.to_path_buf(), e)),
            }
        }
    }

    /// Appends the update to `logs/<name>`, in git's reflog format.
    fn append_log(&self) -> Result<(), RefUpdateError> {
        let log_path = self.common_dir.join("logs").join(self.name);
        let io = |e| RefUpdateError::Io(log_path.clone(), e);
        let old = self
            .old
            .unwrap_or_else(|| ObjectId::null(self.new.kind()))
            .to_string();
        let mut line = format!("{old} {} ", self.new).into_bytes();
        self.signature.write_to(&mut line).map_err(io)?;
        line.push(b'\t');
        line.extend(self.message.replace('\n', " ").as_bytes());
        line.push(b'\n');
        let open = || OpenOptions::new().append(true).create(true).open(&log_path);
        let mut log = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = log_path.parent() {
                    fs::create_dir_all(dir).map_err(io)?;
                }
                open().map_err(io)?
            }
            other => other.map_err(io)?,
        };
        // One write: a concurrent reader sees the whole line or none of it.
        log.write_all(&line).map_err(io)?;
        if self.fsync {
            log.sync_all().map_err(io)?;
        }
        Ok(())
    }
}
