//! An in-memory [`RunStore`] for fast engine tests.
//!
//! It follows the git store's rules exactly where the engine can observe
//! them: compare-and-swap on the run's tip, whole-tree checkpoints, files
//! replacing directories and back, sorted listings, the same path checks.
//! It keeps no history of refs (but keeps trash entries as the git store
//! does) and never forgets a checkpoint.
//!
//! [`Change::Snapshot`] copies the files of the work tree given to
//! [`MemoryStore::with_work_tree`] (plain files and symlink targets, no
//! ignore rules, no modes), enough for engine tests to see what a phase
//! changed; without a work tree it is a no-op.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    BrokenRun, Change, Checkpoint, CheckpointId, EntryKind, Message, Purged, Result, RunHead,
    RunId, RunStore, StoreError, Trashed, Undone, path,
};

/// A checkpoint's tree: every file by its full path.
type Tree = BTreeMap<String, Arc<Vec<u8>>>;

/// Runs kept in memory, with the same compare-and-swap rules as git.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// What [`Change::Snapshot`] copies, if anything.
    work_tree: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Inner {
    commits: HashMap<CheckpointId, Stored>,
    refs: BTreeMap<RunId, CheckpointId>,
    /// Trash entries per run, by number.
    trash: BTreeMap<RunId, BTreeMap<u32, CheckpointId>>,
    /// Source of checkpoint ids, so they are unique and stable across test runs.
    next_id: u64,
}

#[derive(Debug)]
struct Stored {
    meta: Checkpoint,
    tree: Arc<Tree>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// An empty store whose [`Change::Snapshot`] copies the files under `root`.
    pub fn with_work_tree(root: impl Into<PathBuf>) -> Self {
        MemoryStore {
            work_tree: Some(root.into()),
            ..MemoryStore::default()
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic in another test thread must not hide this store's data.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn stored(&self, id: &CheckpointId) -> Result<&Stored> {
        self.commits
            .get(id)
            .ok_or_else(|| StoreError::NoSuchCheckpoint { id: id.to_string() })
    }

    /// Fails with a conflict unless the run's tip is `expected`.
    fn expect_tip(&self, run: &RunId, expected: &CheckpointId) -> Result<()> {
        match self.refs.get(run) {
            Some(tip) if tip == expected => Ok(()),
            found => Err(StoreError::Conflict {
                run: run.clone(),
                expected: expected.to_string(),
                found: found.map_or_else(|| "none".to_string(), ToString::to_string),
            }),
        }
    }

    fn next_trash_number(&self, run: &RunId) -> u32 {
        self.trash
            .get(run)
            .and_then(|entries| entries.keys().next_back())
            .map_or(1, |n| n + 1)
    }

    fn reaches(&self, from: &CheckpointId, ancestor: &CheckpointId) -> Result<bool> {
        let mut next = Some(from.clone());
        while let Some(id) = next {
            if &id == ancestor {
                return Ok(true);
            }
            next = self.stored(&id)?.meta.parent.clone();
        }
        Ok(false)
    }
}

impl RunStore for MemoryStore {
    fn tip(&self, run: &RunId) -> Result<Option<CheckpointId>> {
        Ok(self.inner().refs.get(run).cloned())
    }

    fn commit(
        &self,
        run: &RunId,
        parent: Option<&CheckpointId>,
        changes: &[Change],
        message: &Message,
        time: i64,
    ) -> Result<CheckpointId> {
        path::validate_changes(changes)?;
        let snapshot = match &self.work_tree {
            Some(root) if changes.iter().any(|c| matches!(c, Change::Snapshot { .. })) => {
                Some(super::workspace::plain_files(root)?)
            }
            _ => None,
        };
        let mut inner = self.inner();
        let current = inner.refs.get(run);
        if current != parent {
            return Err(StoreError::Conflict {
                run: run.clone(),
                expected: parent.map_or_else(|| "none".to_string(), ToString::to_string),
                found: current.map_or_else(|| "none".to_string(), ToString::to_string),
            });
        }
        let mut tree = match parent {
            Some(parent) => Tree::clone(&inner.stored(parent)?.tree),
            None => Tree::new(),
        };
        for change in changes {
            apply(&mut tree, change, snapshot.as_ref());
        }
        inner.next_id += 1;
        let id = CheckpointId(format!("{:040x}", inner.next_id));
        let meta = Checkpoint {
            id: id.clone(),
            parent: parent.cloned(),
            time,
            message: normalized(message),
        };
        inner.commits.insert(
            id.clone(),
            Stored {
                meta,
                tree: Arc::new(tree),
            },
        );
        inner.refs.insert(run.clone(), id.clone());
        Ok(id)
    }

