//! A compiled JSON Schema and the violations it reports.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ArtifactError;

/// One way a document fails its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Violation {
    /// JSON pointer to the offending value in the document (`""` is the root).
    pub instance_path: String,
    /// JSON pointer to the schema keyword that failed.
    pub schema_path: String,
    /// What is wrong, in words.
    pub message: String,
}

/// A schema compiled once and reused for every document.
pub struct Schema {
    name: String,
    json: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Schema {
    /// Compiles `json` as a JSON Schema; `origin` says where it came from for errors.
    pub fn compile(name: &str, origin: &str, json: Value) -> Result<Schema, ArtifactError> {
        let invalid = |message: String| ArtifactError::InvalidSchema {
            name: name.to_string(),
            origin: origin.to_string(),
            message,
        };
        if let Err(e) = jsonschema::meta::validate(&json) {
            return Err(invalid(format!("{} (at {})", e, e.instance_path())));
        }
        let validator = jsonschema::validator_for(&json).map_err(|e| invalid(e.to_string()))?;
        Ok(Schema {
            name: name.to_string(),
            json,
            validator,
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema document.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Every violation of the schema by `doc`; empty when it is valid.
    pub fn validate(&self, doc: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(doc)
            .map(|e| Violation {
                instance_path: e.instance_path().to_string(),
                schema_path: e.schema_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

/// Parses a JSON document given as bytes; `what` names it in errors.
pub fn parse_json_document(what: &str, bytes: &[u8]) -> Result<Value, ArtifactError> {
    let not_json = |message: String| ArtifactError::NotJson {
        what: what.to_string(),
        message,
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(not_json("the file is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| not_json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        let json = json!({
            "type": "object",
            "required": ["title", "items"],
            "properties": {
                "title": { "type": "string" },
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": { "name": { "type": "string" } }
                    }
                }
            }
        });
        Schema::compile("list", "test", json).unwrap()
    }

    #[test]
    fn a_valid_document_has_no_violations() {
        let doc = json!({ "title": "t", "items": [{ "name": "a" }] });
        assert_eq!(schema().validate(&doc), []);
    }

    #[test]
    fn reports_every_violation_with_its_instance_path() {
        let doc = json!({ "title": 7, "items": [{ "name": "a" }, { "name": false }, {}] });
        let mut found: Vec<(String, String)> = schema()
            .validate(&doc)
            .into_iter()
            .map(|v| (v.instance_path, v.schema_path))
            .collect();
        found.sort();
        let expected = [
            (
                "/items/1/name",
                "/properties/items/items/properties/name/type",
            ),
            ("/items/2", "/properties/items/items/required"),
            ("/title", "/properties/title/type"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_violation_at_the_root_has_an_empty_path() {
        let violations = schema().validate(&json!([]));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].instance_path, "");
        assert!(
            violations[0].message.contains("object"),
            "{}",
            violations[0].message
        );
    }

    #[test]
    fn compile_rejects_an_invalid_schema() {
        let err = Schema::compile("bad", "test.json", json!({ "type": 5 })).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("schema `bad` (test.json) is invalid"),
            "{text}"
        );
    }

    #[test]
    fn parse_rejects_empty_documents() {
        for bytes in [&b""[..], b"  \n\t "] {
            let err = parse_json_document("out.json", bytes).unwrap_err();
            assert_eq!(
                err.to_string(),
                "out.json is not valid JSON: the file is empty"
            );
        }
    }

    #[test]
    fn parse_errors_give_line_and_column() {
        let err = parse_json_document("out.json", b"{\n  \"a\": 1 \"b\"\n}").unwrap_err();
        let ArtifactError::NotJson { what, message } = err else {
            panic!("expected NotJson");
        };
        assert_eq!(what, "out.json");
        assert_eq!(message, "expected `,` or `}` at line 2 column 10");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = vec![b'['; 100_000];
        let err = parse_json_document("deep.json", &deep).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_json_document("ok.json", fine.as_bytes()).is_ok());
    }
}
