//! Wall-clock time as wfe records it: RFC 3339 UTC strings with milliseconds.
//!
//! The clock is a value handed down from the CLI so tests can pin it
//! (`WFE_NOW`) without any module below `cli` reading the environment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of timestamps: the system clock, or a fixed instant for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    fixed: Option<SystemTime>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { fixed: None }
    }

    /// A clock that always answers `at`.
    pub fn fixed(at: SystemTime) -> Self {
        Clock { fixed: Some(at) }
    }

    /// Parses an RFC 3339 timestamp into a fixed clock.
    pub fn parse_fixed(text: &str) -> Result<Self, humantime::TimestampError> {
        Ok(Clock::fixed(humantime::parse_rfc3339_weak(text)?))
    }

    /// The current instant.
    pub fn now(&self) -> SystemTime {
        self.fixed.unwrap_or_else(SystemTime::now)
    }

    /// The current instant as an RFC 3339 string with milliseconds.
    pub fn stamp(&self) -> String {
        format_stamp(self.now())
    }

    /// Seconds since the Unix epoch, as git records commit times.
    pub fn epoch_seconds(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64
    }
}

/// Formats an instant as RFC 3339 UTC with milliseconds.
pub fn format_stamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, as seconds since the
/// epoch: what a `since` filter takes, from the CLI and the web view alike.
pub fn parse_day_or_time(text: &str) -> Option<i64> {
    let full = if text.len() == 10 && text.as_bytes().get(4) == Some(&b'-') {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}
