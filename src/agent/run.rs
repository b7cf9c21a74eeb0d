//! The agent loop: one attempt of an agent phase, from the first request to
//! valid artifacts or a typed error.
//!
//! The loop sends the conversation to the model, answers its tool calls
//! (running tools, validating `submit_<artifact>` calls), and goes on until
//! every declared output has a valid submission; then, if the phase asks
//! for one, a reviewer gives a second opinion (`review.rs`). Every exchange
//! and tool call is handed to the engine as a [`Step`] and committed before
//! the loop goes on. A resumed attempt walks the same path over its
//! journal: recorded exchanges are adopted instead of sent and recorded tool
//! calls reused instead of run, so nothing is asked or done twice.
//!
//! It never touches the store and never panics on what a model sends: every
//! failure is an [`AttemptError`] in the outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::watch;

use super::budget::Moment;
use super::conversation::{Conversation, recorded_call, recorded_exchange, tool_uses};
use super::review::{self, Verdict};
use super::submit::Submissions;
use super::tools::{ToolOutcome, Toolbox};
use super::trim::trim;
use super::{AgentJob, Progress, Step, ToolCall};
use crate::attempt::{AttemptError, AttemptLog, AttemptOutcome, AttemptUsage, LogSink, Stream};
use crate::budget::Spend;
use crate::process::{cancelled, deadline};
use crate::provider::config::ModelEntry;
use crate::provider::{Block, ChatResponse, StopReason, TextSink, ToolSpec, Usage};
use crate::retry::DurationSpec;
use crate::template::Tool;
use crate::time::Clock;

/// The primary conversation's name in exchanges.
pub(super) const PRIMARY: &str = "primary";

/// Answers cut off by the output limit in a row before the attempt fails:
/// by then asking for shorter answers has not helped, and only a higher
/// `max_tokens` will.
const MAX_CUT_OFFS: u32 = 3;

/// Longest tool input shown in a log line.
const LOG_INPUT_CHARS: usize = 80;

/// Longest tool error shown in a log line.
const LOG_ERROR_CHARS: usize = 120;

/// Runs one attempt of an agent phase; `cancel` turning true stops it at
/// once (an in-flight request or tool call is dropped).
///
/// The model's streamed text goes to `sink` line by line as
/// [`Stream::Model`], wfe's own notes (tool calls, trimming, reviews) as
/// [`Stream::Wfe`]; all are in the outcome's log too. Each exchange, tool
/// call and review is recorded through `progress` before the loop goes on.
/// The outcome always carries the attempt's usage, journal included.
pub async fn run_agent(
    job: AgentJob,
    cancel: watch::Receiver<bool>,
    sink: Arc<dyn LogSink>,
    progress: Progress,
    clock: Clock,
) -> AttemptOutcome {
    let primary = Toolbox::new(&job.work_dir, &job.tools)
        .with_trailers(&job.run, &job.phase)
        .without_env(&job.env_remove);
    // A reviewer reads; it never changes what it reviews.
    let read_only: Vec<String> = job
        .tools
        .iter()
        .filter(|t| Tool::from_name(t).is_some_and(Tool::is_read_only))
        .cloned()
        .collect();
    let reviewer = Toolbox::new(&job.work_dir, &read_only).without_env(&job.env_remove);
    match job.processes.clone() {
        // Every process the attempt starts (tool calls, a CLI agent) is
        // recorded while it runs, so a runner that dies leaves none behind
        // for the next one to race.
        Some(recorder) => {
            let run = run_with(job, &primary, &reviewer, cancel, sink, progress, clock);
            crate::process::recording(std::sync::Arc::new(recorder), run).await
        }
        None => run_with(job, &primary, &reviewer, cancel, sink, progress, clock).await,
    }
}

/// The tools a conversation offers besides its submit tools: the phase's
/// [`Toolbox`], or a stand-in in tests.
pub(super) trait Tools: Send + Sync {
    /// The tools' specs, for the model.
    fn specs(&self) -> Vec<ToolSpec>;
    /// Runs one call.
    fn call<'a>(&'a self, tool: &'a str, input: &'a Value) -> BoxFuture<'a, ToolOutcome>;
}

