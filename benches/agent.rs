//! `cargo bench --bench agent`: what the agent loop costs per turn and per
//! tool call, next to what the same work costs without it.
//!
//! A fake Anthropic server on 127.0.0.1 (in this process, on its own thread)
//! answers every request at once with a pre-rendered SSE body, so what is
//! left is wfe's own work. Each question has a baseline timed in the same
//! run, every measurement is repeated and its median reported, and the
//! repetitions of compared things are interleaved so drift hits them alike:
//!
//! - (a) **Per turn, in-process**: `run_agent` over a conversation of
//!   `TURNS` turns (each answer calls `list_dir`, the last submits), its
//!   steps acked at once (no git), against the fake server; next to the same
//!   requests, byte for byte, sent by a bare reqwest client that reads each
//!   answer whole. The difference is the loop's overhead: building and
//!   serialising requests, parsing the stream, running the tool, recording
//!   steps. Also the same conversation with an in-process provider that
//!   answers instantly (the loop without HTTP), and whether a turn gets
//!   dearer as the conversation grows.
//! - (b) **Per tool call**: conversations whose answers each call
//!   `read_file` `CALLS` times vs once; the extra time per call, next to
//!   `std::fs::read_to_string` of the same file.
//! - (c) **Per turn, end to end**: the release `wfe` binary running an agent
//!   phase of `TURNS` turns in a fresh git repository, each exchange and
//!   tool call committed as a checkpoint, minus a one-turn run (start-up);
//!   next to the store writing the very same checkpoints again in-process
//!   (read back from the run, replayed into a fresh repository, trees
//!   checked identical), so a turn splits into HTTP + loop + checkpoints +
//!   the rest. The run creates the same files per checkpoint as the replay
//!   (5 loose objects, the ref lock, the reflog; checked with `strace`),
//!   but on a shared disk what creating a file costs swings several-fold
//!   from one minute to the next, between the run and its replay too; so
//!   the rows are repeated on tmpfs (`/dev/shm`, where present) to separate
//!   what wfe computes from what the disk charges.
//!
//! It prints figures and a summary against the goal (≤ 2 ms of overhead per
//! turn, plus the checkpoint cost); it never fails on a timing. It fails
//! only if something did not run as it should (a conversation that did not
//! end with the expected artifact, a missing step, trees that differ), since
//! its figures would then be lies.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tempfile::TempDir;

use common::{
    first_line, fmt_duration, git, isolate, mean, median_duration, output, ratio, tree_of,
};
use tokio::sync::watch;
use wfe::agent::{AgentJob, Journal, Progress, Seat, Step, run_agent};
use wfe::artifact::OutputSpec;
use wfe::artifact::{Schema, builtin_schema};
use wfe::attempt::{AttemptOutcome, LogLine, LogSink};
use wfe::engine::{CheckpointEvent, CheckpointMessage};
use wfe::provider::anthropic::Anthropic;
use wfe::provider::config::ModelEntry;
use wfe::provider::{
    Block, ChatRequest, ChatResponse, HttpConfig, Provider, ProviderError, ProviderErrorKind,
    RetrySettings, Secret, StopReason, TextSink, Usage, install_crypto,
};
use wfe::store::{Change, GitStore, Message, RunId, RunStore};
use wfe::testing::llm::{Bytes, FakeServer, Part, Reply, anthropic_stream};
use wfe::time::Clock;

/// Turns per conversation in (a) and (c): `TURNS - 1` tool turns, then a submit.
const TURNS: usize = 200;
/// Each figure is the median of this many measurements.
const REPEATS: usize = 5;
/// (b): `read_file` calls per answer, against one per answer.
const CALLS: usize = 20;
/// (b): answers per conversation (the last one submits too).
const CALL_TURNS: usize = 10;
/// (b) is cheap: more repeats make its small differences steadier.
const CALL_REPEATS: usize = 15;
/// Turns averaged to compare early with late turns of a conversation.
const WINDOW: usize = 20;
/// What every conversation submits: the artifact the checks expect.
const EXPECTED: &str = "nothing to change";
/// A fake key; the fake server never looks at it.
const KEY: &str = "sk-ant-bench";
const AUTHOR_NAME: &str = "wfe bench";
const AUTHOR_EMAIL: &str = "bench@wfe.invalid";
/// The model's context window: trimming is checked every turn, as in real configs.
const CONTEXT_TOKENS: u64 = 200_000;

/// The goal: agent overhead per turn, checkpoints aside.
const GOAL_TURN: Duration = Duration::from_millis(2);
/// Issue 13's goal: a turn end to end, checkpoints included, HTTP excluded.
const GOAL_TURN_E2E: Duration = Duration::from_millis(3);

