//! A scripted fake model server on 127.0.0.1, for every test and bench
//! that talks HTTP to a model: the providers' wire tests, the end-to-end
//! agent tests and the agent benchmark.
//!
//! It answers each request with the next reply of its script, in order,
//! and records what it was sent. A reply is raw (status, headers, body
//! chunks, and how the body ends: cleanly, cut, or stalled) or an
//! Anthropic Messages stream rendered from [`Part`]s when it is sent, so
//! message and tool-call ids count the answers. A reply can be held until
//! the test releases it, so a test can kill a runner while it waits for a
//! model, deterministically. A request beyond the script gets a 418, so a
//! test counting requests fails loudly instead of hanging.
//!
//! The server runs on its own thread with its own runtime, so blocking
//! tests, async tests and benches use it alike; it stops when dropped.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
/// The bytes of a body, as the server holds them (cheap to clone).
pub use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// One piece of a scripted Anthropic answer.
#[derive(Debug, Clone)]
pub enum Part {
    /// Text, streamed in two deltas.
    Text(String),
    /// A tool call with its input, streamed in two deltas.
    Tool(&'static str, Value),
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Content,
    ending: Ending,
    held: bool,
}

/// What a reply's body holds.
#[derive(Debug, Clone)]
enum Content {
    /// These chunks, in order.
    Chunks(Vec<Bytes>),
    /// An Anthropic stream of these parts, rendered when sent; `cut` stops
    /// after the first block, without `message_stop`; `limit` ends it as
    /// `max_tokens` does, inside its last tool call's input.
    Anthropic {
        parts: Vec<Part>,
        cut: bool,
        limit: bool,
    },
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
    pub fn sse(chunks: Vec<String>) -> Reply {
        Reply::sse_body(chunks.into_iter().map(Bytes::from).collect())
    }

    /// A 200 SSE answer of pre-rendered chunks (cheap to clone and resend).
    pub fn sse_body(chunks: Vec<Bytes>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: Content::Chunks(chunks),
            ending: Ending::Close,
            held: false,
        }
    }

    /// A JSON answer with `status`.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Content::Chunks(vec![Bytes::from(body.to_string())]),
            ending: Ending::Close,
            held: false,
        }
    }

    /// An answer with `status`, `content_type` and exactly `body` (which
    /// need not be valid anything: hostile answers are what it is for).
    pub fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: Content::Chunks(vec![Bytes::from(body)]),
            ending: Ending::Close,
            held: false,
        }
    }

    /// A streamed Anthropic message of `parts`.
    pub fn anthropic(parts: Vec<Part>) -> Reply {
        Reply {
            body: Content::Anthropic {
                parts,
                cut: false,
                limit: false,
            },
            ..Reply::sse_body(Vec::new())
        }
    }

    /// An Anthropic message cut off by the output limit: `stop_reason:
    /// max_tokens`, and a last tool call (if any) whose input JSON stops
    /// halfway.
    pub fn anthropic_max_tokens(parts: Vec<Part>) -> Reply {
        Reply {
            body: Content::Anthropic {
                parts,
                cut: false,
                limit: true,
            },
            ..Reply::sse_body(Vec::new())
        }
    }

    /// An Anthropic message whose stream ends after its first block.
    pub fn anthropic_cut(parts: Vec<Part>) -> Reply {
        Reply {
            body: Content::Anthropic {
                parts,
                cut: true,
                limit: false,
            },
            ..Reply::sse_body(Vec::new())
        }
    }

    /// An HTTP error `status` with an Anthropic error body.
    pub fn anthropic_error(status: u16) -> Reply {
        Reply::json(
            status,
            json!({"type": "error", "error": {"type": "api_error", "message": format!("scripted {status}")}}),
        )
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Drops the connection after the chunks instead of ending the body.
    pub fn aborted(mut self) -> Reply {
        self.ending = Ending::Abort;
        self
    }

    /// Goes silent after the chunks, leaving the connection open.
    pub fn stalled(mut self) -> Reply {
        self.ending = Ending::Stall;
        self
    }

    /// Waits until [`FakeServer::release`] before answering.
    pub fn held(mut self) -> Reply {
        self.held = true;
        self
    }
}

