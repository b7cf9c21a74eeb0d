//! The executor seam: how the runner runs one attempt of a phase.
//!
//! The runner decides what to run (a resolved [`ScriptJob`] or
//! [`AgentJob`]) and records what came of it; an [`Executor`] runs it.
//! [`System`] is the real one (`crate::exec` spawns the script, `crate::agent`
//! holds the conversation); the engine's unit tests put a scripted fake in
//! its place, so what the runner does with "this phase succeeds, fails or
//! outputs X" is tested without spawning processes.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use crate::agent::{AgentJob, Progress, run_agent};
use crate::attempt::{AttemptOutcome, LogSink};
use crate::exec::{ScriptJob, run_script};
use crate::time::Clock;

/// Runs one attempt of a phase; `cancel` turning true stops it (the
/// outcome is then [`crate::attempt::AttemptError::Cancelled`]).
pub trait Executor: Send + Sync {
    /// Runs one attempt of a script phase.
    fn run_script(
        &self,
        job: ScriptJob,
        cancel: watch::Receiver<bool>,
        sink: Arc<dyn LogSink>,
        clock: Clock,
    ) -> BoxFuture<'static, AttemptOutcome>;

    /// Runs one attempt of an agent phase, passing each step to `progress`.
    fn run_agent(
        &self,
        job: AgentJob,
        cancel: watch::Receiver<bool>,
        sink: Arc<dyn LogSink>,
        progress: Progress,
        clock: Clock,
    ) -> BoxFuture<'static, AttemptOutcome>;
}

/// The real executor: scripts run as processes, agents talk to their providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Executor for System {
    fn run_script(
        &self,
        job: ScriptJob,
        cancel: watch::Receiver<bool>,
        sink: Arc<dyn LogSink>,
        clock: Clock,
    ) -> BoxFuture<'static, AttemptOutcome> {
        Box::pin(run_script(job, cancel, sink, clock))
    }

    fn run_agent(
        &self,
        job: AgentJob,
        cancel: watch::Receiver<bool>,
        sink: Arc<dyn LogSink>,
        progress: Progress,
        clock: Clock,
    ) -> BoxFuture<'static, AttemptOutcome> {
        Box::pin(run_agent(job, cancel, sink, progress, clock))
    }
}
