//! Templates: the model, loading (JSON or YAML), validation, expressions,
//! and run arguments.
//!
//! Nothing is written before a template has passed [`validate`]: every
//! problem found is reported at once, each with the file, the JSON path and
//! what was expected.

mod args;
mod catalog;
mod duration;
mod error;
pub mod expr;
mod load;
mod model;
mod validate;

pub use args::{ArgsError, build_args};
pub use catalog::{BUILTIN_TEMPLATES, Catalog, TemplateSource};
pub use duration::DurationSpec;
pub use error::{Problem, TemplateError};
pub use load::{digest, parse_template};
pub use model::{
    Approval, Defaults, OnExhausted, OnFailure, Phase, PhaseKind, RetryPolicy, Review, Template,
};
pub use validate::validate;

/// The JSON Schema of the template format, generated from [`Template`].
pub fn template_json_schema() -> schemars::Schema {
    schemars::schema_for!(Template)
}
