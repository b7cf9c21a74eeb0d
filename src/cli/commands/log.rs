//! `wfe log`: a run's checkpoints, newest first, like `git log`; with a
//! phase, that phase's output, and with `--follow` its output as it is
//! produced (from the live files, then the checkpoint's log).

use clap::Args;
use serde_json::json;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::store::{RunStore, Trailer};

/// Show a run's checkpoints, newest first
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// A phase (as `wfe show` takes it): show its output instead
    pub phase: Option<String>,
    /// With PHASE: keep printing its output as it is produced, until its
    /// attempt ends or the run stops
    #[arg(long, short = 'f', requires = "phase")]
    pub follow: bool,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe log`.
pub(crate) fn run(args: LogArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    if let Some(phase) = args.phase.as_deref() {
        if args.json {
            return Err(CliError::input(
                "`--json` shows checkpoints; with a phase use `wfe show RUN PHASE --json`",
            ));
        }
        return super::follow::phase_output(ctx, ui, &id, phase, args.follow);
    }
    let history = ctx.store.history(&id)?;
    if args.json {
        ui.json(&json!(history.iter().map(|c| json!({
            "checkpoint": c.id.0,
            "time": c.time,
            "summary": c.message.summary,
            "trailers": c.message.trailers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()));
        return Ok(Outcome::Success);
    }
    let count = history.len();
    for (n, c) in history.iter().enumerate() {
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.time.max(0) as u64),
        );
        ui.out(&format!(
            "{} {} {}",
            ui.paint(Style::Yellow, &format!("@{} {}", count - n, c.id.short())),
            ui.paint(Style::Dim, &when.to_string()),
            c.message.summary
        ));
        for (k, v) in &c.message.trailers {
            if !Trailer::Run.is(k) && !Trailer::Template.is(k) {
                ui.out(&format!(
                    "    {}",
                    ui.paint(Style::Dim, &format!("{k}: {v}"))
                ));
            }
        }
    }
    Ok(Outcome::Success)
}
