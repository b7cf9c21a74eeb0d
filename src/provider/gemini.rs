//! The `gemini` provider: generateContent, streamed as SSE.
//!
//! It owns the mapping between the neutral model and Gemini's wire
//! format, which differs the most: tool calls have no ids (wfe numbers
//! them), tool results are matched by the tool's name, results must be
//! objects, and tool schemas must fit the OpenAPI subset Gemini accepts.
//! The key travels in a header, never in the URL, where an error message
//! could show it. Retries and errors belong to the shared HTTP layer.

use std::collections::HashMap;

use eventsource_stream::Event;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName};
use serde_json::{Map, Value, json};

use super::http::{Decoder, Failure, Flow, HttpClient, event_json, stream_error, tool_uses_in};
use super::{
    Block, ChatRequest, ChatResponse, HttpConfig, Provider, ProviderError, Role, StopReason,
    TextSink, Usage,
};

/// Where the Gemini API lives unless config says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The signature Gemini documents for function calls whose real thought
/// signature is gone: the neutral model has nowhere to keep one, and
/// Gemini 3 refuses function calls in the history that carry none.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Speaks Gemini's generateContent API over HTTP, streaming the answer.
#[derive(Debug)]
pub struct Gemini {
    http: HttpClient,
}

impl Gemini {
    /// A provider for `config`; its HTTP client is built here, once.
    pub fn new(config: HttpConfig) -> Gemini {
        Gemini {
            http: HttpClient::new(config),
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let key = self.http.required_key()?;
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-goog-api-key"),
            self.http.secret_header(key)?,
        );
        Ok(headers)
    }
}

impl Provider for Gemini {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let headers = self.headers()?;
            let url = format!(
                "{}/v1beta/models/{}:streamGenerateContent?alt=sse",
                self.http.config().base_url,
                model_id(&request.model),
            );
            let body = request_body(request);
            let earlier_calls = tool_uses_in(request);
            self.http
                .stream(&url, headers, &body, stream, || {
                    AnswerStream::new(earlier_calls)
                })
                .await
        })
    }
}

/// The model's id as the URL wants it (config may say `models/gemini-…`).
fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// Whether the model checks thought signatures on past function calls:
/// Gemini 3 does, and later ones are expected to; 1.x and 2.x do not.
fn checks_signatures(model: &str) -> bool {
    let id = model_id(model);
    !(id.starts_with("gemini-1") || id.starts_with("gemini-2"))
}

/// The request in Gemini's words.
pub(super) fn request_body(request: &ChatRequest) -> Value {
    // Results name the tool, not the call: find each call's tool.
    let names: HashMap<&str, &str> = request
        .messages
        .iter()
        .flat_map(|message| &message.content)
        .filter_map(|block| match block {
            Block::ToolUse { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    let sign = checks_signatures(&request.model);
    let contents: Vec<Value> = request
        .messages
        .iter()
        .map(|message| {
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            let mut signed = !sign;
            let parts: Vec<Value> = message
                .content
                .iter()
                .filter_map(|block| {
                    let mut part = wire_part(block, &names)?;
                    // Only a turn's first call carries a signature.
                    if !signed && part.get("functionCall").is_some() {
                        part["thoughtSignature"] = json!(SKIP_SIGNATURE);
                        signed = true;
                    }
                    Some(part)
                })
                .collect();
            json!({"role": role, "parts": parts})
        })
        .collect();
    let mut body = json!({
        "contents": contents,
        "generationConfig": {"maxOutputTokens": request.max_tokens},
    });
    if let Some(system) = &request.system {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": gemini_schema(&tool.input_schema),
                })
            })
            .collect();
        body["tools"] = json!([{"functionDeclarations": declarations}]);
    }
    body
}

