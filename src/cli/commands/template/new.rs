//! `wfe template new NAME [--from TEMPLATE]`: a new template in
//! `.wfe/templates/NAME.json`, minimal or cloned from another, that
//! validates as written and names the template schema in `$schema`, so an
//! editor completes and checks it.
//!
//! Nothing is written unless everything is right: a bad NAME, a template
//! of that name already in `.wfe/templates/`, or a `--from` that does not
//! load are bad input (exit 2).

use clap::Args;
use serde_json::{Value, json};

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::template::{parse_template, validate};

/// Where the template schema is written for editors, relative to the root.
const SCHEMA_FILE: &str = ".wfe/template.schema.json";
/// How a template in `.wfe/templates/` names [`SCHEMA_FILE`].
const SCHEMA_REF: &str = "../template.schema.json";

/// Write a new template into .wfe/templates/NAME.json
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The new template's name: lower-case letters, digits, `-` and `_`, starting with a letter or digit
    pub name: String,
    /// Start from a copy of this template (a built-in, a repo template or a path) instead of a minimal one
    #[arg(long, value_name = "TEMPLATE")]
    pub from: Option<String>,
}

/// Runs `wfe template new`.
pub(super) fn run(args: NewArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let name = args.name.as_str();
    check_name(name).map_err(CliError::input)?;
    let dir = ctx.root.join(".wfe/templates");
    for ext in ["json", "yaml", "yml"] {
        let existing = dir.join(format!("{name}.{ext}"));
        if existing.exists() {
            return Err(CliError::input(format!(
                "{} exists: pick another name, or edit that file",
                existing.display()
            )));
        }
    }
    let mut doc = match &args.from {
        Some(from) => {
            let (template, _) = ctx.catalog.load(from, &ctx.registry)?;
            serde_json::to_value(&template).map_err(|e| {
                CliError::internal(format!("cannot write template `{from}` as JSON: {e}"))
            })?
        }
        None => minimal(name),
    };
    let text = with_header(&mut doc, name);
    let file = format!(".wfe/templates/{name}.json");
    // What is written must load and validate as it is.
    let template = parse_template(&text, &file, false)?;
    validate(&template, &file, &ctx.registry)?;
    write(&ctx.root.join(SCHEMA_FILE), &schema_text(), true)?;
    write(&ctx.root.join(&file), &text, false)?;
    let from = args
        .from
        .as_deref()
        .map_or_else(String::new, |f| format!(" (a copy of `{f}`)"));
    ui.note(&format!(
        "wrote {file}{from}; run it with `wfe run {name}`, check it with `wfe template validate {name}`"
    ));
    Ok(Outcome::Success)
}

/// Why `name` cannot name a template, if it cannot.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name a template: use lower-case letters, digits, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// The smallest useful template: one script phase writing one artifact.
fn minimal(name: &str) -> Value {
    json!({
        "name": name,
        "description": "What this workflow does, in one line",
        "args": { "type": "object", "properties": {}, "additionalProperties": false },
        "phases": [{
            "id": "hello",
            "kind": "script",
            "description": "A first phase: replace it with yours",
            "run": "echo '{\"text\": \"hello from {{ run.template }}\"}' > \"$WFE_OUT/greeting.json\"",
            "outputs": { "greeting": "message" }
        }]
    })
}

/// `doc` named `name`, with `$schema` (keys sort, so it comes first), as
/// pretty JSON text.
fn with_header(doc: &mut Value, name: &str) -> String {
    let mut out = serde_json::Map::new();
    out.insert("$schema".into(), json!(SCHEMA_REF));
    out.insert("name".into(), json!(name));
    if let Value::Object(fields) = doc {
        for (key, value) in std::mem::take(fields) {
            if key != "$schema" && key != "name" {
                out.insert(key, value);
            }
        }
    }
    let text = serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default();
    format!("{text}\n")
}

/// The template format's JSON Schema, as `schemas/template.schema.json` has it.
fn schema_text() -> String {
    let schema = crate::template::template_json_schema().to_value();
    format!(
        "{}\n",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    )
}

/// Writes `text` to `path` (making its directory); an existing file is
/// replaced only when `replace`.
fn write(path: &std::path::Path, text: &str, replace: bool) -> Result<(), CliError> {
    if !replace && path.exists() {
        return Err(CliError::input(format!("{} exists", path.display())));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::internal(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| CliError::internal(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "my-flow", "ci_2", "9lives"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "_x", "My", "a b", "a/b", "../x", "a.json", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_schema_comes_first_and_the_name_is_replaced() {
        let mut doc = json!({ "phases": [], "name": "old", "$schema": "x", "description": "d" });
        let text = with_header(&mut doc, "new");
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys[0], "$schema");
        assert!(
            text.contains("\"new\"") && !text.contains("\"old\""),
            "{text}"
        );
    }
}
