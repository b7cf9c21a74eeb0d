//! Reading a tool call's input: the model's JSON, checked field by field.
//!
//! The model writes the input, so nothing here may panic or guess: a
//! missing field, a wrong type or an unknown field is an `Err` that names
//! the field and says what was expected, so the model can fix its next call.

use serde_json::{Map, Value};

/// The fields of one call's input, checked against the tool's field list.
pub(super) struct Args<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    /// Checks that `input` is an object whose fields are all in `known`.
    pub(super) fn parse(input: &'a Value, known: &[&str]) -> Result<Args<'a>, String> {
        let Value::Object(map) = input else {
            return Err(format!(
                "the input must be a JSON object, got {}",
                kind(input)
            ));
        };
        // Sorted, so the message does not depend on the map's order.
        let mut unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k))
            .collect();
        unknown.sort_unstable();
        if let Some(field) = unknown.first() {
            return Err(format!(
                "unknown field `{field}`; the fields are: {}",
                known.join(", ")
            ));
        }
        Ok(Args { map })
    }

    /// A required string field.
    pub(super) fn string(&self, name: &str) -> Result<&'a str, String> {
        self.opt_string(name)?
            .ok_or_else(|| format!("missing field `{name}` (a string)"))
    }

    /// An optional string field; `null` counts as absent.
    pub(super) fn opt_string(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "field `{name}` must be a string, got {}",
                kind(other)
            )),
        }
    }

    /// An optional integer field of at least `min`; `null` counts as absent.
    pub(super) fn opt_integer(&self, name: &str, min: u64) -> Result<Option<u64>, String> {
        let value = match self.map.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        match value.as_u64() {
            Some(n) if n >= min => Ok(Some(n)),
            _ => Err(format!(
                "field `{name}` must be an integer of at least {min}, got {}",
                describe(value)
            )),
        }
    }

    /// A required array of strings.
    pub(super) fn strings(&self, name: &str) -> Result<Vec<&'a str>, String> {
        let items = match self.map.get(name) {
            None | Some(Value::Null) => {
                return Err(format!("missing field `{name}` (an array of strings)"));
            }
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(format!(
                    "field `{name}` must be an array of strings, got {}",
                    kind(other)
                ));
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().ok_or_else(|| {
                    format!(
                        "field `{name}` must be an array of strings; item {i} is {}",
                        kind(item)
                    )
                })
            })
            .collect()
    }
}

/// What kind of JSON value `v` is, with an article, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `kind`, with the value itself when it is a short scalar (`-3`, `2.5`).
fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("{n}"),
        Value::String(s) if s.len() <= 20 => format!("the string {v}"),
        _ => kind(v).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_the_field_and_what_was_expected() {
        let known = ["path", "start_line", "args"];
        let cases = [
            (json!([]), "the input must be a JSON object, got an array"),
            (
                json!({"paht": "x"}),
                "unknown field `paht`; the fields are: path, start_line, args",
            ),
            (json!({}), "missing field `path` (a string)"),
            (
                json!({"path": 3}),
                "field `path` must be a string, got a number",
            ),
            (
                json!({"path": "x", "start_line": -3}),
                "field `start_line` must be an integer of at least 1, got -3",
            ),
            (
                json!({"path": "x", "start_line": 0}),
                "field `start_line` must be an integer of at least 1, got 0",
            ),
            (
                json!({"path": "x", "start_line": "5"}),
                "field `start_line` must be an integer of at least 1, got the string \"5\"",
            ),
            (
                json!({"path": "x", "start_line": 1.5}),
                "field `start_line` must be an integer of at least 1, got 1.5",
            ),
            (
                json!({"path": "x", "args": "status"}),
                "field `args` must be an array of strings, got a string",
            ),
            (
                json!({"path": "x", "args": ["a", 1]}),
                "field `args` must be an array of strings; item 1 is a number",
            ),
        ];
        for (input, expected) in cases {
            let got = Args::parse(&input, &known).and_then(|a| {
                a.string("path")?;
                a.opt_integer("start_line", 1)?;
                if a.map.contains_key("args") {
                    a.strings("args")?;
                }
                Ok(())
            });
            assert_eq!(got, Err(expected.to_string()), "{input}");
        }
    }

    #[test]
    fn null_is_absent_for_optional_fields() {
        let input = json!({"path": "x", "start_line": null});
        let args = Args::parse(&input, &["path", "start_line"]).unwrap();
        assert_eq!(args.string("path"), Ok("x"));
        assert_eq!(args.opt_integer("start_line", 1), Ok(None));
        assert_eq!(args.opt_string("start_line"), Ok(None));
    }
}
