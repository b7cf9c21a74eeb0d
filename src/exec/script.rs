//! Script phases: `sh -c` in its own process group, lines captured live,
//! outputs read from `$WFE_OUT` and validated.
//!
//! One call of [`run_script`] is one attempt. It owns the attempt's scratch
//! directory (`in/` and `out/`), the child process and the process group the
//! child leads. A timeout, a cancel, or dropping the attempt kills the whole
//! group; so does a normal exit that leaves processes holding the script's
//! stdout/stderr. Only a background process that let go of both pipes, or
//! one that left the group, outlives a normal exit. It never touches the
//! store and never fails by panicking: every failure is an [`AttemptError`]
//! in the outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::watch;

use super::files::{self, FilesJob};
use crate::artifact::{ArtifactError, OutputSpec, Violation, parse_json_document};
use crate::attempt::{ArtifactProblem, AttemptError, AttemptLog, AttemptOutcome, LogSink, Stream};
use crate::process::{Event, Group, Output, Pipe, Stop, Supervisor, cancelled};
use crate::retry::DurationSpec;
use crate::secret::Masker;
use crate::store::{ProcessRecord, ProcessRegistry, Registered};
use crate::time::Clock;

/// `$WFE_OUT/files/`: everything a script writes here is kept as file artifacts.
const FILES_DIR: &str = "files";

/// The shell scripts run in, by absolute path: looking `sh` up in `PATH`
/// costs a failed `execve` per `PATH` entry before it, on every phase.
const SHELL: &str = "/bin/sh";

/// Longest log line kept; the rest of the line is dropped and counted, so
/// one runaway line (a minified bundle, a binary blob) cannot eat memory.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// How long to wait for stdout/stderr to reach end-of-file after the shell
/// has exited. A background child can hold the pipes open forever; the
/// attempt must still end.
const DRAIN_BOUND: Duration = Duration::from_secs(2);

/// How long to wait for the pipes once the group has been killed, and for a
/// killed shell to be reaped. `SIGKILL` acts at once unless a process is
/// stuck in the kernel, which must not hang the attempt either.
const AFTER_KILL_BOUND: Duration = Duration::from_millis(500);

/// Everything needed to run one attempt of a script phase.
#[derive(Debug, Clone)]
pub struct ScriptJob {
    /// The run's id (`WFE_RUN`).
    pub run: String,
    /// The phase's id (`WFE_PHASE`).
    pub phase: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The rendered command for `sh -c`.
    pub command: String,
    /// The working directory (absolute).
    pub cwd: PathBuf,
    /// Extra environment: `WFE_ARG_*` and the phase's rendered `env`.
    pub env: Vec<(String, String)>,
    /// Input artifacts `(phase, name, bytes)` written to
    /// `$WFE_IN/<phase>/<name>.json` before start.
    pub inputs: Vec<(String, String, Vec<u8>)>,
    /// Outputs to read from `$WFE_OUT` and validate after a zero exit.
    pub outputs: Vec<OutputSpec>,
    /// A scratch directory for this attempt; `in/` and `out/` are made inside it.
    pub scratch: PathBuf,
    /// Kill the process group after this long.
    pub timeout: Option<Duration>,
    /// On a stop (timeout, cancel, interrupt): `SIGTERM` to the group, this
    /// long for it to exit (its `trap … EXIT` cleanup), then `SIGKILL`.
    pub kill_grace: Duration,
    /// Where the attempt's process group is recorded while it runs, for a
    /// later runner to end if this one dies (none: not recorded).
    pub processes: Option<ProcessRegistry>,
    /// How people see the phase (`build`, `loop[2]/child`), for the record.
    pub label: String,
    /// Largest accepted output file in bytes.
    pub max_artifact_bytes: u64,
    /// Bytes of output text the attempt's committed log keeps (head and tail).
    pub max_log_bytes: u64,
    /// Variables removed from the inherited environment (provider keys
    /// the phase did not ask for by name).
    pub env_remove: Vec<String>,
    /// Secrets masked in every log line.
    pub masker: Masker,
    /// File artifacts to keep after a zero exit (declared ones and `$WFE_OUT/files/`).
    pub files: FilesJob,
}

/// Runs one attempt; `cancel` turning true stops the process group
/// (`SIGTERM`, the job's `kill_grace`, then `SIGKILL`).
///
/// The environment is the parent's without `env_remove`, plus the job's `env`, plus `WFE_RUN`,
/// `WFE_PHASE`, `WFE_ATTEMPT`, `WFE_IN` and `WFE_OUT` (which the job's `env`
/// cannot override: outputs are only ever read from the real `$WFE_OUT`).
pub async fn run_script(
    job: ScriptJob,
    cancel: watch::Receiver<bool>,
    sink: Arc<dyn LogSink>,
    clock: Clock,
) -> AttemptOutcome {
    let log = AttemptLog::new(&job.phase, job.attempt, sink, clock)
        .masking(job.masker.clone())
        .capped(job.max_log_bytes);
    let mut rejected = Vec::new();
    let mut kept = Vec::new();
    let (result, exit_code) = match attempt(&job, cancel, &log).await {
        Ok(Finished::Exited(0)) => (
            collect_outputs(&job, &log, &mut rejected, &mut kept).await,
            Some(0),
        ),
        Ok(Finished::Exited(code)) => (Err(AttemptError::Exit { code }), Some(code)),
        Ok(Finished::Signalled(signal)) => (Err(AttemptError::Signal { signal }), None),
        Err(e) => (Err(e), None),
    };
    AttemptOutcome {
        result,
        exit_code,
        log: log.take(),
        rejected,
        usage: None,
        files: kept,
    }
}

