//! Data-driven checks of the built-in schema library (`schemas/`): every
//! schema is well-formed and documented, and every example under
//! `schemas/examples/NAME/` passes or fails as its name says.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use super::{Registry, SCHEMAS_BASE, builtin_schema, builtin_schema_names, parse_json_document};

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// JSON pointers of subschemas that describe a field (a property, a
/// pattern property, a definition) but have no `description`.
fn undescribed(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    for keyword in [
        "properties",
        "patternProperties",
        "$defs",
        "definitions",
        "dependentSchemas",
    ] {
        for (key, sub) in object
            .get(keyword)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let path = format!("{at}/{keyword}/{key}");
            let described = sub
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                out.push(path.clone());
            }
            undescribed(sub, &path, out);
        }
    }
    for keyword in [
        "items",
        "additionalProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    ] {
        if let Some(sub) = object.get(keyword) {
            undescribed(sub, &format!("{at}/{keyword}"), out);
        }
    }
    for keyword in ["prefixItems", "allOf", "anyOf", "oneOf"] {
        for (i, sub) in object
            .get(keyword)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            undescribed(sub, &format!("{at}/{keyword}/{i}"), out);
        }
    }
}

#[test]
fn every_builtin_schema_is_well_formed_and_documented() {
    for name in builtin_schema_names() {
        let text = builtin_schema(name).unwrap_or_default();
        let schema: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("schemas/{name}.json is not JSON: {e}"));
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("schemas/{name}.json: {e} (at {})", e.instance_path());
        }
        let field = |key: &str| schema.get(key).and_then(Value::as_str).unwrap_or_default();
        assert_eq!(
            field("$schema"),
            "https://json-schema.org/draft/2020-12/schema",
            "{name}"
        );
        assert_eq!(field("$id"), format!("{SCHEMAS_BASE}{name}.json"), "{name}");
        assert_eq!(field("title"), name, "{name}: title");
        assert!(!field("description").is_empty(), "{name}: description");
        let mut missing = Vec::new();
        undescribed(&schema, "", &mut missing);
        assert!(
            missing.is_empty(),
            "schemas/{name}.json: no description at {}",
            missing.join(", ")
        );
    }
}

#[test]
fn the_undescribed_walk_finds_nested_fields() {
    let schema = serde_json::json!({
        "properties": {
            "a": { "description": "ok", "type": "array", "items": {
                "properties": { "b": { "type": "string" } }
            } },
            "c": { "type": "string" }
        },
        "$defs": { "d": { "anyOf": [{ "properties": { "e": {} } }] } }
    });
    let mut missing = Vec::new();
    undescribed(&schema, "", &mut missing);
    missing.sort();
    assert_eq!(
        missing,
        [
            "/$defs/d",
            "/$defs/d/anyOf/0/properties/e",
            "/properties/a/items/properties/b",
            "/properties/c",
        ]
    );
}

#[test]
fn every_library_file_is_built_in() {
    let on_disk: BTreeSet<String> = files(&schemas_dir())
        .into_iter()
        .filter_map(|f| {
            // `*.schema.json` are generated from wfe's own types (src/schemas.rs).
            let stem = f.strip_suffix(".json")?;
            (!stem.ends_with(".schema")).then(|| stem.to_string())
        })
        .collect();
    let built_in: BTreeSet<String> = builtin_schema_names()
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(on_disk, built_in);
}

/// What an example gives: the parse error, or one `PATH: MESSAGE` line per violation.
fn outcome(registry: &Registry, name: &str, file: &Path) -> Vec<String> {
    let bytes = std::fs::read(file).unwrap_or_default();
    let doc = match parse_json_document(&file.display().to_string(), &bytes) {
        Ok(doc) => doc,
        Err(e) => return vec![e.to_string()],
    };
    let schema = registry
        .compile(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    schema
        .validate(&doc)
        .into_iter()
        .map(|v| format!("{}: {}", v.instance_path, v.message))
        .collect()
}

#[test]
fn every_example_passes_or_fails_as_named() {
    let empty = TempDir::new().unwrap();
    let registry = Registry::new(empty.path());
    let mut problems = Vec::new();
    for name in builtin_schema_names() {
        let dir = schemas_dir().join("examples").join(name);
        let examples = if dir.is_dir() {
            files(&dir)
        } else {
            Vec::new()
        };
        let valid: Vec<&String> = examples
            .iter()
            .filter(|f| f.starts_with("valid") && f.ends_with(".json"))
            .collect();
        let invalid: Vec<&String> = examples
            .iter()
            .filter(|f| f.starts_with("invalid") && f.ends_with(".json"))
            .collect();
        if valid.is_empty() || invalid.is_empty() {
            problems.push(format!(
                "{name}: needs at least one valid*.json and one invalid*.json in {}",
                dir.display()
            ));
        }
        for file in &examples {
            let known = file.starts_with("valid") && file.ends_with(".json")
                || file.starts_with("invalid")
                    && (file.ends_with(".json") || file.ends_with(".expected"));
            if !known {
                problems.push(format!("{name}/{file}: not an example file"));
            }
        }
        for file in valid {
            let found = outcome(&registry, name, &dir.join(file));
            if !found.is_empty() {
                problems.push(format!(
                    "{name}/{file} should pass:\n    {}",
                    found.join("\n    ")
                ));
            }
        }
        for file in invalid {
            let expected_file = dir.join(file.replace(".json", ".expected"));
            let Ok(expected) = std::fs::read_to_string(&expected_file) else {
                problems.push(format!("{name}/{file}: no {}", expected_file.display()));
                continue;
            };
            let expected = expected.trim();
            let found = outcome(&registry, name, &dir.join(file));
            if found.is_empty() {
                problems.push(format!("{name}/{file} should fail but passes"));
            } else if expected.is_empty() || !found.iter().any(|line| line.contains(expected)) {
                problems.push(format!(
                    "{name}/{file} should fail with `{expected}`, got:\n    {}",
                    found.join("\n    ")
                ));
            }
        }
        for file in examples.iter().filter(|f| f.ends_with(".expected")) {
            if !dir.join(file.replace(".expected", ".json")).is_file() {
                problems.push(format!("{name}/{file}: no matching .json"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
