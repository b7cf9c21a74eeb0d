//! `wfe cancel`: ask a run to stop for good, stopping running phases.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::control;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Progress, Ui};
use crate::engine::{self, control::Action};
use crate::store::ProcessRegistry;

/// Cancel a run: running phases get SIGTERM, then SIGKILL after their kill_grace
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
}

/// Runs `wfe cancel`.
pub(crate) async fn run(args: CancelArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let outcome = control::request(ctx, ui, &id, Action::Cancel)?;
    // A live runner stops its own phases. One that died (kill -9) left
    // them running: with the lock free, end them here, as a resume would.
    if let Ok(lock) = ctx.store.lock(&id, &ctx.clock.stamp()) {
        let processes = ProcessRegistry::new(&ctx.store.wfe_dir(), id.as_str());
        let ended = engine::end_leftovers(
            &id,
            &processes,
            engine::DEFAULT_KILL_GRACE,
            &Progress::new(ui, false),
        )
        .await;
        processes.tidy();
        // And the worktrees its isolated attempts worked in.
        let swept = match ctx.store.worktrees() {
            Some(worktrees) if ended.is_ok() => worktrees.sweep(id.as_str()),
            _ => Ok(Vec::new()),
        };
        drop(lock);
        ended?;
        let names = swept?;
        if !names.is_empty() {
            use crate::engine::Observer;
            Progress::new(ui, false)
                .event(&crate::engine::Event::WorktreesRemoved { names: &names });
        }
    }
    Ok(outcome)
}
