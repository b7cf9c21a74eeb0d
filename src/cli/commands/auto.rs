//! `wfe auto`: switch a run's auto mode, even while it runs.

use clap::{Args, ValueEnum};

use crate::cli::context::Context;
use crate::cli::control;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::control::Action;

/// Switch auto mode: on advances without asking, off waits after every phase
#[derive(Debug, Args)]
pub struct AutoArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// on or off
    #[arg(value_enum)]
    pub mode: Mode,
}

/// Auto mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Advance without asking
    On,
    /// Wait after every phase for `wfe continue`
    Off,
}

/// Runs `wfe auto`.
pub(crate) fn run(args: AutoArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    control::request(
        ctx,
        ui,
        &id,
        Action::Auto {
            on: args.mode == Mode::On,
        },
    )
}