fn main() {
    isolate(&["ANTHROPIC_API_KEY"]);
    // Repositories live on the project's filesystem, where users' runs are
    // written, not in /tmp (RAM-backed on many systems), unless TMPDIR says so.
    let base = std::env::var_os("TMPDIR")
        .map_or_else(|| env!("CARGO_TARGET_TMPDIR").into(), PathBuf::from);
    fs::create_dir_all(&base).expect("the bench's temp dir");
    let sandbox = tempfile::Builder::new()
        .prefix("wfe-agent-bench-")
        .tempdir_in(&base)
        .expect("a sandbox");
    // The end-to-end rows again on tmpfs, where creating a file is ~free:
    // what is left is what wfe computes.
    let tmpfs = Path::new("/dev/shm").is_dir().then(|| {
        tempfile::Builder::new()
            .prefix("wfe-agent-bench-")
            .tempdir_in("/dev/shm")
    });
    let tmpfs = tmpfs.and_then(Result::ok);
    install_crypto();
    let wfe = Path::new(env!("CARGO_BIN_EXE_wfe"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = FakeServer::spawn(Vec::new());

    println!("wfe agent benchmark: {}", wfe.display());
    println!(
        "  {} CPUs; {}; fake Anthropic server at {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_line(&output(Command::new("git").arg("--version"))),
        server.url(),
    );
    println!(
        "  repositories under {}{}; every figure is the median of {REPEATS} runs, interleaved",
        base.display(),
        if tmpfs.is_some() {
            ", (c) again under /dev/shm"
        } else {
            "; no /dev/shm, so no tmpfs rows"
        }
    );

    // `cargo bench --bench agent -- e2e` runs one part (`turns`, `calls`,
    // `e2e`), for digging into it; cargo itself passes `--bench`.
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let work = sandbox.path().join("work");
    write_tree(&work);
    let turns = wanted("turns").then(|| TurnResults::measure(&runtime, &server, &work));
    let calls = wanted("calls").then(|| CallResults::measure(&runtime, &work));
    let e2e = wanted("e2e").then(|| {
        let mut places = vec![sandbox.path()];
        places.extend(tmpfs.as_ref().map(TempDir::path));
        EndToEnd::measure(wfe, &places, &server)
    });
    summary(turns.as_ref(), calls.as_ref(), e2e.as_ref());
}

/// The small working tree every conversation's tools look at.
fn write_tree(dir: &Path) {
    fs::create_dir_all(dir.join("src")).expect("a src dir");
    fs::write(
        dir.join("README.md"),
        "# bench\n\nA repository for the agent bench.\n",
    )
    .expect("write README.md");
    let mut lib = String::from("//! A small library the bench's agent looks at.\n");
    for i in 0..40 {
        lib.push_str(&format!("pub fn f{i}(x: u32) -> u32 {{ x + {i} }}\n"));
    }
    fs::write(dir.join("src/lib.rs"), lib).expect("write src/lib.rs");
    fs::write(dir.join("src/main.rs"), "fn main() {}\n").expect("write src/main.rs");
}

// ---------------------------------------------------------------------------
// the conversations

/// One scripted answer: a line of text, then tool calls in order.
#[derive(Debug, Clone)]
struct Answer {
    text: String,
    calls: Vec<(&'static str, Value)>,
}

/// (a), (c): `turns - 1` answers that each list `src`, then a submission.
fn listing_conversation(turns: usize) -> Vec<Answer> {
    let mut answers: Vec<Answer> = (1..turns)
        .map(|turn| Answer {
            text: format!("Turn {turn}: let me look around.\n"),
            calls: vec![("list_dir", json!({ "path": "src" }))],
        })
        .collect();
    answers.push(submission(Vec::new()));
    answers
}

/// (b): `CALL_TURNS` answers that each read `src/lib.rs` `calls` times;
/// the last one submits as well.
fn reading_conversation(calls: usize) -> Vec<Answer> {
    let reads = || vec![("read_file", json!({ "path": "src/lib.rs" })); calls];
    let mut answers: Vec<Answer> = (1..CALL_TURNS)
        .map(|turn| Answer {
            text: format!("Turn {turn}: reading.\n"),
            calls: reads(),
        })
        .collect();
    answers.push(submission(reads()));
    answers
}

fn submission(mut calls: Vec<(&'static str, Value)>) -> Answer {
    calls.push(("submit_plan", json!({ "text": EXPECTED })));
    Answer {
        text: "Done.\n".into(),
        calls,
    }
}

/// The id of a tool call: unique in a conversation, the same over HTTP and in-process.
fn call_id(turn: usize, block: usize) -> String {
    format!("toolu_{turn}_{block}")
}

/// Answer number `turn` (from 1) as the neutral model has it.
fn chat_response(turn: usize, answer: &Answer) -> ChatResponse {
    let mut content = vec![Block::Text {
        text: answer.text.clone(),
    }];
    for (i, (name, input)) in answer.calls.iter().enumerate() {
        content.push(Block::ToolUse {
            id: call_id(turn, i + 1),
            name: (*name).to_string(),
            input: input.clone(),
        });
    }
    ChatResponse {
        content,
        stop: StopReason::ToolUse,
        usage: Usage {
            input_tokens: 100,
            output_tokens: 20,
        },
    }
}

/// Answer number `turn` (from 1) as Anthropic streams it: the events
/// `message_start`, `content_block_*` (text and JSON in two deltas each),
/// `message_delta`, `message_stop`.
fn sse_body(turn: usize, answer: &Answer) -> Bytes {
    let parts: Vec<Part> = std::iter::once(Part::Text(answer.text.clone()))
        .chain(
            answer
                .calls
                .iter()
                .map(|(name, input)| Part::Tool(name, input.clone())),
        )
        .collect();
    Bytes::from(anthropic_stream(turn, &parts, false))
}

/// What the server streams for each request of a conversation, in order.
fn sse_script(answers: &[Answer]) -> Arc<[Bytes]> {
    answers
        .iter()
        .enumerate()
        .map(|(i, answer)| sse_body(i + 1, answer))
        .collect()
}

/// The last event of every answer: a raw read must end with it.
const MESSAGE_STOP: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

// ---------------------------------------------------------------------------
// the fake server and the instant provider

/// Makes the fake server answer the next requests from `script`, from its
/// first answer, at once and whole, forgetting the requests so far.
fn load(server: &FakeServer, script: &Arc<[Bytes]>) {
    server.load(
        script
            .iter()
            .map(|answer| Reply::sse_body(vec![answer.clone()]))
            .collect(),
    );
}

/// A provider that answers at once, in-process: the loop without HTTP.
struct InstantProvider {
    answers: Vec<ChatResponse>,
}

impl InstantProvider {
    fn new(answers: &[Answer]) -> InstantProvider {
        InstantProvider {
            answers: answers
                .iter()
                .enumerate()
                .map(|(i, a)| chat_response(i + 1, a))
                .collect(),
        }
    }
}

impl Provider for InstantProvider {
    fn kind(&self) -> &'static str {
        "instant"
    }

    fn send<'a>(
        &'a self,
        request: &'a ChatRequest,
        stream: &'a dyn TextSink,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            // Turn n's request holds the prompt and n-1 answers with their results.
            let response = self
                .answers
                .get(request.messages.len() / 2)
                .cloned()
                .ok_or_else(|| {
                    ProviderError::new(ProviderErrorKind::Response, "past the end of the script")
                })?;
            for block in &response.content {
                if let Block::Text { text } = block {
                    stream.text(text);
                }
            }
            Ok(response)
        })
    }
}

