//! CI mode: which CI host wfe runs on (read from the environment here, the
//! only place that does), the flags every command that drives a run takes
//! for CI (`--ci`, `--junit`, `--deadline`, `--approve`), the progress a CI
//! log shows (one collapsible group per phase, timestamped lines, a final
//! summary line), and what is written once the runner stops: annotations,
//! the GitHub job summary, JUnit XML, and how to approve from elsewhere.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use super::context::Context;
use super::error::CliError;
use super::ui::{Ui, human_duration};
use crate::attempt::{LogLine, LogSink, Stream};
use crate::engine::control::{Action, ControlDir};
use crate::engine::{Event, Observer, PhaseStatus, RunStatus, StopReason};
use crate::report::{Host, Report, annotations, error_lines, groups, junit, summary};
use crate::retry::DurationSpec;
use crate::store::RunId;
use crate::template::{Approval, PhaseKind, Template};
use crate::time::Clock;

/// The CI flags of every command that drives a run.
#[derive(Debug, Args, Default)]
pub struct CiArgs {
    /// CI mode: no terminal drawing, a collapsible log group per phase, a job summary and annotations (default when CI, GITHUB_ACTIONS, GITLAB_CI or BUILDKITE is set)
    #[arg(long, conflicts_with = "no_ci")]
    pub ci: bool,
    /// Turn CI mode off even on a CI host
    #[arg(long)]
    pub no_ci: bool,
    /// Write a JUnit XML report of the run to FILE when the runner stops
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Stop cleanly before this much time has passed (e.g. `5h30m`): running phases are interrupted as Ctrl-C does, the run is paused and resumable
    #[arg(long, value_name = "DURATION", value_parser = parse_deadline)]
    pub deadline: Option<Duration>,
    /// Approve this gate up front when the run reaches it (repeatable)
    #[arg(long = "approve", value_name = "PHASE")]
    pub approve: Vec<String>,
    /// Approve every gate up front
    #[arg(long, conflicts_with = "approve")]
    pub approve_all: bool,
}

fn parse_deadline(text: &str) -> Result<Duration, String> {
    let d = DurationSpec::parse(text)?.0;
    if d.is_zero() {
        return Err("a deadline must be more than zero".to_string());
    }
    Ok(d)
}

/// The CI host named by the environment, if any: GitHub Actions, GitLab,
/// Buildkite, or another CI (`CI=true`).
pub fn detect_host() -> Option<Host> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("GITHUB_ACTIONS") {
        Some(Host::GitHub)
    } else if set("GITLAB_CI") {
        Some(Host::GitLab)
    } else if set("BUILDKITE") {
        Some(Host::Buildkite)
    } else if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
        Some(Host::Plain)
    } else {
        None
    }
}

/// CI mode as the flags and the environment set it: the host whose dialect
/// the output uses, or `None` when off.
pub fn mode(args: &CiArgs) -> Option<Host> {
    if args.no_ci {
        return None;
    }
    match detect_host() {
        Some(host) => Some(host),
        None if args.ci => Some(Host::Plain),
        None => None,
    }
}