/// How the shell ended, when it ended on its own.
enum Finished {
    Exited(i32),
    Signalled(i32),
}

/// Prepares the scratch directory, then runs the shell under the process
/// supervisor: its lines go to `log` as they are read, a timeout or cancel
/// kills its group.
async fn attempt(
    job: &ScriptJob,
    mut cancel: watch::Receiver<bool>,
    log: &AttemptLog,
) -> Result<Finished, AttemptError> {
    let (in_dir, out_dir) = prepare_scratch(job).await?;
    if *cancel.borrow() {
        log.push(Stream::Wfe, "cancelled before the script started".into());
        return Err(AttemptError::Cancelled);
    }

    let mut command = Command::new(SHELL);
    for var in &job.env_remove {
        command.env_remove(var);
    }
    command
        .arg("-c")
        .arg(&job.command)
        .current_dir(&job.cwd)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .env("WFE_RUN", &job.run)
        .env("WFE_PHASE", &job.phase)
        .env("WFE_ATTEMPT", job.attempt.to_string())
        .env("WFE_IN", &in_dir)
        .env("WFE_OUT", &out_dir);
    if let Some(registry) = &job.processes {
        command.envs(registry.tags());
    }
    let supervisor = Supervisor::new()
        .timeout(job.timeout)
        .grace(job.kill_grace)
        .drain(DRAIN_BOUND)
        .after_kill(AFTER_KILL_BOUND);
    let mut lines = Lines::new(log, job);
    let report = supervisor
        .run(command, cancelled(&mut cancel), &mut lines)
        .await;
    // The group is stopped (or exited on its own): nothing of it is left
    // for a later runner to end.
    if let (Some(registry), Some(registered)) = (&job.processes, &lines.registered)
        && let Err(e) = registry.remove(registered)
    {
        log.push(
            Stream::Wfe,
            format!("cannot remove the record of the script's process group: {e}"),
        );
    }
    let report = match report {
        Ok(report) => report,
        Err(e) => return Err(spawn_error(&job.cwd, &e).await),
    };
    match report.status {
        Ok(status) => finished(status),
        Err(Stop::TimedOut(after)) => Err(AttemptError::TimedOut {
            after: DurationSpec(after).to_string(),
        }),
        Err(Stop::Cancelled) => Err(AttemptError::Cancelled),
        Err(Stop::WaitFailed(e)) => Err(internal(format!("cannot wait for the script: {e}"))),
    }
}

/// Maps the shell's exit status.
fn finished(status: ExitStatus) -> Result<Finished, AttemptError> {
    if let Some(code) = status.code() {
        Ok(Finished::Exited(code))
    } else if let Some(signal) = status.signal() {
        Ok(Finished::Signalled(signal))
    } else {
        Err(internal(format!(
            "the script ended with an unknown status: {status}"
        )))
    }
}

/// Says why the shell could not start, naming the working directory when
/// it is the problem (the OS error alone would not say which path).
async fn spawn_error(cwd: &Path, e: &io::Error) -> AttemptError {
    let message = match tokio::fs::metadata(cwd).await {
        Err(m) if m.kind() == io::ErrorKind::NotFound => {
            format!("the working directory {} does not exist", cwd.display())
        }
        Ok(m) if !m.is_dir() => {
            format!("the working directory {} is not a directory", cwd.display())
        }
        _ => format!("cannot run `sh -c` in {}: {e}", cwd.display()),
    };
    AttemptError::Spawn { message }
}

fn internal(message: String) -> AttemptError {
    AttemptError::Internal { message }
}

