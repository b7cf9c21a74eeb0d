//! `wfe undo`: bring back the tip the last rollback set aside.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::CliError;
use crate::cli::ui::Ui;
use crate::engine::recovery;

/// Restore the tip the last rollback set aside
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
}

/// Runs `wfe undo`.
pub fn run(args: UndoArgs, ctx: &Context, ui: &Ui) -> Result<u8, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let lock = super::rollback::lock_now(ctx, &id)?;
    let undone = recovery::undo(&ctx.store, &id, &ctx.clock)?;
    drop(lock);
    ui.note(&format!(
        "run {id} is back at {} (restored from {})",
        undone.restored.checkpoint.short(),
        id.trash_ref(undone.restored.number)
    ));
    if let Some(kept) = &undone.trashed {
        ui.note(&format!(
            "  the tip it replaced, {}, had checkpoints the restored one lacks: kept as {}; `wfe undo {id}` swaps back",
            kept.checkpoint.short(),
            id.trash_ref(kept.number)
        ));
    }
    Ok(0)
}
