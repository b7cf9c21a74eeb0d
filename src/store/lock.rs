//! One runner per run: a lock file holding the owner's pid and host.
//!
//! The lock is `<git-dir>/wfe/locks/<run>.lock`, created exclusively and
//! holding a JSON [`LockHolder`]. A lock left behind by a process that died
//! on this host is taken over; a lock held by a live process (or by any
//! process on another host, whose liveness cannot be checked) refuses the
//! second runner at once. This module does not wait: callers that want to
//! wait (rollback, edit) retry [`RunLock::acquire`] themselves.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Result, RunId, StoreError};

/// How old an unreadable lock file must be before it counts as abandoned.
///
/// The holder writes its JSON right after creating the file, so a young
/// unreadable file is most likely being written right now.
const UNREADABLE_GRACE: Duration = Duration::from_secs(5);

/// How many times acquisition starts over when the lock file changes under it
/// (removed by its holder, taken over by another process).
const ACQUIRE_ROUNDS: usize = 8;

/// Who holds a run's lock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockHolder {
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When the lock was taken (RFC 3339).
    pub since: String,
}

/// A held run lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// The exact bytes written, so release only removes a file that is still ours.
    content: Vec<u8>,
}

/// What a lock file currently says.
enum Found {
    /// No lock file.
    Free,
    /// A holder that is alive, or whose liveness this host cannot check.
    Live(LockHolder),
    /// A lock nobody holds any more; `content` is what the file held.
    Stale { content: Vec<u8> },
    /// An unreadable lock file, too young to be called abandoned.
    Unreadable { since: String },
}

impl RunLock {
    /// Takes `<dir>/<run>.lock`, taking over a lock whose pid is dead on this
    /// host; fails with [`super::StoreError::Locked`] if a live process holds it.
    pub fn acquire(dir: &Path, run: &RunId, since: &str) -> Result<RunLock> {
        fs::create_dir_all(dir)
            .map_err(|source| io_error("creating the lock directory", dir, source))?;
        let path = lock_path(dir, run);
        let me = LockHolder {
            pid: std::process::id(),
            host: hostname(),
            since: since.to_string(),
        };
        let content = serde_json::to_vec_pretty(&me).map_err(|err| StoreError::Io {
            action: "encoding the lock holder",
            path: path.clone(),
            source: std::io::Error::other(err),
        })?;

        for _ in 0..ACQUIRE_ROUNDS {
            match create_exclusive(&path, &content) {
                Ok(()) => return Ok(RunLock { path, content }),
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
                Err(err) => return Err(io_error("creating the lock file", &path, err)),
            }
            match inspect(&path)? {
                // The holder released it between our attempt and our look: try again.
                Found::Free => continue,
                Found::Live(holder) => {
                    return Err(StoreError::Locked {
                        run: run.clone(),
                        holder,
                    });
                }
                Found::Unreadable { since } => {
                    let holder = LockHolder {
                        pid: 0,
                        host: "unknown (lock file is being written)".into(),
                        since,
                    };
                    return Err(StoreError::Locked {
                        run: run.clone(),
                        holder,
                    });
                }
                Found::Stale { content: stale } => {
                    if take_over(dir, &path, &stale, &content, run)? {
                        return Ok(RunLock { path, content });
                    }
                }
            }
        }
        // The file kept changing under us: someone else is contending for it.
        match inspect(&path)? {
            Found::Live(holder) => Err(StoreError::Locked {
                run: run.clone(),
                holder,
            }),
            _ => Err(io_error(
                "acquiring the lock file (it kept changing while being read)",
                &path,
                std::io::Error::from(ErrorKind::WouldBlock),
            )),
        }
    }

