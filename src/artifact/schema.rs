//! A compiled JSON Schema and the violations it reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ArtifactError;
use super::references::{
    Documents, LocalRetriever, Lookup, is_reference_name, reference_error, references, schema_uri,
};

/// One way a document fails its schema (defined in `attempt`, whose
/// stored errors carry it).
pub use crate::attempt::Violation;

/// One declared output of a phase: the artifact's name and the compiled
/// schema it must match. Script and agent executors both check against it.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// The artifact's name: a script writes `$WFE_OUT/<name>.json`, an
    /// agent calls `submit_<name>`.
    pub name: String,
    /// The compiled schema it must match.
    pub schema: Arc<Schema>,
}

/// A schema compiled once and reused for every document.
pub struct Schema {
    name: String,
    json: Value,
    /// The (URI, document) pairs its `$ref`s reached when it was compiled.
    resources: Vec<(String, Value)>,
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
    ///
    /// Its `$ref`s may reach the built-in schemas (by their
    /// `https://wfe.local/schemas/NAME.json` ids, or relatively, as
    /// `decision.json`) and nothing else.
    pub fn compile(name: &str, origin: &str, json: Value) -> Result<Schema, ArtifactError> {
        build(name, origin, json, Arc::new(Documents::builtins()))
    }

    /// Compiles `json` with `resources`, the (URI, document) pairs its
    /// `$ref`s may reach, transitively; nothing else is reachable, not even
    /// the built-ins, so a frozen run validates the same way forever.
    ///
    /// Compiled once per process: a second call with the same name,
    /// document and resources returns the same validator.
    pub fn compile_with(
        name: &str,
        origin: &str,
        json: Value,
        resources: &[(String, Value)],
    ) -> Result<Arc<Schema>, ArtifactError> {
        let key = cache_key(name, &json, resources);
        if let Some(schema) = cache().get(&key) {
            return Ok(Arc::clone(schema));
        }
        let lookup = Arc::new(Documents::only(resources));
        let schema = Arc::new(build(name, origin, json, lookup)?);
        cache().insert(key, Arc::clone(&schema));
        Ok(schema)
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema document.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// The schema as one self-contained document: every document its
    /// `$ref`s reach copied into `$defs` and referenced locally, for a
    /// model that sees nothing but this document (see [`bundle`](super::bundle())).
    pub fn bundled(&self) -> Value {
        super::bundle::bundle(&schema_uri(&self.name), &self.json, &self.resources)
    }

    /// Every violation of the schema by `doc`; empty when it is valid.
    pub fn validate(&self, doc: &Value) -> Vec<Violation> {
        // The yes/no check is cheaper than collecting errors, and almost
        // every document a phase writes is valid.
        if self.validator.is_valid(doc) {
            return Vec::new();
        }
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

/// Compiles the schemas frozen in a run: (name, origin, document) each.
///
/// Documents frozen under an absolute URI (see
/// [`is_reference_name`]) are what the others
/// `$ref`; each named schema is compiled with them as its only resources.
/// Returns the named schemas by name.
pub fn compile_frozen(
    frozen: &[(String, String, Value)],
) -> Result<BTreeMap<String, Arc<Schema>>, ArtifactError> {
    let resources: Vec<(String, Value)> = frozen
        .iter()
        .filter(|(name, _, _)| is_reference_name(name))
        .map(|(uri, _, json)| (uri.clone(), json.clone()))
        .collect();
    let lookup: Arc<dyn Lookup> = Arc::new(Documents::only(&resources));
    let mut schemas = BTreeMap::new();
    for (name, origin, json) in frozen {
        if is_reference_name(name) {
            continue;
        }
        // Only the documents this schema reaches, as when the run started:
        // the same inputs hit the cache entry its validation at start made.
        let refs = references(name, origin, json, Arc::clone(&lookup))?;
        let schema = Schema::compile_with(name, origin, json.clone(), &refs)?;
        schemas.insert(name.clone(), schema);
    }
    Ok(schemas)
}

/// Compiles `json` at its [`schema_uri`], its `$ref`s served by `lookup` only.
fn build(
    name: &str,
    origin: &str,
    json: Value,
    lookup: Arc<dyn Lookup>,
) -> Result<Schema, ArtifactError> {
    let invalid = |message: String| ArtifactError::InvalidSchema {
        name: name.to_string(),
        origin: origin.to_string(),
        message,
    };
    // jsonschema recurses over the schema; documents parsed by serde_json
    // are never deeper than this, and a `Value` built some other way must
    // not be able to overflow the stack either.
    if depth(&json) > MAX_DEPTH {
        return Err(invalid(format!("nested more than {MAX_DEPTH} levels deep")));
    }
    if let Err(e) = jsonschema::meta::validate(&json) {
        return Err(invalid(format!("{} (at {})", e, e.instance_path())));
    }
    let retriever = LocalRetriever::new(lookup);
    let served = retriever.served();
    let options = jsonschema::options()
        .with_base_uri(schema_uri(name))
        .with_retriever(retriever);
    let validator = options.build(&json).map_err(|e| match e.kind() {
        ValidationErrorKind::Referencing(r) => reference_error(name, origin, r),
        _ => invalid(e.to_string()),
    })?;
    let mut resources = std::mem::take(&mut *served.lock().unwrap_or_else(PoisonError::into_inner));
    resources.sort_by(|a, b| a.0.cmp(&b.0));
    resources.dedup_by(|a, b| a.0 == b.0);
    Ok(Schema {
        name: name.to_string(),
        json,
        resources,
        validator,
    })
}

/// The deepest nesting a schema may have: serde_json's own parsing limit.
const MAX_DEPTH: usize = 128;

/// How deeply `value` nests arrays and objects, found without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Compiled schemas by [`cache_key`], for the life of the process.
///
/// Unbounded: a process sees a handful of distinct schemas (the templates'
/// outputs), each compiled once.
fn cache() -> MutexGuard<'static, HashMap<[u8; 32], Arc<Schema>>> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Arc<Schema>>>> = OnceLock::new();
    CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A digest of everything a compiled schema depends on.
fn cache_key(name: &str, json: &Value, resources: &[(String, Value)]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    // Lengths before contents, so no two inputs share a byte stream.
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(name.as_bytes());
    field(json.to_string().as_bytes());
    for (uri, doc) in resources {
        field(uri.as_bytes());
        field(doc.to_string().as_bytes());
    }
    hasher.finalize().into()
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
    fn compile_with_reaches_only_its_resources() {
        let log =
            serde_json::from_str::<Value>(super::super::builtin_schema("decision-log").unwrap())
                .unwrap();
        // Without the referenced document, not even the built-in is used:
        // a frozen run must carry everything it validates with.
        let err = Schema::compile_with("decision-log", "frozen", log.clone(), &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("https://wfe.local/schemas/decision.json")
                && text.contains("not among the schemas frozen with it"),
            "{text}"
        );
        // With a frozen (here: older, looser) copy, that copy is used.
        let frozen = [(
            "https://wfe.local/schemas/decision.json".to_string(),
            json!({"type": "object", "required": ["id"]}),
        )];
        let schema = Schema::compile_with("decision-log", "frozen", log.clone(), &frozen).unwrap();
        assert_eq!(schema.validate(&json!({"decisions": [{"id": "D1"}]})), []);
        assert_eq!(schema.validate(&json!({"decisions": [{}]})).len(), 1);
        // Compiled once: the same inputs give the same validator.
        let again = Schema::compile_with("decision-log", "elsewhere", log, &frozen).unwrap();
        assert!(Arc::ptr_eq(&schema, &again));
    }

    #[test]
    fn compile_frozen_compiles_named_schemas_against_frozen_references() {
        let log =
            serde_json::from_str::<Value>(super::super::builtin_schema("decision-log").unwrap())
                .unwrap();
        let decision =
            serde_json::from_str::<Value>(super::super::builtin_schema("decision").unwrap())
                .unwrap();
        let frozen = vec![
            (
                "decision-log".to_string(),
                "schemas/decision-log.json".to_string(),
                log,
            ),
            (
                "https://wfe.local/schemas/decision.json".to_string(),
                "schemas/https___wfe.local_schemas_decision.json".to_string(),
                decision,
            ),
            (
                "message".to_string(),
                "schemas/message.json".to_string(),
                json!({"type": "object"}),
            ),
        ];
        let schemas = compile_frozen(&frozen).unwrap();
        // Compiled once: what `Registry::compile` made when the run started is reused.
        let dir = tempfile::TempDir::new().unwrap();
        let at_start = super::super::Registry::new(dir.path())
            .compile("decision-log")
            .unwrap();
        assert!(Arc::ptr_eq(&schemas["decision-log"], &at_start));
        let names: Vec<&String> = schemas.keys().collect();
        assert_eq!(names, ["decision-log", "message"]);
        let bad = json!({"decisions": [{"id": "D1"}]});
        assert!(!schemas["decision-log"].validate(&bad).is_empty());

        // A reference the run did not freeze is an error naming the schema.
        let err = compile_frozen(&frozen[..1]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("schema `decision-log` (schemas/decision-log.json) refers to"),
            "{err}"
        );
    }

    #[test]
    fn compile_never_panics_on_odd_schemas() {
        let deep = (0..126).fold(
            json!({"type": "string"}),
            |inner, _| json!({"items": inner}),
        );
        let too_deep = (0..1000).fold(json!({}), |inner, _| json!({"items": inner}));
        let err = Schema::compile("deep", "test", too_deep).unwrap_err();
        assert!(
            err.to_string().contains("nested more than 128 levels"),
            "{err}"
        );
        let cases = [
            json!({"$ref": "#/nowhere"}),
            json!({"$ref": "not a uri at all \u{0}"}),
            json!({"$ref": "urn:x"}),
            json!({"$ref": "ftp://example.com/x.json"}),
            json!({"$id": "::::", "type": "object"}),
            json!({"$id": "https://wfe.local/schemas/other.json", "$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#"}}}),
            json!({"$schema": "https://example.com/meta", "type": "object"}),
            json!({"$dynamicRef": "#meta"}),
            json!({"pattern": "(a+)+$"}),
            json!({"pattern": "("}),
            json!({"format": "email"}),
            json!(true),
            json!(false),
            json!({}),
            deep,
        ];
        for json in cases {
            let compiled = Schema::compile("odd", "test", json.clone());
            let _ = compiled.map(|s| s.validate(&json!({"a": [1]})));
            let compiled = Schema::compile_with("odd", "test", json, &[]);
            let _ = compiled.map(|s| s.validate(&json!("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!")));
        }
        for name in ["", "a b", "../x", "x/../../y.json", "%zz", "https://"] {
            let _ = Schema::compile(name, "test", json!({"$ref": "other.json"}));
        }
    }
}
