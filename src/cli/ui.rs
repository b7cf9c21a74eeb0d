//! All terminal output goes through [`Ui`]: requested output on stdout,
//! everything human (progress, notes, errors) on stderr, colour only when
//! wanted. A closed stdout (`wfe list | head`) is not an error.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::args::{ColorChoice, GlobalArgs};
use super::error::CliError;
use crate::attempt::{AttemptError, LogLine, LogSink, ProviderErrorKind, Stream};
use crate::engine::{Event, Observer, PhaseStatus, RunStatus};

/// A text style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Success.
    Green,
    /// Failure.
    Red,
    /// In progress or waiting.
    Yellow,
    /// Less important.
    Dim,
    /// Headings and names.
    Bold,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Green => "32",
            Style::Red => "31",
            Style::Yellow => "33",
            Style::Dim => "2",
            Style::Bold => "1",
        }
    }
}

/// The terminal, as every command sees it.
#[derive(Debug, Clone)]
pub struct Ui {
    color: bool,
    quiet: bool,
    /// Serialises writes so parallel phases' lines never interleave mid-line.
    lock: Arc<Mutex<()>>,
}

impl Ui {
    /// Builds the UI from the global flags and the environment.
    pub fn new(global: &GlobalArgs) -> Self {
        let color = match global.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Ui {
            color,
            quiet: global.quiet,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// `text` in `style` when colour is on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_string()
        }
    }

    /// A human note on stderr (suppressed by `--quiet`).
    pub fn note(&self, text: &str) {
        if !self.quiet {
            self.err_line(text);
        }
    }

    /// Whether `--quiet` is on.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// `warning: …` on stderr, even with `--quiet`: something was left out
    /// of what the command shows (a broken run it skipped).
    pub fn warn(&self, text: &str) {
        self.err_line(&format!("{} {text}", self.paint(Style::Yellow, "warning:")));
    }

    /// The one-line warning of a run a command spanning runs skipped.
    pub fn skipped_run(&self, run: &impl std::fmt::Display, why: &impl std::fmt::Display) {
        self.warn(&format!(
            "skipping run {run}: {why} (`wfe fsck {run}` checks it, `wfe rm {run}` removes it)"
        ));
    }