// ---------------------------------------------------------------------------
// driving run_agent in-process

/// Shows nothing: the bench times the loop, not a terminal.
struct Quiet;

impl LogSink for Quiet {
    fn line(&self, _phase: &str, _line: &LogLine) {}
}

fn seat(provider: Arc<dyn Provider>) -> Seat {
    Seat {
        provider_name: "claude".into(),
        provider,
        model: "claude-bench".into(),
        max_tokens: 4096,
        model_info: ModelEntry {
            context_tokens: Some(CONTEXT_TOKENS),
            input_usd_per_mtok: Some(3.0),
            output_usd_per_mtok: Some(15.0),
        },
    }
}

fn anthropic(url: &str) -> Arc<dyn Provider> {
    Arc::new(Anthropic::new(HttpConfig {
        name: "claude".into(),
        base_url: url.to_string(),
        key: Some(Secret::new(KEY)),
        connect_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(60),
        // One attempt: a retried request would make the figures lies.
        retry: RetrySettings {
            max_attempts: 1,
            ..RetrySettings::default()
        },
    }))
}

fn agent_job(seat: Seat, work_dir: &Path, tool: &str, max_turns: usize) -> AgentJob {
    let text = builtin_schema("message").expect("the built-in `message` schema");
    let schema = Schema::compile(
        "message",
        "builtin",
        serde_json::from_str(text).expect("JSON"),
    )
    .expect("the `message` schema compiles");
    AgentJob {
        run: "01benchrun".into(),
        phase: "plan".into(),
        attempt: 1,
        primary: seat,
        system: Some("You are quick.".into()),
        prompt: "Look around, then submit a plan.".into(),
        tools: vec![tool.to_string()],
        work_dir: work_dir.to_path_buf(),
        outputs: vec![OutputSpec {
            name: "plan".into(),
            schema: Arc::new(schema),
        }],
        max_turns: u32::try_from(max_turns + 5).expect("a turn count"),
        max_invalid_submissions: 1,
        timeout: None,
        review: None,
        journal: Journal::default(),
        env_remove: Vec::new(),
        masker: Default::default(),
        max_log_bytes: wfe::attempt::DEFAULT_MAX_LOG_BYTES,
        processes: None,
        budget: wfe::agent::AgentBudget::default(),
    }
}

/// What one in-process conversation did.
struct Driven {
    wall: Duration,
    /// The time of each turn: from the previous exchange's step (or the
    /// start) to this one's.
    turns: Vec<Duration>,
}

/// Runs one attempt with every step acked at once; checks it ended with
/// the expected artifact after `turns` exchanges and `calls` tool calls,
/// none failed.
async fn drive(job: AgentJob, turns: usize, calls: usize) -> Driven {
    let (progress, mut steps) = Progress::channel();
    let start = Instant::now();
    let acker = tokio::spawn(async move {
        let (mut exchanges, mut tool_calls, mut failed) = (Vec::new(), 0, Vec::new());
        while let Some((step, ack)) = steps.recv().await {
            match step {
                Step::Exchange(_) => exchanges.push(Instant::now()),
                Step::ToolCall(call) => {
                    tool_calls += 1;
                    if let Some(error) = call.error {
                        failed.push(format!("{}: {error}", call.tool));
                    }
                }
                Step::Review { .. } => panic!("no review was asked for"),
            }
            let _ = ack.send(());
        }
        (exchanges, tool_calls, failed)
    });
    let (_cancel, cancel) = watch::channel(false);
    let outcome = run_agent(job, cancel, Arc::new(Quiet), progress, Clock::system()).await;
    let wall = start.elapsed();
    let (exchanges, tool_calls, failed) = acker.await.expect("the acking task");
    check_outcome(&outcome, turns);
    assert_eq!(exchanges.len(), turns, "one exchange step per turn");
    assert_eq!(tool_calls, calls, "one step per tool call");
    assert!(failed.is_empty(), "tool calls failed: {failed:?}");
    let mut previous = start;
    let turns = exchanges
        .into_iter()
        .map(|at| {
            let turn = at - previous;
            previous = at;
            turn
        })
        .collect();
    Driven { wall, turns }
}

fn check_outcome(outcome: &AttemptOutcome, turns: usize) {
    match &outcome.result {
        Ok(artifacts) => assert_eq!(
            artifacts.get("plan"),
            Some(&json!({ "text": EXPECTED })),
            "the conversation's artifact"
        ),
        Err(error) => panic!("the conversation failed: {error}"),
    }
    let usage = outcome.usage.clone().expect("an agent attempt's usage");
    assert_eq!(usage.requests as usize, turns, "requests sent");
}