impl Tools for Toolbox {
    fn specs(&self) -> Vec<ToolSpec> {
        Toolbox::specs(self)
    }

    fn call<'a>(&'a self, tool: &'a str, input: &'a Value) -> BoxFuture<'a, ToolOutcome> {
        Box::pin(Toolbox::call(self, tool, input))
    }
}

/// [`run_agent`] with its tools given. `job.timeout` counts from this call:
/// a resumed attempt gets it afresh, since the time its first runner spent
/// is not known.
pub(super) async fn run_with(
    job: AgentJob,
    primary: &dyn Tools,
    reviewer: &dyn Tools,
    mut cancel: watch::Receiver<bool>,
    sink: Arc<dyn LogSink>,
    progress: Progress,
    clock: Clock,
) -> AttemptOutcome {
    let log = AttemptLog::new(&job.phase, job.attempt, sink, clock)
        .capped(job.max_log_bytes)
        .masking(job.masker.clone());
    let tally = Mutex::new(Tally::from_journal(&job));
    let started = Instant::now();
    let attempt = Attempt {
        job: &job,
        progress: &progress,
        clock,
        log: &log,
        tally: &tally,
        started,
    };
    // A wall limit holds during a long answer or tool call too.
    let wall = job.budget.wall_left(job.budget.wall_before);
    let ended = tokio::select! {
        biased;
        () = cancelled(&mut cancel) => {
            log.push(Stream::Wfe, "stopped: cancelled".into());
            Err(Failure::from(AttemptError::Cancelled))
        }
        after = deadline(job.timeout) => {
            let after = DurationSpec(after).to_string();
            log.push(Stream::Wfe, format!("stopped: timed out after {after}"));
            Err(Failure::from(AttemptError::TimedOut { after }))
        }
        _ = deadline(wall.map(|(_, left)| left)) => {
            let error = wall.map_or(AttemptError::Cancelled, |(scope, _)| job.budget.wall_reached(scope));
            log.push(Stream::Wfe, format!("stopped: {error}"));
            Err(Failure::from(error))
        }
        result = attempt.drive(primary, reviewer) => result,
    };
    let (result, rejected) = match ended {
        Ok(artifacts) => (Ok(artifacts), Vec::new()),
        Err(failure) => (Err(failure.error), failure.rejected),
    };
    let running = started.elapsed();
    job.budget.meter.add(&Spend {
        wall_ms: millis(running),
        ..Spend::zero()
    });
    let mut usage = tally
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .usage(&job.primary);
    usage.wall_ms = millis(job.budget.wall_before.saturating_add(running));
    // Under a budget, the spend goes in the log, so `wfe log` and the
    // search index have it too.
    if job.budget.phase.is_some() || job.budget.run.is_some() {
        log.push(
            Stream::Wfe,
            format!("spent: {}", Spend::of_usage(&usage).summary()),
        );
    }
    AttemptOutcome {
        result,
        exit_code: None,
        log: log.take(),
        rejected,
        usage: Some(usage),
        files: Vec::new(),
    }
}

/// Why an attempt ended without artifacts, with the submissions rejected.
#[derive(Debug)]
pub(super) struct Failure {
    error: AttemptError,
    rejected: Vec<(String, Vec<u8>)>,
}

impl From<AttemptError> for Failure {
    fn from(error: AttemptError) -> Failure {
        Failure {
            error,
            rejected: Vec::new(),
        }
    }
}

/// The tools of one conversation: its [`Tools`] and its submit tools.
pub(super) struct Toolset<'a> {
    tools: &'a dyn Tools,
    /// Every spec the model gets, submit tools last.
    specs: Vec<ToolSpec>,
    /// The names of `tools`' tools.
    offered: BTreeSet<String>,
}

