//! Run arguments: `--args-file` and `--arg k=v`, checked against the
//! template's args schema.
//!
//! Only top-level args are supported: `--arg a.b=1` sets the arg named
//! `a.b`. A value is text unless the schema gives its property a type that
//! text cannot be (a number, a boolean, an array, an object), in which case
//! the value is read as JSON: `--arg retries=3`, `--arg tags='["a"]'`.

use serde_json::{Map, Value};

use crate::artifact::{ArtifactError, Schema, Violation};

/// Arguments that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArgsError {
    /// `--arg` without `=`.
    #[error("--arg `{given}` is not of the form NAME=VALUE")]
    NotAPair {
        /// What was given.
        given: String,
    },
    /// The args schema itself is not a valid JSON Schema.
    #[error("the template's args schema is invalid: {message}")]
    BadSchema {
        /// What is wrong.
        message: String,
    },
    /// The args fail the schema.
    #[error("args do not match the template's args schema:{}", .violations.iter().map(|v| format!("\n  {}: {}", if v.instance_path.is_empty() { "(args)" } else { &v.instance_path }, v.message)).collect::<String>())]
    Invalid {
        /// Every violation.
        violations: Vec<Violation>,
    },
}

/// Builds the run's args: `file` (an object) first, each `NAME=VALUE` pair
/// over it, schema `default`s for what is still missing; then validates.
/// A pair's value is a string unless the schema types that property as
/// something else, in which case it is parsed as JSON.
pub fn build_args(
    schema: Option<&Value>,
    file: Option<Value>,
    pairs: &[String],
) -> Result<Value, ArgsError> {
    let mut args = match file {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            let found = super::load::describe_value(&other);
            return Err(invalid(vec![violation(
                "",
                format!("the args file must hold a JSON object of args, found {found}"),
            )]));
        }
    };

    let mut unreadable = Vec::new();
    for pair in pairs {
        let Some((name, text)) = pair.split_once('=').filter(|(name, _)| !name.is_empty()) else {
            return Err(ArgsError::NotAPair {
                given: pair.clone(),
            });
        };
        match typed_value(property(schema, name), name, text) {
            Ok(value) => {
                args.insert(name.to_string(), value);
            }
            Err(v) => unreadable.push(v),
        }
    }
    // A value that did not parse would only add a confusing type error to
    // the schema's report; say what was wrong with the text instead.
    if !unreadable.is_empty() {
        return Err(invalid(unreadable));
    }

    // Every arg reaches scripts as `WFE_ARG_<NAME>=<value>`: what no
    // environment can hold is refused now rather than when a phase starts.
    let unfit: Vec<Violation> = args
        .iter()
        .filter_map(|(name, value)| unfit_arg(name, value))
        .collect();
    if !unfit.is_empty() {
        return Err(invalid(unfit));
    }

    let Some(schema) = schema else {
        return Ok(Value::Object(args));
    };
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            if let Some(default) = property.get("default")
                && !args.contains_key(name)
            {
                args.insert(name.clone(), default.clone());
            }
        }
    }
    let args = Value::Object(args);
    let compiled = Schema::compile("args", "the template's args schema", schema.clone()).map_err(
        |e| match e {
            ArtifactError::InvalidSchema { message, .. } => ArgsError::BadSchema { message },
            other => ArgsError::BadSchema {
                message: other.to_string(),
            },
        },
    )?;
    let violations = compiled.validate(&args);
    if violations.is_empty() {
        Ok(args)
    } else {
        Err(invalid(violations))
    }
}

/// The args `schema` declares secret: the properties with `"secret": true`.
/// Their values are committed masked; see `store::SecretArgs`.
pub fn secret_args(schema: Option<&Value>) -> Vec<String> {
    let Some(Value::Object(properties)) = schema.and_then(|s| s.get("properties")) else {
        return Vec::new();
    };
    properties
        .iter()
        .filter(|(_, p)| p.get("secret") == Some(&Value::Bool(true)))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Longest arg name, as for every id in a template.
const MAX_NAME_LEN: usize = 255;

/// Why an arg cannot be passed to scripts, if it cannot.
fn unfit_arg(name: &str, value: &Value) -> Option<Violation> {
    let at = format!("/{}", name.replace('~', "~0").replace('/', "~1"));
    if name.len() > MAX_NAME_LEN {
        let shown: String = name.chars().take(40).collect();
        let message = format!(
            "the arg name `{shown}…` is {} bytes long; at most {MAX_NAME_LEN}",
            name.len()
        );
        return Some(violation("", message));
    }
    if name.contains(['\0', '=']) {
        return Some(violation(
            "",
            format!(
                "the arg name {name:?} holds `=` or a NUL character, which no environment variable name can"
            ),
        ));
    }
    if value.as_str().is_some_and(|s| s.contains('\0')) {
        return Some(violation(
            &at,
            "contains a NUL character, which no environment variable can hold (args reach scripts as WFE_ARG_*)".to_string(),
        ));
    }
    None
}

/// The schema of property `name`, when the args schema has one.
fn property<'s>(schema: Option<&'s Value>, name: &str) -> Option<&'s Value> {
    schema?.get("properties")?.get(name)
}

