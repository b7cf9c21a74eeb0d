//! The `cli` provider: a CLI agent (`claude -p`, `codex exec`, `gemini -p`)
//! run as a subprocess for each request.
//!
//! A CLI agent runs its own tools, so wfe does not hand it wfe's: it sends
//! the whole conversation flattened into one prompt on stdin, with an
//! instruction to finish by printing one JSON object keyed by artifact name.
//! That object is turned back into `submit_<name>` tool calls, so the agent
//! loop validates a CLI agent's work exactly like an API model's.
//!
//! The command runs without a shell, in its own process group; a timeout or
//! dropping the request kills the whole group, so an agent's helpers never
//! outlive it.

use std::fmt::Write as _;
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};

use super::{
    Block, ChatRequest, ChatResponse, Provider, ProviderError, ProviderErrorKind, Role, StopReason,
    TextSink, Usage,
};
use crate::process::{Capped, Captured, Stop, Supervisor};

/// The prefix of the tools an answer's JSON keys are mapped to.
const SUBMIT: &str = "submit_";
/// Most stdout kept: an answer is text and one JSON document, not a dump.
const MAX_STDOUT: usize = 32 * 1024 * 1024;
/// The tail of stderr kept for an error message.
const MAX_STDERR: usize = 64 * 1024;
/// Lines of stderr quoted when the agent fails.
const STDERR_LINES: usize = 20;
/// How long to wait for the pipes to close once the agent has exited; a
/// background helper may hold them forever.
const DRAIN_BOUND: Duration = Duration::from_secs(2);
/// How long to wait for the pipes and the reaping once the group is killed.
const AFTER_KILL_BOUND: Duration = Duration::from_millis(500);

/// A CLI agent run once per request.
#[derive(Debug, Clone)]
pub struct CliProvider {
    name: String,
    command: Vec<String>,
    timeout: Duration,
    dir: Option<PathBuf>,
    /// Variables the agent does not inherit (provider keys not passed on).
    env_remove: Vec<String>,
}

impl CliProvider {
    /// Provider `name` running `command` (program and arguments), killed
    /// after `timeout`. It runs in wfe's current directory.
    pub fn new(name: String, command: Vec<String>, timeout: Duration) -> CliProvider {
        CliProvider {
            name,
            command,
            timeout,
            dir: None,
            env_remove: Vec::new(),
        }
    }

    /// Runs the agent in `dir` instead (the repository's work tree).
    pub fn in_dir(mut self, dir: PathBuf) -> CliProvider {
        self.dir = Some(dir);
        self
    }

    /// Keeps `vars` (provider keys) out of the agent's environment.
    pub fn without_env(mut self, vars: Vec<String>) -> CliProvider {
        self.env_remove = vars;
        self
    }

    /// The command line, for messages.
    fn display(&self) -> String {
        self.command.join(" ")
    }

    fn error(&self, message: String) -> ProviderError {
        ProviderError::new(
            ProviderErrorKind::Process,
            format!("{}: {message}", self.name),
        )
    }

