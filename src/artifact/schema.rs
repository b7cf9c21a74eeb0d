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
