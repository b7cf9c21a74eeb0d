//! `wfe push` and `wfe pull`: runs shared with a remote, fast-forward only.
//!
//! Both start by fetching the remote's runs into their mirror (see
//! [`GitStore::fetch_remote`]) so every ref's two sides can be compared:
//! a side that only adds checkpoints on top of the other moves forward, a
//! run that gained checkpoints on both sides is reported as diverged with
//! both tips and the checkpoint they share, and nothing is ever forced.
//! A pull never moves a run a live runner holds (it takes the run's lock
//! for the update); a push needs no lock, it only reads the run.

use crate::engine::EngineError;
use crate::store::{
    CheckpointId, GitStore, LockHolder, PushStatus, RefPair, Relation, RunId, StoreError,
    TRASH_PREFIX,
};
use crate::time::Clock;

/// What happened to one ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// Both sides already agreed.
    UpToDate,
    /// The ref was created on the receiving side.
    Created {
        /// Where it points.
        tip: CheckpointId,
    },
    /// The receiving side's ref moved forward.
    FastForwarded {
        /// Where it pointed.
        from: CheckpointId,
        /// Where it points now.
        to: CheckpointId,
    },
    /// Pull: this side has checkpoints the remote lacks (a push sends them).
    Ahead,
    /// Push: the remote has checkpoints this side lacks (a pull brings them).
    Behind,
    /// Both sides added checkpoints; nothing was changed.
    Diverged {
        /// This repository's tip.
        local: CheckpointId,
        /// The remote's tip.
        remote: CheckpointId,
        /// The newest checkpoint both have, if any.
        base: Option<CheckpointId>,
    },
    /// Pull: a live runner holds the run here, so its ref was not moved.
    Held {
        /// Who holds it.
        holder: LockHolder,
    },
    /// The receiving side refused, or its ref moved meanwhile.
    Rejected {
        /// Why, in git's words or wfe's.
        reason: String,
    },
}

impl Synced {
    /// Whether this outcome leaves work undone that the user must resolve.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Synced::Diverged { .. } | Synced::Held { .. } | Synced::Rejected { .. }
        )
    }
}

/// One ref's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefOutcome {
    /// The ref (`refs/wfe/runs/<id>` or `refs/wfe/trash/<id>/<n>`).
    pub name: String,
    /// Its run.
    pub run: RunId,
    /// What happened.
    pub synced: Synced,
}

impl RefOutcome {
    /// Whether the ref is a trash entry rather than a run.
    pub fn is_trash(&self) -> bool {
        self.name.starts_with(TRASH_PREFIX)
    }
}

/// Which side a run name is looked up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Local,
    Remote,
}

/// Brings the remote's runs (only those `names` select, all when empty;
/// with `trash` their trash entries too) into this repository: new runs
/// are created, runs behind the remote fast-forwarded, the rest reported.
pub fn pull(
    store: &GitStore,
    remote: &str,
    names: &[String],
    trash: bool,
    clock: &Clock,
) -> Result<Vec<RefOutcome>, EngineError> {
    let pairs = store.fetch_remote(remote, trash)?;
    let selected = select(&pairs, names, Side::Remote)?;
    let reason = format!("wfe: pull from {remote}");
    let mut out = Vec::new();
    for pair in pairs.iter().filter(|p| selected.contains(&p.run)) {
        let Some(remote_tip) = &pair.remote else {
            continue;
        };
        let relation = store.relation(pair.local.as_ref(), Some(remote_tip))?;
        let synced = match relation {
            Relation::Same => Synced::UpToDate,
            Relation::Ahead => Synced::Ahead,
            Relation::Diverged { base } => Synced::Diverged {
                local: pair.local.clone().unwrap_or_else(|| remote_tip.clone()),
                remote: remote_tip.clone(),
                base,
            },
            Relation::RemoteOnly | Relation::Behind | Relation::LocalOnly => {
                update(store, pair, remote_tip, &reason, clock)?
            }
        };
        out.push(RefOutcome {
            name: pair.name.clone(),
            run: pair.run.clone(),
            synced,
        });
    }
    Ok(out)
}

/// Moves the local ref to the remote's tip under the run's lock.
fn update(
    store: &GitStore,
    pair: &RefPair,
    to: &CheckpointId,
    reason: &str,
    clock: &Clock,
) -> Result<Synced, EngineError> {
    let lock = match store.lock(&pair.run, &clock.stamp()) {
        Ok(lock) => lock,
        Err(StoreError::Locked { holder, .. }) => return Ok(Synced::Held { holder }),
        Err(other) => return Err(other.into()),
    };
    let done = store.fast_forward(
        &pair.run,
        &pair.name,
        pair.local.as_ref(),
        to,
        reason,
        clock.epoch_seconds(),
    );
    drop(lock);
    match done {
        Ok(()) => Ok(match &pair.local {
            None => Synced::Created { tip: to.clone() },
            Some(from) => Synced::FastForwarded {
                from: from.clone(),
                to: to.clone(),
            },
        }),
        Err(StoreError::Conflict { found, .. }) => Ok(Synced::Rejected {
            reason: format!("it changed here meanwhile (now at {found})"),
        }),
        Err(other) => Err(other.into()),
    }
}

