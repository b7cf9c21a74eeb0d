//! What one attempt of a phase produced, and the log it wrote while running.
//!
//! This is a leaf shared by the layers that run attempts (`exec` for
//! scripts, `agent` for agents), the engine that records them, and the
//! views that show them: the outcome and its typed error, the log line and
//! the one [`AttemptLog`] every executor writes its lines through. It also
//! holds the two plain records an error carries from lower layers (a
//! schema [`Violation`], a [`ProviderErrorKind`]) so that those layers can
//! depend on this module instead of this module on them.
//!
//! It must not import any other wfe module but `time` and `secret`, run anything, or
//! touch the store: it is types and the log buffer, nothing else.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Masker;
use crate::time::Clock;

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A line wfe itself wrote (e.g. "killed after 1s timeout").
    Wfe,
    /// A line of text an agent's model streamed.
    Model,
}

/// One line of a phase's log, as stored in `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    /// When the line was read (RFC 3339).
    pub time: String,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Where it came from.
    pub stream: Stream,
    /// The text, without its newline (invalid UTF-8 replaced).
    pub line: String,
}

/// Receives log lines as they are read, to show them live.
pub trait LogSink: Send + Sync {
    /// Called once per line, in order per stream.
    fn line(&self, phase: &str, line: &LogLine);

    /// The line being written so far, before it is whole (a model's text
    /// as its tokens stream in), secrets masked; each call's `line` extends
    /// the previous one's, and [`LogSink::line`] then gives the whole line.
    /// Sinks that show only whole lines ignore it.
    fn partial(&self, _phase: &str, _line: &LogLine) {}
}

/// What is wrong with one declared output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactProblem {
    /// The artifact's name.
    pub artifact: String,
    /// The schema it must match.
    pub schema: String,
    /// What is wrong, in words.
    pub message: String,
    /// Each schema violation (empty when the file is missing or not JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

