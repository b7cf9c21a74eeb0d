//! Engine errors.

use super::{Refusal, Unrunnable};
use crate::artifact::ArtifactError;
use crate::store::StoreError;

/// Everything that can stop the engine (as opposed to failing a phase).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file in a checkpoint is missing or not what wfe writes.
    #[error("run {run}: {path} in checkpoint {checkpoint} is unreadable: {message}")]
    Corrupt {
        /// The run.
        run: String,
        /// The checkpoint.
        checkpoint: String,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A phase this version cannot run in the way the template asks.
    #[error("phase `{phase}` cannot run: {reason}")]
    NotRunnable {
        /// The phase.
        phase: String,
        /// Why not.
        reason: Unrunnable,
    },
    /// Processes a runner that is gone had started could not be ended, so
    /// no new attempt may start beside them.
    #[error(
        "run {run}: cannot end the leftover process group {pgid} of {phase} attempt {attempt}: {message}"
    )]
    Leftovers {
        /// The run.
        run: String,
        /// The phase (as people see it).
        phase: String,
        /// The attempt.
        attempt: u32,
        /// The process group.
        pgid: u32,
        /// What went wrong.
        message: String,
    },
    /// Worktrees of a dead runner's attempts could not be removed.
    #[error("run {run}: cannot remove the worktrees a stopped runner left: {message}")]
    Worktrees {
        /// The run.
        run: String,
        /// What failed.
        message: String,
    },
    /// The run has no phase of that id.
    #[error("run {run} has no phase `{phase}`; its phases: {}", .known.join(", "))]
    NoSuchPhase {
        /// The run.
        run: String,
        /// The phase asked for.
        phase: String,
        /// The phases it has.
        known: Vec<String>,
    },
    /// The phase declares no output of that name.
    #[error("phase `{phase}` of run {run} has no output `{artifact}`; its outputs: {}", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
    NoSuchArtifact {
        /// The run.
        run: String,
        /// The phase.
        phase: String,
        /// The artifact asked for.
        artifact: String,
        /// The outputs it declares.
        known: Vec<String>,
    },
    /// A manual change that does not apply to the phase as it is.
    #[error("cannot accept phase `{phase}` of run {run}: {reason}")]
    NotAcceptable {
        /// The run.
        run: String,
        /// The phase.
        phase: String,
        /// Why not.
        reason: Refusal,
    },
    /// A control request that does not apply to the run as it is.
    #[error("run {run}: {reason}")]
    NotControllable {
        /// The run.
        run: String,
        /// Why not.
        reason: Refusal,
    },
    /// A retry or skip that does not apply to the phase as it is.
    #[error("cannot {action} phase `{phase}` of run {run}: {reason}")]
    Refused {
        /// What was asked: `retry`, `skip`.
        action: &'static str,
        /// The run.
        run: String,
        /// The phase.
        phase: String,
        /// Why not.
        reason: Refusal,
    },
    /// A rollback target that names a checkpoint outside the run's history.
    #[error("checkpoint {checkpoint} is not part of run {run}")]
    NotInRun {
        /// The run.
        run: String,
        /// The checkpoint (or prefix) as given or found.
        checkpoint: String,
    },
    /// A rollback target that names no usable checkpoint of the run.
    #[error("cannot roll run {run} back to `{target}`: {reason}")]
    BadTarget {
        /// The run.
        run: String,
        /// The target as given.
        target: String,
        /// Why not.
        reason: String,
    },
    /// A frozen schema does not compile.
    #[error("run {run}: {source}")]
    Schema {
        /// The run.
        run: String,
        /// The schema's error.
        #[source]
        source: ArtifactError,
    },
}
