//! Sharing runs with other repositories through the git CLI: fetching a
//! remote's runs, pushing runs to it, fast-forwarding local run refs, and
//! the refspecs that make plain `git fetch`/`git push` carry runs.
//!
//! The git CLI (not gix) talks to remotes so the user's remotes, URL
//! rewrites, credential helpers and SSH setup work exactly as they do for
//! `git push`. A remote's runs are fetched into a remote-tracking namespace,
//! `refs/wfe/remotes/<remote>/runs/<id>` (and `…/trash/<id>/<n>`), which
//! mirrors the remote and may be overwritten like `refs/remotes/*`; a
//! local run's ref (`refs/wfe/runs/<id>`) only ever moves forward, by a
//! compare-and-swap here or by a non-forced `git push` on the remote, so
//! no side ever loses a checkpoint. Nothing here decides what to do with a
//! diverged run: it reports the two tips and their common checkpoint.
//!
//! A child of the git store's module: it uses its ref-transaction helpers.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use gix::bstr::ByteSlice;
use gix::refs::TargetRef;

use super::trash::{create, move_to, transact};
use super::{GitStore, OrGit, checkpoint_id, full_name, parse_checkpoint};
use crate::store::{CheckpointId, Result, RunId, RunStore, StoreError, TRASH_PREFIX};

/// Where a remote's runs are mirrored: `refs/wfe/remotes/<remote>/`.
pub const REMOTES_PREFIX: &str = "refs/wfe/remotes/";

/// The refspec `wfe remote setup` adds for fetching and pushing runs. Not
/// forced (no leading `+`): git refuses to move a run's ref unless the new
/// tip descends from the old one, so a local run that diverged is never
/// overwritten by `git fetch`, nor a remote one by `git push`.
pub const RUNS_REFSPEC: &str = "refs/wfe/runs/*:refs/wfe/runs/*";

/// One wfe ref (`refs/wfe/runs/<id>` or `refs/wfe/trash/<id>/<n>`) as the
/// two repositories have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefPair {
    /// The ref's name, the same on both sides.
    pub name: String,
    /// The run it belongs to.
    pub run: RunId,
    /// Where it points here, if it exists here.
    pub local: Option<CheckpointId>,
    /// Where it points on the remote (as just fetched), if it exists there.
    pub remote: Option<CheckpointId>,
}

/// How the two sides of a ref relate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// Both point at the same checkpoint.
    Same,
    /// Only this repository has it.
    LocalOnly,
    /// Only the remote has it.
    RemoteOnly,
    /// The local tip descends from the remote's: a push fast-forwards it.
    Ahead,
    /// The remote's tip descends from the local one: a pull fast-forwards it.
    Behind,
    /// Both sides added checkpoints after `base` (`None`: no common checkpoint).
    Diverged {
        /// The newest checkpoint both sides have.
        base: Option<CheckpointId>,
    },
}

/// What `git push` did with one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    /// The remote ref was created or fast-forwarded.
    Pushed,
    /// The remote ref already pointed there.
    UpToDate,
    /// The remote refused the update (with git's reason, e.g. `non-fast-forward`).
    Rejected(String),
}

/// What [`GitStore::setup_remote`] added to a remote's config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteSetup {
    /// `remote.<name>.fetch` lines added.
    pub fetch: Vec<String>,
    /// `remote.<name>.push` lines added.
    pub push: Vec<String>,
}