    /// Runs the command with `prompt` on stdin; returns its stdout.
    async fn run(&self, prompt: String) -> Result<String, ProviderError> {
        let Some((program, args)) = self.command.split_first() else {
            return Err(ProviderError::new(
                ProviderErrorKind::Config,
                format!("{}: the command is empty", self.name),
            ));
        };
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        for var in &self.env_remove {
            command.env_remove(var);
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let mut captured = Captured {
            stdout: Capped::new(MAX_STDOUT, 0),
            stderr: Capped::new(0, MAX_STDERR),
        };
        let report = Supervisor::new()
            .timeout(Some(self.timeout))
            .drain(DRAIN_BOUND)
            .after_kill(AFTER_KILL_BOUND)
            .stdin(prompt.into_bytes())
            // Nothing cancels a request but dropping it, which kills the group.
            .run(command, std::future::pending(), &mut captured)
            .await
            .map_err(|e| {
                self.error(if e.kind() == std::io::ErrorKind::NotFound {
                    format!("cannot run `{program}`: not found (is it installed and on PATH?)")
                } else {
                    format!("cannot run `{program}`: {e}")
                })
            })?;
        let status = match report.status {
            Ok(status) => status,
            Err(Stop::TimedOut(_) | Stop::Cancelled) => {
                return Err(self.error(format!(
                    "`{}` did not finish within {}: killed it and its process group",
                    self.display(),
                    humantime::format_duration(self.timeout)
                )));
            }
            Err(Stop::WaitFailed(e)) => {
                return Err(self.error(format!("cannot wait for `{}`: {e}", self.display())));
            }
        };
        // Something the agent started held its output even after the group
        // was killed.
        if report.abandoned {
            return Err(self.error("the agent's output never ended".into()));
        }
        let stdout = captured.stdout.into_bytes();
        let stderr = captured.stderr.into_bytes();
        if !status.success() {
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => format!("ended with {status}"),
            };
            return Err(self.error(format!(
                "`{}` {how}{}",
                self.display(),
                stderr_tail(&stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }
}

impl Provider for CliProvider {
    fn kind(&self) -> &'static str {
        "cli"
    }

    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let stdout = self.run(render_prompt(request)).await?;
            let text = answer_text(&stdout).map_err(|m| self.error(m))?;
            if !text.trim().is_empty() {
                stream.text(&text);
            }
            let mut response = parse_answer(&text, request);
            response.usage = envelope_usage(&stdout);
            Ok(response)
        })
    }
}

/// `: <the last lines of stderr>` on new lines, or a note that there were none.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    if lines.is_empty() {
        return " (nothing on stderr)".into();
    }
    let start = lines.len().saturating_sub(STDERR_LINES);
    format!("; stderr ends with:\n{}", lines[start..].join("\n"))
}

/// The conversation as one prompt: system, messages in order (tool calls
/// and results included), then how to hand back the artifacts.
pub fn render_prompt(request: &ChatRequest) -> String {
    let mut out = String::new();
    if let Some(system) = &request.system {
        let _ = write!(out, "# Instructions\n\n{}\n\n", system.trim_end());
    }
    out.push_str("# Conversation\n");
    for message in &request.messages {
        let who = match message.role {
            Role::User => "User",
            Role::Assistant => "You (earlier)",
        };
        let _ = write!(out, "\n## {who}\n\n");
        for block in &message.content {
            match block {
                Block::Text { text } => {
                    let _ = writeln!(out, "{}", text.trim_end());
                }
                Block::ToolUse { id, name, input } => {
                    let _ = writeln!(out, "[you called `{name}` (call {id}) with: {input}]");
                }
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    let what = if *is_error { "failed" } else { "returned" };
                    let _ = writeln!(out, "[call {tool_use_id} {what}:]\n{}", content.trim_end());
                }
            }
        }
    }
    let submits: Vec<_> = request
        .tools
        .iter()
        .filter_map(|t| t.name.strip_prefix(SUBMIT).map(|name| (name, t)))
        .collect();
    if !submits.is_empty() {
        out.push_str(
            "\n# How to finish\n\nDo the work with your own tools. When you are done, print ONE JSON \
             object as the last thing in your answer, in a ```json fenced block. Its keys are the \
             names of the artifacts below; each value must match the artifact's JSON Schema.\n",
        );
        for (name, tool) in submits {
            let schema = serde_json::to_string_pretty(&tool.input_schema).unwrap_or_default();
            let _ = write!(
                out,
                "\n## `{name}`\n\n{}\n\n```json\n{schema}\n```\n",
                tool.description.trim_end()
            );
        }
    }
    out
}

/// The agent's answer text: the `result` of a JSON envelope such as
/// `claude -p --output-format json` prints, else stdout itself. An envelope
/// that says `is_error` is the agent reporting a failure.
pub fn answer_text(stdout: &str) -> Result<String, String> {
    if let Ok(Value::Object(envelope)) = serde_json::from_str::<Value>(stdout.trim())
        && let Some(Value::String(result)) = envelope.get("result")
    {
        if envelope.get("is_error") == Some(&Value::Bool(true)) {
            return Err(format!("the agent reported an error: {result}"));
        }
        return Ok(result.clone());
    }
    Ok(stdout.to_string())
}

/// The tokens a JSON envelope reports (`usage` of `claude -p
/// --output-format json`: cached prompt tokens count as read, as for the
/// Messages API); zero when the agent prints no envelope or no usage.
pub fn envelope_usage(stdout: &str) -> Usage {
    let Ok(envelope) = serde_json::from_str::<Value>(stdout.trim()) else {
        return Usage::default();
    };
    let Some(usage) = envelope.get("usage") else {
        return Usage::default();
    };
    let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .iter()
        .map(|field| count(field))
        .fold(0, u64::saturating_add),
        output_tokens: count("output_tokens"),
    }
}

