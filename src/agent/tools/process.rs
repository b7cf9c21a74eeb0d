//! Running one command for a tool (`bash`, `git`): its own process group,
//! bounded output, a timeout that kills the whole group.
//!
//! As in script phases (`exec::script`), the child leads its own process
//! group so a kill reaches everything it started: on timeout, and when the
//! call's future is dropped (the agent loop cancelled or timed out). Output
//! is kept bounded while it is read, so a runaway command cannot eat memory.

use std::collections::VecDeque;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::time::Instant;

use super::clip::Ends;
use crate::exec::process_group::kill_group;

/// How long stdout/stderr may stay open after the command exited: a
/// background process holding them would otherwise hang the call.
const DRAIN_BOUND: Duration = Duration::from_secs(1);

/// How long to wait for the pipes to close and the child to be reaped once
/// the group is killed: `SIGKILL` acts at once unless a process is stuck in
/// the kernel, which must not hang the call either.
const AFTER_KILL_BOUND: Duration = Duration::from_millis(500);

/// Environment variables that would point git (in `git` or in `bash`) at
/// another repository than the working tree: wfe may itself run inside a
/// git hook that sets them.
pub(super) const GIT_LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
];

/// A command that ran to its end.
#[derive(Debug)]
pub(super) struct Ran {
    pub(super) status: ExitStatus,
    pub(super) stdout: Ends,
    pub(super) stderr: Ends,
    /// Processes it started kept stdout/stderr open after it exited and
    /// were killed with its group.
    pub(super) killed_holders: bool,
}

/// Why a command did not run to its end.
#[derive(Debug)]
pub(super) enum RunError {
    /// It could not be started.
    Spawn(io::Error),
    /// Waiting for it failed; its group was killed.
    Wait(io::Error),
    /// It ran past the timeout; its group was killed. What it wrote so far.
    TimedOut { stdout: Ends, stderr: Ends },
}

/// Runs `command` (program, arguments, directory and environment already
/// set) with stdin closed, in its own process group, keeping at most about
/// `keep` bytes of each of stdout and stderr (both ends of it).
pub(super) async fn run(
    mut command: Command,
    timeout: Duration,
    keep: usize,
) -> Result<Ran, RunError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    // The group id is the child's pid, read while it is unreaped and so
    // cannot be reused. The guard kills the group if this future is dropped.
    let mut guard = GroupGuard(child.id());
    let mut pipes = Pipes::new(&mut child, keep);
    let mut status = None;

    let done = pipes
        .pump(&mut child, &mut status, Instant::now() + timeout)
        .await;
    match status {
        None => {
            guard.kill();
            // Reap the shell and take what the group wrote before it died.
            pipes
                .pump(&mut child, &mut status, Instant::now() + AFTER_KILL_BOUND)
                .await;
            if matches!(status, Some(Ok(_))) {
                guard.disarm();
            }
            let (stdout, stderr) = pipes.finish();
            Err(RunError::TimedOut { stdout, stderr })
        }
        Some(Err(e)) => {
            guard.kill();
            Err(RunError::Wait(e))
        }
        Some(Ok(status)) => {
            // Once reaped, the pid may be reused; the group is only killed
            // below while something (almost always a member of the group,
            // which keeps the group id taken) still holds the pipes.
            let killed_holders = !done;
            if killed_holders {
                guard.kill();
                pipes
                    .pump(
                        &mut child,
                        &mut Some(Ok(status)),
                        Instant::now() + AFTER_KILL_BOUND,
                    )
                    .await;
            }
            guard.disarm();
            let (stdout, stderr) = pipes.finish();
            Ok(Ran {
                status,
                stdout,
                stderr,
                killed_holders,
            })
        }
    }
}

/// Kills the process group when dropped while armed: `kill_on_drop` alone
/// would reach only the child, not what it started.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // The group being gone already (ESRCH) is what was wanted; any
            // other failure leaves nothing better to do.
            let _ = kill_group(pgid);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child's stdout and stderr, read into bounded captures.
struct Pipes {
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    out: Capture,
    err: Capture,
    out_buf: Box<[u8]>,
    err_buf: Box<[u8]>,
}

impl Pipes {
    fn new(child: &mut Child, keep: usize) -> Pipes {
        Pipes {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            out: Capture::new(keep),
            err: Capture::new(keep),
            out_buf: vec![0; 8192].into_boxed_slice(),
            err_buf: vec![0; 8192].into_boxed_slice(),
        }
    }

