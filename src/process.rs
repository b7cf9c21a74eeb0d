//! The one process supervisor: a child in its own process group, its
//! output read as it comes, a deadline and a cancel that stop the whole
//! group, and nothing left behind when the caller goes away.
//!
//! Every command wfe starts goes through [`Supervisor::run`]: script phases
//! (`exec`), the agent's `bash` and `git` tools (`agent`), and CLI agents
//! (`provider`). The child leads its own process group (its pid is the
//! group id), so a stop reaches everything it started. A stop is
//! graceful-then-forced: `SIGTERM` to the group, up to the grace period for
//! the child to exit, then `SIGKILL`; a grace of zero (the default) is
//! `SIGKILL` at once. Dropping the run's future kills the group with
//! `SIGKILL` (there is no time left for grace). After the child exits, its
//! pipes get a bounded time to close: processes it started that still hold
//! them are killed with the group, and a pipe held from outside the group
//! is abandoned rather than waited on forever.
//!
//! This module owns spawning, signalling, reaping and reading; it does not
//! decide what output means or how to word a failure. Callers get the
//! bytes through an [`Output`] and the notable moments as [`Event`]s, and
//! turn them into log lines or messages. It is a leaf: it imports no other
//! wfe module.
//!
//! Signals go through `rustix`, so there is no `unsafe` here.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// Size of each read from a pipe.
const READ_CHUNK: usize = 8 * 1024;

/// One of the child's output pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Pipe {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Pipe::Stdout => "stdout",
            Pipe::Stderr => "stderr",
        }
    }
}

/// Where a supervised child's output and the supervisor's events go.
///
/// Called from the run's own future, in the order things happen, so an
/// implementation may interleave both pipes and the events in one log.
pub trait Output: Send {
    /// The next bytes read from `pipe`.
    fn read(&mut self, pipe: Pipe, bytes: &[u8]);

    /// `pipe` reached end-of-file, or reading it failed with `error` (it is
    /// then treated as closed). Not called for a pipe that is abandoned.
    fn closed(&mut self, pipe: Pipe, error: Option<&io::Error>) {
        let _ = (pipe, error);
    }

    /// Something the caller may want to report (see [`Event`]).
    fn event(&mut self, event: Event<'_>) {
        let _ = event;
    }

    /// The child was spawned and leads `group`; called once, before any
    /// output, so a caller can record the group for a later runner (see
    /// [`end_leftover`]).
    fn spawned(&mut self, group: Group) {
        let _ = group;
    }
}

/// A child's process group as a later process can recognise it: the group
/// id (the leader's pid) and the leader's start time, so a reused pid is
/// not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// The process group id.
    pub pgid: u32,
    /// The leader's start time in clock ticks after boot (`/proc/<pid>/stat`
    /// field 22); `None` when it could not be read.
    pub start_time: Option<u64>,
}

/// Why the supervisor stopped the child before it ended on its own.
#[derive(Debug)]
pub enum Stop {
    /// The deadline passed; the length of the timeout.
    TimedOut(Duration),
    /// The cancel future resolved.
    Cancelled,
    /// Waiting for the child failed; it was killed rather than left unwatched.
    WaitFailed(io::Error),
}

