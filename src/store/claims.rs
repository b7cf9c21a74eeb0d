//! What workers need from git (`wfe worker`): one run's ref fetched and
//! pushed alone, a compare-and-swap push, and checkpoints written without
//! moving the local run ref.
//!
//! Workers share a run through a remote: every change a worker makes (a
//! claim, a lease renewal, a phase's result) is a checkpoint on top of the
//! tip it fetched, pushed with `git push --atomic
//! --force-with-lease=<ref>:<tip>`, so exactly one of the workers racing
//! from one tip wins and the others write nothing. Only the run's own ref
//! is fetched or pushed: a claim costs the same with 10 or 1,000 runs on
//! the remote.
//!
//! A child of the git store's module: it uses its tree and commit writers.

use super::remote::PushStatus;
use super::{GitStore, checkpoint_id, commit_tree, parse_checkpoint, path};
use crate::store::{Change, CheckpointId, Message, Result, RunId, StoreError};

/// Where a worker keeps the checkpoints it wrote but has not pushed yet
/// (so they stay reachable): `refs/wfe/work/<run>`.
pub const WORK_PREFIX: &str = "refs/wfe/work/";

impl GitStore {
    /// Fetches only `run`'s ref from `remote` into its mirror
    /// (`refs/wfe/remotes/<remote>/runs/<id>`) and returns its tip there
    /// (`None`: the remote has no such run).
    pub fn fetch_run(&self, remote: &str, run: &RunId) -> Result<Option<CheckpointId>> {
        let name = run.ref_name();
        let mirror = mirror_name(remote, run);
        // git refuses to move a ref whose lock file exists, and a worker
        // killed in the middle of an update leaves one: every later fetch
        // of this clone would fail.
        super::clear_stale_locks(&self.info().common_dir, &[name.clone(), mirror.clone()]);
        let spec = format!("+{name}:{mirror}");
        // Negotiate from the tip already here (what the remote most likely
        // built on), not from every local ref.
        let known = {
            let shared = self.shared();
            super::read_tip(&shared.repo, &mirror)?
        };
        let tip_arg = known.map(|id| format!("--negotiation-tip={id}"));
        // One round trip, doing nothing else: no maintenance or commit
        // graph after it (a worker fetches often), no FETCH_HEAD, no walk
        // to tell whether the forced mirror update was a fast-forward.
        let mut args = vec![
            "-c",
            "maintenance.auto=false",
            "-c",
            "gc.auto=0",
            "-c",
            "fetch.writeCommitGraph=false",
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-show-forced-updates",
            "--no-recurse-submodules",
        ];
        args.extend(tip_arg.as_deref());
        args.extend([remote, spec.as_str()]);
        let out = self.git_cli_output(&args)?;
        if !out.status.success() {
            let words = String::from_utf8_lossy(&out.stderr);
            // The remote answered, without that ref: the run is not there.
            if words.contains("couldn't find remote ref") {
                return Ok(None);
            }
            return Err(super::remote::cli_error(&args, &out.stderr));
        }
        let shared = self.shared();
        let tip = super::read_tip(&shared.repo, &mirror)?;
        Ok(tip.map(checkpoint_id))
    }

    /// `run`'s tip on `remote` as last seen here (fetched, or pushed by
    /// this repository), if ever: maybe not the remote's tip any more.
    pub fn remote_tip(&self, remote: &str, run: &RunId) -> Result<Option<CheckpointId>> {
        let shared = self.shared();
        Ok(super::read_tip(&shared.repo, &mirror_name(remote, run))?.map(checkpoint_id))
    }

    /// Pushes `to` as `run`'s ref on `remote` only if the remote's ref is
    /// still `expected` (`None`: it must not exist yet): one atomic
    /// compare-and-swap. `Ok(false)` when another writer moved it first;
    /// an error when the remote could not be reached.
    pub fn push_run_cas(
        &self,
        remote: &str,
        run: &RunId,
        expected: Option<&CheckpointId>,
        to: &CheckpointId,
    ) -> Result<bool> {
        let name = run.ref_name();
        let lease = format!(
            "--force-with-lease={name}:{}",
            expected.map_or("", |e| e.0.as_str())
        );
        let spec = format!("{}:{name}", to.0.as_str());
        let args = [
            "-c",
            "maintenance.auto=false",
            "-c",
            "gc.auto=0",
            "-c",
            "push.negotiate=false",
            "push",
            "--porcelain",
            "--atomic",
            "--no-verify",
            &lease,
            remote,
            &spec,
        ];
        let out = self.git_cli_output(&args)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match super::remote::parse_porcelain(&stdout).get(name.as_str()) {
            Some(PushStatus::Pushed | PushStatus::UpToDate) => {
                // The remote's tip is `to` now: the mirror says so, so the
                // next change can build on it without fetching first.
                let mirror = mirror_name(remote, run);
                self.set_refs(&[mirror.as_str()], to, "wfe: worker pushed", now_seconds())?;
                Ok(true)
            }
            Some(PushStatus::Rejected(_)) => Ok(false),
            None => Err(super::remote::cli_error(&args, &out.stderr)),
        }
    }

