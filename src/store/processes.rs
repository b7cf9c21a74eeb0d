//! The attempt registry: which process groups a run's attempts started,
//! kept where the next runner of the run finds them.
//!
//! A runner that dies without cleaning up (kill -9, OOM, power loss)
//! leaves its phases' process groups running; the next runner must end
//! them before it starts a new attempt of the same phase, or the two would
//! race in one working tree. So each runner keeps one append-only log,
//! `<git-dir>/wfe/procs/<run>/<runner pid>.<its start time>.log`, opened once: a line
//! `+{record}` when an attempt's group spawns, `-<pgid>` when it has
//! ended. A group with a `+` line and no `-` line after it, in a log whose
//! writer is gone (its name says which process, even after its pid is
//! reused), is left over; a live writer's (another worker of the run in
//! this clone) is running. One `write` per line to a file opened with `O_APPEND` costs no
//! file creation, rename or unlink per phase (a file per attempt did: three
//! metadata operations per phase, a tenth of a millisecond to a
//! millisecond each on disk). A line cut short by a crash does not parse
//! and is skipped: its group was never recorded, as before a file that was
//! never renamed into place. The files live under the git dir, beside the
//! locks, and are never committed: they describe this machine's
//! processes, not the run.
//!
//! This module only reads and writes the records; ending the processes is
//! [`crate::process::end_leftover`]'s, deciding when is the runner's.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
#[derive(Debug, Clone)]
pub struct ProcessRegistry {
    dir: PathBuf,
    /// This process's log, opened on the first record; shared by clones
    /// (every attempt of a runner appends to the one file).
    own: Arc<Mutex<OwnLog>>,
    /// The token naming the process that drives the attempts, if any.
    driver: Option<String>,
}

impl PartialEq for ProcessRegistry {
    fn eq(&self, other: &ProcessRegistry) -> bool {
        self.dir == other.dir
    }
}

impl Eq for ProcessRegistry {}

/// This process's log and the groups it names that have not ended.
#[derive(Debug, Default)]
struct OwnLog {
    file: Option<File>,
    open: usize,
}

/// The most a log is read of: two short lines per attempt a runner
/// started, so about 300,000 attempts.
const LOG_LIMIT: u64 = crate::bounded::FIXTURE_LIMIT;

/// See [`ProcessRegistry::tag`].
const TAG: &str = "WFE_RUN_KEY";

/// See [`ProcessRegistry::driver_tag`].
const DRIVER_TAG: &str = ProcessRegistry::DRIVER_VAR;

/// A record written for a running attempt; [`ProcessRegistry::remove`]
/// marks it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The log that holds the record.
    log: PathBuf,
    pgid: u32,
}

impl ProcessRegistry {
    /// The variable naming the process that drives an attempt (its
    /// [`crate::process::own_token`]).
    pub const DRIVER_VAR: &'static str = "WFE_DRIVER";

    /// The registry of `run` under `wfe_dir` (`<git-dir>/wfe`).
    pub fn new(wfe_dir: &Path, run: &str) -> ProcessRegistry {
        ProcessRegistry {
            dir: wfe_dir.join("procs").join(run),
            own: Arc::default(),
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

    /// This process's log.
    fn own_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}.log", crate::process::own_token()))
    }

    /// Appends `record` to this process's log (one `write`, so a reader
    /// sees the whole line or, after a crash, a torn one it skips).
    pub fn record(&self, record: &ProcessRecord) -> io::Result<Registered> {
        let mut line = b"+".to_vec();
        serde_json::to_writer(&mut line, record).map_err(io::Error::other)?;
        line.push(b'\n');
        let log = self.own_path();
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        if own.file.is_none() {
            fs::create_dir_all(&self.dir)?;
            own.file = Some(append_to(&log, true)?);
        }
        if let Some(file) = &mut own.file {
            file.write_all(&line)?;
        }
        own.open += 1;
        Ok(Registered {
            log,
            pgid: record.pgid,
        })
    }

