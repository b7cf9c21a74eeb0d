//! `wfe log RUN PHASE [--follow]`: a phase's output, and with `--follow`
//! its output as it is produced, from any terminal, including one started
//! after the phase was: what the checkpoint's log has and what the live
//! file of the running attempt has, then each new line as it comes, until
//! the attempt's result is committed or the run stops.

use std::collections::BTreeSet;

use crate::attempt::Stream;
use crate::cli::context::Context;
use crate::cli::error::{CliError, ErrorKind, Outcome};
use crate::cli::reasons;
use crate::cli::ui::{Style, Ui};
use crate::cli::watch::Changes;
use crate::engine::live::{self, Follower, LiveEntry, LiveKind};
use crate::engine::view::{PhaseView, RunView};
use crate::engine::{PhaseStatus, RunStatus};
use crate::store::RunId;

/// Prints a phase's output; with `follow`, keeps printing until its
/// attempt ends (exit code as its status says) or the run stops (3).
pub(crate) fn phase_output(
    ctx: &Context,
    ui: &Ui,
    id: &RunId,
    phase: &str,
    follow: bool,
) -> Result<Outcome, CliError> {
    if !follow {
        let view = PhaseView::load(&ctx.store, id, phase)?;
        let mut out = Printer::default();
        for line in &view.log {
            out.line(ui, line.stream, &line.line);
        }
        return Ok(Outcome::Success);
    }
    // Watching starts before the first look, so no change is missed.
    let changes = Changes::new(&ctx.store.wfe_dir());
    let root = ctx.store.wfe_dir().join("live");
    let mut out = Printer::default();
    // Attempts whose output has been printed whole.
    let mut shown: BTreeSet<u32> = BTreeSet::new();
    let mut current: Option<(u32, Follower)> = None;
    loop {
        let view = PhaseView::load(&ctx.store, id, phase)?;
        let state = &view.state;
        let running = (state.status == PhaseStatus::Running).then_some(state.attempt);
        if let Some((attempt, follower)) = &mut current {
            out.entries(ui, follower.read());
            if running != Some(*attempt) {
                // Committed: the runner wrote everything before it did.
                out.entries(ui, follower.read());
                out.end_partial(ui);
                shown.insert(*attempt);
                current = None;
            }
        }
        // Attempts that ended before this command saw them live: the
        // checkpoint's log has them.
        let ended: BTreeSet<u32> = view
            .log
            .iter()
            .map(|l| l.attempt)
            .filter(|a| Some(*a) != running && !shown.contains(a))
            .collect();
        for attempt in ended {
            for line in view.log.iter().filter(|l| l.attempt == attempt) {
                out.line(ui, line.stream, &line.line);
            }
            shown.insert(attempt);
        }
        if current.is_none()
            && let Some(attempt) = running.filter(|a| !shown.contains(a))
            && let Some(mut follower) =
                Follower::open(&live::attempt_file(&root, id.as_str(), &view.key, attempt))
        {
            out.entries(ui, follower.read());
            current = Some((attempt, follower));
        }
        if let Some(outcome) = ended_outcome(state.status) {
            return Ok(outcome);
        }
        if running.is_none() {
            let run = RunView::load(&ctx.store, id)?.record.status;
            if run != RunStatus::Running || !reasons::runner_live(ctx, id) {
                return Ok(Outcome::Reported(ErrorKind::Stopped));
            }
        } else if !reasons::runner_live(ctx, id) {
            // The runner died mid-attempt: nothing more will come.
            if let Some((_, follower)) = &mut current {
                out.entries(ui, follower.read());
            }
            out.end_partial(ui);
            return Ok(Outcome::Reported(ErrorKind::Stopped));
        }
        changes.wait();
    }
}

/// The exit a phase's status calls for once its attempt is over; none
/// while it may still produce output.
fn ended_outcome(status: PhaseStatus) -> Option<Outcome> {
    match status {
        PhaseStatus::Completed | PhaseStatus::Skipped => Some(Outcome::Success),
        PhaseStatus::Failed | PhaseStatus::TimedOut => Some(Outcome::Reported(ErrorKind::Failed)),
        PhaseStatus::Cancelled | PhaseStatus::Waiting => {
            Some(Outcome::Reported(ErrorKind::Stopped))
        }
        PhaseStatus::Pending | PhaseStatus::Running => None,
    }
}

/// Prints lines as `tail -f` would, a streamed line token by token.
#[derive(Debug, Default)]
struct Printer {
    /// A line printed in part: its stream and the bytes shown.
    partial: Option<(Stream, usize)>,
}

impl Printer {
    fn entries(&mut self, ui: &Ui, entries: Vec<LiveEntry>) {
        for entry in entries {
            match entry.kind {
                LiveKind::Partial => self.partial(ui, entry.stream, &entry.text),
                LiveKind::Line => self.line(ui, entry.stream, &entry.text),
                LiveKind::Tool => {
                    let call: serde_json::Value =
                        serde_json::from_str(&entry.text).unwrap_or_default();
                    let tool = call["tool"].as_str().unwrap_or("?");
                    let took = call["duration_ms"].as_u64().unwrap_or(0);
                    let failed = call["error"].as_str().map(|e| format!(": {e}"));
                    self.end_partial(ui);
                    ui.out(&ui.paint(
                        Style::Dim,
                        &format!("→ {tool} ({took} ms){}", failed.unwrap_or_default()),
                    ));
                }
            }
        }
    }

    fn partial(&mut self, ui: &Ui, stream: Stream, text: &str) {
        match self.partial {
            Some((s, _)) if s != stream => self.end_partial(ui),
            _ => {}
        }
        if self.partial.is_none() {
            let _ = ui.raw(prefix(ui, stream).as_bytes());
        }
        let shown = self.partial.map_or(0, |(_, n)| n);
        self.partial = Some((stream, shown + text.len()));
        let _ = ui.raw(text.as_bytes());
    }

    fn line(&mut self, ui: &Ui, stream: Stream, text: &str) {
        if let Some((s, n)) = self.partial
            && s == stream
        {
            // The whole line of what was shown in part: finish it.
            self.partial = None;
            let rest = text.get(n..).unwrap_or_default();
            ui.out(rest);
            return;
        }
        self.end_partial(ui);
        ui.out(&format!("{}{text}", prefix(ui, stream)));
    }

    fn end_partial(&mut self, ui: &Ui) {
        if self.partial.take().is_some() {
            ui.out("");
        }
    }
}

/// What goes before a line: nothing for the phase's own output, the
/// stream's name for the rest.
fn prefix(ui: &Ui, stream: Stream) -> String {
    match stream {
        Stream::Stdout | Stream::Model => String::new(),
        Stream::Stderr => format!("{} ", ui.paint(Style::Dim, "stderr")),
        Stream::Wfe => format!("{} ", ui.paint(Style::Dim, "wfe")),
    }
}