    /// Writes a checkpoint of `run`: `parent`'s tree with `changes`
    /// applied, as a child of `parent`, moving no run ref. The worker's
    /// scratch ref `refs/wfe/work/<run>` points at it so it stays
    /// reachable until it is pushed. No [`Change::Snapshot`] here.
    pub fn commit_detached(
        &self,
        run: &RunId,
        parent: &CheckpointId,
        changes: &[Change],
        message: &Message,
        time: i64,
    ) -> Result<CheckpointId> {
        path::validate_changes(changes)?;
        if changes.iter().any(|c| matches!(c, Change::Snapshot { .. })) {
            return Err(StoreError::Git {
                message: "a worker's checkpoint cannot snapshot the work tree".into(),
            });
        }
        let id = {
            let shared = self.shared();
            let repo = &shared.repo;
            let parent_id = parse_checkpoint(parent)?;
            let base = commit_tree(repo, parent_id)?;
            // One pack, as for any checkpoint (see `GitStore::commit`).
            let mut objects = super::pack::ObjectSet::new(repo.object_hash());
            let (tree, _) = super::write_tree(repo, &mut objects, base, None, changes, None)?;
            let signature = self.signature(time);
            let id = objects.add_object(
                &repo.objects,
                &super::commit_object(tree, Some(parent_id), &signature, message),
            )?;
            if self.write_pack(repo, objects)? {
                self.packed(repo);
            }
            id
        };
        let id = checkpoint_id(id);
        let scratch = format!("{WORK_PREFIX}{}", run.as_str());
        self.set_refs(&[scratch.as_str()], &id, "wfe: worker checkpoint", time)?;
        Ok(id)
    }

    /// Points the local ref of `run` at `to` whatever it held: a worker's
    /// copy of a run follows the remote, where every checkpoint it made
    /// was pushed (or is kept by its scratch ref until it is).
    pub fn follow_remote(&self, run: &RunId, to: &CheckpointId) -> Result<()> {
        self.set_refs(
            &[run.ref_name().as_str()],
            to,
            "wfe: worker follows the remote",
            now_seconds(),
        )
    }

    /// Points each of `names` at `to` whatever it held, in one ref
    /// transaction in this process (no `git update-ref` per checkpoint).
    fn set_refs(&self, names: &[&str], to: &CheckpointId, reason: &str, time: i64) -> Result<()> {
        use gix::refs::transaction::{
            Change as RefChange, LogChange, PreviousValue, RefEdit, RefLog,
        };
        let id = parse_checkpoint(to)?;
        let mut edits = Vec::new();
        for name in names {
            edits.push(RefEdit {
                change: RefChange::Update {
                    log: LogChange {
                        mode: RefLog::AndReference,
                        force_create_reflog: false,
                        message: reason.into(),
                    },
                    expected: PreviousValue::Any,
                    new: gix::refs::Target::Object(id),
                },
                name: super::full_name(name)?,
                deref: false,
            });
        }
        let signature = self.signature(time);
        let shared = self.shared();
        super::trash::transact(&shared.repo, edits, &signature)
    }
}

/// Where `run`'s tip on `remote` is mirrored here.
fn mirror_name(remote: &str, run: &RunId) -> String {
    format!("{}{remote}/runs/{}", super::REMOTES_PREFIX, run.as_str())
}

/// Seconds since the Unix epoch, now (a reflog entry's time).
fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl GitStore {
    /// The runs on `remote`, by their refs (`git ls-remote`: names only,
    /// no objects fetched), oldest first (run ids sort by creation time).
    pub fn remote_runs(&self, remote: &str) -> Result<Vec<RunId>> {
        let pattern = format!("{}*", super::RUNS_PREFIX);
        let args = ["ls-remote", "--refs", remote, pattern.as_str()];
        let out = self.git_cli_output(&args)?;
        if !out.status.success() {
            return Err(super::remote::cli_error(&args, &out.stderr));
        }
        let mut runs: Vec<RunId> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .filter_map(|(_, name)| name.strip_prefix(super::RUNS_PREFIX))
            .filter_map(RunId::parse)
            .collect();
        runs.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        runs.dedup_by(|a, b| a.as_str() == b.as_str());
        Ok(runs)
    }

    /// Another handle on the same repository, for a thread of its own.
    pub fn reopen(&self) -> Result<GitStore> {
        GitStore::discover(self.cli_dir())
    }
}
