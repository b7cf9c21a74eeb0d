//! The attempt registry: which process groups a run's attempts started,
//! kept where the next runner of the run finds them.
//!
//! A runner that dies without cleaning up (kill -9, OOM, power loss)
//! leaves its phases' process groups running; the next runner must end
//! them before it starts a new attempt of the same phase, or the two would
//! race in one working tree. So each attempt's group is written to
//! `<git-dir>/wfe/procs/<run>/<pgid>.json` when it spawns and removed when
//! the attempt ends; whatever is left there when a runner takes the run's
//! lock belongs to a runner that is gone. The files live under the git
//! dir, beside the locks, and are never committed: they describe this
//! machine's processes, not the run.
//!
//! This module only reads and writes the records; ending the processes is
//! [`crate::process::end_leftover`]'s, deciding when is the runner's.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One attempt's process group, as recorded when it spawned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRecord {
    /// How people see the phase (`build`, or `loop[2]/child`).
    pub phase: String,
    /// The attempt number.
    pub attempt: u32,
    /// The process group id (the leader's pid).
    pub pgid: u32,
    /// The leader's start time in clock ticks after boot (`/proc/<pid>/stat`
    /// field 22), so a reused pid is not taken for the leader.
    pub start_time: Option<u64>,
    /// The phase's grace between `SIGTERM` and `SIGKILL`, in milliseconds.
    pub grace_ms: u64,
}

impl ProcessRecord {
    /// The grace between `SIGTERM` and `SIGKILL`.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
}

/// The records of one run's attempts: `<wfe-dir>/procs/<run>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRegistry {
    dir: PathBuf,
}

/// A record written for a running attempt; [`ProcessRegistry::remove`]
/// deletes it once the attempt has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    path: PathBuf,
}

impl ProcessRegistry {
    /// The registry of `run` under `wfe_dir` (`<git-dir>/wfe`).
    pub fn new(wfe_dir: &Path, run: &str) -> ProcessRegistry {
        ProcessRegistry {
            dir: wfe_dir.join("procs").join(run),
        }
    }

    /// Writes `record` (to a temporary file renamed into place, so a
    /// reader never sees half of it).
    pub fn record(&self, record: &ProcessRecord) -> io::Result<Registered> {
        fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!("{}.json", record.pgid));
        let tmp = self.dir.join(format!(".{}.json.tmp", record.pgid));
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        drop(file);
        fs::rename(&tmp, &path)?;
        Ok(Registered { path })
    }

    /// Deletes a record whose attempt has ended (gone already is fine).
    pub fn remove(&self, registered: &Registered) -> io::Result<()> {
        remove_file(&registered.path)
    }

    /// Every record left, with what to pass to [`ProcessRegistry::remove`]
    /// once it is dealt with. A file that does not parse is removed: it
    /// can only be a write cut short, whose process was never recorded.
    pub fn leftovers(&self) -> io::Result<Vec<(Registered, ProcessRecord)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") {
                // A temporary file of a write that never finished.
                remove_file(&path)?;
                continue;
            }
            match crate::bounded::read_no_follow(&path, crate::bounded::SMALL_LIMIT)
                .ok()
                .and_then(|b| serde_json::from_slice::<ProcessRecord>(&b).ok())
            {
                Some(record) => found.push((Registered { path }, record)),
                None => remove_file(&path)?,
            }
        }
        found.sort_by(|a, b| (&a.1.phase, a.1.attempt).cmp(&(&b.1.phase, b.1.attempt)));
        Ok(found)
    }

    /// Removes the run's directory once it is empty (a run that ended).
    pub fn tidy(&self) {
        // Not empty (an attempt still recorded) or already gone: both fine.
        let _ = fs::remove_dir(&self.dir);
    }
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;

    use super::*;

    fn record(phase: &str, attempt: u32, pgid: u32) -> ProcessRecord {
        ProcessRecord {
            phase: phase.into(),
            attempt,
            pgid,
            start_time: Some(42),
            grace_ms: 10_000,
        }
    }

    #[test]
    fn records_are_found_until_removed() {
        let dir = TempDir::new().unwrap();
        let registry = ProcessRegistry::new(dir.path(), "run-1");
        assert_eq!(registry.leftovers().unwrap(), Vec::new());
        let b = registry.record(&record("build", 2, 900)).unwrap();
        let a = registry.record(&record("a[1]/x", 1, 800)).unwrap();
        let found: Vec<ProcessRecord> = registry
            .leftovers()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(found, [record("a[1]/x", 1, 800), record("build", 2, 900)]);
        registry.remove(&a).unwrap();
        registry.remove(&a).unwrap();
        assert_eq!(registry.leftovers().unwrap().len(), 1);
        registry.remove(&b).unwrap();
        registry.tidy();
        assert!(!dir.path().join("procs/run-1").exists());
        // Another run's records are its own.
        let other = ProcessRegistry::new(dir.path(), "run-2");
        other.record(&record("x", 1, 1)).unwrap();
        assert!(registry.leftovers().unwrap().is_empty());
    }

    #[test]
    fn a_torn_record_is_dropped() {
        let dir = TempDir::new().unwrap();
        let registry = ProcessRegistry::new(dir.path(), "r");
        registry.record(&record("build", 1, 7)).unwrap();
        let procs = dir.path().join("procs/r");
        fs::write(procs.join("8.json"), b"{\"phase\": ").unwrap();
        fs::write(procs.join(".9.json.tmp"), b"{").unwrap();
        let found = registry.leftovers().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.pgid, 7);
        assert!(!procs.join("8.json").exists());
        assert!(!procs.join(".9.json.tmp").exists());
    }
}
