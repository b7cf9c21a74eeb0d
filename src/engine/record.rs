//! The records a checkpoint holds: `run.json` and `comments.jsonl` (a
//! phase's `state.json` is [`super::PhaseState`], beside its transitions).
//!
//! These are wfe's own file formats; their JSON Schemas are generated from
//! these types. Fields are declared in the order they should appear in the
//! pretty-printed files, so `git diff` between checkpoints reads well.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StopReason;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created; no phase has started.
    Pending,
    /// A runner is working on it (or died while doing so).
    Running,
    /// Stopped on request (or by an outage); resuming goes on.
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
    /// Why the run failed, stopped or waits (a sentence from an older wfe reads as `legacy`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::reason::read_reason"
    )]
    #[schemars(with = "Option<super::reason::StoredReason>")]
    pub reason: Option<StopReason>,
    /// Args stored masked (`***`): declared `"secret": true`, or holding a
    /// secret value. Their values are kept out of git, in the clone's
    /// `<git-dir>/wfe/secrets/<run>.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_args: Vec<String>,
    /// The run's budget over all its agent phases (`wfe run --budget` over
    /// the template's `defaults.budget` over the config's `budget`), with
    /// any raise a person approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::budget::Budget>,
    /// The run's spend a person saw when they last approved a pause at
    /// the run budget's soft share (that share does not ask again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_approved: Option<crate::budget::Spend>,
}

impl RunRecord {
    /// Moves the run to `status` for `reason`, at time `now` (RFC 3339):
    /// a final status records when the run ended, any other clears it.
    /// The live runner and the offline operations both go through here.
    pub fn set_status(&mut self, status: RunStatus, reason: Option<StopReason>, now: &str) {
        self.status = status;
        self.reason = reason;
        self.finished_at = status.is_final().then(|| now.to_string());
    }
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
    /// The attempt of `phase` (an agent phase) this comment is sent to,
    /// with its prompt (`comment --for-agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_attempt: Option<u32>,
}
