//! `wfe resume`: continue a run from its last checkpoint.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::worker::requeue::{Requeued, requeue};
use crate::store::RunId;

/// Continue a run that was interrupted or whose runner died
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// Run nothing here: hand the run back to workers (it becomes `pending`; `wfe push` sends it), e.g. after `wfe pause`
    #[arg(long, conflicts_with = "detached_child")]
    pub queue: bool,
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
    if args.queue {
        let done = requeue(
            &ctx.store,
            &id,
            &crate::cli::control::requester(ctx),
            &ctx.clock,
        );
        drop(lock);
        return queued(ui, &id, done?, args.drive.json);
    }
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

/// Reports `wfe resume --queue`: the run handed back to workers, or why not.
fn queued(ui: &Ui, id: &RunId, done: Requeued, json: bool) -> Result<Outcome, CliError> {
    let status = match done {
        Requeued::Queued => {
            ui.note(&format!(
                "run {id} is pending again: `wfe push` sends it, then `wfe worker --run {id}` runs its phases"
            ));
            "pending"
        }
        Requeued::AlreadyQueued => {
            ui.note(&format!(
                "run {id} is pending already: `wfe push` sends it, then `wfe worker --run {id}` runs its phases"
            ));
            "pending"
        }
        Requeued::Waiting(phases) => {
            let first = phases.first().map_or("PHASE", String::as_str);
            return Err(CliError::input(format!(
                "run {id} waits for an approval of {}: workers could start nothing",
                phases.join(", ")
            ))
            .hint(format!(
                "`wfe approve {id} {first}`, then `wfe push`: workers go on from the approval"
            )));
        }
        Requeued::Over(status) => {
            return Err(CliError::input(format!(
                "run {id} is {}; nothing is left for workers",
                status.as_str()
            )));
        }
    };
    if json {
        let doc = serde_json::json!({ "run": id.as_str(), "status": status });
        ui.out(&doc.to_string());
    }
    Ok(Outcome::Success)
}
