//! `wfe status`: the DAG of a run drawn in the terminal, layer by layer,
//! from the engine's run view.

use std::collections::BTreeMap;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::reasons;
use crate::cli::ui::{Style, Ui, human_duration};
use crate::engine::view::{PhaseCounts, RunView};
use crate::engine::{PhaseState, RunStatus};

/// Draw a run's DAG with each phase's state
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run: an id, a unique prefix, or `latest` (the default)
    #[arg(default_value = "latest")]
    pub run: String,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
    /// Draw the run again as it changes, until it stops (on a terminal in
    /// place; otherwise a new block each time it changed)
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
}

/// Runs `wfe status`.
pub(crate) fn run(args: StatusArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let view = RunView::load(&ctx.store, &id)?;
    let runner = reasons::runner(ctx, &id);
    if args.json {
        let mut doc = serde_json::to_value(&view)
            .map_err(|e| CliError::internal(format!("cannot write the JSON document: {e}")))?;
        add_truth(&mut doc, &view, runner.as_ref());
        ui.json(&doc);
        return Ok(Outcome::Success);
    }
    if args.watch {
        return watch(ctx, ui, &id);
    }
    for line in render(&view, runner.as_ref(), ui) {
        ui.out(&line);
    }
    Ok(Outcome::Success)
}

/// The DAG drawn as lines, with the run's spend, reason and next step.
fn render(view: &RunView, runner: Option<&crate::store::LockHolder>, ui: &Ui) -> Vec<String> {
    let mut lines = Vec::new();
    // Workers holding live claims work on the run elsewhere: not interrupted.
    let live = runner.is_some() || view.claimed();
    lines.push(format!(
        "{} {} · {} · {}",
        ui.paint(Style::Bold, &format!("run {}", view.record.id)),
        view.record.template,
        ui.shown_run_status(view.shown_status(), live),
        counts_line(&view.counts()),
    ));
    let width = view.states().map(|p| p.id.len()).max().unwrap_or(0);
    for layer in &view.layers {
        lines.push(ui.paint(Style::Dim, "  │"));
        for (k, &i) in layer.iter().enumerate() {
            let row = &view.phases[i];
            let p = &row.state;
            let branch = match (layer.len(), k + 1 == layer.len()) {
                (1, _) => "  ●",
                (_, false) => "  ├─●",
                (_, true) => "  └─●",
            };
            let needs = if row.needs.is_empty() {
                String::new()
            } else {
                format!("← {}", row.needs.join(", "))
            };
            let iteration = match row.max_iters {
                Some(max) if p.iteration > 0 => format!(
                    "  iteration {}/{max}{}",
                    p.iteration,
                    if p.exhausted { " (exhausted)" } else { "" }
                ),
                _ => String::new(),
            };
            lines.push(format!(
                "{} {} {:<width$}  {} {}{}  {}",
                ui.paint(Style::Dim, branch),
                ui.phase_mark(row.shown_status()),
                p.id,
                ui.phase_status_cell(row.shown_status()),
                took_and_attempts(p),
                iteration,
                ui.paint(
                    Style::Dim,
                    &format!("{}{needs}", claim_note(row.claim.as_ref()))
                ),
            ));
            // A loop's current iteration, indented under it (a nested
            // loop's under that).
            child_lines(ui, &mut lines, &row.children, &row.nested, width, "      ");
        }
    }
    let record = &view.record;
    if let Some(line) = spend_line(view) {
        lines.push(format!("  {}", ui.paint(Style::Dim, &line)));
    }
    if let Some(reason) = &record.reason {
        lines.push(format!("  {}", ui.paint(Style::Red, &reason.to_string())));
    }
    for p in view.states() {
        if let Some(error @ crate::attempt::AttemptError::Budget { soft: true, .. }) = &p.error
            && p.status == crate::engine::PhaseStatus::Waiting
        {
            lines.push(format!("  {}: {error}", p.id));
        }
    }
    let failed = view.failed_phases();
    if record.status == RunStatus::Completed && !failed.is_empty() {
        lines.push(format!(
            "  {}",
            ui.paint(Style::Red, &completed_despite(&failed))
        ));
    }
    let hint = if record.status == RunStatus::Running && !live {
        Some(reasons::interrupted_hint(&record.id))
    } else {
        reasons::next_step(record.status, record.reason.as_ref(), &record.id, live)
    };
    if let Some(hint) = hint {
        lines.push(format!("  {} {hint}", ui.paint(Style::Yellow, "hint:")));
    }
    lines
}

/// `--watch`: draws the run again whenever its ref, runner or live output
/// changes, until the run stops; on a terminal in place, otherwise a new
/// block only when the drawing changed.
fn watch(ctx: &Context, ui: &Ui, id: &crate::store::RunId) -> Result<Outcome, CliError> {
    let changes = crate::cli::watch::Changes::new(&ctx.store.wfe_dir());
    let terminal = ui.stdout_is_terminal();
    let mut last: Option<Vec<String>> = None;
    loop {
        let view = RunView::load(&ctx.store, id)?;
        let runner = reasons::runner(ctx, id);
        let lines = render(&view, runner.as_ref(), ui);
        if last.as_ref() != Some(&lines) {
            if terminal {
                // Home and clear: the new drawing replaces the old one.
                let _ = ui.raw(b"\x1b[H\x1b[2J");
            } else if last.is_some() {
                ui.out("");
            }
            for line in &lines {
                ui.out(line);
            }
            last = Some(lines);
        }
        if view.record.status != RunStatus::Running || runner.is_none() {
            return Ok(Outcome::from(view.record.status));
        }
        changes.wait();
    }
}