/// The requests of a conversation sent by a bare client, each answer read
/// whole; returns each request's time.
async fn raw_http(client: &reqwest::Client, url: &str, bodies: &[Bytes]) -> Vec<Duration> {
    let mut each = Vec::with_capacity(bodies.len());
    for body in bodies {
        let start = Instant::now();
        let response = client
            .post(url)
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(body.clone())
            .send()
            .await
            .expect("a raw request");
        assert!(
            response.status().is_success(),
            "raw request: {}",
            response.status()
        );
        let answer = response.bytes().await.expect("a raw answer");
        assert!(answer.ends_with(MESSAGE_STOP), "a whole answer");
        each.push(start.elapsed());
    }
    each
}

fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .expect("a reqwest client")
}

// ---------------------------------------------------------------------------
// (a) per turn, in-process

/// Repeated samples of (a).
struct TurnResults {
    /// `run_agent` against the fake server: whole conversations.
    agent: Vec<Duration>,
    /// The same requests from a bare client.
    raw: Vec<Duration>,
    /// `run_agent` with the instant provider.
    instant: Vec<Duration>,
    /// Overhead per turn, mean of turns 2..=WINDOW+1 and of the last WINDOW.
    early: Vec<Duration>,
    late: Vec<Duration>,
    /// Bytes sent in the first and the last request.
    first_request: usize,
    last_request: usize,
}

impl TurnResults {
    fn measure(runtime: &tokio::runtime::Runtime, server: &FakeServer, work: &Path) -> Self {
        println!(
            "\n(a) a conversation of {TURNS} turns in-process ({} calling list_dir, then a \
             submission), steps acked at once",
            TURNS - 1
        );
        let answers = listing_conversation(TURNS);
        let script = sse_script(&answers);
        let url = format!("{}/v1/messages", server.url());
        let instant: Arc<dyn Provider> = Arc::new(InstantProvider::new(&answers));

        // A warm-up conversation, untimed, records the requests the bare
        // client then sends byte for byte.
        load(server, &script);
        runtime.block_on(drive(
            agent_job(seat(anthropic(server.url())), work, "list_dir", TURNS),
            TURNS,
            TURNS - 1,
        ));
        let bodies = server.bodies();
        assert_eq!(bodies.len(), TURNS, "one request per turn");

        let mut results = TurnResults {
            agent: Vec::new(),
            raw: Vec::new(),
            instant: Vec::new(),
            early: Vec::new(),
            late: Vec::new(),
            first_request: bodies[0].len(),
            last_request: bodies[TURNS - 1].len(),
        };
        for _ in 0..REPEATS {
            // Providers and clients are built before the clock starts; each
            // conversation opens its own connection, as a run does.
            let job = agent_job(seat(anthropic(server.url())), work, "list_dir", TURNS);
            load(server, &script);
            let agent = runtime.block_on(drive(job, TURNS, TURNS - 1));
            assert_eq!(
                server.request_count(),
                TURNS,
                "requests the server answered"
            );

            let client = raw_client();
            load(server, &script);
            let raw = runtime.block_on(raw_http(&client, &url, &bodies));
            assert_eq!(server.request_count(), TURNS, "raw requests answered");

            let job = agent_job(seat(instant.clone()), work, "list_dir", TURNS);
            let alone = runtime.block_on(drive(job, TURNS, TURNS - 1));

            results.agent.push(agent.wall);
            results.raw.push(raw.iter().sum());
            results.instant.push(alone.wall);
            let overhead = |range: std::ops::Range<usize>| {
                let agent: Duration = agent.turns[range.clone()].iter().sum();
                let raw: Duration = raw[range.clone()].iter().sum();
                agent.saturating_sub(raw) / range.len() as u32
            };
            results.early.push(overhead(1..WINDOW + 1));
            results.late.push(overhead(TURNS - WINDOW..TURNS));
        }

        let per_turn = |d: Duration| d / TURNS as u32;
        let (agent, raw, instant) = (results.agent(), results.raw(), results.instant());
        println!(
            "  run_agent, HTTP to the fake server   {:>9} = {:>9} per turn",
            fmt_duration(agent),
            fmt_duration(per_turn(agent))
        );
        println!(
            "  bare reqwest, the same requests      {:>9} = {:>9} per turn  (request + whole answer)",
            fmt_duration(raw),
            fmt_duration(per_turn(raw))
        );
        println!(
            "  agent overhead                       {:>9} = {:>9} per turn",
            fmt_duration(agent.saturating_sub(raw)),
            fmt_duration(results.overhead())
        );
        println!(
            "  run_agent, instant in-process answers {:>8} = {:>9} per turn  (the loop without HTTP)",
            fmt_duration(instant),
            fmt_duration(per_turn(instant))
        );
        println!(
            "  overhead per turn, turns 2-{}: {}; turns {}-{TURNS}: {} ({:.2}×); requests grow \
             from {:.1} KB to {:.1} KB",
            WINDOW + 1,
            fmt_duration(results.early_overhead()),
            TURNS - WINDOW + 1,
            fmt_duration(results.late_overhead()),
            ratio(results.late_overhead(), results.early_overhead()),
            results.first_request as f64 / 1024.0,
            results.last_request as f64 / 1024.0,
        );
        results
    }

    fn agent(&self) -> Duration {
        median_duration(self.agent.iter().copied())
    }
    fn raw(&self) -> Duration {
        median_duration(self.raw.iter().copied())
    }
    fn instant(&self) -> Duration {
        median_duration(self.instant.iter().copied())
    }
    /// The agent's own time per turn over HTTP: agent minus bare client.
    fn overhead(&self) -> Duration {
        self.agent().saturating_sub(self.raw()) / TURNS as u32
    }
    fn raw_per_turn(&self) -> Duration {
        self.raw() / TURNS as u32
    }
    fn early_overhead(&self) -> Duration {
        median_duration(self.early.iter().copied())
    }
    fn late_overhead(&self) -> Duration {
        median_duration(self.late.iter().copied())
    }
}

