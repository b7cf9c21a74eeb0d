//! The agent loop (placeholder until the loop lands).

use std::sync::Arc;

use tokio::sync::watch;

use super::{AgentJob, Progress};
use crate::exec::{AttemptError, AttemptOutcome, LogSink};
use crate::time::Clock;

/// Runs one attempt of an agent phase.
pub async fn run_agent(
    job: AgentJob,
    _cancel: watch::Receiver<bool>,
    _sink: Arc<dyn LogSink>,
    _progress: Progress,
    _clock: Clock,
) -> AttemptOutcome {
    AttemptOutcome {
        result: Err(AttemptError::Internal {
            message: format!("{}: the agent loop is not available yet", job.phase),
        }),
        exit_code: None,
        log: Vec::new(),
        rejected: Vec::new(),
        usage: None,
    }
}