/// Empties `in/` and `out/` under the scratch directory (an earlier
/// attempt, or a crashed one, may have left files that would pass for this
/// attempt's outputs) and writes the inputs. The scratch directory is
/// reused from attempt to attempt: an `in/` or `out/` that is already an
/// empty directory is kept as it is, so a run of phases without inputs or
/// outputs creates and removes no directory per attempt.
///
/// The checks are plain blocking calls, on purpose: the usual case is two
/// directory reads of the attempt's own scratch directory, a few
/// microseconds each, while every `tokio::fs` call is a round trip
/// through the blocking pool (two thread wake-ups) that cost more than the
/// call and sat between one phase's exit and the next one's spawn. Only
/// removing what an earlier attempt left, which may be a large tree, goes
/// to the blocking pool.
async fn prepare_scratch(job: &ScriptJob) -> Result<(PathBuf, PathBuf), AttemptError> {
    let in_dir = job.scratch.join("in");
    let out_dir = job.scratch.join("out");
    for dir in [&in_dir, &out_dir] {
        if dir_names(dir).is_ok_and(|names| names.is_empty()) {
            continue;
        }
        let leftover = dir.clone();
        tokio::task::spawn_blocking(move || remove_leftover(&leftover))
            .await
            .map_err(|e| internal(format!("cannot remove leftover {}: {e}", dir.display())))??;
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    for (phase, name, bytes) in &job.inputs {
        for part in [phase, name] {
            if !is_plain_name(part) {
                return Err(internal(format!(
                    "input `{phase}.{name}`: `{part}` cannot be used as a file name"
                )));
            }
        }
        let dir = in_dir.join(phase);
        let path = dir.join(format!("{name}.json"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        std::fs::write(&path, bytes)
            .map_err(|e| internal(format!("cannot write input {}: {e}", path.display())))?;
    }
    Ok((in_dir, out_dir))
}

/// The names in directory `path` (not `.` and `..`); an error when it is
/// missing, is not a directory, or is a symbolic link (never followed).
/// One `open`, the `getdents` calls and a `close`: no `stat`, which
/// `O_DIRECTORY | O_NOFOLLOW` makes unneeded.
fn dir_names(path: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut dir = rustix::fs::Dir::new(fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            use std::os::unix::ffi::OsStrExt;
            names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

fn remove_leftover(path: &Path) -> Result<(), AttemptError> {
    let removed = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    removed.map_err(|e| internal(format!("cannot remove leftover {}: {e}", path.display())))
}

/// A name usable as one path component: not empty, no separator, not `.`/`..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The shell's output as log lines, and the supervisor's events as wfe's
/// own lines.
struct Lines<'a> {
    log: &'a AttemptLog,
    job: &'a ScriptJob,
    stdout: LineBuf,
    stderr: LineBuf,
    /// The record of the attempt's process group, once written.
    registered: Option<Registered>,
}

impl<'a> Lines<'a> {
    fn new(log: &'a AttemptLog, job: &'a ScriptJob) -> Lines<'a> {
        Lines {
            log,
            job,
            stdout: LineBuf::default(),
            stderr: LineBuf::default(),
            registered: None,
        }
    }

    fn buf(&mut self, pipe: Pipe) -> (&mut LineBuf, Stream) {
        match pipe {
            Pipe::Stdout => (&mut self.stdout, Stream::Stdout),
            Pipe::Stderr => (&mut self.stderr, Stream::Stderr),
        }
    }
}

impl Output for Lines<'_> {
    fn spawned(&mut self, group: Group) {
        let Some(registry) = &self.job.processes else {
            return;
        };
        let record = ProcessRecord {
            phase: self.job.label.clone(),
            attempt: self.job.attempt,
            pgid: group.pgid,
            start_time: group.start_time,
            grace_ms: u64::try_from(self.job.kill_grace.as_millis()).unwrap_or(u64::MAX),
        };
        // Not fatal: the attempt runs as before; only a runner that dies
        // now could leave it behind unnoticed, and the log says so.
        match registry.record(&record) {
            Ok(registered) => self.registered = Some(registered),
            Err(e) => self.log.push(
                Stream::Wfe,
                format!(
                    "cannot record the script's process group {}: {e}",
                    group.pgid
                ),
            ),
        }
    }

    fn read(&mut self, pipe: Pipe, mut bytes: &[u8]) {
        let log = self.log;
        let (line, stream) = self.buf(pipe);
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            line.extend(&bytes[..end]);
            log.push(stream, line.take());
            bytes = &bytes[end + 1..];
        }
        line.extend(bytes);
    }

    fn closed(&mut self, pipe: Pipe, error: Option<&io::Error>) {
        let log = self.log;
        if let Some(e) = error {
            log.push(
                Stream::Wfe,
                format!("cannot read the script's {}: {e}", pipe.name()),
            );
        }
        // A last line without a newline.
        let (line, stream) = self.buf(pipe);
        if !line.is_empty() {
            log.push(stream, line.take());
        }
    }

    fn event(&mut self, event: Event<'_>) {
        let line = match event {
            Event::Stopped(Stop::TimedOut(after)) => {
                format!("killed: timed out after {}", DurationSpec(*after))
            }
            Event::Stopped(Stop::Cancelled) => "killed: cancelled".to_string(),
            Event::Stopped(Stop::WaitFailed(e)) => {
                format!("killed: cannot wait for the script: {e}")
            }
            Event::KillFailed {
                pgid: Some(pgid),
                error,
            } => format!("cannot kill process group {pgid}: {error}"),
            Event::KillFailed { pgid: None, .. } => {
                "cannot kill the script: its process id is unknown".to_string()
            }
            Event::ReapFailed(e) => format!("cannot reap the killed script: {e}"),
            Event::NotReaped(after) => format!(
                "the script had not exited {} after SIGKILL",
                DurationSpec(after)
            ),
            Event::Holders { pgid, after } => {
                let holder = "processes started by the script kept stdout/stderr open";
                let after = DurationSpec(after);
                match pgid {
                    Some(pgid) => {
                        format!("{holder} {after} after it exited: killing process group {pgid}")
                    }
                    None => format!("{holder} {after} after it exited"),
                }
            }
            Event::Abandoned => "stopped reading output: a process outside the script's group still holds stdout/stderr".to_string(),
        };
        self.log.push(Stream::Wfe, line);
    }
}

/// One line being assembled, capped at [`MAX_LINE_BYTES`].
#[derive(Default)]
struct LineBuf {
    bytes: Vec<u8>,
    /// Bytes past the cap, dropped.
    dropped: usize,
}

impl LineBuf {
    fn extend(&mut self, chunk: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.bytes.len());
        let kept = chunk.len().min(room);
        self.bytes.extend_from_slice(&chunk[..kept]);
        self.dropped += chunk.len() - kept;
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }

    /// The line as text (invalid UTF-8 replaced), resetting the buffer.
    fn take(&mut self) -> String {
        if self.dropped == 0 && self.bytes.last() == Some(&b'\r') {
            self.bytes.pop();
        }
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!(
                " [line truncated: {} more bytes not kept]",
                self.dropped
            ));
        }
        self.bytes.clear();
        self.dropped = 0;
        text
    }
}