/// A notable moment of a run, in the order it happened.
#[derive(Debug)]
pub enum Event<'a> {
    /// The group was stopped for this reason (any failure to signal it
    /// was reported just before).
    Stopped(&'a Stop),
    /// Signalling the group failed (it being gone already is not a
    /// failure). `pgid` is `None` when the child's pid was never known.
    KillFailed {
        /// The process group.
        pgid: Option<u32>,
        /// What the OS said.
        error: &'a io::Error,
    },
    /// Reaping the stopped child failed.
    ReapFailed(&'a io::Error),
    /// The stopped child had not exited this long after `SIGKILL`.
    NotReaped(Duration),
    /// The child exited but processes it started kept its pipes open this
    /// long: the group is killed next.
    Holders {
        /// The process group about to be killed (`None`: pid never known).
        pgid: Option<u32>,
        /// How long the pipes were given.
        after: Duration,
    },
    /// A pipe was still open after the group was killed (a process outside
    /// the group holds it): reading stopped.
    Abandoned,
}

/// How a supervised run ended.
#[derive(Debug)]
pub struct Report {
    /// The child's exit status when it ended on its own, else why it was stopped.
    pub status: Result<ExitStatus, Stop>,
    /// Processes the child started kept its pipes open after it exited and
    /// were killed with its group.
    pub killed_holders: bool,
    /// A pipe was still open at the end and reading it was abandoned.
    pub abandoned: bool,
}

/// How to supervise a child: its deadline, its stop, how long its pipes may
/// linger, and what it reads on stdin.
#[derive(Debug, Clone)]
pub struct Supervisor {
    timeout: Option<Duration>,
    grace: Duration,
    drain: Duration,
    after_kill: Duration,
    stdin: Option<Vec<u8>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl Supervisor {
    /// No deadline, no grace (`SIGKILL` at once), 2s for the pipes to close
    /// after the child exits, 500ms after a kill, stdin closed.
    pub fn new() -> Supervisor {
        Supervisor {
            timeout: None,
            grace: Duration::ZERO,
            drain: Duration::from_secs(2),
            after_kill: Duration::from_millis(500),
            stdin: None,
        }
    }

    /// Stops the child (and its group) this long after it started.
    pub fn timeout(self, timeout: Option<Duration>) -> Supervisor {
        Supervisor { timeout, ..self }
    }

    /// On a stop, sends `SIGTERM` and gives the child this long to exit
    /// before `SIGKILL`; zero kills at once.
    pub fn grace(self, grace: Duration) -> Supervisor {
        Supervisor { grace, ..self }
    }

    /// How long stdout/stderr may stay open after the child exited before
    /// the processes holding them are killed with the group.
    pub fn drain(self, drain: Duration) -> Supervisor {
        Supervisor { drain, ..self }
    }

    /// How long to wait for reaping and for the pipes once the group has
    /// been killed (`SIGKILL` acts at once unless a process is stuck in the
    /// kernel, which must not hang the caller either).
    pub fn after_kill(self, after_kill: Duration) -> Supervisor {
        Supervisor { after_kill, ..self }
    }

    /// Writes `bytes` to the child's stdin, then closes it. A child that
    /// exits without reading them is not an error.
    pub fn stdin(self, bytes: Vec<u8>) -> Supervisor {
        Supervisor {
            stdin: Some(bytes),
            ..self
        }
    }

    /// Spawns `command` (program, arguments, directory and environment
    /// already set) in its own process group and supervises it to its end;
    /// `cancel` resolving stops it. Only a failure to spawn is an `Err`.
    ///
    /// Dropping the returned future while the child runs kills its group.
    pub async fn run(
        &self,
        mut command: Command,
        cancel: impl Future<Output = ()>,
        output: &mut dyn Output,
    ) -> io::Result<Report> {
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a kill reaches the child and everything it started.
            .process_group(0)
            // `kill_on_drop` alone would reach only the child; the guard
            // below reaches the group.
            .kill_on_drop(true);
        if let Ok(tags) = RECORDER.try_with(|r| r.tags()) {
            command.envs(tags);
        }
        let child = command.spawn()?;
        // With `process_group(0)` the group id is the child's pid. It is read
        // now, while the child is unreaped and so the id cannot be reused.
        let group = child.id().map(|pgid| Group {
            pgid,
            start_time: start_time(pgid),
        });
        // Declared before the kill guard, so it is dropped after it: the
        // record goes only once the group has been killed.
        let _recorded = group.and_then(record_ambient);
        let mut guard = GroupGuard(child.id());
        let pgid = guard.0;
        if let Some(group) = group {
            output.spawned(group);
        }
        let mut running = Running::new(child, self.stdin.clone(), output);

        let ended = running.until_stopped(self.timeout, cancel).await;
        let mut report = match ended {
            Ok(status) => {
                // Reaped: from here on its pid may be reused, so the group is
                // only signalled while something (almost always a member of
                // the group, which keeps the group id taken) holds its pipes.
                guard.disarm();
                Report {
                    status: Ok(status),
                    killed_holders: false,
                    abandoned: false,
                }
            }
            Err(stop) => self.stop(&mut running, &mut guard, pgid, stop).await,
        };
        if report.status.is_ok() {
            self.drain_pipes(&mut running, pgid, &mut report).await;
        }
        Ok(report)
    }

    /// Stops the group for `stop`, reaps the child (bounded) and drains the
    /// pipes.
    async fn stop(
        &self,
        running: &mut Running<'_>,
        guard: &mut GroupGuard,
        pgid: Option<u32>,
        stop: Stop,
    ) -> Report {
        self.terminate(running, pgid).await;
        running.output.event(Event::Stopped(&stop));
        if running.status.is_none() {
            running.reap_within(self.after_kill).await;
        }
        match &running.status {
            Some(Ok(_)) => guard.disarm(),
            Some(Err(e)) => running.output.event(Event::ReapFailed(e)),
            None => running.output.event(Event::NotReaped(self.after_kill)),
        }
        let mut report = Report {
            status: Err(stop),
            killed_holders: false,
            abandoned: false,
        };
        self.drain_pipes(running, pgid, &mut report).await;
        report
    }

    /// Waits, bounded, for both pipes to close. Processes that keep them
    /// open past the bound are killed with the group; a pipe still open
    /// after that (held from outside the group) is abandoned.
    async fn drain_pipes(&self, running: &mut Running<'_>, pgid: Option<u32>, report: &mut Report) {
        if running.pipes_closed_within(self.drain).await {
            return;
        }
        running.output.event(Event::Holders {
            pgid,
            after: self.drain,
        });
        self.terminate(running, pgid).await;
        report.killed_holders = true;
        if !running.pipes_closed_within(self.after_kill).await {
            running.output.event(Event::Abandoned);
            report.abandoned = true;
        }
    }

    /// `SIGTERM`, up to the grace period for the child to exit (or, once it
    /// has, for its pipes to close), then `SIGKILL`; with no grace only
    /// `SIGKILL`. Failures other than the group being gone are reported.
    async fn terminate(&self, running: &mut Running<'_>, pgid: Option<u32>) {
        if !self.grace.is_zero() {
            if !signal(running, pgid, Signal::TERM) {
                return;
            }
            let until = after(self.grace);
            if running.status.is_none() {
                running.reap_until(until).await;
            } else {
                running.pipes_closed_until(until).await;
            }
        }
        signal(running, pgid, Signal::KILL);
    }
}

/// Records the process groups of children spawned while a future runs
/// under [`recording`], and forgets each once its run has ended.
///
/// This is how an agent attempt's `bash` and `git` tool calls and its CLI
/// agent are written to the attempt registry without every layer between
/// the runner and the supervisor (the agent loop, the provider trait)
/// carrying the registry: every process started inside the attempt's
/// future belongs to the attempt.
pub trait GroupRecorder: Send + Sync {
    /// Records `group`; dropping what it returns forgets the record again.
    /// `None`: not recorded (the recorder reports why itself).
    fn record(&self, group: Group) -> Option<Box<dyn Send>>;

    /// Environment variables every child gets, so that a runner that died
    /// before [`GroupRecorder::record`] ran still leaves children the next
    /// runner can find ([`find_tagged`]).
    fn tags(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

tokio::task_local! {
    /// The recorder of the attempt whose future is running, if any.
    static RECORDER: std::sync::Arc<dyn GroupRecorder>;
}

/// Runs `future` with `recorder` recording the group of every child
/// [`Supervisor::run`] spawns inside it (not inside tasks it spawns).
pub async fn recording<F: Future>(
    recorder: std::sync::Arc<dyn GroupRecorder>,
    future: F,
) -> F::Output {
    RECORDER.scope(recorder, future).await
}

/// Records `group` with the recorder of the running future, if it has one.
fn record_ambient(group: Group) -> Option<Box<dyn Send>> {
    RECORDER.try_with(|r| r.record(group)).ok().flatten()
}

/// Sends `sig` to group `pgid`, reporting a failure; false if the group
/// could not be signalled.
fn signal(running: &mut Running<'_>, pgid: Option<u32>, sig: Signal) -> bool {
    let result = match pgid {
        Some(pgid) => signal_group(pgid, sig),
        None => Err(io::Error::other("its process id is unknown")),
    };
    match result {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => false,
        Err(error) => {
            running.output.event(Event::KillFailed {
                pgid,
                error: &error,
            });
            false
        }
    }
}

/// Sends `sig` to every process in group `pgid`.
///
/// Group ids 0 and 1 are refused: signalling group 0 would reach wfe's own
/// group, and group 1 is never a child's (its leader would be init).
fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let pid = i32::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to signal process group {pgid}"),
            )
        })?;
    rustix::process::kill_process_group(pid, sig).map_err(io::Error::from)
}

/// Kills the process group if the run is dropped while the child runs.
///
/// Disarmed once the child is reaped: from then on its pid may be reused.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // Nothing to report to: the run is gone.
            let _ = signal_group(pgid, Signal::KILL);
        }
    }
}

