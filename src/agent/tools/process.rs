//! Running one command for a tool (`bash`, `git`) under the process
//! supervisor ([`crate::process`]), with bounded output.
//!
//! The child leads its own process group, so a kill reaches everything it
//! started: on timeout, and when the call's future is dropped (the agent
//! loop cancelled or timed out). Output is kept bounded while it is read
//! (both ends of each stream), so a runaway command cannot eat memory. This
//! file only sets the tools' bounds and turns what was kept into [`Ends`].

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Command;

use super::clip::Ends;
use crate::process::{Capped, Captured, Stop, Supervisor};

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
pub(super) async fn run(command: Command, timeout: Duration, keep: usize) -> Result<Ran, RunError> {
    let half = keep.div_ceil(2);
    let mut captured = Captured {
        stdout: Capped::new(half, half),
        stderr: Capped::new(half, half),
    };
    let report = Supervisor::new()
        .timeout(Some(timeout))
        .drain(DRAIN_BOUND)
        .after_kill(AFTER_KILL_BOUND)
        // Nothing cancels a call but dropping it.
        .run(command, std::future::pending(), &mut captured)
        .await
        .map_err(RunError::Spawn)?;
    let stdout = ends(captured.stdout);
    let stderr = ends(captured.stderr);
    match report.status {
        Ok(status) => Ok(Ran {
            status,
            stdout,
            stderr,
            killed_holders: report.killed_holders,
        }),
        Err(Stop::WaitFailed(e)) => Err(RunError::Wait(e)),
        // With no cancel, only the timeout stops a command.
        Err(Stop::TimedOut(_) | Stop::Cancelled) => Err(RunError::TimedOut { stdout, stderr }),
    }
}

/// The text of a capture (invalid UTF-8 replaced); a char cut in two at the
/// gap is left out whole rather than shown as a replacement character.
fn ends(capture: Capped) -> Ends {
    let (mut head, mut tail, omitted) = capture.into_parts();
    if omitted == 0 {
        head.append(&mut tail);
        return Ends {
            head: String::from_utf8_lossy(&head).into_owned(),
            ..Ends::default()
        };
    }
    let mut omitted = omitted;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture as `run` makes it for a `keep` of `keep`.
    fn capture(keep: usize) -> Capped {
        let half = keep.div_ceil(2);
        Capped::new(half, half)
    }

    #[test]
    fn capture_keeps_both_ends_and_whole_chars() {
        let mut c = capture(8);
        c.push(b"ab");
        c.push("cdé".as_bytes());
        assert_eq!(c.head(), b"abcd");
        c.push(b"0123456789");
        c.push("xyzé".as_bytes());
        // Kept: "abcd", then the last 4 bytes: "yz" and "é" (2 bytes).
        let ends = ends(c);
        assert_eq!(ends.head, "abcd");
        assert_eq!(ends.tail, "yzé");
        assert_eq!(ends.len(), "abcdé0123456789xyzé".len() as u64);
    }

    #[test]
    fn capture_drops_a_char_cut_at_the_head() {
        let mut c = capture(6);
        c.push("abé".as_bytes());
        c.push(b"--------xyz");
        let ends = ends(c);
        assert_eq!(ends.head, "ab");
        assert_eq!(ends.tail, "xyz");
        assert_eq!(ends.omitted, 10);
    }

    #[test]
    fn small_output_is_whole() {
        let mut c = capture(100);
        c.push(b"hello ");
        c.push(b"world");
        assert_eq!(ends(c), Ends::whole("hello world"));
    }
}
