//! The `openai` and `openai-compatible` providers: Chat Completions, streamed.
//!
//! It owns the mapping between the neutral model and Chat Completions,
//! where tool results are messages of their own (`role: tool`) rather
//! than blocks of a user message, and tool inputs travel as JSON text.
//! Compatible servers (Ollama, llama.cpp, vLLM) differ only in needing no
//! key and in the older `max_tokens` field. Retries and errors belong to
//! the shared HTTP layer.

use std::collections::BTreeMap;

use eventsource_stream::Event;
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Map, Value, json};

use super::http::{Decoder, Failure, Flow, HttpClient, event_json, stream_error, tool_uses_in};
use super::{
    Block, ChatRequest, ChatResponse, HttpConfig, Provider, ProviderError, Role, StopReason,
    TextSink, Usage,
};

/// Where OpenAI's API lives unless config says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Speaks Chat Completions over HTTP, to OpenAI or to a compatible server.
#[derive(Debug)]
pub struct OpenAi {
    http: HttpClient,
    compatible: bool,
}

impl OpenAi {
    /// A provider for OpenAI itself; a key is required.
    pub fn new(config: HttpConfig) -> OpenAi {
        OpenAi {
            http: HttpClient::new(config),
            compatible: false,
        }
    }

    /// A provider for an OpenAI-compatible server: the key is sent only
    /// when configured, and the answer's length is capped with `max_tokens`.
    pub fn compatible(config: HttpConfig) -> OpenAi {
        OpenAi {
            http: HttpClient::new(config),
            compatible: true,
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let key = if self.compatible {
            self.http
                .config()
                .key
                .as_ref()
                .map(|key| key.expose())
                .filter(|key| !key.is_empty())
        } else {
            Some(self.http.required_key()?)
        };
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            headers.insert(
                AUTHORIZATION,
                self.http.secret_header(&format!("Bearer {key}"))?,
            );
        }
        Ok(headers)
    }

    /// The request in Chat Completions' words.
    pub(super) fn request_body(&self, request: &ChatRequest) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in &request.messages {
            match message.role {
                Role::User => user_messages(&message.content, &mut messages),
                Role::Assistant => messages.push(assistant_message(&message.content)),
            }
        }
        // OpenAI deprecated `max_tokens` for `max_completion_tokens`, which
        // many compatible servers do not know yet.
        let limit = if self.compatible {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        body[limit] = json!(request.max_tokens);
        // An empty `tools` array is refused; no tools means no field.
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|tool| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": tool.name,
                            "description": tool.description,
                            "parameters": tool.input_schema,
                        },
                    })
                })
                .collect();
        }
        body
    }
}

/// A user message: each tool result becomes its own `tool` message, in
/// order, and the text follows them, since a `tool` message must come
/// right after the assistant message that called it.
fn user_messages(content: &[Block], messages: &mut Vec<Value>) {
    let mut texts = Vec::new();
    for block in content {
        match block {
            Block::Text { text } => texts.push(text.as_str()),
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                // Chat Completions has no error flag; the model reads it in the text.
                let content = if *is_error {
                    format!("error: {content}")
                } else {
                    content.clone()
                };
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": tool_use_id,
                    "content": content,
                }));
            }
            // A user never calls tools; nothing to send.
            Block::ToolUse { .. } => {}
        }
    }
    if !texts.is_empty() {
        messages.push(json!({"role": "user", "content": texts.join("\n\n")}));
    }
}

/// An assistant message: its text (or `null`) and its tool calls.
fn assistant_message(content: &[Block]) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content {
        match block {
            Block::Text { text: piece } => text.push_str(piece),
            Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            Block::ToolResult { .. } => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

impl Provider for OpenAi {
    fn kind(&self) -> &'static str {
        if self.compatible {
            "openai-compatible"
        } else {
            "openai"
        }
    }

    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let headers = self.headers()?;
            let url = format!("{}/chat/completions", self.http.config().base_url);
            let body = self.request_body(request);
            let earlier_calls = tool_uses_in(request);
            self.http
                .stream(&url, headers, &body, stream, || {
                    AnswerStream::new(earlier_calls)
                })
                .await
        })
    }
}

/// A tool call while it streams in.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Reads one streamed Chat Completions answer.
#[derive(Debug)]
struct AnswerStream {
    text: String,
    /// By the index the server gives each call.
    calls: BTreeMap<u64, PartialCall>,
    finish: Option<String>,
    usage: Usage,
    done: bool,
    /// Tool calls earlier in the conversation, for numbering calls a server left without id.
    earlier_calls: usize,
}