    /// A line on stderr, even with `--quiet`.
    pub fn err_line(&self, text: &str) {
        let _guard = self.lock.lock();
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// Requested output on stdout.
    pub fn out(&self, text: &str) {
        let _guard = self.lock.lock();
        // A closed pipe (e.g. `| head`) just ends the output.
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }

    /// Bytes on stdout exactly as they are (a file artifact). A closed pipe
    /// just ends the output; other write errors are returned.
    pub fn raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        let _guard = self.lock.lock();
        let mut out = std::io::stdout().lock();
        match out.write_all(bytes).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// Whether stdout is a terminal (binary output is refused there).
    pub fn stdout_is_terminal(&self) -> bool {
        std::io::stdout().is_terminal()
    }

    /// One JSON document on stdout.
    pub fn json(&self, value: &serde_json::Value) {
        self.out(&serde_json::to_string_pretty(value).unwrap_or_default());
    }

    /// Prints an error: `error: …`, `caused by: …`, `hint: …`.
    pub fn error(&self, e: &CliError) {
        let mut text = format!("{} {}", self.paint(Style::Red, "error:"), e.message);
        for cause in &e.causes {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
        if let Some(hint) = &e.hint {
            text.push_str(&format!("\n{} {hint}", self.paint(Style::Yellow, "hint:")));
        }
        self.err_line(&text);
    }

    /// The mark and style for a phase status.
    pub fn phase_mark(&self, status: PhaseStatus) -> String {
        let (mark, style) = match status {
            PhaseStatus::Pending => ("○", Style::Dim),
            PhaseStatus::Running => ("▶", Style::Yellow),
            PhaseStatus::Waiting => ("⏸", Style::Yellow),
            PhaseStatus::Completed => ("✓", Style::Green),
            PhaseStatus::Failed => ("✗", Style::Red),
            PhaseStatus::Skipped => ("–", Style::Dim),
            PhaseStatus::Cancelled => ("✗", Style::Red),
            PhaseStatus::TimedOut => ("⏱", Style::Red),
        };
        self.paint(style, mark)
    }

    /// A run status, coloured.
    pub fn run_status(&self, status: RunStatus) -> String {
        let style = match status {
            RunStatus::Completed => Style::Green,
            RunStatus::Failed | RunStatus::Cancelled => Style::Red,
            _ => Style::Yellow,
        };
        self.paint(style, status.as_str())
    }

    /// A run status as shown: `running` without a live runner is
    /// `interrupted` (see [`crate::cli::reasons::shown_status`]).
    pub fn shown_run_status(&self, status: RunStatus, live: bool) -> String {
        let shown = crate::cli::reasons::shown_status(status.as_str(), live);
        if shown == status.as_str() {
            self.run_status(status)
        } else {
            self.paint(Style::Red, shown)
        }
    }

    /// A phase status, coloured and padded to a column of equal width.
    pub fn phase_status_cell(&self, status: PhaseStatus) -> String {
        let text = self.phase_status(status);
        format!(
            "{text}{}",
            " ".repeat(9usize.saturating_sub(status.as_str().len()))
        )
    }

    /// A phase status, coloured.
    pub fn phase_status(&self, status: PhaseStatus) -> String {
        let style = match status {
            PhaseStatus::Completed => Style::Green,
            s if s.is_failure() => Style::Red,
            PhaseStatus::Skipped | PhaseStatus::Pending => Style::Dim,
            _ => Style::Yellow,
        };
        self.paint(style, status.as_str())
    }
}

/// Formats a duration for people: `12ms`, `3.4s`, `2m05s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// Every line of an attempt error, violations included.
pub fn describe_error(error: &AttemptError) -> Vec<String> {
    let mut lines = Vec::new();
    match error {
        AttemptError::InvalidOutputs { problems } | AttemptError::InvalidInputs { problems } => {
            let what = if matches!(error, AttemptError::InvalidInputs { .. }) {
                "input"
            } else {
                "output"
            };
            lines.push(format!("{} invalid {what}(s):", problems.len()));
            for p in problems {
                lines.push(format!(
                    "  {} (schema {}): {}",
                    p.artifact, p.schema, p.message
                ));
                for v in &p.violations {
                    lines.push(format!("    {v}  (schema {})", v.schema_path));
                }
            }
        }
        AttemptError::Provider {
            provider,
            failure: ProviderErrorKind::Auth,
            ..
        } => {
            lines.push(error.to_string());
            lines.push(format!(
                "hint: `wfe provider set-key {provider}` stores a key; `wfe provider list` shows where wfe looks for keys"
            ));
        }
        other => lines.push(other.to_string()),
    }
    lines
}

/// Live progress of a run on stderr: one line per event, phase output
/// prefixed with the phase id, and on a terminal a footer line redrawn in
/// place (`[#####·····] 3/10 · running: build, lint`).
pub struct Progress {
    ui: Ui,
    show_output: bool,
    footer: Option<Mutex<Footer>>,
    /// A model's line being streamed, not yet ended on screen.
    open: Mutex<Option<OpenLine>>,
}

/// A line of a phase's output shown as far as it has streamed.
struct OpenLine {
    phase: String,
    /// The text shown so far (after the prefix).
    shown: String,
}

/// What the footer shows.
#[derive(Default)]
struct Footer {
    total: usize,
    done: usize,
    running: Vec<String>,
    drawn: bool,
}

impl Footer {
    fn render(&self) -> String {
        const WIDTH: usize = 20;
        let filled = (self.done * WIDTH).checked_div(self.total).unwrap_or(0);
        let mut text = format!(
            "[{}{}] {}/{} phases",
            "#".repeat(filled),
            "·".repeat(WIDTH - filled),
            self.done,
            self.total
        );
        if !self.running.is_empty() {
            text.push_str(&format!(" · running: {}", self.running.join(", ")));
        }
        // Never wrap: a wrapped footer could not be erased with one escape.
        text.chars().take(100).collect()
    }
}

impl Progress {
    /// Progress on `ui`; `show_output` echoes phases' stdout/stderr lines.
    pub fn new(ui: &Ui, show_output: bool) -> Self {
        let live = !ui.quiet && std::io::stderr().is_terminal();
        Progress {
            ui: ui.clone(),
            show_output,
            footer: live.then(|| Mutex::new(Footer::default())),
            open: Mutex::new(None),
        }
    }

    /// Shows `text`, the line of `phase` so far, from where it was last
    /// shown; `end` ends the line. Another phase's line, or any other
    /// output, first ends the line in progress.
    fn stream(&self, phase: &str, text: &str, end: bool) {
        let mut footer = self
            .footer
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|e| e.into_inner()));
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let rest = match open.as_ref() {
            Some(line) if line.phase == phase && text.starts_with(&line.shown) => {
                &text[line.shown.len()..]
            }
            other => {
                if other.is_some() {
                    out.push('\n');
                }
                if let Some(footer) = footer.as_deref_mut()
                    && footer.drawn
                {
                    out.push_str("\r\x1b[2K");
                    footer.drawn = false;
                }
                out.push_str(&self.ui.paint(Style::Dim, &format!("  {phase} │")));
                out.push(' ');
                text
            }
        };
        out.push_str(rest);
        if end {
            out.push('\n');
            *open = None;
            if let Some(footer) = footer.as_deref_mut() {
                footer.drawn = footer.total > 0;
                if footer.drawn {
                    out.push_str(&self.ui.paint(Style::Dim, &footer.render()));
                }
            }
        } else {
            *open = Some(OpenLine {
                phase: phase.to_string(),
                shown: text.to_string(),
            });
        }
        let _guard = self.ui.lock.lock();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }

