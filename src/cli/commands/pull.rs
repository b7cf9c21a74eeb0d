//! `wfe pull`: bring a remote's runs here through the git CLI,
//! fast-forward only; a run that diverged is reported, never forced.

use clap::Args;

use super::push::{ShareArgs, Way, report, split_remote};
use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::operations;

/// Bring runs from a remote (fast-forward only; a run that diverged is reported, never forced)
#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub share: ShareArgs,
}

/// Runs `wfe pull`.
pub(crate) fn run(args: PullArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let (remote, runs) = split_remote(ctx, &args.share.names)?;
    let outcomes = operations::pull(&ctx.store, &remote, &runs, args.share.trash, &ctx.clock)?;
    report(ui, &remote, &outcomes, Way::Pull)
}