/// Reads and validates every declared output after a zero exit. All
/// problems are reported together, so one retry can fix them all.
async fn collect_outputs(
    job: &ScriptJob,
    log: &AttemptLog,
    rejected: &mut Vec<(String, Vec<u8>)>,
    kept: &mut Vec<crate::attempt::OutputFile>,
) -> Result<BTreeMap<String, Value>, AttemptError> {
    let out_dir = job.scratch.join("out");
    // One listing of `out/` (cheap, see `prepare_scratch`) says what the
    // script left there: undeclared files to note, and whether there is
    // a `files/` to walk at all.
    let names = dir_names(&out_dir).ok();
    if let Some(names) = &names {
        note_undeclared(names, &job.outputs, log);
    }
    let mut artifacts = BTreeMap::new();
    let mut problems = Vec::new();
    for spec in &job.outputs {
        match check_output(spec, &out_dir, job.max_artifact_bytes).await {
            Ok(doc) => {
                artifacts.insert(spec.name.clone(), doc);
            }
            Err(rejection) => {
                if let Some(bytes) = rejection.bytes {
                    rejected.push((spec.name.clone(), bytes));
                }
                problems.push(ArtifactProblem {
                    artifact: spec.name.clone(),
                    schema: spec.schema.name().to_string(),
                    message: rejection.message,
                    violations: rejection.violations,
                });
            }
        }
    }
    // Nothing declared and no `files/` written (most phases): nothing to
    // collect, so no round trip through the blocking pool.
    let nothing_to_collect = job.files.outputs.is_empty()
        && names
            .as_ref()
            .is_some_and(|names| !names.iter().any(|n| n == FILES_DIR));
    // Walking and reading up to `max_files_bytes` is blocking file I/O.
    let files_job = job.files.clone();
    let out_files = out_dir.join(FILES_DIR);
    let collected = if nothing_to_collect {
        Ok(Ok(Vec::new()))
    } else {
        tokio::task::spawn_blocking(move || files::collect(&files_job, &out_files)).await
    };
    let collected = collected.unwrap_or_else(|e| {
        Err(vec![ArtifactProblem {
            artifact: FILES_DIR.into(),
            schema: "files".into(),
            message: format!("collecting file artifacts failed: {e}"),
            violations: Vec::new(),
        }])
    });
    match collected {
        Ok(found) => *kept = found,
        Err(more) => problems.extend(more),
    }
    if problems.is_empty() {
        Ok(artifacts)
    } else {
        kept.clear();
        Err(AttemptError::InvalidOutputs { problems })
    }
}

/// Why one output was not accepted.
struct Rejection {
    message: String,
    violations: Vec<Violation>,
    /// The file's bytes, when it could be read: kept for inspection.
    bytes: Option<Vec<u8>>,
}

impl Rejection {
    fn new(message: String) -> Self {
        Rejection {
            message,
            violations: Vec::new(),
            bytes: None,
        }
    }
}

/// Reads `$WFE_OUT/<name>.json`, parses it and validates it against its schema.
async fn check_output(spec: &OutputSpec, out_dir: &Path, max: u64) -> Result<Value, Rejection> {
    let file = format!("$WFE_OUT/{}.json", spec.name);
    if !is_plain_name(&spec.name) {
        let message = format!("`{}` cannot be used as a file name", spec.name);
        return Err(Rejection::new(message));
    }
    let path = out_dir.join(format!("{}.json", spec.name));
    let bytes = match read_capped(&path, max).await {
        Ok(Read::Bytes(bytes)) => bytes,
        Ok(Read::TooLarge(size)) => {
            let message = format!("too large: {file} has {size} bytes, the limit is {max}");
            return Err(Rejection::new(message));
        }
        Ok(Read::NotAFile(kind)) => {
            let message = format!("{file} is {kind}, not a regular file; it was not read");
            return Err(Rejection::new(message));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let message = format!("missing: the script did not write {file}");
            return Err(Rejection::new(message));
        }
        Err(e) => return Err(Rejection::new(format!("cannot read {file}: {e}"))),
    };
    let doc = match parse_json_document(&file, &bytes) {
        Ok(doc) => doc,
        Err(e) => {
            let message = match e {
                ArtifactError::NotJson { message, .. } => format!("not JSON: {message}"),
                other => other.to_string(),
            };
            return Err(Rejection {
                bytes: Some(bytes),
                ..Rejection::new(message)
            });
        }
    };
    let violations = spec.schema.validate(&doc);
    if violations.is_empty() {
        return Ok(doc);
    }
    let n = violations.len();
    let message = format!(
        "does not match schema `{}`: {n} violation{}",
        spec.schema.name(),
        if n == 1 { "" } else { "s" }
    );
    Err(Rejection {
        message,
        violations,
        bytes: Some(bytes),
    })
}