/// Turns the answer text into a response: the JSON object keyed by artifact
/// names becomes `submit_<name>` tool calls; everything else is text. With
/// no such object the answer is text only, and the agent loop asks again.
pub fn parse_answer(text: &str, request: &ChatRequest) -> ChatResponse {
    let submits: Vec<&str> = request
        .tools
        .iter()
        .filter_map(|t| t.name.strip_prefix(SUBMIT))
        .collect();
    let matches =
        |object: &Map<String, Value>| object.keys().any(|k| submits.contains(&k.as_str()));
    let found = fenced_objects(text)
        .into_iter()
        .rfind(|(object, _)| matches(object))
        .or_else(|| {
            bare_objects(text)
                .into_iter()
                .rfind(|(object, _)| matches(object))
        });
    let Some((object, span)) = found else {
        let text = text.trim();
        return ChatResponse {
            content: if text.is_empty() {
                Vec::new()
            } else {
                vec![Block::Text { text: text.into() }]
            },
            stop: StopReason::EndTurn,
            usage: Usage::default(),
        };
    };
    let rest = format!("{}\n{}", text[..span.start].trim(), text[span.end..].trim());
    let mut content = Vec::new();
    if !rest.trim().is_empty() {
        content.push(Block::Text {
            text: rest.trim().to_string(),
        });
    }
    // Ids continue the conversation's count, so they stay unique in it and
    // are the same when a resumed or replayed conversation asks again.
    let earlier = request
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter(|b| matches!(b, Block::ToolUse { .. }))
        .count();
    let mut n = earlier;
    for (key, input) in object {
        if submits.contains(&key.as_str()) {
            n += 1;
            content.push(Block::ToolUse {
                id: format!("cli_{n}"),
                name: format!("{SUBMIT}{key}"),
                input,
            });
        }
    }
    ChatResponse {
        content,
        stop: StopReason::ToolUse,
        usage: Usage::default(),
    }
}

/// JSON objects in fenced code blocks tagged `json` (or untagged), with the
/// span of each whole block.
fn fenced_objects(text: &str) -> Vec<(Map<String, Value>, Range<usize>)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(open) = text[at..].find("```").map(|i| at + i) {
        let info_end = text[open..].find('\n').map_or(text.len(), |i| open + i);
        let info = text[open + 3..info_end].trim();
        let Some(close) = text[info_end..].find("```").map(|i| info_end + i) else {
            break;
        };
        let body = &text[info_end..close];
        if (info.is_empty() || info.eq_ignore_ascii_case("json"))
            && let Ok(Value::Object(object)) = serde_json::from_str(body.trim())
        {
            found.push((object, open..close + 3));
        }
        at = close + 3;
    }
    found
}

