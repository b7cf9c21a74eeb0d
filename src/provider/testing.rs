//! Test helpers for the HTTP providers: the retry and error checks every
//! provider must pass, against the shared scripted fake server
//! ([`crate::testing::llm`]), re-exported here for the providers' tests.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) use crate::testing::llm::{FakeServer, Reply, sse};

use super::{
    ChatRequest, HttpConfig, Message, Provider, ProviderError, ProviderErrorKind, RetrySettings,
    Secret, TextSink,
};

/// The key every test uses, so a leak of it is easy to spot.
pub(crate) const LEAK_KEY: &str = "sk-test-LEAKCHECK-0123456789";

/// Settings for a provider talking to `base_url`, with millisecond backoffs.
pub(crate) fn config(base_url: &str) -> HttpConfig {
    HttpConfig {
        name: "test".into(),
        base_url: base_url.into(),
        key: Some(Secret::new(LEAK_KEY)),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        retry: RetrySettings {
            max_attempts: 3,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_wait: Duration::from_secs(2),
        },
    }
}

/// A sink that keeps every piece of text and every retry notice it hears.
#[derive(Default)]
pub(crate) struct Collect(Mutex<Vec<String>>, Mutex<Vec<super::RetryNotice>>);

impl Collect {
    /// The pieces heard, in order.
    pub(crate) fn pieces(&self) -> Vec<String> {
        self.0.lock().expect("collect lock").clone()
    }

    /// The retries announced, in order.
    pub(crate) fn retries(&self) -> Vec<super::RetryNotice> {
        self.1.lock().expect("collect lock").clone()
    }
}

impl TextSink for Collect {
    fn text(&self, text: &str) {
        self.0.lock().expect("collect lock").push(text.to_string());
    }

    fn retrying(&self, notice: &super::RetryNotice) {
        self.1.lock().expect("collect lock").push(notice.clone());
    }
}

/// How to drive one provider through the shared checks.
pub(crate) struct Wire {
    /// Builds the provider.
    pub(crate) make: fn(HttpConfig) -> Box<dyn Provider>,
    /// SSE chunks of a whole answer saying `hello`.
    pub(crate) hello: fn() -> Vec<String>,
    /// The start of that answer, without its terminal event.
    pub(crate) cut: fn() -> Vec<String>,
    /// An answer with an event whose JSON does not parse.
    pub(crate) malformed: fn() -> Vec<String>,
    /// An error event inside a 200 stream, in the provider's own shape, saying `message`.
    pub(crate) stream_error: fn(&str) -> Vec<String>,
}

fn simple_request() -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        system: None,
        messages: vec![Message::user("hi")],
        tools: Vec::new(),
        max_tokens: 100,
    }
}

async fn send(wire: &Wire, config: HttpConfig) -> Result<super::ChatResponse, ProviderError> {
    let provider = (wire.make)(config);
    provider.send(&simple_request(), &Collect::default()).await
}

fn assert_hello(response: &super::ChatResponse) {
    assert_eq!(
        response.content,
        vec![super::Block::Text {
            text: "hello".into()
        }]
    );
    assert_eq!(response.stop, super::StopReason::EndTurn);
}

/// 429 with `retry-after: 1`, then an answer: waited a second, two requests.
pub(crate) async fn check_retry_after(wire: &Wire) {
    let server = FakeServer::start(vec![
        Reply::json(429, serde_json::json!({"error": {"message": "slow down"}}))
            .header("retry-after", "1"),
        Reply::sse((wire.hello)()),
    ])
    .await;
    let started = Instant::now();
    let response = send(wire, config(server.url())).await.expect("answer");
    assert_hello(&response);
    assert_eq!(server.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after ignored"
    );
}

