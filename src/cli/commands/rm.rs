//! `wfe rm`: move runs to the trash (`wfe undo RUN` brings one back), or
//! delete them with `--purge`. Broken runs can be removed too; a run a
//! live runner holds is refused, and then nothing is removed.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::operations::{self, Removed};
use crate::store::{RunId, StoreError};

/// Remove runs: to the trash (`wfe undo RUN` restores one), or for good with --purge
#[derive(Debug, Args)]
pub struct RmArgs {
    /// The runs: ids, unique prefixes, or `latest`
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Delete the runs' refs and their trash for good (`git gc` then frees what only they kept)
    #[arg(long)]
    pub purge: bool,
}

/// Runs `wfe rm`.
pub(crate) fn run(args: RmArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    // Every name resolved and every lock taken before anything moves, so a
    // bad name or a live runner leaves all the runs as they were.
    let mut ids: Vec<RunId> = Vec::new();
    for name in &args.runs {
        let id = if args.purge {
            ctx.resolve_run_or_removed(name)?
        } else {
            ctx.resolve_run(name)?
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut locks = Vec::new();
    for id in &ids {
        let lock = ctx.store.lock(id, &ctx.clock.stamp()).map_err(|e| match e {
            StoreError::Locked { holder, .. } => CliError::conflict(format!(
                "run {id} is held by a live runner (pid {} on {}); nothing was removed",
                holder.pid, holder.host
            ))
            .hint(format!(
                "stop it first with `wfe cancel {id}`, or wait for it to end; then run `wfe rm` again"
            )),
            other => other.into(),
        })?;
        locks.push(lock);
    }
    for id in &ids {
        match operations::remove(&ctx.store, id, args.purge, &ctx.clock)? {
            Removed::Trashed(trashed) => ui.note(&format!(
                "run {id} moved to {}; `wfe undo {id}` brings it back",
                id.trash_ref(trashed.number)
            )),
            Removed::Purged(purged) => {
                // Its secret args go with it (gone already is fine).
                let kept = crate::store::SecretArgs::new(&ctx.store.wfe_dir(), id.as_str());
                let _ = std::fs::remove_file(kept.path());
                let mut what = Vec::new();
                if purged.tip.is_some() {
                    what.push("its ref".to_string());
                }
                match purged.trash.len() {
                    0 => {}
                    1 => what.push("1 trash entry".into()),
                    n => what.push(format!("{n} trash entries")),
                }
                ui.note(&format!(
                    "run {id} deleted ({}); `git gc` frees what only it kept",
                    what.join(" and ")
                ));
            }
        }
    }
    drop(locks);
    Ok(Outcome::Success)
}