/// The JSON types a property accepts, from its `type` (a name or a list).
fn types(property: Option<&Value>) -> Vec<&str> {
    match property.and_then(|p| p.get("type")) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The value of `--arg name=text`: the text itself when the property may be
/// a string (or is untyped), else the text read as JSON.
fn typed_value(property: Option<&Value>, name: &str, text: &str) -> Result<Value, Violation> {
    let types = types(property);
    if types.is_empty() || types.contains(&"string") {
        return Ok(Value::String(text.to_string()));
    }
    let wanted = types
        .iter()
        .map(|t| expected(t))
        .collect::<Vec<_>>()
        .join(" or ");
    serde_json::from_str(text).map_err(|_| {
        violation(
            &format!("/{}", name.replace('~', "~0").replace('/', "~1")),
            format!("--arg {name}={text}: expected {wanted}, written as JSON"),
        )
    })
}

fn expected(json_type: &str) -> &'static str {
    match json_type {
        "integer" => "an integer (e.g. 3)",
        "number" => "a number (e.g. 2.5)",
        "boolean" => "true or false",
        "array" => "an array (e.g. [\"a\", \"b\"])",
        "object" => "an object (e.g. {\"k\": 1})",
        "null" => "null",
        _ => "a JSON value",
    }
}

fn violation(instance_path: &str, message: String) -> Violation {
    Violation {
        instance_path: instance_path.to_string(),
        schema_path: String::new(),
        message,
    }
}

fn invalid(violations: Vec<Violation>) -> ArgsError {
    ArgsError::Invalid { violations }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn args_no_environment_can_hold_are_refused_before_the_schema() {
        let nul = build_args(None, Some(json!({"dir": "a\u{0}b"})), &[]).unwrap_err();
        assert!(
            nul.to_string().contains("/dir: contains a NUL character"),
            "{nul}"
        );
        let long = build_args(None, None, &[format!("{}=x", "n".repeat(256))]).unwrap_err();
        assert!(
            long.to_string().contains("is 256 bytes long; at most 255"),
            "{long}"
        );
        let eq = build_args(None, Some(json!({"a=b": "x"})), &[]).unwrap_err();
        assert!(eq.to_string().contains("holds `=` or a NUL"), "{eq}");
        let fine = build_args(None, None, &[format!("{}=x", "n".repeat(255))]);
        assert!(fine.is_ok());
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "default": "world" },
                "shout": { "type": "boolean", "default": true },
                "count": { "type": "integer", "minimum": 1 },
                "ratio": { "type": "number" },
                "tags": { "type": "array", "items": { "type": "string" } },
                "maybe": { "type": ["string", "null"] },
                "extra": {}
            },
            "required": ["count"],
            "additionalProperties": false
        })
    }

    fn pairs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pairs_are_typed_by_the_schema_and_defaults_fill_in() {
        let args = build_args(
            Some(&schema()),
            None,
            &pairs(&[
                "count=3",
                "ratio=0.5",
                "tags=[\"a\"]",
                "maybe=null",
                "extra=42",
                "name=a=b",
            ]),
        )
        .unwrap();
        assert_eq!(
            args,
            json!({"name": "a=b", "shout": true, "count": 3, "ratio": 0.5, "tags": ["a"], "maybe": "null", "extra": "42"})
        );
    }

    #[test]
    fn pairs_override_the_file() {
        let file = json!({"count": 1, "name": "file", "shout": false});
        let args = build_args(Some(&schema()), Some(file), &pairs(&["count=2"])).unwrap();
        assert_eq!(args, json!({"count": 2, "name": "file", "shout": false}));
    }

    #[test]
    fn without_a_schema_everything_is_text() {
        let args = build_args(None, None, &pairs(&["a=1", "b="])).unwrap();
        assert_eq!(args, json!({"a": "1", "b": ""}));
    }

    #[test]
    fn every_violation_is_reported() {
        let err = build_args(
            Some(&schema()),
            Some(json!({"count": 0, "bogus": 1})),
            &pairs(&["name=x"]),
        )
        .unwrap_err();
        let ArgsError::Invalid { violations } = &err else {
            panic!("{err:?}")
        };
        assert!(
            violations.iter().any(|v| v.instance_path == "/count"),
            "{violations:?}"
        );
        assert!(
            violations
                .iter()
                .any(|v| v.instance_path.is_empty() && v.message.contains("bogus")),
            "{violations:?}"
        );
        let text = err.to_string();
        assert!(text.contains("(args)") && text.contains("/count"), "{text}");

        let err = build_args(Some(&schema()), None, &[]).unwrap_err();
        assert!(
            err.to_string().contains("\"count\" is a required property"),
            "{err}"
        );
    }

    #[test]
    fn bad_input_is_explained() {
        let cases: &[(&[&str], Option<Value>, &str)] = &[
            (
                &["count"],
                None,
                "--arg `count` is not of the form NAME=VALUE",
            ),
            (&["=3"], None, "--arg `=3` is not of the form NAME=VALUE"),
            (
                &["count=three"],
                None,
                "/count: --arg count=three: expected an integer (e.g. 3), written as JSON",
            ),
            (
                &["shout=yes", "count=x"],
                None,
                "/shout: --arg shout=yes: expected true or false",
            ),
            (
                &[],
                Some(json!([1])),
                "the args file must hold a JSON object of args, found an array",
            ),
        ];
        for (given, file, fragment) in cases {
            let err = build_args(Some(&schema()), file.clone(), &pairs(given)).unwrap_err();
            assert!(err.to_string().contains(fragment), "{given:?}: {err}");
        }
        let err = build_args(Some(&json!({"type": "objekt"})), None, &[]).unwrap_err();
        assert!(matches!(err, ArgsError::BadSchema { .. }), "{err:?}");
    }
}