impl<'a> Toolset<'a> {
    /// `tools` plus the submit tools of `submissions`.
    pub(super) fn new(tools: &'a dyn Tools, submissions: &Submissions) -> Toolset<'a> {
        let mut specs = tools.specs();
        let offered = specs.iter().map(|s| s.name.clone()).collect();
        specs.extend(submissions.specs());
        Toolset {
            tools,
            specs,
            offered,
        }
    }

    /// Every spec the model gets.
    pub(super) fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    fn unknown(&self, tool: &str) -> String {
        let names: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
        format!(
            "there is no tool `{tool}` in this phase; the tools are: {}",
            names.join(", ")
        )
    }
}

/// One attempt in progress: the job and where its steps, lines and usage go.
pub(super) struct Attempt<'a> {
    /// What the engine asked for.
    pub job: &'a AgentJob,
    progress: &'a Progress,
    clock: Clock,
    /// The attempt's log.
    pub log: &'a AttemptLog,
    tally: &'a Mutex<Tally>,
    /// When this runner started the attempt (its wall time counts from here).
    started: Instant,
}

impl Attempt<'_> {
    /// The primary conversation, then review rounds, until the attempt ends.
    async fn drive(
        &self,
        primary_tools: &dyn Tools,
        reviewer_tools: &dyn Tools,
    ) -> Result<BTreeMap<String, Value>, Failure> {
        let job = self.job;
        let journal = &job.journal;
        if !journal.exchanges.is_empty() || !journal.tool_calls.is_empty() {
            self.log.push(
                Stream::Wfe,
                format!(
                    "resuming: {} exchanges, {} tool calls and {} reviews already recorded",
                    journal.exchanges.len(),
                    journal.tool_calls.len(),
                    journal.reviews.len()
                ),
            );
        }
        let mut submissions = Submissions::new(&job.outputs, job.max_invalid_submissions);
        let toolset = Toolset::new(primary_tools, &submissions);
        let mut conversation = Conversation::new(
            PRIMARY,
            job.primary.clone(),
            job.system.clone(),
            toolset.specs().to_vec(),
            job.prompt.clone(),
        );
        let mut round = 1;
        loop {
            self.converse(&mut conversation, &mut submissions, &toolset)
                .await?;
            let artifacts = submissions.accepted().clone();
            // No rounds means no second opinion, not an attempt that can never pass.
            let Some(review) = job.review.as_ref().filter(|r| r.rounds > 0) else {
                return Ok(artifacts);
            };
            let doc = review::review_round(self, review, round, &artifacts, reviewer_tools).await?;
            let summary = review::summary(&doc);
            match review::verdict(&doc) {
                Verdict::Approve => return Ok(artifacts),
                Verdict::Reject => {
                    return Err(Failure::from(AttemptError::Review {
                        verdict: "rejected".into(),
                        round,
                        summary,
                    }));
                }
                Verdict::ChangesRequested if round >= review.rounds => {
                    return Err(Failure::from(AttemptError::Review {
                        verdict: "requested changes".into(),
                        round,
                        summary,
                    }));
                }
                Verdict::ChangesRequested => {
                    conversation.say(review::findings_message(
                        &doc,
                        round,
                        review.rounds,
                        &submissions.tool_names(),
                    ));
                    submissions.clear();
                    round += 1;
                }
            }
        }
    }

    /// Goes on with `conversation` until every output of `submissions` is
    /// accepted (or, without outputs, until the model ends its turn without
    /// calling a tool).
    pub(super) async fn converse(
        &self,
        conversation: &mut Conversation,
        submissions: &mut Submissions,
        toolset: &Toolset<'_>,
    ) -> Result<(), Failure> {
        let mut cut_offs = 0;
        loop {
            if conversation.turns() >= self.job.max_turns {
                let turns = self.job.max_turns;
                let missing = submissions.missing();
                let unfinished = if missing.is_empty() {
                    "before the model finished".to_string()
                } else {
                    format!("without a valid submission of {}", missing.join(", "))
                };
                self.log.push(
                    Stream::Wfe,
                    format!(
                        "stopped: {} used all {turns} turns {unfinished}",
                        conversation.name
                    ),
                );
                return Err(Failure::from(AttemptError::MaxTurns { turns }));
            }
            let response = self.exchange(conversation).await?;
            // Replaying a journal: the next exchange already holds the
            // answers, so tools are not run and nothing is said.
            let replaying = recorded_exchange(
                &self.job.journal,
                &conversation.name,
                conversation.turns() + 1,
            )
            .is_some();
            let uses = tool_uses(&response);
            let cut_off = response.stop == StopReason::MaxTokens;
            cut_offs = if cut_off { cut_offs + 1 } else { 0 };
            let max_tokens = conversation.seat.max_tokens;
            if cut_off && !replaying {
                self.log.push(
                    Stream::Wfe,
                    format!(
                        "{}'s answer was cut off at the output limit (max_tokens {max_tokens})",
                        conversation.name
                    ),
                );
            }
            let results = self.answer(&uses, submissions, toolset, replaying).await?;
            if !replaying && !results.is_empty() {
                conversation.push_user(results);
            }
            let done = if submissions.has_outputs() {
                submissions.complete()
            } else {
                uses.is_empty() && !cut_off
            };
            if done {
                return Ok(());
            }
            if cut_off {
                if cut_offs >= MAX_CUT_OFFS {
                    self.log.push(
                        Stream::Wfe,
                        format!(
                            "stopped: {cut_offs} answers in a row were cut off at max_tokens {max_tokens}"
                        ),
                    );
                    return Err(Failure::from(AttemptError::OutputLimit {
                        max_tokens,
                        times: cut_offs,
                    }));
                }
                if !replaying {
                    self.log.push(
                        Stream::Wfe,
                        "asking the model for a shorter answer or to continue".into(),
                    );
                    let unfinished = if uses.is_empty() {
                        " If you were calling a tool, its input was incomplete and the call \
                         was not made."
                    } else {
                        ""
                    };
                    conversation.say(format!(
                        "Your answer was cut off: it reached the output limit of {max_tokens} \
                         tokens.{unfinished} Continue where you stopped, in shorter steps: keep \
                         text brief, and split a large file or submission into smaller pieces \
                         where the tools allow it."
                    ));
                }
                continue;
            }
            if uses.is_empty() && !replaying {
                let missing = submissions.missing().join(", ");
                self.log.push(
                    Stream::Wfe,
                    format!("the model ended its turn without submitting: asking for {missing}"),
                );
                conversation.say(format!(
                    "You ended your turn without submitting your results. Call {missing} \
                     now; each input is validated against the artifact's schema and any \
                     errors come back as the tool's result."
                ));
            }
        }
    }

    /// The answer to the next turn of `conversation`: adopted from the
    /// journal when recorded, else sent and recorded.
    async fn exchange(&self, conversation: &mut Conversation) -> Result<ChatResponse, Failure> {
        let turn = conversation.turns() + 1;
        if let Some(recorded) = recorded_exchange(&self.job.journal, &conversation.name, turn) {
            conversation.adopt(recorded);
            return Ok(recorded.response.clone());
        }
        self.check_budget(Moment::Request)?;
        let seat = conversation.seat.clone();
        let mut request = conversation.request();
        let mut trimmed = Vec::new();
        if let Some(window) = seat.model_info.context_tokens
            && let Some(cut) = trim(&mut request, window)
        {
            let line = if cut.ids.is_empty() {
                format!(
                    "context: ~{} tokens is over 90% of the {window}-token window and \
                     no older tool result is left to trim",
                    cut.before
                )
            } else {
                format!(
                    "context: trimmed {} older tool results (~{} → ~{} tokens)",
                    cut.ids.len(),
                    cut.before,
                    cut.after
                )
            };
            self.log.push(Stream::Wfe, line);
            trimmed = cut.ids;
        }
        let time = self.clock.stamp();
        let started = Instant::now();
        // Dropping `text` at the end of the block flushes the turn's last
        // partial line.
        let sent = {
            let text = ModelText {
                log: self.log,
                provider: &seat.provider_name,
                partial: Mutex::new(Partial::default()),
            };
            seat.provider.send(&request, &text).await
        };
        let duration_ms = millis(started.elapsed());
        let response = sent.map_err(|e| {
            self.log.push(
                Stream::Wfe,
                format!("provider `{}` failed: {}", seat.provider_name, e.message),
            );
            AttemptError::Provider {
                provider: seat.provider_name.clone(),
                failure: e.kind,
                message: e.message,
            }
        })?;
        let spent = self
            .tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(response.usage, &seat.model_info);
        self.job.budget.meter.add(&spent);
        let exchange = conversation.answered(
            time,
            self.job.attempt,
            response.clone(),
            duration_ms,
            trimmed,
        );
        self.record(Step::Exchange(exchange)).await?;
        Ok(response)
    }

    /// Answers the tool uses of one answer, in order: the tool results to
    /// send back. Submissions are validated even when `replaying` (that is
    /// how a resumed attempt gets its submission state back); other tools
    /// only run when no recorded call answers them already.
    async fn answer(
        &self,
        uses: &[(&str, &str, &Value)],
        submissions: &mut Submissions,
        toolset: &Toolset<'_>,
        replaying: bool,
    ) -> Result<Vec<Block>, Failure> {
        let mut results = Vec::with_capacity(uses.len());
        for &(id, tool, input) in uses {
            if submissions.is_submit(tool) {
                let submitted = submissions.submit(tool, input);
                if !replaying {
                    self.log.push(Stream::Wfe, submitted.summary);
                }
                if submitted.exhausted {
                    let (error, rejected) = submissions.failure();
                    return Err(Failure { error, rejected });
                }
                results.push(Block::ToolResult {
                    tool_use_id: id.to_string(),
                    content: submitted.content,
                    is_error: submitted.is_error,
                });
                continue;
            }
            if replaying {
                continue;
            }
            let (outcome, recorded) = match recorded_call(&self.job.journal, id, tool, input) {
                Some(call) => {
                    let output = match (&call.output, &call.error) {
                        (_, Some(error)) => Err(error.clone()),
                        (Some(output), None) => Ok(output.clone()),
                        (None, None) => Ok(Value::Null),
                    };
                    let outcome = ToolOutcome {
                        output,
                        truncated: call.truncated,
                    };
                    (outcome, true)
                }
                None => {
                    self.check_budget(Moment::ToolCall)?;
                    (self.call_tool(id, tool, input, toolset).await?, false)
                }
            };
            self.log
                .push(Stream::Wfe, describe_call(tool, input, &outcome, recorded));
            let (content, is_error) = match outcome.output {
                Ok(Value::String(text)) => (text, false),
                Ok(value) => (value.to_string(), false),
                Err(error) => (error, true),
            };
            results.push(Block::ToolResult {
                tool_use_id: id.to_string(),
                content,
                is_error,
            });
        }
        Ok(results)
    }

    /// Runs one tool call (or refuses an unknown tool) and records it
    /// before anything else happens, so a kill never loses a completed call.
    async fn call_tool(
        &self,
        id: &str,
        tool: &str,
        input: &Value,
        toolset: &Toolset<'_>,
    ) -> Result<ToolOutcome, Failure> {
        let time = self.clock.stamp();
        let started = Instant::now();
        let mut outcome = if toolset.offered.contains(tool) {
            toolset.tools.call(tool, input).await
        } else {
            ToolOutcome {
                output: Err(toolset.unknown(tool)),
                truncated: false,
            }
        };
        // Secrets never reach the model, the record or the log: a tool's
        // output is masked before anything sees it.
        match &mut outcome.output {
            Ok(value) => {
                self.job.masker.mask_json(value);
            }
            Err(message) => {
                if let std::borrow::Cow::Owned(masked) = self.job.masker.mask_str(message) {
                    *message = masked;
                }
            }
        }
        let (output, error) = match &outcome.output {
            Ok(output) => (Some(output.clone()), None),
            Err(error) => (None, Some(error.clone())),
        };
        let call = ToolCall {
            time,
            attempt: self.job.attempt,
            call_id: Some(id.to_string()),
            tool: tool.to_string(),
            input: input.clone(),
            output,
            error,
            duration_ms: millis(started.elapsed()),
            truncated: outcome.truncated,
        };
        self.record(Step::ToolCall(call)).await?;
        let mut tally = self.tally.lock().unwrap_or_else(PoisonError::into_inner);
        tally.tool_calls = tally.tool_calls.saturating_add(1);
        drop(tally);
        self.job.budget.meter.add(&Spend {
            tool_calls: 1,
            ..Spend::zero()
        });
        Ok(outcome)
    }

    /// Ends the attempt (or, before a request, pauses it) when a budget
    /// limit is reached; the log says which and the spend so far.
    fn check_budget(&self, moment: Moment) -> Result<(), Failure> {
        let mut spent = self
            .tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spend();
        spent.wall_ms = millis(
            self.job
                .budget
                .wall_before
                .saturating_add(self.started.elapsed()),
        );
        self.job
            .budget
            .check(&spent, self.started.elapsed(), moment)
            .map_err(|error| {
                let what = match (&error, moment) {
                    (AttemptError::Budget { soft: true, .. }, _) => {
                        "paused before the next model request"
                    }
                    (_, Moment::Request) => "stopped before the next model request",
                    (_, Moment::ToolCall) => "stopped before the next tool call",
                };
                self.log.push(Stream::Wfe, format!("{what}: {error}"));
                Failure::from(error)
            })
    }

    /// Hands `step` to the engine and waits until it is committed.
    pub(super) async fn record(&self, step: Step) -> Result<(), Failure> {
        if self.progress.record(step).await {
            Ok(())
        } else {
            Err(Failure::from(AttemptError::Internal {
                message: "the engine stopped taking this attempt's steps".into(),
            }))
        }
    }
}

