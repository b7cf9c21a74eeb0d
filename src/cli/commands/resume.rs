//! `wfe resume`: continue a run from its last checkpoint.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;

/// Continue a run that was interrupted or whose runner died
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    #[command(flatten)]
    pub drive: super::run::DriveArgs,
    /// Set by `wfe run --detach` for the background runner: leave the parent's session first
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

/// Runs `wfe resume`.
pub(crate) async fn run(args: ResumeArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    if args.detached_child {
        crate::cli::detach::leave_session();
    }
    let id = ctx.resolve_run(&args.run)?;
    let lock = ctx.store.lock(&id, &ctx.clock.stamp())?;
    let snapshot = ctx.snapshot(&id)?;
    if !crate::engine::resumable(&snapshot) {
        ui.note(&format!(
            "run {id} is {}{}; nothing to resume",
            ui.run_status(snapshot.record.status),
            snapshot
                .record
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        drop(lock);
        super::run::report(ctx, ui, &id, args.drive.json)?;
        return Ok(Outcome::from(snapshot.record.status));
    }
    crate::cli::ci::check_approvals(&args.drive.ci, &snapshot.template)?;
    let requests = crate::engine::pending_seat_requests(&snapshot);
    let seats = ctx.seats(&snapshot.template, None, &requests)?;
    super::run::drive(ctx, ui, &id, lock, &args.drive, seats).await
}
