//! The HTTP layer the API providers share: one client per provider, the
//! retry loop, reading an SSE answer, and turning failures into
//! [`ProviderError`]s that never hold a key.
//!
//! It knows no wire format: each provider builds its request body and
//! headers, and hands over a [`Decoder`] that reads the events of one
//! answer. Whatever goes wrong, the whole request is sent again from the
//! start, so a decoder never has to resume a half-read answer.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{
    ChatResponse, HttpConfig, ProviderError, ProviderErrorKind, RetryNotice, Secret, TextSink,
};
use crate::retry::Backoff;

/// What replaces a key wherever it would have shown.
const REDACTED: &str = "[redacted]";

/// How much of a non-JSON error body a message quotes.
const BODY_QUOTE_CHARS: usize = 300;

/// Whether a decoder wants more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    More,
    /// The terminal event arrived: stop reading and finish.
    Done,
}

/// Reads the SSE events of one answer into a [`ChatResponse`].
///
/// A fresh decoder is made for every attempt.
pub(crate) trait Decoder: Send {
    /// Takes one event, passing any text on to `sink` as it arrives.
    fn event(&mut self, event: &Event, sink: &dyn TextSink) -> Result<Flow, Failure>;

    /// The answer, once the stream ended; a [`Failure::cut`] if it ended
    /// before the answer was whole.
    fn finish(self) -> Result<ChatResponse, Failure>;
}

/// What one attempt's failure means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Worth sending again (429, 5xx, connection errors, cut streams).
    Transient,
    /// The answer could not be understood; worth sending again, but when
    /// attempts run out it is the answer's fault, not the network's.
    Malformed,
    /// No point retrying.
    Fatal(ProviderErrorKind),
}

