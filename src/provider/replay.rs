//! The `replay` provider: answers from the exchanges an earlier run
//! recorded, so a template can be tested and demoed without a network or
//! tokens.
//!
//! A replay is strict: a request is answered only if it is exactly one the
//! recorded run sent (compared as JSON). Anything else is a
//! [`ProviderErrorKind::Diverged`] error listing, by JSON pointer, what
//! differs from the request the recorded run sent next, which is what a
//! template author needs to see to know which change made the run drift.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{
    Block, ChatRequest, ChatResponse, Exchange, Provider, ProviderError, ProviderErrorKind,
    TextSink, full_requests,
};
use crate::artifact::{Change, diff};

/// Differences listed in a divergence error before `… and N more`.
const MAX_CHANGES: usize = 8;
/// Longest value quoted in a divergence error, in characters.
const MAX_VALUE_CHARS: usize = 60;

/// One recorded request, rebuilt in full, with its answer.
#[derive(Debug)]
struct Recorded {
    conversation: String,
    turn: u32,
    /// The request as JSON, with trimmed tool results blanked (see [`normalise`]).
    request: Value,
    /// Tool calls whose results the recorded run sent as summaries.
    trimmed: Vec<String>,
    response: ChatResponse,
}

/// Answers from the recorded exchanges of one phase.
#[derive(Debug)]
pub struct ReplayProvider {
    label: String,
    recorded: Vec<Recorded>,
    /// Which recorded exchanges have answered, by index.
    used: Mutex<Vec<bool>>,
}

impl ReplayProvider {
    /// A replay of `exchanges` (one phase's `exchanges.jsonl`); `label` names
    /// the source in messages (e.g. `replay of 01j…:plan`). Only the last
    /// attempt's exchanges are used: earlier attempts failed.
    pub fn new(label: String, exchanges: Vec<Exchange>) -> ReplayProvider {
        let last = exchanges.iter().map(|e| e.attempt).max();
        // Each conversation is rebuilt alone, then put back in recorded order.
        let mut conversations: BTreeMap<&str, Vec<(usize, &Exchange)>> = BTreeMap::new();
        for (index, exchange) in exchanges.iter().enumerate() {
            if Some(exchange.attempt) == last {
                conversations
                    .entry(exchange.conversation.as_str())
                    .or_default()
                    .push((index, exchange));
            }
        }
        let mut recorded: Vec<(usize, Recorded)> = Vec::new();
        for (_, mut turns) in conversations {
            turns.sort_by_key(|(index, e)| (e.turn, *index));
            let requests = full_requests(turns.iter().map(|(_, e)| *e));
            for ((index, exchange), request) in turns.into_iter().zip(requests) {
                let trimmed = exchange.trimmed.clone();
                recorded.push((
                    index,
                    Recorded {
                        conversation: exchange.conversation.clone(),
                        turn: exchange.turn,
                        request: normalise(&request, &trimmed),
                        trimmed,
                        response: exchange.response.clone(),
                    },
                ));
            }
        }
        recorded.sort_by_key(|(index, _)| *index);
        let recorded: Vec<Recorded> = recorded.into_iter().map(|(_, r)| r).collect();
        ReplayProvider {
            label,
            used: Mutex::new(vec![false; recorded.len()]),
            recorded,
        }
    }

    /// How many recorded exchanges have not answered yet.
    pub fn remaining(&self) -> usize {
        self.lock().iter().filter(|u| !**u).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<bool>> {
        // A panic elsewhere cannot leave the flags half-written: each is one bool.
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The recorded answer to `request`, marking it used.
    fn answer(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let mut used = self.lock();
        let mut next = None;
        for (index, recorded) in self.recorded.iter().enumerate() {
            if used[index] {
                continue;
            }
            next.get_or_insert(index);
            if normalise(request, &recorded.trimmed) == recorded.request {
                used[index] = true;
                return Ok(recorded.response.clone());
            }
        }
        let Some(next) = next else {
            return Err(
                self.diverged("the recorded run has no more exchanges for this phase".to_string())
            );
        };
        let expected = &self.recorded[next];
        let now = normalise(request, &expected.trimmed);
        let changes = diff(&expected.request, &now);
        let mut message = format!(
            "the request differs from the one the recorded run sent next (conversation `{}`, turn {}):",
            expected.conversation, expected.turn
        );
        for change in changes.iter().take(MAX_CHANGES) {
            message.push_str("\n  ");
            message.push_str(&describe(change));
        }
        if changes.len() > MAX_CHANGES {
            message.push_str(&format!("\n  … and {} more", changes.len() - MAX_CHANGES));
        }
        Err(self.diverged(message))
    }

    fn diverged(&self, message: String) -> ProviderError {
        ProviderError::new(
            ProviderErrorKind::Diverged,
            format!("{}: {message}", self.label),
        )
    }
}

impl Provider for ReplayProvider {
    fn kind(&self) -> &'static str {
        "replay"
    }

    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let response = self.answer(request)?;
            for block in &response.content {
                if let Block::Text { text } = block {
                    stream.text(text);
                }
            }
            Ok(response)
        })
    }
}

