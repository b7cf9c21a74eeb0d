//! `wfe rollback`: move a run's ref back to an earlier checkpoint, keeping
//! the old tip under `refs/wfe/trash/` for `wfe undo`.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::operations::{self, RollbackTarget};
use crate::engine::{EngineError, RunSnapshot, layout};
use crate::store::{CheckpointId, RunId, RunLock, RunStore, StoreError};
use crate::template::Template;

/// Move a run back to an earlier checkpoint (the old tip is kept for `wfe undo`)
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// Where to: a phase (the checkpoint just after it completed), `@N` (as `wfe log` numbers them), `RUN@N`, or a commit
    #[arg(long, value_name = "PHASE|CHECKPOINT")]
    pub to: String,
    /// Also restore the working tree from that checkpoint's workspace snapshot
    #[arg(long)]
    pub code: bool,
}

/// Runs `wfe rollback`.
pub(crate) fn run(args: RollbackArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let lock = lock_now(ctx, &id)?;
    let target = match RunSnapshot::load_tip(&ctx.store, &id) {
        Ok(snap) => RollbackTarget::parse(&snap, &args.to)?,
        Err(e @ EngineError::Store(_)) => return Err(e.into()),
        // A tip that does not parse is what rollback repairs: go on,
        // naming targets by the phases its template lists (if it reads).
        Err(broken) => {
            ui.warn(&format!(
                "run {id}'s tip cannot be read ({broken}); rolling back to a checkpoint that reads repairs it"
            ));
            let phases = tip_phase_ids(ctx, &id);
            let phases: Vec<&str> = phases.iter().map(String::as_str).collect();
            RollbackTarget::parse_among(id.as_str(), &phases, &args.to)?
        }
    };
    let resolved = operations::resolve(&ctx.store, &id, &target, &args.to)?;
    // Checked before anything moves, so a missing snapshot writes nothing.
    let tree = args
        .code
        .then(|| snapshot_tree(ctx, &resolved.to.id))
        .transpose()?;
    let back = operations::rollback(&ctx.store, &id, &resolved, &ctx.clock)?;
    if let Some(tree) = tree {
        let kept = ctx
            .store
            .restore_workspace(&id, &tree, ctx.clock.epoch_seconds())?;
        ui.note("the working tree is restored from the checkpoint's snapshot");
        if let Some(kept) = kept {
            ui.note(&format!("  your changes that were in no snapshot are kept as {kept}; `wfe undo {id} --code` brings them back"));
        }
    }
    drop(lock);
    ui.note(&format!(
        "run {id} is back at @{} {} ({})\n  the old tip {} is kept as {}; `wfe undo {id}` restores it",
        back.number,
        back.to.id.short(),
        back.to.message.summary,
        back.from.short(),
        id.trash_ref(back.trashed.number),
    ));
    if back.comments > 0 {
        ui.note(&format!(
            "  {} comment{} written after it {} kept on the new tip {}",
            back.comments,
            if back.comments == 1 { "" } else { "s" },
            if back.comments == 1 { "is" } else { "are" },
            back.tip.short(),
        ));
    }
    Ok(Outcome::Success)
}

/// The phase ids of the template frozen in the run's tip, when that file
/// still reads (empty otherwise: only checkpoints can be named then).
fn tip_phase_ids(ctx: &Context, id: &RunId) -> Vec<String> {
    let Ok(Some(tip)) = ctx.store.tip(id) else {
        return Vec::new();
    };
    ctx.store
        .read(&tip, layout::TEMPLATE)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<Template>(&bytes).ok())
        .map(|t| {
            crate::template::expand(&t)
                .phases
                .into_iter()
                .map(|p| p.id)
                .collect()
        })
        .unwrap_or_default()
}

/// The workspace snapshot of a checkpoint, or a clear error.
pub(crate) fn snapshot_tree(ctx: &Context, at: &CheckpointId) -> Result<String, CliError> {
    ctx.store.workspace_tree(at)?.ok_or_else(|| {
        CliError::input(format!(
            "checkpoint {} has no workspace snapshot (snapshots are on for agent phases, or with `\"snapshot\": true`)",
            at.short()
        ))
    })
}

/// Takes the run's lock without waiting: moving the ref under a live
/// runner would pull its state out from under it, so it must stop first.
pub(crate) fn lock_now(ctx: &Context, id: &RunId) -> Result<RunLock, CliError> {
    ctx.store.lock(id, &ctx.clock.stamp()).map_err(|e| match e {
        StoreError::Locked { holder, .. } => {
            // Pid 0: the holder has created its lock file and not yet written it.
            let who = if holder.pid == 0 {
                "another wfe process (it is taking the lock right now)".to_string()
            } else {
                format!("pid {} on {}", holder.pid, holder.host)
            };
            CliError::input(format!(
                "run {id} is being run by {who}; stop it first (`wfe pause {id}`)"
            ))
        }
        other => other.into(),
    })
}
