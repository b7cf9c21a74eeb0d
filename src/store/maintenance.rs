//! Keeping the repository packed while runs add a small pack per checkpoint.
//!
//! Each checkpoint is one small pack (`pack.rs`); left alone they would pile
//! up, and every lookup of an object walks the list of packs. gix never runs
//! git's automatic gc, so the store does the same job itself: after it
//! writes a pack (the first of the process, then every
//! [`CHECK_EVERY`]th) it counts the packs in `objects/pack`, and the loose
//! objects in `objects/17` the way `git gc --auto` estimates them; past a
//! threshold it starts, detached and at low priority, what git's own
//! maintenance does for many small packs:
//!
//! ```text
//! git repack -d -l -q --geometric=2 --no-write-bitmap-index && git pack-refs --all --prune
//! ```
//!
//! Packing refs takes `packed-refs.lock`, which a runner's ref update
//! never needs (`loose_ref.rs` moves a run's ref under its own lock
//! only), so a checkpoint never waits on maintenance.
//!
//! A geometric repack rolls the small packs and loose objects into one and
//! leaves packs of a geometric progression of sizes alone (the user's own
//! big pack among them), so its cost follows what is new. It deletes only
//! what it has just rewritten (the rolled-up packs, then loose objects found
//! in a pack), prunes nothing unreachable, and never touches the work tree
//! or the index; refs are packed as they are, none moved or deleted: less
//! than `git gc` does.
//!
//! Only one consolidation runs at a time per repository: the child holds an
//! exclusive `flock` on `<git-dir>/wfe/maintenance.lock` (it inherits the
//! locked file as its stdin, so the lock lives exactly as long as it does,
//! whichever process started it). A runner never waits for it; git's own
//! locking keeps concurrent writers safe. `git config wfe.autoPack false`
//! turns it off.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many packs `objects/pack` may hold before they are consolidated.
///
/// A lookup that misses the packs it knows lists the directory again, and
/// each object lookup searches every index, so fewer is faster; git's own
/// `gc.autoPackLimit` is 50. Each consolidation starts four processes
/// (`nice`, `sh`, `git repack`, `git pack-objects`: about 9 ms of CPU
/// whatever it rolls up); at 16 that was a fifth of a long run's CPU, one
/// consolidation every 16 checkpoints. An index search costs a microsecond.
pub(super) const PACK_LIMIT: usize = 32;
/// How many loose objects `objects/17` may hold (git's `gc.auto` default of
/// 6700 objects, divided among the 256 fan-out directories as git does).
const LOOSE_LIMIT_IN_17: usize = 6700_usize.div_ceil(256);
/// After the first pack a process writes, how many more before looking again.
const CHECK_EVERY: usize = 8;

/// Whether and when this store starts a consolidation.
#[derive(Debug)]
pub(super) struct Maintenance {
    enabled: bool,
    packs_written: AtomicUsize,
}

impl Maintenance {
    /// Consolidates when `enabled` (`wfe.autoPack`, on unless set false).
    pub(super) fn new(enabled: bool) -> Maintenance {
        Maintenance {
            enabled,
            packs_written: AtomicUsize::new(0),
        }
    }

    /// Called after a checkpoint's pack is in `pack_dir`: starts a
    /// consolidation if one is due. Never waits and never fails the
    /// checkpoint: a consolidation that cannot start now is started by a
    /// later checkpoint.
    pub(super) fn packed(&self, common_dir: &Path, objects_dir: &Path) {
        let written = self.packs_written.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.enabled || (written != 1 && !written.is_multiple_of(CHECK_EVERY)) {
            return;
        }
        if is_due(objects_dir) {
            let _ = start(common_dir);
        }
    }
}

/// Whether the packs or loose objects have passed their thresholds.
pub(super) fn is_due(objects_dir: &Path) -> bool {
    count(&objects_dir.join("pack"), |name| name.ends_with(".idx")) > PACK_LIMIT
        || count(&objects_dir.join("17"), |name| name.len() == 38) > LOOSE_LIMIT_IN_17
}

fn count(dir: &Path, matches: impl Fn(&str) -> bool) -> usize {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_str().is_some_and(&matches))
            .count()
    })
}

/// `<git-dir>/wfe/maintenance.lock`.
pub(super) fn lock_path(common_dir: &Path) -> PathBuf {
    common_dir.join("wfe").join("maintenance.lock")
}

/// Starts a consolidation of the repository at `common_dir` in the
/// background, unless one is running. Returns whether this call started one.
pub(super) fn start(common_dir: &Path) -> io::Result<bool> {
    let Some(lock) = try_lock(common_dir)? else {
        return Ok(false);
    };
    let git_dir = common_dir.to_string_lossy().into_owned();
    // Refs too, as `git gc` packs them: a loose ref takes a whole block
    // on disk (4 KB here, for 41 bytes), which at 2,000 runs was a third
    // of the repository. Safe beside a runner: its ref update takes only
    // the ref's own lock (`loose_ref.rs`), and `git pack-refs` prunes a
    // loose ref only under that same lock and only if it did not move.
    let script =
        "git repack -d -l -q --geometric=2 --no-write-bitmap-index && git pack-refs --all --prune";
    let mut command = Command::new("nice");
    command.args(["-n", "19", "/bin/sh", "-c", script]);
    let child = spawn(command, common_dir, &git_dir, &lock).or_else(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            // No `nice` on this system: the same at normal priority.
            let mut command = Command::new("/bin/sh");
            command.args(["-c", script]);
            spawn(command, common_dir, &git_dir, &lock)
        } else {
            Err(err)
        }
    })?;
    // The child holds the lock now; ours goes with this handle.
    drop(lock);
    // Reaped when it ends, so no zombie is left behind in a long runner; if
    // this process ends first, init adopts it.
    // A runner ends the children it has left when it ends (it is their
    // subreaper); this one is meant to outlive it.
    let pid = child.id();
    crate::process::keep_child(pid);
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
        crate::process::forget_kept(pid);
    });
    Ok(true)
}

fn spawn(
    mut command: Command,
    common_dir: &Path,
    git_dir: &str,
    lock: &File,
) -> io::Result<std::process::Child> {
    command
        .current_dir(common_dir)
        .env("GIT_DIR", git_dir)
        // The repository's own object directory, whatever the caller's environment says.
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .stdin(Stdio::from(lock.try_clone()?))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: signals meant for a run (Ctrl-C, a
        // timeout's group kill) do not cut it short.
        .process_group(0);
    command.spawn()
}

/// The maintenance lock, held, or `None` if a consolidation holds it.
fn try_lock(common_dir: &Path) -> io::Result<Option<File>> {
    let path = lock_path(common_dir);
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    };
    let file = match open() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            open()?
        }
        other => other?,
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(err) if err == rustix::io::Errno::WOULDBLOCK || err == rustix::io::Errno::INTR => {
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// Whether a consolidation holds the lock right now.
#[cfg(test)]
pub(super) fn is_running(common_dir: &Path) -> bool {
    match try_lock(common_dir) {
        Ok(Some(_)) => false,
        Ok(None) => true,
        Err(_) => false,
    }
}
