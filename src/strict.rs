//! Strict parsing of JSON and YAML documents: a duplicate key is an error.
//!
//! `serde_json` and YAML parsers keep the last of two equal keys in an
//! object, so `{"run": "make test", "run": "rm -rf /"}` reads as the second
//! silently. Templates and the config are read through here instead: the
//! document becomes a `serde_json::Value` as usual, but a key seen twice in
//! one object stops the parse with the key and its JSON path
//! (`phases[2].run`). Trailing content after a JSON document is an error too.
//!
//! A leaf: it imports no other wfe module.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictError {
    /// The same key twice in one object.
    #[error("duplicate key `{key}` at {}{where_}", if .path.is_empty() { "the top level".to_string() } else { format!("`{}`", .path) })]
    Duplicate {
        /// The key.
        key: String,
        /// The JSON path of the object holding it (empty: the top level).
        path: String,
        /// ` (line L column C)` where the parser noticed, or empty.
        where_: String,
    },
    /// Not valid JSON (or YAML), trailing content included.
    #[error("{0}")]
    Syntax(String),
}

/// Parses JSON text, refusing duplicate keys and trailing content.
pub fn parse_json(text: &str) -> Result<Value, StrictError> {
    let seen = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let result = Strict {
        path: String::new(),
        duplicate: &seen,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    result.map_err(|e| match seen.take() {
        Some((key, path)) => StrictError::Duplicate {
            key,
            path,
            where_: format!(" (line {} column {})", e.line(), e.column()),
        },
        None => StrictError::Syntax(e.to_string()),
    })
}

/// Parses YAML text into JSON values, refusing duplicate keys.
pub fn parse_yaml(text: &str) -> Result<Value, StrictError> {
    let seen = RefCell::new(None);
    let de = yaml_serde::Deserializer::from_str(text);
    let result = Strict {
        path: String::new(),
        duplicate: &seen,
    }
    .deserialize(de);
    result.map_err(|e| match seen.take() {
        Some((key, path)) => StrictError::Duplicate {
            key,
            path,
            where_: e
                .location()
                .map(|l| format!(" (line {} column {})", l.line(), l.column()))
                .unwrap_or_default(),
        },
        None => StrictError::Syntax(e.to_string()),
    })
}

/// A value at `path`; the first duplicate found is left in `duplicate`.
struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<(String, String)>>,
}

impl Strict<'_> {
    fn child(&self, path: String) -> Strict<'_> {
        Strict {
            path,
            duplicate: self.duplicate,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own Value does: NaN and infinities have no JSON form.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) =
            seq.next_element_seed(self.child(format!("{}[{}]", self.path, items.len())))?
        {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some((key.clone(), self.path.clone()));
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            let value = map.next_value_seed(self.child(path))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_like_serde_json() {
        let text = r#"{"a": [1, -2, 2.5, null, true, "x"], "b": {"c": {}}}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse_json(text).unwrap(), expected);
    }

    #[test]
    fn a_duplicate_key_names_the_key_and_its_object() {
        let err = parse_json(r#"{"phases": [{"id": "a", "run": "x", "run": "y"}]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "duplicate key `run` at `phases[0]` (line 1 column 41)"
        );
        let err = parse_json(r#"{"id": 1, "id": 2}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("duplicate key `id` at the top level"),
            "{err}"
        );
    }

    #[test]
    fn trailing_content_is_an_error() {
        let err = parse_json("{} {}").unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
    }

    #[test]
    fn yaml_duplicates_are_refused_too() {
        let value = parse_yaml("a: 1\nb: [x, {c: 2}]\n").unwrap();
        assert_eq!(value, serde_json::json!({"a": 1, "b": ["x", {"c": 2}]}));
        let err = parse_yaml("a: 1\nb:\n  c: 2\n  c: 3\n").unwrap_err();
        assert!(
            err.to_string().starts_with("duplicate key `c` at `b`"),
            "{err}"
        );
    }
}