    fn read(&self, at: &CheckpointId, path: &str) -> Result<Option<Vec<u8>>> {
        let inner = self.inner();
        let tree = &inner.stored(at)?.tree;
        let key = path::components(path).join("/");
        Ok(tree.get(&key).map(|bytes| bytes.as_ref().clone()))
    }

    fn list_dir(&self, at: &CheckpointId, path: &str) -> Result<Vec<(String, EntryKind)>> {
        let inner = self.inner();
        let tree = &inner.stored(at)?.tree;
        let dir = path::components(path).join("/");
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut entries = BTreeMap::new();
        for key in tree
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
        {
            let rest = &key[prefix.len()..];
            match rest.split_once('/') {
                Some((name, _)) => entries.insert(name.to_string(), EntryKind::Dir),
                None => entries.insert(rest.to_string(), EntryKind::File),
            };
        }
        Ok(entries.into_iter().collect())
    }

    fn checkpoint(&self, id: &CheckpointId) -> Result<Checkpoint> {
        Ok(self.inner().stored(id)?.meta.clone())
    }

    fn reset(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        to: &CheckpointId,
        _reason: &str,
        _time: i64,
    ) -> Result<Trashed> {
        let mut inner = self.inner();
        inner.expect_tip(run, expected)?;
        inner.stored(to)?;
        let number = inner.next_trash_number(run);
        inner
            .trash
            .entry(run.clone())
            .or_default()
            .insert(number, expected.clone());
        inner.refs.insert(run.clone(), to.clone());
        Ok(Trashed {
            number,
            checkpoint: expected.clone(),
        })
    }

