//! `wfe undo`: the tip the last rollback (or undo) set aside, restored.

use crate::engine::EngineError;
use crate::store::{RunId, RunStore, StoreError, Undone};
use crate::time::Clock;

/// Restores the tip the last rollback (or undo) set aside; see
/// [`RunStore::undo`] for when the current tip is kept in the trash. A run
/// `wfe rm` removed (no ref, a trash entry) comes back with its last tip.
pub fn undo(store: &dyn RunStore, run: &RunId, clock: &Clock) -> Result<Undone, EngineError> {
    let Some(tip) = store.tip(run)? else {
        if store.trashed(run)?.is_empty() {
            return Err(StoreError::NoSuchRun {
                run: run.to_string(),
            }
            .into());
        }
        let reason = format!("wfe: undo: run {run} restored from the trash");
        let restored = store.restore(run, &reason, clock.epoch_seconds())?;
        return Ok(Undone {
            restored,
            trashed: None,
        });
    };
    let last = store
        .trashed(run)?
        .pop()
        .ok_or_else(|| StoreError::NothingTrashed { run: run.clone() })?;
    let reason = format!(
        "wfe: undo: restored {} ({})",
        run.trash_ref(last.number),
        last.checkpoint.short()
    );
    Ok(store.undo(run, &tip, &reason, clock.epoch_seconds())?)
}