// ---------------------------------------------------------------------------
// (b) per tool call

/// Repeated samples of (b).
struct CallResults {
    /// Conversations of `CALL_TURNS` answers with `CALLS` reads each.
    many: Vec<Duration>,
    /// The same with one read each.
    one: Vec<Duration>,
    /// `std::fs::read_to_string` of the file, per read.
    raw_read: Vec<Duration>,
}

impl CallResults {
    /// The extra calls of a `many` conversation over a `one` conversation.
    const EXTRA: usize = CALL_TURNS * (CALLS - 1);

    fn measure(runtime: &tokio::runtime::Runtime, work: &Path) -> Self {
        println!(
            "\n(b) {CALL_TURNS} in-process turns whose answers each call read_file {CALLS}× vs 1× \
             (instant provider, steps acked at once)"
        );
        let many = Arc::new(InstantProvider::new(&reading_conversation(CALLS)));
        let one = Arc::new(InstantProvider::new(&reading_conversation(1)));
        let path = work.join("src/lib.rs");
        let size = fs::metadata(&path).expect("src/lib.rs").len();
        let run = |provider: &Arc<InstantProvider>, calls: usize| {
            let job = agent_job(seat(provider.clone()), work, "read_file", CALL_TURNS);
            runtime
                .block_on(drive(job, CALL_TURNS, CALL_TURNS * calls))
                .wall
        };
        // Warm-up: the blocking pool's threads, the file in the page cache.
        run(&many, CALLS);
        let mut results = CallResults {
            many: Vec::new(),
            one: Vec::new(),
            raw_read: Vec::new(),
        };
        for _ in 0..CALL_REPEATS {
            results.many.push(run(&many, CALLS));
            results.one.push(run(&one, 1));
            let start = Instant::now();
            for _ in 0..Self::EXTRA {
                let text = fs::read_to_string(&path).expect("read src/lib.rs");
                assert_eq!(text.len() as u64, size);
            }
            results.raw_read.push(start.elapsed() / Self::EXTRA as u32);
        }
        println!(
            "  {CALLS} reads per answer {:>9}; 1 read per answer {:>9}; {} extra calls: {} per call",
            fmt_duration(median_duration(results.many.iter().copied())),
            fmt_duration(median_duration(results.one.iter().copied())),
            Self::EXTRA,
            fmt_duration(results.per_call()),
        );
        println!(
            "  std::fs::read_to_string of the same {size}-byte file: {} per read; \
             overhead per call: {}",
            fmt_duration(results.raw_read()),
            fmt_duration(results.overhead()),
        );
        results
    }

    fn per_call(&self) -> Duration {
        let many = median_duration(self.many.iter().copied());
        let one = median_duration(self.one.iter().copied());
        many.saturating_sub(one) / Self::EXTRA as u32
    }
    fn raw_read(&self) -> Duration {
        median_duration(self.raw_read.iter().copied())
    }
    fn overhead(&self) -> Duration {
        self.per_call().saturating_sub(self.raw_read())
    }
}

// ---------------------------------------------------------------------------
// (c) end to end, checkpoints included

/// (c) where the goal is judged and, as context, on tmpfs.
struct EndToEnd {
    main: E2eRow,
    tmpfs: Option<E2eRow>,
}

/// Repeated samples of (c) in one place.
struct E2eRow {
    /// Where its repositories are made.
    place: PathBuf,
    /// `wfe run` of a `TURNS`-turn agent phase, whole process.
    long: Vec<Duration>,
    /// `wfe run` of a one-turn agent phase: start-up, run creation, the end.
    short: Vec<Duration>,
    /// The store writing the long runs' checkpoints again, whole loop.
    replay: Vec<Duration>,
    /// Checkpoints of the long run from its first step to its last.
    replayed: usize,
    /// Mean time of the first and of the last `2 × WINDOW` replayed checkpoints.
    replay_early: Vec<Duration>,
    replay_late: Vec<Duration>,
    /// Commits holding an agent step, long run and short run.
    steps_long: usize,
    steps_short: usize,
    /// Checkpoints of each run in all.
    commits_long: usize,
    commits_short: usize,
    /// `exchanges.jsonl` at the end of the long run, bytes.
    exchanges_bytes: usize,
}

impl EndToEnd {
    fn measure(wfe: &Path, places: &[&Path], server: &FakeServer) -> Self {
        println!(
            "\n(c) the release binary: an agent phase of {TURNS} turns vs 1 turn, every step \
             a checkpoint, in a fresh repository"
        );
        let long_script = sse_script(&listing_conversation(TURNS));
        let short_script = sse_script(&listing_conversation(1));
        let mut rows: Vec<E2eRow> = places.iter().map(|place| E2eRow::new(place)).collect();
        for row in &rows {
            // Warm-up: the binary and git in the page cache.
            let repo = e2e_repo(&row.place, server.url());
            run_wfe(wfe, &repo, server, &short_script, 1);
        }
        for _ in 0..REPEATS {
            for row in &mut rows {
                row.sample(wfe, server, &long_script, &short_script);
            }
        }
        for row in &rows {
            row.print();
        }
        let mut rows = rows.into_iter();
        EndToEnd {
            main: rows.next().expect("the main place"),
            tmpfs: rows.next(),
        }
    }
}

impl E2eRow {
    fn new(place: &Path) -> E2eRow {
        E2eRow {
            place: place.to_path_buf(),
            long: Vec::new(),
            short: Vec::new(),
            replay: Vec::new(),
            replayed: 0,
            replay_early: Vec::new(),
            replay_late: Vec::new(),
            steps_long: 0,
            steps_short: 0,
            commits_long: 0,
            commits_short: 0,
            exchanges_bytes: 0,
        }
    }