/// Writing the child's stdin, polled with the reads so neither blocks the other.
type Writer = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A spawned child with its pipes, read into `output` as the run goes on.
struct Running<'o> {
    child: Child,
    /// Set once the child is reaped (or waiting for it failed).
    status: Option<io::Result<ExitStatus>>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    stdin: Option<Writer>,
    out_buf: Box<[u8]>,
    err_buf: Box<[u8]>,
    output: &'o mut dyn Output,
}

/// What one read of a pipe gave.
enum Chunk {
    Bytes(usize),
    End,
    Failed(io::Error),
}

impl<'o> Running<'o> {
    fn new(mut child: Child, stdin: Option<Vec<u8>>, output: &'o mut dyn Output) -> Running<'o> {
        let writer = match (child.stdin.take(), stdin) {
            (Some(mut pipe), Some(bytes)) => Some(Box::pin(async move {
                // A child that exits without reading its input makes this
                // fail with a broken pipe; its exit status says more.
                let _ = pipe.write_all(&bytes).await;
                // Dropping the pipe closes it: the child sees end-of-file.
            }) as Writer),
            _ => None,
        };
        Running {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            status: None,
            stdin: writer,
            out_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            err_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            output,
        }
    }

    fn pipes_closed(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    /// Runs until the child is reaped (its status), the deadline passes or
    /// `cancel` resolves (why it must be stopped).
    async fn until_stopped(
        &mut self,
        timeout: Option<Duration>,
        cancel: impl Future<Output = ()>,
    ) -> Result<ExitStatus, Stop> {
        let mut cancel = std::pin::pin!(cancel);
        let until = timeout.map(|t| (after(t), t));
        loop {
            match self.status.take() {
                Some(Ok(status)) => {
                    self.status = Some(Ok(status));
                    return Ok(status);
                }
                // Not reaped after all: the caller stops it and tries again.
                Some(Err(e)) => return Err(Stop::WaitFailed(e)),
                None => {}
            }
            tokio::select! {
                // The deadline and cancel come first so a child flooding its
                // pipes cannot keep them from being noticed.
                biased;
                after = at(until) => return Err(Stop::TimedOut(after)),
                () = &mut cancel => return Err(Stop::Cancelled),
                () = self.step() => {}
            }
        }
    }

    /// Reaps the child, reading the pipes meanwhile, for at most `bound`.
    async fn reap_within(&mut self, bound: Duration) {
        self.reap_until(Instant::now() + bound).await;
    }

    async fn reap_until(&mut self, until: Instant) {
        while self.status.is_none() {
            tokio::select! {
                () = self.step() => {}
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// Whether both pipes closed within `bound`.
    async fn pipes_closed_within(&mut self, bound: Duration) -> bool {
        self.pipes_closed_until(Instant::now() + bound).await
    }

    async fn pipes_closed_until(&mut self, until: Instant) -> bool {
        while !self.pipes_closed() {
            tokio::select! {
                () = self.step() => {}
                () = tokio::time::sleep_until(until) => return false,
            }
        }
        true
    }

    /// Waits for the next thing to happen (the child exits, a pipe gives
    /// bytes or closes, stdin is written) and takes it in. Never resolves
    /// once there is nothing left to wait for.
    async fn step(&mut self) {
        let reaped = self.status.is_some();
        tokio::select! {
            status = self.child.wait(), if !reaped => self.status = Some(status),
            chunk = read_some(&mut self.stdout, &mut self.out_buf) => {
                self.took(Pipe::Stdout, chunk);
            }
            chunk = read_some(&mut self.stderr, &mut self.err_buf) => {
                self.took(Pipe::Stderr, chunk);
            }
            () = written(&mut self.stdin) => self.stdin = None,
        }
    }

    fn took(&mut self, pipe: Pipe, chunk: Chunk) {
        let buf = match pipe {
            Pipe::Stdout => &self.out_buf,
            Pipe::Stderr => &self.err_buf,
        };
        let closed = match chunk {
            Chunk::Bytes(n) => {
                self.output.read(pipe, &buf[..n]);
                return;
            }
            Chunk::End => {
                self.output.closed(pipe, None);
                true
            }
            Chunk::Failed(e) => {
                self.output.closed(pipe, Some(&e));
                true
            }
        };
        if closed {
            match pipe {
                Pipe::Stdout => self.stdout = None,
                Pipe::Stderr => self.stderr = None,
            }
        }
    }
}

/// Resolves at the deadline's instant with the timeout it came from, or never.
/// The instant `wait` from now, saturating far in the future: a grace or
/// timeout from a file can be too large for `Instant + Duration`, which
/// panics on overflow.
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

async fn at(deadline: Option<(Instant, Duration)>) -> Duration {
    match deadline {
        Some((until, timeout)) => {
            tokio::time::sleep_until(until).await;
            timeout
        }
        None => std::future::pending().await,
    }
}

/// Reads some bytes from `pipe`. Never resolves once the pipe is closed,
/// so a `select!` can keep waiting on the other one.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Chunk {
    let Some(reader) = pipe else {
        return std::future::pending().await;
    };
    loop {
        match reader.read(buf).await {
            Ok(0) => return Chunk::End,
            Ok(n) => return Chunk::Bytes(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Chunk::Failed(e),
        }
    }
}

/// Resolves once stdin is written; never if there is nothing to write.
async fn written(writer: &mut Option<Writer>) {
    match writer {
        Some(writer) => writer.await,
        None => std::future::pending().await,
    }
}

/// Resolves after `timeout` with its length, or never.
pub async fn deadline(timeout: Option<Duration>) -> Duration {
    match timeout {
        Some(after) => {
            tokio::time::sleep(after).await;
            after
        }
        None => std::future::pending().await,
    }
}

/// Resolves once `cancel` is true; never if its sender is gone.
pub async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|&c| c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How often a leftover group is looked at while it is being ended.
const LEFTOVER_POLL: Duration = Duration::from_millis(20);

/// How long a leftover group may take to die after `SIGKILL`.
const LEFTOVER_AFTER_KILL: Duration = Duration::from_secs(2);

/// The start time of process `pid` (`/proc/<pid>/stat` field 22, clock
/// ticks after boot), if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    use std::io::Read;
    // Read on every spawn (the group's record needs it), so into one
    // buffer that holds the whole line: `read_to_string` would `stat` the
    // file for its size (procfs says 0) and read it in growing pieces.
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    stat_fields(std::str::from_utf8(&buf[..len]).ok()?)?.start_time
}

/// A token naming this process among every process of the machine, past
/// its death: its pid and its start time (a reused pid starts later).
pub fn own_token() -> String {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let pid = own_pid();
            format!("{pid}.{}", start_time(pid).unwrap_or(0))
        })
        .clone()
}

/// Whether the process an [`own_token`] names is still alive (and not a
/// zombie): a token that does not parse names nobody.
pub fn token_alive(token: &str) -> bool {
    let Some((pid, started)) = token.split_once('.') else {
        return false;
    };
    let (Ok(pid), Ok(started)) = (pid.parse::<u32>(), started.parse::<u64>()) else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_fields(&stat))
        .is_some_and(|f| !f.gone && f.start_time == Some(started))
}

/// What a `/proc/<pid>/stat` line says that matters here.
struct StatFields {
    /// Zombie or dead: it will never run again.
    gone: bool,
    ppid: Option<u32>,
    pgrp: Option<u32>,
    start_time: Option<u64>,
}

/// Parses `pid (comm) state ppid pgrp … starttime …`; comm may hold
/// spaces and parens, so fields are counted after the last `)`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Field 3 (state) is index 0 here, so field n is index n - 3.
    let state = *fields.first()?;
    Some(StatFields {
        gone: matches!(state, "Z" | "X"),
        ppid: fields.get(1).and_then(|f| f.parse().ok()),
        pgrp: fields.get(2).and_then(|f| f.parse().ok()),
        start_time: fields.get(19).and_then(|f| f.parse().ok()),
    })
}