    /// Marks a record's attempt ended (ended already, or its log gone, is
    /// fine). A log of a runner that is gone is deleted once every group
    /// it names has ended.
    pub fn remove(&self, registered: &Registered) -> io::Result<()> {
        let line = format!("-{}\n", registered.pgid);
        if registered.log == self.own_path() {
            let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(file) = &mut own.file {
                file.write_all(line.as_bytes())?;
                own.open = own.open.saturating_sub(1);
                return Ok(());
            }
        }
        match append_to(&registered.log, false) {
            Ok(mut file) => file.write_all(line.as_bytes())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        if read_log(&registered.log)?.is_empty() {
            remove_file(&registered.log)?;
        }
        Ok(())
    }

    /// Every record left (in every log but this process's own), with what
    /// to pass to [`ProcessRegistry::remove`] once it is dealt with. A log
    /// whose groups have all ended is removed, and so is any other file:
    /// a record file of an older wfe that does not parse can only be a
    /// write cut short, whose process was never recorded.
    pub fn leftovers(&self) -> io::Result<Vec<(Registered, ProcessRecord)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let own = self.own_path();
        let mut found = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path == own {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // A live runner's or worker's (a second worker of the run in
            // this clone): its groups are running, not left over.
            if name
                .strip_suffix(".log")
                .is_some_and(crate::process::token_alive)
            {
                continue;
            }
            let open = if name.ends_with(".log") {
                read_log(&path)?
            } else {
                Vec::new()
            };
            if open.is_empty() {
                remove_file(&path)?;
                continue;
            }
            for record in open {
                let registered = Registered {
                    log: path.clone(),
                    pgid: record.pgid,
                };
                found.push((registered, record));
            }
        }
        found.sort_by(|a, b| (&a.1.phase, a.1.attempt).cmp(&(&b.1.phase, b.1.attempt)));
        Ok(found)
    }

