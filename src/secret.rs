//! Secret values and the one masker that hides them in what wfe writes or shows.
//!
//! A [`Masker`] holds the values of provider keys and of the environment
//! variables a config or phase declares `secrets`, and replaces each with
//! [`MASK`] wherever it appears: log lines (in `attempt::AttemptLog`),
//! stored errors, artifacts, agent exchanges and tool calls, and every file
//! and message of a checkpoint, so nothing committed (and so nothing the
//! search index reads) holds a secret.
//!
//! Values shorter than [`MIN_SUBSTRING_LEN`] bytes are masked only where a
//! whole string (a log line, a JSON string) equals them, never inside other
//! text: a one-letter secret must not mangle every word holding that letter.
//!
//! A value of several lines is also masked line by line (each line on its
//! own is a secret), since output is logged and shown a line at a time.
//!
//! A value is also looked for in its JSON-escaped spelling (a secret with a
//! quote, backslash or newline is written differently inside JSON files).
//!
//! This is a leaf: it must not import any other wfe module, read the
//! environment or touch the store. The values come from the CLI.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use memchr::memmem::Finder;
use serde_json::Value;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Values this long or longer are masked wherever they appear; shorter
/// ones only where a whole string equals them.
pub const MIN_SUBSTRING_LEN: usize = 8;

/// Replaces secret values with [`MASK`]. Cheap to clone; the default masks nothing.
#[derive(Clone, Default)]
pub struct Masker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Byte patterns masked as substrings: each long value, and its JSON
    /// spelling when that differs.
    patterns: Vec<Finder<'static>>,
    /// Every value, short ones included, for whole-string matches.
    whole: Vec<String>,
}

/// Two maskers are equal when they mask the same values.
impl PartialEq for Masker {
    fn eq(&self, other: &Masker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.whole == other.inner.whole
    }
}

impl Eq for Masker {}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values themselves.
        f.debug_struct("Masker")
            .field("secrets", &self.inner.whole.len())
            .finish()
    }
}

impl Masker {
    /// A masker for `values`; empty and all-blank values are ignored, and a
    /// value with surrounding whitespace is also masked trimmed.
    pub fn new<I, S>(values: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut whole: Vec<String> = Vec::new();
        for value in values {
            let value = value.as_ref();
            // A value of several lines (a PEM key) is also masked line by
            // line, as GitHub Actions does: output is logged a line at a
            // time, so the whole value never appears in one log line.
            let lines = value.lines().filter(|_| value.contains('\n'));
            for v in [value, value.trim()].into_iter().chain(lines) {
                if !v.trim().is_empty() && !whole.iter().any(|w| w == v) {
                    whole.push(v.to_string());
                }
            }
        }
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in whole.iter().filter(|v| v.len() >= MIN_SUBSTRING_LEN) {
            let escaped = json_spelling(value);
            for p in [value.as_bytes().to_vec(), escaped.into_bytes()] {
                if !patterns.contains(&p) {
                    patterns.push(p);
                }
            }
        }
        let patterns = patterns
            .iter()
            .map(|p| Finder::new(p).into_owned())
            .collect();
        Masker {
            inner: Arc::new(Inner { patterns, whole }),
        }
    }

