//! JSON flattened to `path: value` lines, so that a field's name is as
//! searchable as its value: `tasks.0.title: Write the parser`.

use serde_json::Value;

/// One line per scalar, in document order; `path` joins keys and array
/// indices with `.`. A scalar at the root is its bare value.
pub fn flatten(value: &Value) -> String {
    let mut out = String::new();
    let mut path = String::new();
    walk(value, &mut path, &mut out);
    out
}

fn walk(value: &Value, path: &mut String, out: &mut String) {
    let push = |out: &mut String, path: &str, text: &str| {
        if !out.is_empty() {
            out.push('\n');
        }
        if !path.is_empty() {
            out.push_str(path);
            out.push_str(": ");
        }
        out.push_str(text);
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(child, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&i.to_string());
                walk(child, path, out);
                path.truncate(len);
            }
        }
        Value::String(s) => push(out, path, s),
        Value::Null => push(out, path, "null"),
        Value::Bool(b) => push(out, path, if *b { "true" } else { "false" }),
        Value::Number(n) => push(out, path, &n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_and_arrays_become_dotted_paths() {
        let doc = json!({
            "verdict": "changes_requested",
            "findings": [
                { "severity": "major", "message": "no tests" },
                { "severity": "nit", "location": { "file": "src/a.rs", "line": 3 } }
            ],
            "ok": false,
            "none": null
        });
        // Keys come in the order serde_json keeps them: sorted.
        assert_eq!(
            flatten(&doc),
            "findings.0.message: no tests\n\
             findings.0.severity: major\n\
             findings.1.location.file: src/a.rs\n\
             findings.1.location.line: 3\n\
             findings.1.severity: nit\n\
             none: null\n\
             ok: false\n\
             verdict: changes_requested"
        );
    }

    #[test]
    fn scalars_at_the_root_and_empty_containers() {
        assert_eq!(flatten(&json!("just text")), "just text");
        assert_eq!(flatten(&json!(42)), "42");
        assert_eq!(flatten(&json!({})), "");
        assert_eq!(flatten(&json!({ "a": [], "b": 1 })), "b: 1");
    }
}
