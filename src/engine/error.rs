//! Engine errors.

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
    /// A phase kind this version cannot run yet.
    #[error("phase `{phase}` is a {kind} phase; this version of wfe can only run script phases")]
    Unsupported {
        /// The phase.
        phase: String,
        /// Its kind.
        kind: &'static str,
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