/// Why an attempt failed. Stored in `state.json` and `attempts/<n>/error.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptError {
    /// A `run`, `cwd` or `env` template could not be rendered.
    #[error("cannot render `{field}`: {message}")]
    Render {
        /// Which field (`run`, `cwd`, `env.NAME`).
        field: String,
        /// The template engine's message.
        message: String,
    },
    /// The process could not be started.
    #[error("cannot start the script: {message}")]
    Spawn {
        /// The OS error.
        message: String,
    },
    /// The script exited with a non-zero code.
    #[error("the script exited with code {code}")]
    Exit {
        /// The exit code.
        code: i32,
    },
    /// The script was killed by a signal it did not get from wfe.
    #[error("the script was killed by signal {signal}")]
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// The attempt ran out of time; its process group was killed.
    #[error("timed out after {after}")]
    TimedOut {
        /// The timeout, e.g. `1s`.
        after: String,
    },
    /// The attempt was cancelled; its process group was killed.
    #[error("cancelled")]
    Cancelled,
    /// One or more outputs are missing, not JSON, or fail their schema.
    #[error("{} invalid output{}: {}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("{} ({})", p.artifact, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidOutputs {
        /// Every problem, one per artifact.
        problems: Vec<ArtifactProblem>,
    },
    /// An input artifact no longer matches its schema (e.g. edited by hand
    /// after the phase that wrote it completed); the phase did not start.
    #[error("{} invalid input{}: {}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("{} ({})", p.artifact, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidInputs {
        /// Every problem, one per artifact (`artifact` is `phase/name`).
        problems: Vec<ArtifactProblem>,
    },
    /// Something outside the script failed (scratch directories, I/O).
    #[error("{message}")]
    Internal {
        /// What failed.
        message: String,
    },
    /// An isolated phase's changes conflict with the working tree: nothing
    /// of them was merged.
    #[error("its changes conflict with the working tree in {}; nothing was merged (its changes: git diff {base} {theirs})", .paths.join(", "))]
    MergeConflict {
        /// The conflicting paths, relative to the work tree.
        paths: Vec<String>,
        /// The tree the attempt started from.
        base: String,
        /// The tree the attempt left.
        theirs: String,
    },
    /// A loop: one of its child phases failed (with `on_failure: stop`),
    /// so the loop failed in that iteration.
    #[error("{phase} {status} in iteration {iteration}{}", .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    ChildFailed {
        /// The child phase.
        phase: String,
        /// The iteration it failed in.
        iteration: u32,
        /// Its status: `failed`, `timed_out` or `cancelled`.
        status: String,
        /// Its error, in one line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// An agent's provider failed: retries ran out (`exhausted`: the run
    /// pauses and `wfe resume` goes on), or it refused the request.
    #[error("provider `{provider}`: {message}")]
    Provider {
        /// The provider's name in config.
        provider: String,
        /// What kind of failure.
        failure: ProviderErrorKind,
        /// What happened (never a key).
        message: String,
    },
    /// An agent used all its turns without submitting its outputs.
    #[error("no valid submission after {turns} turn{}", if *.turns == 1 { "" } else { "s" })]
    MaxTurns {
        /// The phase's `max_turns`.
        turns: u32,
    },
    /// The model's answers were cut off by the output limit (`max_tokens`)
    /// several times in a row, even when asked for shorter ones.
    #[error(
        "the model's answer was cut off at the output limit (max_tokens {max_tokens}) {times} times in a row"
    )]
    OutputLimit {
        /// The `max_tokens` of the requests.
        max_tokens: u32,
        /// Cut-off answers in a row.
        times: u32,
    },
    /// The reviewer rejected the outputs, or still asked for changes after the last round.
    #[error("the reviewer {verdict} in round {round}: {summary}")]
    Review {
        /// `rejected` or `requested changes`.
        verdict: String,
        /// The review round, from 1.
        round: u32,
        /// The reviewer's summary or its findings in one line.
        summary: String,
    },
    /// A loop: `until` was still false after `max_iters` iterations
    /// (`on_exhausted: fail`).
    #[error("`until: {until}` still false after {iterations} iteration{}", if *.iterations == 1 { "" } else { "s" })]
    Exhausted {
        /// The loop's `until`.
        until: String,
        /// The iterations run (its `max_iters`).
        iterations: u32,
    },
    /// An agent reached a budget limit before its next model request or
    /// tool call: the hard limit ends the attempt; the soft share
    /// (`soft`) makes the phase wait for approval, its conversation kept.
    #[error("budget: {message}")]
    Budget {
        /// `phase` or `run`: whose budget.
        scope: String,
        /// The limit reached: `tokens`, `cost_usd`, `wall` or `tool_calls`.
        limit: String,
        /// The soft share was reached (a pause), not the limit.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        soft: bool,
        /// The limit and the spend so far, in words.
        message: String,
    },
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    /// The validated artifacts by name, or why the attempt failed.
    pub result: Result<BTreeMap<String, Value>, AttemptError>,
    /// The process's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Every log line, in the order read.
    pub log: Vec<LogLine>,
    /// Raw output files that were rejected (name, bytes), kept for inspection.
    pub rejected: Vec<(String, Vec<u8>)>,
    /// An agent's tokens and cost for the attempt.
    pub usage: Option<AttemptUsage>,
    /// File artifacts kept by a successful attempt, by their path under
    /// `phases/<phase>/files/`, sorted.
    pub files: Vec<OutputFile>,
}

/// One file artifact: where it is kept under the phase's `files/` and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Its path under `files/`: `<output>/<path>` for a declared output,
    /// the path under `$WFE_OUT/files/` otherwise.
    pub path: String,
    /// The file's content, as read.
    pub bytes: Vec<u8>,
}

/// True when `bytes` read as text: valid UTF-8 without a NUL byte. Text
/// file artifacts are masked like logs and indexed for search; the others
/// are binary.
pub fn is_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

