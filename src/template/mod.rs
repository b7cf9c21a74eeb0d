//! Templates: the model, loading (JSON or YAML), validation, expressions,
//! and run arguments.
//!
//! Nothing is written before a template has passed [`validate()`]: every
//! problem found is reported at once, each with the file, the JSON path and
//! what was expected.
//!
//! The way in is [`Catalog::load`]: find the file (repo, built-in or path),
//! [`parse_template`] it (shape, keys, kinds, durations), then [`validate()`]
//! it (names, the DAG, fields per kind, schemas, expressions). [`expr`]
//! evaluates `if`/`until` and renders `run`/`cwd`/`env`/prompts at run time;
//! [`build_args`] turns `--arg` pairs into the run's args. Nothing here
//! prints, reads the environment or looks at the current directory.

mod args;
mod catalog;
mod error;
pub mod expr;
mod load;
mod matrix;
mod model;
mod outputs;
mod path;
mod upstream;
mod validate;

/// Durations and retry policies as templates write them, defined in [`crate::retry`].
pub use crate::retry::{DurationSpec, RetryPolicy};
pub use args::{ArgsError, build_args, secret_args};
pub use catalog::{BUILTIN_TEMPLATES, Catalog, TemplateSource};
pub use error::{Problem, TemplateError};
pub use load::{digest, parse_template};
pub use matrix::{MAX_COMBINATIONS, combination_id, expand};
pub use model::{
    Approval, Combination, Defaults, Isolation, Matrix, OnConflict, OnExhausted, OnFailure, Phase,
    PhaseKind, Review, Template, Tool,
};
pub use outputs::{FileOutput, Outputs};
pub use validate::{MAX_LOOP_DEPTH, validate};

/// Where the template format's JSON Schema says it lives (never fetched;
/// templates name it in `$schema` for editor help).
pub const TEMPLATE_SCHEMA_ID: &str = "https://wfe.local/schemas/template.schema.json";

/// The JSON Schema of the template format, generated from [`Template`].
pub fn template_json_schema() -> schemars::Schema {
    let mut schema = schemars::schema_for!(Template);
    // Set here rather than on the type: an `$id` inside `$defs` (were
    // Template ever embedded in another schema) would change how its `$ref`s
    // resolve.
    schema.insert("$id".into(), TEMPLATE_SCHEMA_ID.into());
    schema
}
