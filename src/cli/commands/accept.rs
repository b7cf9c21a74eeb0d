//! `wfe accept`: commit the outputs a failed attempt wrote although they
//! fail their schemas.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::reasons;
use crate::cli::ui::Ui;
use crate::engine::operations;

/// Accept a phase's rejected outputs as they are (marked forced)
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// The phase whose last attempt's outputs failed validation
    pub phase: String,
    /// Confirm: the artifacts do not match their schemas
    #[arg(long)]
    pub force: bool,
}

/// Runs `wfe accept`.
pub(crate) fn run(args: AcceptArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    if !args.force {
        return Err(CliError::input(format!(
            "accepting commits outputs of `{}` that fail their schemas; pass --force to do it",
            args.phase
        ))
        .hint(format!(
            "`wfe show {id} {}` shows the rejected outputs and every violation",
            args.phase
        )));
    }
    let lock = ctx.lock_waiting(&id, ui)?;
    let checkpoint = operations::accept(&ctx.store, &id, &args.phase, &ctx.clock)?;
    drop(lock);
    let next = reasons::go_on_hint(ctx, &id)
        .map(|hint| format!("; {hint}"))
        .unwrap_or_default();
    ui.note(&format!(
        "accepted the outputs of {} as they are ({}){next}",
        args.phase,
        checkpoint.short()
    ));
    Ok(Outcome::Success)
}
