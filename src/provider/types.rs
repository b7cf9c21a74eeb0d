//! The provider-neutral conversation model and the records of exchanges.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// wfe: the prompt, tool results, validation errors, review findings.
    User,
    /// The model.
    Assistant,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Block {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// The model calls a tool.
    ToolUse {
        /// The call's id, unique in the conversation (providers without ids get generated ones).
        id: String,
        /// The tool's name.
        name: String,
        /// The tool's input, a JSON object.
        input: Value,
    },
    /// What a tool call returned.
    ToolResult {
        /// The id of the `tool_use` it answers.
        tool_use_id: String,
        /// The result as text (JSON for structured results).
        content: String,
        /// True when the tool failed; `content` says why.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// What is said, in order.
    pub content: Vec<Block>,
}

impl Message {
    /// A user message of one text block.
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: vec![Block::Text { text: text.into() }],
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Its name, e.g. `read_file` or `submit_plan`.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// A JSON Schema for its input (an object).
    pub input_schema: Value,
}

/// One request to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The model's name as the provider knows it.
    pub model: String,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation so far; the last message is the user's.
    pub messages: Vec<Message>,
    /// The tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// The most tokens the answer may have.
    pub max_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It wants tool results.
    ToolUse,
    /// It hit `max_tokens`.
    MaxTokens,
    /// Anything else the provider said (e.g. `safety`), as it said it.
    Other(String),
}

/// Tokens one request used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Tokens read (prompt, conversation, tools).
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        // Counts come from providers: huge ones saturate, never overflow.
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    }
}

/// One answer from a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatResponse {
    /// Text and tool calls, in order.
    pub content: Vec<Block>,
    /// Why it stopped.
    pub stop: StopReason,
    /// Tokens used.
    pub usage: Usage,
}

/// One line of `phases/<id>/exchanges.jsonl`: a request and its answer.
///
/// The request is stored as a delta: the messages of the previous request
/// of the same conversation (`conversation`, same attempt) plus that
/// request's answer are implied, and `messages` holds only what came
/// after them. `system` and `tools` are stored on the first exchange of a
/// conversation and whenever they change. This keeps the file linear in
/// the conversation's length; [`Exchange`] folding gives back every full
/// request. Keys and headers are never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// When the request was sent (RFC 3339).
    pub time: String,
    /// The attempt it belongs to.
    pub attempt: u32,
    /// Which conversation: `primary`, or `review-<round>` for a reviewer.
    pub conversation: String,
    /// Its number in the conversation, from 1.
    pub turn: u32,
    /// The provider's name in config.
    pub provider: String,
    /// The model.
    pub model: String,
    /// The system prompt, when first sent or changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The tools, when first sent or changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolSpec>>,
    /// `max_tokens` of the request.
    pub max_tokens: u32,
    /// The messages added since the previous request and its answer.
    pub messages: Vec<Message>,
    /// The answer.
    pub response: ChatResponse,
    /// How long the request took, retries included.
    pub duration_ms: u64,
    /// Older tool results replaced by summaries in what was sent (the
    /// messages above are as the conversation has them, untrimmed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trimmed: Vec<String>,
}

/// A request that failed and is about to be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryNotice {
    /// The attempt that failed, from 1.
    pub attempt: u32,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Why it failed (never a key).
    pub reason: String,
    /// How long the provider waits before the next attempt.
    pub wait: std::time::Duration,
}

/// Hears text as a model streams it.
pub trait TextSink: Send + Sync {
    /// A piece of text (not necessarily a whole line).
    fn text(&self, text: &str);

    /// The request failed and will be sent again after `notice.wait`:
    /// the text heard since the request was (last) sent is discarded, and
    /// the next attempt's text starts from the beginning.
    fn retrying(&self, _notice: &RetryNotice) {}
}

impl<F: Fn(&str) + Send + Sync> TextSink for F {
    fn text(&self, text: &str) {
        self(text)
    }
}

pub use crate::attempt::ProviderErrorKind;

/// A provider's failure, in words safe to show and store (never a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What kind of failure.
    pub kind: ProviderErrorKind,
    /// What happened, in one or a few lines.
    pub message: String,
    /// No key was found: the environment variable that would hold it (the
    /// CLI says how to provide one).
    pub missing_key: Option<String>,
}

impl ProviderError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError {
            kind,
            message: message.into(),
            missing_key: None,
        }
    }
}

/// Rebuilds the full request of each exchange of one conversation (one
/// attempt, one `conversation`, in turn order) from the stored deltas.
pub fn full_requests<'a>(exchanges: impl IntoIterator<Item = &'a Exchange>) -> Vec<ChatRequest> {
    let mut requests: Vec<ChatRequest> = Vec::new();
    let mut system = None;
    let mut tools = Vec::new();
    let mut history: Vec<Message> = Vec::new();
    for exchange in exchanges {
        if exchange.system.is_some() {
            system = exchange.system.clone();
        }
        if let Some(new_tools) = &exchange.tools {
            tools = new_tools.clone();
        }
        history.extend(exchange.messages.iter().cloned());
        requests.push(ChatRequest {
            model: exchange.model.clone(),
            system: system.clone(),
            messages: history.clone(),
            tools: tools.clone(),
            max_tokens: exchange.max_tokens,
        });
        history.push(Message {
            role: Role::Assistant,
            content: exchange.response.content.clone(),
        });
    }
    requests
}
