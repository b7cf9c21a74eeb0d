//! One conversation with a model: its full history, the deltas its
//! exchanges are recorded as, and rebuilding it from a journal.
//!
//! A conversation is rebuilt one recorded exchange at a time
//! ([`Conversation::adopt`]), by the same fold as
//! [`full_requests`](crate::provider::full_requests): what the loop would
//! have added since the previous exchange is replaced by what was recorded,
//! so a resumed conversation is exactly the recorded one even if wfe would
//! word a message differently today. Nothing here sends or records
//! anything; the loop in `run.rs` does.

use serde_json::Value;

use super::{Journal, Seat, ToolCall};
use crate::provider::{Block, ChatRequest, ChatResponse, Exchange, Message, Role, ToolSpec};

/// One conversation: the primary's, or a reviewer's round.
#[derive(Debug, Clone)]
pub(super) struct Conversation {
    /// `primary` or `review-<round>`.
    pub name: String,
    /// Who answers.
    pub seat: Seat,
    system: Option<String>,
    tools: Vec<ToolSpec>,
    /// Every message, untrimmed, the answers included.
    messages: Vec<Message>,
    /// How many of `messages` the recorded exchanges already hold.
    recorded: usize,
    /// The system prompt and tools the recorded exchanges imply, once
    /// there is one.
    implied: Option<(Option<String>, Vec<ToolSpec>)>,
    /// Requests made (or adopted from the journal).
    turns: u32,
}

impl Conversation {
    /// A conversation that starts with the user saying `first`.
    pub(super) fn new(
        name: impl Into<String>,
        seat: Seat,
        system: Option<String>,
        tools: Vec<ToolSpec>,
        first: impl Into<String>,
    ) -> Conversation {
        Conversation {
            name: name.into(),
            seat,
            system,
            tools,
            messages: vec![Message::user(first)],
            recorded: 0,
            implied: None,
            turns: 0,
        }
    }

    /// Requests made so far; the next one is turn `turns() + 1`.
    pub(super) fn turns(&self) -> u32 {
        self.turns
    }

    /// The full request of the next turn (untrimmed).
    pub(super) fn request(&self) -> ChatRequest {
        ChatRequest {
            model: self.seat.model.clone(),
            system: self.system.clone(),
            messages: self.messages.clone(),
            tools: self.tools.clone(),
            max_tokens: self.seat.max_tokens,
        }
    }

    /// Adds a user message of `blocks`.
    pub(super) fn push_user(&mut self, blocks: Vec<Block>) {
        self.messages.push(Message {
            role: Role::User,
            content: blocks,
        });
    }

    /// Adds `text` to what the user says next: to the pending user message
    /// (tool results) when there is one, so roles keep alternating for
    /// providers that insist on it, or as a new message.
    pub(super) fn say(&mut self, text: impl Into<String>) {
        let block = Block::Text { text: text.into() };
        let pending = self.messages.len() > self.recorded;
        match self.messages.last_mut() {
            Some(last) if pending && last.role == Role::User => last.content.push(block),
            _ => self.push_user(vec![block]),
        }
    }

    /// Takes the answer to the request of the next turn and returns the
    /// exchange to record: the request as a delta from the previous one.
    pub(super) fn answered(
        &mut self,
        time: String,
        attempt: u32,
        response: ChatResponse,
        duration_ms: u64,
        trimmed: Vec<String>,
    ) -> Exchange {
        let (system, tools) = match &self.implied {
            None => (self.system.clone(), Some(self.tools.clone())),
            Some((system, tools)) => (
                (system != &self.system)
                    .then(|| self.system.clone())
                    .flatten(),
                (tools != &self.tools).then(|| self.tools.clone()),
            ),
        };
        let messages = self.messages[self.recorded..].to_vec();
        self.turns += 1;
        self.implied = Some((self.system.clone(), self.tools.clone()));
        self.messages.push(Message {
            role: Role::Assistant,
            content: response.content.clone(),
        });
        self.recorded = self.messages.len();
        Exchange {
            time,
            attempt,
            conversation: self.name.clone(),
            turn: self.turns,
            provider: self.seat.provider_name.clone(),
            model: self.seat.model.clone(),
            system,
            tools,
            max_tokens: self.seat.max_tokens,
            messages,
            response,
            duration_ms,
            trimmed,
        }
    }

    /// Takes a recorded exchange as the next turn, in place of sending one:
    /// the messages since the previous exchange become the recorded ones.
    pub(super) fn adopt(&mut self, exchange: &Exchange) {
        let (mut system, mut tools) = self.implied.take().unwrap_or_default();
        if exchange.system.is_some() {
            system = exchange.system.clone();
        }
        if let Some(recorded) = &exchange.tools {
            tools = recorded.clone();
        }
        self.implied = Some((system, tools));
        self.messages.truncate(self.recorded);
        self.messages.extend(exchange.messages.iter().cloned());
        self.messages.push(Message {
            role: Role::Assistant,
            content: exchange.response.content.clone(),
        });
        self.recorded = self.messages.len();
        self.turns += 1;
    }
}

/// The tool uses of an answer, in order: (id, tool, input).
pub(super) fn tool_uses(response: &ChatResponse) -> Vec<(&str, &str, &Value)> {
    response
        .content
        .iter()
        .filter_map(|b| match b {
            Block::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
        .collect()
}

/// The recorded exchange of turn `turn` (from 1) of `conversation`.
pub(super) fn recorded_exchange<'a>(
    journal: &'a Journal,
    conversation: &str,
    turn: u32,
) -> Option<&'a Exchange> {
    // By position, as `full_requests` folds them.
    let index = usize::try_from(turn.checked_sub(1)?).ok()?;
    journal
        .exchanges
        .iter()
        .filter(|e| e.conversation == conversation)
        .nth(index)
}

/// The recorded call answering tool use `id`. The tool and input must match
/// too: providers without call ids get generated ones, which can repeat
/// across conversations.
pub(super) fn recorded_call<'a>(
    journal: &'a Journal,
    id: &str,
    tool: &str,
    input: &Value,
) -> Option<&'a ToolCall> {
    journal
        .tool_calls
        .iter()
        .rev()
        .find(|c| c.call_id.as_deref() == Some(id) && c.tool == tool && &c.input == input)
}

/// The review recorded for `round`.
pub(super) fn recorded_review(journal: &Journal, round: u32) -> Option<&Value> {
    journal
        .reviews
        .iter()
        .find(|(r, _)| *r == round)
        .map(|(_, review)| review)
}
