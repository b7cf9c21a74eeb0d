//! Search: a tantivy index over every run's artifacts, logs, comments,
//! tool calls and attempt errors (DESIGN.md §8).
//!
//! The index lives in `<git-dir>/wfe/index/` and is derived data: it reads
//! runs only through [`RunStore`](crate::store::RunStore), records in its
//! commit payload which checkpoint of each run it holds, catches up with
//! the refs on demand, and is rebuilt from them when it is missing, corrupt
//! or of another version. It never prints: callers report what it did.

mod background;
mod catch_up;
mod directory;
mod extract;
mod fields;
mod flatten;
mod query;
mod search_index;
mod state;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use background::Background;
pub use catch_up::CatchUp;
pub use extract::Kind;
pub use fields::SCHEMA_VERSION;
pub use flatten::flatten;
pub use query::{Hit, QueryError, Search};
pub use search_index::{Rebuilt, SearchIndex};
pub use state::IndexState;

use crate::store::StoreError;

/// Everything that can go wrong with the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The query cannot be parsed or run as written.
    #[error("{}", .0.message)]
    Query(QueryError),
    /// Reading the runs failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Tantivy failed: the index is unreadable, or the disk is.
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index's own state beside tantivy's files is unreadable.
    #[error("search index: {what}")]
    Damaged {
        /// What is wrong.
        what: String,
    },
    /// A filesystem error around the index.
    #[error("search index: {action} {path}")]
    Io {
        /// What wfe was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl From<tantivy::directory::error::OpenDirectoryError> for IndexError {
    fn from(e: tantivy::directory::error::OpenDirectoryError) -> Self {
        IndexError::Tantivy(e.into())
    }
}

impl IndexError {
    /// True when the index itself failed, so building it again may help.
    pub fn is_index_failure(&self) -> bool {
        !self.is_busy() && matches!(self, IndexError::Tantivy(_) | IndexError::Damaged { .. })
    }

    /// True when another process held the index's writer too long.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            IndexError::Tantivy(tantivy::TantivyError::LockFailure(..))
        )
    }

    /// The error in a few words, for a one-line notice.
    pub fn brief(&self) -> String {
        match self {
            IndexError::Tantivy(e) => search_index::damage(e),
            IndexError::Damaged { what } => what.clone(),
            other => other.to_string(),
        }
    }
}