/// What reading an output file gave.
enum Read {
    Bytes(Vec<u8>),
    TooLarge(u64),
    /// What it is instead ("a symbolic link", "a FIFO (named pipe)").
    NotAFile(&'static str),
}

/// Reads `path` if it is a regular file of at most `max` bytes, never
/// holding more than `max + 1` bytes in memory.
async fn read_capped(path: &Path, max: u64) -> io::Result<Read> {
    // O_NONBLOCK so a FIFO named like an output cannot block the open; the
    // type is then checked on the opened handle, which cannot be swapped.
    // O_NOFOLLOW: a script could link `$WFE_OUT/x.json` to any file the
    // user can read (`/etc/passwd`), which would then be committed.
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let opened = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits().cast_signed())
        .open(path)
        .await;
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(Read::NotAFile("a symbolic link"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata().await?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else if meta.file_type().is_fifo() {
            "a FIFO (named pipe)"
        } else {
            "a special file"
        };
        return Ok(Read::NotAFile(kind));
    }
    if meta.len() > max {
        return Ok(Read::TooLarge(meta.len()));
    }
    // The file may still grow (a background process writing to it), so the
    // read itself is capped too.
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    let len = bytes.len() as u64;
    if len > max {
        return Ok(Read::TooLarge(len));
    }
    Ok(Read::Bytes(bytes))
}

/// Notes files in `out/` (its `names`) that are not declared outputs:
/// they are ignored, and a script author will want to know why their
/// file went nowhere.
fn note_undeclared(names: &[std::ffi::OsString], outputs: &[OutputSpec], log: &AttemptLog) {
    let mut declared: BTreeSet<String> =
        outputs.iter().map(|o| format!("{}.json", o.name)).collect();
    declared.insert(FILES_DIR.to_string());
    let mut extra: Vec<String> = names
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !declared.contains(n))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        log.push(
            Stream::Wfe,
            format!(
                "ignored files in $WFE_OUT that are not declared outputs: {}",
                extra.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Instant, UNIX_EPOCH};

    use serde_json::json;
    use tempfile::TempDir;
    use tokio::sync::Notify;

    use super::*;
    use crate::artifact::Schema;
    use crate::attempt::LogLine;
    use crate::testing::process::live_members;

    /// A sink that keeps every line and signals when the script prints
    /// `started`, so a test can act while the script is running.
    #[derive(Default)]
    struct Collect {
        lines: Mutex<Vec<(String, LogLine)>>,
        started: Notify,
    }

    impl LogSink for Collect {
        fn line(&self, phase: &str, line: &LogLine) {
            self.lines
                .lock()
                .unwrap()
                .push((phase.to_string(), line.clone()));
            if line.line == "started" {
                self.started.notify_one();
            }
        }
    }

    /// A job in a fresh temp dir: `work/` is the cwd, `scratch/` the scratch.
    fn job(dir: &TempDir, command: &str) -> ScriptJob {
        let cwd = dir.path().join("work");
        std::fs::create_dir_all(&cwd).unwrap();
        ScriptJob {
            run: "01jtestrun".into(),
            phase: "build".into(),
            attempt: 2,
            command: command.into(),
            cwd,
            env: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            scratch: dir.path().join("scratch"),
            // Only a guard against a hung test; no test waits for it.
            timeout: Some(Duration::from_secs(60)),
            kill_grace: Duration::ZERO,
            processes: None,
            label: "build".into(),
            max_artifact_bytes: 1 << 20,
            max_log_bytes: 1 << 20,
            env_remove: Vec::new(),
            masker: Masker::default(),
            files: FilesJob::default(),
        }
    }

    fn output(name: &str, schema: Value) -> OutputSpec {
        OutputSpec {
            name: name.into(),
            schema: Arc::new(Schema::compile(name, "test", schema).unwrap()),
        }
    }

    fn report_schema() -> Value {
        json!({
            "type": "object",
            "required": ["ok"],
            "properties": {
                "ok": { "type": "boolean" },
                "count": { "type": "integer", "minimum": 0 }
            }
        })
    }

    async fn run(job: ScriptJob) -> (AttemptOutcome, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        let (_cancel, rx) = watch::channel(false);
        let outcome = run_script(job, rx, sink.clone(), Clock::system()).await;
        (outcome, sink)
    }

    fn texts(outcome: &AttemptOutcome, stream: Stream) -> Vec<&str> {
        outcome
            .log
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.line.as_str())
            .collect()
    }

    fn problems(outcome: &AttemptOutcome) -> &[ArtifactProblem] {
        match &outcome.result {
            Err(AttemptError::InvalidOutputs { problems }) => problems,
            other => panic!("expected InvalidOutputs, got {other:?}"),
        }
    }

    /// A command that records its process group id in `dir/pgid`, then
    /// runs `rest`.
    fn recording_pgid(dir: &TempDir, rest: &str) -> String {
        format!("echo $$ > '{}'; {rest}", dir.path().join("pgid").display())
    }

    fn recorded_pgid(dir: &TempDir) -> u32 {
        let text = std::fs::read_to_string(dir.path().join("pgid")).unwrap();
        text.trim().parse().unwrap()
    }

