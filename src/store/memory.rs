//! An in-memory [`RunStore`] for fast engine tests.

use super::{
    Change, Checkpoint, CheckpointId, EntryKind, Message, Result, RunHead, RunId, RunStore,
};

/// Runs kept in memory, with the same compare-and-swap rules as git.
#[derive(Debug, Default)]
pub struct MemoryStore {
    _todo: (),
}

impl RunStore for MemoryStore {
    fn tip(&self, run: &RunId) -> Result<Option<CheckpointId>> {
        let _ = run;
        todo!("helper implements")
    }

    fn commit(
        &self,
        run: &RunId,
        parent: Option<&CheckpointId>,
        changes: &[Change],
        message: &Message,
        time: i64,
    ) -> Result<CheckpointId> {
        let _ = (run, parent, changes, message, time);
        todo!("helper implements")
    }

    fn read(&self, at: &CheckpointId, path: &str) -> Result<Option<Vec<u8>>> {
        let _ = (at, path);
        todo!("helper implements")
    }

    fn list_dir(&self, at: &CheckpointId, path: &str) -> Result<Vec<(String, EntryKind)>> {
        let _ = (at, path);
        todo!("helper implements")
    }

    fn checkpoint(&self, id: &CheckpointId) -> Result<Checkpoint> {
        let _ = id;
        todo!("helper implements")
    }

    fn runs(&self) -> Result<Vec<RunHead>> {
        todo!("helper implements")
    }
}