    /// Ends a streamed line left open, before other output.
    fn close_open(&self) -> &'static str {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.take().is_some() { "\n" } else { "" }
    }

    /// Prints `text` above the footer (if any), after `update` changed it.
    fn emit(&self, text: Option<&str>, update: impl FnOnce(&mut Footer)) {
        let Some(footer) = &self.footer else {
            if let Some(text) = text {
                let close = self.close_open();
                if !close.is_empty() {
                    let _guard = self.ui.lock.lock();
                    let _ = std::io::stderr().lock().write_all(close.as_bytes());
                }
                self.ui.note(text);
            }
            return;
        };
        let mut footer = footer.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut footer);
        let mut out = String::from(self.close_open());
        if footer.drawn {
            out.push_str("\r\x1b[2K");
        }
        if let Some(text) = text {
            out.push_str(text);
            out.push('\n');
        }
        footer.drawn = footer.total > 0;
        if footer.drawn {
            out.push_str(&self.ui.paint(Style::Dim, &footer.render()));
        }
        let _guard = self.ui.lock.lock();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }
}

impl LogSink for Progress {
    fn partial(&self, phase: &str, line: &LogLine) {
        if self.show_output && !self.ui.quiet && line.stream == Stream::Model {
            self.stream(phase, &line.line, false);
        }
    }