/// The request as JSON, with the content of the tool results named in
/// `trimmed` blanked: the recorded messages hold those results in full, but
/// the request actually sent carried summaries, so neither side's version
/// can be compared.
fn normalise(request: &ChatRequest, trimmed: &[String]) -> Value {
    let mut value = serde_json::to_value(request).unwrap_or(Value::Null);
    if trimmed.is_empty() {
        return value;
    }
    let blocks = value
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get_mut("content").and_then(Value::as_array_mut))
        .flatten();
    for block in blocks {
        let is_trimmed = block.get("type") == Some(&Value::from("tool_result"))
            && block
                .get("tool_use_id")
                .and_then(Value::as_str)
                .is_some_and(|id| trimmed.iter().any(|t| t == id));
        if is_trimmed && let Some(content) = block.get_mut("content") {
            *content = Value::from("(trimmed)");
        }
    }
    value
}

/// One change as a line: `~ /messages/0/content/0/text: recorded "a", now "b"`.
fn describe(change: &Change) -> String {
    let at = |path: &str| {
        if path.is_empty() {
            "(the whole request)".to_string()
        } else {
            path.to_string()
        }
    };
    match change {
        Change::Added { path, value } => format!("+ {}: now {}", at(path), short(value)),
        Change::Removed { path, value } => format!("- {}: recorded {}", at(path), short(value)),
        Change::Changed { path, from, to } => {
            let (from, to) = match (from.as_str(), to.as_str()) {
                (Some(a), Some(b)) => around_difference(a, b),
                _ => (short(from), short(to)),
            };
            format!("~ {}: recorded {from}, now {to}", at(path))
        }
        Change::Moved { from_path, to_path } => {
            format!("↷ {}: recorded at {}", at(to_path), at(from_path))
        }
    }
}

/// Two long strings cut around where they first differ, so the line
/// shows the difference rather than the common beginning of a prompt.
fn around_difference(a: &str, b: &str) -> (String, String) {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let skip = common.saturating_sub(MAX_VALUE_CHARS / 3);
    let cut = |text: &str| {
        let rest: String = text.chars().skip(skip).collect();
        let lead = if skip > 0 { "…" } else { "" };
        let quoted = Value::from(rest).to_string();
        let body = &quoted[1..quoted.len() - 1];
        if body.chars().count() <= MAX_VALUE_CHARS {
            format!("\"{lead}{body}\"")
        } else {
            let kept: String = body.chars().take(MAX_VALUE_CHARS).collect();
            format!("\"{lead}{kept}…\"")
        }
    };
    (cut(a), cut(b))
}

/// A value as compact JSON, cut to [`MAX_VALUE_CHARS`] characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
    format!("{cut}…")
}

/// Reads a `exchanges.jsonl` file: one [`Exchange`] per line, blank lines skipped.
pub fn load_exchanges_file(path: &Path) -> Result<Vec<Exchange>, ProviderError> {
    let text =
        crate::bounded::read_to_string(path, crate::bounded::FIXTURE_LIMIT).map_err(|e| {
            let why = if e.is_not_found() {
                "it does not exist".to_string()
            } else {
                e.to_string()
            };
            ProviderError::new(
                ProviderErrorKind::Config,
                format!("cannot read recorded exchanges {}: {why}", path.display()),
            )
        })?;
    parse_exchanges(&text, &path.display().to_string())
}

/// Parses the text of an `exchanges.jsonl` file; `origin` names it in errors.
pub fn parse_exchanges(text: &str, origin: &str) -> Result<Vec<Exchange>, ProviderError> {
    let mut exchanges = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let exchange = serde_json::from_str(line).map_err(|e| {
            ProviderError::new(
                ProviderErrorKind::Config,
                format!("{origin}:{}: not a recorded exchange: {e}", number + 1),
            )
        })?;
        exchanges.push(exchange);
    }
    Ok(exchanges)
}

