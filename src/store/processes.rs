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
    driver: Option<String>,
}

/// See [`ProcessRegistry::tag`].
const TAG: &str = "WFE_RUN_KEY";

/// See [`ProcessRegistry::driver_tag`].
const DRIVER_TAG: &str = "WFE_DRIVER";

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
            driver: None,
        }
    }

    /// The same registry, whose attempts' processes also carry `token`,
    /// naming the process that drives them ([`ProcessRegistry::driver_tag`]).
    pub fn with_driver(self, token: String) -> ProcessRegistry {
        ProcessRegistry {
            driver: Some(token),
            ..self
        }
    }

    /// The variable naming the driving process (the runner or worker) that
    /// every process of its attempts carries, and its value, when it was
    /// given one: its guardian ends what carries it once the driver is
    /// gone, and nothing of another driver of the same run (two workers in
    /// one clone) carries it.
    pub fn driver_tag(&self) -> Option<(&'static str, String)> {
        self.driver.clone().map(|token| (DRIVER_TAG, token))
    }

    /// Every variable an attempt's processes carry: [`ProcessRegistry::tag`]
    /// and, when there is one, [`ProcessRegistry::driver_tag`].
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        let mut tags = vec![self.tag()];
        tags.extend(self.driver_tag());
        tags
    }

    /// The variable every process of the run's attempts carries in its
    /// environment, and its value: this registry's directory, which names
    /// the repository as well as the run (two clones on one machine hold
    /// runs with the same id).
    pub fn tag(&self) -> (&'static str, String) {
        (TAG, self.dir.to_string_lossy().into_owned())
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

/// Records every process group an agent attempt starts (its `bash` and
/// `git` tool calls, its CLI agent) in the registry while it runs, through
/// [`crate::process::recording`].
#[derive(Debug, Clone)]
pub struct AttemptRecorder {
    /// Where the records go.
    pub registry: ProcessRegistry,
    /// How people see the phase.
    pub phase: String,
    /// The attempt number.
    pub attempt: u32,
    /// The phase's grace between `SIGTERM` and `SIGKILL`.
    pub grace: Duration,
}

/// Removes its record when dropped.
struct Forget(ProcessRegistry, Registered);

impl Drop for Forget {
    fn drop(&mut self) {
        // Nothing to report to; a record left behind only makes the next
        // runner look at a group that is gone (and recognise it as such).
        let _ = self.0.remove(&self.1);
    }
}

impl crate::process::GroupRecorder for AttemptRecorder {
    fn record(&self, group: crate::process::Group) -> Option<Box<dyn Send>> {
        let record = ProcessRecord {
            phase: self.phase.clone(),
            attempt: self.attempt,
            pgid: group.pgid,
            start_time: group.start_time,
            grace_ms: u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX),
        };
        // Not fatal, as for script phases: the call runs unrecorded.
        let registered = self.registry.record(&record).ok()?;
        Some(Box::new(Forget(self.registry.clone(), registered)))
    }

    /// The same variables a script phase gets, so tool calls and CLI
    /// agents can be found by their run after a kill -9 of the runner.
    fn tags(&self) -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> = self
            .registry
            .tags()
            .into_iter()
            .map(|(var, value)| (var.into(), value))
            .collect();
        tags.push(("WFE_PHASE".into(), self.phase.clone()));
        tags.push(("WFE_ATTEMPT".into(), self.attempt.to_string()));
        tags
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

    #[tokio::test]
    async fn an_attempt_recorder_records_its_children_while_they_run() {
        use std::sync::Arc;

        use crate::process::{Capped, Captured, Supervisor, recording};

        let dir = TempDir::new().unwrap();
        let registry = ProcessRegistry::new(dir.path(), "r");
        let recorder = Arc::new(AttemptRecorder {
            registry: registry.clone(),
            phase: "agent".into(),
            attempt: 3,
            grace: Duration::from_millis(250),
        });
        let seen = registry.clone();
        let mut command = tokio::process::Command::new("/bin/sh");
        // Prints the record it sees while it runs: its own (written just
        // after the spawn, so it waits for it).
        command.arg("-c").arg(format!(
            "f={}/procs/r/$$.json; while [ ! -e $f ]; do sleep 0.01; done; echo $$; cat $f",
            dir.path().display()
        ));
        let mut out = Captured {
            stdout: Capped::new(4096, 0),
            stderr: Capped::new(4096, 0),
        };
        recording(
            recorder,
            Supervisor::new().run(command, std::future::pending(), &mut out),
        )
        .await
        .unwrap();
        let text = String::from_utf8(out.stdout.into_bytes()).unwrap();
        let (pid, json) = text.split_once('\n').unwrap();
        let record: ProcessRecord = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(record.pgid.to_string(), pid);
        assert_eq!(
            (record.phase.as_str(), record.attempt, record.grace_ms),
            ("agent", 3, 250)
        );
        // Forgotten once the run ended; outside `recording` nothing is recorded.
        assert!(seen.leftovers().unwrap().is_empty());
        let mut out = Captured {
            stdout: Capped::new(64, 0),
            stderr: Capped::new(64, 0),
        };
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(format!("ls {}/procs/r | wc -l", dir.path().display()));
        Supervisor::new()
            .run(command, std::future::pending(), &mut out)
            .await
            .unwrap();
        assert_eq!(out.stdout.into_bytes(), b"0\n");
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
