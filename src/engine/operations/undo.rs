//! `wfe undo`: the tip the last rollback (or undo) set aside, restored.

use crate::engine::EngineError;
use crate::store::{RunId, RunStore, StoreError, Undone};
use crate::time::Clock;

/// Restores the tip the last rollback (or undo) set aside; see
/// [`RunStore::undo`] for when the current tip is kept in the trash.
pub fn undo(store: &dyn RunStore, run: &RunId, clock: &Clock) -> Result<Undone, EngineError> {
    let tip = store.tip(run)?.ok_or_else(|| StoreError::NoSuchRun {
        run: run.to_string(),
    })?;
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
