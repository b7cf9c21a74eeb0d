//! The loop against a scripted provider and stand-in tools: no network, no
//! sleeps; every step is acked by a collector task that keeps it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::*;
use crate::agent::{Journal, ReviewJob, Seat};
use crate::artifact::{OutputSpec, Schema, builtin_schema};
use crate::attempt::LogLine;
use crate::provider::{
    ChatRequest, Exchange, Message, Provider, ProviderError, ProviderErrorKind, Role, StopReason,
    full_requests,
};

/// What a [`ScriptedProvider`] does with its next request.
enum Scripted {
    Answer(ChatResponse),
    Fail(ProviderError),
    /// Never answers (and says so through `hung`).
    Hang,
    /// Streams this text, fails and retries once, then answers.
    Retried(&'static str, ChatResponse),
}

/// Answers requests from a script, in order, and keeps every request.
struct ScriptedProvider {
    script: Mutex<VecDeque<Scripted>>,
    seen: Mutex<Vec<ChatRequest>>,
    hung: Notify,
}

impl ScriptedProvider {
    fn new(script: Vec<Scripted>) -> Arc<ScriptedProvider> {
        Arc::new(ScriptedProvider {
            script: Mutex::new(script.into()),
            seen: Mutex::new(Vec::new()),
            hung: Notify::new(),
        })
    }

    fn seen(&self) -> Vec<ChatRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Provider for ScriptedProvider {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, crate::provider::ProviderError>> {
        Box::pin(async move {
            self.seen.lock().unwrap().push(request.clone());
            let next = self.script.lock().unwrap().pop_front();
            match next {
                Some(Scripted::Answer(response)) => {
                    // In small pieces, as a real stream splits text anywhere.
                    for block in &response.content {
                        if let Block::Text { text } = block {
                            let chars: Vec<char> = text.chars().collect();
                            for piece in chars.chunks(3) {
                                stream.text(&piece.iter().collect::<String>());
                            }
                        }
                    }
                    Ok(response)
                }
                Some(Scripted::Fail(error)) => Err(error),
                Some(Scripted::Retried(text, response)) => {
                    stream.text(text);
                    stream.retrying(&crate::provider::RetryNotice {
                        attempt: 1,
                        max_attempts: 5,
                        reason: "the stream broke: connection reset".into(),
                        wait: Duration::from_secs(2),
                    });
                    for block in &response.content {
                        if let Block::Text { text } = block {
                            stream.text(text);
                        }
                    }
                    Ok(response)
                }
                Some(Scripted::Hang) => {
                    self.hung.notify_one();
                    std::future::pending().await
                }
                None => Err(ProviderError::new(
                    ProviderErrorKind::Response,
                    "the script ran out",
                )),
            }
        })
    }
}

/// A `read_file` that answers `contents of PATH` and `size` more characters.
#[derive(Default)]
struct FakeTools {
    calls: Mutex<Vec<Value>>,
}

impl Tools for FakeTools {
    fn specs(&self) -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "read_file".into(),
            description: "Reads a file.".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }]
    }

    fn call<'a>(&'a self, tool: &'a str, input: &'a Value) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(async move {
            assert_eq!(tool, "read_file", "only offered tools are called");
            self.calls.lock().unwrap().push(input.clone());
            let path = input["path"].as_str().unwrap_or("?");
            let size = input["size"].as_u64().unwrap_or(0) as usize;
            ToolOutcome {
                output: Ok(Value::String(format!(
                    "contents of {path}\n{}",
                    "x".repeat(size)
                ))),
                truncated: false,
            }
        })
    }
}

/// Keeps every line the loop shows.
#[derive(Default)]
struct Shown(Mutex<Vec<LogLine>>);

impl LogSink for Shown {
    fn line(&self, phase: &str, line: &LogLine) {
        assert_eq!(phase, "plan");
        self.0.lock().unwrap().push(line.clone());
    }
}

fn say(text: &str) -> Block {
    Block::Text { text: text.into() }
}

fn call(id: &str, tool: &str, input: Value) -> Block {
    Block::ToolUse {
        id: id.into(),
        name: tool.into(),
        input,
    }
}

fn answer(content: Vec<Block>) -> Scripted {
    let calls = content.iter().any(|b| matches!(b, Block::ToolUse { .. }));
    Scripted::Answer(ChatResponse {
        content,
        stop: if calls {
            StopReason::ToolUse
        } else {
            StopReason::EndTurn
        },
        usage: Usage {
            input_tokens: 100,
            output_tokens: 10,
        },
    })
}

