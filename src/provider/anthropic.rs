//! The `anthropic` provider: the Messages API, streamed.
//!
//! It owns the mapping between the neutral model and Anthropic's wire
//! format, which is close to it: blocks map one to one, and tool calls
//! carry their own ids. Retries and errors belong to the shared HTTP layer.

use std::collections::BTreeMap;

use eventsource_stream::Event;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use super::http::{Decoder, Failure, Flow, HttpClient, event_json, stream_error};
use super::{
    Block, ChatRequest, ChatResponse, HttpConfig, Provider, ProviderError, Role, StopReason,
    TextSink, Usage,
};

/// Where the Messages API lives unless config says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The API version wfe speaks; Anthropic keeps old versions stable.
const API_VERSION: &str = "2023-06-01";

/// Speaks Anthropic's Messages API over HTTP, streaming the answer.
#[derive(Debug)]
pub struct Anthropic {
    http: HttpClient,
}

impl Anthropic {
    /// A provider for `config`; its HTTP client is built here, once.
    pub fn new(config: HttpConfig) -> Anthropic {
        Anthropic {
            http: HttpClient::new(config),
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let key = self.http.required_key()?;
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-api-key"),
            self.http.secret_header(key)?,
        );
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(API_VERSION),
        );
        Ok(headers)
    }
}

impl Provider for Anthropic {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let headers = self.headers()?;
            let url = format!("{}/v1/messages", self.http.config().base_url);
            let body = request_body(request);
            self.http
                .stream(&url, headers, &body, stream, AnswerStream::default)
                .await
        })
    }
}

/// The request in Anthropic's words.
pub(super) fn request_body(request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|message| {
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let content: Vec<Value> = message.content.iter().filter_map(wire_block).collect();
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "stream": true,
    });
    if let Some(system) = &request.system {
        body["system"] = json!(system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.input_schema,
                })
            })
            .collect();
    }
    body
}

/// One block in Anthropic's words; empty text is dropped because the API refuses it.
fn wire_block(block: &Block) -> Option<Value> {
    Some(match block {
        Block::Text { text } if text.is_empty() => return None,
        Block::Text { text } => json!({"type": "text", "text": text}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut result = json!({
                "type": "tool_result",
                "tool_use_id": tool_use_id,
                "content": content,
            });
            if *is_error {
                result["is_error"] = json!(true);
            }
            result
        }
    })
}

/// A content block while it streams in.
#[derive(Debug)]
enum Partial {
    Text(String),
    Tool {
        id: String,
        name: String,
        /// The input as announced at the block's start, used when no deltas follow.
        start: Value,
        /// The input's JSON text, pieced together from `input_json_delta`s.
        json: String,
    },
    /// A kind of block wfe does not use (thinking, server tools).
    Skipped,
}

/// Reads one streamed Messages answer.
#[derive(Debug, Default)]
struct AnswerStream {
    blocks: BTreeMap<u64, Partial>,
    usage: Usage,
    stop: Option<String>,
    done: bool,
}

impl AnswerStream {
    fn read_usage(&mut self, usage: Option<&Value>) {
        let Some(usage) = usage else { return };
        let count = |field: &str| usage.get(field).and_then(Value::as_u64);
        // Cached prompt tokens are still read, and billed, so they count as input.
        let input = [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .iter()
        .filter_map(|field| count(field))
        // Counts come from the server: huge ones saturate, never overflow.
        .reduce(u64::saturating_add);
        if let Some(input) = input {
            self.usage.input_tokens = input;
        }
        if let Some(output) = count("output_tokens") {
            self.usage.output_tokens = output;
        }
    }

    fn block(&mut self, data: &Value) -> Result<&mut Partial, Failure> {
        let index = index_of(data)?;
        self.blocks
            .get_mut(&index)
            .ok_or_else(|| Failure::malformed(format!("a delta for block {index}, never started")))
    }
}

fn index_of(data: &Value) -> Result<u64, Failure> {
    data.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| Failure::malformed("a content block event without an index"))
}

fn text_field<'v>(value: &'v Value, field: &str) -> &'v str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