    fn trashed(&self, run: &RunId) -> Result<Vec<Trashed>> {
        Ok(self
            .inner()
            .trash
            .get(run)
            .map(|entries| {
                entries
                    .iter()
                    .map(|(&number, checkpoint)| Trashed {
                        number,
                        checkpoint: checkpoint.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn undo(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        _reason: &str,
        _time: i64,
    ) -> Result<Undone> {
        let mut inner = self.inner();
        inner.expect_tip(run, expected)?;
        let Some((number, restored)) = inner
            .trash
            .get(run)
            .and_then(|entries| entries.iter().next_back())
            .map(|(&n, c)| (n, c.clone()))
        else {
            return Err(StoreError::NothingTrashed { run: run.clone() });
        };
        let trashed = if inner.reaches(&restored, expected)? {
            None
        } else {
            let number = inner.next_trash_number(run);
            Some(Trashed {
                number,
                checkpoint: expected.clone(),
            })
        };
        let entries = inner.trash.entry(run.clone()).or_default();
        entries.remove(&number);
        if let Some(kept) = &trashed {
            entries.insert(kept.number, kept.checkpoint.clone());
        }
        inner.refs.insert(run.clone(), restored.clone());
        Ok(Undone {
            restored: Trashed {
                number,
                checkpoint: restored,
            },
            trashed,
        })
    }

    fn scan_each(&self, each: &mut dyn FnMut(RunHead)) -> Result<Vec<BrokenRun>> {
        let inner = self.inner();
        let mut broken = Vec::new();
        for (run, tip) in inner.refs.iter().rev() {
            match inner.stored(tip) {
                Ok(stored) => each(RunHead {
                    run: run.clone(),
                    tip: stored.meta.clone(),
                }),
                Err(error) => broken.push(BrokenRun {
                    run: run.clone(),
                    error,
                }),
            }
        }
        Ok(broken)
    }

    fn remove(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        _reason: &str,
        _time: i64,
    ) -> Result<Trashed> {
        let mut inner = self.inner();
        inner.expect_tip(run, expected)?;
        let number = inner.next_trash_number(run);
        inner.refs.remove(run);
        inner
            .trash
            .entry(run.clone())
            .or_default()
            .insert(number, expected.clone());
        Ok(Trashed {
            number,
            checkpoint: expected.clone(),
        })
    }

    fn restore(&self, run: &RunId, _reason: &str, _time: i64) -> Result<Trashed> {
        let mut inner = self.inner();
        if let Some(found) = inner.refs.get(run) {
            return Err(StoreError::Conflict {
                run: run.clone(),
                expected: "none".into(),
                found: found.to_string(),
            });
        }
        let Some((number, checkpoint)) = inner
            .trash
            .get_mut(run)
            .and_then(|entries| entries.pop_last())
        else {
            return Err(StoreError::NothingTrashed { run: run.clone() });
        };
        inner.refs.insert(run.clone(), checkpoint.clone());
        Ok(Trashed { number, checkpoint })
    }

    fn purge(&self, run: &RunId, expected: Option<&CheckpointId>) -> Result<Purged> {
        let mut inner = self.inner();
        if let Some(expected) = expected {
            inner.expect_tip(run, expected)?;
        }
        let tip = inner.refs.remove(run);
        let trash: Vec<Trashed> = inner
            .trash
            .remove(run)
            .unwrap_or_default()
            .into_iter()
            .map(|(number, checkpoint)| Trashed { number, checkpoint })
            .collect();
        if tip.is_none() && trash.is_empty() {
            return Err(StoreError::NoSuchRun {
                run: run.to_string(),
            });
        }
        Ok(Purged { tip, trash })
    }

    fn removed(&self) -> Result<Vec<RunId>> {
        let inner = self.inner();
        Ok(inner
            .trash
            .iter()
            .filter(|(run, entries)| !entries.is_empty() && !inner.refs.contains_key(*run))
            .map(|(run, _)| run.clone())
            .collect())
    }
}

/// Applies one change: a file replaces a directory at its path (and any file
/// standing where one of its parent directories must be), as in git's tree.
fn apply(tree: &mut Tree, change: &Change, snapshot: Option<&HashMap<String, Vec<u8>>>) {
    match change {
        Change::Write { path, bytes } => {
            remove_subtree(tree, path);
            remove_parent_files(tree, path);
            tree.insert(path.clone(), Arc::new(bytes.clone()));
        }
        Change::Remove { path } => {
            tree.remove(path);
            remove_subtree(tree, path);
        }
        Change::Snapshot { path, masker } => {
            let Some(files) = snapshot else { return };
            tree.remove(path);
            remove_subtree(tree, path);
            remove_parent_files(tree, path);
            for (file, bytes) in files {
                let bytes = masker.mask_bytes(bytes).into_owned();
                tree.insert(format!("{path}/{file}"), Arc::new(bytes));
            }
        }
    }
}

/// Removes any file standing where one of `path`'s parent directories must be.
fn remove_parent_files(tree: &mut Tree, path: &str) {
    let mut end = 0;
    while let Some(slash) = path[end..].find('/') {
        end += slash;
        tree.remove(&path[..end]);
        end += 1;
    }
}

fn remove_subtree(tree: &mut Tree, path: &str) {
    let prefix = format!("{path}/");
    let doomed: Vec<String> = tree
        .range(prefix.clone()..)
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    for key in doomed {
        tree.remove(&key);
    }
}

/// The message as git would give it back: rendered, then parsed.
fn normalized(message: &Message) -> Message {
    Message::parse(&message.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[test]
    fn memory_store_meets_the_contract() {
        contract::check_all(&|| Box::new(MemoryStore::new()));
    }
}
