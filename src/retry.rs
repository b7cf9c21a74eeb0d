//! Retrying: durations as wfe's files write them, the retry policy a
//! template gives a phase, and the one exponential backoff with jitter
//! and a cap that every retry loop waits by.
//!
//! Two loops retry: the engine's runner between attempts of a phase, and
//! the HTTP providers between requests. Both wait `base · 2^(n-1)` after
//! the n-th failure, capped, then take "equal jitter" (between half and
//! all of it) so clients that failed together do not come back together.
//! [`Backoff`] is that rule, written once.
//!
//! This is a leaf: it imports no other wfe module, never sleeps and never
//! decides whether something is worth retrying; callers do.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
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
        let parsed = humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration ({e}); expected e.g. \"90s\", \"15m\", \"1h\" or a number of seconds"))?;
        if parsed > DurationSpec::MAX {
            return Err(format!(
                "`{text}` is too long a duration; expected at most {}",
                humantime::format_duration(DurationSpec::MAX)
            ));
        }
        Ok(DurationSpec(parsed))
    }

    /// The longest duration a file may write (about 31 700 years): long
    /// enough to mean "never", short enough that adding it to a clock
    /// reading cannot overflow.
    pub const MAX: Duration = Duration::from_secs(1_000_000_000_000);

    fn from_secs(secs: f64) -> Result<Self, String> {
        if let Some(d) = (secs.is_finite() && (0.0..1e12).contains(&secs))
            .then(|| Duration::try_from_secs_f64(secs).ok())
            .flatten()
        {
            Ok(DurationSpec(d))
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

/// How often and how patiently to retry a failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles each time, with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<DurationSpec>,
    /// The longest wait between attempts (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<DurationSpec>,
}

/// Exponential backoff with a cap and "equal jitter".
///
/// The wait after the n-th failure (n from 1) is `base · 2^(n-1)`, at most
/// `cap`; [`Backoff::wait`] then takes a random point between half of it
/// and all of it. The runner waits between attempts of a phase with
///
/// ```ignore
/// let wait = Backoff::for_phase(retry.as_ref()).wait(attempt); // attempt = failures so far
/// ```
///
/// and an HTTP provider between requests with
/// `Backoff::new(settings.backoff, settings.max_backoff).wait(failures)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait, before jitter.
    pub cap: Duration,
}

impl Backoff {
    /// The first wait between attempts of a phase when its retry policy
    /// gives no `backoff`.
    pub const PHASE_BASE: Duration = Duration::from_secs(1);
    /// The longest wait between attempts of a phase when its retry policy
    /// gives no `max_backoff`.
    pub const PHASE_CAP: Duration = Duration::from_secs(300);

    /// Waits starting at `base`, doubling, never over `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The backoff between attempts of a phase: the policy's `backoff` and
    /// `max_backoff`, else [`Backoff::PHASE_BASE`] and [`Backoff::PHASE_CAP`].
    pub fn for_phase(policy: Option<&RetryPolicy>) -> Backoff {
        Backoff {
            base: policy
                .and_then(|p| p.backoff)
                .map_or(Backoff::PHASE_BASE, |d| d.0),
            cap: policy
                .and_then(|p| p.max_backoff)
                .map_or(Backoff::PHASE_CAP, |d| d.0),
        }
    }

    /// The wait after `failures` failures, before jitter:
    /// `base · 2^(failures-1)`, capped (`failures` 0 counts as 1).
    pub fn full(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait after `failures` failures, jittered: between half of
    /// [`Backoff::full`] and all of it.
    pub fn wait(&self, failures: u32) -> Duration {
        jitter(self.full(failures))
    }
}

/// Somewhere between half of `wait` and all of it ("equal jitter"), so
/// retries that failed together do not all come back at the same instant.
pub fn jitter(wait: Duration) -> Duration {
    // std's hasher keys are random per `RandomState`: enough randomness
    // for spreading retries, without a dependency.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    wait.mul_f64(0.5 + fraction / 2.0)
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
    fn huge_durations_are_refused_not_overflowed() {
        for text in [
            "99999999999h",
            "584942417355y",
            "1e300",
            "18446744073709551615",
        ] {
            let err = DurationSpec::parse(text).unwrap_err();
            assert!(err.contains("expected"), "{text}: {err}");
        }
        assert!(DurationSpec::parse("1000y").is_ok());
        assert!(serde_json::from_str::<DurationSpec>("1e300").is_err());
        assert!(serde_json::from_str::<DurationSpec>("\"99999999999h\"").is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let d: DurationSpec = serde_json::from_str("\"15m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"15m\"");
        let d: DurationSpec = serde_json::from_str("90").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1m30s\"");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let waits: Vec<u64> = (1..=6).map(|n| backoff.full(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff.full(0), Duration::from_secs(1));
        assert_eq!(backoff.full(200), Duration::from_secs(10));
        assert_eq!(backoff.full(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let wait = jitter(Duration::from_millis(1000));
            assert!(wait >= Duration::from_millis(500) && wait <= Duration::from_millis(1000));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_phase_backoff_doubles_within_jitter_and_caps() {
        let policy: RetryPolicy = serde_json::from_value(
            serde_json::json!({"max_attempts": 5, "backoff": "2s", "max_backoff": "5s"}),
        )
        .unwrap();
        let cases = [(1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)];
        for (attempt, full) in cases {
            let wait = Backoff::for_phase(Some(&policy))
                .wait(attempt)
                .as_secs_f64();
            assert!(
                wait >= full / 2.0 - 1e-9 && wait <= full + 1e-9,
                "attempt {attempt}: {wait}s not in [{}, {full}]",
                full / 2.0
            );
        }
    }

    #[test]
    fn a_phase_without_a_policy_waits_1s_doubling_up_to_5m() {
        let backoff = Backoff::for_phase(None);
        assert_eq!(backoff.full(1), Duration::from_secs(1));
        assert_eq!(backoff.full(4), Duration::from_secs(8));
        assert_eq!(backoff.full(30), Duration::from_secs(300));
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff: Some(DurationSpec(Duration::from_millis(10))),
            max_backoff: None,
        };
        assert_eq!(
            Backoff::for_phase(Some(&policy)).full(2),
            Duration::from_millis(20)
        );
    }
}
