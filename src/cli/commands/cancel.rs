//! `wfe cancel`: ask a run to stop for good, killing running phases.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::control;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::control::Action;

/// Cancel a run: running phases are killed at once
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
}

/// Runs `wfe cancel`.
pub(crate) fn run(args: CancelArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    control::request(ctx, ui, &id, Action::Cancel)
}
