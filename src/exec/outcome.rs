//! What one attempt produced: artifacts or a typed error, plus its log.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::artifact::Violation;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A line wfe itself wrote (e.g. "killed after 1s timeout").
    Wfe,
    /// A line of text an agent's model streamed.
    Model,
}

/// One line of a phase's log, as stored in `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    /// When the line was read (RFC 3339).
    pub time: String,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Where it came from.
    pub stream: Stream,
    /// The text, without its newline (invalid UTF-8 replaced).
    pub line: String,
}

/// Receives log lines as they are read, to show them live.
pub trait LogSink: Send + Sync {
    /// Called once per line, in order per stream.
    fn line(&self, phase: &str, line: &LogLine);
}

/// What is wrong with one declared output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactProblem {
    /// The artifact's name.
    pub artifact: String,
    /// The schema it must match.
    pub schema: String,
    /// What is wrong, in words.
    pub message: String,
    /// Each schema violation (empty when the file is missing or not JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

/// Why an attempt failed. Stored in `state.json` and `attempts/<n>/error.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptError {
    /// A `run`, `cwd` or `env` template could not be rendered.
    #[error("cannot render `{field}`: {message}")]
    Render {
        /// Which field (`run`, `cwd`, `env.NAME`).
        field: String,
        /// The template engine's message.
        message: String,
    },
    /// The process could not be started.
    #[error("cannot start the script: {message}")]
    Spawn {
        /// The OS error.
        message: String,
    },
    /// The script exited with a non-zero code.
    #[error("the script exited with code {code}")]
    Exit {
        /// The exit code.
        code: i32,
    },
    /// The script was killed by a signal it did not get from wfe.
    #[error("the script was killed by signal {signal}")]
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// The attempt ran out of time; its process group was killed.
    #[error("timed out after {after}")]
    TimedOut {
        /// The timeout, e.g. `1s`.
        after: String,
    },
    /// The attempt was cancelled; its process group was killed.
    #[error("cancelled")]
    Cancelled,
    /// One or more outputs are missing, not JSON, or fail their schema.
    #[error("{} invalid output{}: {}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("{} ({})", p.artifact, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidOutputs {
        /// Every problem, one per artifact.
        problems: Vec<ArtifactProblem>,
    },
    /// An input artifact no longer matches its schema (e.g. edited by hand
    /// after the phase that wrote it completed); the phase did not start.
    #[error("{} invalid input{}: {}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("{} ({})", p.artifact, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidInputs {
        /// Every problem, one per artifact (`artifact` is `phase/name`).
        problems: Vec<ArtifactProblem>,
    },
    /// Something outside the script failed (scratch directories, I/O).
    #[error("{message}")]
    Internal {
        /// What failed.
        message: String,
    },
    /// A loop: one of its child phases failed (with `on_failure: stop`),
    /// so the loop failed in that iteration.
    #[error("{phase} {status} in iteration {iteration}{}", .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    ChildFailed {
        /// The child phase.
        phase: String,
        /// The iteration it failed in.
        iteration: u32,
        /// Its status: `failed`, `timed_out` or `cancelled`.
        status: String,
        /// Its error, in one line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// An agent's provider failed: retries ran out (`exhausted`: the run
    /// pauses and `wfe resume` goes on), or it refused the request.
    #[error("provider `{provider}`: {message}")]
    Provider {
        /// The provider's name in config.
        provider: String,
        /// What kind of failure.
        failure: crate::provider::ProviderErrorKind,
        /// What happened (never a key).
        message: String,
    },
    /// An agent used all its turns without submitting its outputs.
    #[error("no valid submission after {turns} turn{}", if *.turns == 1 { "" } else { "s" })]
    MaxTurns {
        /// The phase's `max_turns`.
        turns: u32,
    },
    /// The reviewer rejected the outputs, or still asked for changes after the last round.
    #[error("the reviewer {verdict} in round {round}: {summary}")]
    Review {
        /// `rejected` or `requested changes`.
        verdict: String,
        /// The review round, from 1.
        round: u32,
        /// The reviewer's summary or its findings in one line.
        summary: String,
    },
    /// A loop: `until` was still false after `max_iters` iterations
    /// (`on_exhausted: fail`).
    #[error("`until: {until}` still false after {iterations} iteration{}", if *.iterations == 1 { "" } else { "s" })]
    Exhausted {
        /// The loop's `until`.
        until: String,
        /// The iterations run (its `max_iters`).
        iterations: u32,
    },
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    /// The validated artifacts by name, or why the attempt failed.
    pub result: Result<BTreeMap<String, Value>, AttemptError>,
    /// The process's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Every log line, in the order read.
    pub log: Vec<LogLine>,
    /// Raw output files that were rejected (name, bytes), kept for inspection.
    pub rejected: Vec<(String, Vec<u8>)>,
    /// An agent's tokens and cost for the attempt.
    pub usage: Option<AttemptUsage>,
}

/// Tokens and cost of one agent attempt, all conversations (reviewers too) together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttemptUsage {
    /// Requests sent to models.
    pub requests: u32,
    /// Tokens read.
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
    /// US dollars, when `models` in config gives the prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}