/// Every process in `/proc` whose `stat` reads, as `(pid, its stat)`
/// (none when `/proc` cannot be read); one walk for every question below.
fn processes() -> impl Iterator<Item = (u32, StatFields)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, stat_fields(&stat)?))
        })
}

/// This process's pid.
fn own_pid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// The live (not zombie) members of `group` that belong to it: when the
/// leader still runs it must be the recorded one (same start time), and
/// every member must have started no earlier than the leader did. A group
/// id is not handed out again while any member of the group lives, so a
/// reused id shows as a leader with another start time, or as members
/// that are older than the recorded leader.
fn leftover_members(group: Group) -> Vec<u32> {
    if let Some(now) = std::fs::read_to_string(format!("/proc/{}/stat", group.pgid))
        .ok()
        .as_deref()
        .and_then(stat_fields)
        && group.start_time.is_some()
        && now.start_time != group.start_time
    {
        return Vec::new();
    }
    processes()
        .filter(|(_, stat)| {
            let older = matches!((stat.start_time, group.start_time), (Some(s), Some(g)) if s < g);
            stat.pgrp == Some(group.pgid) && !stat.gone && !older
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Ends what is still alive of `group`, started by a runner that is gone:
/// `SIGTERM`, up to `grace` for the group to exit, then `SIGKILL`, and a
/// bounded wait for it to die. Returns how many processes were alive.
/// A group whose id now belongs to someone else (see [`Group`]) is left
/// alone and counts as none.
pub async fn end_leftover(group: Group, grace: Duration) -> io::Result<usize> {
    let found = leftover_members(group).len();
    if found == 0 {
        return Ok(0);
    }
    let send = |sig| match signal_group(group.pgid, sig) {
        Err(e) if e.raw_os_error() != Some(Errno::SRCH.raw_os_error()) => Err(e),
        _ => Ok(()),
    };
    send(Signal::TERM)?;
    let gone_by = |until: Instant| async move {
        while Instant::now() < until {
            if leftover_members(group).is_empty() {
                return true;
            }
            tokio::time::sleep(LEFTOVER_POLL).await;
        }
        leftover_members(group).is_empty()
    };
    if !gone_by(after(grace)).await {
        send(Signal::KILL)?;
        if !gone_by(Instant::now() + LEFTOVER_AFTER_KILL).await {
            return Err(io::Error::other(format!(
                "process group {} is still alive after SIGKILL",
                group.pgid
            )));
        }
    }
    Ok(found)
}

/// A process group with members whose environment carries a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The group id.
    pub pgid: u32,
    /// The `WFE_*` variables of the first member found (phase, attempt).
    pub env: Vec<(String, String)>,
}

/// The process groups with a live member whose environment holds exactly
/// `var=value`, this process's own group excepted.
///
/// The environment is inherited by every descendant, including one that
/// left its group (`setsid`) and one spawned an instant before its runner
/// died and could record it, so it finds what a registry record misses;
/// only a process that cleared its environment escapes it.
pub fn find_tagged(var: &str, value: &str) -> Vec<Tagged> {
    let me = own_pid();
    let own_group = rustix::process::getpgrp()
        .as_raw_nonzero()
        .get()
        .unsigned_abs();
    let wanted = format!("{var}={value}");
    let mut found: Vec<Tagged> = Vec::new();
    for (pid, stat) in processes() {
        if pid == me {
            continue;
        }
        let Some(pgid) = stat.pgrp.filter(|&g| g > 1 && g != own_group) else {
            continue;
        };
        if stat.gone || found.iter().any(|t| t.pgid == pgid) {
            continue;
        }
        // Another user's process cannot be read, and is not ours anyway.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        if !vars.contains(&wanted.as_bytes()) {
            continue;
        }
        let env = vars
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter(|v| v.starts_with("WFE_"))
            .filter_map(|v| v.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        found.push(Tagged { pgid, env });
    }
    found.sort_by_key(|t| t.pgid);
    found
}

/// How many times [`end_tagged`] looks again for tagged groups: a process
/// that forked while its group was being ended may have started a new one.
const TAGGED_ROUNDS: usize = 5;

/// How long a guardian whose driver died goes on looking for tagged groups
/// after it found none: a phase forked an instant before its driver died
/// carries the tag only once it has exec'd, and may start its group late.
const GUARD_QUIET: Duration = Duration::from_secs(1);

/// How often the guardian looks during [`GUARD_QUIET`].
const GUARD_POLL: Duration = Duration::from_millis(20);

/// The byte a driver that ends normally writes to its guardian before it
/// closes the pipe: its phases have ended, so one sweep is enough.
const GUARD_CLEAN: u8 = b'.';

/// Ends every process group with a live member whose environment holds
/// `var=value` ([`find_tagged`]), each with [`end_leftover`] (`SIGTERM`,
/// up to `grace`, then `SIGKILL`), all at once; then looks again, a few
/// times, for groups started meanwhile. Nothing untagged is signalled but
/// the other members of a tagged process's group. Returns how many
/// processes were alive; the first failure to end a group is the error,
/// after every group was tried.
pub async fn end_tagged(var: &str, value: &str, grace: Duration) -> io::Result<usize> {
    let mut ended = 0;
    let mut failure = None;
    for _ in 0..TAGGED_ROUNDS {
        let found = find_tagged(var, value);
        if found.is_empty() {
            break;
        }
        let mut ending = tokio::task::JoinSet::new();
        for tagged in found {
            let group = Group {
                pgid: tagged.pgid,
                start_time: None,
            };
            ending.spawn(end_leftover(group, grace));
        }
        while let Some(result) = ending.join_next().await {
            match result.map_err(io::Error::other).and_then(|r| r) {
                Ok(n) => ended += n,
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ended),
    }
}

/// The guardian's side (`wfe`'s hidden guard command): blocks until
/// `input` — a pipe whose write end only the driver holds — reaches
/// end-of-file, which happens however the driver ends (an exit, a crash,
/// `SIGKILL`), then ends what carries the driver's tag ([`end_tagged`]).
/// A driver that ended normally said so first ([`Guardian::finish`]): one
/// sweep. Otherwise the guardian keeps looking until it has found nothing
/// for `GUARD_QUIET` (a second), so a phase caught between fork and exec when its
/// driver died is ended too. A read error counts as end-of-file: the
/// driver cannot be watched any more, and what it leaves must not outlive
/// it.
pub async fn guard(
    input: impl io::Read + Send + 'static,
    var: &str,
    value: &str,
    grace: Duration,
) -> io::Result<usize> {
    let mut input = input;
    let watched = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 64];
        let mut clean = false;
        loop {
            match input.read(&mut buf) {
                Ok(0) => return clean,
                Ok(n) => clean = buf[..n].contains(&GUARD_CLEAN),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    });
    // A panicked reader is as good as an unclean end-of-file.
    let clean = watched.await.unwrap_or(false);
    let mut ended = end_tagged(var, value, grace).await?;
    if clean {
        return Ok(ended);
    }
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < GUARD_QUIET {
        tokio::time::sleep(GUARD_POLL).await;
        if !find_tagged(var, value).is_empty() {
            ended += end_tagged(var, value, grace).await?;
            quiet_since = Instant::now();
        }
    }
    Ok(ended)
}

/// A driver's guardian: a companion process in its own process group that
/// ends the driver's phases when the driver goes, even by `SIGKILL` (see
/// [`guard`]). The driver holds the only write end of the guardian's
/// stdin; std creates pipes close-on-exec, so no phase inherits it.
///
/// `PR_SET_PDEATHSIG` would do this for direct children only, and needs
/// `unsafe` (see [`become_subreaper`]); the guardian reaches every
/// process carrying the driver's tag, `setsid` escapees included.
#[derive(Debug)]
pub struct Guardian {
    child: std::process::Child,
}

impl Guardian {
    /// Spawns `command` (the program and its arguments set) as the
    /// guardian: its own process group, so signals to the driver's group
    /// (the terminal's Ctrl-C, a CI cancel) do not reach it; stdin the
    /// watched pipe; stdout and stderr closed, so it holds no pipe of the
    /// driver's caller open. It is kept by pid ([`keep_child`]), so
    /// [`end_orphans`] leaves it alone.
    pub fn spawn(mut command: std::process::Command) -> io::Result<Guardian> {
        use std::os::unix::process::CommandExt;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = command.spawn()?;
        keep_child(child.id());
        Ok(Guardian { child })
    }

    /// The guardian's pid.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The driver ends normally: says so and closes the pipe, so the
    /// guardian sweeps once (finding nothing once the driver's phases have
    /// ended) and exits on its own. Not waited for: the driver's own exit
    /// need not wait for a scan of every process; the guardian stays kept
    /// ([`keep_child`]) so an orphan sweep of the driver leaves it alone.
    pub fn finish(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            use std::io::Write;
            // A guardian already gone cannot be told; it swept on its own.
            let _ = stdin.write_all(&[GUARD_CLEAN]);
        }
    }
}

/// Makes this process the child subreaper of everything it starts
/// (`PR_SET_CHILD_SUBREAPER`): a descendant whose parent dies is
/// re-parented here instead of to init, even one that left its process
/// group (`setsid`), so [`end_orphans`] can find it when the runner ends.
///
/// `PR_SET_PDEATHSIG` would need a `pre_exec` hook (unsafe, which wfe
/// forbids) and fires when the spawning *thread* exits, which tokio's
/// worker threads do; it would also reach only the direct child.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(io::Error::from)
}