/// One block as a Gemini part; empty text is dropped because the API refuses it.
fn wire_part(block: &Block, names: &HashMap<&str, &str>) -> Option<Value> {
    Some(match block {
        Block::Text { text } if text.is_empty() => return None,
        Block::Text { text } => json!({"text": text}),
        Block::ToolUse { name, input, .. } => {
            // `args` must be an object; other providers may have recorded anything.
            let args = if input.is_object() {
                input.clone()
            } else {
                Value::Object(Map::new())
            };
            json!({"functionCall": {"name": name, "args": args}})
        }
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let name = names
                .get(tool_use_id.as_str())
                .copied()
                .unwrap_or(tool_use_id);
            let field = if *is_error { "error" } else { "content" };
            json!({"functionResponse": {"name": name, "response": {field: content}}})
        }
    })
}

/// The keywords of Gemini's `Schema` object (the OpenAPI 3.0 subset its
/// function declarations take, per the API reference); anything else is
/// refused by the API or ignored, so it is dropped.
pub(crate) const GEMINI_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

/// A tool's JSON Schema cut down to the OpenAPI subset Gemini takes:
/// local `$ref`s inlined (a recursive one becomes a plain object), `const`
/// as a one-value `enum`, `oneOf` as `anyOf`, `"type": [T, "null"]` as a
/// nullable `T`, and every keyword outside [`GEMINI_KEYWORDS`] dropped.
/// It expects a bundled schema (see [`crate::artifact::bundle()`]): a
/// `$ref` to another document is not followed.
pub(crate) fn gemini_schema(schema: &Value) -> Value {
    clean_schema(schema, schema, &mut Vec::new())
}

fn clean_schema(value: &Value, root: &Value, expanding: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                let mut inlined = match reference
                    .strip_prefix('#')
                    .and_then(|pointer| root.pointer(pointer))
                {
                    Some(target) if !expanding.iter().any(|r| r == reference) => {
                        expanding.push(reference.to_string());
                        let inlined = clean_schema(target, root, expanding);
                        expanding.pop();
                        inlined
                    }
                    _ => json!({"type": "object"}),
                };
                // Keywords beside the `$ref` (a description, say) refine it.
                if let Value::Object(target) = &mut inlined {
                    for (key, value) in clean_keywords(map, root, expanding) {
                        target.insert(key, value);
                    }
                }
                return inlined;
            }
            Value::Object(clean_keywords(map, root, expanding))
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| clean_schema(item, root, expanding))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn clean_keywords(
    map: &Map<String, Value>,
    root: &Value,
    expanding: &mut Vec<String>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let (key, cleaned) = match key.as_str() {
            // Property names are the tool's, not keywords: keep them all.
            "properties" => match value {
                Value::Object(properties) => (
                    "properties",
                    Value::Object(
                        properties
                            .iter()
                            .map(|(name, schema)| {
                                (name.clone(), clean_schema(schema, root, expanding))
                            })
                            .collect(),
                    ),
                ),
                _ => continue,
            },
            "type" => match value {
                Value::Array(types) => {
                    let real: Vec<&Value> = types
                        .iter()
                        .filter(|t| t.as_str() != Some("null"))
                        .collect();
                    if real.len() != types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    match real.as_slice() {
                        [one] => ("type", (*one).clone()),
                        // Several types cannot be said in one `type`: any.
                        _ => continue,
                    }
                }
                other => ("type", other.clone()),
            },
            "const" => ("enum", Value::Array(vec![value.clone()])),
            "oneOf" | "anyOf" => ("anyOf", clean_schema(value, root, expanding)),
            // Data, not schemas.
            "enum" | "default" | "example" | "required" | "propertyOrdering" => {
                (key.as_str(), value.clone())
            }
            other if GEMINI_KEYWORDS.contains(&other) => {
                (other, clean_schema(value, root, expanding))
            }
            _ => continue,
        };
        out.insert(key.to_string(), cleaned);
    }
    out
}