/// Reads `<dir>/<phase>.exchanges.jsonl` (`phase` a key: a loop child's is
/// `LOOP/iterations/K/CHILD`, so its file is in a subdirectory).
pub fn load_dir(dir: &Path, phase: &str) -> Result<Vec<Exchange>, ProviderError> {
    load_exchanges_file(&dir.join(format!("{phase}.exchanges.jsonl")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::provider::{Message, Role, StopReason, ToolSpec, Usage};

    fn text(s: &str) -> Block {
        Block::Text { text: s.into() }
    }

    fn response(content: Vec<Block>) -> ChatResponse {
        ChatResponse {
            content,
            stop: StopReason::EndTurn,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 2,
            },
        }
    }

    fn exchange(attempt: u32, turn: u32, messages: Vec<Message>, answer: &str) -> Exchange {
        Exchange {
            time: "2026-01-01T00:00:00Z".into(),
            attempt,
            conversation: "primary".into(),
            turn,
            provider: "claude".into(),
            model: "m".into(),
            system: (turn == 1).then(|| "sys".into()),
            tools: (turn == 1).then(|| {
                vec![ToolSpec {
                    name: "read_file".into(),
                    description: "reads".into(),
                    input_schema: json!({"type": "object"}),
                }]
            }),
            max_tokens: 100,
            messages,
            response: response(vec![text(answer)]),
            duration_ms: 5,
            trimmed: vec![],
        }
    }

    fn recording() -> Vec<Exchange> {
        vec![
            // A failed first attempt: never replayed.
            exchange(1, 1, vec![Message::user("go")], "old answer"),
            exchange(2, 1, vec![Message::user("go")], "first"),
            exchange(2, 2, vec![Message::user("more")], "second"),
        ]
    }

    fn request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            system: Some("sys".into()),
            messages,
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "reads".into(),
                input_schema: json!({"type": "object"}),
            }],
            max_tokens: 100,
        }
    }

    fn assistant(s: &str) -> Message {
        Message {
            role: Role::Assistant,
            content: vec![text(s)],
        }
    }

    #[tokio::test]
    async fn answers_in_order_and_streams_text() {
        let replay = ReplayProvider::new("replay".into(), recording());
        assert_eq!(replay.remaining(), 2);
        let heard = Mutex::new(String::new());
        let sink = |t: &str| heard.lock().unwrap().push_str(t);

        let first = request(vec![Message::user("go")]);
        let answer = replay.send(&first, &sink).await.unwrap();
        assert_eq!(answer.content, vec![text("first")]);

        let second = request(vec![
            Message::user("go"),
            assistant("first"),
            Message::user("more"),
        ]);
        let answer = replay.send(&second, &sink).await.unwrap();
        assert_eq!(answer.content, vec![text("second")]);
        assert_eq!(*heard.lock().unwrap(), "firstsecond");

        let err = replay.send(&second, &sink).await.unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Diverged);
        assert_eq!(
            err.message,
            "replay: the recorded run has no more exchanges for this phase"
        );
    }

    #[test]
    fn long_strings_are_shown_around_their_first_difference() {
        let prompt = "Fix the answer in src/lib.rs for you, then submit a plan. ".repeat(3);
        let (recorded, now) = around_difference(&prompt, &prompt.replace("you, then", "me, then"));
        assert!(
            recorded.starts_with("\"…") && now.starts_with("\"…"),
            "{recorded}"
        );
        assert!(
            recorded.contains("for you,") && now.contains("for me,"),
            "{now}"
        );
    }

    #[tokio::test]
    async fn a_changed_request_names_the_pointer() {
        let replay = ReplayProvider::new("replay of run:plan".into(), recording());
        let mut changed = request(vec![Message::user(
            "go somewhere else entirely, and take the long road there, slowly",
        )]);
        changed.max_tokens = 200;
        let err = replay.send(&changed, &|_: &str| {}).await.unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Diverged);
        assert_eq!(
            err.message,
            "replay of run:plan: the request differs from the one the recorded run sent next (conversation `primary`, turn 1):\n  \
             ~ /max_tokens: recorded 100, now 200\n  \
             ~ /messages/0/content/0/text: recorded \"go\", now \"go somewhere else entirely, and take the long road there, sl…\""
        );
        // Nothing was used: the right request still gets its answer.
        let answer = replay
            .send(&request(vec![Message::user("go")]), &|_: &str| {})
            .await
            .unwrap();
        assert_eq!(answer.content, vec![text("first")]);
    }

    #[tokio::test]
    async fn trimmed_tool_results_are_not_compared() {
        let result = |content: &str| Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: "t1".into(),
                content: content.into(),
                is_error: false,
            }],
        };
        let mut first = exchange(1, 1, vec![Message::user("go")], "reading");
        first.response.content = vec![Block::ToolUse {
            id: "t1".into(),
            name: "read_file".into(),
            input: json!({}),
        }];
        let mut second = exchange(1, 2, vec![result("a very long file")], "done");
        second.trimmed = vec!["t1".into()];
        let replay = ReplayProvider::new("replay".into(), vec![first.clone(), second]);
        replay
            .send(&request(vec![Message::user("go")]), &|_: &str| {})
            .await
            .unwrap();
        let sent = request(vec![
            Message::user("go"),
            Message {
                role: Role::Assistant,
                content: first.response.content.clone(),
            },
            result("(summary of a long file)"),
        ]);
        let answer = replay.send(&sent, &|_: &str| {}).await.unwrap();
        assert_eq!(answer.content, vec![text("done")]);
    }

    #[test]
    fn loading_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = recording()
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        std::fs::write(
            dir.path().join("plan.exchanges.jsonl"),
            format!("{}\n\n{}\n", lines[0], lines[1]),
        )
        .unwrap();
        assert_eq!(load_dir(dir.path(), "plan").unwrap().len(), 2);

        let bad = dir.path().join("bad.exchanges.jsonl");
        std::fs::write(&bad, format!("{}\n{{\"time\": 1}}\n", lines[0])).unwrap();
        let err = load_dir(dir.path(), "bad").unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Config);
        assert!(
            err.message
                .starts_with(&format!("{}:2: not a recorded exchange: ", bad.display())),
            "{err}"
        );
        let err = load_dir(dir.path(), "missing").unwrap_err();
        assert!(
            err.message
                .ends_with("missing.exchanges.jsonl: it does not exist"),
            "{err}"
        );
    }
}