/// 429 asking to wait longer than `max_wait` (a day; absurdly long): no
/// waiting, no second request, `Exhausted` saying how long was asked.
pub(crate) async fn check_long_retry_after_gives_up_at_once(wire: &Wire) {
    for (header, value, said) in [
        ("retry-after", "86400", "wait 1day"),
        ("retry-after-ms", "1e300", "wait more than a century"),
    ] {
        let server = FakeServer::start(vec![
            Reply::json(429, serde_json::json!({"error": {"message": "slow down"}}))
                .header(header, value),
            Reply::sse((wire.hello)()),
        ])
        .await;
        let error = send(wire, config(server.url()))
            .await
            .expect_err("gives up");
        assert_eq!(error.kind, ProviderErrorKind::Exhausted, "{error:?}");
        assert!(error.message.contains(said), "{}", error.message);
        assert!(error.message.contains("`max_wait`"), "{}", error.message);
        assert_eq!(server.requests().len(), 1);
    }
}

/// 500 on every attempt: `Exhausted`, exactly `max_attempts` requests.
pub(crate) async fn check_exhausted(wire: &Wire) {
    let error = || Reply::json(500, serde_json::json!({"error": {"message": "boom"}}));
    let server =
        FakeServer::start(vec![error(), error(), error(), Reply::sse((wire.hello)())]).await;
    let err = send(wire, config(server.url()))
        .await
        .expect_err("gives up");
    assert_eq!(err.kind, ProviderErrorKind::Exhausted);
    assert_eq!(
        err.message,
        "gave up after 3 attempts: HTTP 500 Internal Server Error: boom"
    );
    assert_eq!(server.requests().len(), 3);
}

