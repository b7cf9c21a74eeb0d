//! `wfe skip`: mark a phase skipped so its dependants can run without it.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::reasons;
use crate::cli::ui::Ui;
use crate::engine::operations;

/// Mark a phase skipped; its dependants run without its artifacts
#[derive(Debug, Args)]
pub struct SkipArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// The phase to skip (pending, failed, timed out or cancelled)
    pub phase: String,
}

/// Runs `wfe skip`.
pub(crate) fn run(args: SkipArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let lock = ctx.lock_waiting(&id, ui)?;
    let skipped = operations::skip(
        &ctx.store,
        &id,
        &args.phase,
        &super::retry::requested_by(ctx),
        &ctx.clock,
    )?;
    drop(lock);
    let reopened = if skipped.reopened {
        "; the run is paused instead of failed"
    } else {
        ""
    };
    let next = reasons::go_on_hint(ctx, &id)
        .map(|hint| format!("; {hint}"))
        .unwrap_or_default();
    ui.note(&format!(
        "skipped {} ({}){reopened}{next}",
        args.phase,
        skipped.checkpoint.short()
    ));
    Ok(Outcome::Success)
}