/// Formats one SSE event; `name` becomes its `event:` line.
pub fn sse(name: Option<&str>, data: &Value) -> String {
    match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Headers by lower-case name (the last value when repeated).
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: Value,
}

impl Seen {
    /// A header's value, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// A request as recorded: the body stays raw until a test asks, so a
/// benchmark's server does not parse what it is sent.
struct Raw {
    method: String,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Bytes,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    seen: Vec<Raw>,
    /// Answers sent (ids of Anthropic messages count these).
    answered: usize,
}

struct Shared {
    script: Mutex<Script>,
    /// Signalled on every request, for [`FakeServer::wait_for_request`].
    arrived: Condvar,
    release: tokio::sync::Notify,
}

/// A fake API server on an ephemeral port, shut down when dropped.
pub struct FakeServer {
    url: String,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeServer {
    /// Starts a server answering with `replies`, in order; blocks until it listens.
    pub fn spawn(replies: Vec<Reply>) -> FakeServer {
        let (server, addr) = FakeServer::launch(replies);
        let addr = addr.blocking_recv().expect("the fake server's address");
        server.at(addr)
    }

    /// [`FakeServer::spawn`] for async callers.
    pub async fn start(replies: Vec<Reply>) -> FakeServer {
        let (server, addr) = FakeServer::launch(replies);
        let addr = addr.await.expect("the fake server's address");
        server.at(addr)
    }

    fn launch(replies: Vec<Reply>) -> (FakeServer, tokio::sync::oneshot::Receiver<SocketAddr>) {
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                replies: replies.into(),
                ..Script::default()
            }),
            arrived: Condvar::new(),
            release: tokio::sync::Notify::new(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let state = Arc::clone(&shared);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the fake server's runtime");
            runtime.block_on(async move {
                let app = axum::Router::new().fallback(answer).with_state(state);
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .expect("bind the fake server");
                let _ = addr_tx.send(listener.local_addr().expect("fake server address"));
                // Not a graceful shutdown: a stalled or held answer would
                // keep it waiting forever. Dropping the runtime ends them.
                tokio::select! {
                    served = axum::serve(listener, app) => served.expect("fake server"),
                    _ = stopped => {}
                }
            });
        });
        let server = FakeServer {
            url: String::new(),
            shared,
            _stop: stop,
        };
        (server, addr_rx)
    }

    fn at(mut self, addr: SocketAddr) -> FakeServer {
        self.url = format!("http://{addr}");
        self
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Appends replies to the script.
    pub fn push(&self, replies: Vec<Reply>) {
        lock(&self.shared.script).replies.extend(replies);
    }

    /// Replaces the script with `replies` and forgets every request so far.
    pub fn load(&self, replies: Vec<Reply>) {
        let mut script = lock(&self.shared.script);
        script.replies = replies.into();
        script.seen.clear();
        script.answered = 0;
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.script).seen.len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.script)
            .seen
            .iter()
            .map(|raw| Seen {
                method: raw.method.clone(),
                path: raw.path.clone(),
                query: raw.query.clone(),
                headers: raw.headers.clone(),
                body: serde_json::from_slice(&raw.body).unwrap_or(Value::Null),
            })
            .collect()
    }

    /// The bodies of every request so far, as sent.
    pub fn bodies(&self) -> Vec<Bytes> {
        lock(&self.shared.script)
            .seen
            .iter()
            .map(|raw| raw.body.clone())
            .collect()
    }

    /// Blocks until the server has received its `n`th request (from 1).
    pub fn wait_for_request(&self, n: usize) {
        let script = lock(&self.shared.script);
        let (_script, timeout) = self
            .shared
            .arrived
            .wait_timeout_while(script, Duration::from_secs(60), |s| s.seen.len() < n)
            .unwrap_or_else(PoisonError::into_inner);
        assert!(
            !timeout.timed_out(),
            "the fake server got no request {n} in 60s"
        );
    }

    /// Lets every held reply go.
    pub fn release(&self) {
        self.shared.release.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut script = lock(&shared.script);
        script.seen.push(Raw {
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
            body,
        });
        shared.arrived.notify_all();
        script.replies.pop_front()
    };
    let Some(reply) = reply else {
        return Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body(Body::from("no scripted reply left"))
            .expect("teapot response");
    };
    if reply.held {
        shared.release.notified().await;
    }
    let id = {
        let mut script = lock(&shared.script);
        script.answered += 1;
        script.answered
    };
    let chunks = match reply.body {
        Content::Chunks(chunks) => chunks,
        Content::Anthropic { parts, cut, limit } => {
            let stream = if limit {
                anthropic_limited_stream(id, &parts)
            } else {
                anthropic_stream(id, &parts, cut)
            };
            vec![Bytes::from(stream)]
        }
    };
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    let body = match (reply.ending, <[Bytes; 1]>::try_from(chunks)) {
        // One whole chunk: a plain body with its length, as the bench's
        // baseline and most servers send it.
        (Ending::Close, Ok([whole])) => Body::from(whole),
        (ending, chunks) => {
            let chunks = chunks.map_or_else(|chunks| chunks, |one| one.to_vec());
            let chunks =
                futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
            let tail = match ending {
                Ending::Close => futures_util::stream::empty().boxed(),
                Ending::Abort => futures_util::stream::once(async {
                    // Pending once first: hyper flushes what it holds before
                    // it polls again, so the chunks reach the client before
                    // the cut.
                    tokio::task::yield_now().await;
                    Err(std::io::Error::other("scripted abort"))
                })
                .boxed(),
                Ending::Stall => futures_util::stream::pending().boxed(),
            };
            Body::from_stream(chunks.chain(tail))
        }
    };
    response.body(body).expect("scripted response")
}

