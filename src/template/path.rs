//! Writing the JSON paths that problems point at: `phases[2].needs[0]`,
//! `phases[0].env.HOME`, `name`.
//!
//! One spelling everywhere, so a path from the parser and a path from
//! validation for the same spot read the same.

use serde_json::Value;

/// `parent.key`, or just `key` at the root; keys that are not plain words
/// are quoted (`outputs["my file"]`).
pub(crate) fn key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::from(key)),
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Turns a JSON pointer into `document` (`/properties/name/type`) into a
/// path under `parent` (`args.properties.name.type`), using the document to
/// tell array indexes from object keys.
pub(crate) fn from_pointer(parent: &str, document: &Value, pointer: &str) -> String {
    let mut path = parent.to_string();
    let mut at = Some(document);
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        match (at, token.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(i)) => {
                path = index(&path, i);
                at = items.get(i);
            }
            (Some(Value::Object(map)), _) => {
                path = key(&path, &token);
                at = map.get(&token);
            }
            _ => {
                path = key(&path, &token);
                at = None;
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_read_like_code() {
        assert_eq!(key("", "name"), "name");
        assert_eq!(key("", "$schema"), "$schema");
        assert_eq!(key(&index("phases", 2), "timeout"), "phases[2].timeout");
        assert_eq!(
            key("phases[0].outputs", "my file"),
            r#"phases[0].outputs["my file"]"#
        );
        assert_eq!(key("phases[0].env", "a.b"), r#"phases[0].env["a.b"]"#);
        assert_eq!(key("", ""), r#"[""]"#);
    }

    #[test]
    fn pointers_become_paths() {
        let doc = json!({ "properties": { "a/b": { "enum": [1, 2] } }, "required": ["x"] });
        assert_eq!(from_pointer("args", &doc, ""), "args");
        assert_eq!(
            from_pointer("args", &doc, "/required/0"),
            "args.required[0]"
        );
        assert_eq!(
            from_pointer("args", &doc, "/properties/a~1b/enum/1"),
            r#"args.properties["a/b"].enum[1]"#
        );
        assert_eq!(from_pointer("args", &doc, "/nothing/3"), "args.nothing.3");
    }
}