/// A log line for one tool call, e.g.
/// `tool read_file {"path":"src/lib.rs"} → ok (120 lines)`.
fn describe_call(tool: &str, input: &Value, outcome: &ToolOutcome, recorded: bool) -> String {
    let input = clip(&input.to_string(), LOG_INPUT_CHARS);
    let mut notes = Vec::new();
    let result = match &outcome.output {
        Ok(Value::String(text)) => {
            let lines = text.lines().count();
            notes.push(format!("{lines} line{}", if lines == 1 { "" } else { "s" }));
            "ok".to_string()
        }
        Ok(value) => {
            notes.push(format!("{} chars", value.to_string().chars().count()));
            "ok".to_string()
        }
        Err(error) => {
            let first = error.lines().next().unwrap_or_default();
            format!("error: {}", clip(first, LOG_ERROR_CHARS))
        }
    };
    if outcome.truncated {
        notes.push("truncated".into());
    }
    if recorded {
        notes.push("recorded before the restart".into());
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join(", "))
    };
    format!("tool {tool} {input} → {result}{notes}")
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub(super) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// Turns a model's streamed text into log lines: one per completed line,
/// the rest when the turn ends (on drop, so a cancelled turn keeps it too).
/// The line in progress is shown live as each piece arrives.
struct ModelText<'a> {
    log: &'a AttemptLog,
    /// The provider's name, for retry lines.
    provider: &'a str,
    partial: Mutex<Partial>,
}