/// A stream cut before its terminal event (cleanly, then by a dropped
/// connection), then a whole one: success on the third request.
pub(crate) async fn check_cut_stream(wire: &Wire) {
    let server = FakeServer::start(vec![
        Reply::sse((wire.cut)()),
        Reply::sse((wire.cut)()).aborted(),
        Reply::sse((wire.hello)()),
    ])
    .await;
    let sink = Collect::default();
    let provider = (wire.make)(config(server.url()));
    let response = provider
        .send(&simple_request(), &sink)
        .await
        .expect("answer");
    assert_hello(&response);
    assert_eq!(server.requests().len(), 3);
    // Each retry is announced, with why and how long it waits.
    let retries = sink.retries();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert_eq!(
        retries.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(retries.iter().all(|r| r.max_attempts == 3));
    assert!(retries[0].reason.contains("stream"), "{retries:?}");
    // The backoff (1ms, jittered) is what is waited.
    assert!(retries[0].wait <= Duration::from_millis(1), "{retries:?}");
    // The sink hears the cut attempts too; the last attempt's text comes last.
    assert!(
        sink.pieces().concat().ends_with("hello"),
        "{:?}",
        sink.pieces()
    );
}

/// A server gone silent mid-answer: the read timeout ends the attempt,
/// and the request is sent again.
pub(crate) async fn check_stalled_stream(wire: &Wire) {
    let server = FakeServer::start(vec![
        Reply::sse((wire.cut)()).stalled(),
        Reply::sse((wire.hello)()),
    ])
    .await;
    let mut config = config(server.url());
    config.read_timeout = Duration::from_millis(200);
    let response = send(wire, config.clone()).await.expect("answer");
    assert_hello(&response);
    assert_eq!(server.requests().len(), 2);

    let stall = || Reply::sse((wire.cut)()).stalled();
    let server = FakeServer::start(vec![stall(), stall(), stall()]).await;
    let config = HttpConfig {
        base_url: server.url().to_string(),
        ..config
    };
    let err = send(wire, config).await.expect_err("gives up");
    assert_eq!(err.kind, ProviderErrorKind::Exhausted);
    assert_eq!(
        err.message,
        "gave up after 3 attempts: the server was silent for longer than the read timeout (200ms)"
    );
}

/// A cut stream on every attempt: `Exhausted`, and the message says why.
pub(crate) async fn check_cut_stream_exhausted(wire: &Wire) {
    let cut = || Reply::sse((wire.cut)());
    let server = FakeServer::start(vec![cut(), cut(), cut()]).await;
    let err = send(wire, config(server.url()))
        .await
        .expect_err("gives up");
    assert_eq!(err.kind, ProviderErrorKind::Exhausted);
    assert!(
        err.message
            .starts_with("gave up after 3 attempts: the stream ended before"),
        "{}",
        err.message
    );
}

/// A malformed event, then a good answer: success on the second request;
/// malformed every time: `Response`.
pub(crate) async fn check_malformed(wire: &Wire) {
    let server = FakeServer::start(vec![
        Reply::sse((wire.malformed)()),
        Reply::sse((wire.hello)()),
    ])
    .await;
    let response = send(wire, config(server.url())).await.expect("answer");
    assert_hello(&response);
    assert_eq!(server.requests().len(), 2);

    let bad = || Reply::sse((wire.malformed)());
    let server = FakeServer::start(vec![bad(), bad(), bad()]).await;
    let err = send(wire, config(server.url()))
        .await
        .expect_err("gives up");
    assert_eq!(err.kind, ProviderErrorKind::Response);
    assert!(err.message.contains("malformed"), "{}", err.message);
    assert_eq!(server.requests().len(), 3);
}

/// A transient error event inside the stream, then a good answer.
pub(crate) async fn check_stream_error_retried(wire: &Wire) {
    let server = FakeServer::start(vec![
        Reply::sse((wire.stream_error)("Overloaded")),
        Reply::sse((wire.hello)()),
    ])
    .await;
    let response = send(wire, config(server.url())).await.expect("answer");
    assert_hello(&response);
    assert_eq!(server.requests().len(), 2);
}

/// 401: `Auth` at once; 400: `Request` with the API's message, at once.
pub(crate) async fn check_refusals(wire: &Wire) {
    let server = FakeServer::start(vec![Reply::json(
        401,
        serde_json::json!({"error": {"message": "invalid x-api-key"}}),
    )])
    .await;
    let err = send(wire, config(server.url())).await.expect_err("refused");
    assert_eq!(err.kind, ProviderErrorKind::Auth);
    assert_eq!(err.message, "HTTP 401 Unauthorized: invalid x-api-key");
    assert_eq!(server.requests().len(), 1);

    let server = FakeServer::start(vec![Reply::json(
        400,
        serde_json::json!({"error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}),
    )])
    .await;
    let err = send(wire, config(server.url())).await.expect_err("refused");
    assert_eq!(err.kind, ProviderErrorKind::Request);
    assert!(
        err.message.contains("max_tokens: too large"),
        "{}",
        err.message
    );
    assert_eq!(server.requests().len(), 1);
}

/// No error message, in `Display` or `Debug`, ever holds the key, even
/// when the server echoes it or the base URL carries it.
pub(crate) async fn check_key_never_leaks(wire: &Wire) {
    let echo = serde_json::json!({"error": {"message": format!("Incorrect API key provided: {LEAK_KEY}")}});
    let mut errors = Vec::new();
    for status in [400, 401, 403, 500] {
        let server = FakeServer::start(vec![Reply::json(status, echo.clone()); 3]).await;
        errors.push(send(wire, config(server.url())).await.expect_err("fails"));
    }
    let server = FakeServer::start(vec![Reply::sse((wire.stream_error)(LEAK_KEY)); 3]).await;
    errors.push(send(wire, config(server.url())).await.expect_err("fails"));

    // A port nobody listens on, behind a base URL that holds the key.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let err = send(wire, config(&format!("http://{addr}/{LEAK_KEY}")))
        .await
        .expect_err("no server");
    assert_eq!(err.kind, ProviderErrorKind::Exhausted);
    errors.push(err);

    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(LEAK_KEY), "key leaked: {text}");
            assert!(
                !text.contains("LEAKCHECK"),
                "part of the key leaked: {text}"
            );
        }
    }
    assert!(
        errors.iter().any(|err| err.message.contains("[redacted]")),
        "the echoed key should show as redacted"
    );
}
