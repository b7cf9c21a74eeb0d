//! Script phases: `sh -c` in its own process group, lines captured live,
//! outputs read from `$WFE_OUT` and validated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{AttemptOutcome, LogSink};
use crate::artifact::Schema;
use crate::time::Clock;

/// One declared output of a phase.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// The artifact's name: the script writes `$WFE_OUT/<name>.json`.
    pub name: String,
    /// The compiled schema it must match.
    pub schema: Arc<Schema>,
}

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
    /// Input artifacts written to `$WFE_IN/<phase>/<name>.json` before start.
    pub inputs: Vec<(String, String, Vec<u8>)>,
    /// Outputs to read from `$WFE_OUT` and validate after a zero exit.
    pub outputs: Vec<OutputSpec>,
    /// A scratch directory for this attempt; `in/` and `out/` are made inside it.
    pub scratch: PathBuf,
    /// Kill the process group after this long.
    pub timeout: Option<Duration>,
    /// Largest accepted output file in bytes.
    pub max_artifact_bytes: u64,
}

/// Runs one attempt; `cancel` turning true kills the process group at once.
pub async fn run_script(
    job: ScriptJob,
    cancel: watch::Receiver<bool>,
    sink: Arc<dyn LogSink>,
    clock: Clock,
) -> AttemptOutcome {
    let _ = (job, cancel, sink, clock);
    todo!("helper implements")
}
