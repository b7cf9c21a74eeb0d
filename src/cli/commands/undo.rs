//! `wfe undo`: bring back the tip the last rollback set aside.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::operations;

/// Restore the tip the last rollback set aside, or a run `wfe rm` removed
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// Also bring back the working tree a `rollback --code` replaced
    #[arg(long)]
    pub code: bool,
}

/// Runs `wfe undo`.
pub(crate) fn run(args: UndoArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run_or_removed(&args.run)?;
    let lock = super::rollback::lock_now(ctx, &id)?;
    let undone = operations::undo(&ctx.store, &id, &ctx.clock)?;
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
    if args.code {
        let lock = super::rollback::lock_now(ctx, &id)?;
        let time = ctx.clock.epoch_seconds();
        // The changes a `rollback --code` saved, else the restored tip's own snapshot.
        match ctx.store.restore_code_from_trash(&id, time)? {
            Some(restored) => {
                ui.note(&format!(
                    "the working tree is back as it was (from {})",
                    restored.restored
                ));
                if let Some(saved) = restored.saved {
                    ui.note(&format!("  changes it had meanwhile are kept as {saved}"));
                }
            }
            None => {
                let tree = super::rollback::snapshot_tree(ctx, &undone.restored.checkpoint)?;
                if let Some(kept) = ctx.store.restore_workspace(&id, &tree, time)? {
                    ui.note(&format!(
                        "  your changes that were in no snapshot are kept as {kept}"
                    ));
                }
                ui.note("the working tree is restored from the restored tip's snapshot");
            }
        }
        drop(lock);
    }
    Ok(Outcome::Success)
}