    fn line(&self, phase: &str, line: &LogLine) {
        if self.show_output && !self.ui.quiet {
            if line.stream == Stream::Model {
                let streaming = self
                    .open
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|open| open.phase == phase);
                if streaming {
                    self.stream(phase, &line.line, true);
                    return;
                }
            }
            let prefix = self.ui.paint(Style::Dim, &format!("  {phase} │"));
            let text = match line.stream {
                Stream::Stderr => self.ui.paint(Style::Yellow, &line.line),
                _ => line.line.clone(),
            };
            self.emit(Some(&format!("{prefix} {text}")), |_| {});
        }
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event<'_>) {
        let ui = &self.ui;
        let text = match event {
            Event::RunStarted {
                run,
                template,
                phases,
                done,
            } => {
                let (total, already) = (*phases, *done);
                let text = format!("{} run {run} of {template}", ui.paint(Style::Bold, "wfe:"));
                self.emit(Some(&text), |f| {
                    f.total = total;
                    f.done = already;
                });
                return;
            }
            Event::LeftoversEnded {
                phase,
                attempt,
                count,
            } => format!(
                "{} ended {count} leftover process(es) of {phase} attempt {attempt}",
                ui.paint(Style::Yellow, "!")
            ),
            Event::WorktreesRemoved { names } => format!(
                "{} removed {} stray worktree(s) of a stopped runner: {}",
                ui.paint(Style::Yellow, "!"),
                names.len(),
                names.join(", ")
            ),
            Event::RemoteRetry {
                remote,
                message,
                wait,
            } => format!(
                "{} remote {remote} unreachable ({message}); trying again in {}ms",
                ui.paint(Style::Yellow, "!"),
                wait.as_millis()
            ),
            Event::PhaseStarted { phase, attempt } if *attempt > 1 => {
                format!(
                    "{} {phase} started (attempt {attempt})",
                    ui.phase_mark(PhaseStatus::Running)
                )
            }
            Event::PhaseStarted { phase, .. } => {
                format!("{} {phase} started", ui.phase_mark(PhaseStatus::Running))
            }
            Event::IterationStarted {
                phase,
                iteration,
                max_iters,
                ..
            } => format!(
                "{} {phase} iteration {iteration}/{max_iters}",
                ui.paint(Style::Dim, "↻")
            ),
            Event::PhaseRetrying {
                phase,
                attempt,
                error,
                wait,
            } => format!(
                "{} {phase} attempt {attempt} failed: {error}; retrying in {}",
                ui.paint(Style::Yellow, "↻"),
                human_duration(*wait)
            ),
            Event::PhaseSkipped { phase, reason } => format!(
                "{} {phase} skipped: {reason}",
                ui.phase_mark(PhaseStatus::Skipped)
            ),
            Event::PhaseFinished {
                phase,
                status: PhaseStatus::Waiting,
                error,
                ..
            } => format!(
                "{} {phase} waiting for approval{}",
                ui.phase_mark(PhaseStatus::Waiting),
                // Paused at a budget: which limit, and the spend so far.
                error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
            Event::PhaseFinished {
                phase,
                status,
                duration,
                error,
                ..
            } => {
                let mut text = format!(
                    "{} {phase} {} in {}",
                    ui.phase_mark(*status),
                    ui.phase_status(*status),
                    human_duration(*duration)
                );
                if let Some(error) = error {
                    for line in describe_error(error) {
                        text.push_str(&format!("\n    {line}"));
                    }
                }
                text
            }
            Event::Checkpoint { .. } => return,
            Event::RunFinished {
                run,
                status,
                reason,
            } => {
                let mut text = match reason {
                    Some(reason) => format!(
                        "{} run {}: {reason}",
                        ui.paint(Style::Bold, "wfe:"),
                        ui.run_status(*status)
                    ),
                    None => format!(
                        "{} run {}",
                        ui.paint(Style::Bold, "wfe:"),
                        ui.run_status(*status)
                    ),
                };
                // The runner is ending: nothing is left to `continue`.
                if let Some(hint) = super::reasons::next_step(*status, *reason, run, false) {
                    text.push_str(&format!("\n{} {hint}", ui.paint(Style::Yellow, "hint:")));
                }
                text
            }
        };
        let update: Box<dyn FnOnce(&mut Footer)> = match event {
            Event::PhaseStarted { phase, .. } => {
                let phase = phase.to_string();
                Box::new(move |f| {
                    if !f.running.contains(&phase) {
                        f.running.push(phase);
                    }
                })
            }
            // Each iteration adds its children to the phases to do.
            Event::IterationStarted { children, .. } => {
                let children = *children;
                Box::new(move |f| f.total += children)
            }
            Event::PhaseSkipped { .. } => Box::new(|f| f.done += 1),
            Event::PhaseFinished { phase, status, .. } => {
                let (phase, ended) = (phase.to_string(), status.is_final());
                Box::new(move |f| {
                    f.running.retain(|r| *r != phase);
                    f.done += usize::from(ended);
                })
            }
            // The run is over: erase the footer for good.
            Event::RunFinished { .. } => Box::new(|f| f.total = 0),
            _ => Box::new(|_| {}),
        };
        self.emit(Some(&text), update);
    }
}
