//! What the engine's unit tests share: a silent observer, settings over a
//! temp dir, a scripted fake executor, and driving a run to its end on the
//! memory store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::watch;

use super::{Event, Executor, Observer, RunStatus, Settings, drive, drive_with};
use crate::agent::{AgentJob, Progress};
use crate::attempt::{AttemptError, AttemptOutcome, LogLine, LogSink};
use crate::exec::ScriptJob;
use crate::store::{RunId, RunStore};
use crate::time::Clock;

/// An observer that ignores everything.
pub(crate) struct Quiet;

impl LogSink for Quiet {
    fn line(&self, _: &str, _: &LogLine) {}
}

impl Observer for Quiet {
    fn event(&self, _: &Event<'_>) {}
}

/// Settings for runs whose scripts work in `dir`, `jobs` at a time.
pub(crate) fn settings(dir: &Path, jobs: usize) -> Settings {
    Settings {
        jobs,
        clock: Clock::system(),
        work_dir: dir.to_path_buf(),
        scratch: dir.join("scratch"),
        max_artifact_bytes: 1 << 20,
        max_log_bytes: crate::attempt::DEFAULT_MAX_LOG_BYTES,
        live: Some(dir.join("live")),
        max_files_bytes: crate::exec::DEFAULT_MAX_FILES_BYTES,
        only: None,
        worker: None,
        checkpoint_interval: std::time::Duration::ZERO,
        control: None,
        wait: false,
        seats: None,
        processes: None,
        masker: Default::default(),
        provider_key_vars: Vec::new(),
        worktrees: None,
        secret_args: Default::default(),
        deadline: None,
    }
}

/// Drives `run` to its end with nobody watching or interrupting.
pub(crate) async fn drive_quietly(
    store: &dyn RunStore,
    run: &RunId,
    settings: &Settings,
) -> RunStatus {
    let (_tx, rx) = watch::channel(false);
    drive(store, run, settings, Arc::new(Quiet), rx)
        .await
        .expect("drive")
}

/// A scripted executor for runner tests: each script attempt's outcome
/// comes from a function of the resolved job, and which phases ran is
/// remembered. It spawns nothing, and runs no agents.
pub(crate) struct Fake {
    script: Box<dyn Fn(&ScriptJob) -> AttemptOutcome + Send + Sync>,
    ran: Mutex<Vec<String>>,
}

impl Fake {
    /// An executor whose script attempts end as `script` says.
    pub(crate) fn new(
        script: impl Fn(&ScriptJob) -> AttemptOutcome + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Fake {
            script: Box::new(script),
            ran: Mutex::new(Vec::new()),
        })
    }

    /// The phases whose attempts ran, in the order they started.
    pub(crate) fn ran(&self) -> Vec<String> {
        self.ran.lock().expect("not poisoned").clone()
    }
}

impl Executor for Fake {
    fn run_script(
        &self,
        job: ScriptJob,
        _: watch::Receiver<bool>,
        _: Arc<dyn LogSink>,
        _: Clock,
    ) -> BoxFuture<'static, AttemptOutcome> {
        self.ran
            .lock()
            .expect("not poisoned")
            .push(job.phase.clone());
        let outcome = (self.script)(&job);
        Box::pin(async move { outcome })
    }

    fn run_agent(
        &self,
        _: AgentJob,
        _: watch::Receiver<bool>,
        _: Arc<dyn LogSink>,
        _: Progress,
        _: Clock,
    ) -> BoxFuture<'static, AttemptOutcome> {
        let error = AttemptError::Internal {
            message: "the fake executor runs no agents".into(),
        };
        Box::pin(async move { outcome(Err(error), None) })
    }
}

fn outcome(
    result: Result<BTreeMap<String, Value>, AttemptError>,
    exit_code: Option<i32>,
) -> AttemptOutcome {
    AttemptOutcome {
        result,
        exit_code,
        log: Vec::new(),
        rejected: Vec::new(),
        usage: None,
        files: Vec::new(),
    }
}

/// A script attempt that exited 0 and wrote no outputs.
pub(crate) fn succeeded() -> AttemptOutcome {
    outcome(Ok(BTreeMap::new()), Some(0))
}

/// A script attempt that exited with `code`.
pub(crate) fn exited(code: i32) -> AttemptOutcome {
    outcome(Err(AttemptError::Exit { code }), Some(code))
}

/// Drives `run` to its end through `executor`, with nobody watching or interrupting.
pub(crate) async fn drive_with_quietly(
    store: &dyn RunStore,
    run: &RunId,
    settings: &Settings,
    executor: Arc<dyn Executor>,
) -> RunStatus {
    let (_tx, rx) = watch::channel(false);
    drive_with(store, run, settings, executor, Arc::new(Quiet), rx)
        .await
        .expect("drive")
}