    /// Where the tail of a growing `text` that could be the start of a
    /// secret begins (`text.len()` when none could): what comes from there
    /// must be held back until more text shows whether it is one, so that
    /// no secret is ever shown half-typed.
    pub fn undecided_from(&self, text: &str) -> usize {
        let bytes = text.as_bytes();
        let whole = self.inner.whole.iter().map(String::as_bytes);
        let patterns = self.inner.patterns.iter().map(|p| p.needle());
        let mut from = bytes.len();
        for secret in whole.chain(patterns) {
            let earliest = bytes.len().saturating_sub(secret.len().saturating_sub(1));
            if let Some(start) = (earliest..from).find(|&start| secret.starts_with(&bytes[start..]))
            {
                from = start;
            }
        }
        from
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.inner.whole.is_empty()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.is_empty() {
            return Cow::Borrowed(text);
        }
        if self.inner.whole.iter().any(|w| w == text) {
            return Cow::Owned(MASK.to_string());
        }
        match self.mask_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Matches are whole UTF-8 sequences of valid values, so cutting
            // them out of valid UTF-8 leaves valid UTF-8.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    /// `bytes` with every long secret (raw or JSON-escaped) replaced by
    /// [`MASK`]. Overlapping matches become one mask.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for pattern in &self.inner.patterns {
            // Every occurrence, overlapping ones too (`aXaXa` holds `aXa`
            // twice): nothing of a secret may be left beside its mask.
            let mut from = 0;
            while let Some(at) = pattern.find(&bytes[from..]) {
                let start = from + at;
                ranges.push((start, start + pattern.needle().len()));
                from = start + 1;
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(bytes);
        }
        ranges.sort_unstable();
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        let mut ranges = ranges.into_iter().peekable();
        while let Some((start, mut end)) = ranges.next() {
            // Merge every range overlapping this one: two secrets sharing
            // bytes are one masked stretch, with nothing of either left.
            while let Some(&(s, e)) = ranges.peek() {
                if s >= end {
                    break;
                }
                end = end.max(e);
                ranges.next();
            }
            out.extend_from_slice(&bytes[at..start]);
            out.extend_from_slice(MASK.as_bytes());
            at = end;
        }
        out.extend_from_slice(&bytes[at..]);
        Cow::Owned(out)
    }

    /// Masks every string (and object key) in `value`; true if anything changed.
    pub fn mask_json(&self, value: &mut Value) -> bool {
        if self.is_empty() {
            return false;
        }
        match value {
            Value::String(s) => match self.mask_str(s) {
                Cow::Borrowed(_) => false,
                Cow::Owned(masked) => {
                    *s = masked;
                    true
                }
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, v| self.mask_json(v) | changed),
            Value::Object(map) => {
                let mut changed = false;
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    let masked = self.mask_str(&key).into_owned();
                    if masked != key {
                        if let Some(v) = map.remove(&key) {
                            map.insert(masked, v);
                        }
                        changed = true;
                    }
                }
                for v in map.values_mut() {
                    changed |= self.mask_json(v);
                }
                changed
            }
            _ => false,
        }
    }

    /// True when `bytes` hold a long secret, raw or JSON-escaped.
    pub fn finds_in(&self, bytes: &[u8]) -> bool {
        self.inner.patterns.iter().any(|p| p.find(bytes).is_some())
    }
}