impl AttemptOutcome {
    /// Masks `masker`'s secrets in everything the attempt produced: its
    /// log, its error, its artifacts and its rejected files. Returns the
    /// names of the artifacts that held a secret (stored masked).
    pub fn mask(&mut self, masker: &Masker) -> Vec<String> {
        if masker.is_empty() {
            return Vec::new();
        }
        for line in &mut self.log {
            if let std::borrow::Cow::Owned(masked) = masker.mask_str(&line.line) {
                line.line = masked;
            }
        }
        let mut masked = Vec::new();
        match &mut self.result {
            Ok(artifacts) => {
                for (name, value) in artifacts.iter_mut() {
                    if masker.mask_json(value) {
                        masked.push(name.clone());
                    }
                }
            }
            Err(error) => {
                // Every field of every kind of error, through its stored form.
                if let Ok(mut value) = serde_json::to_value(&*error)
                    && masker.mask_json(&mut value)
                    && let Ok(back) = serde_json::from_value(value)
                {
                    *error = back;
                }
            }
        }
        // A text file is masked like a log. A binary file cannot be: a
        // replaced byte run would corrupt it and still might not cover an
        // encoded copy, so one holding a secret fails the attempt instead.
        let mut binary_secrets = Vec::new();
        for file in &mut self.files {
            if is_text(&file.bytes) {
                if let std::borrow::Cow::Owned(m) = masker.mask_bytes(&file.bytes) {
                    file.bytes = m;
                    masked.push(format!("files/{}", file.path));
                }
            } else if masker.finds_in(&file.bytes) {
                binary_secrets.push(ArtifactProblem {
                    artifact: format!("files/{}", file.path),
                    schema: "file".into(),
                    message: "a binary file holds a secret value, and binary files are never masked; it was not kept".into(),
                    violations: Vec::new(),
                });
            }
        }
        if !binary_secrets.is_empty() {
            self.files.clear();
            self.result = Err(AttemptError::InvalidOutputs {
                problems: binary_secrets,
            });
        }
        for (name, bytes) in &mut self.rejected {
            if let std::borrow::Cow::Owned(m) = masker.mask_bytes(bytes) {
                *bytes = m;
                masked.push(name.clone());
            }
        }
        masked
    }
}

/// Tokens and cost of one agent attempt, all conversations (reviewers too) together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttemptUsage {
    /// The provider (its name in config) of the attempt's primary model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The attempt's primary model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Requests sent to models.
    pub requests: u32,
    /// Tokens read.
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
    /// US dollars, when `models` in config gives the prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Tool calls made (submissions not counted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tool_calls: u64,
    /// Milliseconds the attempt ran, over every runner that ran it
    /// (a runner that died takes its share with it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wall_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One way a document fails its schema.
// Produced by `artifact::Schema::validate` (and re-exported there); it
// lives here because an attempt's stored error carries it. `///` would put
// this note into the stored files' JSON Schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Violation {
    /// JSON pointer to the offending value in the document (`""` is the root).
    pub instance_path: String,
    /// JSON pointer to the schema keyword that failed.
    pub schema_path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl Violation {
    /// Where in the document, for people: the pointer, or `(root)`.
    pub fn at(&self) -> &str {
        if self.instance_path.is_empty() {
            "(root)"
        } else {
            &self.instance_path
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at(), self.message)
    }
}

/// What kind of failure a provider reports.
// Reported by `provider` (and re-exported there); it lives here because an
// attempt's stored error (`AttemptError::Provider`) carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorKind {
    /// Transient failures went on until the retry policy gave up (429,
    /// 5xx, connection errors, cut streams): the run is paused, resumable.
    Exhausted,
    /// The key is missing or refused (401/403).
    Auth,
    /// The provider refused the request as malformed (other 4xx).
    Request,
    /// The answer could not be understood, even after retries.
    Response,
    /// Replay: the request differs from the recorded one.
    Diverged,
    /// The provider is not configured right (unknown name, missing field).
    Config,
    /// A CLI agent failed to start or exited with an error.
    Process,
}

/// Default bytes of log text one attempt keeps for its checkpoint: 4 MiB
/// (`max_log_bytes` in the config).
pub const DEFAULT_MAX_LOG_BYTES: u64 = 4 * 1024 * 1024;

