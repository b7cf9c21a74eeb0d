//! `wfe push` and `wfe pull`: runs shared with a remote, fast-forward only.
//!
//! Both start by fetching the remote's runs into their mirror (see
//! [`GitStore::fetch_remote`]) so every ref's two sides can be compared:
//! a side that only adds checkpoints on top of the other moves forward, a
//! run that gained checkpoints on both sides is reported as diverged with
//! both tips and the checkpoint they share, and nothing is ever forced.
//! A pull never moves a run a live runner holds (it takes the run's lock
//! for the update); a push needs no lock, it only reads the run.
//!
//! One exception to "diverged": a push whose only checkpoints the remote
//! lacks are requests made here (`wfe pause`, `wfe cancel`, a plain
//! `wfe approve`, `wfe resume --queue`) while workers moved the run on
//! the remote. Those requests are made again on the remote's tip and
//! pushed by compare-and-swap ([`replay`]), as a worker re-applies a
//! phase's result: a person stopping a fleet should not have to win a
//! race against its heartbeats.

use crate::engine::control::Action;
use crate::engine::worker::requeue::{Requeued, requeue};
use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, PhaseState, PhaseStatus, Refusal, layout,
};
use crate::store::{
    CheckpointId, GitStore, LockHolder, PushStatus, RefPair, Relation, RunId, RunStore, StoreError,
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
    /// Push: the requests made here were made again on the remote's tip
    /// (workers moved the run meanwhile) and pushed.
    Reapplied {
        /// The remote's tip they went onto.
        onto: CheckpointId,
        /// Where the run is now, here and there.
        to: CheckpointId,
        /// What was asked, in order (`pause`, `cancel`, `approve ok`, `resume --queue`).
        requests: Vec<String>,
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
    clock: &Clock,
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
            Relation::Diverged { base } => {
                let theirs = pair.remote.clone().unwrap_or_else(|| local_tip.clone());
                let requests = match (&base, pair.name.starts_with(TRASH_PREFIX)) {
                    (Some(base), false) => requests_since(store, local_tip, base)?,
                    _ => None,
                };
                match requests {
                    Some(requests) => replay(
                        store, remote, &pair.run, local_tip, theirs, &requests, clock,
                    )?,
                    None => Synced::Diverged {
                        local: local_tip.clone(),
                        remote: theirs,
                        base,
                    },
                }
            }
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

/// A request made here that can be made again on another tip.
#[derive(Debug, Clone)]
enum Request {
    /// `wfe pause`, `wfe cancel`, `wfe approve RUN PHASE` (no artifact, no budget).
    Control(Action),
    /// `wfe resume --queue`.
    Requeue,
}

impl Request {
    fn describe(&self) -> String {
        match self {
            Request::Control(Action::Pause) => "pause".into(),
            Request::Control(Action::Cancel) => "cancel".into(),
            Request::Control(Action::Approve { phase, .. }) => format!("approve {phase}"),
            Request::Control(_) => "request".into(),
            Request::Requeue => "resume --queue".into(),
        }
    }
}

/// The most checkpoints a push looks back over for requests to make again.
const MOST_REQUESTS: usize = 16;

/// The requests the checkpoints after `base` up to `local` are, oldest
/// first, with who asked; `None` unless every one of them is a request
/// that can be made again as it was (an approval that attached an
/// artifact, raised a budget or named a loop's child cannot).
fn requests_since(
    store: &GitStore,
    local: &CheckpointId,
    base: &CheckpointId,
) -> Result<Option<Vec<(Request, String)>>, EngineError> {
    let mut out = Vec::new();
    let mut at = local.clone();
    while at != *base {
        if out.len() == MOST_REQUESTS {
            return Ok(None);
        }
        let checkpoint = store.checkpoint(&at)?;
        let message = CheckpointMessage::parse(&checkpoint.message);
        let (Some(by), [noted], Some(parent)) = (
            message.requested_by.first(),
            message.events.as_slice(),
            checkpoint.parent.clone(),
        ) else {
            return Ok(None);
        };
        let request = match (&noted.event, noted.phase.as_deref()) {
            (CheckpointEvent::PauseRequested, None) => Request::Control(Action::Pause),
            (CheckpointEvent::CancelRequested, None) => Request::Control(Action::Cancel),
            (CheckpointEvent::RunPending, None) => Request::Requeue,
            (CheckpointEvent::PhaseApproved, Some(phase))
                if !phase.contains(['@', '/']) && plain_approval(store, &at, &parent, phase)? =>
            {
                Request::Control(Action::Approve {
                    phase: phase.to_string(),
                    artifact: None,
                    budget: None,
                })
            }
            _ => return Ok(None),
        };
        out.push((request, by.clone()));
        at = parent;
    }
    out.reverse();
    Ok(Some(out))
}

/// Whether checkpoint `at` approved `phase` without attaching an artifact
/// or raising a budget: it completed, with the artifacts it had.
fn plain_approval(
    store: &GitStore,
    at: &CheckpointId,
    parent: &CheckpointId,
    phase: &str,
) -> Result<bool, EngineError> {
    let state = |id: &CheckpointId| -> Result<Option<PhaseState>, EngineError> {
        Ok(store
            .read(id, &layout::state(phase))?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    };
    Ok(match (state(parent)?, state(at)?) {
        (Some(before), Some(after)) => {
            after.status == PhaseStatus::Completed && after.artifacts == before.artifacts
        }
        _ => false,
    })
}

/// How many times a push makes its requests again when the remote keeps
/// moving under it.
const REPLAY_TRIES: u32 = 8;

/// Makes `requests` again on the remote's tip `theirs` and pushes the
/// result by compare-and-swap (fetching and making them again while
/// workers move the run); the run here then follows the remote. A
/// request the remote's run no longer allows (it completed meanwhile)
/// leaves the run here as it was and is reported as refused; one that
/// holds already there (the run is paused) is dropped.
fn replay(
    store: &GitStore,
    remote: &str,
    run: &RunId,
    local: &CheckpointId,
    mut theirs: CheckpointId,
    requests: &[(Request, String)],
    clock: &Clock,
) -> Result<Synced, EngineError> {
    let lock = match store.lock(run, &clock.stamp()) {
        Ok(lock) => lock,
        Err(StoreError::Locked { holder, .. }) => return Ok(Synced::Held { holder }),
        Err(other) => return Err(other.into()),
    };
    let asked: Vec<String> = requests.iter().map(|(r, _)| r.describe()).collect();
    let restore = |why: String| -> Result<Synced, EngineError> {
        store.follow_remote(run, local)?;
        Ok(Synced::Rejected { reason: why })
    };
    for round in 0..REPLAY_TRIES {
        if round > 0 {
            match store.fetch_run(remote, run)? {
                Some(tip) => theirs = tip,
                None => return restore(format!("the run is gone from {remote}")),
            }
        }
        store.follow_remote(run, &theirs)?;
        for (request, by) in requests {
            let done = match request {
                Request::Control(action) => {
                    match super::control_offline(store, run, action, by, clock) {
                        Ok(_)
                        | Err(EngineError::NotControllable {
                            reason: Refusal::Already(_),
                            ..
                        }) => Ok(()),
                        Err(EngineError::NotControllable { reason, .. }) => Err(reason.to_string()),
                        Err(other) => {
                            store.follow_remote(run, local)?;
                            return Err(other);
                        }
                    }
                }
                Request::Requeue => match requeue(store, run, by, clock) {
                    Ok(Requeued::Queued | Requeued::AlreadyQueued) => Ok(()),
                    Ok(Requeued::Over(status)) => Err(format!("it is {}", status.as_str())),
                    Ok(Requeued::Waiting(phases)) => {
                        Err(format!("it waits for an approval of {}", phases.join(", ")))
                    }
                    Err(other) => {
                        store.follow_remote(run, local)?;
                        return Err(other);
                    }
                },
            };
            if let Err(why) = done {
                return restore(format!(
                    "`{}` no longer applies on {remote}: {why}",
                    request.describe()
                ));
            }
        }
        let to = store.tip(run)?.unwrap_or_else(|| theirs.clone());
        if to == theirs || store.push_run_cas(remote, run, Some(&theirs), &to)? {
            drop(lock);
            return Ok(Synced::Reapplied {
                onto: theirs,
                to,
                requests: asked,
            });
        }
    }
    restore(format!(
        "workers kept moving the run on {remote} while `{}` was made again on it; push again",
        asked.join("`, `")
    ))
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
