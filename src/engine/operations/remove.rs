//! `wfe rm`: a run set aside in the trash (`refs/wfe/trash/<run>/<n>`,
//! which `wfe undo` restores), or purged with its trash.
//!
//! Only refs move: the run's tip is never read, so a broken run (its ref
//! pointing at a missing object, a blob, a commit wfe did not write) is
//! removed as easily as a healthy one.

use crate::engine::EngineError;
use crate::store::{CheckpointId, Purged, RunId, RunStore, StoreError, Trashed};
use crate::time::Clock;

/// What `wfe rm` did to one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// The run's ref went to this trash entry.
    Trashed(Trashed),
    /// The run's ref and its trash entries were deleted.
    Purged(Purged),
}

/// Removes `run` (the caller holds its lock): its ref moves to the trash,
/// or with `purge` is deleted along with the run's trash entries (a run
/// removed before, with only trash left, can be purged too).
pub fn remove(
    store: &dyn RunStore,
    run: &RunId,
    purge: bool,
    clock: &Clock,
) -> Result<Removed, EngineError> {
    let tip: Option<CheckpointId> = store.tip(run)?;
    if purge {
        return Ok(Removed::Purged(store.purge(run, tip.as_ref())?));
    }
    let tip = tip.ok_or_else(|| StoreError::NoSuchRun {
        run: run.to_string(),
    })?;
    let reason = format!("wfe: rm: run {run} moved to the trash");
    Ok(Removed::Trashed(store.remove(
        run,
        &tip,
        &reason,
        clock.epoch_seconds(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, MemoryStore, Message};

    #[test]
    fn removed_runs_go_to_the_trash_undo_brings_them_back_purge_deletes_all() {
        let store = MemoryStore::new();
        let run = RunId::parse("01kaxz00000000000000000001").expect("an id");
        let tip = store
            .commit(
                &run,
                None,
                &[Change::write("a", "1")],
                &Message::new("m"),
                1,
            )
            .expect("commit");
        let clock = Clock::system();
        let Removed::Trashed(trashed) = remove(&store, &run, false, &clock).expect("rm") else {
            panic!("not purged");
        };
        assert_eq!((trashed.number, &trashed.checkpoint), (1, &tip));
        assert_eq!(store.tip(&run).expect("tip"), None);
        assert_eq!(
            store.removed().expect("removed"),
            std::slice::from_ref(&run)
        );
        assert!(matches!(
            remove(&store, &run, false, &clock),
            Err(EngineError::Store(StoreError::NoSuchRun { .. }))
        ));

        let undone = super::super::undo(&store, &run, &clock).expect("undo");
        assert_eq!(undone.restored, trashed);
        assert_eq!(store.tip(&run).expect("tip"), Some(tip.clone()));
        assert!(store.removed().expect("removed").is_empty());

        remove(&store, &run, false, &clock).expect("rm again");
        let Removed::Purged(purged) = remove(&store, &run, true, &clock).expect("purge") else {
            panic!("not trashed");
        };
        assert_eq!((purged.tip, purged.trash.len()), (None, 1));
        assert!(store.trashed(&run).expect("trashed").is_empty());
        assert!(matches!(
            remove(&store, &run, true, &clock),
            Err(EngineError::Store(StoreError::NoSuchRun { .. }))
        ));
    }
}