/// Adds what the stored run document cannot know to `doc`: `runner` (the
/// live holder's pid, host and since, or null when no runner holds the
/// run: a `running` run is then interrupted) and `failed_phases`.
pub(crate) fn add_truth(
    doc: &mut serde_json::Value,
    view: &RunView,
    runner: Option<&crate::store::LockHolder>,
) {
    if let Some(map) = doc.as_object_mut() {
        map.insert(
            "runner".into(),
            serde_json::to_value(runner).unwrap_or(serde_json::Value::Null),
        );
        map.insert("failed_phases".into(), view.failed_phases().into());
    }
}

/// What the run spent, with its budget: `spend 240 tokens, $0.0012, 2 tool
/// calls, 1.2s · budget 500 tokens`; none for a run that spent nothing
/// and has no budget (a run of scripts).
pub(crate) fn spend_line(view: &RunView) -> Option<String> {
    let budget = view.record.budget.as_ref();
    if budget.is_none() && view.phases.iter().all(|p| p.state.spend.is_none()) {
        return None;
    }
    let mut line = format!("spend {}", view.spend().summary());
    if let Some(budget) = budget {
        line.push_str(&format!(" · budget {}", budget_summary(budget)));
    }
    Some(line)
}

/// A budget's limits in words: `300 tokens, $2.50, 30m, 200 tool calls (soft 80%)`.
pub(crate) fn budget_summary(budget: &crate::budget::Budget) -> String {
    let limits: Vec<String> = crate::budget::Dimension::ALL
        .iter()
        .filter_map(|&d| budget.limit(d).map(|v| d.show(v)))
        .collect();
    format!(
        "{} (soft {}%)",
        limits.join(", "),
        (budget.soft() * 100.0).round() as u64
    )
}

/// "1/3 phases completed, 1 failed, 1 skipped": each way a phase ended,
/// apart, so a cancelled run never reads as done.
fn counts_line(c: &PhaseCounts) -> String {
    let mut line = format!("{}/{} phases completed", c.completed, c.total);
    for (n, what) in [
        (c.failed, "failed"),
        (c.timed_out, "timed out"),
        (c.skipped, "skipped"),
        (c.cancelled, "cancelled"),
    ] {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    }
    line
}

/// The line a completed run with failed or timed-out phases carries.
pub(crate) fn completed_despite(failed: &[&str]) -> String {
    format!(
        "completed despite failed phase{}: {} (on_failure: continue)",
        if failed.len() == 1 { "" } else { "s" },
        failed.join(", ")
    )
}

/// A worker's claim on a phase, in words: `on w3@host (lease until …)`
/// while it holds, `claim by w3@host lapsed at …` once its worker stopped
/// renewing it (then with two spaces before what follows).
pub(crate) fn claim_note(claim: Option<&crate::engine::view::ClaimView>) -> String {
    match claim {
        Some(c) if c.lapsed => format!("claim by {} lapsed at {}  ", c.label(), c.expires),
        Some(c) => format!("on {} (lease until {})  ", c.label(), c.expires),
        None => String::new(),
    }
}

/// How long a phase took, right-aligned, and its attempts when more than one.
fn took_and_attempts(p: &PhaseState) -> String {
    let took = p
        .duration_ms
        .map(|ms| human_duration(std::time::Duration::from_millis(ms)))
        .unwrap_or_default();
    let attempts = if p.attempt > 1 {
        format!(" ×{}", p.attempt)
    } else {
        String::new()
    };
    let worker = p
        .worker
        .as_ref()
        .map(|w| format!("  on {w}"))
        .unwrap_or_default();
    format!("{took:>8}{attempts}{worker}")
}

/// The children of a loop's current iteration, one line each under
/// `indent`; a loop among them shows its iteration and its own current
/// children further in.
fn child_lines(
    ui: &Ui,
    lines: &mut Vec<String>,
    children: &[PhaseState],
    nested: &BTreeMap<String, (u32, Vec<PhaseState>)>,
    width: usize,
    indent: &str,
) {
    for (k, c) in children.iter().enumerate() {
        let last = k + 1 == children.len();
        let branch = if last { "└─" } else { "├─" };
        let inner = nested.get(&c.id);
        let iteration = match inner {
            Some((max, _)) if c.iteration > 0 => format!(
                "  iteration {}/{max}{}",
                c.iteration,
                if c.exhausted { " (exhausted)" } else { "" }
            ),
            _ => String::new(),
        };
        lines.push(format!(
            "{indent}{} {} {:<width$}  {} {}{}",
            ui.paint(Style::Dim, branch),
            ui.phase_mark(c.status),
            c.id,
            ui.phase_status_cell(c.status),
            took_and_attempts(c),
            iteration,
        ));
        if let Some((_, states)) = inner {
            let deeper = format!("{indent}{}  ", if last { " " } else { "│" });
            child_lines(ui, lines, states, nested, width, &deeper);
        }
    }
}