fn submit(id: &str, title: &str) -> Scripted {
    answer(vec![call(id, "submit_plan", json!({ "title": title }))])
}

fn review_answer(verdict: &str, findings: Value) -> Scripted {
    answer(vec![call(
        "r",
        "submit_review",
        json!({"verdict": verdict, "summary": format!("Verdict: {verdict}."), "findings": findings}),
    )])
}

fn schema(name: &str, json: Value) -> Arc<Schema> {
    Arc::new(Schema::compile(name, "test", json).unwrap())
}

fn plan() -> OutputSpec {
    OutputSpec {
        name: "plan".into(),
        schema: schema(
            "plan",
            json!({
                "type": "object",
                "properties": {"title": {"type": "string", "minLength": 1}},
                "required": ["title"],
                "additionalProperties": false
            }),
        ),
    }
}

fn seat(provider: &Arc<ScriptedProvider>) -> Seat {
    Seat {
        provider_name: "scripted".into(),
        provider: provider.clone(),
        model: "m1".into(),
        max_tokens: 1000,
        model_info: ModelEntry::default(),
    }
}

fn job(provider: &Arc<ScriptedProvider>) -> AgentJob {
    AgentJob {
        run: "01run".into(),
        phase: "plan".into(),
        attempt: 1,
        primary: seat(provider),
        system: Some("You plan.".into()),
        prompt: "Make a plan.".into(),
        tools: vec!["read_file".into()],
        work_dir: PathBuf::from("/nonexistent"),
        outputs: vec![plan()],
        max_turns: 5,
        max_invalid_submissions: 2,
        timeout: None,
        review: None,
        journal: Journal::default(),
        env_remove: Vec::new(),
        masker: Default::default(),
        max_log_bytes: crate::attempt::DEFAULT_MAX_LOG_BYTES,
        processes: None,
        budget: crate::agent::AgentBudget::default(),
    }
}

fn with_review(mut job: AgentJob, reviewer: &Arc<ScriptedProvider>, rounds: u32) -> AgentJob {
    let review = builtin_schema("review").unwrap();
    job.review = Some(ReviewJob {
        seat: Seat {
            provider_name: "second".into(),
            model: "m2".into(),
            ..seat(reviewer)
        },
        rounds,
        schema: schema("review", serde_json::from_str(review).unwrap()),
    });
    job
}

/// What one run gave.
struct Ran {
    outcome: AttemptOutcome,
    steps: Vec<Step>,
    shown: Vec<LogLine>,
    tool_inputs: Vec<Value>,
}

impl Ran {
    fn exchanges(&self, conversation: &str) -> Vec<Exchange> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Exchange(e) if e.conversation == conversation => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn tool_calls(&self) -> Vec<ToolCall> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::ToolCall(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// The journal a resumed attempt would be given.
    fn journal(&self) -> Journal {
        let mut journal = Journal::default();
        for step in &self.steps {
            match step {
                Step::Exchange(e) => journal.exchanges.push(e.clone()),
                Step::ToolCall(c) => journal.tool_calls.push(c.clone()),
                Step::Review { round, review } => journal.reviews.push((*round, review.clone())),
            }
        }
        journal
    }

    fn logged(&self, stream: Stream) -> Vec<String> {
        self.outcome
            .log
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.line.clone())
            .collect()
    }
}

/// Acks every step at once and keeps it.
fn collector() -> (Progress, JoinHandle<Vec<Step>>) {
    let (progress, mut steps_rx) = Progress::channel();
    let task = tokio::spawn(async move {
        let mut steps = Vec::new();
        while let Some((step, ack)) = steps_rx.recv().await {
            steps.push(step);
            let _ = ack.send(());
        }
        steps
    });
    (progress, task)
}

async fn run_cancellable(job: AgentJob, cancel: watch::Receiver<bool>) -> Ran {
    let tools = FakeTools::default();
    let reviewer_tools = FakeTools::default();
    let shown = Arc::new(Shown::default());
    let (progress, steps) = collector();
    let outcome = run_with(
        job,
        &tools,
        &reviewer_tools,
        cancel,
        shown.clone(),
        progress,
        Clock::fixed(UNIX_EPOCH),
    )
    .await;
    let ran = Ran {
        outcome,
        steps: steps.await.unwrap(),
        shown: shown.0.lock().unwrap().clone(),
        tool_inputs: tools.calls.lock().unwrap().clone(),
    };
    assert_eq!(ran.shown, ran.outcome.log, "every line is shown live");
    ran
}