/// The text of the request in flight.
#[derive(Default)]
struct Partial {
    /// The line not yet ended.
    line: String,
    /// Characters heard since the request was (last) sent.
    heard: usize,
}

impl TextSink for ModelText<'_> {
    fn text(&self, text: &str) {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        partial.line.push_str(text);
        partial.heard = partial.heard.saturating_add(text.chars().count());
        while let Some(end) = partial.line.find('\n') {
            let mut line: String = partial.line.drain(..=end).collect();
            line.pop();
            if line.ends_with('\r') {
                line.pop();
            }
            self.log.push(Stream::Model, line);
        }
        if !partial.line.is_empty() {
            self.log.partial(Stream::Model, &partial.line);
        }
    }

    fn retrying(&self, notice: &crate::provider::RetryNotice) {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        // The failed attempt's last line ends here, so the next attempt's
        // text starts on a line of its own instead of being glued to it.
        let line = std::mem::take(&mut partial.line);
        if !line.is_empty() {
            self.log.push(Stream::Model, line);
        }
        let discarded = match std::mem::take(&mut partial.heard) {
            0 => String::new(),
            1 => "; the 1 character of text above from that attempt is discarded".into(),
            n => format!("; the {n} characters of text above from that attempt are discarded"),
        };
        self.log.push(
            Stream::Wfe,
            format!(
                "provider `{}`: attempt {} of {} failed: {}; retrying in {}{discarded}",
                self.provider,
                notice.attempt,
                notice.max_attempts,
                notice.reason,
                DurationSpec(notice.wait),
            ),
        );
    }
}

