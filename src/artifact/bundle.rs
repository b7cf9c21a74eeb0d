//! One self-contained schema document from a schema and the documents its
//! `$ref`s reach, for a model's tool input.
//!
//! A model sees a tool's input schema and nothing else: a `"$ref":
//! "decision.json"` it cannot follow tells it nothing about what to
//! submit. [`bundle`] copies every referenced document into the root's
//! `$defs` (under a key named after the document) and points each `$ref`
//! at its copy (`#/$defs/decision`), so the result validates the same way
//! with no resources at all. Providers that do not take `$ref` (Gemini)
//! inline the local references of the bundled form themselves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// Keywords whose values are data, not schemas: a `$ref` inside them is
/// not a reference.
const DATA_KEYWORDS: &[&str] = &["enum", "const", "default", "examples", "example"];

/// `root` (compiled at `base`) with every document in `resources` it
/// reaches copied into its `$defs` and every `$ref` made local.
///
/// `resources` are (absolute URI, document) pairs as a compiled
/// [`Schema`](super::Schema) holds them. A `$ref` to a document not among
/// them is left as it is (the schema would not have compiled). The root's
/// `$id` is dropped: the bundle is one anonymous document, and an `$id`
/// would invite a provider to fetch it.
pub fn bundle(base: &str, root: &Value, resources: &[(String, Value)]) -> Value {
    let root_base = root
        .get("$id")
        .and_then(Value::as_str)
        .map(|id| id.trim_end_matches('#').to_string())
        .unwrap_or_else(|| base.to_string());
    let mut bundler = Bundler {
        root_base: root_base.clone(),
        resources,
        keys: BTreeMap::new(),
        taken: root
            .get("$defs")
            .and_then(Value::as_object)
            .map(|defs| defs.keys().cloned().collect())
            .unwrap_or_default(),
        pending: Vec::new(),
    };
    let mut out = root.clone();
    bundler.rewrite(&mut out, &root_base, None);
    let mut defs = Map::new();
    while let Some(uri) = bundler.pending.pop() {
        let Some(key) = bundler.keys.get(&uri).cloned() else {
            continue;
        };
        let Some(mut doc) = bundler.find(&uri).cloned() else {
            continue;
        };
        if let Value::Object(map) = &mut doc {
            // Only the root may say which dialect it is, and an embedded
            // `$id` would make the copy its own resource again.
            map.remove("$id");
            map.remove("$schema");
        }
        let prefix = format!("/$defs/{key}");
        bundler.rewrite(&mut doc, &uri, Some(&prefix));
        defs.insert(key, doc);
    }
    if let Value::Object(map) = &mut out {
        map.remove("$id");
        if !defs.is_empty() {
            let target = map
                .entry("$defs")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(existing) = target {
                existing.extend(defs);
            }
        }
    }
    out
}

struct Bundler<'a> {
    root_base: String,
    resources: &'a [(String, Value)],
    /// The `$defs` key of each embedded document, by URI.
    keys: BTreeMap<String, String>,
    /// `$defs` keys in use.
    taken: BTreeSet<String>,
    /// Documents given a key but not yet embedded.
    pending: Vec<String>,
}

impl Bundler<'_> {
    fn find(&self, uri: &str) -> Option<&Value> {
        self.resources
            .iter()
            .find(|(u, _)| u.trim_end_matches('#') == uri)
            .map(|(_, doc)| doc)
    }

    /// The `$defs` key for the document at `uri`, embedding it on first use.
    fn key_for(&mut self, uri: &str) -> String {
        if let Some(key) = self.keys.get(uri) {
            return key.clone();
        }
        let last = uri.rsplit('/').next().unwrap_or(uri);
        let stem = last.strip_suffix(".json").unwrap_or(last);
        let stem: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let stem = if stem.is_empty() { "ref".into() } else { stem };
        let mut key = stem.clone();
        let mut n = 2;
        while self.taken.contains(&key) {
            key = format!("{stem}-{n}");
            n += 1;
        }
        self.taken.insert(key.clone());
        self.keys.insert(uri.to_string(), key.clone());
        self.pending.push(uri.to_string());
        key
    }

    /// Rewrites the `$ref`s in `value`, a part of the document at `base`
    /// that ends up at `prefix` in the bundle (the root when `None`).
    fn rewrite(&mut self, value: &mut Value, base: &str, prefix: Option<&str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get_mut("$ref") {
                    let new = self.local(reference, base, prefix);
                    *reference = new;
                }
                for (key, child) in map.iter_mut() {
                    if key != "$ref" && !DATA_KEYWORDS.contains(&key.as_str()) {
                        self.rewrite(child, base, prefix);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.rewrite(item, base, prefix);
                }
            }
            _ => {}
        }
    }

    /// `reference`, written in the document at `base`, as a bundle-local `$ref`.
    fn local(&mut self, reference: &str, base: &str, prefix: Option<&str>) -> String {
        let (document, fragment) = match reference.split_once('#') {
            Some((document, fragment)) => (document, fragment),
            None => (reference, ""),
        };
        // Anchors (`#name`) cannot be rewritten as pointers: left alone.
        if !fragment.is_empty() && !fragment.starts_with('/') {
            return reference.to_string();
        }
        let target = if document.is_empty() {
            base.to_string()
        } else {
            resolve(base, document)
        };
        if target == self.root_base {
            return format!("#{fragment}");
        }
        if document.is_empty() {
            return match prefix {
                Some(prefix) => format!("#{prefix}{fragment}"),
                None => reference.to_string(),
            };
        }
        if self.find(&target).is_none() {
            return reference.to_string();
        }
        let key = self.key_for(&target);
        format!("#/$defs/{key}{fragment}")
    }
}

