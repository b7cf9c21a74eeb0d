//! Retention in git: how old each trash entry is, deleting one, and
//! keeping the repository packed (`git gc` through the git CLI).
//!
//! An entry's age is when it was set aside, read from the first line of
//! its reflog (wfe writes one for every trash ref); an entry without a
//! reflog (made by hand, or by `git fetch`, which logs only branches) is
//! as old as the checkpoint it keeps. Repacking is the user's own
//! `git gc`: it packs every reachable object and prunes only unreachable
//! ones past git's expiry (two weeks by default), so nothing reachable is
//! lost and an object a concurrent writer has just written is never
//! removed before its ref points at it.
//!
//! A child of the git store's module: it uses its ref-transaction helpers.

use std::path::PathBuf;

use super::trash::{delete, transact};
use super::{GitStore, parse_checkpoint};
use crate::store::{Result, RunId, RunStore, StoreError, Trashed};

/// A trash entry and when it was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashAge {
    /// The run.
    pub run: RunId,
    /// The entry.
    pub entry: Trashed,
    /// When it was set aside, seconds since the Unix epoch.
    pub trashed_at: i64,
}

impl GitStore {
    /// Every trash entry of every run, with its age, oldest run first.
    pub fn trash_ages(&self) -> Result<Vec<TrashAge>> {
        let mut runs = self.removed()?;
        runs.extend(self.runs()?.into_iter().map(|h| h.run));
        runs.sort();
        runs.dedup();
        let mut out = Vec::new();
        for run in runs {
            for entry in self.trashed(&run)? {
                let name = run.trash_ref(entry.number);
                let trashed_at = match self.reflog_start(&name) {
                    Some(time) => time,
                    None => self.checkpoint(&entry.checkpoint)?.time,
                };
                out.push(TrashAge {
                    run: run.clone(),
                    entry,
                    trashed_at,
                });
            }
        }
        Ok(out)
    }

    /// When the ref's reflog begins, if it has one.
    fn reflog_start(&self, name: &str) -> Option<i64> {
        let path: PathBuf = self.info.common_dir.join("logs").join(name);
        let text = std::fs::read_to_string(path).ok()?;
        reflog_time(text.lines().next()?)
    }

    /// Deletes one trash entry, if it still points at its checkpoint
    /// (a [`StoreError::Conflict`] otherwise; nothing changes then).
    pub fn drop_trash(&self, run: &RunId, entry: &Trashed) -> Result<()> {
        let name = run.trash_ref(entry.number);
        let edit = delete(name.clone(), parse_checkpoint(&entry.checkpoint)?)?;
        let signature = self.signature(0);
        let shared = self.shared();
        transact(&shared.repo, vec![edit], &signature).map_err(|err| {
            match super::read_tip(&shared.repo, &name) {
                Ok(found)
                    if found.map(super::checkpoint_id).as_ref() != Some(&entry.checkpoint) =>
                {
                    StoreError::Conflict {
                        run: run.clone(),
                        expected: entry.checkpoint.to_string(),
                        found: found.map_or("none".into(), |f| f.to_string()),
                    }
                }
                _ => err,
            }
        })
    }

    /// How many loose objects the repository holds (`git count-objects`).
    pub fn loose_objects(&self) -> Result<u64> {
        let out = self.git_cli(&["count-objects", "-v"])?;
        Ok(out
            .lines()
            .find_map(|l| l.strip_prefix("count:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Packs the repository with `git gc --quiet` (see the module docs for
    /// why that is safe for the user's objects and for concurrent writers).
    pub fn repack(&self) -> Result<()> {
        self.git_cli(&["gc", "--quiet"]).map(|_| ())
    }
}

/// The time of a reflog line: `<old> <new> <name> <<email>> <time> <tz>\t<message>`.
fn reflog_time(line: &str) -> Option<i64> {
    let head = line.split('\t').next()?;
    let after = &head[head.rfind('>')? + 1..];
    after.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflog_lines_give_their_time() {
        let line = "0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 Test User <t@example.com> 1767323045 +0000\twfe: rm: run x moved";
        assert_eq!(reflog_time(line), Some(1_767_323_045));
        assert_eq!(reflog_time("garbage"), None);
    }
}
