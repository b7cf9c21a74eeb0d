//! The records a checkpoint holds: `run.json` and `phases/<id>/state.json`.
//!
//! These are wfe's own file formats; their JSON Schemas are generated from
//! these types. Fields are declared in the order they should appear in the
//! pretty-printed files, so `git diff` between checkpoints reads well.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attempt::{AttemptError, AttemptUsage};
use crate::template::PhaseKind;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created; no phase has started.
    Pending,
    /// A runner is working on it (or died while doing so).
    Running,
    /// Stopped on request; `wfe resume` goes on.
    Paused,
    /// Waiting for an approval.
    Waiting,
    /// Every phase ended well.
    Completed,
    /// A phase failed and stopped the run.
    Failed,
    /// Stopped for good on request.
    Cancelled,
}

impl RunStatus {
    /// The status as written in files and trailers.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// True when the run can never change again without a user's action.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// Where a phase is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// Not started.
    Pending,
    /// An attempt is running (or waiting to be retried).
    Running,
    /// Waiting for an approval.
    Waiting,
    /// Ended well; its artifacts are valid.
    Completed,
    /// Its last attempt failed.
    Failed,
    /// Not run: its `if` was false, or it was skipped by hand.
    Skipped,
    /// Stopped on request.
    Cancelled,
    /// Its last attempt ran out of time.
    TimedOut,
}

impl PhaseStatus {
    /// The status as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Pending => "pending",
            PhaseStatus::Running => "running",
            PhaseStatus::Waiting => "waiting",
            PhaseStatus::Completed => "completed",
            PhaseStatus::Failed => "failed",
            PhaseStatus::Skipped => "skipped",
            PhaseStatus::Cancelled => "cancelled",
            PhaseStatus::TimedOut => "timed_out",
        }
    }

    /// True once the phase will not run again by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PhaseStatus::Completed
                | PhaseStatus::Failed
                | PhaseStatus::Skipped
                | PhaseStatus::Cancelled
                | PhaseStatus::TimedOut
        )
    }

    /// True for the statuses of a phase that did not end well.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            PhaseStatus::Failed | PhaseStatus::TimedOut | PhaseStatus::Cancelled
        )
    }
}

/// `run.json`: what the run is and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// The run's id (a lowercase ULID).
    pub id: String,
    /// The template's name.
    pub template: String,
    /// Where the template came from (`built-in:NAME` or a path).
    pub template_source: String,
    /// `sha256:…` over the template's canonical JSON.
    pub template_digest: String,
    /// The run's arguments, validated against the template's args schema.
    pub args: Value,
    /// Where the run stands.
    pub status: RunStatus,
    /// Whether the run advances without asking after each phase.
    pub auto: bool,
    /// The commit HEAD pointed at when the run was created.
    pub base_commit: String,
    /// When the run was created (RFC 3339).
    pub created_at: String,
    /// When the run last ended (completed, failed, cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Every schema the template uses: name as written to its frozen copy under `schemas/`.
    pub schemas: BTreeMap<String, String>,
    /// Why the run failed or stopped, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `phases/<id>/state.json`: one phase's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseState {
    /// The phase's id.
    pub id: String,
    /// The phase's kind.
    pub kind: PhaseKind,
    /// Where the phase stands.
    pub status: PhaseStatus,
    /// The current (or last) attempt, from 1; 0 before the first.
    pub attempt: u32,
    /// A loop: its current (or last) iteration, from 1; a loop's child: the
    /// iteration it belongs to. 0 (left out) for everything else.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iteration: u32,
    /// When the current attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the phase ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How long the last attempt took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The last attempt's exit code, for scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The provider the next (or current) attempt uses instead of the
    /// template's, as `wfe retry --provider` asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model the next (or current) attempt uses instead of the
    /// template's, as `wfe retry --model` asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// An agent's tokens and cost in the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<AttemptUsage>,
    /// An agent attempt that was interrupted (runner died, paused, provider
    /// outage): the next start continues its conversation instead of
    /// starting a new attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
    /// The artifacts under `artifacts/`, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    /// Why the phase was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// A loop that completed because `max_iters` ran out before `until`
    /// held (`on_exhausted: continue`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exhausted: bool,
    /// Artifacts a person accepted or edited without them passing their schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<String>,
}

impl PhaseState {
    /// A phase that has not started.
    pub fn pending(id: &str, kind: PhaseKind) -> Self {
        PhaseState {
            id: id.to_string(),
            kind,
            status: PhaseStatus::Pending,
            attempt: 0,
            iteration: 0,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            exit_code: None,
            provider: None,
            model: None,
            usage: None,
            continues: false,
            artifacts: Vec::new(),
            error: None,
            skip_reason: None,
            exhausted: false,
            forced: Vec::new(),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Serialises a record as a checkpoint file: pretty JSON, one value per line, final newline.
pub fn to_file_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain data types cannot fail: no maps with non-string keys.
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// One line of `comments.jsonl`: a note a person left on a run or a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    /// When it was written (RFC 3339).
    pub time: String,
    /// Who wrote it: `Name <email>` from git config.
    pub author: String,
    /// The phase it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The comment.
    pub text: String,
}