/// Children this process started on purpose to outlive it (the store's
/// background pack consolidation), by pid: [`end_orphans`] leaves them
/// alone. Kept by pid rather than by a mark in the environment, which a
/// phase could copy to survive its runner.
static KEPT: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Marks the child `pid` as meant to outlive this process, until
/// [`forget_kept`] (called once it is reaped, before its pid can be reused).
pub fn keep_child(pid: u32) {
    if let Ok(mut kept) = KEPT.lock() {
        kept.push(pid);
    }
}

/// Undoes [`keep_child`] for a child that has been reaped.
pub fn forget_kept(pid: u32) {
    if let Ok(mut kept) = KEPT.lock() {
        kept.retain(|&p| p != pid);
    }
}

/// Whether `pid` was marked with [`keep_child`].
fn is_kept(pid: u32) -> bool {
    KEPT.lock().is_ok_and(|kept| kept.contains(&pid))
}

/// How long the orphans may take to die after `SIGKILL`.
const ORPHANS_AFTER_KILL: Duration = Duration::from_secs(2);

/// This process's children, as `(pid, is a zombie, leads its own group)`.
fn children() -> Vec<(u32, bool, bool)> {
    let me = own_pid();
    processes()
        .filter(|(_, stat)| stat.ppid == Some(me))
        .map(|(pid, stat)| (pid, stat.gone, stat.pgrp == Some(pid)))
        .collect()
}

/// Ends every process that is still this process's child: called by a
/// runner (a [`become_subreaper`]) once its phases have ended, when every
/// child left is an orphan of a phase re-parented to it (but for one
/// started to outlive it, marked with [`keep_child`]). Each gets
/// `SIGTERM` (its whole group, when it leads one: a `setsid` escapee and
/// what it started), up to `grace` to exit, then `SIGKILL`; the dead are
/// reaped. Killing one re-parents its own children here, so this goes on
/// until no child is left or the bound after `SIGKILL` passes. Returns how
/// many processes it signalled.
pub async fn end_orphans(grace: Duration) -> io::Result<usize> {
    let mut signalled = std::collections::BTreeSet::new();
    let term_until = Instant::now() + grace;
    let kill_until = term_until + ORPHANS_AFTER_KILL;
    loop {
        let now = Instant::now();
        let sig = if now < term_until {
            Signal::TERM
        } else {
            Signal::KILL
        };
        let mut live = 0;
        for (pid, zombie, leader) in children() {
            if zombie {
                reap(pid);
                continue;
            }
            if is_kept(pid) {
                continue;
            }
            live += 1;
            // A TERM goes once; a KILL to every one still alive.
            if sig == Signal::TERM && signalled.contains(&pid) {
                continue;
            }
            signalled.insert(pid);
            if leader {
                // Gone meanwhile: fine; it is reaped next round.
                let _ = signal_group(pid, sig);
            }
            if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(p, sig);
            }
        }
        if live == 0 {
            return Ok(signalled.len());
        }
        if now >= kill_until {
            return Err(io::Error::other(format!(
                "{live} orphaned process(es) still alive after SIGKILL"
            )));
        }
        tokio::time::sleep(LEFTOVER_POLL).await;
    }
}

