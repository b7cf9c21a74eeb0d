//! `wfe continue`: with auto mode off, go on past the current wait.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::control;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::control::Action;

/// With auto mode off: let the run go on to its next phases
#[derive(Debug, Args)]
pub struct ContinueArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
}

/// Runs `wfe continue`.
pub(crate) fn run(args: ContinueArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    control::request(ctx, ui, &id, Action::Continue)
}
