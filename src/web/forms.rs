//! HTML forms generated from a JSON Schema: a template's `args` (to start
//! a run) and a gate's output schema (to approve it).
//!
//! Only the top level of an object schema becomes inputs, one per
//! property: a string, number, integer or boolean gets its own kind of
//! input, an `enum` a select, anything else (objects, arrays) a JSON
//! textarea. The form's answer is turned back into JSON without judging
//! it: values that do not parse as their type are passed on as text, so
//! the errors the person sees are the CLI's own (with their JSON paths).

use serde::Serialize;
use serde_json::{Map, Value};

/// One input of a generated form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// The property's name (the input is named `PREFIX` + this).
    pub name: String,
    /// `text`, `number`, `integer`, `boolean`, `select` or `json`.
    pub kind: &'static str,
    /// Whether the schema lists it in `required`.
    pub required: bool,
    /// The property's `description`, if any.
    pub description: Option<String>,
    /// For `select`: each option as the form sends it.
    pub options: Vec<String>,
    /// What the input shows: the value submitted, else the schema's `default`.
    pub value: String,
    /// A boolean that is on.
    pub checked: bool,
    /// A problem the last submission had with this field, if any.
    pub error: Option<String>,
}

/// The inputs for `schema`'s properties, filled with `values` (the last
/// submission), else with each property's `default`. A schema that is not
/// an object of properties gives none.
pub fn fields(schema: Option<&Value>, values: Option<&Map<String, Value>>) -> Vec<Field> {
    let Some(schema) = schema else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| {
            let kind = kind_of(prop);
            let current = values
                .and_then(|v| v.get(name))
                .or_else(|| prop.get("default"));
            let options = prop
                .get("enum")
                .and_then(Value::as_array)
                .map(|e| e.iter().map(as_text).collect())
                .unwrap_or_default();
            let value = match (current, kind) {
                (None, _) => String::new(),
                (Some(v), "json") => serde_json::to_string_pretty(v).unwrap_or_default(),
                (Some(v), _) => as_text(v),
            };
            Field {
                name: name.clone(),
                kind,
                required: required.contains(&name.as_str()),
                description: prop
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                options,
                checked: current == Some(&Value::Bool(true)),
                value,
                error: None,
            }
        })
        .collect()
}

/// The input kind for a property schema.
fn kind_of(prop: &Value) -> &'static str {
    if prop.get("enum").is_some_and(Value::is_array) {
        return "select";
    }
    let ty = match prop.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `["string", "null"]`: the first non-null type decides.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("json"),
        _ => "json",
    };
    match ty {
        "string" => "text",
        "number" => "number",
        "integer" => "integer",
        "boolean" => "boolean",
        _ => "json",
    }
}

/// A value as an input shows it: strings bare, anything else as JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The JSON object a submitted form stands for: each field of `schema`
/// named `prefix` + its name. Empty inputs are left out (the schema's
/// `required` and `default` then apply, as on the command line); a value
/// that does not parse as its type is kept as text for the validation to
/// name. A boolean is present only when its box was ticked, so it is
/// `true` when ticked and `false` when the form listed it and it was not.
pub fn collect(
    schema: Option<&Value>,
    form: &[(String, String)],
    prefix: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    for field in fields(schema, None) {
        let key = format!("{prefix}{}", field.name);
        let sent = form
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str());
        let listed = form.iter().any(|(k, _)| *k == format!("{key}.present"));
        if field.kind == "boolean" {
            match sent {
                Some(_) => {
                    out.insert(field.name, Value::Bool(true));
                }
                None if listed => {
                    out.insert(field.name, Value::Bool(false));
                }
                None => {}
            }
            continue;
        }
        let Some(text) = sent.filter(|t| !t.trim().is_empty()) else {
            continue;
        };
        let value = match field.kind {
            "number" | "integer" | "json" => serde_json::from_str(text.trim())
                .unwrap_or_else(|_| Value::String(text.to_string())),
            // An enum of numbers sends `3`: the option's own JSON value.
            "select" => serde_json::from_str::<Value>(text)
                .ok()
                .filter(|v| !v.is_string())
                .filter(|v| field.options.contains(&v.to_string()))
                .unwrap_or_else(|| Value::String(text.to_string())),
            _ => Value::String(text.to_string()),
        };
        out.insert(field.name, value);
    }
    out
}

/// Marks each field an error line names, by its JSON path (`/name`) or
/// its quoted name (`` `name` ``); returns the fields.
pub fn attach_errors(mut fields: Vec<Field>, message: &str) -> Vec<Field> {
    for field in &mut fields {
        let path = format!("/{}", field.name);
        let quoted = format!("`{}`", field.name);
        let hit = message.lines().find(|line| {
            line.contains(&quoted)
                || line.match_indices(&path).any(|(i, _)| {
                    !line[i + path.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
        });
        field.error = hit.map(|l| l.trim().to_string());
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "description": "who"},
                "count": {"type": "integer", "default": 3},
                "ratio": {"type": "number"},
                "mode": {"enum": ["fast", "slow"]},
                "level": {"enum": [1, 2]},
                "dry": {"type": "boolean"},
                "tags": {"type": "array"}
            }
        })
    }

    #[test]
    fn each_property_gets_an_input_of_its_kind() {
        let fields = fields(Some(&schema()), None);
        let kinds: Vec<(&str, &str)> = fields.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("count", "integer"),
                ("dry", "boolean"),
                ("level", "select"),
                ("mode", "select"),
                ("name", "text"),
                ("ratio", "number"),
                ("tags", "json")
            ]
        );
        let name = fields.iter().find(|f| f.name == "name").unwrap();
        assert!(name.required);
        assert_eq!(name.description.as_deref(), Some("who"));
        let count = fields.iter().find(|f| f.name == "count").unwrap();
        assert_eq!(count.value, "3");
        let mode = fields.iter().find(|f| f.name == "mode").unwrap();
        assert_eq!(mode.options, ["fast", "slow"]);
        assert!(super::fields(Some(&json!({"type": "string"})), None).is_empty());
        assert!(super::fields(None, None).is_empty());
    }

    #[test]
    fn a_submission_becomes_typed_json_without_judging_it() {
        let form: Vec<(String, String)> = [
            ("a.name", "x"),
            ("a.count", "7"),
            ("a.ratio", "many"),
            ("a.mode", "fast"),
            ("a.level", "2"),
            ("a.dry.present", "1"),
            ("a.tags", "[\"t\"]"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let got = collect(Some(&schema()), &form, "a.");
        assert_eq!(
            Value::Object(got),
            json!({"name": "x", "count": 7, "ratio": "many", "mode": "fast", "level": 2, "dry": false, "tags": ["t"]})
        );
        let empty = collect(Some(&schema()), &[("a.name".into(), " ".into())], "a.");
        assert!(empty.is_empty());
    }

    #[test]
    fn errors_land_on_the_field_they_name() {
        let fields = attach_errors(
            fields(Some(&schema()), None),
            "error: args do not match:\n  /count: \"x\" is not of type \"integer\"\n  missing `name`",
        );
        let with: Vec<&str> = fields
            .iter()
            .filter(|f| f.error.is_some())
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(with, ["count", "name"]);
    }
}