    /// After the run ended: deletes this process's log when every group it
    /// names has ended, then the run's directory once it is empty.
    pub fn tidy(&self) {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        if own.open == 0 && own.file.take().is_some() {
            let _ = remove_file(&self.own_path());
        }
        // Not empty (an attempt still recorded) or already gone: both fine.
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Opens `path` for appending (`create`: making it when missing).
fn append_to(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new().append(true).create(create).open(path)
}

/// The records of a log whose groups have not ended, in the order they
/// were written. Lines that do not parse (a write cut short) are skipped.
fn read_log(path: &Path) -> io::Result<Vec<ProcessRecord>> {
    let bytes = match crate::bounded::read_no_follow(path, LOG_LIMIT) {
        Ok(bytes) => bytes,
        Err(crate::bounded::ReadError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::other(e)),
    };
    // Keyed by the order of the `+` line; a pgid maps to its latest one.
    let mut open: BTreeMap<usize, ProcessRecord> = BTreeMap::new();
    let mut by_pgid: BTreeMap<u32, usize> = BTreeMap::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        match line.split_first() {
            Some((b'+', json)) => {
                if let Ok(record) = serde_json::from_slice::<ProcessRecord>(json) {
                    if let Some(old) = by_pgid.insert(record.pgid, n) {
                        open.remove(&old);
                    }
                    open.insert(n, record);
                }
            }
            Some((b'-', pgid)) => {
                let pgid = std::str::from_utf8(pgid).ok().and_then(|p| p.parse().ok());
                if let Some(old) = pgid.and_then(|p: u32| by_pgid.remove(&p)) {
                    open.remove(&old);
                }
            }
            _ => {}
        }
    }
    Ok(open.into_values().collect())
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

    /// Another process's registry of the same run: what a later runner
    /// (or `wfe cancel`) sees of this one's log.
    fn as_other_process(registry: &ProcessRegistry, pid: u32) -> PathBuf {
        let ours = registry.own_path();
        let theirs = registry.dir.join(format!("{pid}.log"));
        fs::rename(&ours, &theirs).unwrap();
        theirs
    }

    #[test]
    fn records_are_found_until_removed() {
        let dir = TempDir::new().unwrap();
        let registry = ProcessRegistry::new(dir.path(), "run-1");
        assert_eq!(registry.leftovers().unwrap(), Vec::new());
        registry.record(&record("build", 2, 900)).unwrap();
        registry.record(&record("a[1]/x", 1, 800)).unwrap();
        let ended = registry.record(&record("c", 1, 700)).unwrap();
        registry.remove(&ended).unwrap();
        // One file for all of them, appended to.
        let names: Vec<_> = fs::read_dir(dir.path().join("procs/run-1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [format!("{}.log", crate::process::own_token()).as_str()]
        );
        // The runner's own log is not its leftovers; a later runner's are.
        assert!(registry.leftovers().unwrap().is_empty());
        let log = as_other_process(&registry, 1);
        let later = ProcessRegistry::new(dir.path(), "run-1");
        let found = later.leftovers().unwrap();
        let records: Vec<ProcessRecord> = found.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(records, [record("a[1]/x", 1, 800), record("build", 2, 900)]);
        later.remove(&found[0].0).unwrap();
        later.remove(&found[0].0).unwrap();
        assert_eq!(later.leftovers().unwrap().len(), 1);
        assert!(log.exists());
        // The last group of a gone runner's log ended: the log goes too.
        later.remove(&found[1].0).unwrap();
        assert!(!log.exists());
        later.tidy();
        assert!(!dir.path().join("procs/run-1").exists());
        // Another run's records are its own.
        let other = ProcessRegistry::new(dir.path(), "run-2");
        other.record(&record("x", 1, 1)).unwrap();
        as_other_process(&other, 2);
        assert!(later.leftovers().unwrap().is_empty());
        assert_eq!(
            ProcessRegistry::new(dir.path(), "run-2")
                .leftovers()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn tidy_keeps_a_log_that_names_a_running_group() {
        let dir = TempDir::new().unwrap();
        let registry = ProcessRegistry::new(dir.path(), "r");
        let done = registry.record(&record("a", 1, 10)).unwrap();
        registry.record(&record("b", 1, 11)).unwrap();
        registry.remove(&done).unwrap();
        registry.tidy();
        let log = as_other_process(&registry, 3);
        let found = ProcessRegistry::new(dir.path(), "r").leftovers().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, record("b", 1, 11));
        assert!(log.exists());
        // A runner whose groups all ended leaves nothing.
        let clean = ProcessRegistry::new(dir.path(), "s");
        let a = clean.record(&record("a", 1, 12)).unwrap();
        clean.remove(&a).unwrap();
        clean.tidy();
        assert!(!dir.path().join("procs/s").exists());
    }

    #[test]
    fn a_reused_pgid_is_open_once() {
        let dir = TempDir::new().unwrap();
        let registry = ProcessRegistry::new(dir.path(), "r");
        let first = registry.record(&record("a", 1, 10)).unwrap();
        registry.remove(&first).unwrap();
        registry.record(&record("b", 1, 10)).unwrap();
        as_other_process(&registry, 4);
        let found = ProcessRegistry::new(dir.path(), "r").leftovers().unwrap();
        let records: Vec<ProcessRecord> = found.into_iter().map(|(_, r)| r).collect();
        assert_eq!(records, [record("b", 1, 10)]);
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
            "f={}/procs/r/{}.log; while ! grep -q \"pgid\\\":$$,\" $f 2>/dev/null; do sleep 0.01; done; echo $$; cut -c2- $f",
            dir.path().display(),
            crate::process::own_token()
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
        registry.tidy();
        command.arg("-c").arg(format!(
            "ls {}/procs/r 2>/dev/null | wc -l",
            dir.path().display()
        ));
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
        let log = as_other_process(&registry, 5);
        let mut file = append_to(&log, false).unwrap();
        file.write_all(b"+{\"phase\": ").unwrap();
        let procs = dir.path().join("procs/r");
        // Files an older wfe left: a record cut short, a temporary file.
        fs::write(procs.join("8.json"), b"{\"phase\": ").unwrap();
        fs::write(procs.join(".9.json.tmp"), b"{").unwrap();
        let found = ProcessRegistry::new(dir.path(), "r").leftovers().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.pgid, 7);
        assert!(!procs.join("8.json").exists());
        assert!(!procs.join(".9.json.tmp").exists());
    }
}
