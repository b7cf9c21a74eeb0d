//! `wfe status`: the DAG of a run drawn in the terminal, layer by layer.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::CliError;
use crate::cli::ui::{Style, Ui, human_duration};
use crate::engine::{Dag, PhaseState};
use crate::template::PhaseKind;

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
pub fn run(args: StatusArgs, ctx: &Context, ui: &Ui) -> Result<u8, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let snap = ctx.snapshot(&id)?;
    if args.json {
        ui.json(&snap.to_json());
        return Ok(0);
    }
    let dag = Dag::new(&snap.template.phases);
    let done = snap.phases.iter().filter(|p| p.status.is_final()).count();
    ui.out(&format!(
        "{} {} · {} · {}/{} phases done",
        ui.paint(Style::Bold, &format!("run {}", snap.record.id)),
        snap.record.template,
        ui.run_status(snap.record.status),
        done,
        snap.phases.len()
    ));
    let layers = dag.layers();
    let width = snap
        .phases
        .iter()
        .chain(snap.children.values().flatten())
        .map(|p| p.id.len())
        .max()
        .unwrap_or(0);
    for layer in &layers {
        ui.out(&ui.paint(Style::Dim, "  │"));
        for (k, &i) in layer.iter().enumerate() {
            let p = &snap.phases[i];
            let branch = match (layer.len(), k + 1 == layer.len()) {
                (1, _) => "  ●",
                (_, false) => "  ├─●",
                (_, true) => "  └─●",
            };
            let needs: Vec<&str> = dag.needs(i).iter().map(|&d| dag.id(d)).collect();
            let needs = if needs.is_empty() {
                String::new()
            } else {
                format!("← {}", needs.join(", "))
            };
            let spec = &snap.template.phases[i];
            let iteration = if spec.kind == PhaseKind::Loop && p.iteration > 0 {
                format!(
                    "  iteration {}/{}{}",
                    p.iteration,
                    spec.max_iters.unwrap_or(1),
                    if p.exhausted { " (exhausted)" } else { "" }
                )
            } else {
                String::new()
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
            let children = snap.children.get(&p.id).map(Vec::as_slice);
            let children = children.unwrap_or_default();
            for (k, c) in children.iter().enumerate() {
                let branch = if k + 1 == children.len() {
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
    if let Some(reason) = &snap.record.reason {
        ui.out(&format!("  {}", ui.paint(Style::Red, reason)));
    }
    Ok(0)
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