impl GitStore {
    /// Runs the git CLI in the repository with `args`; its stdout, or a
    /// [`StoreError::Git`] with its stderr when it fails.
    pub(super) fn git_cli(&self, args: &[&str]) -> Result<String> {
        let out = self
            .git_command(args)
            .output()
            .map_err(|source| StoreError::Io {
                action: "running git in",
                path: self.cli_dir().to_path_buf(),
                source,
            })?;
        if !out.status.success() {
            return Err(cli_error(args, &out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the git CLI in the repository with `args` and returns what it
    /// did, success or not (an error only when git could not be started).
    pub(super) fn git_cli_output(&self, args: &[&str]) -> Result<std::process::Output> {
        self.git_command(args)
            .output()
            .map_err(|source| StoreError::Io {
                action: "running git in",
                path: self.cli_dir().to_path_buf(),
                source,
            })
    }

    /// A git CLI command in the repository, not yet run.
    fn git_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(self.cli_dir()).args(args);
        cmd
    }

    /// Where git runs: the work tree (so HEAD is this worktree's), or the git dir.
    pub(super) fn cli_dir(&self) -> &Path {
        self.info
            .work_dir
            .as_deref()
            .unwrap_or(self.info.common_dir.as_path())
    }

    /// The repository's remotes, as `git remote` lists them.
    pub fn remotes(&self) -> Result<Vec<String>> {
        Ok(self
            .git_cli(&["remote"])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// The remote runs are shared with when none is named: the current
    /// branch's upstream remote, else `origin` if it exists.
    pub fn default_remote(&self) -> Result<Option<String>> {
        let remotes = self.remotes()?;
        let branch = self
            .git_command(&["symbolic-ref", "--quiet", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if let Some(branch) = branch.filter(|b| !b.is_empty()) {
            let key = format!("branch.{branch}.remote");
            let upstream = self
                .git_command(&["config", "--get", &key])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            if let Some(upstream) = upstream.filter(|u| remotes.contains(u)) {
                return Ok(Some(upstream));
            }
        }
        Ok(remotes.into_iter().find(|r| r == "origin"))
    }

    /// Checks that `remote` is one of the repository's remotes.
    pub fn check_remote(&self, remote: &str) -> Result<()> {
        let known = self.remotes()?;
        if known.iter().any(|r| r == remote) {
            // A remote's name becomes a ref component of its mirror.
            full_name(&format!("{REMOTES_PREFIX}{remote}/runs"))?;
            return Ok(());
        }
        Err(StoreError::NoSuchRemote {
            remote: remote.to_string(),
            known,
        })
    }

    /// Fetches the remote's runs (and with `trash` its trash entries) into
    /// `refs/wfe/remotes/<remote>/`, dropping mirrors of refs the remote no
    /// longer has, and pairs every run ref (and trash ref) of both sides.
    /// No local run ref changes.
    pub fn fetch_remote(&self, remote: &str, trash: bool) -> Result<Vec<RefPair>> {
        self.check_remote(remote)?;
        let mirror = format!("{REMOTES_PREFIX}{remote}/");
        // Forced, like `refs/remotes/*`: the mirror shows the remote as it
        // is now and is nobody's run.
        let mut specs = vec![format!("+refs/wfe/runs/*:{mirror}runs/*")];
        if trash {
            specs.push(format!("+{TRASH_PREFIX}*:{mirror}trash/*"));
        }
        let mut args = vec![
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "--no-write-fetch-head",
            remote,
        ];
        args.extend(specs.iter().map(String::as_str));
        self.git_cli(&args)?;

        let mut pairs: BTreeMap<String, RefPair> = BTreeMap::new();
        let mut prefixes = vec![("refs/wfe/runs/".to_string(), "refs/wfe/runs/")];
        if trash {
            prefixes.push((TRASH_PREFIX.to_string(), TRASH_PREFIX));
        }
        for (local_prefix, name_prefix) in &prefixes {
            for (name, tip) in self.direct_refs(local_prefix)? {
                if let Some(p) = pair_of(&mut pairs, name) {
                    p.local = Some(tip);
                }
            }
            let remote_prefix = format!("{mirror}{}", &name_prefix["refs/wfe/".len()..]);
            for (mirrored, tip) in self.direct_refs(&remote_prefix)? {
                let name = format!("{name_prefix}{}", &mirrored[remote_prefix.len()..]);
                if let Some(p) = pair_of(&mut pairs, name) {
                    p.remote = Some(tip);
                }
            }
        }
        Ok(pairs.into_values().collect())
    }

    /// Every direct ref under `prefix`, with its target.
    fn direct_refs(&self, prefix: &str) -> Result<Vec<(String, CheckpointId)>> {
        let shared = self.shared();
        let platform = shared.repo.references().or_git(|| "listing refs".into())?;
        let refs = platform
            .prefixed(prefix)
            .or_git(|| format!("listing {prefix}*"))?;
        let mut out = Vec::new();
        for reference in refs {
            let reference = reference.or_git(|| format!("listing {prefix}*"))?;
            if let TargetRef::Object(id) = reference.target() {
                out.push((
                    reference.name().as_bstr().to_str_lossy().into_owned(),
                    checkpoint_id(id.to_owned()),
                ));
            }
        }
        Ok(out)
    }

    /// How `local` and `remote` relate, walking the checkpoints' parents
    /// (a run is a linear chain).
    pub fn relation(
        &self,
        local: Option<&CheckpointId>,
        remote: Option<&CheckpointId>,
    ) -> Result<Relation> {
        let (local, remote) = match (local, remote) {
            (None, None) | (Some(_), None) => return Ok(Relation::LocalOnly),
            (None, Some(_)) => return Ok(Relation::RemoteOnly),
            (Some(l), Some(r)) if l == r => return Ok(Relation::Same),
            (Some(l), Some(r)) => (l, r),
        };
        let mine = self.chain(local)?;
        if mine.contains(remote) {
            return Ok(Relation::Ahead);
        }
        let mut next = Some(remote.clone());
        while let Some(id) = next {
            if mine.contains(&id) {
                return Ok(if &id == local {
                    Relation::Behind
                } else {
                    Relation::Diverged { base: Some(id) }
                });
            }
            next = self.checkpoint(&id)?.parent;
        }
        Ok(Relation::Diverged { base: None })
    }

    /// `from` and every checkpoint before it.
    fn chain(&self, from: &CheckpointId) -> Result<HashSet<CheckpointId>> {
        let mut seen = HashSet::new();
        let mut next = Some(from.clone());
        while let Some(id) = next {
            next = self.checkpoint(&id)?.parent;
            seen.insert(id);
        }
        Ok(seen)
    }

    /// Moves the local ref `name` from `expected` (`None`: it must not
    /// exist) to `to`, which must descend from `expected` (compare-and-swap;
    /// a moved ref is a [`StoreError::Conflict`]).
    pub fn fast_forward(
        &self,
        run: &RunId,
        name: &str,
        expected: Option<&CheckpointId>,
        to: &CheckpointId,
        reason: &str,
        time: i64,
    ) -> Result<()> {
        if let Some(old) = expected
            && !self.reaches(to, old)?
        {
            return Err(StoreError::Conflict {
                run: run.clone(),
                expected: old.to_string(),
                found: to.to_string(),
            });
        }
        let to_id = parse_checkpoint(to)?;
        let edit = match expected {
            None => create(name.to_string(), to_id, reason)?,
            Some(old) => move_to(name.to_string(), parse_checkpoint(old)?, to_id, reason)?,
        };
        let signature = self.signature(time);
        let shared = self.shared();
        transact(&shared.repo, vec![edit], &signature).map_err(|err| {
            // A ref that moved (or appeared) since it was read fails the
            // transaction's precondition: say so as a conflict.
            match super::read_tip(&shared.repo, name) {
                Ok(found) if found.map(checkpoint_id).as_ref() != expected => {
                    super::conflict(run, expected, found)
                }
                _ => err,
            }
        })
    }

    /// Pushes each of `names` (local refs) to the same name on `remote`,
    /// never forced: the remote refuses anything but a creation or a
    /// fast-forward, and says so per ref.
    pub fn push_refs(&self, remote: &str, names: &[String]) -> Result<Vec<(String, PushStatus)>> {
        self.check_remote(remote)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let specs: Vec<String> = names.iter().map(|n| format!("{n}:{n}")).collect();
        let mut args = vec!["push", "--porcelain", remote];
        args.extend(specs.iter().map(String::as_str));
        let out = self
            .git_command(&args)
            .output()
            .map_err(|source| StoreError::Io {
                action: "running git in",
                path: self.cli_dir().to_path_buf(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let statuses = parse_porcelain(&stdout);
        let mut results = Vec::new();
        for name in names {
            match statuses.get(name.as_str()) {
                Some(status) => results.push((name.clone(), status.clone())),
                // git failed before reporting refs: the remote is unreachable,
                // refused the connection, or authentication failed.
                None => return Err(cli_error(&args, &out.stderr)),
            }
        }
        Ok(results)
    }

    /// The `remote.<name>.fetch` and `.push` lines configured for `remote`.
    fn remote_config(&self, remote: &str, key: &str) -> Result<Vec<String>> {
        let key = format!("remote.{remote}.{key}");
        let out = self
            .git_command(&["config", "--get-all", &key])
            .output()
            .map_err(|source| StoreError::Io {
                action: "running git in",
                path: self.cli_dir().to_path_buf(),
                source,
            })?;
        // `git config --get-all` exits 1 when the key is unset.
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect())
    }

    /// Adds [`RUNS_REFSPEC`] to the remote's fetch and push refspecs, so
    /// plain `git fetch` and `git push` carry runs (never forced). A remote
    /// that had no push refspec also gets `HEAD`, so plain `git push` still
    /// pushes the current branch as before. Lines already there are kept.
    pub fn setup_remote(&self, remote: &str) -> Result<RemoteSetup> {
        self.check_remote(remote)?;
        let mut added = RemoteSetup::default();
        let fetch = self.remote_config(remote, "fetch")?;
        if !fetch.iter().any(|l| l == RUNS_REFSPEC) {
            self.git_cli(&[
                "config",
                "--add",
                &format!("remote.{remote}.fetch"),
                RUNS_REFSPEC,
            ])?;
            added.fetch.push(RUNS_REFSPEC.to_string());
        }
        let push = self.remote_config(remote, "push")?;
        if !push.iter().any(|l| l == RUNS_REFSPEC) {
            let mut lines = Vec::new();
            if push.is_empty() {
                lines.push("HEAD");
            }
            lines.push(RUNS_REFSPEC);
            for line in lines {
                self.git_cli(&["config", "--add", &format!("remote.{remote}.push"), line])?;
                added.push.push(line.to_string());
            }
        }
        Ok(added)
    }
}

/// The run a `refs/wfe/runs/<id>` or `refs/wfe/trash/<id>/<n>` ref belongs to.
fn run_of(name: &str) -> Option<RunId> {
    let rest = name.strip_prefix("refs/wfe/runs/").or_else(|| {
        name.strip_prefix(TRASH_PREFIX)
            .and_then(|r| r.split('/').next())
    })?;
    RunId::parse(rest).filter(|id| id.as_str() == rest)
}

/// Per destination ref, what `git push --porcelain` reported.
pub(super) fn parse_porcelain(stdout: &str) -> BTreeMap<&str, PushStatus> {
    let mut out = BTreeMap::new();
    for line in stdout.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(flag), Some(spec), Some(summary)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Some((_, dst)) = spec.split_once(':') else {
            continue;
        };
        let status = match flag {
            "=" => PushStatus::UpToDate,
            "!" => PushStatus::Rejected(
                summary
                    .trim_start_matches("[rejected]")
                    .trim_start_matches("[remote rejected]")
                    .trim()
                    .trim_matches(['(', ')'])
                    .to_string(),
            ),
            _ => PushStatus::Pushed,
        };
        out.insert(dst, status);
    }
    out
}

/// A failed git command as a store error: the command and git's own words.
pub(super) fn cli_error(args: &[&str], stderr: &[u8]) -> StoreError {
    let words = String::from_utf8_lossy(stderr);
    let words: Vec<&str> = words
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    StoreError::Git {
        message: format!("`git {}` failed: {}", args.join(" "), words.join("; ")),
    }
}

/// The pair of `name` (a run's ref) in `pairs`, made on first sight; none
/// for a ref that names no run.
fn pair_of(pairs: &mut BTreeMap<String, RefPair>, name: String) -> Option<&mut RefPair> {
    let run = run_of(&name)?;
    Some(pairs.entry(name.clone()).or_insert_with(|| RefPair {
        name,
        run,
        local: None,
        remote: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_give_each_refs_fate() {
        let out = "To /tmp/remote.git\n\
            *\trefs/wfe/runs/a:refs/wfe/runs/a\t[new reference]\n\
            \trefs/wfe/runs/b:refs/wfe/runs/b\t1111..2222\n\
            =\trefs/wfe/runs/c:refs/wfe/runs/c\t[up to date]\n\
            !\trefs/wfe/runs/d:refs/wfe/runs/d\t[rejected] (non-fast-forward)\n\
            !\trefs/wfe/runs/e:refs/wfe/runs/e\t[rejected] (fetch first)\n\
            Done\n";
        let got = parse_porcelain(out);
        assert_eq!(got["refs/wfe/runs/a"], PushStatus::Pushed);
        assert_eq!(got["refs/wfe/runs/b"], PushStatus::Pushed);
        assert_eq!(got["refs/wfe/runs/c"], PushStatus::UpToDate);
        assert_eq!(
            got["refs/wfe/runs/d"],
            PushStatus::Rejected("non-fast-forward".into())
        );
        assert_eq!(
            got["refs/wfe/runs/e"],
            PushStatus::Rejected("fetch first".into())
        );
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn only_canonical_run_and_trash_refs_name_a_run() {
        let id = "01kaxz00000000000000000001";
        assert_eq!(
            run_of(&format!("refs/wfe/runs/{id}")).map(|r| r.to_string()),
            Some(id.to_string())
        );
        assert_eq!(
            run_of(&format!("refs/wfe/trash/{id}/3")).map(|r| r.to_string()),
            Some(id.to_string())
        );
        assert_eq!(run_of("refs/wfe/runs/01KAXZ00000000000000000001"), None);
        assert_eq!(run_of("refs/wfe/runs/nope"), None);
    }
}