    /// Who holds the lock of `run` now, if anyone alive does.
    pub fn holder(dir: &Path, run: &RunId) -> Result<Option<LockHolder>> {
        Ok(match inspect(&lock_path(dir, run))? {
            Found::Free | Found::Stale { .. } => None,
            Found::Live(holder) => Some(holder),
            Found::Unreadable { since } => Some(LockHolder {
                pid: 0,
                host: "unknown (lock file is being written)".into(),
                since,
            }),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove the file only if it is still ours: after a takeover (which
        // only happens when this process looked dead) it belongs to another.
        if fs::read(&self.path).is_ok_and(|now| now == self.content) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn lock_path(dir: &Path, run: &RunId) -> PathBuf {
    dir.join(format!("{run}.lock"))
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `path` only if it does not exist, then writes `content` into it.
fn create_exclusive(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    let written = file.write_all(content).and_then(|()| file.sync_all());
    if let Err(err) = written {
        // Never leave a half-written lock behind that others would have to age out.
        drop(file);
        let _ = fs::remove_file(path);
        return Err(err);
    }
    Ok(())
}

/// Reads the lock file and decides whether its holder still counts.
fn inspect(path: &Path) -> Result<Found> {
    let content = match crate::bounded::read(path, crate::bounded::SMALL_LIMIT) {
        Ok(content) => content,
        Err(err) if err.is_not_found() => return Ok(Found::Free),
        Err(crate::bounded::ReadError::Io { source, .. }) => {
            return Err(io_error("reading the lock file", path, source));
        }
        // Not a lock wfe wrote (a FIFO, a huge file): read as unparsable below.
        Err(_) => Vec::new(),
    };
    match serde_json::from_slice::<LockHolder>(&content) {
        Ok(holder) => {
            if holder.host == hostname() && !pid_is_alive(holder.pid) {
                Ok(Found::Stale { content })
            } else {
                Ok(Found::Live(holder))
            }
        }
        Err(_) => {
            let modified = fs::metadata(path).and_then(|m| m.modified());
            let modified = match modified {
                Ok(modified) => modified,
                Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Found::Free),
                Err(err) => return Err(io_error("reading the lock file's age", path, err)),
            };
            let age = SystemTime::now()
                .duration_since(modified)
                .unwrap_or(Duration::ZERO);
            if age >= UNREADABLE_GRACE {
                Ok(Found::Stale { content })
            } else {
                Ok(Found::Unreadable {
                    since: crate::time::format_stamp(modified),
                })
            }
        }
    }
}

/// Replaces a stale lock file with ours; `false` if someone else got there first.
///
/// Takeovers are serialized by an advisory lock (`flock`) on a second
/// file, `<run>.lock.takeover`, so two processes that both saw the same
/// dead holder cannot both win: the one holding it checks the lock still
/// holds the stale content before renaming its own file over it. The
/// kernel drops an advisory lock when its process dies, so a process killed
/// in the middle of a takeover never locks the next one out (an exclusive
/// guard *file* did, until it aged: "kept changing while being read").
/// The holder removes the guard file before letting go, and whoever locks
/// a file no longer at the guard's path starts over, so every takeover
/// locks the same file.
fn take_over(dir: &Path, path: &Path, stale: &[u8], ours: &[u8], run: &RunId) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;

    let guard_path = dir.join(format!("{run}.lock.takeover"));
    let guard = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&guard_path)
        .map_err(|err| io_error("opening the lock takeover guard", &guard_path, err))?;
    match rustix::fs::flock(&guard, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(err) if err == rustix::io::Errno::WOULDBLOCK || err == rustix::io::Errno::INTR => {
            // Another live process is taking over right now: a few syscalls.
            std::thread::sleep(Duration::from_millis(2));
            return Ok(false);
        }
        Err(err) => {
            return Err(io_error(
                "locking the lock takeover guard",
                &guard_path,
                err.into(),
            ));
        }
    }
    let same_file = match (guard.metadata(), fs::metadata(&guard_path)) {
        (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
        _ => false,
    };
    if !same_file {
        return Ok(false);
    }
    let result = (|| {
        match fs::read(path) {
            Ok(now) if now == stale => {}
            // Changed or gone since we looked: start over.
            Ok(_) => return Ok(false),
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(io_error("reading the lock file", path, err)),
        }
        let temp = dir.join(format!("{run}.lock.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&temp);
        create_exclusive(&temp, ours)
            .map_err(|err| io_error("writing a new lock file", &temp, err))?;
        if let Err(err) = fs::rename(&temp, path) {
            let _ = fs::remove_file(&temp);
            return Err(io_error("replacing a stale lock file", path, err));
        }
        Ok(fs::read(path).is_ok_and(|now| now == ours))
    })();
    // Removed while still locked (see above); closing `guard` unlocks.
    let _ = fs::remove_file(&guard_path);
    drop(guard);
    result
}

/// This machine's host name, as lock files record it.
fn hostname() -> String {
    gethostname()
        .or_else(|| {
            fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

fn gethostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// Whether a process with this pid exists on this host.
fn pid_is_alive(pid: u32) -> bool {
    // Pid 0 and pids beyond pid_t would address process groups or nothing at all.
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0: only the existence and permission checks, nothing delivered.
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // EPERM: it exists, it just belongs to someone else.
        Err(err) => err != rustix::io::Errno::SRCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    /// A holder whose process has exited: its lock is stale.
    fn dead_holder() -> LockHolder {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait for true");
        LockHolder {
            pid,
            host: hostname(),
            since: "long ago".into(),
        }
    }

    fn run() -> RunId {
        RunId::parse("01jf3k0000000000000000000a").expect("valid id")
    }

    #[test]
    fn a_second_acquire_is_refused_with_pid_and_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let locks = dir.path().join("wfe/locks");
        let first =
            RunLock::acquire(&locks, &run(), "2026-01-01T00:00:00.000Z").expect("first acquire");
        assert!(first.path().is_file());
        let err = RunLock::acquire(&locks, &run(), "later").expect_err("second acquire must fail");
        match &err {
            StoreError::Locked { run: r, holder } => {
                assert_eq!(r, &run());
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.host, hostname());
                assert_eq!(holder.since, "2026-01-01T00:00:00.000Z");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains(&hostname()), "{text}");
        assert_eq!(
            RunLock::holder(&locks, &run())
                .expect("holder")
                .map(|h| h.pid),
            Some(std::process::id())
        );
    }

    #[test]
    fn drop_releases_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = RunLock::acquire(dir.path(), &run(), "now").expect("acquire");
        let path = lock.path().to_path_buf();
        drop(lock);
        assert!(!path.exists());
        assert_eq!(RunLock::holder(dir.path(), &run()).expect("holder"), None);
        let again = RunLock::acquire(dir.path(), &run(), "now").expect("re-acquire after release");
        drop(again);
    }

    #[test]
    fn a_lock_of_a_dead_pid_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dead_holder();
        let path = lock_path(dir.path(), &run());
        fs::write(&path, serde_json::to_vec(&stale).expect("json")).expect("write stale lock");

        assert_eq!(RunLock::holder(dir.path(), &run()).expect("holder"), None);
        let lock = RunLock::acquire(dir.path(), &run(), "now").expect("take over");
        let holder: LockHolder =
            serde_json::from_slice(&fs::read(&path).expect("read")).expect("parse");
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.since, "now");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "no temp or guard files left: {leftovers:?}"
        );
        drop(lock);
        assert!(!path.exists());
    }

    #[test]
    fn a_takeover_killed_half_way_does_not_lock_the_next_one_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dead = dead_holder();
        let stale = serde_json::to_vec(&dead).expect("json");
        fs::write(lock_path(dir.path(), &run()), &stale).expect("write stale lock");
        // What a process killed during its takeover leaves: the guard file
        // (here with its content, as older versions wrote it) and its temp file.
        let guard = dir.path().join(format!("{}.lock.takeover", run()));
        fs::write(&guard, &stale).expect("write guard");
        fs::write(
            dir.path().join(format!("{}.lock.{}.tmp", run(), dead.pid)),
            "",
        )
        .expect("temp");

        let lock = RunLock::acquire(dir.path(), &run(), "now").expect("no lock-out");
        assert!(!guard.exists(), "the guard is removed after the takeover");
        let holder: LockHolder =
            serde_json::from_slice(&fs::read(lock.path()).expect("read")).expect("parse");
        assert_eq!(holder.pid, std::process::id());
    }

    #[test]
    fn a_takeover_in_progress_is_waited_for_not_joined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = serde_json::to_vec(&dead_holder()).expect("json");
        let path = lock_path(dir.path(), &run());
        fs::write(&path, &stale).expect("write stale lock");
        // Another process holds the takeover guard: this one must not take over too.
        let guard_path = dir.path().join(format!("{}.lock.takeover", run()));
        let guard = File::create(&guard_path).expect("guard");
        rustix::fs::flock(&guard, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        let err = RunLock::acquire(dir.path(), &run(), "now").expect_err("contended");
        assert!(err.to_string().contains("kept changing"), "{err}");
        assert_eq!(
            fs::read(&path).expect("read"),
            stale,
            "the lock is untouched"
        );
        drop(guard);
        RunLock::acquire(dir.path(), &run(), "now").expect("free once the guard is let go");
    }

    #[test]
    fn only_one_of_many_contenders_takes_over_a_stale_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dead_holder();
        fs::write(
            lock_path(dir.path(), &run()),
            serde_json::to_vec(&stale).expect("json"),
        )
        .expect("write stale lock");
        let barrier = std::sync::Barrier::new(8);
        let held: Vec<RunLock> = std::thread::scope(|scope| {
            let contenders: Vec<_> = (0..8)
                .map(|n| {
                    let (dir, barrier) = (dir.path(), &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        RunLock::acquire(dir, &run(), &format!("contender {n}"))
                    })
                })
                .collect();
            contenders
                .into_iter()
                .filter_map(|c| c.join().expect("no panic").ok())
                .collect()
        });
        assert_eq!(held.len(), 1, "exactly one contender holds the lock");
    }

    #[test]
    fn a_lock_on_another_host_is_respected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let other = LockHolder {
            pid: 1,
            host: "elsewhere.invalid".into(),
            since: "then".into(),
        };
        fs::write(
            lock_path(dir.path(), &run()),
            serde_json::to_vec(&other).expect("json"),
        )
        .expect("write");
        match RunLock::acquire(dir.path(), &run(), "now") {
            Err(StoreError::Locked { holder, .. }) => assert_eq!(holder, other),
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn a_young_unreadable_lock_is_respected_an_old_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = lock_path(dir.path(), &run());
        fs::write(&path, b"{\"pid\": 12").expect("write partial");
        assert!(matches!(
            RunLock::acquire(dir.path(), &run(), "now"),
            Err(StoreError::Locked { .. })
        ));

        let old = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("age the file");
        let lock = RunLock::acquire(dir.path(), &run(), "now")
            .expect("take over an abandoned garbage lock");
        drop(lock);
    }

    #[test]
    fn our_own_pid_counts_as_alive() {
        assert!(pid_is_alive(std::process::id()));
        assert!(!pid_is_alive(0));
        assert!(!pid_is_alive(u32::MAX));
    }
}
