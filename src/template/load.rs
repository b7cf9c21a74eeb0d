//! Parsing template text (JSON or YAML) into the model, with exact paths.

use super::{Template, TemplateError};

/// Parses a template; `file` names it in errors; `yaml` picks the syntax.
/// Reports syntax errors with line and column and model errors with their
/// JSON path (e.g. `phases[2].timeout`).
pub fn parse_template(text: &str, file: &str, yaml: bool) -> Result<Template, TemplateError> {
    let _ = (text, file, yaml);
    todo!("helper implements")
}

/// `sha256:<hex>` over the template's canonical JSON (sorted keys, no
/// whitespace), so reformatting a template does not change its digest.
pub fn digest(template: &Template) -> String {
    let _ = template;
    todo!("helper implements")
}