/// Every top-level JSON object in free text, with its span: an object found
/// is skipped over whole, so objects nested in it are not candidates.
fn bare_objects(text: &str) -> Vec<(Map<String, Value>, Range<usize>)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(start) = text[at..].find('{').map(|i| at + i) {
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(Value::Object(object))) => {
                let end = start + values.byte_offset();
                found.push((object, start..end));
                at = end;
            }
            _ => at = start + 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::provider::{Message, ToolSpec};
    use crate::testing::process::pid_alive as alive;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            system: Some("You plan.".into()),
            messages: vec![Message::user("Plan the change.")],
            tools: vec![
                ToolSpec {
                    name: "read_file".into(),
                    description: "Reads a file.".into(),
                    input_schema: json!({"type": "object"}),
                },
                ToolSpec {
                    name: "submit_plan".into(),
                    description: "Submit the plan.".into(),
                    input_schema: json!({"type": "object", "required": ["steps"]}),
                },
            ],
            max_tokens: 100,
        }
    }

    /// Writes an executable `sh` script standing in for an agent.
    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn provider(command: Vec<String>, timeout: Duration) -> CliProvider {
        CliProvider::new("agent".into(), command, timeout)
    }

    #[test]
    fn the_prompt_holds_the_conversation_and_the_schemas() {
        let mut request = request();
        request.messages.push(Message {
            role: Role::Assistant,
            content: vec![Block::ToolUse {
                id: "t1".into(),
                name: "read_file".into(),
                input: json!({"path": "a.rs"}),
            }],
        });
        request.messages.push(Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: "t1".into(),
                content: "fn main() {}".into(),
                is_error: false,
            }],
        });
        let prompt = render_prompt(&request);
        for needle in [
            "You plan.",
            "Plan the change.",
            "[you called `read_file` (call t1) with: {\"path\":\"a.rs\"}]",
            "[call t1 returned:]\nfn main() {}",
            "## `plan`",
            "\"required\": [\n",
        ] {
            assert!(
                prompt.contains(needle),
                "{needle:?} missing from:\n{prompt}"
            );
        }
        assert!(!prompt.contains("## `read_file`"));
        assert!(
            !render_prompt(&ChatRequest {
                tools: vec![],
                ..request
            })
            .contains("How to finish")
        );
    }

    #[test]
    fn answers_are_parsed() {
        let r = request();
        // A fenced block wins over a bare object; the rest is text.
        let text = "I looked around {\"plan\": 1}.\n```json\n{\"plan\": {\"steps\": [\"a\"]}, \"other\": 2}\n```\nDone.";
        let response = parse_answer(text, &r);
        assert_eq!(response.stop, StopReason::ToolUse);
        assert_eq!(
            response.content,
            vec![
                Block::Text {
                    text: "I looked around {\"plan\": 1}.\nDone.".into()
                },
                Block::ToolUse {
                    id: "cli_1".into(),
                    name: "submit_plan".into(),
                    input: json!({"steps": ["a"]}),
                },
            ]
        );
        // Without a fence, the last top-level object with an artifact key.
        let response = parse_answer(
            "first {\"plan\": {\"steps\": []}} then {\"plan\": {\"steps\": [\"b\"]}} {\"x\": 1}",
            &r,
        );
        assert_eq!(
            response.content[1],
            Block::ToolUse {
                id: "cli_1".into(),
                name: "submit_plan".into(),
                input: json!({"steps": ["b"]}),
            }
        );
        // No object: text, end of turn.
        let response = parse_answer("I could not finish {oops", &r);
        assert_eq!(response.stop, StopReason::EndTurn);
        assert_eq!(
            response.content,
            vec![Block::Text {
                text: "I could not finish {oops".into()
            }]
        );
        // Ids continue the conversation's count of tool calls.
        let mut later = r.clone();
        later.messages.push(Message {
            role: Role::Assistant,
            content: vec![Block::ToolUse {
                id: "cli_1".into(),
                name: "submit_plan".into(),
                input: json!({}),
            }],
        });
        let response = parse_answer("{\"plan\": {}}", &later);
        assert_eq!(
            response.content,
            vec![Block::ToolUse {
                id: "cli_2".into(),
                name: "submit_plan".into(),
                input: json!({}),
            }]
        );
    }

    #[test]
    fn envelope_usage_counts_cached_input() {
        let stdout = r#"{"type":"result","result":"ok","usage":{"input_tokens":3,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":42}}"#;
        assert_eq!(
            envelope_usage(stdout),
            Usage {
                input_tokens: 2103,
                output_tokens: 42
            }
        );
        assert_eq!(envelope_usage("plain text"), Usage::default());
        assert_eq!(envelope_usage(r#"{"result": "x"}"#), Usage::default());
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            answer_text(r#"{"result": "hi", "usage": {}}"#).unwrap(),
            "hi"
        );
        assert_eq!(answer_text("plain\n").unwrap(), "plain\n");
        assert_eq!(answer_text(r#"{"plan": {}}"#).unwrap(), r#"{"plan": {}}"#);
        let err = answer_text(r#"{"result": "rate limited", "is_error": true}"#).unwrap_err();
        assert!(err.contains("rate limited"));
    }

    #[tokio::test]
    async fn a_claude_like_agent_submits_a_plan() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("prompt.txt");
        // Like `claude -p --output-format json`: reads the prompt, prints an envelope.
        let agent = script(
            dir.path(),
            "claude",
            &format!(
                r#"cat > '{}'
printf '%s' '{{"type":"result","result":"Here is the plan.\n```json\n{{\"plan\": {{\"steps\": [\"write tests\"]}}}}\n```","usage":{{"input_tokens":5}}}}'"#,
                seen.display()
            ),
        );
        let heard = std::sync::Mutex::new(String::new());
        let sink = |t: &str| heard.lock().unwrap().push_str(t);
        let response = provider(
            vec![agent, "-p".into(), "--output-format".into(), "json".into()],
            Duration::from_secs(10),
        )
        .send(&request(), &sink)
        .await
        .unwrap();
        assert_eq!(response.stop, StopReason::ToolUse);
        assert_eq!(
            response.content,
            vec![
                Block::Text {
                    text: "Here is the plan.".into()
                },
                Block::ToolUse {
                    id: "cli_1".into(),
                    name: "submit_plan".into(),
                    input: json!({"steps": ["write tests"]}),
                }
            ]
        );
        // The envelope's usage is the answer's.
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 0
            }
        );
        assert!(heard.lock().unwrap().starts_with("Here is the plan."));
        let prompt = std::fs::read_to_string(&seen).unwrap();
        assert!(prompt.contains("Plan the change."), "{prompt}");
    }

    #[tokio::test]
    async fn a_failing_agent_reports_its_exit_code_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let agent = script(
            dir.path(),
            "agent",
            "cat >/dev/null\nfor i in $(seq 1 30); do echo \"noise $i\" >&2; done\necho 'out of credits' >&2\nexit 3",
        );
        let err = provider(vec![agent.clone()], Duration::from_secs(10))
            .send(&request(), &|_: &str| {})
            .await
            .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Process);
        assert!(
            err.message.starts_with(&format!(
                "agent: `{agent}` exited with code 3; stderr ends with:\n"
            )),
            "{err}"
        );
        assert!(err.message.ends_with("noise 30\nout of credits"), "{err}");
        assert!(!err.message.contains("noise 10\n"), "{err}");

        let err = provider(vec!["/no/such/agent".into()], Duration::from_secs(1))
            .send(&request(), &|_: &str| {})
            .await
            .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Process);
        assert!(err.message.contains("not found"), "{err}");
    }

    #[tokio::test]
    async fn removed_variables_are_not_inherited() {
        let dir = tempfile::tempdir().unwrap();
        // HOME stands in for a provider key: it is set in the test process.
        let agent = script(
            dir.path(),
            "agent",
            "cat >/dev/null\nprintenv HOME >/dev/null && echo has-home >&2 || echo no-home >&2\nexit 3",
        );
        let stderr_of = |p: CliProvider| async move {
            p.send(&request(), &|_: &str| {}).await.unwrap_err().message
        };
        let removed =
            provider(vec![agent.clone()], Duration::from_secs(10)).without_env(vec!["HOME".into()]);
        assert!(stderr_of(removed).await.ends_with("no-home"));
        let kept = provider(vec![agent], Duration::from_secs(10));
        assert!(stderr_of(kept).await.ends_with("has-home"));
    }

    /// The pid `sh` wrote to `path`, waiting for it to appear.
    async fn read_pid(path: &Path) -> u32 {
        for _ in 0..500 {
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(pid) = text.trim().parse()
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no pid in {}", path.display());
    }

    async fn gone(pid: u32) -> bool {
        for _ in 0..200 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn an_agent_that_never_ends_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        // The agent starts a helper in the background, then hangs.
        let agent = script(
            dir.path(),
            "agent",
            &format!("sleep 300 &\necho $! > '{}'\nsleep 300", pid_file.display()),
        );
        let started = std::time::Instant::now();
        let err = provider(vec![agent], Duration::from_millis(300))
            .send(&request(), &|_: &str| {})
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.kind, ProviderErrorKind::Process);
        assert!(err.message.contains("did not finish within 300ms"), "{err}");
        let helper = read_pid(&pid_file).await;
        assert!(gone(helper).await, "helper {helper} outlived the timeout");
    }

    #[tokio::test]
    async fn a_dropped_request_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        let agent = script(
            dir.path(),
            "agent",
            &format!("sleep 300 &\necho $! > '{}'\nsleep 300", pid_file.display()),
        );
        let cli = provider(vec![agent], Duration::from_secs(300));
        let request = request();
        let sink = |_: &str| {};
        // Once the helper runs, the request is dropped mid-flight.
        let helper = tokio::select! {
            _ = cli.send(&request, &sink) => panic!("the agent should still be running"),
            helper = read_pid(&pid_file) => helper,
        };
        assert!(gone(helper).await, "helper {helper} outlived the request");
    }
}
