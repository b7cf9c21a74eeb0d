//! Context trimming: keeping a request inside the model's context window by
//! summarising older tool results.
//!
//! Trimming changes only the request that is sent. The conversation the
//! loop keeps, and so the recorded exchanges and a resumed conversation,
//! stay untrimmed; an exchange names the results it summarised in
//! `trimmed`. The size is an estimate (characters of the request's JSON
//! divided by four), not a tokenizer's count: good enough to stay clear of
//! the window with the 10% margin, and the same for every provider.

use std::collections::HashMap;

use crate::provider::{Block, ChatRequest};

/// The share of the context window a request may fill before older tool
/// results are summarised, in percent: the rest is margin for the estimate
/// and room for the answer.
const FILL_PERCENT: u64 = 90;

/// Messages at the end of a request whose tool results are never trimmed:
/// the model is acting on them right now.
const KEEP_LAST: usize = 2;

/// What trimming a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Trimmed {
    /// The `tool_use` ids whose results were summarised, oldest first.
    pub ids: Vec<String>,
    /// The estimated size before, in tokens.
    pub before: u64,
    /// The estimated size after, in tokens.
    pub after: u64,
}

/// Summarises the oldest tool results of `request` (never those in its last
/// two messages) until its estimate is within 90% of `context_tokens`.
/// Returns `None` when the request already fits and nothing was changed.
pub(super) fn trim(request: &mut ChatRequest, context_tokens: u64) -> Option<Trimmed> {
    let budget = context_tokens.saturating_mul(FILL_PERCENT) / 100;
    let mut chars = json_chars(request);
    let before = tokens(chars);
    if before <= budget {
        return None;
    }
    let names: HashMap<String, String> = request
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|b| match b {
            Block::ToolUse { id, name, .. } => Some((id.clone(), name.clone())),
            _ => None,
        })
        .collect();
    let mut ids = Vec::new();
    let end = request.messages.len().saturating_sub(KEEP_LAST);
    'messages: for message in &mut request.messages[..end] {
        for block in &mut message.content {
            if tokens(chars) <= budget {
                break 'messages;
            }
            let Block::ToolResult {
                tool_use_id,
                content,
                ..
            } = block
            else {
                continue;
            };
            let tool = names.get(tool_use_id).map_or("a tool", String::as_str);
            let summary = format!(
                "[trimmed: result of {tool} ({} chars) — call the tool again if you need it]",
                content.chars().count()
            );
            let (old, new) = (string_chars(content), string_chars(&summary));
            // A result already shorter than its summary gains nothing.
            if new >= old {
                continue;
            }
            *content = summary;
            chars = chars - old + new;
            ids.push(tool_use_id.clone());
        }
    }
    Some(Trimmed {
        ids,
        before,
        after: tokens(chars),
    })
}

/// The estimated size of `chars` characters of JSON in tokens.
fn tokens(chars: u64) -> u64 {
    chars.div_ceil(4)
}

fn json_chars(request: &ChatRequest) -> u64 {
    // A request is plain data and always serialises.
    serde_json::to_string(request).map_or(0, |s| s.chars().count() as u64)
}

/// How many characters `text` takes as a JSON string (quotes and escapes
/// included), so replacing it changes the estimate by exactly the difference.
fn string_chars(text: &str) -> u64 {
    serde_json::to_string(text).map_or(0, |s| s.chars().count() as u64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::provider::{Message, Role};

    fn estimate_tokens(request: &ChatRequest) -> u64 {
        tokens(json_chars(request))
    }

    fn call(id: &str) -> Message {
        Message {
            role: Role::Assistant,
            content: vec![Block::ToolUse {
                id: id.into(),
                name: "read_file".into(),
                input: json!({"path": "a"}),
            }],
        }
    }

    fn result(id: &str, chars: usize) -> Message {
        Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: id.into(),
                content: "x".repeat(chars),
                is_error: false,
            }],
        }
    }

    fn request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            system: None,
            messages,
            tools: Vec::new(),
            max_tokens: 100,
        }
    }

    fn conversation() -> ChatRequest {
        request(vec![
            Message::user("go"),
            call("1"),
            result("1", 4000),
            call("2"),
            result("2", 4000),
            call("3"),
            result("3", 4000),
        ])
    }

    #[test]
    fn a_request_that_fits_is_left_alone() {
        let mut req = conversation();
        let size = estimate_tokens(&req);
        assert!(size > 3000 && size < 3200, "{size}");
        assert_eq!(trim(&mut req, 10_000), None);
        assert_eq!(req, conversation());
    }

    #[test]
    fn the_oldest_results_go_first_until_it_fits() {
        let mut req = conversation();
        let trimmed = trim(&mut req, 2600).expect("over 90% of 2600");
        assert_eq!(trimmed.ids, vec!["1"]);
        assert!(
            trimmed.after <= 2340 && trimmed.before > 2340,
            "{trimmed:?}"
        );
        assert_eq!(trimmed.after, estimate_tokens(&req));
        let Block::ToolResult { content, .. } = &req.messages[2].content[0] else {
            panic!("a tool result");
        };
        assert_eq!(
            content,
            "[trimmed: result of read_file (4000 chars) — call the tool again if you need it]"
        );
        assert_eq!(req.messages[4], conversation().messages[4]);
    }

    #[test]
    fn the_last_two_messages_are_never_trimmed() {
        let mut req = conversation();
        let trimmed = trim(&mut req, 10).expect("nothing fits in 10 tokens");
        assert_eq!(trimmed.ids, vec!["1", "2"]);
        assert_eq!(req.messages[6], conversation().messages[6]);
        assert!(trimmed.after > 9);
    }
}