/// Sends this repository's runs (those `names` select, all when empty;
/// with `trash` their trash entries too) to the remote: new runs are
/// created there, runs ahead of it fast-forwarded, the rest reported.
pub fn push(
    store: &GitStore,
    remote: &str,
    names: &[String],
    trash: bool,
) -> Result<Vec<RefOutcome>, EngineError> {
    let pairs = store.fetch_remote(remote, trash)?;
    let selected = select(&pairs, names, Side::Local)?;
    let mut out = Vec::new();
    let mut sending: Vec<&RefPair> = Vec::new();
    for pair in pairs.iter().filter(|p| selected.contains(&p.run)) {
        let Some(local_tip) = &pair.local else {
            continue;
        };
        let synced = match store.relation(Some(local_tip), pair.remote.as_ref())? {
            Relation::Same => Synced::UpToDate,
            Relation::Behind | Relation::RemoteOnly => Synced::Behind,
            Relation::Diverged { base } => Synced::Diverged {
                local: local_tip.clone(),
                remote: pair.remote.clone().unwrap_or_else(|| local_tip.clone()),
                base,
            },
            Relation::LocalOnly | Relation::Ahead => {
                sending.push(pair);
                continue;
            }
        };
        out.push(RefOutcome {
            name: pair.name.clone(),
            run: pair.run.clone(),
            synced,
        });
    }
    let names: Vec<String> = sending.iter().map(|p| p.name.clone()).collect();
    let pushed = store.push_refs(remote, &names)?;
    for (pair, (_, status)) in sending.iter().zip(pushed) {
        let Some(local_tip) = &pair.local else {
            continue;
        };
        let synced = match status {
            PushStatus::UpToDate => Synced::UpToDate,
            PushStatus::Rejected(reason) => Synced::Rejected { reason },
            PushStatus::Pushed => match &pair.remote {
                None => Synced::Created {
                    tip: local_tip.clone(),
                },
                Some(from) => Synced::FastForwarded {
                    from: from.clone(),
                    to: local_tip.clone(),
                },
            },
        };
        out.push(RefOutcome {
            name: pair.name.clone(),
            run: pair.run.clone(),
            synced,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The runs `names` select among those `side` has (`latest`, ids or
/// unique prefixes); every run on either side when `names` is empty.
fn select(pairs: &[RefPair], names: &[String], side: Side) -> Result<Vec<RunId>, StoreError> {
    let mut known: Vec<&RunId> = pairs
        .iter()
        .filter(|p| match side {
            Side::Local => p.local.is_some(),
            Side::Remote => p.remote.is_some(),
        })
        .map(|p| &p.run)
        .collect();
    known.sort();
    known.dedup();
    if names.is_empty() {
        return Ok(known.into_iter().cloned().collect());
    }
    let mut out = Vec::new();
    for name in names {
        let lower = name.to_ascii_lowercase();
        let hits: Vec<&RunId> = if lower == "latest" {
            known.last().copied().into_iter().collect()
        } else {
            known
                .iter()
                .copied()
                .filter(|r| !lower.is_empty() && r.as_str().starts_with(&lower))
                .collect()
        };
        match hits.as_slice() {
            [one] => {
                if !out.contains(*one) {
                    out.push((*one).clone());
                }
            }
            [] => {
                return Err(StoreError::NoSuchRun {
                    run: name.to_string(),
                });
            }
            many => {
                return Err(StoreError::AmbiguousRun {
                    prefix: name.to_string(),
                    candidates: many.iter().take(5).map(|r| r.to_string()).collect(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str, local: bool, remote: bool) -> RefPair {
        let run = RunId::parse(id).expect("an id");
        RefPair {
            name: run.ref_name(),
            run,
            local: local.then(|| CheckpointId("a".repeat(40))),
            remote: remote.then(|| CheckpointId("b".repeat(40))),
        }
    }

    #[test]
    fn names_select_runs_on_their_side() {
        let a = "01kaxz00000000000000000001";
        let b = "01kaxz00000000000000000002";
        let c = "01kay000000000000000000003";
        let pairs = [
            pair(a, true, false),
            pair(b, true, true),
            pair(c, false, true),
        ];
        let ids = |v: Vec<RunId>| v.into_iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(select(&pairs, &[], Side::Local).unwrap()), [a, b]);
        assert_eq!(ids(select(&pairs, &[], Side::Remote).unwrap()), [b, c]);
        let latest = ["latest".to_string()];
        assert_eq!(ids(select(&pairs, &latest, Side::Local).unwrap()), [b]);
        assert_eq!(ids(select(&pairs, &latest, Side::Remote).unwrap()), [c]);
        assert_eq!(
            ids(select(&pairs, &["01KAY".to_string()], Side::Remote).unwrap()),
            [c]
        );
        assert!(matches!(
            select(&pairs, &["01kay".to_string()], Side::Local),
            Err(StoreError::NoSuchRun { .. })
        ));
        assert!(matches!(
            select(&pairs, &["01kaxz".to_string()], Side::Local),
            Err(StoreError::AmbiguousRun { .. })
        ));
    }
}
