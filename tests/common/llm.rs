//! A fake Anthropic Messages server for end-to-end tests of agent phases.
//!
//! It speaks the real wire format (`POST /v1/messages`, streamed
//! server-sent events: `message_start`, `content_block_*`,
//! `message_delta`, `message_stop`) from a script of replies, records
//! every request, and can hold a reply until the test releases it, so a
//! test can kill the runner while it waits for a model, deterministically.

use std::collections::VecDeque;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One piece of a scripted answer.
#[derive(Debug, Clone)]
pub enum Part {
    /// Text, streamed in a few deltas.
    Text(String),
    /// A tool call with its input.
    Tool(&'static str, Value),
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A streamed message of these parts.
    Message(Vec<Part>),
    /// An HTTP error with headers and an Anthropic error body.
    Status(u16, Vec<(&'static str, String)>),
    /// A message whose stream ends after its first block (no `message_stop`).
    Cut(Vec<Part>),
    /// Waits until [`Server::release`] before answering with the inner reply.
    Hold(Box<Reply>),
}

/// A request as the server got it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Its JSON body.
    pub body: Value,
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Request>>,
    seen: Mutex<std_mpsc::Sender<usize>>,
    release: tokio::sync::Notify,
    ids: Mutex<u32>,
}

/// A running fake server; it stops when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`, for `base_url`.
    pub url: String,
    shared: Arc<Shared>,
    seen: std_mpsc::Receiver<usize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    /// Starts a server answering with `script`, one reply per request in order.
    pub fn start(script: Vec<Reply>) -> Server {
        let (seen_tx, seen) = std_mpsc::channel();
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            requests: Mutex::new(Vec::new()),
            seen: Mutex::new(seen_tx),
            release: tokio::sync::Notify::new(),
            ids: Mutex::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std_mpsc::channel();
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .route("/v1/messages", axum::routing::post(messages))
                    .with_state(state);
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Server {
            url: format!("http://{addr}"),
            shared,
            seen,
            _stop: stop,
        }
    }

    /// Appends replies to the script.
    pub fn push(&self, replies: Vec<Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Blocks until the server has received its `n`th request (from 1).
    pub fn wait_for_request(&self, n: usize) {
        while self.requests().len() < n {
            let got = self
                .seen
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("the fake LLM server got no request in 60s");
            if got >= n {
                break;
            }
        }
    }

    /// Lets every held reply go.
    pub fn release(&self) {
        self.shared.release.notify_waiters();
    }
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let n = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(Request { headers, body });
        requests.len()
    };
    let _ = shared.seen.lock().unwrap().send(n);
    let reply = shared.script.lock().unwrap().pop_front();
    let mut reply = reply.unwrap_or(Reply::Status(500, Vec::new()));
    while let Reply::Hold(inner) = reply {
        shared.release.notified().await;
        reply = *inner;
    }
    let id = {
        let mut ids = shared.ids.lock().unwrap();
        *ids += 1;
        *ids
    };
    match reply {
        Reply::Message(parts) => sse(stream(id, &parts, false)),
        Reply::Cut(parts) => sse(stream(id, &parts, true)),
        Reply::Status(code, extra) => {
            let mut response = (
                StatusCode::from_u16(code).unwrap(),
                json!({"type": "error", "error": {"type": "api_error", "message": format!("scripted {code}")}})
                    .to_string(),
            )
                .into_response();
            for (name, value) in extra {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::Hold(_) => unreachable!(),
    }
}

fn sse(text: String) -> Response {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(text))
        .unwrap()
}

fn event(out: &mut String, name: &str, data: Value) {
    out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
}

/// The events of one message; `cut` stops after the first block.
fn stream(id: u32, parts: &[Part], cut: bool) -> String {
    let mut out = String::new();
    event(
        &mut out,
        "message_start",
        json!({"type": "message_start", "message": {"id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": "fake", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 100, "output_tokens": 1}}}),
    );
    let mut tools = false;
    for (index, part) in parts.iter().enumerate() {
        match part {
            Part::Text(text) => {
                event(
                    &mut out,
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                );
                let middle = text
                    .char_indices()
                    .nth(text.chars().count() / 2)
                    .map_or(0, |(i, _)| i);
                for piece in [&text[..middle], &text[middle..]] {
                    event(
                        &mut out,
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
                    );
                }
            }
            Part::Tool(name, input) => {
                tools = true;
                let tool_id = format!("toolu_{id}_{index}");
                event(
                    &mut out,
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
                );
                let json = input.to_string();
                let middle = json
                    .char_indices()
                    .nth(json.chars().count() / 2)
                    .map_or(0, |(i, _)| i);
                for piece in [&json[..middle], &json[middle..]] {
                    event(
                        &mut out,
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    );
                }
            }
        }
        event(
            &mut out,
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
        if cut {
            return out;
        }
    }
    let stop = if tools { "tool_use" } else { "end_turn" };
    event(
        &mut out,
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 20}}),
    );
    event(&mut out, "message_stop", json!({"type": "message_stop"}));
    out
}
