//! `wfe status`: the DAG of a run drawn in the terminal, layer by layer,
//! from the engine's run view.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::reasons;
use crate::cli::ui::{Style, Ui, human_duration};
use crate::engine::PhaseState;
use crate::engine::view::RunView;

/// Draw a run's DAG with each phase's state
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run: an id, a unique prefix, or `latest` (the default)
    #[arg(default_value = "latest")]
    pub run: String,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe status`.
pub(crate) fn run(args: StatusArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let view = RunView::load(&ctx.store, &id)?;
    if args.json {
        let doc = serde_json::to_value(&view)
            .map_err(|e| CliError::internal(format!("cannot write the JSON document: {e}")))?;
        ui.json(&doc);
        return Ok(Outcome::Success);
    }
    ui.out(&format!(
        "{} {} · {} · {}/{} phases done",
        ui.paint(Style::Bold, &format!("run {}", view.record.id)),
        view.record.template,
        ui.run_status(view.record.status),
        view.done(),
        view.phases.len()
    ));
    let width = view.states().map(|p| p.id.len()).max().unwrap_or(0);
    for layer in &view.layers {
        ui.out(&ui.paint(Style::Dim, "  │"));
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
            ui.out(&format!(
                "{} {} {:<width$}  {} {}{}  {}",
                ui.paint(Style::Dim, branch),
                ui.phase_mark(p.status),
                p.id,
                ui.phase_status_cell(p.status),
                took_and_attempts(p),
                iteration,
                ui.paint(Style::Dim, &needs),
            ));
            // A loop's current iteration, indented under it.
            for (k, c) in row.children.iter().enumerate() {
                let branch = if k + 1 == row.children.len() {
                    "└─"
                } else {
                    "├─"
                };
                ui.out(&format!(
                    "      {} {} {:<width$}  {} {}",
                    ui.paint(Style::Dim, branch),
                    ui.phase_mark(c.status),
                    c.id,
                    ui.phase_status_cell(c.status),
                    took_and_attempts(c),
                ));
            }
        }
    }
    let record = &view.record;
    if let Some(reason) = &record.reason {
        ui.out(&format!("  {}", ui.paint(Style::Red, &reason.to_string())));
    }
    let live = reasons::runner_live(ctx, &id);
    if let Some(hint) = reasons::next_step(record.status, record.reason.as_ref(), &record.id, live)
    {
        ui.out(&format!("  {} {hint}", ui.paint(Style::Yellow, "hint:")));
    }
    Ok(Outcome::Success)
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
    format!("{took:>8}{attempts}")
}