/// The SSE events of Anthropic message number `id` (from 1) made of
/// `parts`: `message_start`, `content_block_*` (text and JSON in two deltas
/// each), `message_delta`, `message_stop`; `cut` stops after the first block.
pub fn anthropic_stream(id: usize, parts: &[Part], cut: bool) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| out.push_str(&sse(Some(name), &data));
    event(
        "message_start",
        json!({"type": "message_start", "message": {"id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": "fake", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 100, "output_tokens": 1}}}),
    );
    let mut tools = false;
    for (index, part) in parts.iter().enumerate() {
        match part {
            Part::Text(text) => {
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                );
                for piece in halves(text) {
                    event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
                    );
                }
            }
            Part::Tool(name, input) => {
                tools = true;
                event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": format!("toolu_{id}_{index}"), "name": name, "input": {}}}),
                );
                for piece in halves(&input.to_string()) {
                    event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    );
                }
            }
        }
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
        if cut {
            return out;
        }
    }
    let stop = if tools { "tool_use" } else { "end_turn" };
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}

/// [`anthropic_stream`] of `parts` ended by the output limit: the last
/// tool call's input stops after its first half, and the stop reason is
/// `max_tokens`.
pub fn anthropic_limited_stream(id: usize, parts: &[Part]) -> String {
    let whole = anthropic_stream(id, parts, false);
    let mut events: Vec<&str> = whole.split_inclusive("\n\n").collect();
    // Drop `message_delta` and `message_stop`; they are said again below.
    events.truncate(events.len().saturating_sub(2));
    if let Some(Part::Tool(..)) = parts.last() {
        // The last block's second input delta and its stop.
        events.truncate(events.len().saturating_sub(2));
    }
    let mut out = events.concat();
    out.push_str(&sse(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": 4096}}),
    ));
    out.push_str(&sse(Some("message_stop"), &json!({"type": "message_stop"})));
    out
}

/// `text` split at its middle character, so a stream parser must join pieces.
fn halves(text: &str) -> [&str; 2] {
    let middle = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    [&text[..middle], &text[middle..]]
}
