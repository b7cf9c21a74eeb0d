//! Parsing an artifact document strictly: what a phase wrote must mean
//! exactly one thing.
//!
//! `serde_json::from_slice` into a `Value` silently keeps the last of two
//! equal keys, so `{"passed": false, "passed": true}` would pass a test
//! gate. Here a duplicate key is an error naming the key and where it is.
//! Nesting is bounded by serde_json's recursion limit (128), which this
//! parser keeps: a megabyte of `[` is an error, never a stack overflow. The
//! size limit is the caller's (exec reads at most `max_artifact_bytes`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::ArtifactError;

/// Parses a JSON document given as bytes; `what` names it in errors.
///
/// Rejects empty documents, syntax errors, trailing data, nesting deeper
/// than 128 and duplicate object keys, each with line and column.
pub fn parse_json_document(what: &str, bytes: &[u8]) -> Result<Value, ArtifactError> {
    let not_json = |message: String| ArtifactError::NotJson {
        what: what.to_string(),
        message,
    };
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(not_json("the file is empty".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue
        .deserialize(&mut de)
        .map_err(|e| not_json(e.to_string()))?;
    de.end().map_err(|e| not_json(e.to_string()))?;
    Ok(value)
}

/// Builds a `Value` like serde_json's own, but refuses duplicate keys.
///
/// A seed rather than a `Deserialize` impl on a wrapper, so nested values
/// are built in place without wrapping and unwrapping at every level.
#[derive(Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this is always Some;
        // Null would only ever stand in for a value serde_json never yields.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                // serde_json adds " at line L column C" to this message: the
                // position just after the repeated key.
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(bytes: &[u8]) -> String {
        match parse_json_document("out.json", bytes) {
            Err(ArtifactError::NotJson { what, message }) => {
                assert_eq!(what, "out.json");
                message
            }
            other => panic!("expected NotJson, got {other:?}"),
        }
    }

    #[test]
    fn parses_what_serde_json_parses() {
        let text = r#"{"a": [1, -2, 3.5, 1e30, true, null, "x\u00e9"], "b": {"c": {}}, "d": 18446744073709551615}"#;
        let strict = parse_json_document("x", text.as_bytes()).unwrap();
        let loose: Value = serde_json::from_str(text).unwrap();
        assert_eq!(strict, loose);
        assert_eq!(
            parse_json_document("x", b" \n\"just a string\"\n").unwrap(),
            json!("just a string")
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
        assert_eq!(
            message(b"{\n  \"a\": 1 \"b\"\n}"),
            "expected `,` or `}` at line 2 column 10"
        );
        assert_eq!(
            message(b"{\"a\": tru}"),
            "expected ident at line 1 column 10"
        );
        assert_eq!(
            message(b"{\"a\": 1}\n{\"b\": 2}"),
            "trailing characters at line 2 column 1"
        );
        assert_eq!(
            message(b"[1, 2"),
            "EOF while parsing a list at line 1 column 5"
        );
    }

    #[test]
    fn duplicate_keys_are_errors_with_the_key_and_position() {
        assert_eq!(
            message(b"{\n  \"passed\": false,\n  \"passed\": true\n}"),
            "duplicate key `passed` at line 3 column 10"
        );
        // Nested objects are checked too; equal keys in sibling objects are fine.
        assert_eq!(
            message(br#"{"a": [{"x": 1}, {"x": 2, "y": 3, "x": 4}]}"#),
            "duplicate key `x` at line 1 column 37"
        );
        let fine = parse_json_document("ok.json", br#"{"a": {"x": 1}, "b": {"x": 1}}"#);
        assert_eq!(fine.unwrap(), json!({"a": {"x": 1}, "b": {"x": 1}}));
        // Escapes are decoded before comparing: these spell the same key.
        assert!(message(br#"{"k": 1, "\u006b": 2}"#).starts_with("duplicate key `k`"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for open in [&b"["[..], b"{\"a\":"] {
            let deep = open.repeat(1_000_000);
            let text = message(&deep);
            assert!(text.starts_with("recursion limit exceeded"), "{text}");
        }
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_json_document("ok.json", fine.as_bytes()).is_ok());
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        let cases: [&[u8]; 7] = [
            b"\xff\xfe",
            b"\"\\ud800\"",
            b"\"\xc3\x28\"",
            b"{\"a\" 1}",
            b"-",
            b"1e999999",
            b"\xef\xbb\xbf{}",
        ];
        for bytes in cases {
            let _ = parse_json_document("odd.json", bytes);
        }
    }
}
