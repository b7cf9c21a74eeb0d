//! `wfe pause`: ask a run to pause at its next safe point.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::control;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::control::Action;

/// Pause a run: running phases finish, nothing new starts
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
}

/// Runs `wfe pause`.
pub(crate) fn run(args: PauseArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    control::request(ctx, ui, &id, Action::Pause)
}