    /// One long run, one short run, one replay of the long run.
    fn sample(
        &mut self,
        wfe: &Path,
        server: &FakeServer,
        long_script: &Arc<[Bytes]>,
        short_script: &Arc<[Bytes]>,
    ) {
        // Repositories are removed once the three are done, not while
        // something is timed.
        let long_repo = e2e_repo(&self.place, server.url());
        let long = run_wfe(wfe, &long_repo, server, long_script, TURNS);
        let plan = Replay::read(long_repo.path(), &long.run);
        let short_repo = e2e_repo(&self.place, server.url());
        let short = run_wfe(wfe, &short_repo, server, short_script, 1);
        let replay = plan.run(&self.place);

        self.long.push(long.wall);
        self.short.push(short.wall);
        self.replay.push(replay.wall);
        self.replayed = replay.each.len();
        let window = 2 * WINDOW;
        self.replay_early.push(mean(&replay.each[..window]));
        self.replay_late
            .push(mean(&replay.each[replay.each.len() - window..]));
        self.steps_long = long.steps;
        self.steps_short = short.steps;
        self.commits_long = long.commits;
        self.commits_short = short.commits;
        self.exchanges_bytes = long.exchanges_bytes;
    }

    fn print(&self) {
        println!("  under {}:", self.place.display());
        println!(
            "    wfe run, {TURNS} turns {:>9} ({} checkpoints, {} holding a step); 1 turn {:>9} \
             ({} checkpoints)",
            fmt_duration(self.long()),
            self.commits_long,
            self.steps_long,
            fmt_duration(self.short()),
            self.commits_short,
        );
        println!(
            "    per turn ({TURNS} vs 1 turn): {}, with {:.2} checkpoints holding a step",
            fmt_duration(self.per_turn()),
            self.steps_per_turn(),
        );
        println!(
            "    GitStore writing the same {} checkpoints again: {} = {} per checkpoint \
             (trees checked identical)",
            self.replayed,
            fmt_duration(median_duration(self.replay.iter().copied())),
            fmt_duration(self.per_checkpoint()),
        );
        let (early, late) = (
            median_duration(self.replay_early.iter().copied()),
            median_duration(self.replay_late.iter().copied()),
        );
        println!(
            "    a checkpoint, mean of the first {0}: {1}; of the last {0}: {2} ({3:.2}×), \
             while exchanges.jsonl, rewritten whole each turn, grows to {4:.0} KB",
            2 * WINDOW,
            fmt_duration(early),
            fmt_duration(late),
            ratio(late, early),
            self.exchanges_bytes as f64 / 1024.0,
        );
    }

    fn long(&self) -> Duration {
        median_duration(self.long.iter().copied())
    }
    fn short(&self) -> Duration {
        median_duration(self.short.iter().copied())
    }
    /// One tool turn end to end: the long run less the short one, per extra turn.
    fn per_turn(&self) -> Duration {
        self.long().saturating_sub(self.short()) / (TURNS - 1) as u32
    }
    fn steps_per_turn(&self) -> f64 {
        (self.steps_long - self.steps_short) as f64 / (TURNS - 1) as f64
    }
    fn per_checkpoint(&self) -> Duration {
        median_duration(self.replay.iter().copied()) / self.replayed.max(1) as u32
    }
    /// What a turn's checkpoints cost the store.
    fn checkpoints_per_turn(&self) -> Duration {
        self.per_checkpoint().mul_f64(self.steps_per_turn())
    }
}

/// A fresh repository with the working tree, a provider pointing at the
/// fake server and a one-phase agent template.
fn e2e_repo(sandbox: &Path, url: &str) -> TempDir {
    let repo = tempfile::tempdir_in(sandbox).expect("a repo dir");
    let path = repo.path();
    git(path, &["init", "-q", "-b", "main"]);
    git(path, &["config", "user.name", AUTHOR_NAME]);
    git(path, &["config", "user.email", AUTHOR_EMAIL]);
    write_tree(path);
    git(path, &["add", "-A"]);
    git(path, &["commit", "-q", "-m", "initial commit"]);
    let config = json!({
        "providers": {
            "claude": {
                "kind": "anthropic",
                "base_url": url,
                "retry": { "max_attempts": 1 }
            }
        },
        "roles": { "primary": { "provider": "claude", "model": "claude-bench" } },
        "models": {
            "claude-bench": {
                "context_tokens": CONTEXT_TOKENS,
                "input_usd_per_mtok": 3.0,
                "output_usd_per_mtok": 15.0
            }
        }
    });
    let template = json!({
        "name": "bench-agent",
        "phases": [{
            "id": "plan", "kind": "agent", "role": "primary",
            "system": "You are quick.",
            "prompt": "Look around, then submit a plan.",
            "tools": ["list_dir"],
            "outputs": { "plan": "message" },
            "max_turns": TURNS + 5,
            "max_invalid_submissions": 1
        }]
    });
    fs::create_dir_all(path.join(".wfe/templates")).expect("a .wfe dir");
    fs::write(path.join(".wfe/config.json"), config.to_string()).expect("write the config");
    fs::write(
        path.join(".wfe/templates/bench-agent.json"),
        template.to_string(),
    )
    .expect("write the template");
    repo
}

/// One timed `wfe run`.
struct E2eSample {
    wall: Duration,
    run: RunId,
    /// Checkpoints holding an agent step (an exchange or a tool call).
    steps: usize,
    /// Checkpoints of the run in all.
    commits: usize,
    /// The size of its `exchanges.jsonl`.
    exchanges_bytes: usize,
}