/// Reaps child `pid` if it has exited.
fn reap(pid: u32) {
    if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
    }
}

/// One stream's bytes kept within a bound: the first `head` bytes and the
/// last `tail` bytes, with a count of those dropped in between.
///
/// A capture with no tail keeps the start (an answer); one with no head
/// keeps the end (the last lines of stderr); one with both keeps both ends.
#[derive(Clone, PartialEq, Eq)]
pub struct Capped {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    omitted: u64,
}

impl fmt::Debug for Capped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capped")
            .field("head", &self.head.len())
            .field("tail", &self.tail.len())
            .field("omitted", &self.omitted)
            .finish()
    }
}

impl Capped {
    /// Keeps at most the first `head` and the last `tail` bytes.
    pub fn new(head: usize, tail: usize) -> Capped {
        Capped {
            head_cap: head,
            tail_cap: tail,
            head: Vec::new(),
            tail: VecDeque::new(),
            omitted: 0,
        }
    }

    /// Takes the next bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        let room = self.head_cap.saturating_sub(self.head.len());
        let (head, rest) = chunk.split_at(room.min(chunk.len()));
        self.head.extend_from_slice(head);
        if self.tail_cap == 0 {
            self.omitted += rest.len() as u64;
            return;
        }
        self.tail.extend(rest);
        let excess = self.tail.len().saturating_sub(self.tail_cap);
        if excess > 0 {
            self.tail.drain(..excess);
            self.omitted += excess as u64;
        }
    }

    /// The first bytes kept.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// How many bytes were dropped between the head and the tail.
    pub fn omitted(&self) -> u64 {
        self.omitted
    }

    /// The head, the tail and the count of bytes dropped between them.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>, u64) {
        (self.head, Vec::from(self.tail), self.omitted)
    }

    /// Every byte kept, head then tail (with nothing between them when
    /// bytes were dropped).
    pub fn into_bytes(self) -> Vec<u8> {
        let (mut head, mut tail, _) = self.into_parts();
        head.append(&mut tail);
        head
    }
}

/// An [`Output`] that keeps each pipe in a [`Capped`] and ignores events.
#[derive(Debug, Clone)]
pub struct Captured {
    /// What was kept of stdout.
    pub stdout: Capped,
    /// What was kept of stderr.
    pub stderr: Capped,
}