async fn run(job: AgentJob) -> Ran {
    let (_cancel, cancel) = watch::channel(false);
    run_cancellable(job, cancel).await
}

fn artifacts(doc: Value) -> Result<BTreeMap<String, Value>, AttemptError> {
    Ok(serde_json::from_value(doc).unwrap())
}

fn last_message(request: &ChatRequest) -> &Message {
    request.messages.last().unwrap()
}

fn tool_result(message: &Message, id: &str) -> (String, bool) {
    message
        .content
        .iter()
        .find_map(|b| match b {
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } if tool_use_id == id => Some((content.clone(), *is_error)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no result for {id} in {message:?}"))
}

fn text_of(message: &Message) -> String {
    message
        .content
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_attempt_can_run_on_any_worker_thread() {
    fn send<T: Send>(_: &T) {}
    let provider = ScriptedProvider::new(Vec::new());
    let (progress, _steps) = Progress::channel();
    let (_cancel, cancel) = watch::channel(false);
    let attempt = run_agent(
        job(&provider),
        cancel,
        Arc::new(Shown::default()),
        progress,
        Clock::system(),
    );
    send(&attempt);
}

#[tokio::test]
async fn a_valid_submission_ends_the_attempt_with_its_artifact() {
    let provider = ScriptedProvider::new(vec![answer(vec![
        say("Let me think.\nA plan"),
        call("c1", "submit_plan", json!({"title": "Ship it"})),
    ])]);
    let ran = run(job(&provider)).await;

    assert_eq!(
        ran.outcome.result,
        artifacts(json!({"plan": {"title": "Ship it"}}))
    );
    let exchanges = ran.exchanges("primary");
    assert_eq!(ran.steps.len(), 1);
    let first = &exchanges[0];
    assert_eq!((first.turn, first.attempt), (1, 1));
    assert_eq!(first.system.as_deref(), Some("You plan."));
    let tools: Vec<&str> = first
        .tools
        .as_ref()
        .unwrap()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(tools, ["read_file", "submit_plan"]);
    assert_eq!(first.messages, vec![Message::user("Make a plan.")]);
    assert_eq!(full_requests(&exchanges), provider.seen());

    assert_eq!(ran.logged(Stream::Model), ["Let me think.", "A plan"]);
    assert_eq!(ran.logged(Stream::Wfe), ["submit_plan → accepted"]);
    assert_eq!(
        ran.outcome.usage,
        Some(AttemptUsage {
            provider: Some("scripted".into()),
            model: Some("m1".into()),
            requests: 1,
            input_tokens: 100,
            output_tokens: 10,
            cost_usd: None,
            tool_calls: 0,
            // The attempt's wall time is whatever this machine took.
            wall_ms: ran.outcome.usage.as_ref().map_or(0, |u| u.wall_ms),
        })
    );
}

#[tokio::test]
async fn an_invalid_submission_is_answered_with_its_violations() {
    let provider = ScriptedProvider::new(vec![submit("c1", ""), submit("c2", "Ship it")]);
    let ran = run(job(&provider)).await;

    assert_eq!(
        ran.outcome.result,
        artifacts(json!({"plan": {"title": "Ship it"}}))
    );
    let seen = provider.seen();
    let (text, is_error) = tool_result(last_message(&seen[1]), "c1");
    assert!(is_error);
    assert!(text.contains("at /title"), "{text}");
    assert!(text.contains("`minLength: 1`"), "{text}");

    let exchanges = ran.exchanges("primary");
    assert_eq!(exchanges[1].messages, vec![last_message(&seen[1]).clone()]);
    assert_eq!((&exchanges[1].system, &exchanges[1].tools), (&None, &None));
    assert_eq!(full_requests(&exchanges), seen);
}

#[tokio::test]
async fn too_many_invalid_submissions_fail_with_the_last_one_kept() {
    let provider = ScriptedProvider::new(vec![
        submit("c1", ""),
        answer(vec![call("c2", "submit_plan", json!({"title": 5}))]),
        submit("c3", "never asked"),
    ]);
    let mut job = job(&provider);
    job.max_invalid_submissions = 1;
    let ran = run(job).await;

    let Err(AttemptError::InvalidOutputs { problems }) = &ran.outcome.result else {
        panic!("{:?}", ran.outcome.result);
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].artifact, "plan");
    assert_eq!(problems[0].violations[0].instance_path, "/title");
    assert_eq!(
        ran.outcome.rejected,
        vec![("plan".to_string(), b"{\n  \"title\": 5\n}".to_vec())]
    );
    assert_eq!(provider.seen().len(), 2);
    assert!(ran.outcome.usage.is_some());
}

#[tokio::test]
async fn ending_the_turn_without_submitting_gets_a_nudge() {
    let provider = ScriptedProvider::new(vec![answer(vec![say("Done.")]), submit("c1", "Ship it")]);
    let ran = run(job(&provider)).await;

    assert!(ran.outcome.result.is_ok());
    let seen = provider.seen();
    let nudge = last_message(&seen[1]);
    assert_eq!(nudge.role, Role::User);
    assert!(text_of(nudge).contains("Call submit_plan"), "{nudge:?}");
    assert_eq!(full_requests(&ran.exchanges("primary")), seen);
}

#[tokio::test]
async fn a_phase_without_outputs_ends_when_the_model_stops_calling_tools() {
    let provider = ScriptedProvider::new(vec![
        answer(vec![call("c1", "read_file", json!({"path": "a"}))]),
        answer(vec![say("All done.")]),
    ]);
    let mut job = job(&provider);
    job.outputs.clear();
    let ran = run(job).await;

    assert_eq!(ran.outcome.result, Ok(BTreeMap::new()));
    assert_eq!(provider.seen().len(), 2);
    assert_eq!(ran.tool_inputs, vec![json!({"path": "a"})]);
}

#[tokio::test]
async fn a_non_object_artifact_is_submitted_wrapped() {
    let provider = ScriptedProvider::new(vec![answer(vec![call(
        "c1",
        "submit_tags",
        json!({"value": ["a", "b"]}),
    )])]);
    let mut job = job(&provider);
    job.outputs = vec![OutputSpec {
        name: "tags".into(),
        schema: schema(
            "tags",
            json!({"type": "array", "items": {"type": "string"}}),
        ),
    }];
    let ran = run(job).await;

    assert_eq!(ran.outcome.result, artifacts(json!({"tags": ["a", "b"]})));
    let tools = &provider.seen()[0].tools;
    assert_eq!(
        tools[1].input_schema["properties"]["value"]["type"],
        "array"
    );
}

#[tokio::test]
async fn max_turns_bounds_the_primary_requests() {
    let provider = ScriptedProvider::new(vec![
        answer(vec![say("Hmm.")]),
        answer(vec![say("Hmm.")]),
        submit("c1", "too late"),
    ]);
    let mut job = job(&provider);
    job.max_turns = 2;
    let ran = run(job).await;

    assert_eq!(ran.outcome.result, Err(AttemptError::MaxTurns { turns: 2 }));
    assert_eq!(provider.seen().len(), 2);
    assert_eq!(ran.exchanges("primary").len(), 2);
}

#[tokio::test]
async fn cancel_drops_the_request_in_flight() {
    let provider = ScriptedProvider::new(vec![Scripted::Hang]);
    let (cancel_tx, cancel) = watch::channel(false);
    let (ran, ()) = tokio::join!(run_cancellable(job(&provider), cancel), async {
        provider.hung.notified().await;
        cancel_tx.send(true).unwrap();
    });

    assert_eq!(ran.outcome.result, Err(AttemptError::Cancelled));
    assert_eq!(ran.logged(Stream::Wfe), ["stopped: cancelled"]);
    assert_eq!(ran.outcome.usage.unwrap().requests, 0);
}

#[tokio::test]
async fn the_timeout_stops_the_attempt() {
    let provider = ScriptedProvider::new(vec![Scripted::Hang]);
    let mut job = job(&provider);
    job.timeout = Some(Duration::from_millis(20));
    let ran = run(job).await;

    assert_eq!(
        ran.outcome.result,
        Err(AttemptError::TimedOut {
            after: "20ms".into()
        })
    );
}

#[tokio::test]
async fn a_provider_error_ends_the_attempt_with_its_kind() {
    let provider = ScriptedProvider::new(vec![Scripted::Fail(ProviderError::new(
        ProviderErrorKind::Auth,
        "the key was refused (401)",
    ))]);
    let ran = run(job(&provider)).await;

    assert_eq!(
        ran.outcome.result,
        Err(AttemptError::Provider {
            provider: "scripted".into(),
            failure: ProviderErrorKind::Auth,
            message: "the key was refused (401)".into(),
        })
    );
    assert!(ran.steps.is_empty());
    assert_eq!(ran.outcome.usage.unwrap().requests, 0);
}

#[tokio::test]
async fn tool_calls_are_answered_in_order_and_recorded() {
    let provider = ScriptedProvider::new(vec![
        answer(vec![
            call("c1", "read_file", json!({"path": "src/lib.rs"})),
            call("c2", "rm", json!({"path": "/"})),
        ]),
        submit("c3", "Ship it"),
    ]);
    let ran = run(job(&provider)).await;

    assert!(ran.outcome.result.is_ok());
    assert_eq!(ran.tool_inputs, vec![json!({"path": "src/lib.rs"})]);
    let calls = ran.tool_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].call_id.as_deref(), Some("c1"));
    assert_eq!(calls[0].output, Some(json!("contents of src/lib.rs\n")));
    assert_eq!(calls[1].call_id.as_deref(), Some("c2"));
    assert_eq!(calls[1].tool, "rm");
    assert_eq!(calls[1].output, None);
    let error = calls[1].error.as_deref().unwrap();
    assert!(error.contains("no tool `rm`"), "{error}");
    assert!(matches!(&ran.steps[1], Step::ToolCall(c) if c.tool == "read_file"));

    let results = last_message(&provider.seen()[1]).clone();
    let ids: Vec<&str> = results
        .content
        .iter()
        .filter_map(|b| match b {
            Block::ToolResult { tool_use_id, .. } => Some(tool_use_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["c1", "c2"]);
    assert_eq!(tool_result(&results, "c2"), (error.to_string(), true));
    assert_eq!(
        ran.logged(Stream::Wfe)[..2],
        [
            "tool read_file {\"path\":\"src/lib.rs\"} → ok (1 line)",
            "tool rm {\"path\":\"/\"} → error: there is no tool `rm` in this phase; the tools are: read_file, submit_plan",
        ]
    );
}

#[tokio::test]
async fn changes_requested_then_approved() {
    let primary = ScriptedProvider::new(vec![submit("c1", "Ship"), submit("c2", "Ship on Friday")]);
    let reviewer = ScriptedProvider::new(vec![
        review_answer(
            "changes_requested",
            json!([{"severity": "major", "message": "Say when.",
                    "location": {"file": "PLAN.md", "line": 2}, "suggestion": "Add a day."}]),
        ),
        review_answer("approve", json!([])),
    ]);
    let ran = run(with_review(job(&primary), &reviewer, 3)).await;

    assert_eq!(
        ran.outcome.result,
        artifacts(json!({"plan": {"title": "Ship on Friday"}}))
    );
    let order: Vec<String> = ran
        .steps
        .iter()
        .map(|s| match s {
            Step::Exchange(e) => format!("{}#{}", e.conversation, e.turn),
            Step::ToolCall(c) => c.tool.clone(),
            Step::Review { round, .. } => format!("review {round}"),
        })
        .collect();
    assert_eq!(
        order,
        [
            "primary#1",
            "review-1#1",
            "review 1",
            "primary#2",
            "review-2#1",
            "review 2"
        ]
    );

    let seen = primary.seen();
    let revise = last_message(&seen[1]);
    assert_eq!(tool_result(revise, "c1"), ("accepted".into(), false));
    let findings = text_of(revise);
    assert!(
        findings.contains("[major] PLAN.md:2: Say when."),
        "{findings}"
    );
    assert!(findings.contains("Suggestion: Add a day."), "{findings}");
    assert_eq!(full_requests(&ran.exchanges("primary")), seen);

    let asked = reviewer.seen();
    let task = text_of(&asked[0].messages[0]);
    assert!(task.contains("Make a plan."), "{task}");
    assert!(task.contains("\"title\": \"Ship\""), "{task}");
    assert!(text_of(&asked[1].messages[0]).contains("Ship on Friday"));
    let tools: Vec<&str> = asked[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["read_file", "submit_review"]);
    assert_eq!(ran.exchanges("review-2")[0].model, "m2");
    assert_eq!(ran.outcome.usage.unwrap().requests, 4);
}

#[tokio::test]
async fn a_rejection_fails_the_attempt() {
    let primary = ScriptedProvider::new(vec![submit("c1", "Ship")]);
    let reviewer = ScriptedProvider::new(vec![review_answer("reject", json!([]))]);
    let ran = run(with_review(job(&primary), &reviewer, 3)).await;

    assert_eq!(
        ran.outcome.result,
        Err(AttemptError::Review {
            verdict: "rejected".into(),
            round: 1,
            summary: "Verdict: reject.".into(),
        })
    );
    assert!(matches!(
        ran.steps.last(),
        Some(Step::Review { round: 1, .. })
    ));
}

#[tokio::test]
async fn changes_requested_in_the_last_round_fail_the_attempt() {
    let primary = ScriptedProvider::new(vec![submit("c1", "Ship")]);
    let reviewer = ScriptedProvider::new(vec![review_answer("changes_requested", json!([]))]);
    let ran = run(with_review(job(&primary), &reviewer, 1)).await;

    assert_eq!(
        ran.outcome.result,
        Err(AttemptError::Review {
            verdict: "requested changes".into(),
            round: 1,
            summary: "Verdict: changes_requested.".into(),
        })
    );
    assert_eq!(primary.seen().len(), 1);
}

#[tokio::test]
async fn a_resumed_attempt_sends_only_what_is_new_and_runs_only_missing_calls() {
    // The first runner: two turns of tool calls, then the provider fails.
    let provider = ScriptedProvider::new(vec![
        answer(vec![
            say("Reading."),
            call("c1", "read_file", json!({"path": "a"})),
        ]),
        answer(vec![
            call("c2", "read_file", json!({"path": "b"})),
            call("c3", "read_file", json!({"path": "c"})),
        ]),
    ]);
    let first = run(job(&provider)).await;
    assert!(matches!(
        first.outcome.result,
        Err(AttemptError::Provider { .. })
    ));
    let mut journal = first.journal();
    assert_eq!(journal.exchanges.len(), 2);
    // Killed after c2 was recorded and before c3 was.
    let c3 = journal.tool_calls.pop().unwrap();
    assert_eq!(c3.call_id.as_deref(), Some("c3"));

    let provider = ScriptedProvider::new(vec![submit("c4", "Ship it")]);
    let mut resumed = job(&provider);
    resumed.journal = journal.clone();
    let ran = run(resumed).await;

    assert_eq!(
        ran.outcome.result,
        artifacts(json!({"plan": {"title": "Ship it"}}))
    );
    assert_eq!(ran.tool_inputs, vec![json!({"path": "c"})]);
    let calls = ran.tool_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call_id.as_deref(), Some("c3"));

    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    let new = ran.exchanges("primary");
    assert_eq!(new[0].turn, 3);
    assert_eq!((&new[0].system, &new[0].tools), (&None, &None));
    let all: Vec<Exchange> = journal.exchanges.iter().chain(&new).cloned().collect();
    assert_eq!(full_requests(&all)[2], seen[0]);
    let results = last_message(&seen[0]);
    assert_eq!(
        tool_result(results, "c2"),
        ("contents of b\n".into(), false)
    );
    assert_eq!(
        tool_result(results, "c3"),
        ("contents of c\n".into(), false)
    );
    assert!(ran.logged(Stream::Wfe).contains(
        &"tool read_file {\"path\":\"b\"} → ok (1 line, recorded before the restart)".to_string()
    ));
    assert_eq!(ran.outcome.usage.unwrap().requests, 3);
}

#[tokio::test]
async fn a_resumed_attempt_remembers_its_invalid_submissions() {
    let provider = ScriptedProvider::new(vec![submit("c1", "")]);
    let mut first = job(&provider);
    first.max_invalid_submissions = 1;
    let journal = run(first).await.journal();

    let provider = ScriptedProvider::new(vec![submit("c2", "")]);
    let mut resumed = job(&provider);
    resumed.max_invalid_submissions = 1;
    resumed.journal = journal;
    let ran = run(resumed).await;

    assert!(matches!(
        ran.outcome.result,
        Err(AttemptError::InvalidOutputs { .. })
    ));
    let (text, is_error) = tool_result(last_message(&provider.seen()[0]), "c1");
    assert!(is_error && text.contains("/title"), "{text}");
}

#[tokio::test]
async fn a_resumed_attempt_goes_on_with_its_review_rounds() {
    let primary = ScriptedProvider::new(vec![submit("c1", "Ship"), submit("c2", "Ship on Friday")]);
    let reviewer = ScriptedProvider::new(vec![review_answer("changes_requested", json!([]))]);
    let first = run(with_review(job(&primary), &reviewer, 2)).await;
    // The reviewer's provider failed in round 2.
    assert!(matches!(
        first.outcome.result,
        Err(AttemptError::Provider { .. })
    ));
    let journal = first.journal();
    assert_eq!(journal.reviews.len(), 1);

    let primary = ScriptedProvider::new(Vec::new());
    let reviewer = ScriptedProvider::new(vec![review_answer("approve", json!([]))]);
    let mut resumed = with_review(job(&primary), &reviewer, 2);
    resumed.journal = journal;
    let ran = run(resumed).await;

    assert_eq!(
        ran.outcome.result,
        artifacts(json!({"plan": {"title": "Ship on Friday"}}))
    );
    assert!(primary.seen().is_empty());
    let asked = reviewer.seen();
    assert_eq!(asked.len(), 1);
    assert!(text_of(&asked[0].messages[0]).contains("Ship on Friday"));
    assert!(matches!(
        ran.steps.as_slice(),
        [Step::Exchange(e), Step::Review { round: 2, .. }] if e.conversation == "review-2"
    ));
}

#[tokio::test]
async fn older_tool_results_are_trimmed_in_what_is_sent_only() {
    let read = |id: &str, path: &str| {
        answer(vec![call(
            id,
            "read_file",
            json!({"path": path, "size": 5000}),
        )])
    };
    let provider = ScriptedProvider::new(vec![
        read("c1", "a"),
        read("c2", "b"),
        read("c3", "c"),
        submit("c4", "Ship it"),
    ]);
    let mut job = job(&provider);
    job.primary.model_info.context_tokens = Some(2000);
    let ran = run(job).await;

    assert!(ran.outcome.result.is_ok());
    let exchanges = ran.exchanges("primary");
    let trimmed: Vec<Vec<String>> = exchanges.iter().map(|e| e.trimmed.clone()).collect();
    assert_eq!(trimmed, [vec![], vec![], vec!["c1"], vec!["c1", "c2"]]);

    let seen = provider.seen();
    let (sent, _) = tool_result(&seen[2].messages[2], "c1");
    assert_eq!(
        sent,
        "[trimmed: result of read_file (5014 chars) — call the tool again if you need it]"
    );
    let kept = full_requests(&exchanges);
    let (recorded, _) = tool_result(&kept[2].messages[2], "c1");
    assert_eq!(recorded.chars().count(), 5014);
    assert_eq!(kept[2].messages[4], seen[2].messages[4]);
    let notes = ran.logged(Stream::Wfe);
    assert!(
        notes
            .iter()
            .any(|l| l.starts_with("context: trimmed 1 older tool results (~")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn usage_and_cost_add_up_over_journal_and_reviewer() {
    let primary = ScriptedProvider::new(vec![answer(vec![say("Hmm.")]), submit("c1", "Ship")]);
    let reviewer = ScriptedProvider::new(vec![review_answer("approve", json!([]))]);
    let mut job = with_review(job(&primary), &reviewer, 1);
    job.primary.model_info.input_usd_per_mtok = Some(3.0);
    job.primary.model_info.output_usd_per_mtok = Some(15.0);
    let review = job.review.as_mut().unwrap();
    review.seat.model_info.input_usd_per_mtok = Some(1.0);
    review.seat.model_info.output_usd_per_mtok = Some(2.0);
    // One primary exchange of an earlier runner, with its own usage.
    let earlier = run(job.clone()).await;
    let mut resumed = job.clone();
    resumed.journal.exchanges = earlier.exchanges("primary")[..1].to_vec();
    resumed.journal.exchanges[0].response.usage = Usage {
        input_tokens: 1_000_000,
        output_tokens: 0,
    };
    let primary = ScriptedProvider::new(vec![submit("c1", "Ship")]);
    let reviewer = ScriptedProvider::new(vec![review_answer("approve", json!([]))]);
    resumed.primary = Seat {
        provider: primary.clone(),
        ..resumed.primary
    };
    resumed.review.as_mut().unwrap().seat.provider = reviewer.clone();
    let ran = run(resumed).await;

    assert!(ran.outcome.result.is_ok());
    let usage = ran.outcome.usage.unwrap();
    assert_eq!(usage.requests, 3);
    assert_eq!(usage.input_tokens, 1_000_200);
    assert_eq!(usage.output_tokens, 20);
    // 3.0 for the recorded million, 100 in + 10 out priced as primary, and
    // as reviewer.
    let expected = 3.0 + (100.0 * 3.0 + 10.0 * 15.0) / 1e6 + (100.0 * 1.0 + 10.0 * 2.0) / 1e6;
    assert!(
        (usage.cost_usd.unwrap() - expected).abs() < 1e-9,
        "{usage:?}"
    );

    // A model without prices makes the cost unknown.
    let primary = ScriptedProvider::new(vec![submit("c1", "Ship")]);
    let reviewer = ScriptedProvider::new(vec![review_answer("approve", json!([]))]);
    let unpriced = with_review(self::job(&primary), &reviewer, 1);
    assert_eq!(run(unpriced).await.outcome.usage.unwrap().cost_usd, None);
}

fn cut_off(content: Vec<Block>) -> Scripted {
    Scripted::Answer(ChatResponse {
        content,
        stop: StopReason::MaxTokens,
        usage: Usage {
            input_tokens: 100,
            output_tokens: 1000,
        },
    })
}

#[tokio::test]
async fn a_cut_off_answer_is_reported_and_the_model_asked_to_continue() {
    let provider = ScriptedProvider::new(vec![
        cut_off(vec![say("Here is a very long pl")]),
        submit("c1", "Ship it"),
    ]);
    let ran = run(job(&provider)).await;

    assert!(ran.outcome.result.is_ok(), "{:?}", ran.outcome.result);
    let seen = provider.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1], "never the same request again");
    let asked = text_of(last_message(&seen[1]));
    assert!(asked.contains("cut off"), "{asked}");
    assert!(asked.contains("1000 tokens"), "{asked}");
    assert!(!asked.contains("without submitting"), "{asked}");
    let wfe = ran.logged(Stream::Wfe);
    assert!(
        wfe.iter()
            .any(|l| l == "primary's answer was cut off at the output limit (max_tokens 1000)"),
        "{wfe:?}"
    );
    assert!(
        !wfe.iter().any(|l| l.contains("malformed")),
        "never called malformed: {wfe:?}"
    );
    assert_eq!(full_requests(&ran.exchanges("primary")), seen);
}

#[tokio::test]
async fn a_phase_without_outputs_does_not_end_on_a_cut_off_answer() {
    let provider = ScriptedProvider::new(vec![
        cut_off(vec![say("Half an ans")]),
        answer(vec![say("wer.")]),
    ]);
    let mut job = job(&provider);
    job.outputs.clear();
    let ran = run(job).await;

    assert_eq!(ran.outcome.result, Ok(BTreeMap::new()));
    assert_eq!(provider.seen().len(), 2);
}

#[tokio::test]
async fn answers_cut_off_again_and_again_fail_with_the_output_limit() {
    let provider = ScriptedProvider::new(vec![
        cut_off(vec![say("a")]),
        cut_off(vec![say("b")]),
        cut_off(vec![say("c")]),
        submit("c1", "never reached"),
    ]);
    let ran = run(job(&provider)).await;

    assert_eq!(
        ran.outcome.result,
        Err(AttemptError::OutputLimit {
            max_tokens: 1000,
            times: 3
        })
    );
    assert_eq!(provider.seen().len(), 3);
    let error = ran.outcome.result.unwrap_err().to_string();
    assert!(error.contains("max_tokens 1000"), "{error}");
}

#[tokio::test]
async fn a_provider_retry_is_a_line_and_the_discarded_text_is_marked() {
    let Scripted::Answer(mut response) = submit("c1", "Ship it") else {
        unreachable!()
    };
    response.content.insert(0, say("Fresh start.\n"));
    let provider = ScriptedProvider::new(vec![Scripted::Retried("Half a th", response)]);
    let ran = run(job(&provider)).await;

    assert!(ran.outcome.result.is_ok(), "{:?}", ran.outcome.result);
    let lines: Vec<(Stream, String)> = ran
        .outcome
        .log
        .iter()
        .map(|l| (l.stream, l.line.clone()))
        .collect();
    let at = lines
        .iter()
        .position(|(_, l)| l == "Half a th")
        .expect("the discarded attempt's text is its own line");
    assert_eq!(
        lines[at + 1],
        (
            Stream::Wfe,
            "provider `scripted`: attempt 1 of 5 failed: the stream broke: connection reset; \
             retrying in 2s; the 9 characters of text above from that attempt are discarded"
                .to_string()
        )
    );
    assert_eq!(lines[at + 2], (Stream::Model, "Fresh start.".to_string()));
}