/// Checks `--approve` against the template before anything runs: each
/// phase must exist and wait for approval (a `gate`, or `approval: after`).
pub fn check_approvals(args: &CiArgs, template: &Template) -> Result<(), CliError> {
    for asked in &args.approve {
        let phase = template.all_phases().into_iter().find(|p| p.id == *asked);
        match phase {
            None => {
                let gates: Vec<&str> = template
                    .all_phases()
                    .into_iter()
                    .filter(|p| is_gate(p))
                    .map(|p| p.id.as_str())
                    .collect();
                return Err(CliError::input(format!(
                    "--approve {asked}: template `{}` has no phase `{asked}`; its gates: {}",
                    template.name,
                    if gates.is_empty() {
                        "none".to_string()
                    } else {
                        gates.join(", ")
                    }
                )));
            }
            Some(p) if !is_gate(p) => {
                return Err(CliError::input(format!(
                    "--approve {asked}: phase `{asked}` is a {} phase, not a gate; only a `gate` or a phase with `approval: \"after\"` waits for approval",
                    kind_name(p.kind)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn is_gate(p: &crate::template::Phase) -> bool {
    p.kind == PhaseKind::Gate || p.approval == Some(Approval::After)
}

fn kind_name(kind: PhaseKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{kind:?}"))
}

/// When the runner must stop for a `--deadline` of `deadline` from now:
/// early enough for the longest `kill_grace` of the run's phases, plus two
/// seconds to checkpoint, to pass before it, but never before half of it.
pub fn stop_at(deadline: Duration, template: &Template) -> Instant {
    let margin = crate::engine::longest_kill_grace(template) + Duration::from_secs(2);
    let stop = deadline.saturating_sub(margin).max(deadline / 2);
    Instant::now() + stop
}

/// Which phases `--approve`/`--approve-all` approve when they wait.
#[derive(Debug, Clone, Default)]
pub struct Approvals {
    all: bool,
    phases: BTreeSet<String>,
}

impl Approvals {
    /// From the flags.
    pub fn new(args: &CiArgs) -> Self {
        Approvals {
            all: args.approve_all,
            phases: args.approve.iter().cloned().collect(),
        }
    }

    /// Whether nothing is approved up front.
    pub fn is_empty(&self) -> bool {
        !self.all && self.phases.is_empty()
    }

    /// Whether `phase` (a loop child's label ends in its id) is approved.
    pub fn covers(&self, phase: &str) -> bool {
        self.all
            || self.phases.contains(phase)
            || phase
                .rsplit(['.', ']'])
                .next()
                .is_some_and(|id| self.phases.contains(id))
    }
}

/// Approves the phases `--approve` names as soon as they wait, through the
/// runner's own control directory (the runner acts on it at its next
/// safe point, as on a `wfe approve` from another terminal). A runner
/// with nothing else to do stops before it reads the request: the caller
/// withdraws it and approves without a runner, then drives on.
pub struct Approver {
    inner: Arc<dyn Observer>,
    approvals: Approvals,
    control: ControlDir,
    ui: Ui,
    /// The requests sent, so those the runner ended before reading can be
    /// taken back (the caller then approves without a runner).
    sent: Mutex<Vec<String>>,
}

impl Approver {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn Observer>,
        approvals: Approvals,
        control: ControlDir,
        ui: &Ui,
    ) -> Self {
        Approver {
            inner,
            approvals,
            control,
            ui: ui.clone(),
            sent: Mutex::new(Vec::new()),
        }
    }

    /// Takes back every request the runner has not read.
    pub fn withdraw_unread(&self) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        for id in sent.drain(..) {
            self.control.withdraw(&id);
        }
    }
}

impl LogSink for Approver {
    fn line(&self, phase: &str, line: &LogLine) {
        self.inner.line(phase, line);
    }
}

impl Observer for Approver {
    fn event(&self, event: &Event<'_>) {
        self.inner.event(event);
        if let Event::PhaseFinished {
            phase,
            status: PhaseStatus::Waiting,
            ..
        } = event
            && self.approvals.covers(phase)
        {
            let action = Action::Approve {
                phase: phase.to_string(),
                artifact: None,
                budget: None,
            };
            let by = format!("wfe --approve (pid {})", std::process::id());
            match self.control.send(action, &by) {
                Ok(_) => self
                    .ui
                    .note(&format!("{phase}: approved up front (--approve)")),
                Err(e) => self
                    .ui
                    .warn(&format!("{phase}: cannot approve up front: {e}")),
            }
        }
    }
}

/// Progress for a CI log: timestamped lines, and each phase's output as one
/// collapsible group in the host's dialect, written whole when the phase
/// ends (groups cannot nest or interleave, and parallel phases would).
pub struct CiProgress {
    ui: Ui,
    host: Host,
    clock: Clock,
    show_output: bool,
    buffers: Mutex<HashMap<String, Vec<String>>>,
}

impl CiProgress {
    /// Progress on `ui` for `host`; `show_output` keeps phases' lines.
    pub fn new(ui: &Ui, host: Host, clock: Clock, show_output: bool) -> Self {
        CiProgress {
            ui: ui.clone(),
            host,
            clock,
            show_output,
            buffers: Mutex::new(HashMap::new()),
        }
    }

    fn stamped(&self, text: &str) -> String {
        format!("[{}] {text}", self.clock.stamp())
    }

    fn say(&self, text: &str) {
        self.ui.note(&self.stamped(text));
    }
}

impl LogSink for CiProgress {
    fn line(&self, phase: &str, line: &LogLine) {
        if !self.show_output {
            return;
        }
        let text = match line.stream {
            Stream::Stderr => format!("[stderr] {}", line.line),
            _ => line.line.clone(),
        };
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        buffers.entry(phase.to_string()).or_default().push(text);
    }
}

impl Observer for CiProgress {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::RunStarted {
                run,
                template,
                phases,
                done,
            } => self.say(&format!(
                "wfe: run {run} of {template} ({phases} phases, {done} done)"
            )),
            Event::LeftoversEnded {
                phase,
                attempt,
                count,
            } => self.say(&format!(
                "! ended {count} leftover process(es) of {phase} attempt {attempt}"
            )),
            Event::WorktreesRemoved { names } => self.say(&format!(
                "! removed {} stray worktree(s) of a stopped runner: {}",
                names.len(),
                names.join(", ")
            )),
            Event::RemoteRetry {
                remote,
                message,
                wait,
            } => self.say(&format!(
                "! remote {remote} unreachable ({message}); trying again in {}ms",
                wait.as_millis()
            )),
            Event::PhaseStarted { phase, attempt } => {
                self.say(&format!("▶ {phase} started (attempt {attempt})"))
            }
            Event::IterationStarted {
                phase,
                iteration,
                max_iters,
                ..
            } => self.say(&format!("↻ {phase} iteration {iteration}/{max_iters}")),
            Event::PhaseRetrying {
                phase,
                attempt,
                error,
                wait,
            } => self.say(&format!(
                "↻ {phase} attempt {attempt} failed: {error}; retrying in {}",
                human_duration(*wait)
            )),
            Event::PhaseSkipped { phase, reason } => {
                self.say(&format!("– {phase} skipped: {reason}"))
            }
            Event::PhaseFinished {
                phase,
                status,
                attempt,
                duration,
                error,
            } => {
                let mut body = self
                    .buffers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(*phase)
                    .unwrap_or_default();
                if let Some(error) = error {
                    body.extend(error_lines(error));
                }
                let what = match status {
                    PhaseStatus::Waiting => "waiting for approval".to_string(),
                    PhaseStatus::Pending => "interrupted".to_string(),
                    s => s.as_str().to_string(),
                };
                let title = self.stamped(&format!(
                    "{} {phase} {what} in {} (attempt {attempt})",
                    mark(*status),
                    human_duration(*duration)
                ));
                let lines =
                    groups::group(self.host, phase, &title, &body, self.clock.epoch_seconds());
                self.ui.note(&lines.join("\n"));
            }
            Event::Checkpoint { .. } | Event::RunFinished { .. } => {}
        }
    }
}

fn mark(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Completed => "✓",
        PhaseStatus::Waiting => "⏸",
        PhaseStatus::Skipped => "–",
        PhaseStatus::Pending | PhaseStatus::Running => "▶",
        _ => "✗",
    }
}

/// What the CI flags ask for once the runner stopped: annotations and the
/// job summary (GitHub), the way to approve from elsewhere, the final
/// summary line (CI mode), and the JUnit file (`--junit`).
pub fn after_run(
    ctx: &Context,
    ui: &Ui,
    id: &RunId,
    host: Option<Host>,
    args: &CiArgs,
) -> Result<(), CliError> {
    if host.is_none() && args.junit.is_none() {
        return Ok(());
    }
    let report = Report::load(&ctx.store, id)?;
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::render(&report)).map_err(|e| {
            CliError::internal(format!("cannot write --junit {}: {e}", path.display()))
        })?;
    }
    let Some(host) = host else { return Ok(()) };
    let steps = next_steps(&report, id);
    if host == Host::GitHub {
        for line in annotations::render(&annotations::collect(&report)) {
            ui.err_line(&line);
        }
        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
            write_summary(&PathBuf::from(path), &report, &steps)?;
        }
    }
    if !steps.is_empty() {
        let text: Vec<&str> = steps
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("```"))
            .collect();
        ui.note(&text.join("\n"));
    }
    let counts = report.run.counts();
    let r = &report.run.record;
    let reason = r
        .reason
        .as_ref()
        .map(|why| format!(" ({why})"))
        .unwrap_or_default();
    ui.err_line(&format!(
        "[{}] wfe: run {} {}{reason}: {} phases: {} completed, {} failed, {} skipped",
        ctx.clock.stamp(),
        r.id,
        r.status.as_str(),
        counts.total,
        counts.completed,
        counts.failed + counts.timed_out + counts.cancelled,
        counts.skipped
    ));
    Ok(())
}

