//! Artifact schemas: resolving schema names, compiling validators, and
//! validating JSON documents with every violation reported.
//!
//! Resolution order for a schema name: the repo's `.wfe/schemas/NAME.json`,
//! then the built-in library compiled into the binary (`schemas/` in this
//! project), then a path relative to the repository root. `$ref`s between
//! schemas resolve to local documents only (see `references.rs`); nothing
//! here fetches anything over the network. Artifact documents are parsed
//! strictly (`document.rs`): duplicate keys are errors.

mod bundle;
mod diff;
mod document;
#[cfg(test)]
mod library_tests;
mod references;
mod registry;
mod schema;

pub use bundle::bundle;
pub use diff::{Change, diff, pointer_token};
pub use document::parse_json_document;
pub use references::{PATH_BASE, SCHEMAS_BASE, is_reference_name, schema_uri};
pub use registry::{Registry, ResolvedSchema, SchemaSource, builtin_schema, builtin_schema_names};
pub use schema::{OutputSpec, Schema, Violation, compile_frozen};

use std::path::PathBuf;

/// Everything that can go wrong with schemas and artifact documents.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// No schema of that name in the repo, the built-ins, or as a path.
    #[error(
        "unknown schema `{name}`: not in .wfe/schemas/, not built in, and not a schema file path"
    )]
    UnknownSchema {
        /// The name asked for.
        name: String,
    },
    /// A schema file could not be read.
    #[error("cannot read schema file {}", .path.display())]
    ReadSchema {
        /// The file.
        path: PathBuf,
        /// Why: the OS error, not a regular file, or over the size limit.
        #[source]
        source: crate::bounded::ReadError,
    },
    /// A schema is not valid JSON or not a valid JSON Schema.
    #[error("schema `{name}` ({origin}) is invalid: {message}")]
    InvalidSchema {
        /// The schema's name.
        name: String,
        /// Where it came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A schema `$ref`s a document that is not available locally.
    #[error("schema `{name}` ({origin}) refers to {uri}, which cannot be used: {reason}")]
    UnresolvedReference {
        /// The schema's name.
        name: String,
        /// Where it came from.
        origin: String,
        /// The reference, resolved to an absolute URI.
        uri: String,
        /// Why it cannot be followed (remote references are never fetched).
        reason: String,
    },
    /// A document is not acceptable JSON (empty, too large, syntax error).
    #[error("{what} is not valid JSON: {message}")]
    NotJson {
        /// What the document is (e.g. a file path).
        what: String,
        /// What is wrong, with line and column when known.
        message: String,
    },
}