/// Reads one streamed generateContent answer.
#[derive(Debug)]
struct AnswerStream {
    content: Vec<Block>,
    finish: Option<String>,
    usage: Usage,
    /// Calls get `call_<n>` ids, numbered after the conversation's earlier calls.
    calls: usize,
}

impl AnswerStream {
    fn new(earlier_calls: usize) -> AnswerStream {
        AnswerStream {
            content: Vec::new(),
            finish: None,
            usage: Usage::default(),
            calls: earlier_calls,
        }
    }

    fn read_part(&mut self, part: &Value, sink: &dyn TextSink) {
        // Thought summaries are the model thinking aloud, not its answer.
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(piece) = part.get("text").and_then(Value::as_str) {
            if piece.is_empty() {
                return;
            }
            sink.text(piece);
            match self.content.last_mut() {
                Some(Block::Text { text }) => text.push_str(piece),
                _ => self.content.push(Block::Text {
                    text: piece.to_string(),
                }),
            }
        } else if let Some(call) = part.get("functionCall") {
            self.calls += 1;
            let input = match call.get("args") {
                Some(args @ Value::Object(_)) => args.clone(),
                _ => Value::Object(Map::new()),
            };
            self.content.push(Block::ToolUse {
                id: format!("call_{}", self.calls),
                name: call
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                input,
            });
        }
    }
}