impl Drop for ModelText<'_> {
    fn drop(&mut self) {
        let partial = std::mem::take(
            &mut self
                .partial
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .line,
        );
        if !partial.is_empty() {
            self.log.push(Stream::Model, partial);
        }
    }
}

/// Requests, tokens and cost of the attempt so far.
#[derive(Debug, Clone, Copy)]
struct Tally {
    requests: u32,
    input_tokens: u64,
    output_tokens: u64,
    /// `None` once any request's model has no price.
    cost_usd: Option<f64>,
    /// Tool calls run (submissions not counted).
    tool_calls: u64,
}

impl Tally {
    /// The usage of the exchanges already in the journal.
    fn from_journal(job: &AgentJob) -> Tally {
        let mut tally = Tally {
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: Some(0.0),
            tool_calls: job.journal.tool_calls.len() as u64,
        };
        let unpriced = ModelEntry::default();
        for exchange in &job.journal.exchanges {
            let prices = if exchange.conversation == PRIMARY {
                &job.primary.model_info
            } else {
                job.review
                    .as_ref()
                    .map_or(&unpriced, |review| &review.seat.model_info)
            };
            tally.add(exchange.response.usage, prices);
        }
        tally
    }

    /// Adds one answer's usage; returns what it spent.
    fn add(&mut self, usage: Usage, prices: &ModelEntry) -> Spend {
        // Counts come from providers: huge ones saturate, never overflow.
        self.requests = self.requests.saturating_add(1);
        self.input_tokens = self.input_tokens.saturating_add(usage.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(usage.output_tokens);
        let cost = match (prices.input_usd_per_mtok, prices.output_usd_per_mtok) {
            // A cost that is no longer a number (absurd counts or prices)
            // is unknown rather than `inf`, which JSON cannot hold.
            (Some(input), Some(output)) => Some(
                usage.input_tokens as f64 * input / 1e6 + usage.output_tokens as f64 * output / 1e6,
            )
            .filter(|cost| cost.is_finite()),
            _ => None,
        };
        self.cost_usd = match (self.cost_usd, cost) {
            (Some(total), Some(cost)) => Some(total + cost).filter(|c| c.is_finite()),
            _ => None,
        };
        Spend {
            tokens: usage.input_tokens.saturating_add(usage.output_tokens),
            cost_usd: cost,
            tool_calls: 0,
            wall_ms: 0,
        }
    }

    /// The attempt's spend, wall time aside.
    fn spend(&self) -> Spend {
        Spend {
            tokens: self.input_tokens.saturating_add(self.output_tokens),
            cost_usd: self.cost_usd,
            tool_calls: self.tool_calls,
            wall_ms: 0,
        }
    }

    /// The usage so far, of an attempt whose primary model is `seat`'s.
    fn usage(&self, seat: &super::Seat) -> AttemptUsage {
        AttemptUsage {
            provider: Some(seat.provider_name.clone()),
            model: Some(seat.model.clone()),
            requests: self.requests,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: self.cost_usd,
            tool_calls: self.tool_calls,
            wall_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests;
