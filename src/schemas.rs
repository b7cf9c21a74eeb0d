//! The JSON Schemas wfe generates from its Rust types: the template format
//! and the files of a checkpoint's tree (DESIGN.md §3).
//!
//! Each is checked in under `schemas/` (so editors and other tools can use
//! it without wfe) and a test keeps the files up to date: it regenerates
//! every schema listed here and compares. Run `WFE_BLESS=1 cargo test
//! schemas` after changing a type to rewrite the files. These describe
//! wfe's own files; the artifact library (`schemas/NAME.json`, compiled
//! into the binary) is `crate::artifact`'s.

use schemars::JsonSchema;

use crate::artifact::SCHEMAS_BASE;

/// Every generated schema: (file name under `schemas/`, schema).
pub fn generated_schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "template.schema.json",
            crate::template::template_json_schema().to_value(),
        ),
        (
            "run.schema.json",
            with_id::<crate::engine::RunRecord>("run.schema.json"),
        ),
        (
            "phase-state.schema.json",
            with_id::<crate::engine::PhaseState>("phase-state.schema.json"),
        ),
        (
            "log-line.schema.json",
            with_id::<crate::attempt::LogLine>("log-line.schema.json"),
        ),
        (
            "comment.schema.json",
            with_id::<crate::engine::Comment>("comment.schema.json"),
        ),
        (
            "tool-call.schema.json",
            with_id::<crate::engine::ToolCall>("tool-call.schema.json"),
        ),
        (
            "exchange.schema.json",
            with_id::<crate::provider::Exchange>("exchange.schema.json"),
        ),
    ]
}

/// The schema of `T` with the `$id` `https://wfe.local/schemas/FILE`.
fn with_id<T: JsonSchema>(file: &str) -> serde_json::Value {
    let mut schema = schemars::schema_for!(T);
    // On the root only: an `$id` inside `$defs` would change how `$ref`s
    // resolve were the type ever embedded in another schema.
    schema.insert("$id".into(), format!("{SCHEMAS_BASE}{file}").into());
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn schemas_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
    }

    /// The text a schema is checked in as: pretty JSON and a final newline.
    fn render(schema: &serde_json::Value) -> String {
        let mut text =
            serde_json::to_string_pretty(schema).expect("a JSON value always serialises");
        text.push('\n');
        text
    }

    #[test]
    fn checked_in_schemas_are_up_to_date() {
        let bless = std::env::var_os("WFE_BLESS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for (name, schema) in generated_schemas() {
            let path = schemas_dir().join(name);
            let wanted = render(&schema);
            let found = std::fs::read_to_string(&path).unwrap_or_default();
            if found == wanted {
                continue;
            }
            if bless {
                std::fs::write(&path, wanted)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            } else {
                stale.push(format!(
                    "schemas/{name} is stale: run `WFE_BLESS=1 cargo test schemas`"
                ));
            }
        }
        assert!(stale.is_empty(), "{}", stale.join("\n"));
    }

    #[test]
    fn generated_schemas_are_valid_json_schemas() {
        for (name, schema) in generated_schemas() {
            if let Err(e) = jsonschema::meta::validate(&schema) {
                panic!(
                    "{name} is not a valid JSON Schema: {e} (at {})",
                    e.instance_path()
                );
            }
            jsonschema::draft202012::new(&schema)
                .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
            let id = schema
                .get("$id")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            assert_eq!(id, format!("https://wfe.local/schemas/{name}"), "{name}");
        }
    }

    #[test]
    fn records_match_their_generated_schemas() {
        use crate::attempt::{LogLine, Stream};
        use crate::engine::{Comment, PhaseState};
        use crate::template::PhaseKind;

        let samples = [
            (
                "phase-state.schema.json",
                serde_json::to_value(PhaseState::pending("build", PhaseKind::Script)).unwrap(),
            ),
            (
                "log-line.schema.json",
                serde_json::to_value(LogLine {
                    time: "2026-01-01T00:00:00Z".into(),
                    attempt: 1,
                    stream: Stream::Stdout,
                    line: "hello".into(),
                })
                .unwrap(),
            ),
            (
                "comment.schema.json",
                serde_json::to_value(Comment {
                    time: "2026-01-01T00:00:00Z".into(),
                    author: "Ada <ada@example.com>".into(),
                    phase: None,
                    text: "looks good".into(),
                    for_attempt: None,
                })
                .unwrap(),
            ),
        ];
        let schemas: std::collections::BTreeMap<_, _> = generated_schemas().into_iter().collect();
        for (name, sample) in samples {
            let validator = jsonschema::draft202012::new(&schemas[name]).unwrap();
            assert!(validator.is_valid(&sample), "{name}: {sample}");
            // LogLine does not deny unknown fields (yet), so neither does its schema.
            if name != "log-line.schema.json" {
                let mut extra = sample.clone();
                extra["unknown"] = serde_json::json!(1);
                assert!(!validator.is_valid(&extra), "{name} allows unknown keys");
            }
        }
    }

    #[test]
    fn builtin_templates_match_the_template_schema() {
        let schema = crate::template::template_json_schema().to_value();
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        for (name, text) in crate::template::BUILTIN_TEMPLATES {
            let doc: serde_json::Value = serde_json::from_str(text).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&doc)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "templates/{name}.json:\n{}",
                errors.join("\n")
            );
        }
    }

    #[test]
    fn the_template_schema_knows_what_each_kind_needs() {
        let schema = crate::template::template_json_schema().to_value();
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let template =
            |phase: serde_json::Value| serde_json::json!({ "name": "t", "phases": [phase] });
        let cases = [
            (
                serde_json::json!({ "id": "a", "kind": "script", "run": "true" }),
                true,
            ),
            (serde_json::json!({ "id": "a", "kind": "script" }), false),
            (
                serde_json::json!({ "id": "a", "kind": "agent", "prompt": "p", "run": "x" }),
                false,
            ),
            (
                serde_json::json!({ "id": "a", "kind": "gate", "depends_on": ["b"] }),
                true,
            ),
            (
                serde_json::json!({ "id": "a", "kind": "loop", "max_iters": 1, "phases": [{ "id": "b", "kind": "gate" }] }),
                true,
            ),
            (
                serde_json::json!({ "id": "a", "kind": "loop", "phases": [{ "id": "b", "kind": "gate" }] }),
                false,
            ),
            (
                serde_json::json!({ "id": "a", "kind": "script", "run": "x", "env": { "WFE_OUT": "x" } }),
                false,
            ),
            (serde_json::json!({ "id": "A", "kind": "gate" }), false),
        ];
        for (phase, valid) in cases {
            assert_eq!(
                validator.is_valid(&template(phase.clone())),
                valid,
                "{phase}"
            );
        }
    }
}