/// `reference` resolved against the absolute URI `base` (RFC 3986 in the
/// forms schemas use: absolute, host-relative and path-relative).
fn resolve(base: &str, reference: &str) -> String {
    if reference.contains("://") {
        return reference.to_string();
    }
    let (origin, path) = match base.find("://") {
        Some(scheme_end) => {
            let after = scheme_end + 3;
            match base[after..].find('/') {
                Some(slash) => base.split_at(after + slash),
                None => (base, "/"),
            }
        }
        None => ("", base),
    };
    let joined = if reference.starts_with('/') {
        reference.to_string()
    } else {
        let dir = match path.rfind('/') {
            Some(slash) => &path[..=slash],
            None => "",
        };
        format!("{dir}{reference}")
    };
    let mut segments: Vec<&str> = Vec::new();
    for segment in joined.split('/') {
        match segment {
            "." => {}
            ".." => {
                if segments.len() > 1 {
                    segments.pop();
                }
            }
            other => segments.push(other),
        }
    }
    format!("{origin}{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resolves_relative_references() {
        let base = "https://wfe.local/schemas/decision-log.json";
        assert_eq!(
            resolve(base, "decision.json"),
            "https://wfe.local/schemas/decision.json"
        );
        assert_eq!(
            resolve(base, "../path/x.json"),
            "https://wfe.local/path/x.json"
        );
        assert_eq!(resolve(base, "/a/b.json"), "https://wfe.local/a/b.json");
        assert_eq!(resolve(base, "https://other/x"), "https://other/x");
    }

    #[test]
    fn embeds_referenced_documents_and_rewrites_their_local_refs() {
        let root = json!({
            "$id": "https://wfe.local/schemas/log.json",
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "item.json"}},
                "first": {"$ref": "item.json#/$defs/id"},
                "own": {"$ref": "#/$defs/own"},
                "enum": {"enum": [{"$ref": "not a reference"}]}
            },
            "$defs": {"own": {"type": "string"}, "item": {"type": "null"}}
        });
        let item = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://wfe.local/schemas/item.json",
            "type": "object",
            "properties": {"id": {"$ref": "#/$defs/id"}, "back": {"$ref": "log.json"}},
            "$defs": {"id": {"type": "integer"}}
        });
        let resources = vec![("https://wfe.local/schemas/item.json".to_string(), item)];
        let out = bundle("https://wfe.local/schemas/log.json", &root, &resources);
        assert_eq!(out.get("$id"), None);
        // `item` was taken by the root's own definitions.
        assert_eq!(
            out.pointer("/properties/items/items/$ref"),
            Some(&json!("#/$defs/item-2"))
        );
        assert_eq!(
            out.pointer("/properties/first/$ref"),
            Some(&json!("#/$defs/item-2/$defs/id"))
        );
        assert_eq!(
            out.pointer("/properties/own/$ref"),
            Some(&json!("#/$defs/own"))
        );
        assert_eq!(
            out.pointer("/properties/enum/enum/0/$ref"),
            Some(&json!("not a reference"))
        );
        let embedded = &out["$defs"]["item-2"];
        assert_eq!(embedded.get("$id"), None);
        assert_eq!(embedded.get("$schema"), None);
        assert_eq!(
            embedded.pointer("/properties/id/$ref"),
            Some(&json!("#/$defs/item-2/$defs/id"))
        );
        assert_eq!(embedded.pointer("/properties/back/$ref"), Some(&json!("#")));
    }
}
