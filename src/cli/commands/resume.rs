//! `wfe resume`: continue a run from its last checkpoint.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::CliError;
use crate::cli::exit_code;
use crate::cli::ui::Ui;

/// Continue a run that was interrupted or whose runner died
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// Phases to run at once
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Print the finished run as one JSON document on stdout
    #[arg(long)]
    pub json: bool,
    /// Don't echo the phases' output lines
    #[arg(long)]
    pub no_output: bool,
}

/// Runs `wfe resume`.
pub async fn run(args: ResumeArgs, ctx: &Context, ui: &Ui) -> Result<u8, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let lock = ctx.store.lock(&id, &ctx.clock.stamp())?;
    let snapshot = ctx.snapshot(&id)?;
    if snapshot.record.status.is_final() {
        ui.note(&format!(
            "run {id} is already {}; nothing to resume",
            ui.run_status(snapshot.record.status)
        ));
        drop(lock);
        super::run::report(ctx, ui, &id, args.json)?;
        return Ok(exit_code(snapshot.record.status));
    }
    super::run::drive(
        ctx,
        ui,
        &id,
        lock,
        args.jobs.map(|j| j as usize),
        args.json,
        !args.no_output,
    )
    .await
}