/// The log of one attempt: every line in arrival order, each also handed
/// to a [`LogSink`] as it arrives so it can be shown live.
///
/// Executors push their lines (a script's output, an agent's model text,
/// wfe's own notes) from any task; [`AttemptLog::take`] hands the lines to
/// the [`AttemptOutcome`] at the end. What is kept is capped (see
/// [`AttemptLog::capped`]): the first half of the cap and the last half, with
/// one line saying how much was cut between them, so 200 MB of output never
/// becomes a 200 MB `log.jsonl`. The sink still sees every line.
pub struct AttemptLog {
    phase: String,
    attempt: u32,
    sink: Arc<dyn LogSink>,
    clock: Clock,
    masker: Masker,
    lines: Mutex<Kept>,
}

/// The lines an attempt keeps: a head, then a sliding tail.
#[derive(Debug, Default)]
struct Kept {
    /// Bytes of text the head and the tail may each hold.
    half: u64,
    head: Vec<LogLine>,
    head_bytes: u64,
    tail: VecDeque<LogLine>,
    tail_bytes: u64,
    /// Lines and bytes of text dropped between head and tail.
    cut_lines: u64,
    cut_bytes: u64,
}

impl Kept {
    fn new(cap: u64) -> Kept {
        Kept {
            half: cap / 2,
            ..Kept::default()
        }
    }

    fn push(&mut self, line: LogLine) {
        let size = line.line.len() as u64;
        // Once anything went to the tail, the head is closed: the order of
        // lines must stay the order they came in.
        if self.tail.is_empty() && self.cut_lines == 0 && self.head_bytes + size <= self.half {
            self.head_bytes += size;
            self.head.push(line);
            return;
        }
        self.tail_bytes += size;
        self.tail.push_back(line);
        while self.tail_bytes > self.half {
            let Some(old) = self.tail.pop_front() else {
                break;
            };
            let size = old.line.len() as u64;
            self.tail_bytes -= size;
            self.cut_bytes += size;
            self.cut_lines += 1;
        }
    }

    /// Every kept line in order, with the marker where lines were cut.
    fn take(&mut self, marker: impl FnOnce(u64, u64) -> LogLine) -> Vec<LogLine> {
        let kept = std::mem::replace(self, Kept::new(self.half * 2));
        let mut lines = kept.head;
        if kept.cut_lines > 0 {
            lines.push(marker(kept.cut_lines, kept.cut_bytes));
        }
        lines.extend(kept.tail);
        lines
    }
}

