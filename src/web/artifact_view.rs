//! Artifacts as people read them: the built-in schemas (decision,
//! decision-log, task-list, review, eval, test-report, spec) as cards
//! with tables; anything else as a collapsible JSON tree.
//!
//! This turns a JSON value into plain data the `artifact.html` template
//! lays out; it never produces markup itself (the template escapes).

use serde::Serialize;
use serde_json::Value;

/// The schemas shown as cards.
pub const BUILT_IN: [&str; 7] = [
    "decision",
    "decision-log",
    "task-list",
    "review",
    "eval",
    "test-report",
    "spec",
];

/// Fields whose value is a verdict, shown as a badge.
const BADGES: [&str; 4] = ["verdict", "passed", "status", "priority"];

/// One artifact, ready for the template.
#[derive(Debug, Serialize)]
pub struct ArtifactDoc {
    /// Its name.
    pub name: String,
    /// The schema it was validated against, as the template names it.
    pub schema: Option<String>,
    /// Card fields (a built-in schema); empty for a tree.
    pub fields: Vec<Field>,
    /// The whole value as a tree (always there, folded under a card).
    pub tree: Node,
}

/// One top-level field of a card.
#[derive(Debug, Serialize)]
pub struct Field {
    /// The key.
    pub key: String,
    /// `text`, `badge`, `list`, `table` or `tree`.
    pub kind: &'static str,
    /// The text (`text`, `badge`).
    pub text: String,
    /// The items (`list`).
    pub items: Vec<String>,
    /// The columns (`table`).
    pub columns: Vec<String>,
    /// The rows (`table`), one cell per column.
    pub rows: Vec<Vec<String>>,
    /// The value (`tree`).
    pub tree: Option<Node>,
}

/// A node of the JSON tree.
#[derive(Debug, Serialize)]
pub struct Node {
    /// Its key or index (empty at the root).
    pub key: String,
    /// A scalar's text; empty for an object or array.
    pub text: String,
    /// `object`, `array`, `string`, `number`, `bool` or `null`.
    pub kind: &'static str,
    /// Its members.
    pub children: Vec<Node>,
}

/// Whether `schema` (a name or a path) is a built-in one shown as a card.
pub fn is_built_in(schema: &str) -> bool {
    let stem = schema
        .rsplit('/')
        .next()
        .unwrap_or(schema)
        .trim_end_matches(".json")
        .trim_end_matches(".schema");
    BUILT_IN.contains(&stem)
}

/// `value` of artifact `name`, validated against `schema`.
pub fn doc(name: &str, schema: Option<&str>, value: &Value) -> ArtifactDoc {
    let card = schema.is_some_and(is_built_in);
    let fields = match (card, value) {
        (true, Value::Object(map)) => map.iter().map(|(k, v)| field(k, v)).collect(),
        _ => Vec::new(),
    };
    ArtifactDoc {
        name: name.to_string(),
        schema: schema.map(String::from),
        fields,
        tree: tree(String::new(), value),
    }
}

fn field(key: &str, value: &Value) -> Field {
    let mut f = Field {
        key: key.to_string(),
        kind: "text",
        text: String::new(),
        items: Vec::new(),
        columns: Vec::new(),
        rows: Vec::new(),
        tree: None,
    };
    match value {
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            f.kind = "list";
            f.items = items.iter().map(scalar).collect();
        }
        Value::Array(items) if items.iter().all(Value::is_object) => {
            f.kind = "table";
            for item in items {
                for k in item.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !f.columns.contains(k) {
                        f.columns.push(k.clone());
                    }
                }
            }
            f.rows = items
                .iter()
                .map(|item| {
                    f.columns
                        .iter()
                        .map(|c| item.get(c).map(scalar).unwrap_or_default())
                        .collect()
                })
                .collect();
        }
        Value::Array(_) | Value::Object(_) => {
            f.kind = "tree";
            f.tree = Some(tree(key.to_string(), value));
        }
        other => {
            f.kind = if BADGES.contains(&key) {
                "badge"
            } else {
                "text"
            };
            f.text = scalar(other);
        }
    }
    f
}

/// A value as one line of text: strings as they are, the rest as JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `value` as a tree.
pub fn tree(key: String, value: &Value) -> Node {
    let (kind, text, children) = match value {
        Value::Object(map) => (
            "object",
            format!("{{{}}}", map.len()),
            map.iter().map(|(k, v)| tree(k.clone(), v)).collect(),
        ),
        Value::Array(items) => (
            "array",
            format!("[{}]", items.len()),
            items
                .iter()
                .enumerate()
                .map(|(i, v)| tree(i.to_string(), v))
                .collect(),
        ),
        Value::String(s) => ("string", s.clone(), Vec::new()),
        Value::Number(n) => ("number", n.to_string(), Vec::new()),
        Value::Bool(b) => ("bool", b.to_string(), Vec::new()),
        Value::Null => ("null", "null".into(), Vec::new()),
    };
    Node {
        key,
        text,
        kind,
        children,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_schemas_become_cards_with_tables() {
        let review = json!({
            "verdict": "changes_requested",
            "summary": "two issues",
            "findings": [
                {"severity": "high", "message": "bug"},
                {"severity": "low", "message": "nit", "location": "a.rs:3"}
            ]
        });
        let d = doc("review", Some("review"), &review);
        let kinds: Vec<(&str, &str)> = d.fields.iter().map(|f| (f.key.as_str(), f.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("findings", "table"),
                ("summary", "text"),
                ("verdict", "badge")
            ]
        );
        let table = &d.fields[0];
        assert_eq!(table.columns, ["message", "severity", "location"]);
        assert_eq!(table.rows[0], ["bug", "high", ""]);
        assert_eq!(table.rows[1], ["nit", "low", "a.rs:3"]);
    }

    #[test]
    fn other_schemas_are_trees() {
        let d = doc(
            "notes",
            Some("research-notes"),
            &json!({"a": [1, {"b": null}]}),
        );
        assert!(d.fields.is_empty());
        assert_eq!(d.tree.kind, "object");
        let a = &d.tree.children[0];
        assert_eq!(
            (a.key.as_str(), a.kind, a.text.as_str()),
            ("a", "array", "[2]")
        );
        assert_eq!(a.children[1].children[0].kind, "null");
        assert!(is_built_in(".wfe/schemas/spec.json"));
        assert!(is_built_in("test-report"));
        assert!(!is_built_in("retro"));
    }
}