impl Output for Captured {
    fn read(&mut self, pipe: Pipe, bytes: &[u8]) {
        match pipe {
            Pipe::Stdout => self.stdout.push(bytes),
            Pipe::Stderr => self.stderr.push(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use tempfile::TempDir;

    use super::*;
    use crate::testing::process::{group_gone, live_members};

    /// Keeps everything: both pipes whole, closes and events as text.
    #[derive(Default)]
    struct Record {
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        notes: Vec<String>,
    }

    impl Output for Record {
        fn read(&mut self, pipe: Pipe, bytes: &[u8]) {
            match pipe {
                Pipe::Stdout => self.stdout.extend_from_slice(bytes),
                Pipe::Stderr => self.stderr.extend_from_slice(bytes),
            }
        }

        fn closed(&mut self, pipe: Pipe, error: Option<&io::Error>) {
            if let Some(e) = error {
                self.notes.push(format!("{} failed: {e}", pipe.name()));
            }
        }

        fn event(&mut self, event: Event<'_>) {
            self.notes.push(match event {
                Event::Stopped(Stop::TimedOut(after)) => format!("timed out after {after:?}"),
                Event::Stopped(Stop::Cancelled) => "cancelled".into(),
                Event::Stopped(Stop::WaitFailed(e)) => format!("wait failed: {e}"),
                Event::Holders { after, .. } => format!("holders after {after:?}"),
                other => format!("{other:?}"),
            });
        }
    }

    fn sh(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(script);
        command
    }

    /// A script that records its process group id in `dir/pgid` first.
    fn recording(dir: &TempDir, rest: &str) -> Command {
        sh(&format!(
            "echo $$ > '{}'; {rest}",
            dir.path().join("pgid").display()
        ))
    }

    fn recorded(dir: &TempDir) -> u32 {
        let text = std::fs::read_to_string(dir.path().join("pgid")).unwrap();
        text.trim().parse().unwrap()
    }

    fn never() -> std::future::Pending<()> {
        std::future::pending()
    }

    #[test]
    fn refuses_special_group_ids() {
        for pgid in [0, 1, u32::MAX] {
            let err = signal_group(pgid, Signal::KILL).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{pgid}");
        }
    }

    #[tokio::test]
    async fn reads_both_pipes_and_the_exit_status() {
        let mut out = Record::default();
        let report = Supervisor::new()
            .run(sh("echo out; echo err >&2; exit 3"), never(), &mut out)
            .await
            .unwrap();
        assert_eq!(report.status.unwrap().code(), Some(3));
        assert!(!report.killed_holders && !report.abandoned);
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(out.notes.is_empty(), "{:?}", out.notes);
    }

    #[tokio::test]
    async fn writes_stdin_then_closes_it() {
        let mut out = Record::default();
        let report = Supervisor::new()
            .stdin(b"hello\nworld".to_vec())
            .run(sh("cat; echo; echo done"), never(), &mut out)
            .await
            .unwrap();
        assert!(report.status.unwrap().success());
        assert_eq!(out.stdout, b"hello\nworld\ndone\n");
        // A child that never reads its stdin is not an error.
        let mut out = Record::default();
        let big = vec![b'x'; 1 << 20];
        let report = Supervisor::new()
            .stdin(big)
            .run(sh("echo ignored"), never(), &mut out)
            .await
            .unwrap();
        assert!(report.status.unwrap().success());
    }

    #[tokio::test]
    async fn a_spawn_failure_is_an_error() {
        let mut out = Record::default();
        let err = Supervisor::new()
            .run(Command::new("/nonexistent/wfe-test"), never(), &mut out)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = TempDir::new().unwrap();
        let mut out = Record::default();
        let started = StdInstant::now();
        let report = Supervisor::new()
            .timeout(Some(Duration::from_millis(300)))
            .run(
                recording(&dir, "echo started; sleep 1000 & sleep 1000; wait"),
                never(),
                &mut out,
            )
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(report.status, Err(Stop::TimedOut(d)) if d == Duration::from_millis(300)));
        assert_eq!(out.stdout, b"started\n");
        assert_eq!(out.notes, ["timed out after 300ms"]);
        assert_eq!(live_members(recorded(&dir)), Vec::<String>::new());
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group_at_once() {
        let dir = TempDir::new().unwrap();
        let (tx, mut rx) = watch::channel(false);
        let mut out = Record::default();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(true).unwrap();
            tx
        });
        let started = StdInstant::now();
        let report = Supervisor::new()
            .run(
                recording(&dir, "sleep 1000 & sleep 1000; wait"),
                cancelled(&mut rx),
                &mut out,
            )
            .await
            .unwrap();
        drop(canceller.await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(report.status, Err(Stop::Cancelled)));
        assert_eq!(out.notes, ["cancelled"]);
        assert_eq!(live_members(recorded(&dir)), Vec::<String>::new());
    }

    #[tokio::test]
    async fn dropping_the_run_kills_the_whole_group() {
        let dir = TempDir::new().unwrap();
        let command = recording(&dir, "sleep 1000 & sleep 1000; wait");
        let run = tokio::spawn(async move {
            let mut out = Record::default();
            Supervisor::new()
                .run(command, never(), &mut out)
                .await
                .map(|_| ())
        });
        let pgid = loop {
            if let Ok(text) = std::fs::read_to_string(dir.path().join("pgid"))
                && let Ok(pgid) = text.trim().parse::<u32>()
            {
                break pgid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        assert_eq!(group_gone(pgid).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn processes_holding_the_pipes_are_killed_after_the_drain_bound() {
        let dir = TempDir::new().unwrap();
        let mut out = Record::default();
        let started = StdInstant::now();
        let report = Supervisor::new()
            .drain(Duration::from_millis(300))
            .run(recording(&dir, "sleep 1000 & echo done"), never(), &mut out)
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(report.status.unwrap().success());
        assert!(report.killed_holders);
        assert!(!report.abandoned);
        assert_eq!(out.stdout, b"done\n");
        assert_eq!(out.notes, ["holders after 300ms"]);
        assert_eq!(live_members(recorded(&dir)), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_pipe_held_outside_the_group_is_abandoned() {
        let dir = TempDir::new().unwrap();
        let mut out = Record::default();
        // `setsid` leaves the group, so the group kill cannot reach it.
        let report = Supervisor::new()
            .drain(Duration::from_millis(100))
            .after_kill(Duration::from_millis(100))
            .run(
                sh(&format!(
                    "setsid sh -c 'echo $$ > {}; exec sleep 1000' & sleep 0.2; echo done",
                    dir.path().join("outside").display()
                )),
                never(),
                &mut out,
            )
            .await
            .unwrap();
        let outside: u32 = std::fs::read_to_string(dir.path().join("outside"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Clean up the escaped process before any assertion can fail.
        let _ = signal_group(outside, Signal::KILL);
        assert!(report.status.unwrap().success());
        assert!(report.killed_holders);
        assert!(report.abandoned);
        assert_eq!(out.notes, ["holders after 100ms", "Abandoned"]);
    }

    #[tokio::test]
    async fn a_grace_period_lets_the_child_clean_up_first() {
        let script =
            "trap 'echo cleaning up; exit 7' TERM; echo ready; while :; do sleep 0.05; done";
        let mut out = Record::default();
        let report = Supervisor::new()
            .timeout(Some(Duration::from_millis(300)))
            .grace(Duration::from_secs(5))
            .run(sh(script), never(), &mut out)
            .await
            .unwrap();
        assert!(matches!(report.status, Err(Stop::TimedOut(_))));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\ncleaning up\n");

        // Without grace the trap never runs: SIGKILL at once.
        let mut out = Record::default();
        let started = StdInstant::now();
        let report = Supervisor::new()
            .timeout(Some(Duration::from_millis(300)))
            .run(sh(script), never(), &mut out)
            .await
            .unwrap();
        assert!(matches!(report.status, Err(Stop::TimedOut(_))));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
        let dir = TempDir::new().unwrap();
        let mut out = Record::default();
        let started = StdInstant::now();
        let report = Supervisor::new()
            .timeout(Some(Duration::from_millis(200)))
            .grace(Duration::from_millis(300))
            .run(
                recording(
                    &dir,
                    "trap '' TERM; sleep 1000 & while :; do sleep 0.05; done",
                ),
                never(),
                &mut out,
            )
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert!(matches!(report.status, Err(Stop::TimedOut(_))));
        assert_eq!(live_members(recorded(&dir)), Vec::<String>::new());
    }

    /// A group left running as a dead runner would leave it: its own
    /// group, a TERM trap that writes `dir/cleaned`, and a child.
    fn leftover(dir: &TempDir) -> (std::process::Child, Group) {
        use std::os::unix::process::CommandExt;
        let fifo = dir.path().join("ready");
        let script = format!(
            "trap 'echo cleaned > {}; exit 143' TERM; sleep 1000 & echo ready > {}; wait",
            dir.path().join("cleaned").display(),
            fifo.display()
        );
        let child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .process_group(0)
            .spawn()
            .unwrap();
        // Trap and child in place once the line appears.
        while std::fs::read_to_string(&fifo).unwrap_or_default() != "ready\n" {
            std::thread::sleep(Duration::from_millis(5));
        }
        let pgid = child.id();
        (
            child,
            Group {
                pgid,
                start_time: start_time(pgid),
            },
        )
    }

    #[tokio::test]
    async fn a_leftover_group_is_ended_gracefully() {
        let dir = TempDir::new().unwrap();
        let (mut child, group) = leftover(&dir);
        assert!(group.start_time.is_some());
        let ended = end_leftover(group, Duration::from_secs(5)).await.unwrap();
        assert_eq!(ended, 2, "the shell and its sleep");
        child.wait().unwrap();
        assert_eq!(live_members(group.pgid), Vec::<String>::new());
        assert!(dir.path().join("cleaned").exists(), "its TERM trap ran");
        // Nothing left: nothing to end.
        assert_eq!(end_leftover(group, Duration::ZERO).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_group_whose_leader_started_at_another_time_is_left_alone() {
        let dir = TempDir::new().unwrap();
        let (mut child, group) = leftover(&dir);
        let reused = Group {
            start_time: group.start_time.map(|t| t + 1),
            ..group
        };
        assert_eq!(end_leftover(reused, Duration::ZERO).await.unwrap(), 0);
        assert_eq!(live_members(group.pgid).len(), 2, "left alone");
        assert_eq!(end_leftover(group, Duration::ZERO).await.unwrap(), 2);
        child.wait().unwrap();
        assert_eq!(live_members(group.pgid), Vec::<String>::new());
    }

    /// A group like [`leftover`]'s whose members carry `tag` (none: untagged).
    fn tagged_leftover(dir: &TempDir, tag: Option<(&str, &str)>) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let ready = dir.path().join("ready");
        let script = format!(
            "trap 'echo cleaned > {}; exit 143' TERM; sleep 1000 & echo ready > {}; wait",
            dir.path().join("cleaned").display(),
            ready.display()
        );
        let mut command = std::process::Command::new("/bin/sh");
        command.arg("-c").arg(script).process_group(0);
        if let Some((var, value)) = tag {
            command.env(var, value);
        }
        let child = command.spawn().unwrap();
        while std::fs::read_to_string(&ready).unwrap_or_default() != "ready\n" {
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    #[tokio::test]
    async fn the_guard_ends_only_what_carries_its_tag_once_its_input_closes() {
        let (tagged_dir, other_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        // A value no other test's process carries.
        let value = tagged_dir.path().to_string_lossy().into_owned();
        let mut tagged = tagged_leftover(&tagged_dir, Some(("WFE_TEST_GUARD", &value)));
        let mut other = tagged_leftover(&other_dir, Some(("WFE_TEST_GUARD", "another")));
        let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let guarding = {
            let value = value.clone();
            tokio::spawn(async move {
                guard(reader, "WFE_TEST_GUARD", &value, Duration::from_secs(5)).await
            })
        };
        assert!(!guarding.is_finished());
        assert_eq!(
            live_members(tagged.id()).len(),
            2,
            "alive while the input is open"
        );
        drop(writer);
        assert_eq!(
            guarding.await.unwrap().unwrap(),
            2,
            "the shell and its sleep"
        );
        tagged.wait().unwrap();
        assert!(
            tagged_dir.path().join("cleaned").exists(),
            "ended gracefully"
        );
        assert_eq!(
            live_members(other.id()).len(),
            2,
            "another tag is left alone"
        );
        assert_eq!(
            end_tagged("WFE_TEST_GUARD", &value, Duration::ZERO)
                .await
                .unwrap(),
            0
        );
        // The whole group: the shell's `sleep` would outlive a kill of the
        // shell alone.
        let group = Pid::from_raw(i32::try_from(other.id()).unwrap()).unwrap();
        rustix::process::kill_process_group(group, Signal::KILL).unwrap();
        other.wait().unwrap();
    }

    #[tokio::test]
    async fn a_guard_whose_driver_died_ends_a_phase_that_takes_its_tag_late() {
        // A phase caught between fork and exec when its driver died carries
        // the tag only once it has exec'd: this one execs into its tagged
        // program once `go` exists, which the test creates after the pipe
        // closed, so the guard's first sweep usually finds nothing.
        let dir = TempDir::new().unwrap();
        let value = dir.path().to_string_lossy().into_owned();
        let go = dir.path().join("go");
        let script = format!(
            "while [ ! -e '{}' ]; do sleep 0.01; done; exec env WFE_TEST_GUARD='{value}' sleep 60",
            go.display()
        );
        use std::os::unix::process::CommandExt;
        let mut late = std::process::Command::new("/bin/sh");
        late.arg("-c").arg(script).process_group(0);
        let mut late = late.spawn().unwrap();
        let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let guarding = {
            let value = value.clone();
            tokio::spawn(
                async move { guard(reader, "WFE_TEST_GUARD", &value, Duration::ZERO).await },
            )
        };
        // Dropped without the clean byte: the driver died.
        drop(writer);
        std::fs::write(&go, "").unwrap();
        assert_eq!(guarding.await.unwrap().unwrap(), 1, "the late phase");
        let status = late.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status:?}");
    }

    #[tokio::test]
    async fn a_guardian_exits_once_told_and_is_kept_from_the_orphan_sweep() {
        let mut command = std::process::Command::new("/bin/sh");
        // Exits once its stdin reaches end-of-file.
        command.arg("-c").arg("cat >/dev/null");
        let guardian = Guardian::spawn(command).unwrap();
        let pid = guardian.id();
        assert!(is_kept(pid), "end_orphans leaves it alone");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert_eq!(
            stat_fields(&stat).and_then(|s| s.pgrp),
            Some(pid),
            "it leads its own process group"
        );
        guardian.finish();
        // It exits on its own (reaped by this test process, its parent).
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat_fields(&stat).is_none_or(|s| s.gone) {
                break;
            }
            assert!(Instant::now() < until, "the guardian did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn the_spawned_group_is_reported_before_any_output() {
        #[derive(Default)]
        struct Spawned(Vec<String>);
        impl Output for Spawned {
            fn read(&mut self, _: Pipe, bytes: &[u8]) {
                self.0.push(String::from_utf8_lossy(bytes).into_owned());
            }
            fn spawned(&mut self, group: Group) {
                assert_eq!(start_time(group.pgid), group.start_time);
                self.0.push(format!("spawned {}", group.pgid));
            }
        }
        let mut out = Spawned::default();
        Supervisor::new()
            .run(sh("echo $$"), never(), &mut out)
            .await
            .unwrap();
        let pid = out.0[1].trim().to_string();
        assert_eq!(out.0, [format!("spawned {pid}"), format!("{pid}\n")]);
    }

    #[test]
    fn capped_keeps_both_ends() {
        let mut c = Capped::new(4, 4);
        c.push(b"ab");
        c.push(b"cdef");
        assert_eq!(c.head(), b"abcd");
        c.push(b"0123456789");
        let (head, tail, omitted) = c.into_parts();
        assert_eq!(head, b"abcd");
        assert_eq!(tail, b"6789");
        assert_eq!(omitted, 8);
    }

    #[test]
    fn capped_keeps_only_the_start_or_only_the_end() {
        let mut start = Capped::new(5, 0);
        start.push(b"hello world");
        assert_eq!(start.omitted(), 6);
        assert_eq!(start.into_bytes(), b"hello");
        let mut end = Capped::new(0, 5);
        end.push(b"hello ");
        end.push(b"world");
        assert_eq!(end.omitted(), 6);
        assert_eq!(end.into_bytes(), b"world");
        let mut whole = Capped::new(100, 100);
        whole.push(b"small");
        assert_eq!(whole.omitted(), 0);
        assert_eq!(whole.into_bytes(), b"small");
    }
}
