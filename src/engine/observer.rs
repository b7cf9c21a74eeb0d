//! How the engine reports progress without printing.

use std::time::Duration;

use super::{PhaseStatus, RunStatus, StopReason};
use crate::attempt::{AttemptError, LogSink};
use crate::store::CheckpointId;

/// Something that happened in a run, for progress displays.
#[derive(Debug)]
pub enum Event<'a> {
    /// The runner took the run and is about to start phases.
    RunStarted {
        /// The run's id.
        run: &'a str,
        /// The template's name.
        template: &'a str,
        /// How many phases the run has so far: its top-level phases, and
        /// each loop's children once per iteration it started (each
        /// [`Event::IterationStarted`] adds more).
        phases: usize,
        /// How many of them had already ended (when resuming).
        done: usize,
    },
    /// Processes of an attempt that a runner which is gone had started
    /// were still alive, and were ended before anything new started.
    LeftoversEnded {
        /// The phase.
        phase: &'a str,
        /// The attempt they belonged to.
        attempt: u32,
        /// How many processes were still alive.
        count: usize,
    },
    /// Worktrees of isolated attempts that a runner which is gone had made
    /// were removed before anything new started.
    WorktreesRemoved {
        /// Their names (`<phase>-<attempt>`).
        names: &'a [String],
    },
    /// A `wfe worker` could not reach its remote and tries again after `wait`.
    RemoteRetry {
        /// The remote.
        remote: &'a str,
        /// What failed, in git's words.
        message: &'a str,
        /// How long until the next try.
        wait: std::time::Duration,
    },
    /// An attempt of a phase started.
    PhaseStarted {
        /// The phase.
        phase: &'a str,
        /// The attempt number.
        attempt: u32,
    },
    /// A loop started an iteration: its child phases are pending.
    IterationStarted {
        /// The loop.
        phase: &'a str,
        /// The iteration, from 1.
        iteration: u32,
        /// The loop's `max_iters`.
        max_iters: u32,
        /// How many child phases the iteration has.
        children: usize,
    },
    /// An attempt failed and another will follow after `wait`.
    PhaseRetrying {
        /// The phase.
        phase: &'a str,
        /// The attempt that failed.
        attempt: u32,
        /// Why it failed.
        error: &'a AttemptError,
        /// The backoff before the next attempt.
        wait: Duration,
    },
    /// A phase was skipped.
    PhaseSkipped {
        /// The phase.
        phase: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A phase reached a final status (or went back to pending when interrupted).
    PhaseFinished {
        /// The phase.
        phase: &'a str,
        /// Its new status.
        status: PhaseStatus,
        /// The attempt.
        attempt: u32,
        /// How long the attempt took.
        duration: Duration,
        /// Why it failed, if it did.
        error: Option<&'a AttemptError>,
    },
    /// A checkpoint was committed.
    Checkpoint {
        /// The commit.
        id: &'a CheckpointId,
        /// Its summary line.
        summary: &'a str,
    },
    /// The runner is done with the run for now.
    RunFinished {
        /// The run.
        run: &'a str,
        /// The run's status.
        status: RunStatus,
        /// Why it failed, stopped or waits.
        reason: Option<&'a StopReason>,
    },
}

/// Receives events and live log lines.
pub trait Observer: LogSink {
    /// Called for each event, in order, from the runner.
    fn event(&self, event: &Event<'_>);
}
