//! Every built-in schema, as each provider sends it as a tool's input
//! schema: self-contained (no `$ref` a model cannot follow), and for
//! Gemini within the keywords its function declarations take.

use std::path::Path;

use serde_json::{Value, json};

use super::gemini::GEMINI_KEYWORDS;
use super::{ChatRequest, Message, ToolSpec, anthropic, gemini, openai, testing};
use crate::artifact::{Schema, builtin_schema, builtin_schema_names};

/// Each built-in schema compiled as a template output would be.
fn builtins() -> Vec<(String, Schema)> {
    builtin_schema_names()
        .into_iter()
        .map(|name| {
            let text = builtin_schema(name).expect("a built-in");
            let json: Value = serde_json::from_str(text).expect("built-ins are JSON");
            let schema = Schema::compile(name, "built-in", json).expect("built-ins compile");
            (name.to_string(), schema)
        })
        .collect()
}

fn request(schemas: &[(String, Schema)]) -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        system: None,
        messages: vec![Message::user("go")],
        tools: schemas
            .iter()
            .map(|(name, schema)| ToolSpec {
                name: format!("submit_{}", name.replace('-', "_")),
                description: "submit".into(),
                input_schema: schema.bundled(),
            })
            .collect(),
        max_tokens: 100,
    }
}

/// Every `$ref` in `value`, with its JSON pointer.
fn refs(value: &Value, at: String, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    found.push((at.clone(), child.as_str().unwrap_or_default().to_string()));
                } else if !matches!(key.as_str(), "enum" | "const" | "examples" | "default") {
                    refs(child, format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                refs(item, format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// Asserts every `$ref` of each tool's schema points inside that schema.
fn assert_self_contained(provider: &str, schemas: impl Iterator<Item = (String, Value)>) {
    for (tool, schema) in schemas {
        let mut found = Vec::new();
        refs(&schema, String::new(), &mut found);
        for (at, reference) in found {
            let pointer = reference.strip_prefix('#').unwrap_or_else(|| {
                panic!("{provider}: {tool} at {at}: `$ref: {reference}` is not local")
            });
            assert!(
                schema.pointer(pointer).is_some(),
                "{provider}: {tool} at {at}: `$ref: {reference}` does not resolve in the document"
            );
        }
    }
}

#[test]
fn anthropic_and_openai_tool_schemas_are_self_contained() {
    let schemas = builtins();
    let body = anthropic::request_body(&request(&schemas));
    let tools = body["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), schemas.len());
    assert_self_contained(
        "anthropic",
        tools.iter().map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                t["input_schema"].clone(),
            )
        }),
    );
    let provider = openai::OpenAi::new(testing::config("http://127.0.0.1:9"));
    let body = provider.request_body(&request(&schemas));
    let tools = body["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), schemas.len());
    assert_self_contained(
        "openai",
        tools.iter().map(|t| {
            (
                t["function"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                t["function"]["parameters"].clone(),
            )
        }),
    );
}

#[test]
fn decision_log_carries_the_decision_schema() {
    let schemas = builtins();
    let (_, log) = schemas
        .iter()
        .find(|(name, _)| name == "decision-log")
        .expect("decision-log is built in");
    let bundled = log.bundled();
    assert_eq!(
        bundled.pointer("/properties/decisions/items/$ref"),
        Some(&json!("#/$defs/decision"))
    );
    let decision = bundled.pointer("/$defs/decision").expect("embedded");
    assert_eq!(decision["type"], "object");
    // Gemini gets it inlined.
    let body = gemini::request_body(&request(std::slice::from_ref(
        schemas
            .iter()
            .find(|(name, _)| name == "decision-log")
            .expect("decision-log"),
    )));
    let items = body
        .pointer("/tools/0/functionDeclarations/0/parameters/properties/decisions/items")
        .expect("items");
    assert_eq!(items["type"], "object");
    assert!(
        items["properties"]
            .as_object()
            .is_some_and(|p| !p.is_empty())
    );
}

/// The bundle of each built-in validates its examples exactly as the
/// schema does, with no other document reachable.
#[test]
fn bundles_validate_like_their_schemas() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    for (name, schema) in builtins() {
        let bundle =
            Schema::compile_with(&format!("bundle-{name}"), "bundle", schema.bundled(), &[])
                .unwrap_or_else(|e| panic!("the bundle of {name} compiles alone: {e}"));
        let dir = examples.join(&name);
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("examples").flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let doc: Value =
                serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
            assert_eq!(
                bundle.validate(&doc).is_empty(),
                schema.validate(&doc).is_empty(),
                "{}",
                path.display()
            );
            seen += 1;
        }
        assert!(seen > 0, "{name} has examples");
    }
}

/// Asserts a Gemini schema uses only the keywords Gemini takes.
fn assert_gemini_subset(tool: &str, schema: &Value, at: &str) {
    let Value::Object(map) = schema else {
        panic!("{tool} at {at}: a schema that is not an object");
    };
    for (key, value) in map {
        assert!(
            GEMINI_KEYWORDS.contains(&key.as_str()),
            "{tool} at {at}: `{key}` is not a keyword Gemini takes"
        );
        match key.as_str() {
            "properties" => {
                for (name, sub) in value.as_object().expect("properties is an object") {
                    assert_gemini_subset(tool, sub, &format!("{at}/properties/{name}"));
                }
            }
            "items" => assert_gemini_subset(tool, value, &format!("{at}/items")),
            "anyOf" => {
                for (i, sub) in value
                    .as_array()
                    .expect("anyOf is an array")
                    .iter()
                    .enumerate()
                {
                    assert_gemini_subset(tool, sub, &format!("{at}/anyOf/{i}"));
                }
            }
            "type" => assert!(value.is_string(), "{tool} at {at}: one type"),
            _ => {}
        }
    }
}

#[test]
fn gemini_tool_schemas_use_only_supported_keywords() {
    let schemas = builtins();
    let body = gemini::request_body(&request(&schemas));
    let declarations = body
        .pointer("/tools/0/functionDeclarations")
        .and_then(Value::as_array)
        .expect("declarations");
    assert_eq!(declarations.len(), schemas.len());
    for declaration in declarations {
        let tool = declaration["name"].as_str().unwrap_or_default();
        assert_gemini_subset(tool, &declaration["parameters"], "");
    }
}

#[test]
fn gemini_rewrites_what_it_cannot_say() {
    let schema = json!({
        "type": "object",
        "properties": {
            "kind": {"const": "x"},
            "maybe": {"type": ["string", "null"]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "loose": {"type": "object", "additionalProperties": {"type": "string"}}
        },
        "additionalProperties": false
    });
    let out = gemini::gemini_schema(&schema);
    assert_eq!(out["properties"]["kind"], json!({"enum": ["x"]}));
    assert_eq!(
        out["properties"]["maybe"],
        json!({"type": "string", "nullable": true})
    );
    assert_eq!(
        out["properties"]["either"],
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
    );
    assert_eq!(out["properties"]["loose"], json!({"type": "object"}));
    assert_eq!(out.get("additionalProperties"), None);
}