impl Decoder for AnswerStream {
    fn event(&mut self, event: &Event, sink: &dyn TextSink) -> Result<Flow, Failure> {
        if event.data.trim().is_empty() {
            return Ok(Flow::More);
        }
        let data = event_json(event)?;
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(&event.event);
        match kind {
            "message_start" => {
                self.read_usage(data.get("message").and_then(|message| message.get("usage")));
            }
            "content_block_start" => {
                let index = index_of(&data)?;
                let block = data.get("content_block").unwrap_or(&Value::Null);
                let partial = match text_field(block, "type") {
                    "text" => {
                        let text = text_field(block, "text");
                        if !text.is_empty() {
                            sink.text(text);
                        }
                        Partial::Text(text.to_string())
                    }
                    "tool_use" => Partial::Tool {
                        id: text_field(block, "id").to_string(),
                        name: text_field(block, "name").to_string(),
                        start: block.get("input").cloned().unwrap_or(Value::Null),
                        json: String::new(),
                    },
                    _ => Partial::Skipped,
                };
                self.blocks.insert(index, partial);
            }
            "content_block_delta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                match (self.block(&data)?, text_field(delta, "type")) {
                    (Partial::Text(text), "text_delta") => {
                        let piece = text_field(delta, "text");
                        if !piece.is_empty() {
                            sink.text(piece);
                            text.push_str(piece);
                        }
                    }
                    (Partial::Tool { json, .. }, "input_json_delta") => {
                        json.push_str(text_field(delta, "partial_json"));
                    }
                    // Citations, thinking and signatures carry nothing wfe keeps.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = data
                    .get("delta")
                    .and_then(|delta| delta.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    self.stop = Some(reason.to_string());
                }
                self.read_usage(data.get("usage"));
            }
            "message_stop" => {
                self.done = true;
                return Ok(Flow::Done);
            }
            "error" => return Err(stream_error(data.get("error").unwrap_or(&data))),
            // `ping`, `content_block_stop`, and event kinds added later.
            _ => {}
        }
        Ok(Flow::More)
    }

    fn finish(self) -> Result<ChatResponse, Failure> {
        if !self.done {
            return Err(Failure::cut("`message_stop`"));
        }
        // An answer cut off by `max_tokens` may end inside a tool call's
        // input: that call is dropped (its JSON is incomplete, not
        // malformed), and the stop reason tells the agent loop why.
        let cut_off = self.stop.as_deref() == Some("max_tokens");
        let mut content = Vec::new();
        for partial in self.blocks.into_values() {
            match partial {
                Partial::Text(text) if text.is_empty() => {}
                Partial::Text(text) => content.push(Block::Text { text }),
                Partial::Tool {
                    id,
                    name,
                    start,
                    json,
                } => {
                    let input = if json.trim().is_empty() {
                        match start {
                            Value::Object(_) => start,
                            _ => Value::Object(Map::new()),
                        }
                    } else {
                        match serde_json::from_str(&json) {
                            Ok(input) => input,
                            Err(_) if cut_off => continue,
                            Err(err) => {
                                return Err(Failure::malformed(format!(
                                    "malformed input of tool call `{id}`: {err}"
                                )));
                            }
                        }
                    };
                    content.push(Block::ToolUse { id, name, input });
                }
                Partial::Skipped => {}
            }
        }
        let stop = match self.stop.as_deref() {
            Some("end_turn") => StopReason::EndTurn,
            Some("tool_use") => StopReason::ToolUse,
            Some("max_tokens") => StopReason::MaxTokens,
            Some(other) => StopReason::Other(other.to_string()),
            None => StopReason::Other("unknown".to_string()),
        };
        Ok(ChatResponse {
            content,
            stop,
            usage: self.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::testing::{self, Collect, FakeServer, LEAK_KEY, Reply, Wire, sse};
    use crate::provider::{Message, ToolSpec, install_crypto};

    fn event(data: Value) -> String {
        let name = data["type"].as_str().unwrap_or("message").to_string();
        sse(Some(&name), &data)
    }

    fn message_start() -> String {
        event(json!({
            "type": "message_start",
            "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                        "model": "claude-test", "stop_reason": null,
                        "usage": {"input_tokens": 25, "output_tokens": 1}}
        }))
    }

    fn text_start(index: u64) -> String {
        event(json!({"type": "content_block_start", "index": index,
                     "content_block": {"type": "text", "text": ""}}))
    }

    fn text_delta(index: u64, text: &str) -> String {
        event(json!({"type": "content_block_delta", "index": index,
                     "delta": {"type": "text_delta", "text": text}}))
    }

    fn json_delta(index: u64, json: &str) -> String {
        event(json!({"type": "content_block_delta", "index": index,
                     "delta": {"type": "input_json_delta", "partial_json": json}}))
    }

    fn block_stop(index: u64) -> String {
        event(json!({"type": "content_block_stop", "index": index}))
    }

    fn message_end(stop: &str, output_tokens: u64) -> Vec<String> {
        vec![
            event(json!({"type": "message_delta",
                         "delta": {"stop_reason": stop, "stop_sequence": null},
                         "usage": {"output_tokens": output_tokens}})),
            event(json!({"type": "message_stop"})),
        ]
    }

    fn hello() -> Vec<String> {
        let mut chunks = vec![
            message_start(),
            text_start(0),
            text_delta(0, "hel"),
            text_delta(0, "lo"),
            block_stop(0),
        ];
        chunks.extend(message_end("end_turn", 2));
        chunks
    }

    fn cut() -> Vec<String> {
        vec![message_start(), text_start(0), text_delta(0, "hel")]
    }

    fn malformed() -> Vec<String> {
        vec![
            message_start(),
            "event: content_block_start\ndata: {\"type\": \"content_block_start\", \"index\": 0,\n\n"
                .to_string(),
        ]
    }

    fn overloaded(message: &str) -> Vec<String> {
        vec![
            message_start(),
            event(json!({"type": "error",
                         "error": {"type": "overloaded_error", "message": message}})),
        ]
    }

    const WIRE: Wire = Wire {
        make: |config| Box::new(Anthropic::new(config)),
        hello,
        cut,
        malformed,
        stream_error: overloaded,
    };

    fn read_file_tool() -> ToolSpec {
        ToolSpec {
            name: "read_file".into(),
            description: "Reads a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}},
                                 "required": ["path"]}),
        }
    }

    #[tokio::test]
    async fn two_turns_with_a_tool_call() {
        install_crypto();
        let mut turn1 = vec![
            message_start(),
            text_start(0),
            event(json!({"type": "ping"})),
            text_delta(0, "Let me "),
            text_delta(0, "look."),
            block_stop(0),
            event(json!({"type": "content_block_start", "index": 1,
                         "content_block": {"type": "tool_use", "id": "toolu_01",
                                           "name": "read_file", "input": {}}})),
            json_delta(1, ""),
            json_delta(1, "{\"path\": \"READ"),
            json_delta(1, "ME.md\"}"),
            block_stop(1),
            event(json!({"type": "content_block_start", "index": 2,
                         "content_block": {"type": "tool_use", "id": "toolu_02",
                                           "name": "list_dir", "input": {}}})),
            block_stop(2),
        ];
        turn1.extend(message_end("tool_use", 40));
        let server = FakeServer::start(vec![Reply::sse(turn1), Reply::sse(hello())]).await;
        let provider = Anthropic::new(testing::config(server.url()));
        assert_eq!(provider.kind(), "anthropic");

        let mut request = ChatRequest {
            model: "claude-test".into(),
            system: Some("You are careful.".into()),
            messages: vec![Message::user("Read the README")],
            tools: vec![read_file_tool()],
            max_tokens: 1000,
        };
        let sink = Collect::default();
        let response = provider.send(&request, &sink).await.expect("turn 1");
        assert_eq!(sink.pieces(), ["Let me ", "look."]);
        assert_eq!(
            response,
            ChatResponse {
                content: vec![
                    Block::Text {
                        text: "Let me look.".into()
                    },
                    Block::ToolUse {
                        id: "toolu_01".into(),
                        name: "read_file".into(),
                        input: json!({"path": "README.md"}),
                    },
                    Block::ToolUse {
                        id: "toolu_02".into(),
                        name: "list_dir".into(),
                        input: json!({}),
                    },
                ],
                stop: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 25,
                    output_tokens: 40
                },
            }
        );

        request.messages.push(Message {
            role: Role::Assistant,
            content: response.content,
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![
                Block::ToolResult {
                    tool_use_id: "toolu_01".into(),
                    content: "# wfe".into(),
                    is_error: false,
                },
                Block::ToolResult {
                    tool_use_id: "toolu_02".into(),
                    content: "no such tool".into(),
                    is_error: true,
                },
            ],
        });
        let response = provider
            .send(&request, &Collect::default())
            .await
            .expect("turn 2");
        assert_eq!(
            response.content,
            vec![Block::Text {
                text: "hello".into()
            }]
        );
        assert_eq!(response.stop, StopReason::EndTurn);

        let seen = server.requests();
        assert_eq!(seen.len(), 2);
        let second = &seen[1];
        assert_eq!(second.method, "POST");
        assert_eq!(second.path, "/v1/messages");
        assert_eq!(second.query, None);
        assert_eq!(second.header("x-api-key"), Some(LEAK_KEY));
        assert_eq!(second.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(second.header("content-type"), Some("application/json"));
        assert_eq!(
            second.body,
            json!({
                "model": "claude-test",
                "max_tokens": 1000,
                "stream": true,
                "system": "You are careful.",
                "tools": [{
                    "name": "read_file",
                    "description": "Reads a file",
                    "input_schema": {"type": "object",
                                     "properties": {"path": {"type": "string"}},
                                     "required": ["path"]},
                }],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Read the README"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_01", "name": "read_file",
                         "input": {"path": "README.md"}},
                        {"type": "tool_use", "id": "toolu_02", "name": "list_dir", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "# wfe"},
                        {"type": "tool_result", "tool_use_id": "toolu_02",
                         "content": "no such tool", "is_error": true},
                    ]},
                ],
            })
        );
    }

    #[tokio::test]
    async fn a_tool_call_cut_off_by_max_tokens_is_dropped_not_malformed() {
        install_crypto();
        let mut chunks = vec![
            message_start(),
            text_start(0),
            text_delta(0, "Writing."),
            block_stop(0),
            event(json!({"type": "content_block_start", "index": 1,
                         "content_block": {"type": "tool_use", "id": "toolu_01",
                                           "name": "write_file", "input": {}}})),
            json_delta(1, "{\"path\": \"a.txt\", \"content\": \"aaaa"),
        ];
        chunks.extend(message_end("max_tokens", 1000));
        let server = FakeServer::start(vec![Reply::sse(chunks)]).await;
        let provider = Anthropic::new(testing::config(server.url()));
        let request = ChatRequest {
            model: "claude-test".into(),
            system: None,
            messages: vec![Message::user("Write")],
            tools: vec![read_file_tool()],
            max_tokens: 1000,
        };
        let response = provider
            .send(&request, &Collect::default())
            .await
            .expect("a cut-off answer is an answer");
        assert_eq!(response.stop, StopReason::MaxTokens);
        assert_eq!(
            response.content,
            vec![Block::Text {
                text: "Writing.".into()
            }]
        );
        assert_eq!(server.requests().len(), 1, "not sent again");
    }

    #[tokio::test]
    async fn a_missing_key_is_refused_before_sending() {
        install_crypto();
        let server = FakeServer::start(Vec::new()).await;
        let mut config = testing::config(server.url());
        config.key = None;
        let err = Anthropic::new(config)
            .send(
                &ChatRequest {
                    model: "m".into(),
                    system: None,
                    messages: vec![Message::user("hi")],
                    tools: Vec::new(),
                    max_tokens: 10,
                },
                &Collect::default(),
            )
            .await
            .expect_err("no key");
        assert_eq!(err.kind, crate::provider::ProviderErrorKind::Auth);
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn retries_429_honouring_retry_after() {
        install_crypto();
        testing::check_retry_after(&WIRE).await;
    }

    #[tokio::test]
    async fn a_long_retry_after_gives_up_at_once() {
        testing::check_long_retry_after_gives_up_at_once(&WIRE).await;
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_of_500() {
        install_crypto();
        testing::check_exhausted(&WIRE).await;
    }

    #[tokio::test]
    async fn resends_after_a_cut_stream() {
        install_crypto();
        testing::check_cut_stream(&WIRE).await;
        testing::check_cut_stream_exhausted(&WIRE).await;
    }

    #[tokio::test]
    async fn resends_after_a_stalled_stream() {
        install_crypto();
        testing::check_stalled_stream(&WIRE).await;
    }

    #[tokio::test]
    async fn resends_after_a_malformed_event() {
        install_crypto();
        testing::check_malformed(&WIRE).await;
    }

    #[tokio::test]
    async fn resends_after_an_overloaded_error_event() {
        install_crypto();
        testing::check_stream_error_retried(&WIRE).await;
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        install_crypto();
        testing::check_refusals(&WIRE).await;
    }

    #[tokio::test]
    async fn errors_never_hold_the_key() {
        install_crypto();
        testing::check_key_never_leaks(&WIRE).await;
    }
}
