//! Agent phases: the tool loop around a model, its tools, and what it records.
//!
//! The loop renders nothing and touches no store: the engine hands it an
//! [`AgentJob`] with everything resolved (prompts, provider seats, compiled
//! output schemas, the journal of the attempt so far) and gets back an
//! [`AttemptOutcome`](crate::attempt::AttemptOutcome). Every exchange and tool call goes to the engine as a
//! [`Step`] and is committed before the loop goes on, so a runner killed in
//! the middle of a conversation resumes it without asking or doing anything
//! twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::artifact::{OutputSpec, Schema};
use crate::provider::config::ModelEntry;
use crate::provider::{Exchange, Provider};

mod budget;
mod conversation;
mod review;
mod run;
mod submit;
pub mod tools;
mod trim;

pub use budget::{AgentBudget, RunMeter};
pub use run::run_agent;

/// A model in a seat: which provider, which model, what it may write.
#[derive(Clone)]
pub struct Seat {
    /// The provider's name in config (recorded in every exchange).
    pub provider_name: String,
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// The model.
    pub model: String,
    /// `max_tokens` of every request.
    pub max_tokens: u32,
    /// The model's context window and prices, when config gives them.
    pub model_info: ModelEntry,
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("provider", &self.provider_name)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A second opinion on the outputs.
#[derive(Debug, Clone)]
pub struct ReviewJob {
    /// Who reviews.
    pub seat: Seat,
    /// Review rounds at most.
    pub rounds: u32,
    /// The `review` schema the reviewer's submission must match.
    pub schema: Arc<Schema>,
}

/// Everything one attempt of an agent phase needs, resolved by the engine.
#[derive(Debug, Clone)]
pub struct AgentJob {
    /// The run's id.
    pub run: String,
    /// The phase's id (a loop child's key, e.g. `fix#2`, for messages).
    pub phase: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The model doing the work.
    pub primary: Seat,
    /// The rendered system prompt.
    pub system: Option<String>,
    /// The rendered prompt.
    pub prompt: String,
    /// The tools the phase allows, by [`Tool`](crate::template::Tool) name.
    pub tools: Vec<String>,
    /// The repository's working tree: where tools act, and their fence.
    pub work_dir: PathBuf,
    /// The declared outputs; each becomes a `submit_<name>` tool.
    pub outputs: Vec<OutputSpec>,
    /// Model turns at most (primary conversation).
    pub max_turns: u32,
    /// Invalid submissions answered with their errors before the attempt fails.
    pub max_invalid_submissions: u32,
    /// How long the attempt may take.
    pub timeout: Option<Duration>,
    /// The second opinion, if the phase asks for one.
    pub review: Option<ReviewJob>,
    /// What this attempt already did before the runner stopped (empty for a new attempt).
    pub journal: Journal,
    /// Variables removed from the environment of the `bash` and `git`
    /// tools (provider keys the phase did not ask for by name).
    pub env_remove: Vec<String>,
    /// Secrets masked in log lines and tool results.
    pub masker: crate::secret::Masker,
    /// The most of the attempt's log kept in the checkpoint (`max_log_bytes`).
    pub max_log_bytes: u64,
    /// Where the process groups of the attempt's tool calls and CLI agent
    /// are recorded while they run (none: not recorded), with the phase as
    /// people see it and its `kill_grace`.
    pub processes: Option<crate::store::AttemptRecorder>,
    /// The budgets the attempt runs under, and its wall time so far.
    pub budget: AgentBudget,
}

/// The recorded steps of one attempt, read back from the run to resume it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Journal {
    /// Exchanges of this attempt, in order.
    pub exchanges: Vec<Exchange>,
    /// Tool calls of this attempt, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Reviews submitted in this attempt: (round, review).
    pub reviews: Vec<(u32, Value)>,
}

/// One thing an attempt did that must be in a checkpoint before it goes on.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A request and its answer: a line of `exchanges.jsonl`.
    Exchange(Exchange),
    /// A tool call: a line of `tool-calls.jsonl`.
    ToolCall(ToolCall),
    /// A reviewer's submission: `reviews/<attempt>-<round>.json`.
    Review {
        /// The round, from 1.
        round: u32,
        /// The `review` artifact.
        review: Value,
    },
}

/// Where an attempt sends its steps; each [`Progress::record`] returns
/// once the engine has committed the step.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: mpsc::UnboundedSender<(Step, oneshot::Sender<()>)>,
}

impl Progress {
    /// A progress channel and the engine's end of it.
    pub fn channel() -> (
        Progress,
        mpsc::UnboundedReceiver<(Step, oneshot::Sender<()>)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress { tx }, rx)
    }

    /// Hands a step to the engine and waits until it is committed. Returns
    /// false when the engine is gone (the attempt should stop).
    pub async fn record(&self, step: Step) -> bool {
        let (ack, done) = oneshot::channel();
        if self.tx.send((step, ack)).is_err() {
            return false;
        }
        done.await.is_ok()
    }
}

/// One line of `tool-calls.jsonl`: a tool an agent called, and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// When the call started (RFC 3339).
    pub time: String,
    /// The attempt that made it.
    pub attempt: u32,
    /// The id of the model's `tool_use` it answers, so a resumed
    /// conversation never runs a completed call again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The tool's name, e.g. `read_file`.
    pub tool: String,
    /// The input the model gave.
    pub input: Value,
    /// What the tool returned (absent when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the tool failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the call took.
    pub duration_ms: u64,
    /// True when the output was cut to fit.
    #[serde(default)]
    pub truncated: bool,
}
