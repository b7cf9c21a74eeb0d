//! Whole-template checks: ids, the DAG, fields per kind, durations,
//! schemas, expressions.

use super::{Template, TemplateError};
use crate::artifact::Registry;

/// Checks everything about a parsed template; reports every problem at once.
pub fn validate(template: &Template, file: &str, registry: &Registry) -> Result<(), TemplateError> {
    let _ = (template, file, registry);
    todo!("helper implements")
}