    #[tokio::test]
    async fn sets_the_environment_and_the_working_directory() {
        let dir = TempDir::new().unwrap();
        let mut job = job(
            &dir,
            r#"echo "$WFE_RUN $WFE_PHASE $WFE_ATTEMPT $WFE_ARG_X"; pwd -P; echo "$WFE_IN"; echo "$WFE_OUT"; test -n "$PATH" && echo inherited"#,
        );
        job.env = vec![
            ("WFE_ARG_X".into(), "it's \"quoted\"".into()),
            // The real scratch directories win over the job's env.
            ("WFE_OUT".into(), "/elsewhere".into()),
        ];
        let scratch = job.scratch.clone();
        let (outcome, _) = run(job).await;
        assert_eq!(outcome.result, Ok(BTreeMap::new()));
        assert_eq!(outcome.exit_code, Some(0));
        let cwd = dir.path().join("work").canonicalize().unwrap();
        assert_eq!(
            texts(&outcome, Stream::Stdout),
            [
                "01jtestrun build 2 it's \"quoted\"",
                &cwd.display().to_string(),
                &scratch.join("in").display().to_string(),
                &scratch.join("out").display().to_string(),
                "inherited",
            ]
        );
    }

    #[tokio::test]
    async fn removed_variables_are_not_inherited_and_secrets_are_masked_live() {
        let dir = TempDir::new().unwrap();
        // PATH and HOME are inherited from the test process; HOME stands in
        // for a provider key (setting a variable of this process would race).
        let mut job = job(
            &dir,
            r#"printenv HOME || echo no-home; test -n "$PATH" && echo has-path; echo "the secret is $SECRET_X"; echo "$SHORT" ; echo "$SHORT$SHORT""#,
        );
        job.env_remove = vec!["HOME".into()];
        job.env = vec![
            ("SECRET_X".into(), "s3cr3t-value-0001".into()),
            ("SHORT".into(), "abc".into()),
        ];
        job.masker = Masker::new(["s3cr3t-value-0001", "abc"]);
        let (outcome, seen) = run(job).await;
        assert_eq!(outcome.exit_code, Some(0));
        let expected = ["no-home", "has-path", "the secret is ***", "***", "abcabc"];
        assert_eq!(texts(&outcome, Stream::Stdout), expected);
        // What was shown live is masked as well.
        let shown: Vec<String> = seen
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.stream == Stream::Stdout)
            .map(|(_, l)| l.line.clone())
            .collect();
        assert_eq!(shown, expected);
    }

    #[tokio::test]
    async fn a_secret_split_across_reads_or_lines_is_masked() {
        let dir = TempDir::new().unwrap();
        // Half of the secret, a pause (so the other half comes in another
        // read of the pipe), the rest; then a secret of two lines.
        let job = job(
            &dir,
            "printf 'split s3cr3t-'; sleep 0.2; printf 'value-0001 here\n'; \
             printf 'pem: first-line-of-key\nsecond-line-of-key end\n' >&2",
        );
        let job = ScriptJob {
            masker: Masker::new(["s3cr3t-value-0001", "first-line-of-key\nsecond-line-of-key"]),
            ..job
        };
        let (outcome, _) = run(job).await;
        assert_eq!(texts(&outcome, Stream::Stdout), ["split *** here"]);
        assert_eq!(texts(&outcome, Stream::Stderr), ["pem: ***", "*** end"]);
    }

    #[tokio::test]
    async fn captures_both_streams_live_and_in_order() {
        let dir = TempDir::new().unwrap();
        let job = job(
            &dir,
            r"echo out1; echo err1 >&2; echo out2; printf 'crlf\r\n'; printf 'bad \377\376 bytes\n'; echo err2 >&2; printf 'last'",
        );
        let sink = Arc::new(Collect::default());
        let (_cancel, rx) = watch::channel(false);
        let clock = Clock::fixed(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        let outcome = run_script(job, rx, sink.clone(), clock).await;
        assert_eq!(outcome.result, Ok(BTreeMap::new()));
        assert_eq!(
            texts(&outcome, Stream::Stdout),
            ["out1", "out2", "crlf", "bad \u{FFFD}\u{FFFD} bytes", "last"]
        );
        assert_eq!(texts(&outcome, Stream::Stderr), ["err1", "err2"]);
        assert!(texts(&outcome, Stream::Wfe).is_empty());
        assert!(outcome.log.iter().all(|l| l.attempt == 2));
        assert!(
            outcome
                .log
                .iter()
                .all(|l| l.time == "2023-11-14T22:13:20.123Z")
        );
        // The sink got every line, for this phase, in the stored order.
        let seen = sink.lines.lock().unwrap().clone();
        assert!(seen.iter().all(|(phase, _)| phase == "build"));
        let seen: Vec<LogLine> = seen.into_iter().map(|(_, l)| l).collect();
        assert_eq!(seen, outcome.log);
    }

    #[tokio::test]
    async fn caps_very_long_lines() {
        let dir = TempDir::new().unwrap();
        let job = job(
            &dir,
            "head -c 200000 /dev/zero | tr '\\0' a; echo; echo next",
        );
        let (outcome, _) = run(job).await;
        let lines = texts(&outcome, Stream::Stdout);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with(&"a".repeat(MAX_LINE_BYTES)));
        assert!(
            lines[0].ends_with(&format!(
                " [line truncated: {} more bytes not kept]",
                200_000 - MAX_LINE_BYTES
            )),
            "{}",
            &lines[0][MAX_LINE_BYTES..]
        );
        assert_eq!(lines[1], "next");
    }

    #[tokio::test]
    async fn writes_inputs_and_reads_valid_outputs() {
        let dir = TempDir::new().unwrap();
        let mut job = job(
            &dir,
            r#"cat "$WFE_IN/plan/spec.json" > "$WFE_OUT/report.json""#,
        );
        job.inputs = vec![(
            "plan".into(),
            "spec".into(),
            br#"{"ok": true, "count": 3}"#.to_vec(),
        )];
        job.outputs = vec![output("report", report_schema())];
        let (outcome, _) = run(job).await;
        let expected = BTreeMap::from([("report".to_string(), json!({"ok": true, "count": 3}))]);
        assert_eq!(outcome.result, Ok(expected));
        assert!(outcome.rejected.is_empty());
    }

    #[tokio::test]
    async fn removes_leftovers_of_a_crashed_attempt() {
        let dir = TempDir::new().unwrap();
        let mut job = job(&dir, r#"ls "$WFE_IN""#);
        std::fs::create_dir_all(job.scratch.join("in/old")).unwrap();
        std::fs::write(job.scratch.join("in/old/x.json"), "{}").unwrap();
        std::fs::create_dir_all(job.scratch.join("out")).unwrap();
        std::fs::write(job.scratch.join("out/report.json"), r#"{"ok": true}"#).unwrap();
        job.outputs = vec![output("report", report_schema())];
        let (outcome, _) = run(job).await;
        assert!(texts(&outcome, Stream::Stdout).is_empty());
        let problems = problems(&outcome);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.starts_with("missing: "));
    }

    #[tokio::test]
    async fn reports_every_problem_of_every_output() {
        let dir = TempDir::new().unwrap();
        let mut job = job(
            &dir,
            r#"echo '{"ok": "yes", "count": -1}' > "$WFE_OUT/report.json"; touch "$WFE_OUT/notes.txt""#,
        );
        job.outputs = vec![
            output("report", report_schema()),
            output("summary", json!({"type": "object"})),
        ];
        let (outcome, _) = run(job).await;
        let problems = problems(&outcome);
        assert_eq!(problems.len(), 2, "{problems:?}");

        let report = &problems[0];
        assert_eq!(report.artifact, "report");
        assert_eq!(report.schema, "report");
        assert_eq!(
            report.message,
            "does not match schema `report`: 2 violations"
        );
        let mut paths: Vec<&str> = report
            .violations
            .iter()
            .map(|v| v.instance_path.as_str())
            .collect();
        paths.sort_unstable();
        assert_eq!(paths, ["/count", "/ok"]);

        assert_eq!(problems[1].artifact, "summary");
        assert_eq!(
            problems[1].message,
            "missing: the script did not write $WFE_OUT/summary.json"
        );
        assert!(problems[1].violations.is_empty());

        assert_eq!(
            outcome.rejected,
            [(
                "report".to_string(),
                b"{\"ok\": \"yes\", \"count\": -1}\n".to_vec()
            )]
        );
        let notes = texts(&outcome, Stream::Wfe);
        assert_eq!(
            notes,
            ["ignored files in $WFE_OUT that are not declared outputs: notes.txt"]
        );
    }

    #[tokio::test]
    async fn rejects_files_that_are_not_acceptable_json() {
        // (command writing report.json, limit, message prefix, detail, bytes kept)
        let cases = [
            (
                r#"printf '{"ok": tru' > "$WFE_OUT/report.json""#,
                1 << 20,
                "not JSON: ",
                "line 1 column 10",
                true,
            ),
            (
                r#": > "$WFE_OUT/report.json""#,
                1 << 20,
                "not JSON: ",
                "empty",
                true,
            ),
            (
                r#"printf '%100000s' '' | tr ' ' '[' > "$WFE_OUT/report.json""#,
                1 << 20,
                "not JSON: ",
                "recursion limit",
                true,
            ),
            (
                r#"echo '{"ok": true, "count": 1}' > "$WFE_OUT/report.json""#,
                10,
                "too large: ",
                "has 25 bytes, the limit is 10",
                false,
            ),
            (
                r#"mkfifo "$WFE_OUT/report.json""#,
                1 << 20,
                "",
                "is a FIFO (named pipe), not a regular file",
                false,
            ),
            (
                // Never followed: the linked file must not become a rejected output.
                r#"ln -s /etc/passwd "$WFE_OUT/report.json""#,
                1 << 20,
                "$WFE_OUT/report.json is a symbolic link",
                "not a regular file; it was not read",
                false,
            ),
        ];
        for (command, limit, prefix, detail, kept) in cases {
            let dir = TempDir::new().unwrap();
            let mut job = job(&dir, command);
            job.outputs = vec![output("report", report_schema())];
            job.max_artifact_bytes = limit;
            let (outcome, _) = run(job).await;
            let problems = problems(&outcome);
            assert_eq!(problems.len(), 1, "{command}");
            let message = &problems[0].message;
            assert!(message.starts_with(prefix), "{command}: {message}");
            assert!(message.contains(detail), "{command}: {message}");
            assert_eq!(outcome.rejected.len(), usize::from(kept), "{command}");
        }
    }

    #[tokio::test]
    async fn maps_exit_codes_and_signals() {
        let dir = TempDir::new().unwrap();
        let (outcome, _) = run(job(&dir, "echo failing; exit 3")).await;
        assert_eq!(outcome.result, Err(AttemptError::Exit { code: 3 }));
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(texts(&outcome, Stream::Stdout), ["failing"]);

        let (outcome, _) = run(job(&dir, "kill -TERM $$")).await;
        assert_eq!(outcome.result, Err(AttemptError::Signal { signal: 15 }));
        assert_eq!(outcome.exit_code, None);
    }

    #[tokio::test]
    async fn a_missing_working_directory_is_a_spawn_error() {
        let dir = TempDir::new().unwrap();
        let mut job = job(&dir, "true");
        job.cwd = dir.path().join("nowhere");
        let (outcome, _) = run(job).await;
        let Err(AttemptError::Spawn { message }) = &outcome.result else {
            panic!("expected Spawn, got {:?}", outcome.result);
        };
        assert!(message.contains("nowhere"), "{message}");
        assert!(message.contains("does not exist"), "{message}");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = TempDir::new().unwrap();
        let mut job = job(&dir, &recording_pgid(&dir, "sleep 1000 & sleep 1000; wait"));
        job.timeout = Some(Duration::from_millis(500));
        let started = Instant::now();
        let (outcome, _) = run(job).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            outcome.result,
            Err(AttemptError::TimedOut {
                after: "500ms".into()
            })
        );
        assert_eq!(outcome.exit_code, None);
        assert_eq!(
            texts(&outcome, Stream::Wfe),
            ["killed: timed out after 500ms"]
        );
        assert_eq!(live_members(recorded_pgid(&dir)), Vec::<String>::new());
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group_at_once() {
        let dir = TempDir::new().unwrap();
        let job = job(
            &dir,
            &recording_pgid(&dir, "echo started; sleep 1000 & sleep 1000; wait"),
        );
        let sink = Arc::new(Collect::default());
        let (cancel, rx) = watch::channel(false);
        let attempt = tokio::spawn(run_script(job, rx, sink.clone(), Clock::system()));
        // The sink hears "started" while the script still runs: lines are live.
        sink.started.notified().await;
        let cancelled_at = Instant::now();
        cancel.send(true).unwrap();
        let outcome = attempt.await.unwrap();
        assert!(cancelled_at.elapsed() < Duration::from_secs(2));
        assert_eq!(outcome.result, Err(AttemptError::Cancelled));
        assert_eq!(texts(&outcome, Stream::Wfe), ["killed: cancelled"]);
        assert_eq!(live_members(recorded_pgid(&dir)), Vec::<String>::new());
    }

    #[tokio::test]
    async fn dropping_the_attempt_kills_the_whole_group() {
        let dir = TempDir::new().unwrap();
        let job = job(
            &dir,
            &recording_pgid(&dir, "echo started; sleep 1000 & sleep 1000; wait"),
        );
        let sink = Arc::new(Collect::default());
        let (_cancel, rx) = watch::channel(false);
        let attempt = tokio::spawn(run_script(job, rx, sink.clone(), Clock::system()));
        sink.started.notified().await;
        attempt.abort();
        assert!(attempt.await.unwrap_err().is_cancelled());
        // SIGKILL was sent when the attempt was dropped; dying takes the
        // kernel a moment, with no pipe or child to wait on, so check until
        // the group is dead, bounded.
        let pgid = recorded_pgid(&dir);
        let gone = tokio::time::timeout(Duration::from_secs(5), async {
            while !live_members(pgid).is_empty() {
                tokio::task::yield_now().await;
            }
        });
        assert!(gone.await.is_ok(), "{:?}", live_members(pgid));
    }

    #[tokio::test]
    async fn an_attempt_cancelled_before_it_starts_runs_nothing() {
        let dir = TempDir::new().unwrap();
        let job = job(&dir, "touch ran");
        let (_cancel, rx) = watch::channel(true);
        let sink = Arc::new(Collect::default());
        let outcome = run_script(job, rx, sink, Clock::system()).await;
        assert_eq!(outcome.result, Err(AttemptError::Cancelled));
        assert!(!dir.path().join("work/ran").exists());
    }

    #[tokio::test]
    async fn a_background_child_holding_stdout_does_not_hang_the_attempt() {
        let dir = TempDir::new().unwrap();
        let job = job(&dir, &recording_pgid(&dir, "sleep 1000 & echo done"));
        let started = Instant::now();
        let (outcome, _) = run(job).await;
        let took = started.elapsed();
        assert!(took >= DRAIN_BOUND, "{took:?}");
        assert!(took < DRAIN_BOUND + Duration::from_secs(3), "{took:?}");
        assert_eq!(outcome.result, Ok(BTreeMap::new()));
        assert_eq!(texts(&outcome, Stream::Stdout), ["done"]);
        let pgid = recorded_pgid(&dir);
        assert_eq!(
            texts(&outcome, Stream::Wfe),
            [format!(
                "processes started by the script kept stdout/stderr open 2s after it exited: killing process group {pgid}"
            )]
        );
        assert_eq!(live_members(pgid), Vec::<String>::new());
    }
}