impl Decoder for AnswerStream {
    fn event(&mut self, event: &Event, sink: &dyn TextSink) -> Result<Flow, Failure> {
        if event.data.trim().is_empty() {
            return Ok(Flow::More);
        }
        let chunk = event_json(event)?;
        if let Some(error) = chunk.get("error") {
            return Err(stream_error(error));
        }
        // wfe asks for one candidate.
        if let Some(candidate) = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|candidates| candidates.first())
        {
            let parts = candidate
                .get("content")
                .and_then(|content| content.get("parts"))
                .and_then(Value::as_array);
            for part in parts.into_iter().flatten() {
                self.read_part(part, sink);
            }
            if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
                self.finish = Some(reason.to_string());
            }
        }
        // A refused prompt comes back with no candidate at all.
        if let Some(reason) = chunk
            .get("promptFeedback")
            .and_then(|feedback| feedback.get("blockReason"))
            .and_then(Value::as_str)
        {
            self.finish = Some(reason.to_string());
        }
        if let Some(usage) = chunk.get("usageMetadata") {
            let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
            // Thinking is billed as output.
            self.usage = Usage {
                input_tokens: count("promptTokenCount"),
                // Counts come from the server: huge ones saturate, never overflow.
                output_tokens: count("candidatesTokenCount")
                    .saturating_add(count("thoughtsTokenCount")),
            };
        }
        // The stream has no end marker of its own: read on to its end.
        Ok(Flow::More)
    }

    fn finish(self) -> Result<ChatResponse, Failure> {
        let Some(reason) = self.finish else {
            return Err(Failure::cut("a candidate with a `finishReason`"));
        };
        let called = self
            .content
            .iter()
            .any(|block| matches!(block, Block::ToolUse { .. }));
        let stop = match reason.as_str() {
            "STOP" if called => StopReason::ToolUse,
            "STOP" => StopReason::EndTurn,
            "MAX_TOKENS" => StopReason::MaxTokens,
            _ => StopReason::Other(reason),
        };
        Ok(ChatResponse {
            content: self.content,
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

    fn chunk(parts: Value, finish: Option<&str>, usage: Option<(u64, u64)>) -> String {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut response = json!({"candidates": [candidate], "modelVersion": "gemini-test"});
        if let Some((prompt, candidates)) = usage {
            response["usageMetadata"] = json!({
                "promptTokenCount": prompt,
                "candidatesTokenCount": candidates,
                "totalTokenCount": prompt + candidates,
            });
        }
        // Gemini separates events with CRLF pairs.
        sse(None, &response).replace("\n\n", "\r\n\r\n")
    }

    fn hello() -> Vec<String> {
        vec![
            chunk(json!([{"text": "hel"}]), None, Some((5, 1))),
            chunk(json!([{"text": "lo"}]), Some("STOP"), Some((5, 2))),
        ]
    }

    fn cut() -> Vec<String> {
        vec![chunk(json!([{"text": "hel"}]), None, Some((5, 1)))]
    }

    fn malformed() -> Vec<String> {
        vec![
            chunk(json!([{"text": "hel"}]), None, None),
            "data: {\"candidates\": [{\"content\": \r\n\r\n".to_string(),
        ]
    }

    fn unavailable(message: &str) -> Vec<String> {
        vec![
            chunk(json!([{"text": "hel"}]), None, None),
            sse(
                None,
                &json!({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}}),
            ),
        ]
    }

    const WIRE: Wire = Wire {
        make: |config| Box::new(Gemini::new(config)),
        hello,
        cut,
        malformed,
        stream_error: unavailable,
    };

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "read_file".into(),
            description: "Reads a file".into(),
            input_schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "additionalProperties": false,
                "properties": {"path": {"$ref": "#/$defs/path", "description": "Which file"}},
                "required": ["path"],
                "$defs": {"path": {"type": "string", "minLength": 1}},
            }),
        }]
    }

    #[tokio::test]
    async fn two_turns_with_a_tool_call() {
        install_crypto();
        let turn1 = vec![
            chunk(json!([{"text": "Let me "}]), None, Some((20, 2))),
            chunk(json!([{"text": "look."}]), None, Some((20, 3))),
            sse(
                None,
                &json!({
                    "candidates": [{"content": {"role": "model", "parts": [
                        {"functionCall": {"name": "read_file", "args": {"path": "README.md"}}},
                        {"functionCall": {"name": "list_dir"}},
                    ]}, "finishReason": "STOP"}],
                    "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 15,
                                      "thoughtsTokenCount": 5},
                }),
            ),
        ];
        let server = FakeServer::start(vec![Reply::sse(turn1), Reply::sse(hello())]).await;
        let provider = Gemini::new(testing::config(server.url()));
        assert_eq!(provider.kind(), "gemini");

        let mut request = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("You are careful.".into()),
            messages: vec![Message::user("Read the README")],
            tools: tools(),
            max_tokens: 1000,
        };
        let sink = Collect::default();
        let answer = provider.send(&request, &sink).await.expect("turn 1");
        assert_eq!(sink.pieces(), ["Let me ", "look."]);
        assert_eq!(
            answer,
            ChatResponse {
                content: vec![
                    Block::Text {
                        text: "Let me look.".into()
                    },
                    Block::ToolUse {
                        id: "call_1".into(),
                        name: "read_file".into(),
                        input: json!({"path": "README.md"}),
                    },
                    Block::ToolUse {
                        id: "call_2".into(),
                        name: "list_dir".into(),
                        input: json!({}),
                    },
                ],
                stop: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 20,
                    output_tokens: 20
                },
            }
        );

        request.messages.push(Message {
            role: Role::Assistant,
            content: answer.content,
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![
                Block::ToolResult {
                    tool_use_id: "call_1".into(),
                    content: "# wfe".into(),
                    is_error: false,
                },
                Block::ToolResult {
                    tool_use_id: "call_2".into(),
                    content: "not allowed".into(),
                    is_error: true,
                },
            ],
        });
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
        assert_eq!(
            second.path,
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        );
        assert_eq!(second.query.as_deref(), Some("alt=sse"));
        assert_eq!(second.header("x-goog-api-key"), Some(LEAK_KEY));
        assert_eq!(second.header("content-type"), Some("application/json"));
        assert_eq!(
            second.body,
            json!({
                "systemInstruction": {"parts": [{"text": "You are careful."}]},
                "generationConfig": {"maxOutputTokens": 1000},
                "tools": [{"functionDeclarations": [{
                    "name": "read_file",
                    "description": "Reads a file",
                    "parameters": {
                        "type": "object",
                        "properties": {"path": {"type": "string", "minLength": 1,
                                                "description": "Which file"}},
                        "required": ["path"],
                    },
                }]}],
                "contents": [
                    {"role": "user", "parts": [{"text": "Read the README"}]},
                    {"role": "model", "parts": [
                        {"text": "Let me look."},
                        {"functionCall": {"name": "read_file", "args": {"path": "README.md"}}},
                        {"functionCall": {"name": "list_dir", "args": {}}},
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "read_file",
                                              "response": {"content": "# wfe"}}},
                        {"functionResponse": {"name": "list_dir",
                                              "response": {"error": "not allowed"}}},
                    ]},
                ],
            })
        );
        // The key stays out of the URL, where an error message could show it.
        for request in &seen {
            assert!(!request.query.as_deref().unwrap_or("").contains(LEAK_KEY));
        }
    }

    #[test]
    fn gemini_3_history_carries_a_skip_signature_on_each_turns_first_call() {
        let request = ChatRequest {
            model: "models/gemini-3-pro-preview".into(),
            system: None,
            messages: vec![
                Message::user("go"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Block::ToolUse {
                            id: "call_1".into(),
                            name: "a".into(),
                            input: json!({}),
                        },
                        Block::ToolUse {
                            id: "call_2".into(),
                            name: "b".into(),
                            input: json!({}),
                        },
                    ],
                },
            ],
            tools: Vec::new(),
            max_tokens: 10,
        };
        let body = request_body(&request);
        assert_eq!(
            body["contents"][1]["parts"],
            json!([
                {"functionCall": {"name": "a", "args": {}},
                 "thoughtSignature": "skip_thought_signature_validator"},
                {"functionCall": {"name": "b", "args": {}}},
            ])
        );
        assert_eq!(body.get("tools"), None);
        assert_eq!(body.get("systemInstruction"), None);
    }

    #[test]
    fn schemas_lose_what_gemini_refuses() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://wfe.local/schemas/plan.json",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "additionalProperties": {"type": "string"},
                "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
                "kind": {"enum": ["$ref", "x"], "default": "x"},
            },
            "$defs": {
                "step": {"type": "object", "additionalProperties": false,
                         "properties": {"title": {"type": "string"},
                                        "children": {"type": "array",
                                                     "items": {"$ref": "#/$defs/step"}}}},
            },
        });
        assert_eq!(
            gemini_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "additionalProperties": {"type": "string"},
                    "steps": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"title": {"type": "string"},
                                       "children": {"type": "array",
                                                    "items": {"type": "object"}}},
                    }},
                    "kind": {"enum": ["$ref", "x"], "default": "x"},
                },
            })
        );
    }

    #[tokio::test]
    async fn finish_reasons_map_to_stops() {
        install_crypto();
        let answer = |reason: &'static str| {
            Reply::sse(vec![chunk(
                json!([{"text": "x"}]),
                Some(reason),
                Some((1, 1)),
            )])
        };
        let blocked = Reply::sse(vec![sse(
            None,
            &json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}),
        )]);
        let server = FakeServer::start(vec![answer("MAX_TOKENS"), answer("SAFETY"), blocked]).await;
        let provider = Gemini::new(testing::config(server.url()));
        let request = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: None,
            messages: vec![Message::user("hi")],
            tools: Vec::new(),
            max_tokens: 10,
        };
        let mut stops = Vec::new();
        for _ in 0..3 {
            let answer = provider
                .send(&request, &Collect::default())
                .await
                .expect("answer");
            stops.push(answer.stop);
        }
        assert_eq!(
            stops,
            [
                StopReason::MaxTokens,
                StopReason::Other("SAFETY".into()),
                StopReason::Other("SAFETY".into()),
            ]
        );
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
    async fn resends_after_an_error_in_the_stream() {
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