/// Appends the summary to the file, within what GitHub accepts of it.
fn write_summary(path: &PathBuf, report: &Report, steps: &[String]) -> Result<(), CliError> {
    let used = std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    // Strictly below 1 MiB, counting what earlier steps' text left in the file.
    let budget = (summary::GITHUB_LIMIT - 1).saturating_sub(used);
    let text = summary::cap(&summary::render(report, steps), budget);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).map(|()| f));
    if let Ok(f) = &mut file {
        let _ = f.flush();
    }
    file.map(|_| ()).map_err(|e| {
        CliError::internal(format!(
            "cannot append the job summary to GITHUB_STEP_SUMMARY={}: {e}",
            path.display()
        ))
    })
}

/// How to move a stopped run on from anywhere: approve a gate on a laptop
/// and resume in a new job, or resume a run paused by its deadline. Lines
/// of markdown (a code block of commands after a sentence).
fn next_steps(report: &Report, id: &RunId) -> Vec<String> {
    let r = &report.run.record;
    let fence = "```".to_string();
    match (r.status, r.reason.as_ref()) {
        (RunStatus::Waiting, Some(StopReason::WaitingForApproval { phases })) => {
            let mut lines = vec![format!(
                "The run waits for approval of {}. Push it from this job (`wfe push`), then approve from anywhere:",
                phases.join(", ")
            )];
            lines.push(fence.clone());
            lines.push("wfe pull".to_string());
            for p in phases {
                lines.push(format!("wfe approve {id} {p}"));
            }
            lines.push("wfe push".to_string());
            lines.push(fence.clone());
            lines.push("and go on here or in a new job:".to_string());
            lines.push(fence.clone());
            lines.push(format!("wfe pull && wfe resume {id}"));
            lines.push(fence);
            lines
        }
        (RunStatus::Paused, Some(StopReason::Deadline | StopReason::Interrupted)) => vec![
            "The run stopped before its end. Push it from this job (`wfe push`), then go on in a new job or anywhere:".to_string(),
            fence.clone(),
            format!("wfe pull && wfe resume {id}"),
            fence,
        ],
        _ => Vec::new(),
    }
}
