//! Rollback and undo in git: `refs/wfe/trash/<run>/<n>` keeps every tip a
//! run's ref was moved away from, so `git gc` never prunes a checkpoint
//! and `wfe undo` can bring it back.
//!
//! A child of the git store's module (it uses its private helpers); the
//! trait methods there only delegate here. Every change is one gix ref
//! transaction over all the refs it touches: preparing it locks them and
//! checks each expected value, so a stale writer changes nothing at all.
//! Trash refs get reflogs like run refs, with the same reason.

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::lock::acquire::Fail;
use gix::refs::transaction::{Change as RefChange, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{Target, TargetRef};

use super::{
    GitStore, OrGit, PACKED_REFS_LOCK_TIMEOUT, REF_LOCK_TIMEOUT, clear_stale_locks, conflict,
    find_commit, full_name, git_error, parse_checkpoint, read_tip,
};
use crate::store::{
    CheckpointId, Purged, Result, RunId, StoreError, TRASH_PREFIX, Trashed, Undone,
};

/// How often a change starts over when another writer took the trash
/// number it picked (the run's tip still being the expected one).
const NUMBER_ROUNDS: usize = 8;

impl GitStore {
    /// [`crate::store::RunStore::reset`] in git.
    pub(super) fn reset_run(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        to: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Trashed> {
        let to_id = parse_checkpoint(to)?;
        self.set_tip_aside(run, expected, reason, time, |repo, expected_id| {
            // Refuse a target that is not a commit before touching any ref.
            find_commit(repo, to_id)?;
            move_to(run.ref_name(), expected_id, to_id, reason)
        })
    }

    /// Keeps the run's tip (`expected`) under a new trash ref and applies
    /// `then` (a move or a deletion of the run's ref) in the same ref
    /// transaction: both happen or neither. Starts over when another writer
    /// took the trash number picked; a moved tip is a conflict.
    fn set_tip_aside(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
        then: impl Fn(&gix::Repository, ObjectId) -> Result<RefEdit>,
    ) -> Result<Trashed> {
        let Ok(expected_id) = parse_checkpoint(expected) else {
            let shared = self.shared();
            return Err(conflict(
                run,
                Some(expected),
                read_tip(&shared.repo, &run.ref_name())?,
            ));
        };
        let signature = self.signature(time);
        for _ in 0..NUMBER_ROUNDS {
            let shared = self.shared();
            let repo = &shared.repo;
            let current = read_tip(repo, &run.ref_name())?;
            if current != Some(expected_id) {
                return Err(conflict(run, Some(expected), current));
            }
            let second = then(repo, expected_id)?;
            let number = next_number(repo, run)?;
            let edits = vec![create(run.trash_ref(number), expected_id, reason)?, second];
            match transact(repo, edits, &signature) {
                Ok(()) => {
                    return Ok(Trashed {
                        number,
                        checkpoint: expected.clone(),
                    });
                }
                Err(err) => {
                    let found = read_tip(repo, &run.ref_name())?;
                    if found != current {
                        return Err(conflict(run, Some(expected), found));
                    }
                    if read_tip(repo, &run.trash_ref(number))?.is_some() {
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(busy(run))
    }

    /// [`crate::store::RunStore::trashed`] in git.
    pub(super) fn trashed_of(&self, run: &RunId) -> Result<Vec<Trashed>> {
        let shared = self.shared();
        entries(&shared.repo, run)
    }

    /// [`crate::store::RunStore::undo`] in git.
    pub(super) fn undo_run(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Undone> {
        use crate::store::RunStore;

        // Not even an object id: no tip can match it, which is a conflict.
        let wanted = parse_checkpoint(expected).ok();
        let signature = self.signature(time);
        for _ in 0..NUMBER_ROUNDS {
            let (current, last) = {
                let shared = self.shared();
                let repo = &shared.repo;
                let current = read_tip(repo, &run.ref_name())?;
                let last = entries(repo, run)?.pop();
                (current, last)
            };
            let Some(expected_id) = current.filter(|c| Some(*c) == wanted) else {
                return Err(conflict(run, Some(expected), current));
            };
            let Some(last) = last else {
                return Err(StoreError::NothingTrashed { run: run.clone() });
            };
            let restored_id = parse_checkpoint(&last.checkpoint)?;
            // Walks history without the repository lock held; the
            // transaction below checks every ref again under its own locks.
            let keep = !self.reaches(&last.checkpoint, expected)?;

            let shared = self.shared();
            let repo = &shared.repo;
            let trashed = if keep {
                let number = next_number(repo, run)?;
                Some(Trashed {
                    number,
                    checkpoint: expected.clone(),
                })
            } else {
                None
            };
            let mut edits = Vec::new();
            if let Some(kept) = &trashed {
                edits.push(create(run.trash_ref(kept.number), expected_id, reason)?);
            }
            edits.push(move_to(run.ref_name(), expected_id, restored_id, reason)?);
            edits.push(RefEdit {
                change: RefChange::Delete {
                    expected: PreviousValue::MustExistAndMatch(Target::Object(restored_id)),
                    log: RefLog::AndReference,
                },
                name: full_name(&run.trash_ref(last.number))?,
                deref: false,
            });
            match transact(repo, edits, &signature) {
                Ok(()) => {
                    return Ok(Undone {
                        restored: last,
                        trashed,
                    });
                }
                Err(err) => {
                    let found = read_tip(repo, &run.ref_name())?;
                    if found != current {
                        return Err(conflict(run, Some(expected), found));
                    }
                    // Another undo or rollback changed the trash: look again.
                    let now = entries(repo, run)?;
                    let same_last = now.last() == Some(&last);
                    let number_taken = trashed
                        .as_ref()
                        .is_some_and(|k| now.iter().any(|e| e.number == k.number));
                    if !same_last || number_taken {
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(busy(run))
    }
}

impl GitStore {
    /// [`crate::store::RunStore::remove`] in git.
    pub(super) fn remove_run(
        &self,
        run: &RunId,
        expected: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<Trashed> {
        // The tip is not read: a ref to a missing object moves as well.
        self.set_tip_aside(run, expected, reason, time, |_, expected_id| {
            delete(run.ref_name(), expected_id)
        })
    }

    /// [`crate::store::RunStore::restore`] in git.
    pub(super) fn restore_run(&self, run: &RunId, reason: &str, time: i64) -> Result<Trashed> {
        let signature = self.signature(time);
        for _ in 0..NUMBER_ROUNDS {
            let shared = self.shared();
            let repo = &shared.repo;
            let current = read_tip(repo, &run.ref_name())?;
            if current.is_some() {
                return Err(conflict(run, None, current));
            }
            let Some(last) = entries(repo, run)?.pop() else {
                return Err(StoreError::NothingTrashed { run: run.clone() });
            };
            let id = parse_checkpoint(&last.checkpoint)?;
            let edits = vec![
                create(run.ref_name(), id, reason)?,
                delete(run.trash_ref(last.number), id)?,
            ];
            match transact(repo, edits, &signature) {
                Ok(()) => return Ok(last),
                Err(err) => {
                    let found = read_tip(repo, &run.ref_name())?;
                    if found.is_some() {
                        return Err(conflict(run, None, found));
                    }
                    if entries(repo, run)?.last() != Some(&last) {
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(busy(run))
    }

    /// [`crate::store::RunStore::purge`] in git.
    pub(super) fn purge_run(&self, run: &RunId, expected: Option<&CheckpointId>) -> Result<Purged> {
        let shared = self.shared();
        let repo = &shared.repo;
        let current = read_tip(repo, &run.ref_name())?;
        if let Some(expected) = expected
            && current.map(|c| c.to_string()).as_deref() != Some(expected.0.as_str())
        {
            return Err(conflict(run, Some(expected), current));
        }
        let trash = entries(repo, run)?;
        if current.is_none() && trash.is_empty() {
            return Err(StoreError::NoSuchRun {
                run: run.to_string(),
            });
        }
        let mut edits = Vec::new();
        if let Some(tip) = current {
            edits.push(delete(run.ref_name(), tip)?);
        }
        for entry in &trash {
            edits.push(delete(
                run.trash_ref(entry.number),
                parse_checkpoint(&entry.checkpoint)?,
            )?);
        }
        // Deletions write no reflog line: the ref's reflog goes with it.
        transact(repo, edits, &self.signature(0))?;
        Ok(Purged {
            tip: current.map(|id| CheckpointId(id.to_string())),
            trash,
        })
    }

    /// [`crate::store::RunStore::removed`] in git.
    pub(super) fn removed_runs(&self) -> Result<Vec<RunId>> {
        let shared = self.shared();
        let repo = &shared.repo;
        let platform = repo.references().or_git(|| "listing refs".into())?;
        let refs = platform
            .prefixed(TRASH_PREFIX)
            .or_git(|| format!("listing {TRASH_PREFIX}*"))?;
        let mut runs = std::collections::BTreeSet::new();
        for reference in refs {
            let reference = reference.or_git(|| format!("listing {TRASH_PREFIX}*"))?;
            let name = reference.name().as_bstr().to_str_lossy();
            let Some((id, _)) = name
                .strip_prefix(TRASH_PREFIX)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if let Some(run) = RunId::parse(id).filter(|r| r.as_str() == id) {
                runs.insert(run);
            }
        }
        let mut out = Vec::new();
        for run in runs {
            if read_tip(repo, &run.ref_name())?.is_none() && !entries(repo, &run)?.is_empty() {
                out.push(run);
            }
        }
        Ok(out)
    }
}

/// The run's trash entries, lowest number first. Refs under the run's trash
/// folder whose last component is not a number are not wfe's entries.
fn entries(repo: &gix::Repository, run: &RunId) -> Result<Vec<Trashed>> {
    let prefix = format!("{TRASH_PREFIX}{run}/");
    let platform = repo.references().or_git(|| "listing refs".into())?;
    let refs = platform
        .prefixed(prefix.as_str())
        .or_git(|| format!("listing {prefix}*"))?;
    let mut found = Vec::new();
    for reference in refs {
        let reference = reference.or_git(|| format!("listing {prefix}*"))?;
        let name = reference.name().as_bstr().to_str_lossy();
        let Some(number) = name
            .strip_prefix(&prefix)
            .filter(|n| !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let TargetRef::Object(id) = reference.target() {
            found.push(Trashed {
                number,
                checkpoint: CheckpointId(id.to_string()),
            });
        }
    }
    found.sort_by_key(|t| t.number);
    Ok(found)
}

fn next_number(repo: &gix::Repository, run: &RunId) -> Result<u32> {
    Ok(entries(repo, run)?.last().map_or(1, |t| t.number + 1))
}

/// Creates `name` at `id`; fails if it exists.
pub(super) fn create(name: String, id: ObjectId, reason: &str) -> Result<RefEdit> {
    Ok(RefEdit {
        change: RefChange::Update {
            log: log(reason),
            expected: PreviousValue::MustNotExist,
            new: Target::Object(id),
        },
        name: full_name(&name)?,
        deref: false,
    })
}

/// Moves `name` from `from` to `to`; fails unless it points at `from`.
pub(super) fn move_to(name: String, from: ObjectId, to: ObjectId, reason: &str) -> Result<RefEdit> {
    Ok(RefEdit {
        change: RefChange::Update {
            log: log(reason),
            expected: PreviousValue::MustExistAndMatch(Target::Object(from)),
            new: Target::Object(to),
        },
        name: full_name(&name)?,
        deref: false,
    })
}

/// Deletes `name` (and its reflog); fails unless it points at `from`.
pub(super) fn delete(name: String, from: ObjectId) -> Result<RefEdit> {
    Ok(RefEdit {
        change: RefChange::Delete {
            expected: PreviousValue::MustExistAndMatch(Target::Object(from)),
            log: RefLog::AndReference,
        },
        name: full_name(&name)?,
        deref: false,
    })
}

fn log(reason: &str) -> LogChange {
    LogChange {
        mode: RefLog::AndReference,
        // git logs only refs/heads and friends by default; wfe's refs ask for it.
        force_create_reflog: true,
        message: reason.replace('\n', " ").into(),
    }
}

/// Prepares (locks and checks every ref) and commits `edits` as one
/// transaction. A lock file a dead process left behind (a `wfe worker`
/// killed with SIGKILL in the middle of an update) would fail every later
/// update of that ref in this repository: one older than a live writer
/// ever holds it is removed, and the transaction tried once more.
pub(super) fn transact(
    repo: &gix::Repository,
    edits: Vec<RefEdit>,
    signature: &gix::actor::Signature,
) -> Result<()> {
    let names: Vec<String> = edits.iter().map(|e| e.name.as_bstr().to_string()).collect();
    let attempt = |edits: Vec<RefEdit>| {
        let mut time_buf = gix::date::parse::TimeBuf::default();
        repo.refs
            .transaction()
            .prepare(
                edits,
                Fail::AfterDurationWithBackoff(REF_LOCK_TIMEOUT),
                Fail::AfterDurationWithBackoff(PACKED_REFS_LOCK_TIMEOUT),
            )
            .and_then(|tx| tx.commit(Some(signature.to_ref(&mut time_buf))))
            .map(|_| ())
    };
    // A lock this old was left by a dead process: clear it before trying.
    clear_stale_locks(repo.common_dir(), &names);
    let first = attempt(edits.clone());
    let Err(err) = first else { return Ok(()) };
    if clear_stale_locks(repo.common_dir(), &names) {
        attempt(edits).map_err(|err| git_error(format!("updating {}", names.join(" and ")), &err))
    } else {
        Err(git_error(format!("updating {}", names.join(" and ")), &err))
    }
}

/// Other writers kept taking the trash numbers this one picked.
fn busy(run: &RunId) -> StoreError {
    StoreError::Git {
        message: format!(
            "updating {TRASH_PREFIX}{run}/: other writers kept changing it; try again"
        ),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::contract::{message, run_id};
    use crate::store::test_git::git;
    use crate::store::{Change, RunStore};

    /// A repository with a run of `n` checkpoints; returns them oldest first.
    fn repo_with_run(n: usize) -> (tempfile::TempDir, GitStore, RunId, Vec<CheckpointId>) {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        let store = GitStore::open_isolated(dir.path()).expect("open");
        let run = run_id("1");
        let mut ids: Vec<CheckpointId> = Vec::new();
        for k in 0..n {
            let id = store
                .commit(
                    &run,
                    ids.last(),
                    &[Change::write("step", format!("{k}"))],
                    &message(&run, &format!("step {k}")),
                    k as i64,
                )
                .expect("commit");
            ids.push(id);
        }
        (dir, store, run, ids)
    }

    #[test]
    fn trash_refs_are_plain_refs_with_reflogs() {
        let (dir, store, run, c) = repo_with_run(3);
        let path = dir.path();
        store
            .reset(&run, &c[2], &c[0], "wfe: rollback to @1", 100)
            .expect("reset");
        assert_eq!(git(path, &["rev-parse", &run.ref_name()]).trim(), c[0].0);
        assert_eq!(git(path, &["rev-parse", &run.trash_ref(1)]).trim(), c[2].0);
        assert_eq!(
            git(path, &["reflog", "show", "--format=%gs", &run.ref_name()])
                .lines()
                .next(),
            Some("wfe: rollback to @1")
        );
        assert_eq!(
            git(path, &["reflog", "show", "--format=%gs", &run.trash_ref(1)]).trim(),
            "wfe: rollback to @1"
        );

        // Packed trash refs still count, and gc keeps what they point at.
        git(path, &["pack-refs", "--all"]);
        git(path, &["gc", "--prune=now", "--quiet"]);
        assert_eq!(store.trashed(&run).expect("trashed").len(), 1);
        let undone = store.undo(&run, &c[0], "wfe: undo", 101).expect("undo");
        assert_eq!(undone.restored.checkpoint, c[2]);
        assert_eq!(git(path, &["rev-parse", &run.ref_name()]).trim(), c[2].0);
        assert_eq!(
            git(
                path,
                &["for-each-ref", "--format=%(refname)", "refs/wfe/trash/"]
            ),
            ""
        );
        git(path, &["fsck", "--strict", "--no-progress"]);
    }

    #[test]
    fn a_broken_run_is_listed_apart_removed_restored_and_purged() {
        let (dir, store, run, c) = repo_with_run(2);
        let path = dir.path();
        let healthy = run_id("2");
        store
            .commit(&healthy, None, &[], &message(&healthy, "new"), 1)
            .expect("commit");
        std::fs::write(path.join("note.txt"), "not a commit\n").expect("write");
        let blob = git(path, &["hash-object", "-w", "note.txt"])
            .trim()
            .to_string();
        git(path, &["update-ref", &run.ref_name(), &blob]);

        let list = store.scan().expect("scan");
        assert_eq!(list.heads.len(), 1);
        assert_eq!(list.heads[0].run, healthy);
        assert_eq!(list.broken.len(), 1);
        assert_eq!(list.broken[0].run, run);
        assert!(
            list.broken[0].error.to_string().contains("blob"),
            "{}",
            list.broken[0].error
        );
        // Its id still names it, so it can be checked and removed.
        assert_eq!(store.resolve(run.as_str()).expect("resolve"), run);

        let tip = CheckpointId(blob.clone());
        let stale = CheckpointId(c[0].0.clone());
        assert!(matches!(
            store.remove(&run, &stale, "rm", 2),
            Err(StoreError::Conflict { .. })
        ));
        let trashed = store.remove(&run, &tip, "wfe: rm", 2).expect("remove");
        assert_eq!(trashed.number, 1);
        assert_eq!(store.tip(&run).expect("tip"), None);
        assert_eq!(store.removed().expect("removed"), vec![run.clone()]);
        // (`git reflog show` walks commits only: read the log of a blob's ref directly.)
        let reflog = std::fs::read_to_string(path.join(".git/logs").join(run.trash_ref(1)))
            .expect("the trash ref has a reflog");
        assert!(reflog.trim_end().ends_with("\twfe: rm"), "{reflog}");

        let restored = store.restore(&run, "wfe: undo", 3).expect("restore");
        assert_eq!(restored, trashed);
        assert_eq!(store.tip(&run).expect("tip"), Some(tip.clone()));
        assert!(matches!(
            store.restore(&run, "again", 3),
            Err(StoreError::Conflict { .. })
        ));

        let purged = store.purge(&run, Some(&tip)).expect("purge");
        assert_eq!(purged.tip, Some(tip));
        assert!(purged.trash.is_empty());
        assert_eq!(
            git(path, &["for-each-ref", "--format=%(refname)", "refs/wfe/"]).trim(),
            healthy.ref_name()
        );
        assert!(matches!(
            store.purge(&run, None),
            Err(StoreError::NoSuchRun { .. })
        ));
    }

    #[test]
    fn foreign_names_under_the_trash_folder_are_ignored() {
        let (dir, store, run, c) = repo_with_run(2);
        let path = dir.path();
        let folder = format!("{TRASH_PREFIX}{run}");
        git(path, &["update-ref", &format!("{folder}/code-1"), &c[0].0]);
        git(path, &["update-ref", &format!("{folder}/07"), &c[0].0]);
        git(
            path,
            &["update-ref", &format!("{TRASH_PREFIX}{run}x/5"), &c[0].0],
        );
        assert!(store.trashed(&run).expect("trashed").is_empty());
        let trashed = store.reset(&run, &c[1], &c[0], "r", 1).expect("reset");
        assert_eq!(trashed.number, 1);
    }

    #[test]
    fn racing_resets_and_undos_never_lose_a_tip() {
        let (dir, store, run, c) = repo_with_run(4);
        let other =
            GitStore::open_isolated(dir.path()).expect("a second store, as another process");
        for round in 0..20 {
            let tip = store.tip(&run).expect("tip").expect("exists");
            let target = &c[round % 3];
            if &tip == target {
                continue;
            }
            let results: Vec<Result<Trashed>> = std::thread::scope(|scope| {
                let handles: Vec<_> = [&store, &other]
                    .into_iter()
                    .map(|s| {
                        let (run, tip) = (&run, &tip);
                        scope.spawn(move || s.reset(run, tip, target, "race", 1))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("no panic"))
                    .collect()
            });
            let wins: Vec<&Trashed> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(wins.len(), 1, "round {round}: {results:?}");
            for lost in results.iter().filter_map(|r| r.as_ref().err()) {
                assert!(matches!(lost, StoreError::Conflict { .. }), "{lost}");
            }
            assert_eq!(wins[0].checkpoint, tip);
            assert_eq!(store.tip(&run).expect("tip").as_ref(), Some(target));
        }
        // Every abandoned tip is in the trash, numbered without duplicates.
        let trashed = store.trashed(&run).expect("trashed");
        let numbers: Vec<u32> = trashed.iter().map(|t| t.number).collect();
        assert_eq!(numbers, (1..=trashed.len() as u32).collect::<Vec<_>>());
        assert!(trashed.iter().any(|t| t.checkpoint == c[3]));

        // Two undos of the same tip: one restores, the other changes nothing.
        for round in 0..5 {
            let tip = store.tip(&run).expect("tip").expect("exists");
            let before = store.trashed(&run).expect("trashed");
            let results: Vec<Result<Undone>> = std::thread::scope(|scope| {
                let handles: Vec<_> = [&store, &other]
                    .into_iter()
                    .map(|s| {
                        let (run, tip) = (&run, &tip);
                        scope.spawn(move || s.undo(run, tip, "race", 1))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("no panic"))
                    .collect()
            });
            let wins: Vec<&Undone> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(wins.len(), 1, "undo round {round}: {results:?}");
            assert_eq!(Some(&wins[0].restored), before.last());
            let after = store.trashed(&run).expect("trashed");
            assert_eq!(
                after.len() + 1 - usize::from(wins[0].trashed.is_some()),
                before.len()
            );
        }
        git(dir.path(), &["fsck", "--strict", "--no-progress"]);
    }
}