impl AnswerStream {
    fn new(earlier_calls: usize) -> AnswerStream {
        AnswerStream {
            text: String::new(),
            calls: BTreeMap::new(),
            finish: None,
            usage: Usage::default(),
            done: false,
            earlier_calls,
        }
    }

    fn read_delta(&mut self, delta: &Value, sink: &dyn TextSink) {
        if let Some(piece) = delta.get("content").and_then(Value::as_str)
            && !piece.is_empty()
        {
            sink.text(piece);
            self.text.push_str(piece);
        }
        let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) else {
            return;
        };
        for (position, call) in calls.iter().enumerate() {
            // Some compatible servers send whole calls without an index.
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let partial = self.calls.entry(index).or_default();
            if let Some(id) = call.get("id").and_then(Value::as_str)
                && partial.id.is_empty()
            {
                partial.id = id.to_string();
            }
            let function = call.get("function").unwrap_or(&Value::Null);
            if let Some(name) = function.get("name").and_then(Value::as_str)
                && partial.name.is_empty()
            {
                partial.name = name.to_string();
            }
            if let Some(arguments) = function.get("arguments").and_then(Value::as_str) {
                partial.arguments.push_str(arguments);
            }
        }
    }
}

impl Decoder for AnswerStream {
    fn event(&mut self, event: &Event, sink: &dyn TextSink) -> Result<Flow, Failure> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Flow::Done);
        }
        if data.is_empty() {
            return Ok(Flow::More);
        }
        let chunk = event_json(event)?;
        if let Some(error) = chunk.get("error") {
            return Err(stream_error(error));
        }
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            // wfe asks for one choice; others would be alternatives, not parts.
            let first = choices
                .iter()
                .find(|choice| choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
            if let Some(choice) = first {
                if let Some(delta) = choice.get("delta") {
                    self.read_delta(delta, sink);
                }
                if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                    self.finish = Some(reason.to_string());
                }
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|usage| usage.is_object()) {
            let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Usage {
                input_tokens: count("prompt_tokens"),
                output_tokens: count("completion_tokens"),
            };
        }
        Ok(Flow::More)
    }

    fn finish(self) -> Result<ChatResponse, Failure> {
        if !self.done {
            return Err(Failure::cut("`[DONE]`"));
        }
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(Block::Text { text: self.text });
        }
        // An answer cut off by the output limit may end inside a call's
        // arguments: that call is dropped (incomplete, not malformed), and
        // the stop reason tells the agent loop why.
        let cut_off = self.finish.as_deref() == Some("length");
        let mut generated = self.earlier_calls;
        for call in self.calls.into_values() {
            let id = if call.id.is_empty() {
                generated += 1;
                format!("call_{generated}")
            } else {
                call.id
            };
            // Models do write broken JSON now and then. Sending the request
            // again would not mend that; handing the text on lets the agent
            // loop tell the model its input was not an object.
            let input = if call.arguments.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                match serde_json::from_str(&call.arguments) {
                    Ok(input) => input,
                    Err(_) if cut_off => continue,
                    Err(_) => Value::String(call.arguments),
                }
            };
            content.push(Block::ToolUse {
                id,
                name: call.name,
                input,
            });
        }
        let stop = match self.finish.as_deref() {
            Some("stop") => StopReason::EndTurn,
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
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
    use crate::provider::{Message, ProviderErrorKind, ToolSpec, install_crypto};

    fn chunk(delta: Value, finish: Option<&str>) -> String {
        sse(
            None,
            &json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-test",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                "usage": null,
            }),
        )
    }

    fn usage(prompt: u64, completion: u64) -> String {
        sse(
            None,
            &json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-test",
                "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion},
            }),
        )
    }

    const DONE: &str = "data: [DONE]\n\n";

    fn hello() -> Vec<String> {
        vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "hel"}), None),
            chunk(json!({"content": "lo"}), None),
            chunk(json!({}), Some("stop")),
            usage(5, 2),
            DONE.to_string(),
        ]
    }

    fn cut() -> Vec<String> {
        vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "hel"}), None),
        ]
    }

    fn malformed() -> Vec<String> {
        vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"hel\n\n".to_string(),
        ]
    }

    fn server_error(message: &str) -> Vec<String> {
        vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            sse(
                None,
                &json!({"error": {"message": message, "type": "server_error", "code": null}}),
            ),
        ]
    }

    const WIRE: Wire = Wire {
        make: |config| Box::new(OpenAi::new(config)),
        hello,
        cut,
        malformed,
        stream_error: server_error,
    };

    const COMPATIBLE: Wire = Wire {
        make: |config| Box::new(OpenAi::compatible(config)),
        hello,
        cut,
        malformed,
        stream_error: server_error,
    };

    fn turn1() -> Vec<String> {
        vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Let me "}), None),
            chunk(json!({"content": "look."}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                                       "function": {"name": "read_file", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\": \"READ"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "ME.md\"}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_def", "type": "function",
                                       "function": {"name": "list_dir", "arguments": ""}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage(30, 12),
            DONE.to_string(),
        ]
    }

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gpt-test".into(),
            system: Some("You are careful.".into()),
            messages: vec![Message::user("Read the README")],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "Reads a file".into(),
                input_schema: json!({"type": "object",
                                     "properties": {"path": {"type": "string"}}}),
            }],
            max_tokens: 1000,
        }
    }

    /// Turn 2's request: turn 1 answered, both calls answered, and a remark.
    fn follow_up(mut request: ChatRequest, answer: ChatResponse) -> ChatRequest {
        request.messages.push(Message {
            role: Role::Assistant,
            content: answer.content,
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![
                Block::Text {
                    text: "Also note:".into(),
                },
                Block::ToolResult {
                    tool_use_id: "call_abc".into(),
                    content: "# wfe".into(),
                    is_error: false,
                },
                Block::ToolResult {
                    tool_use_id: "call_def".into(),
                    content: "not allowed".into(),
                    is_error: true,
                },
                Block::Text {
                    text: "be brief.".into(),
                },
            ],
        });
        request
    }

    #[tokio::test]
    async fn two_turns_with_a_tool_call() {
        install_crypto();
        let server = FakeServer::start(vec![Reply::sse(turn1()), Reply::sse(hello())]).await;
        let provider = OpenAi::new(testing::config(server.url()));
        assert_eq!(provider.kind(), "openai");

        let sink = Collect::default();
        let answer = provider.send(&request(), &sink).await.expect("turn 1");
        assert_eq!(sink.pieces(), ["Let me ", "look."]);
        assert_eq!(
            answer,
            ChatResponse {
                content: vec![
                    Block::Text {
                        text: "Let me look.".into()
                    },
                    Block::ToolUse {
                        id: "call_abc".into(),
                        name: "read_file".into(),
                        input: json!({"path": "README.md"}),
                    },
                    Block::ToolUse {
                        id: "call_def".into(),
                        name: "list_dir".into(),
                        input: json!({}),
                    },
                ],
                stop: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 30,
                    output_tokens: 12
                },
            }
        );

        let request = follow_up(request(), answer);
        let answer = provider
            .send(&request, &Collect::default())
            .await
            .expect("turn 2");
        assert_eq!(
            answer.content,
            vec![Block::Text {
                text: "hello".into()
            }]
        );
        assert_eq!(answer.stop, StopReason::EndTurn);
        assert_eq!(
            answer.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 2
            }
        );

        let seen = server.requests();
        assert_eq!(seen.len(), 2);
        let second = &seen[1];
        assert_eq!(second.method, "POST");
        assert_eq!(second.path, "/chat/completions");
        assert_eq!(
            second.header("authorization"),
            Some(format!("Bearer {LEAK_KEY}").as_str())
        );
        assert_eq!(second.header("content-type"), Some("application/json"));
        assert_eq!(
            second.body,
            json!({
                "model": "gpt-test",
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_completion_tokens": 1000,
                "tools": [{"type": "function", "function": {
                    "name": "read_file",
                    "description": "Reads a file",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
                }}],
                "messages": [
                    {"role": "system", "content": "You are careful."},
                    {"role": "user", "content": "Read the README"},
                    {"role": "assistant", "content": "Let me look.", "tool_calls": [
                        {"id": "call_abc", "type": "function",
                         "function": {"name": "read_file", "arguments": "{\"path\":\"README.md\"}"}},
                        {"id": "call_def", "type": "function",
                         "function": {"name": "list_dir", "arguments": "{}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "call_abc", "content": "# wfe"},
                    {"role": "tool", "tool_call_id": "call_def", "content": "error: not allowed"},
                    {"role": "user", "content": "Also note:\n\nbe brief."},
                ],
            })
        );
    }

    #[tokio::test]
    async fn compatible_servers_get_max_tokens_and_no_key_unless_configured() {
        install_crypto();
        let calls_only = vec![
            chunk(
                json!({"tool_calls": [{"id": "", "type": "function",
                                       "function": {"name": "read_file",
                                                    "arguments": "{\"path\": \"a\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            DONE.to_string(),
        ];
        let server = FakeServer::start(vec![Reply::sse(calls_only), Reply::sse(hello())]).await;
        let mut config = testing::config(server.url());
        config.key = None;
        let provider = OpenAi::compatible(config);
        assert_eq!(provider.kind(), "openai-compatible");

        // A call without id or index gets one numbered after the conversation's calls.
        let mut request = request();
        request.messages.push(Message {
            role: Role::Assistant,
            content: vec![Block::ToolUse {
                id: "call_1".into(),
                name: "read_file".into(),
                input: json!({"path": "b"}),
            }],
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: "call_1".into(),
                content: "b".into(),
                is_error: false,
            }],
        });
        let answer = provider
            .send(&request, &Collect::default())
            .await
            .expect("answer");
        assert_eq!(
            answer.content,
            vec![Block::ToolUse {
                id: "call_2".into(),
                name: "read_file".into(),
                input: json!({"path": "a"}),
            }]
        );
        assert_eq!(answer.usage, Usage::default());

        let seen = server.requests();
        assert_eq!(seen[0].header("authorization"), None);
        assert_eq!(seen[0].body["max_tokens"], json!(1000));
        assert_eq!(seen[0].body.get("max_completion_tokens"), None);
        assert_eq!(
            seen[0].body["messages"][2],
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "read_file", "arguments": "{\"path\":\"b\"}"}}]})
        );

        let server = FakeServer::start(vec![Reply::sse(hello())]).await;
        let provider = OpenAi::compatible(testing::config(server.url()));
        provider
            .send(&request, &Collect::default())
            .await
            .expect("answer");
        assert_eq!(
            server.requests()[0].header("authorization"),
            Some(format!("Bearer {LEAK_KEY}").as_str())
        );
    }

    #[tokio::test]
    async fn broken_arguments_are_handed_on_as_text() {
        install_crypto();
        let server = FakeServer::start(vec![Reply::sse(vec![
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                                       "function": {"name": "read_file", "arguments": "{\"pa"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            DONE.to_string(),
        ])])
        .await;
        let provider = OpenAi::new(testing::config(server.url()));
        let answer = provider
            .send(&request(), &Collect::default())
            .await
            .expect("answer");
        assert_eq!(
            answer.content,
            vec![Block::ToolUse {
                id: "call_x".into(),
                name: "read_file".into(),
                input: json!("{\"pa"),
            }]
        );
    }

    #[tokio::test]
    async fn arguments_cut_off_by_the_length_limit_are_dropped_not_malformed() {
        install_crypto();
        let server = FakeServer::start(vec![Reply::sse(vec![
            chunk(json!({"content": "Writing."}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                                       "function": {"name": "read_file", "arguments": "{\"pa"}}]}),
                None,
            ),
            chunk(json!({}), Some("length")),
            DONE.to_string(),
        ])])
        .await;
        let provider = OpenAi::new(testing::config(server.url()));
        let answer = provider
            .send(&request(), &Collect::default())
            .await
            .expect("answer");
        assert_eq!(answer.stop, StopReason::MaxTokens);
        assert_eq!(
            answer.content,
            vec![Block::Text {
                text: "Writing.".into()
            }]
        );
        assert_eq!(server.requests().len(), 1, "not sent again");
    }

    #[tokio::test]
    async fn openai_needs_a_key() {
        install_crypto();
        let mut config = testing::config("http://127.0.0.1:9");
        config.key = None;
        let err = OpenAi::new(config)
            .send(&request(), &Collect::default())
            .await
            .expect_err("no key");
        assert_eq!(err.kind, ProviderErrorKind::Auth);
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
        testing::check_exhausted(&COMPATIBLE).await;
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
    async fn resends_after_an_error_in_the_stream() {
        install_crypto();
        testing::check_stream_error_retried(&WIRE).await;
    }

    #[tokio::test]
    async fn refusals_are_not_retried() {
        install_crypto();
        testing::check_refusals(&WIRE).await;
        testing::check_refusals(&COMPATIBLE).await;
    }

    #[tokio::test]
    async fn errors_never_hold_the_key() {
        install_crypto();
        testing::check_key_never_leaks(&WIRE).await;
        testing::check_key_never_leaks(&COMPATIBLE).await;
    }
}