impl std::fmt::Debug for AttemptLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptLog")
            .field("phase", &self.phase)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl AttemptLog {
    /// An empty log for attempt `attempt` of `phase`, stamped by `clock`.
    pub fn new(phase: &str, attempt: u32, sink: Arc<dyn LogSink>, clock: Clock) -> AttemptLog {
        AttemptLog {
            phase: phase.to_string(),
            attempt,
            sink,
            clock,
            masker: Masker::default(),
            lines: Mutex::new(Kept::new(DEFAULT_MAX_LOG_BYTES)),
        }
    }

    /// The same log, keeping at most about `max_bytes` of line text: the
    /// first and the last half, and a `truncated N bytes` line between.
    pub fn capped(self, max_bytes: u64) -> AttemptLog {
        AttemptLog {
            lines: Mutex::new(Kept::new(max_bytes)),
            ..self
        }
    }

    /// The same log, masking `masker`'s secrets in every line before it is
    /// stored or shown.
    pub fn masking(self, masker: Masker) -> AttemptLog {
        AttemptLog { masker, ..self }
    }

    /// Adds a line (secrets masked) and hands it to the sink.
    pub fn push(&self, stream: Stream, line: String) {
        let line = match self.masker.mask_str(&line) {
            std::borrow::Cow::Borrowed(_) => line,
            std::borrow::Cow::Owned(masked) => masked,
        };
        // The lock is held across the sink call so the sink sees lines in
        // exactly the order they are stored.
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = LogLine {
            time: self.clock.stamp(),
            attempt: self.attempt,
            stream,
            line,
        };
        self.sink.line(&self.phase, &entry);
        lines.push(entry);
    }

    /// Shows `text`, the start of a line not yet whole, to the sink
    /// without storing it (the whole line is pushed when it ends).
    ///
    /// Secrets are masked, and the last bytes that could be the start of a
    /// secret are held back until more text shows what they are: what is
    /// shown is always a prefix of the masked whole line.
    pub fn partial(&self, stream: Stream, text: &str) {
        let mut end = self.masker.undecided_from(text);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            return;
        }
        let masked = self.masker.mask_str(&text[..end]);
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = LogLine {
            time: self.clock.stamp(),
            attempt: self.attempt,
            stream,
            line: masked.into_owned(),
        };
        self.sink.partial(&self.phase, &entry);
        drop(lines);
    }

    /// Every line kept so far (with the marker where lines were cut),
    /// leaving the log empty.
    pub fn take(&self) -> Vec<LogLine> {
        let mut kept = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        kept.take(|lines, bytes| LogLine {
            time: self.clock.stamp(),
            attempt: self.attempt,
            stream: Stream::Wfe,
            line: format!(
                "[truncated {bytes} bytes ({lines} lines) of output here: the log keeps its \
                 first and last part; the whole stream was shown live]"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, LogLine)>>, Mutex<Vec<String>>);

    impl LogSink for Seen {
        fn line(&self, phase: &str, line: &LogLine) {
            self.0
                .lock()
                .unwrap()
                .push((phase.to_string(), line.clone()));
        }

        fn partial(&self, _phase: &str, line: &LogLine) {
            self.1.lock().unwrap().push(line.line.clone());
        }
    }

    #[test]
    fn a_partial_line_is_shown_not_stored_and_never_shows_half_a_secret() {
        let seen = Arc::new(Seen::default());
        let log = AttemptLog::new("plan", 1, seen.clone(), Clock::fixed(UNIX_EPOCH))
            .masking(Masker::new(["tok-0123456789"]));
        let mut text = String::new();
        for piece in ["The key ", "is tok-01", "23456789", " and that is all"] {
            text.push_str(piece);
            log.partial(Stream::Model, &text);
        }
        let shown = seen.1.lock().unwrap().clone();
        assert!(!shown.is_empty());
        for (i, partial) in shown.iter().enumerate() {
            assert!(!partial.contains("tok-0"), "{partial}");
            assert!(
                "The key is *** and that is all".starts_with(partial.as_str()),
                "each is a prefix of the masked line: {partial}"
            );
            if i > 0 {
                assert!(partial.starts_with(&shown[i - 1]), "it only grows");
            }
        }
        assert!(log.take().is_empty(), "partial lines are not stored");

        // Without secrets, every piece shows at once.
        let seen = Arc::new(Seen::default());
        let log = AttemptLog::new("plan", 1, seen.clone(), Clock::fixed(UNIX_EPOCH));
        log.partial(Stream::Model, "hel");
        log.partial(Stream::Model, "hello");
        assert_eq!(*seen.1.lock().unwrap(), ["hel", "hello"]);
    }

    #[test]
    fn the_log_keeps_lines_in_order_and_shows_each_once() {
        let seen = Arc::new(Seen::default());
        let clock = Clock::fixed(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        let log = AttemptLog::new("build", 3, seen.clone(), clock);
        log.push(Stream::Stdout, "one".into());
        log.push(Stream::Wfe, "two".into());
        let lines = log.take();
        let texts: Vec<(Stream, &str)> =
            lines.iter().map(|l| (l.stream, l.line.as_str())).collect();
        assert_eq!(texts, [(Stream::Stdout, "one"), (Stream::Wfe, "two")]);
        assert!(
            lines
                .iter()
                .all(|l| l.attempt == 3 && l.time == "2023-11-14T22:13:20.123Z")
        );
        let shown = seen.0.lock().unwrap().clone();
        assert!(shown.iter().all(|(phase, _)| phase == "build"));
        assert_eq!(shown.into_iter().map(|(_, l)| l).collect::<Vec<_>>(), lines);
        assert!(log.take().is_empty());
    }

    #[test]
    fn a_capped_log_keeps_head_and_tail_with_a_marker_and_shows_every_line() {
        let seen = Arc::new(Seen::default());
        let log = AttemptLog::new("p", 1, seen.clone(), Clock::system()).capped(20);
        for i in 0..10 {
            log.push(Stream::Stdout, format!("line {i}"));
        }
        let lines = log.take();
        let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(texts[..1], ["line 0"]);
        assert_eq!(
            texts[1],
            "[truncated 48 bytes (8 lines) of output here: the log keeps its first and last \
             part; the whole stream was shown live]"
        );
        assert_eq!(texts[2..], ["line 9"]);
        assert_eq!(lines[1].stream, Stream::Wfe);
        assert_eq!(seen.0.lock().unwrap().len(), 10);
        // Under the cap nothing is cut, and a taken log starts over.
        log.push(Stream::Stdout, "again".into());
        assert_eq!(log.take().len(), 1);
    }

    #[test]
    fn masking_an_outcome_reaches_its_log_error_artifacts_and_rejected_files() {
        const SECRET: &str = "tok-0123456789";
        let masker = Masker::new([SECRET]);
        let line = |text: &str| LogLine {
            time: "t".into(),
            attempt: 1,
            stream: Stream::Stdout,
            line: text.into(),
        };
        let mut ok = AttemptOutcome {
            result: Ok(BTreeMap::from([
                ("clean".to_string(), serde_json::json!({"a": "b"})),
                (
                    "leaky".to_string(),
                    serde_json::json!({"a": [format!("x{SECRET}")]}),
                ),
            ])),
            exit_code: Some(0),
            log: vec![line(&format!("say {SECRET}"))],
            rejected: vec![(
                "raw".into(),
                format!("{{\"v\": \"{SECRET}\"}}").into_bytes(),
            )],
            usage: None,
            files: Vec::new(),
        };
        assert_eq!(ok.mask(&masker), ["leaky", "raw"]);
        assert_eq!(ok.log[0].line, "say ***");
        let artifacts = ok.result.as_ref().unwrap();
        assert_eq!(artifacts["leaky"], serde_json::json!({"a": ["x***"]}));
        assert_eq!(ok.rejected[0].1, b"{\"v\": \"***\"}");

        let mut failed = AttemptOutcome {
            result: Err(AttemptError::Review {
                verdict: "rejected".into(),
                round: 1,
                summary: format!("leaks {SECRET}"),
            }),
            ..ok.clone()
        };
        failed.rejected.clear();
        assert!(failed.mask(&masker).is_empty());
        assert_eq!(
            failed.result.unwrap_err().to_string(),
            "the reviewer rejected in round 1: leaks ***"
        );
        // Nothing to mask: nothing changes.
        let before = ok.clone();
        assert!(ok.mask(&Masker::default()).is_empty());
        assert_eq!(ok, before);
    }

    #[test]
    fn the_log_masks_lines_before_storing_and_showing_them() {
        let seen = Arc::new(Seen::default());
        let log = AttemptLog::new("p", 1, seen.clone(), Clock::system())
            .masking(Masker::new(["tok-0123456789"]));
        log.push(Stream::Stderr, "key=tok-0123456789".into());
        assert_eq!(log.take()[0].line, "key=***");
        assert_eq!(seen.0.lock().unwrap()[0].1.line, "key=***");
    }

    #[test]
    fn stored_names_stay_as_they_were() {
        let kind = serde_json::to_value(ProviderErrorKind::Exhausted).unwrap();
        assert_eq!(kind, "exhausted");
        let error = AttemptError::Provider {
            provider: "p".into(),
            failure: ProviderErrorKind::Auth,
            message: "no key".into(),
        };
        let value = serde_json::to_value(&error).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"kind": "provider", "provider": "p", "failure": "auth", "message": "no key"})
        );
    }
}