/// Runs the template against `script` and checks the run: completed, the
/// artifact, one exchange per turn and one good tool call per tool turn.
fn run_wfe(
    wfe: &Path,
    repo: &TempDir,
    server: &FakeServer,
    script: &Arc<[Bytes]>,
    turns: usize,
) -> E2eSample {
    load(server, script);
    let start = Instant::now();
    let out = Command::new(wfe)
        .args(["run", "bench-agent", "--json", "--no-output"])
        .current_dir(repo.path())
        .env("ANTHROPIC_API_KEY", KEY)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("spawn wfe");
    let wall = start.elapsed();
    assert!(out.status.success(), "wfe run failed: {}", out.status);
    assert_eq!(
        server.request_count(),
        turns,
        "requests the server answered"
    );
    let run: Value = serde_json::from_slice(&out.stdout).expect("wfe --json prints JSON");
    assert_eq!(run["status"], "completed", "the run did not complete");

    let dir = repo.path();
    let refs = git(
        dir,
        &["for-each-ref", "--format=%(refname)", "refs/wfe/runs/"],
    );
    let run_ref = refs.trim();
    assert_eq!(run_ref.lines().count(), 1, "one run ref: {refs}");
    let show = |file: &str| git(dir, &["show", &format!("{run_ref}:phases/plan/{file}")]);
    let plan: Value = serde_json::from_str(&show("artifacts/plan.json")).expect("plan.json");
    assert_eq!(plan, json!({ "text": EXPECTED }), "the run's artifact");
    let exchanges = show("exchanges.jsonl");
    assert_eq!(exchanges.lines().count(), turns, "one exchange per turn");
    let calls = if turns > 1 {
        show("tool-calls.jsonl")
    } else {
        String::new()
    };
    assert_eq!(
        calls.lines().count(),
        turns - 1,
        "one tool call per tool turn"
    );
    for line in calls.lines() {
        let call: Value = serde_json::from_str(line).expect("a tool-call line");
        assert!(call["error"].is_null(), "a tool call failed: {line}");
    }

    let run = RunId::parse(run_ref.trim_start_matches("refs/wfe/runs/")).expect("a run id");
    let store = GitStore::discover(dir).expect("open the store");
    let history = store.history(&run).expect("the run's history");
    let steps = history.iter().filter(|c| is_step(&c.message)).count();
    E2eSample {
        wall,
        run,
        steps,
        commits: history.len(),
        exchanges_bytes: exchanges.len(),
    }
}

/// Whether a checkpoint holds an agent's step.
fn is_step(message: &Message) -> bool {
    CheckpointMessage::parse(message).events.iter().any(|n| {
        matches!(
            n.event,
            CheckpointEvent::AgentExchange | CheckpointEvent::ToolCall
        )
    })
}

/// The checkpoints of a run from its first step to its last, read back
/// to be written again by the store.
struct Replay {
    /// Every file of the checkpoint before the first step.
    base: Vec<Change>,
    /// Each checkpoint's changes, message and time.
    commits: Vec<(Vec<Change>, Message, i64)>,
    /// The tree of the last one.
    tree: String,
}

impl Replay {
    fn read(repo: &Path, run: &RunId) -> Replay {
        let store = GitStore::discover(repo).expect("open the store");
        let mut history = store.history(run).expect("the run's history");
        history.reverse();
        let first = history
            .iter()
            .position(|c| is_step(&c.message))
            .expect("a step checkpoint");
        let last = history
            .iter()
            .rposition(|c| is_step(&c.message))
            .expect("a step checkpoint");
        let base = history[first]
            .parent
            .clone()
            .expect("a checkpoint before the steps");
        let read = |at: &wfe::store::CheckpointId, path: &str| {
            store
                .read(at, path)
                .expect("read a file")
                .expect("a file the diff names")
        };
        let files = git(
            repo,
            &["ls-tree", "-r", "--name-only", "--full-tree", &base.0],
        );
        let base = files
            .lines()
            .map(|path| Change::write(path, read(&base, path)))
            .collect();

        // One process for every diff: `diff-tree --stdin` prints each
        // commit's id, then its raw diff against its parent.
        let ids: String = history[first..=last]
            .iter()
            .map(|c| format!("{}\n", c.id.0))
            .collect();
        let diffs = git_stdin(
            repo,
            &[
                "diff-tree",
                "--stdin",
                "-r",
                "--raw",
                "--no-abbrev",
                "--no-renames",
            ],
            ids.as_bytes(),
        );
        let mut changes: Vec<Vec<Change>> = Vec::new();
        for line in diffs.lines().filter(|l| !l.is_empty()) {
            let Some(entry) = line.strip_prefix(':') else {
                changes.push(Vec::new());
                continue;
            };
            let (meta, path) = entry.split_once('\t').expect("a raw diff line");
            let status = meta.split(' ').nth(4).expect("a status");
            let at = &history[first + changes.len() - 1].id;
            let change = match status {
                "D" => Change::Remove {
                    path: path.to_string(),
                },
                "A" | "M" => Change::write(path, read(at, path)),
                other => panic!("unexpected diff status {other} for {path}"),
            };
            changes
                .last_mut()
                .expect("a commit line first")
                .push(change);
        }
        assert_eq!(changes.len(), last - first + 1, "a diff per checkpoint");
        let commits = changes
            .into_iter()
            .zip(&history[first..=last])
            .map(|(changes, c)| (changes, c.message.clone(), c.time))
            .collect();
        Replay {
            base,
            commits,
            tree: tree_of(repo, &history[last].id.0),
        }
    }

