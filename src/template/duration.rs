//! Durations as templates write them: `"90s"`, `"15m"`, `"1h"`, or seconds.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration parsed from a template; serialises back to a canonical string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// Parses `"90s"`, `"15m"`, `"1h30m"`, `"250ms"` or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(secs) = text.parse::<f64>() {
            return Self::from_secs(secs);
        }
        humantime::parse_duration(text)
            .map(DurationSpec)
            .map_err(|e| format!("`{text}` is not a duration ({e}); expected e.g. \"90s\", \"15m\", \"1h\" or a number of seconds"))
    }

    fn from_secs(secs: f64) -> Result<Self, String> {
        if secs.is_finite() && (0.0..1e12).contains(&secs) {
            Ok(DurationSpec(Duration::from_secs_f64(secs)))
        } else {
            Err(format!(
                "{secs} is not a duration; expected a non-negative number of seconds"
            ))
        }
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_duration(self.0)
                .to_string()
                .replace(' ', "")
        )
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(f64),
        }
        let parsed = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration: a string like \"90s\", \"15m\", \"1h\" or a number of seconds")
        })? {
            Raw::Text(t) => DurationSpec::parse(&t),
            Raw::Secs(s) => DurationSpec::from_secs(s),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: \"90s\", \"15m\", \"1h\", \"1h30m\", \"250ms\", or a number of seconds.",
            "anyOf": [
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*[a-zA-Z]*(\\s*[0-9]+\\s*[a-zA-Z]+)*\\s*$" },
                { "type": "number", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_templates_use() {
        let cases = [
            ("90s", 90_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("2", 2_000),
            ("0.5", 500),
        ];
        for (text, ms) in cases {
            assert_eq!(
                DurationSpec::parse(text).unwrap().0.as_millis(),
                ms,
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for text in ["soon", "-1", "10 parsecs", ""] {
            let err = DurationSpec::parse(text).unwrap_err();
            assert!(err.contains("expected"), "{text}: {err}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        let d: DurationSpec = serde_json::from_str("\"15m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"15m\"");
        let d: DurationSpec = serde_json::from_str("90").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1m30s\"");
    }
}
