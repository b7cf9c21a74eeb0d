//! What the engine's unit tests share: a silent observer, settings over a
//! temp dir, and driving a run to its end on the memory store.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Event, Observer, RunStatus, Settings, drive};
use crate::attempt::{LogLine, LogSink};
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
        control: None,
        wait: false,
        seats: None,
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