    /// Writes the base untimed, then the checkpoints timed, into a fresh
    /// repository; checks the last tree is the run's.
    fn run(&self, sandbox: &Path) -> ReplaySample {
        let repo = tempfile::tempdir_in(sandbox).expect("a replay repo");
        git(repo.path(), &["init", "-q", "-b", "main"]);
        let store = GitStore::discover(repo.path()).expect("open the store");
        let run = RunId::generate();
        let (_, message, time) = &self.commits[0];
        let mut tip = store
            .commit(&run, None, &self.base, message, *time)
            .expect("the base checkpoint");
        let mut each = Vec::with_capacity(self.commits.len());
        let start = Instant::now();
        for (changes, message, time) in &self.commits {
            let one = Instant::now();
            tip = store
                .commit(&run, Some(&tip), changes, message, *time)
                .expect("a checkpoint");
            each.push(one.elapsed());
        }
        let wall = start.elapsed();
        assert_eq!(
            tree_of(repo.path(), &tip.0),
            self.tree,
            "the replayed checkpoints' tree"
        );
        ReplaySample { wall, each }
    }
}

/// The store writing a run's checkpoints again.
struct ReplaySample {
    wall: Duration,
    /// Each checkpoint's time, in order.
    each: Vec<Duration>,
}

// ---------------------------------------------------------------------------
// the summary

fn summary(turns: Option<&TurnResults>, calls: Option<&CallResults>, e2e: Option<&EndToEnd>) {
    println!(
        "\nsummary (in-process timings vary ±20% on a noisy machine; on a shared disk, \
         checkpoints several-fold)"
    );
    let goal = fmt_duration(GOAL_TURN);
    if let Some(turns) = turns {
        let overhead = turns.overhead();
        println!(
            "  per turn, in-process: run_agent {} − bare HTTP {} = overhead {}  (goal ≤ {goal}: {})",
            fmt_duration(turns.agent() / TURNS as u32),
            fmt_duration(turns.raw_per_turn()),
            fmt_duration(overhead),
            if overhead <= GOAL_TURN {
                "met"
            } else {
                "MISSED"
            },
        );
        println!(
            "    the loop alone (instant provider, no HTTP): {} per turn",
            fmt_duration(turns.instant() / TURNS as u32)
        );
    }
    if let Some(calls) = calls {
        println!(
            "  per tool call: {} − read_to_string {} = overhead {}",
            fmt_duration(calls.per_call()),
            fmt_duration(calls.raw_read()),
            fmt_duration(calls.overhead()),
        );
    }
    if let Some(e2e) = e2e {
        end_to_end(&e2e.main, turns, true);
        if let Some(tmpfs) = &e2e.tmpfs {
            end_to_end(tmpfs, turns, false);
            let disk = |row: &E2eRow| secs(row.per_turn());
            let replayed = |row: &E2eRow| secs(row.checkpoints_per_turn());
            let (run, replay) = (
                disk(&e2e.main) - disk(tmpfs),
                replayed(&e2e.main) - replayed(tmpfs),
            );
            println!(
                "  the disk adds {} per turn to the run (disk − tmpfs) and {} to the replayed \
                 checkpoints, which create the same 7 files per checkpoint: the gap ({}) is \
                 filesystem time counted in `rest`, and swings from run to run",
                fmt_secs(run),
                fmt_secs(replay),
                fmt_secs(run - replay),
            );
        }
    }
}

/// A turn end to end split into its parts, and the goal: judged where
/// users' runs are written, shown as context on tmpfs.
fn end_to_end(row: &E2eRow, turns: Option<&TurnResults>, judged: bool) {
    let place = if judged { "" } else { " (tmpfs)" };
    let total = secs(row.per_turn());
    let checkpoints = secs(row.checkpoints_per_turn());
    let Some(turns) = turns else {
        println!(
            "  per turn, end to end{place}: {} of which checkpoints {} (run `turns` too for the rest)",
            fmt_secs(total),
            fmt_secs(checkpoints)
        );
        return;
    };
    let (http, overhead) = (secs(turns.raw_per_turn()), secs(turns.overhead()));
    println!(
        "  per turn, end to end{place}: {} = HTTP {} + loop {} + checkpoints {} ({:.2} × {}) \
         + rest {}",
        fmt_secs(total),
        fmt_secs(http),
        fmt_secs(overhead),
        fmt_secs(checkpoints),
        row.steps_per_turn(),
        fmt_duration(row.per_checkpoint()),
        fmt_secs(total - http - overhead - checkpoints),
    );
    let beyond = total - http - checkpoints;
    let verdict = match (judged, beyond <= secs(GOAL_TURN)) {
        (false, _) => "(context)",
        (true, true) => "met",
        (true, false) => "MISSED",
    };
    // Issue 13's goal: the whole turn, checkpoints included, HTTP aside.
    let without_http = total - http;
    println!(
        "  issue 13 goal{place}: end to end excluding HTTP {} − {} = {} ≤ {}: {}",
        fmt_secs(total),
        fmt_secs(http),
        fmt_secs(without_http),
        fmt_duration(GOAL_TURN_E2E),
        match (judged, without_http <= secs(GOAL_TURN_E2E)) {
            (false, _) => "(context)",
            (true, true) => "met",
            (true, false) => "MISSED",
        }
    );
    println!(
        "  goal{place}: ≤ {} per turn plus the checkpoint cost: {} − HTTP {} − checkpoints {} \
         = {}: {verdict}",
        fmt_duration(GOAL_TURN),
        fmt_secs(total),
        fmt_secs(http),
        fmt_secs(checkpoints),
        fmt_secs(beyond),
    );
}

// ---------------------------------------------------------------------------
// helpers

/// Runs git with `input` on stdin.
fn git_stdin(dir: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn git");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write to git");
    let out = child.wait_with_output().expect("wait for git");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).expect("git prints UTF-8")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A difference of durations, which may come out negative in noise.
fn fmt_secs(secs: f64) -> String {
    let text = fmt_duration(Duration::from_secs_f64(secs.abs()));
    if secs < 0.0 {
        format!("−{text}")
    } else {
        text
    }
}
