//! `wfe show`: a run, one phase of it, or one artifact, rendered from the
//! engine's views (this command reads nothing itself).

use clap::Args;

use crate::attempt::{AttemptError, is_text};
use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::reasons;
use crate::cli::ui::{Style, Ui, describe_error, human_duration};
use crate::engine::view::{self, PhaseView, RunDetail};
use crate::engine::{Comment, PhaseState, PhaseStatus, RunStatus, layout};
use crate::template::PhaseKind;

/// Lines of a phase's log shown by default.
const LOG_TAIL: usize = 40;

/// Show a run, a phase, or an artifact
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// A phase of the run; a loop's child as CHILD (its latest iteration) or CHILD@N
    pub phase: Option<String>,
    /// An artifact of the phase (printed as JSON on stdout)
    pub artifact: Option<String>,
    /// A file artifact of the phase, written byte for byte to stdout: its
    /// path under files/ (as `wfe show RUN PHASE` lists it), or an output's
    /// name when it kept one file
    #[arg(long, value_name = "NAME", requires = "phase", conflicts_with_all = ["artifact", "json"])]
    pub file: Option<String>,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe show`.
pub(crate) fn run(args: ShowArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let Some(phase) = args.phase.as_deref() else {
        let detail = RunDetail::load(&ctx.store, &id)?;
        let runner = reasons::runner(ctx, &id);
        if args.json {
            let mut doc = to_json(&detail)?;
            super::status::add_truth(&mut doc, &detail.run, runner.as_ref());
            ui.json(&doc);
        } else {
            show_run(&detail, runner.is_some() || detail.run.claimed(), ui);
            show_comments(ui, detail.comments.iter());
        }
        return Ok(Outcome::Success);
    };
    if let Some(name) = args.file.as_deref() {
        let bytes = view::phase_file(&ctx.store, &id, phase, name)?;
        if ui.stdout_is_terminal() && !is_text(&bytes) {
            return Err(CliError::input(format!(
                "file artifact `{name}` is binary ({} bytes); not writing it to a terminal",
                bytes.len()
            ))
            .hint(format!(
                "redirect it: `wfe show {} {phase} --file {name} > FILE`, or `wfe export {} {phase} DIR`",
                args.run, args.run
            )));
        }
        ui.raw(&bytes).map_err(|e| {
            CliError::internal(format!(
                "cannot write file artifact `{name}` to stdout: {e}"
            ))
        })?;
        return Ok(Outcome::Success);
    }
    if let Some(name) = args.artifact.as_deref() {
        ui.json(&view::artifact(&ctx.store, &id, phase, name)?);
        return Ok(Outcome::Success);
    }
    let view = PhaseView::load(&ctx.store, &id, phase)?;
    if args.json {
        ui.json(&to_json(&view)?);
        return Ok(Outcome::Success);
    }
    show_phase(&view, &id.as_str()[..10], &id.ref_name(), ui);
    Ok(Outcome::Success)
}

/// A view as a JSON document.
fn to_json(view: &impl serde::Serialize) -> Result<serde_json::Value, CliError> {
    serde_json::to_value(view)
        .map_err(|e| CliError::internal(format!("cannot write the JSON document: {e}")))
}

/// `wfe show RUN PHASE`; `short` is the run id as the hints spell it,
/// `ref_name` the run's ref.
fn show_phase(view: &PhaseView, short: &str, ref_name: &str, ui: &Ui) {
    let (phase, key, state) = (view.phase.as_str(), view.key.as_str(), &view.state);
    let shown = match &view.within {
        Some((parent, k)) => format!("{phase} ({parent} iteration {k})"),
        None => phase.to_string(),
    };
    let id = &view.run;
    ui.out(&format!(
        "{} {}  {}  attempt {}",
        ui.phase_mark(state.status),
        ui.paint(Style::Bold, &shown),
        ui.phase_status(state.status),
        state.attempt
    ));
    if let Some(spec) = &view.loop_spec {
        ui.out(&format!(
            "  iteration  {} of at most {}{}",
            state.iteration,
            spec.max_iters,
            spec.until
                .as_ref()
                .map(|u| format!(", until {u}"))
                .unwrap_or_default()
        ));
        if state.exhausted {
            let then = match &spec.next {
                Some(next) => format!("on_exhausted: next `{next}`, which runs instead"),
                None => "on_exhausted: continue".to_string(),
            };
            ui.out(&format!(
                "  exhausted  `until` still false after the last iteration ({then})"
            ));
        }
    }
    if let Some(ms) = state.duration_ms {
        ui.out(&format!(
            "  took       {}",
            human_duration(std::time::Duration::from_millis(ms))
        ));
    }
    if let Some(code) = state.exit_code {
        ui.out(&format!("  exit code  {code}"));
    }
    if let Some(worker) = &state.worker {
        ui.out(&format!("  worker     {worker}"));
    }
    if let Some(usage) = &state.usage {
        let cost = usage
            .cost_usd
            .map(|c| format!(", ${c:.4}"))
            .unwrap_or_default();
        let seat = match (&usage.provider, &usage.model) {
            (Some(provider), Some(model)) => format!("{model} ({provider}): "),
            _ => String::new(),
        };
        ui.out(&format!(
            "  model      {seat}{} request{}, {} tokens in, {} out{cost}",
            usage.requests,
            if usage.requests == 1 { "" } else { "s" },
            usage.input_tokens,
            usage.output_tokens
        ));
    }
    if let Some(spend) = &state.spend {
        ui.out(&format!("  spend      {} (all attempts)", spend.summary()));
    }
    if let Some(budget) = &state.budget {
        ui.out(&format!(
            "  budget     {} (raised)",
            super::status::budget_summary(budget)
        ));
    }
    // Who answered in each attempt, when that is more than one attempt's worth.
    if state.models.len() > 1 {
        let each: Vec<String> = state
            .models
            .iter()
            .map(|m| format!("{}: {} ({})", m.attempt, m.model, m.provider))
            .collect();
        ui.out(&format!("  attempts   {}", each.join(" · ")));
    }
    if state.kind == PhaseKind::Agent {
        for (path, what) in [
            (&view.exchanges, "exchanges"),
            (&view.tool_calls, "tool calls"),
        ] {
            if let Some(path) = path {
                ui.out(&format!(
                    "  {what:<10} {}",
                    ui.paint(Style::Dim, &format!("git show {ref_name}:{path}"))
                ));
            }
        }
        if state.continues {
            ui.out("  continues  its conversation goes on at the next `wfe resume`");
        }
    }
    if let Some(reason) = &state.skip_reason {
        ui.out(&format!("  skipped    {reason}"));
    }
    if let Some(error) = &state.error {
        for (n, line) in describe_error(error).into_iter().enumerate() {
            ui.out(&format!(
                "  {}  {}",
                if n == 0 { "error     " } else { "          " },
                ui.paint(Style::Red, &line)
            ));
        }
    }
    let named = &view.address;
    for name in &state.artifacts {
        ui.out(&format!(
            "  artifact   {name}   {}",
            ui.paint(Style::Dim, &format!("wfe show {short} {named} {name}"))
        ));
    }
    for file in &view.files {
        ui.out(&format!(
            "  file       {}  {} bytes  sha256:{}{}   {}",
            file.path,
            file.size,
            &file.sha256[..12],
            if file.text { "" } else { "  (binary)" },
            ui.paint(
                Style::Dim,
                &format!("wfe show {short} {named} --file {}", file.path)
            )
        ));
    }
    for (k, children) in view.iterations.iter().enumerate() {
        let cells: Vec<String> = children
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    ui.phase_mark(c.status),
                    c.id,
                    ui.phase_status(c.status)
                )
            })
            .collect();
        ui.out(&format!(
            "  {:<10} {}",
            format!("iter {}", k + 1),
            cells.join("   ")
        ));
    }
    if !view.attempts.is_empty() {
        let numbers: Vec<&str> = view.attempts.iter().map(|a| a.number.as_str()).collect();
        ui.out(&format!(
            "  failed attempts kept under {}/: {}",
            layout::attempts(key),
            numbers.join(", ")
        ));
        for attempt in &view.attempts {
            for rejected in &attempt.rejected {
                ui.out(&format!(
                    "  rejected output (attempt {}) {}:",
                    attempt.number, rejected.file
                ));
                for line in rejected.text.lines().take(LOG_TAIL) {
                    ui.out(&format!("    {line}"));
                }
            }
        }
    }
    for (artifact, schema) in &view.expected_schemas {
        ui.out(&format!("  expected schema of {artifact}:"));
        for line in serde_json::to_string_pretty(schema)
            .unwrap_or_default()
            .lines()
        {
            ui.out(&format!("    {}", ui.paint(Style::Dim, line)));
        }
    }
    // `wfe edit` and `wfe accept` change top-level phases only.
    if let (true, Some(AttemptError::InvalidOutputs { problems })) =
        (view.is_top_level(), &state.error)
    {
        let edits: Vec<String> = problems
            .iter()
            .map(|p| format!("`wfe edit {id} {phase} {}`", p.artifact))
            .collect();
        ui.out(&format!(
            "  {} {} to fix an output, or `wfe accept {id} {phase} --force` to take them as they are",
            ui.paint(Style::Yellow, "next:"),
            edits.join(" or ")
        ));
    }
    show_comments(ui, view.comments.iter());
    if !view.log.is_empty() {
        let (skip, tail) = view.log_tail(LOG_TAIL);
        ui.out(&format!(
            "  log ({} lines{}):",
            view.log.len(),
            if skip > 0 {
                format!(", last {LOG_TAIL}")
            } else {
                String::new()
            }
        ));
        for line in tail {
            ui.out(&format!(
                "    {} {}",
                ui.paint(Style::Dim, &format!("{:?}", line.stream).to_lowercase()),
                line.line
            ));
        }
    }
}

fn show_comments<'a>(ui: &Ui, comments: impl Iterator<Item = &'a Comment>) {
    for c in comments {
        let about = c
            .phase
            .as_deref()
            .map(|p| format!(" on {p}"))
            .unwrap_or_default();
        ui.out(&format!(
            "  {} {}{about}, {}:",
            ui.paint(Style::Bold, "comment"),
            c.author,
            c.time
        ));
        for line in c.text.lines() {
            ui.out(&format!("    {line}"));
        }
    }
}

/// The run's record and phases; `live` when a runner holds it now.
fn show_run(detail: &RunDetail, live: bool, ui: &Ui) {
    let r = &detail.run.record;
    ui.out(&format!(
        "{} {}  {}",
        ui.paint(Style::Bold, "run"),
        r.id,
        ui.shown_run_status(detail.run.shown_status(), live)
    ));
    ui.out(&format!(
        "  template   {} ({})",
        r.template, r.template_source
    ));
    ui.out(&format!("  created    {}", r.created_at));
    if let Some(at) = &r.finished_at {
        ui.out(&format!("  finished   {at}"));
    }
    if let Some(reason) = &r.reason {
        ui.out(&format!("  reason     {reason}"));
    }
    if let Some(line) = super::status::spend_line(&detail.run) {
        ui.out(&format!("  {line}"));
    }
    let failed = detail.run.failed_phases();
    if r.status == RunStatus::Completed && !failed.is_empty() {
        ui.out(&format!(
            "  failed     {}",
            super::status::completed_despite(&failed)
        ));
    }
    let hint = if r.status == RunStatus::Running && !live {
        Some(reasons::interrupted_hint(&r.id))
    } else {
        reasons::next_step(r.status, r.reason.as_ref(), &r.id, live)
    };
    if let Some(hint) = hint {
        ui.out(&format!("  hint       {hint}"));
    }
    ui.out(&format!("  base       {}", r.base_commit));
    ui.out(&format!(
        "  args       {}",
        serde_json::to_string(&r.args).unwrap_or_default()
    ));
    ui.out(&format!("  ref        refs/wfe/runs/{}", r.id));
    ui.out("  phases");
    let row = |p: &PhaseState, shown: PhaseStatus, claim: String, indent: &str| {
        let took = p
            .duration_ms
            .map(|ms| human_duration(std::time::Duration::from_millis(ms)))
            .unwrap_or_default();
        let artifacts = if p.artifacts.is_empty() {
            String::new()
        } else {
            format!("→ {}", p.artifacts.join(", "))
        };
        let iteration = match p.kind {
            PhaseKind::Loop if p.iteration > 0 => format!("iteration {}", p.iteration),
            _ => String::new(),
        };
        ui.out(&format!(
            "    {indent}{} {:<w$} {} {:>8}  {}",
            ui.phase_mark(shown),
            p.id,
            ui.phase_status_cell(shown),
            took,
            ui.paint(Style::Dim, &format!("{claim}{iteration}{artifacts}")),
            w = 20 - indent.chars().count(),
        ));
    };
    for p in &detail.run.phases {
        let claim = super::status::claim_note(p.claim.as_ref());
        row(&p.state, p.shown_status(), claim, "");
        for c in &p.children {
            row(c, c.status, String::new(), "  ");
        }
    }
}