    /// Reads both pipes and reaps `child` (unless `status` is already set)
    /// until the child is reaped and both pipes are closed: true. Returns
    /// false at `until`, or [`DRAIN_BOUND`] after the child was reaped with
    /// a pipe still open.
    async fn pump(
        &mut self,
        child: &mut Child,
        status: &mut Option<io::Result<ExitStatus>>,
        until: Instant,
    ) -> bool {
        let mut until = until;
        if status.is_some() {
            until = until.min(Instant::now() + DRAIN_BOUND);
        }
        loop {
            if status.is_some() && self.stdout.is_none() && self.stderr.is_none() {
                return true;
            }
            tokio::select! {
                s = child.wait(), if status.is_none() => {
                    *status = Some(s);
                    until = until.min(Instant::now() + DRAIN_BOUND);
                }
                n = read_some(&mut self.stdout, &mut self.out_buf) => {
                    match n {
                        Some(n) => self.out.push(&self.out_buf[..n]),
                        None => self.stdout = None,
                    }
                }
                n = read_some(&mut self.stderr, &mut self.err_buf) => {
                    match n {
                        Some(n) => self.err.push(&self.err_buf[..n]),
                        None => self.stderr = None,
                    }
                }
                () = tokio::time::sleep_until(until) => return false,
            }
        }
    }

    fn finish(self) -> (Ends, Ends) {
        (self.out.finish(), self.err.finish())
    }
}

/// Reads some bytes from `pipe`; `None` at end-of-file or on a read error
/// (either way there is nothing more to read). Never resolves once the pipe
/// is closed, so a `select!` can keep waiting on the other one.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    let Some(reader) = pipe else {
        return std::future::pending().await;
    };
    loop {
        match reader.read(buf).await {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// One stream's bytes: the first and the last `keep / 2` bytes, and a count
/// of those in between.
struct Capture {
    half: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    omitted: u64,
}

impl Capture {
    fn new(keep: usize) -> Capture {
        Capture {
            half: keep.div_ceil(2),
            head: Vec::new(),
            tail: VecDeque::new(),
            omitted: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.half.saturating_sub(self.head.len());
        let (head, rest) = chunk.split_at(room.min(chunk.len()));
        self.head.extend_from_slice(head);
        self.tail.extend(rest);
        let excess = self.tail.len().saturating_sub(self.half);
        if excess > 0 {
            self.tail.drain(..excess);
            self.omitted += excess as u64;
        }
    }

    /// The text (invalid UTF-8 replaced); a char cut in two at the gap is
    /// left out whole rather than shown as a replacement character.
    fn finish(self) -> Ends {
        let mut head = self.head;
        let mut tail = Vec::from(self.tail);
        if self.omitted == 0 {
            head.append(&mut tail);
            return Ends {
                head: String::from_utf8_lossy(&head).into_owned(),
                ..Ends::default()
            };
        }
        let mut omitted = self.omitted;
        if let Err(e) = std::str::from_utf8(&head)
            && e.error_len().is_none()
        {
            omitted += (head.len() - e.valid_up_to()) as u64;
            head.truncate(e.valid_up_to());
        }
        // Continuation bytes (10xxxxxx) at the start belong to a cut char.
        let cut = tail
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xC0 == 0x80)
            .count();
        omitted += cut as u64;
        Ends {
            head: String::from_utf8_lossy(&head).into_owned(),
            tail: String::from_utf8_lossy(&tail[cut..]).into_owned(),
            omitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_both_ends_and_whole_chars() {
        let mut c = Capture::new(8);
        c.push(b"ab");
        c.push("cdé".as_bytes());
        assert_eq!(c.head, b"abcd");
        c.push(b"0123456789");
        c.push("xyzé".as_bytes());
        // Kept: "abcd", then the last 4 bytes: "yz" and "é" (2 bytes).
        let ends = c.finish();
        assert_eq!(ends.head, "abcd");
        assert_eq!(ends.tail, "yzé");
        assert_eq!(ends.len(), "abcdé0123456789xyzé".len() as u64);
    }

    #[test]
    fn capture_drops_a_char_cut_at_the_head() {
        let mut c = Capture::new(6);
        c.push("abé".as_bytes());
        c.push(b"--------xyz");
        let ends = c.finish();
        assert_eq!(ends.head, "ab");
        assert_eq!(ends.tail, "xyz");
        assert_eq!(ends.omitted, 10);
    }

    #[test]
    fn small_output_is_whole() {
        let mut c = Capture::new(100);
        c.push(b"hello ");
        c.push(b"world");
        assert_eq!(c.finish(), Ends::whole("hello world"));
    }
}