/// How `value` is spelled inside a JSON string (without the quotes).
fn json_spelling(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn long_values_are_masked_wherever_they_appear() {
        let m = Masker::new(["sk-ant-0123456789"]);
        assert_eq!(
            m.mask_str("ANTHROPIC_API_KEY=sk-ant-0123456789 and sk-ant-0123456789!"),
            "ANTHROPIC_API_KEY=*** and ***!"
        );
        assert_eq!(m.mask_str("nothing here"), "nothing here");
        assert!(matches!(m.mask_str("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_masked_only_as_whole_strings() {
        let m = Masker::new(["abc", "x"]);
        assert_eq!(m.mask_str("abcdef x-ray"), "abcdef x-ray");
        assert_eq!(m.mask_str("abc"), MASK);
        assert_eq!(m.mask_str("x"), MASK);
        let mut v = json!({"a": "abc", "b": "abcd", "c": ["x", "xx"]});
        assert!(m.mask_json(&mut v));
        assert_eq!(v, json!({"a": "***", "b": "abcd", "c": ["***", "xx"]}));
        assert!(!m.finds_in(b"abc"));
    }

    #[test]
    fn blank_values_mask_nothing() {
        let m = Masker::new(["", "   "]);
        assert!(m.is_empty());
        assert_eq!(m.mask_str("   "), "   ");
    }

    #[test]
    fn overlapping_and_nested_secrets_leave_nothing_of_either() {
        // One secret inside another, and two sharing a stretch.
        let m = Masker::new([
            "secret-token-1234",
            "token-1234",
            "AAAABBBBCC",
            "BBBBCCDDDD",
        ]);
        assert_eq!(m.mask_str("x secret-token-1234 y"), "x *** y");
        assert_eq!(m.mask_str("token-1234"), "***");
        assert_eq!(m.mask_str("<AAAABBBBCCDDDD>"), "<***>");
        assert_eq!(m.mask_str("aaAAAABBBBCCBBBBCCDDDD"), "aa******");
    }

    #[test]
    fn json_escaped_spellings_are_masked_in_bytes() {
        let secret = "pa\"ss\\word\n123";
        let m = Masker::new([secret]);
        let encoded = serde_json::to_vec(&json!({"out": format!("key={secret}")})).unwrap();
        assert!(m.finds_in(&encoded));
        let masked = m.mask_bytes(&encoded);
        assert!(!m.finds_in(&masked));
        let back: Value = serde_json::from_slice(&masked).unwrap();
        assert_eq!(back, json!({"out": "key=***"}));
        // Masked before encoding, the same result.
        let mut value = json!({"out": format!("key={secret}")});
        assert!(m.mask_json(&mut value));
        assert_eq!(value, back);
    }

    #[test]
    fn trimmed_values_and_keys_are_masked_too() {
        let m = Masker::new(["  long-secret-value\n"]);
        assert_eq!(m.mask_str("v=long-secret-value"), "v=***");
        let mut v = json!({"long-secret-value": 1});
        assert!(m.mask_json(&mut v));
        assert_eq!(v, json!({"***": 1}));
    }

    #[test]
    fn non_utf8_bytes_are_masked_as_bytes() {
        let m = Masker::new(["deploy-token-xyz"]);
        let bytes = b"\xff\xfe deploy-token-xyz \xff";
        assert_eq!(&*m.mask_bytes(bytes), b"\xff\xfe *** \xff");
    }

    #[test]
    fn self_overlapping_occurrences_are_masked_whole() {
        let m = Masker::new(["abcabcab"]);
        // Two occurrences sharing `ab`: one stretch, nothing left over.
        assert_eq!(m.mask_str("<abcabcabcab>"), "<***>");
    }

    #[test]
    fn masking_a_large_file_finds_the_one_secret_at_its_end() {
        let m = Masker::new((0..10).map(|i| format!("secret-value-number-{i}")));
        let line = "{\"time\":\"2026-01-02T03:04:05Z\",\"line\":\"ordinary output of a build\"}\n";
        let mut text = line.repeat(20_000);
        text.push_str("secret-value-number-7");
        let started = std::time::Instant::now();
        let masked = m.mask_bytes(text.as_bytes());
        eprintln!("masked {} bytes in {:?}", text.len(), started.elapsed());
        assert!(masked.ends_with(b"***"));
        assert_eq!(masked.len(), text.len() - "secret-value-number-7".len() + 3);
    }

    #[test]
    fn each_line_of_a_multi_line_value_is_masked_on_its_own() {
        let pem =
            "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASC\r\nab\n-----END KEY-----\n";
        let m = Masker::new([pem]);
        // The log holds it a line at a time.
        assert_eq!(m.mask_str("MIIEvQIBADANBgkqhkiG9w0B"), MASK);
        assert_eq!(m.mask_str("key: MIIEvQIBADANBgkqhkiG9w0B!"), "key: ***!");
        assert_eq!(m.mask_str("AQEFAASC"), MASK);
        assert_eq!(m.mask_str("-----END KEY-----"), MASK);
        // A short line is masked only where it is a whole line.
        assert_eq!(m.mask_str("ab"), MASK);
        assert_eq!(m.mask_str("table"), "table");
        // And the whole value where it appears whole.
        assert_eq!(m.mask_str(&format!("<{pem}>")), "<***>");
        // A one-line value adds no line of its own beyond itself.
        assert_eq!(Masker::new(["one-line-secret"]).inner.whole.len(), 1);
    }

    #[test]
    fn debug_never_shows_a_value() {
        let m = Masker::new(["sk-ant-0123456789"]);
        assert!(!format!("{m:?}").contains("sk-ant"));
    }
}
