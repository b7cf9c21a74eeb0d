//! `wfe fsck`: check that runs can be read back whole, as the engine's
//! fsck view finds them; one line per healthy run, each problem with its
//! checkpoint and path under a broken one. Exit 1 when anything is wrong.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, ErrorKind, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::engine::view::{RunCheck, check_runs};

/// Check runs: refs, checkpoints, files, frozen schemas, artifacts, trailers
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Check only this run: an id, a unique prefix, or `latest` (default: every run)
    pub run: Option<String>,
    /// Print the report as one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe fsck`.
pub(crate) fn run(args: FsckArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let only = args
        .run
        .as_deref()
        .map(|r| ctx.resolve_run(r))
        .transpose()?;
    let report = check_runs(&ctx.store, only.as_ref())?;
    let outcome = if report.ok {
        Outcome::Success
    } else {
        Outcome::Reported(ErrorKind::Failed)
    };
    if args.json {
        let doc = serde_json::to_value(&report)
            .map_err(|e| CliError::internal(format!("cannot write the JSON document: {e}")))?;
        ui.json(&doc);
        return Ok(outcome);
    }
    if report.runs.is_empty() {
        ui.note("no runs to check");
        return Ok(outcome);
    }
    for check in &report.runs {
        print_check(ui, check);
    }
    let bad: Vec<&str> = report
        .runs
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.run.as_str())
        .collect();
    let checked = match report.runs.len() {
        1 => "1 run".to_string(),
        n => format!("{n} runs"),
    };
    if bad.is_empty() {
        ui.note(&format!("checked {checked}: all ok"));
    } else {
        ui.note(&format!(
            "checked {checked}: {} with problems; `wfe rm {}` moves {} to the trash (`wfe undo RUN` brings one back)",
            bad.len(),
            bad.join(" "),
            if bad.len() == 1 { "it" } else { "them" },
        ));
    }
    Ok(outcome)
}

fn print_check(ui: &Ui, check: &RunCheck) {
    if check.ok {
        let n = check.checkpoints;
        ui.out(&format!(
            "{}  {}  {n} checkpoint{}",
            check.run,
            ui.paint(Style::Green, "ok"),
            if n == 1 { "" } else { "s" }
        ));
        return;
    }
    let n = check.problems.len();
    ui.out(&format!(
        "{}  {}",
        check.run,
        ui.paint(
            Style::Red,
            &format!("{n} problem{}", if n == 1 { "" } else { "s" })
        )
    ));
    for problem in &check.problems {
        let at = problem
            .checkpoint
            .as_deref()
            .map(|c| format!(" at {}", &c[..c.len().min(12)]))
            .unwrap_or_default();
        ui.out(&format!("  {}{at}: {}", problem.path, problem.message));
    }
}
