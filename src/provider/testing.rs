//! Test helpers for the HTTP providers: a scripted fake server on
//! 127.0.0.1 that records what it was sent, SSE formatting, and the retry
//! and error checks every provider must pass.
//!
//! The server answers each request with the next scripted reply, in
//! order; a request beyond the script gets a 418 so that a test counting
//! requests fails loudly instead of hanging.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;

use super::{
    ChatRequest, HttpConfig, Message, Provider, ProviderError, ProviderErrorKind, RetrySettings,
    Secret, TextSink,
};

/// The key every test uses, so a leak of it is easy to spot.
pub(crate) const LEAK_KEY: &str = "sk-test-LEAKCHECK-0123456789";

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Vec<String>,
    ending: Ending,
}

/// How a scripted body ends after its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Cleanly, as a whole body does.
    Close,
    /// With an error: the server drops the connection mid-body.
    Abort,
    /// Never: the server goes silent with the connection open.
    Stall,
}

impl Reply {
    /// A 200 SSE answer whose body is `chunks`, in order.
    pub(crate) fn sse(chunks: Vec<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks,
            ending: Ending::Close,
        }
    }

    /// A JSON answer with `status`.
    pub(crate) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![body.to_string()],
            ending: Ending::Close,
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Drops the connection after the chunks instead of ending the body.
    pub(crate) fn aborted(mut self) -> Reply {
        self.ending = Ending::Abort;
        self
    }

    /// Goes silent after the chunks, leaving the connection open.
    pub(crate) fn stalled(mut self) -> Reply {
        self.ending = Ending::Stall;
        self
    }
}

/// Formats one SSE event; `name` becomes its `event:` line.
pub(crate) fn sse(name: Option<&str>, data: &Value) -> String {
    match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// `POST`, …
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The query string, if any.
    pub(crate) query: Option<String>,
    /// Headers by lower-case name (the last value when repeated).
    pub(crate) headers: BTreeMap<String, String>,
    /// The body as JSON (`Null` when it was not JSON).
    pub(crate) body: Value,
}

impl Seen {
    /// A header's value, if sent.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    seen: Vec<Seen>,
}

/// A fake API server on an ephemeral port, shut down when dropped.
pub(crate) struct FakeServer {
    url: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Starts a server that answers with `replies`, in order.
    pub(crate) async fn start(replies: Vec<Reply>) -> FakeServer {
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            seen: Vec::new(),
        }));
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the fake server");
        let addr = listener.local_addr().expect("fake server address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server");
        });
        FakeServer {
            url: format!("http://{addr}"),
            script,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Every request received so far, in order.
    pub(crate) fn requests(&self) -> Vec<Seen> {
        self.script.lock().expect("script lock").seen.clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut script = script.lock().expect("script lock");
        script.seen.push(Seen {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        script.replies.pop_front()
    };
    let Some(reply) = reply else {
        return Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body(Body::from("no scripted reply left"))
            .expect("teapot response");
    };
    let chunks = futures_util::stream::iter(
        reply
            .chunks
            .into_iter()
            .map(|chunk| Ok::<_, std::io::Error>(Bytes::from(chunk))),
    );
    let tail = match reply.ending {
        Ending::Close => futures_util::stream::empty().boxed(),
        Ending::Abort => futures_util::stream::once(async {
            // Pending once first: hyper flushes what it holds before it
            // polls again, so the chunks reach the client before the cut.
            tokio::task::yield_now().await;
            Err(std::io::Error::other("scripted abort"))
        })
        .boxed(),
        Ending::Stall => futures_util::stream::pending().boxed(),
    };
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from_stream(chunks.chain(tail)))
        .expect("scripted response")
}

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
        },
    }
}

/// A sink that keeps every piece of text it hears.
#[derive(Default)]
pub(crate) struct Collect(Mutex<Vec<String>>);

impl Collect {
    /// The pieces heard, in order.
    pub(crate) fn pieces(&self) -> Vec<String> {
        self.0.lock().expect("collect lock").clone()
    }
}

impl TextSink for Collect {
    fn text(&self, text: &str) {
        self.0.lock().expect("collect lock").push(text.to_string());
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
