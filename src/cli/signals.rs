//! The signals that stop a runner: SIGINT (Ctrl-C), SIGTERM (what
//! `docker stop`, Kubernetes and CI cancels send) and SIGHUP (the terminal
//! went away). Each stops the run the way Ctrl-C always did: running
//! phases get `SIGTERM`, then `SIGKILL` after their `kill_grace`, the run
//! is checkpointed as paused (interrupted), and the runner exits 3.
//!
//! Once these are listened for, the default action (die at once, leaving
//! the phases' process groups running) no longer applies for the life of
//! the process; that is the point.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::error::CliError;

/// Listeners for every signal that stops a runner.
pub(crate) struct StopSignals {
    listeners: Vec<Signal>,
}

/// Starts listening for SIGINT, SIGTERM and SIGHUP.
pub(crate) fn stop_signals() -> Result<StopSignals, CliError> {
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ];
    let listeners = kinds
        .into_iter()
        .map(signal)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::internal(format!("cannot listen for stop signals: {e}")))?;
    Ok(StopSignals { listeners })
}

impl StopSignals {
    /// Resolves at the first of the signals to arrive.
    pub(crate) async fn recv(mut self) {
        let waits = self
            .listeners
            .iter_mut()
            .map(|l| Box::pin(async move { l.recv().await }));
        // `None` only if the runtime's signal driver went away: then no
        // signal can arrive either, so wait for ever.
        if futures_util::future::select_all(waits).await.0.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