/// Why one attempt failed, before it is turned into a [`ProviderError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Whether to try again.
    pub(crate) kind: FailureKind,
    /// What happened; may still hold a key until [`HttpClient`] redacts it.
    pub(crate) message: String,
    /// How long the server asked us to wait before trying again.
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    /// A failure worth another attempt.
    pub(crate) fn transient(message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An answer that ended before its terminal event.
    pub(crate) fn cut(waiting_for: &str) -> Failure {
        Failure::transient(format!("the stream ended before {waiting_for}"))
    }

    /// An answer that could not be understood.
    pub(crate) fn malformed(message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Malformed,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that retrying cannot mend.
    pub(crate) fn fatal(kind: ProviderErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Fatal(kind),
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Parses an event's data as JSON; data that does not parse is a malformed stream.
pub(crate) fn event_json(event: &Event) -> Result<Value, Failure> {
    serde_json::from_str(&event.data).map_err(|err| {
        let name = if event.event.is_empty() {
            "message"
        } else {
            event.event.as_str()
        };
        Failure::malformed(format!("malformed `{name}` event: {err}"))
    })
}

/// Classifies an error object a server sent inside a stream (`{type,
/// message}` from Anthropic and OpenAI, `{code, status, message}` from
/// Gemini). Unknown kinds count as transient: the server accepted the
/// request, so the request is unlikely to be at fault.
pub(crate) fn stream_error(error: &Value) -> Failure {
    let message = match error.get("message").and_then(Value::as_str) {
        Some(message) => message.to_string(),
        None => match error.as_str() {
            Some(text) => text.to_string(),
            None => error.to_string(),
        },
    };
    let code = error.get("code").and_then(Value::as_u64);
    let label = ["type", "status"]
        .iter()
        .find_map(|field| error.get(*field).and_then(Value::as_str))
        .unwrap_or_default();
    let text = if label.is_empty() {
        format!("error in the stream: {message}")
    } else {
        format!("error in the stream ({label}): {message}")
    };
    let lower = label.to_ascii_lowercase();
    let auth = matches!(code, Some(401 | 403))
        || ["authentication", "permission", "unauthenticated"]
            .iter()
            .any(|word| lower.contains(word));
    let request = matches!(code, Some(400..=499) if !matches!(code, Some(408 | 429)))
        || [
            "invalid_request",
            "invalid_argument",
            "not_found",
            "request_too_large",
        ]
        .iter()
        .any(|word| lower.contains(word));
    if auth {
        Failure::fatal(ProviderErrorKind::Auth, text)
    } else if request {
        Failure::fatal(ProviderErrorKind::Request, text)
    } else {
        Failure::transient(text)
    }
}

/// Counts the tool calls already in a conversation, so providers that do
/// not name their calls can number new ones without reusing an id.
pub(crate) fn tool_uses_in(request: &super::ChatRequest) -> usize {
    request
        .messages
        .iter()
        .flat_map(|message| &message.content)
        .filter(|block| matches!(block, super::Block::ToolUse { .. }))
        .count()
}

/// One provider's HTTP client and settings.
#[derive(Debug)]
pub(crate) struct HttpClient {
    config: HttpConfig,
    /// Building can fail (no TLS roots, say); the error waits for the first request.
    client: Result<reqwest::Client, ProviderError>,
}

impl HttpClient {
    /// A client for `config`, built once: connections are pooled across requests.
    pub(crate) fn new(mut config: HttpConfig) -> HttpClient {
        super::install_crypto();
        let trimmed = config.base_url.trim_end_matches('/').len();
        config.base_url.truncate(trimmed);
        // No total timeout: it would cut long generations. The read
        // timeout catches a server gone silent mid-answer instead.
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("wfe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| {
                ProviderError::new(
                    ProviderErrorKind::Config,
                    redact(
                        &format!("cannot build an HTTP client: {}", error_chain(&err)),
                        config.key.as_ref(),
                    ),
                )
            });
        HttpClient { config, client }
    }

    /// The provider's settings (base URL without a trailing slash).
    pub(crate) fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The key, for providers that cannot work without one.
    pub(crate) fn required_key(&self) -> Result<&str, ProviderError> {
        match &self.config.key {
            Some(key) if !key.expose().is_empty() => Ok(key.expose()),
            _ => Err(ProviderError::new(
                ProviderErrorKind::Auth,
                "no API key is configured",
            )),
        }
    }

    /// A header carrying a secret, kept out of reqwest's debug output.
    pub(crate) fn secret_header(&self, value: &str) -> Result<HeaderValue, ProviderError> {
        let mut header = HeaderValue::from_str(value).map_err(|_| {
            ProviderError::new(
                ProviderErrorKind::Config,
                "the API key holds characters an HTTP header cannot carry",
            )
        })?;
        header.set_sensitive(true);
        Ok(header)
    }

    /// Sends `body` to `url` until an answer comes back whole or retrying
    /// is pointless, streaming text to `sink` as it arrives.
    pub(crate) async fn stream<D: Decoder>(
        &self,
        url: &str,
        headers: HeaderMap,
        body: &Value,
        sink: &dyn TextSink,
        decoder: impl Fn() -> D + Send,
    ) -> Result<ChatResponse, ProviderError> {
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let retry = self.config.retry;
        let max_attempts = retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let failure = match self
                .attempt(client, url, &headers, body, sink, decoder())
                .await
            {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            let exhausted_kind = match failure.kind {
                FailureKind::Fatal(kind) => {
                    return Err(self.error(kind, failure.message));
                }
                FailureKind::Transient => ProviderErrorKind::Exhausted,
                FailureKind::Malformed => ProviderErrorKind::Response,
            };
            if attempt >= max_attempts {
                let attempts = if attempt == 1 { "attempt" } else { "attempts" };
                return Err(self.error(
                    exhausted_kind,
                    format!("gave up after {attempt} {attempts}: {}", failure.message),
                ));
            }
            if let Some(asked) = failure.retry_after
                && asked > retry.max_wait
            {
                // Waiting for hours would leave the run "running" with
                // nothing to show; pausing says why and resumes later.
                return Err(self.error(
                    ProviderErrorKind::Exhausted,
                    format!(
                        "the provider asks to wait {} before trying again, longer than the {} wfe waits (`max_wait`): {}",
                        describe_wait(asked),
                        humantime::format_duration(retry.max_wait),
                        failure.message
                    ),
                ));
            }
            let wait = failure
                .retry_after
                .unwrap_or_else(|| Backoff::new(retry.backoff, retry.max_backoff).wait(attempt));
            sink.retrying(&RetryNotice {
                attempt,
                max_attempts,
                reason: redact(&failure.message, self.config.key.as_ref()),
                wait,
            });
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One request and the reading of its answer.
    async fn attempt<D: Decoder>(
        &self,
        client: &reqwest::Client,
        url: &str,
        headers: &HeaderMap,
        body: &Value,
        sink: &dyn TextSink,
        mut decoder: D,
    ) -> Result<ChatResponse, Failure> {
        let response = client
            .post(url)
            .headers(headers.clone())
            .header(
                reqwest::header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            )
            .json(body)
            .send()
            .await
            .map_err(|err| {
                let message = if err.is_connect() && err.is_timeout() {
                    format!(
                        "could not connect within {}",
                        humantime::format_duration(self.config.connect_timeout)
                    )
                } else if err.is_timeout() {
                    self.silent_message()
                } else {
                    format!("request failed: {}", error_chain(&err))
                };
                if err.is_builder() {
                    Failure::fatal(ProviderErrorKind::Config, message)
                } else {
                    Failure::transient(message)
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers(), SystemTime::now());
            // A body that cannot be read still leaves the status to report.
            let text = response.text().await.unwrap_or_default();
            let mut failure = status_failure(status, &text);
            failure.retry_after = wait.or_else(|| body_retry_delay(&text));
            return Err(failure);
        }
        let mut events = response.bytes_stream().eventsource();
        while let Some(item) = events.next().await {
            let event = item.map_err(|err| match err {
                EventStreamError::Transport(err) if err.is_timeout() => {
                    Failure::transient(self.silent_message())
                }
                EventStreamError::Transport(err) => {
                    Failure::transient(format!("the stream broke: {}", error_chain(&err)))
                }
                EventStreamError::Utf8(err) => {
                    Failure::malformed(format!("the stream is not UTF-8: {err}"))
                }
                EventStreamError::Parser(err) => {
                    Failure::malformed(format!("the stream is not valid SSE: {err}"))
                }
            })?;
            if decoder.event(&event, sink)? == Flow::Done {
                break;
            }
        }
        decoder.finish()
    }

    fn silent_message(&self) -> String {
        format!(
            "the server was silent for longer than the read timeout ({})",
            humantime::format_duration(self.config.read_timeout)
        )
    }

    /// An error safe to show: the key scrubbed from it.
    fn error(&self, kind: ProviderErrorKind, message: String) -> ProviderError {
        ProviderError::new(kind, redact(&message, self.config.key.as_ref()))
    }
}

/// Scrubs every occurrence of `key` from `text`.
pub(crate) fn redact(text: &str, key: Option<&Secret>) -> String {
    match key {
        Some(key) if !key.expose().is_empty() => text.replace(key.expose(), REDACTED),
        _ => text.to_string(),
    }
}

/// An error and its causes on one line, without the URL reqwest adds
/// (a base URL may carry credentials of a proxy).
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    let head = match err.url() {
        Some(url) => err.to_string().replace(&format!(" for url ({url})"), ""),
        None => err.to_string(),
    };
    parts.push(head);
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper and reqwest often repeat the cause's text in their own.
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// What a non-success status means, with the API's own message.
fn status_failure(status: StatusCode, body: &str) -> Failure {
    let code = status.as_u16();
    let mut message = match status.canonical_reason() {
        Some(reason) => format!("HTTP {code} {reason}"),
        None if code == 529 => format!("HTTP {code} Overloaded"),
        None => format!("HTTP {code}"),
    };
    if let Some(detail) = api_message(body) {
        message.push_str(": ");
        message.push_str(&detail);
    }
    match code {
        401 | 403 => Failure::fatal(ProviderErrorKind::Auth, message),
        408 | 429 | 500..=599 => Failure::transient(message),
        _ => Failure::fatal(ProviderErrorKind::Request, message),
    }
}

/// The error message in an API's error body: `{error: {message}}` for all
/// three APIs (Gemini may wrap it in an array), `{error: "text"}` for some
/// compatible servers, else the start of the body itself.
fn api_message(body: &str) -> Option<String> {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        let value = match &value {
            Value::Array(items) => items.first().unwrap_or(&Value::Null),
            other => other,
        };
        let error = value.get("error");
        let message = error
            .and_then(|error| error.get("message"))
            .and_then(Value::as_str)
            .or_else(|| error.and_then(Value::as_str))
            .or_else(|| value.get("message").and_then(Value::as_str));
        if let Some(message) = message {
            return Some(message.to_string());
        }
    }
    let mut quote: String = trimmed.chars().take(BODY_QUOTE_CHARS).collect();
    if quote.len() < trimmed.len() {
        quote.push('…');
    }
    Some(quote)
}

/// The wait a server asks for: `retry-after-ms` (OpenAI), else
/// `retry-after` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &'static str| {
        headers
            .get(HeaderName::from_static(name))
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|text| text.parse::<f64>().ok())
        && let Some(wait) = seconds_f64(ms / 1000.0)
    {
        return Some(wait);
    }
    let text = header("retry-after")?;
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Some(wait) = text.parse::<f64>().ok().and_then(seconds_f64) {
        return Some(wait);
    }
    let at = parse_http_date(text)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Gemini says how long to wait in the body instead
/// (`error.details[].retryDelay`, e.g. `"30s"`).
fn body_retry_delay(body: &str) -> Option<Duration> {
    let value: Value = serde_json::from_str(body.trim()).ok()?;
    let value = match &value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    value
        .get("error")?
        .get("details")?
        .as_array()?
        .iter()
        .filter_map(|detail| detail.get("retryDelay")?.as_str())
        .find_map(|delay| {
            let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
            seconds_f64(seconds)
        })
}

/// A wait of `seconds` as a server wrote it: none when negative or not a
/// number; [`Duration::MAX`] when too large to hold (`1e300`), which any
/// cap then refuses. Never panics, unlike `Duration::from_secs_f64`.
fn seconds_f64(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

/// A wait for a message: "1day", or "for ever" when it is absurd.
fn describe_wait(wait: Duration) -> String {
    if wait.as_secs() >= 100 * 365 * 86_400 {
        "more than a century".into()
    } else {
        humantime::format_duration(wait).to_string()
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only HTTP
/// date form servers still send.
fn parse_http_date(text: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = fields.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|name| name == month)? + 1;
    let day: u32 = day.parse().ok()?;
    let year: u32 = year.parse().ok()?;
    humantime::parse_rfc3339(&format!("{year:04}-{month:02}-{day:02}T{time}Z")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_waits_never_panic() {
        let now = SystemTime::now();
        let wait = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            retry_after(&headers, now)
        };
        assert_eq!(wait("retry-after-ms", "1e300"), Some(Duration::MAX));
        assert_eq!(wait("retry-after-ms", "inf"), Some(Duration::MAX));
        assert_eq!(wait("retry-after-ms", "-5"), None);
        assert_eq!(wait("retry-after-ms", "NaN"), None);
        assert_eq!(wait("retry-after", "1e300"), Some(Duration::MAX));
        assert_eq!(
            wait("retry-after", "99999999999999999999999999"),
            Some(Duration::MAX)
        );
        assert_eq!(
            wait("retry-after", "18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(wait("retry-after", "-1"), None);
        assert_eq!(
            body_retry_delay(r#"{"error": {"details": [{"retryDelay": "1e300s"}]}}"#),
            Some(Duration::MAX)
        );
        assert_eq!(describe_wait(Duration::MAX), "more than a century");
        assert_eq!(describe_wait(Duration::from_secs(86_400)), "1day");
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = humantime::parse_rfc3339("2015-10-21T07:28:00Z").expect("date");
        let headers = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            headers
        };
        assert_eq!(
            retry_after(&headers("retry-after", "7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(
                &headers("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
                now
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(
                &headers("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT"),
                now
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers("retry-after-ms", "250"), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(&headers("retry-after", "soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn gemini_retry_delay_comes_from_the_body() {
        let body = r#"{"error":{"code":429,"message":"quota","details":[
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}]}}"#;
        assert_eq!(body_retry_delay(body), Some(Duration::from_secs(12)));
        assert_eq!(body_retry_delay("not json"), None);
    }

    #[test]
    fn statuses_are_classified() {
        let kind = |code: u16| status_failure(StatusCode::from_u16(code).expect("code"), "").kind;
        assert_eq!(kind(401), FailureKind::Fatal(ProviderErrorKind::Auth));
        assert_eq!(kind(403), FailureKind::Fatal(ProviderErrorKind::Auth));
        assert_eq!(kind(400), FailureKind::Fatal(ProviderErrorKind::Request));
        assert_eq!(kind(404), FailureKind::Fatal(ProviderErrorKind::Request));
        for code in [408, 429, 500, 502, 503, 529] {
            assert_eq!(kind(code), FailureKind::Transient, "{code}");
        }
    }

    #[test]
    fn api_messages_are_found_in_every_shape() {
        assert_eq!(
            api_message(r#"{"type":"error","error":{"type":"x","message":"bad model"}}"#),
            Some("bad model".into())
        );
        assert_eq!(
            api_message(r#"[{"error":{"code":400,"message":"bad schema"}}]"#),
            Some("bad schema".into())
        );
        assert_eq!(
            api_message(r#"{"error":"model not found"}"#),
            Some("model not found".into())
        );
        assert_eq!(
            api_message("<html>oops</html>"),
            Some("<html>oops</html>".into())
        );
        assert_eq!(api_message("  "), None);
        let long = "x".repeat(1000);
        assert_eq!(api_message(&long).map(|m| m.chars().count()), Some(301));
        let message = status_failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"message":"boom"}}"#,
        )
        .message;
        assert_eq!(message, "HTTP 500 Internal Server Error: boom");
        let message = status_failure(StatusCode::from_u16(529).expect("code"), "").message;
        assert_eq!(message, "HTTP 529 Overloaded");
    }

    #[test]
    fn stream_errors_are_classified() {
        let kind = |error: Value| stream_error(&error).kind;
        assert_eq!(
            kind(serde_json::json!({"type": "overloaded_error", "message": "busy"})),
            FailureKind::Transient
        );
        assert_eq!(
            kind(serde_json::json!({"type": "invalid_request_error", "message": "no"})),
            FailureKind::Fatal(ProviderErrorKind::Request)
        );
        assert_eq!(
            kind(serde_json::json!({"type": "authentication_error", "message": "no"})),
            FailureKind::Fatal(ProviderErrorKind::Auth)
        );
        assert_eq!(
            kind(serde_json::json!({"code": 503, "status": "UNAVAILABLE", "message": "later"})),
            FailureKind::Transient
        );
        assert_eq!(
            kind(serde_json::json!({"code": 400, "status": "INVALID_ARGUMENT", "message": "x"})),
            FailureKind::Fatal(ProviderErrorKind::Request)
        );
        let failure =
            stream_error(&serde_json::json!({"type": "overloaded_error", "message": "busy"}));
        assert_eq!(
            failure.message,
            "error in the stream (overloaded_error): busy"
        );
    }

    #[test]
    fn redact_scrubs_every_occurrence() {
        let key = Secret::new("sk-1");
        assert_eq!(
            redact("a sk-1 b sk-1", Some(&key)),
            "a [redacted] b [redacted]"
        );
        assert_eq!(redact("a sk-1", None), "a sk-1");
        assert_eq!(redact("abc", Some(&Secret::new(""))), "abc");
    }
}
