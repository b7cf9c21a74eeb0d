//! Claims and results of phases shared by workers, as checkpoint changes.
//!
//! A claim is a file in the run's tree, `claims/<phase>.json`: who holds
//! the phase and until when. Workers add, renew and remove claims with
//! checkpoints pushed by compare-and-swap, so the run's ref alone says who
//! runs what. A phase's result comes back as its whole subtree
//! (`phases/<phase>/`): phases never share files, so putting one phase's
//! subtree onto a tip that other workers moved is a mechanical merge that
//! loses none of their checkpoints ([`reapply`]).

use serde::{Deserialize, Serialize};

use crate::attempt::AttemptError;
use crate::engine::{
    EngineError, PhaseState, PhaseStatus, RunSnapshot, RunStatus, StopReason, layout, ready_phases,
    settled, to_file_bytes,
};
use crate::store::{Change, CheckpointId, RunId, RunStore};

/// `claims/<phase>.json`: a worker's hold on a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The worker's id (unique per worker process).
    pub worker: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When it claimed the phase (RFC 3339).
    pub claimed_at: String,
    /// When the claim lapses unless renewed, in milliseconds since the
    /// Unix epoch (workers' clocks are assumed roughly in step).
    pub expires_ms: u64,
    /// The worker whose lapsed claim this one took over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over: Option<String>,
}

impl Claim {
    /// Whether the claim still holds at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_ms > now_ms
    }

    /// `worker@host`, as states and listings show a worker.
    pub fn label(&self) -> String {
        format!("{}@{}", self.worker, self.host)
    }
}

/// A top-level phase that could start now, as a planner or worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyPhase {
    /// The phase's id.
    pub phase: String,
    /// The claim on it, if any (live or lapsed).
    pub claim: Option<Claim>,
}

impl ReadyPhase {
    /// Whether a worker may claim it at `now_ms`: nobody holds it, or the
    /// holder's lease lapsed.
    pub fn free(&self, now_ms: u64) -> bool {
        self.claim.as_ref().is_none_or(|c| !c.live(now_ms))
    }
}

/// Every claim in a checkpoint, by phase id. A claim file that cannot be
/// read is a corrupt run.
pub fn claims(
    store: &dyn RunStore,
    run: &RunId,
    at: &CheckpointId,
) -> Result<Vec<(String, Claim)>, EngineError> {
    let mut out = Vec::new();
    for name in store.list_files(at, layout::CLAIMS)? {
        let Some(phase) = name.strip_suffix(".json") else {
            continue;
        };
        let path = layout::claim(phase);
        let Some(bytes) = store.read(at, &path)? else {
            continue;
        };
        let claim: Claim = serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
            run: run.to_string(),
            checkpoint: at.to_string(),
            path: path.clone(),
            message: e.to_string(),
        })?;
        out.push((phase.to_string(), claim));
    }
    Ok(out)
}

/// The phases of `snapshot` that could start now, each with its claim.
pub fn ready(snapshot: &RunSnapshot, held: &[(String, Claim)]) -> Vec<ReadyPhase> {
    ready_phases(&snapshot.template, &snapshot.phases)
        .into_iter()
        .map(|i| {
            let phase = snapshot.phases[i].id.clone();
            let claim = held
                .iter()
                .find(|(p, _)| *p == phase)
                .map(|(_, c)| c.clone());
            ReadyPhase { phase, claim }
        })
        .collect()
}

/// The changes that claim `phase` for `claim`. Taking over a lapsed claim
/// counts the lost attempt: the phase's attempt number moves on and the
/// attempt records why it ended, so the rerun is a new attempt.
pub fn claim_changes(
    snapshot: &RunSnapshot,
    phase: &str,
    claim: &Claim,
    lapsed: Option<&Claim>,
) -> Vec<Change> {
    let mut changes = vec![Change::write(layout::claim(phase), to_file_bytes(claim))];
    if let (Some(lapsed), Some(state)) = (lapsed, snapshot.phase(phase)) {
        let mut state = state.clone();
        state.attempt += 1;
        let error = AttemptError::Internal {
            message: format!(
                "worker {} stopped renewing its claim; {} took the phase over",
                lapsed.label(),
                claim.label()
            ),
        };
        changes.push(Change::write(
            layout::attempt_error(phase, state.attempt),
            to_file_bytes(&error),
        ));
        state.error = Some(error);
        state.worker = Some(lapsed.label());
        changes.push(Change::write(layout::state(phase), to_file_bytes(&state)));
    }
    changes
}

/// The changes that put the result of `phase` as checkpoint `result` has
/// it onto `onto` (another worker may have moved the run meanwhile):
/// `phases/<phase>/` replaced by the result's, the claim dropped, and the
/// run's status brought up to date: `running` once a phase ran, and
/// `completed` (or `failed`) when this was the last phase to end.
pub fn reapply(
    store: &dyn RunStore,
    run: &RunId,
    phase: &str,
    result: &CheckpointId,
    onto: &RunSnapshot,
    now: &str,
) -> Result<Vec<Change>, EngineError> {
    Ok(reapply_all(store, run, &[phase.to_string()], result, onto, now)?.changes)
}

/// The results of several phases put onto a tip at once ([`reapply_all`]):
/// the changes, and the run as it is with them in.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The changes to commit onto the tip.
    pub changes: Vec<Change>,
    /// `onto` with the results in: every phase's state and the run's record.
    pub snapshot: RunSnapshot,
}

/// [`reapply`] for every phase of `phases` (all of whose results
/// checkpoint `result` holds), in one set of changes.
pub fn reapply_all(
    store: &dyn RunStore,
    run: &RunId,
    phases: &[String],
    result: &CheckpointId,
    onto: &RunSnapshot,
    now: &str,
) -> Result<Merged, EngineError> {
    let mut changes = Vec::new();
    let mut merged = onto.clone();
    for phase in phases {
        let dir = layout::phase_dir(phase);
        changes.push(Change::Remove { path: dir.clone() });
        for file in store.list_files(result, &dir)? {
            let path = format!("{dir}/{file}");
            if let Some(bytes) = store.read(result, &path)? {
                changes.push(Change::write(path, bytes));
            }
        }
        changes.push(Change::Remove {
            path: layout::claim(phase),
        });
        let state: PhaseState = match store.read(result, &layout::state(phase))? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
                run: run.to_string(),
                checkpoint: result.to_string(),
                path: layout::state(phase),
                message: e.to_string(),
            })?,
            None => {
                return Err(EngineError::NoSuchPhase {
                    run: run.to_string(),
                    phase: phase.to_string(),
                    known: onto.phases.iter().map(|s| s.id.clone()).collect(),
                });
            }
        };
        if let Some(slot) = merged.phases.iter_mut().find(|s| s.id == *phase) {
            *slot = state;
        }
        // A loop's children came with its subtree; the merged view of them
        // is not needed to settle the run.
    }
    let states = &merged.phases;
    let record = &mut merged.record;
    let before = (record.status, record.reason.clone());
    // A run paused on request stays paused (the result is kept); one
    // paused for another reason (approved while no runner held it) only
    // lacked a runner, and goes on with this result.
    if !record.status.is_final() && !super::held_back(record) {
        match settled(&onto.template, states) {
            Some((status, reason)) => {
                record.status = status;
                record.reason = reason;
                record.finished_at = Some(now.to_string());
            }
            None if states.iter().any(|s| s.status != PhaseStatus::Pending) => {
                let waiting: Vec<String> = states
                    .iter()
                    .filter(|s| s.status == PhaseStatus::Waiting)
                    .map(|s| s.id.clone())
                    .collect();
                if !waiting.is_empty() && ready_phases(&onto.template, states).is_empty() {
                    // Nothing a worker can start: the run waits for a
                    // person, and says for whom (`wfe approve` hints).
                    record.status = RunStatus::Waiting;
                    record.reason = Some(StopReason::WaitingForApproval { phases: waiting });
                } else {
                    record.status = RunStatus::Running;
                    record.reason = None;
                }
            }
            None => {}
        }
    }
    if (record.status, record.reason.clone()) != before {
        changes.push(Change::write(layout::RUN, to_file_bytes(&*record)));
    }
    Ok(Merged {
        changes,
        snapshot: merged,
    })
}

/// The changes that give `phase` back without a result (the worker was
/// stopped, or the run paused or cancelled under it): its claim goes.
pub fn release_changes(phase: &str) -> Vec<Change> {
    vec![Change::Remove {
        path: layout::claim(phase),
    }]
}

/// The claims in `held` without those on `gone` (results just put in).
pub fn without(held: &[(String, Claim)], gone: &[String]) -> Vec<(String, Claim)> {
    held.iter()
        .filter(|(p, _)| !gone.contains(p))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RunRecord, Transition};
    use crate::store::{MemoryStore, Message};
    use crate::template::PhaseKind;

    const NOW: &str = "2026-01-02T03:04:05Z";

    fn state(id: &str, status: PhaseStatus) -> Vec<u8> {
        let mut s = PhaseState::pending(id, PhaseKind::Script);
        if status != PhaseStatus::Pending {
            s.apply(Transition::Start, NOW).expect("start");
            s.apply(Transition::Complete, NOW).expect("complete");
        }
        to_file_bytes(&s)
    }

    /// A run of two independent phases `a` and `b`, both pending, with
    /// `a` claimed; returns the store, run and first checkpoint.
    fn run() -> (MemoryStore, RunId, CheckpointId) {
        let store = MemoryStore::new();
        let id = RunId::parse("01kaxz00000000000000000001").expect("an id");
        let template = serde_json::json!({ "name": "t", "phases": [
            { "id": "a", "kind": "script", "run": "true" },
            { "id": "b", "kind": "script", "run": "true" }
        ]});
        let record: RunRecord = serde_json::from_value(serde_json::json!({
            "id": id.as_str(), "template": "t", "template_source": "t", "template_digest": "d",
            "args": {}, "status": "pending", "auto": true, "base_commit": "c",
            "created_at": NOW, "finished_at": null, "schemas": {}, "reason": null
        }))
        .expect("a record");
        let changes = vec![
            Change::write(layout::RUN, to_file_bytes(&record)),
            Change::write(layout::TEMPLATE, to_file_bytes(&template)),
            Change::write(layout::state("a"), state("a", PhaseStatus::Pending)),
            Change::write(layout::state("b"), state("b", PhaseStatus::Pending)),
            Change::write(layout::claim("a"), b"{}".to_vec()),
        ];
        let first = store
            .commit(&id, None, &changes, &Message::new("created"), 0)
            .expect("created");
        (store, id, first)
    }

    #[test]
    fn a_result_reapplied_onto_a_moved_tip_keeps_the_other_workers_checkpoints() {
        let (store, id, claimed) = run();
        // This worker ran `a` (its result has a log and an artifact)...
        let result = store
            .commit(
                &id,
                Some(&claimed),
                &[
                    Change::write(layout::state("a"), state("a", PhaseStatus::Completed)),
                    Change::write(layout::log("a"), b"{\"line\":\"hi\"}\n".to_vec()),
                    Change::write(layout::artifact("a", "out"), b"{}".to_vec()),
                ],
                &Message::new("a ran"),
                0,
            )
            .expect("result");
        // ...while another worker's result for `b` landed on the remote.
        let theirs = store
            .commit(
                &id,
                Some(&result),
                &[Change::write(
                    layout::state("b"),
                    state("b", PhaseStatus::Completed),
                )],
                &Message::new("b ran"),
                0,
            )
            .expect("theirs");
        // Re-applied onto a tip with `b` done but without `a`'s result:
        // build that tip from the claim checkpoint plus `b` only.
        let onto_id = store
            .commit(
                &id,
                Some(&theirs),
                &[
                    Change::Remove {
                        path: layout::phase_dir("a"),
                    },
                    Change::write(layout::state("a"), state("a", PhaseStatus::Pending)),
                ],
                &Message::new("tip without a"),
                0,
            )
            .expect("onto");
        let onto = RunSnapshot::load(&store, &id, &onto_id).expect("onto");
        assert_eq!(
            onto.phase("b").map(|s| s.status),
            Some(PhaseStatus::Completed)
        );
        let changes = reapply(&store, &id, "a", &result, &onto, NOW).expect("reapply");
        let merged = store
            .commit(&id, Some(&onto_id), &changes, &Message::new("merged"), 0)
            .expect("merged");
        let snap = RunSnapshot::load(&store, &id, &merged).expect("merged");
        // Both results are there, the claim is gone, the run is complete.
        assert_eq!(
            snap.phase("a").map(|s| s.status),
            Some(PhaseStatus::Completed)
        );
        assert_eq!(
            snap.phase("b").map(|s| s.status),
            Some(PhaseStatus::Completed)
        );
        assert!(
            store
                .read(&merged, &layout::log("a"))
                .expect("read")
                .is_some()
        );
        assert!(
            store
                .read(&merged, &layout::artifact("a", "out"))
                .expect("read")
                .is_some()
        );
        assert!(
            store
                .read(&merged, &layout::claim("a"))
                .expect("read")
                .is_none()
        );
        assert_eq!(snap.record.status, RunStatus::Completed);
        assert!(snap.record.finished_at.is_some());
    }

    #[test]
    fn a_result_with_phases_left_marks_the_run_running_and_drops_stale_files() {
        let (store, id, claimed) = run();
        // A file of an earlier attempt on the tip that the result no longer has.
        let onto_id = store
            .commit(
                &id,
                Some(&claimed),
                &[Change::write(layout::attempt_error("a", 1), b"{}".to_vec())],
                &Message::new("stale"),
                0,
            )
            .expect("stale");
        let result = store
            .commit(
                &id,
                Some(&onto_id),
                &[
                    Change::Remove {
                        path: layout::attempt("a", 1),
                    },
                    Change::write(layout::state("a"), state("a", PhaseStatus::Completed)),
                ],
                &Message::new("a ran"),
                0,
            )
            .expect("result");
        let onto = RunSnapshot::load(&store, &id, &onto_id).expect("onto");
        let changes = reapply(&store, &id, "a", &result, &onto, NOW).expect("reapply");
        let record = changes.iter().find_map(|c| match c {
            Change::Write { path, bytes } if path == layout::RUN => {
                serde_json::from_slice::<RunRecord>(bytes).ok()
            }
            _ => None,
        });
        assert_eq!(record.map(|r| r.status), Some(RunStatus::Running));
        assert!(changes.contains(&Change::Remove {
            path: layout::phase_dir("a")
        }));
        assert!(
            !changes
                .iter()
                .any(|c| matches!(c, Change::Write { path, .. } if path.contains("attempts")))
        );
    }

    #[test]
    fn two_results_reapplied_at_once_complete_the_run_and_drop_both_claims() {
        let (store, id, claimed) = run();
        let both = store
            .commit(
                &id,
                Some(&claimed),
                &[
                    Change::write(layout::claim("b"), b"{}".to_vec()),
                    Change::write(layout::state("a"), state("a", PhaseStatus::Completed)),
                    Change::write(layout::state("b"), state("b", PhaseStatus::Completed)),
                    Change::write(layout::log("b"), b"{\"line\":\"b\"}\n".to_vec()),
                ],
                &Message::new("a and b ran"),
                0,
            )
            .expect("result");
        let onto = RunSnapshot::load(&store, &id, &claimed).expect("onto");
        let merged = reapply_all(&store, &id, &["a".into(), "b".into()], &both, &onto, NOW)
            .expect("reapply");
        assert_eq!(merged.snapshot.record.status, RunStatus::Completed);
        for phase in ["a", "b"] {
            assert!(merged.changes.contains(&Change::Remove {
                path: layout::claim(phase)
            }));
            assert_eq!(
                merged.snapshot.phase(phase).map(|s| s.status),
                Some(PhaseStatus::Completed)
            );
        }
        assert!(
            merged
                .changes
                .iter()
                .any(|c| matches!(c, Change::Write { path, .. } if *path == layout::log("b")))
        );
        // One of the two alone leaves the run running.
        let one = reapply_all(&store, &id, &["a".into()], &both, &onto, NOW).expect("one");
        assert_eq!(one.snapshot.record.status, RunStatus::Running);
        let held = vec![(
            "a".to_string(),
            Claim {
                worker: "w".into(),
                host: "h".into(),
                pid: 1,
                claimed_at: NOW.into(),
                expires_ms: 1,
                took_over: None,
            },
        )];
        assert!(without(&held, &["a".into()]).is_empty());
        assert_eq!(without(&held, &["b".into()]).len(), 1);
    }

    #[test]
    fn a_result_goes_on_from_an_approval_but_not_through_a_pause_on_request() {
        let (store, id, claimed) = run();
        let result = store
            .commit(
                &id,
                Some(&claimed),
                &[Change::write(
                    layout::state("a"),
                    state("a", PhaseStatus::Completed),
                )],
                &Message::new("a ran"),
                0,
            )
            .expect("result");
        for (reason, after) in [
            (StopReason::PausedOnRequest { by: None }, RunStatus::Paused),
            (
                StopReason::Approved { phase: "g".into() },
                RunStatus::Running,
            ),
        ] {
            let mut onto = RunSnapshot::load(&store, &id, &claimed).expect("onto");
            onto.record.status = RunStatus::Paused;
            onto.record.reason = Some(reason.clone());
            let merged =
                reapply_all(&store, &id, &["a".into()], &result, &onto, NOW).expect("reapply");
            assert_eq!(merged.snapshot.record.status, after, "{reason:?}");
            // The result is in either way.
            assert_eq!(
                merged.snapshot.phase("a").map(|s| s.status),
                Some(PhaseStatus::Completed)
            );
        }
    }

    #[test]
    fn a_claim_lapses_at_its_expiry_and_taking_it_over_counts_the_lost_attempt() {
        let claim = Claim {
            worker: "w1".into(),
            host: "h".into(),
            pid: 7,
            claimed_at: NOW.into(),
            expires_ms: 1_000,
            took_over: None,
        };
        assert!(claim.live(999));
        assert!(!claim.live(1_000));
        let (store, id, tip) = run();
        let snap = RunSnapshot::load(&store, &id, &tip).expect("snap");
        let mine = Claim {
            worker: "w2".into(),
            took_over: Some(claim.label()),
            ..claim.clone()
        };
        let changes = claim_changes(&snap, "a", &mine, Some(&claim));
        let state = changes.iter().find_map(|c| match c {
            Change::Write { path, bytes } if *path == layout::state("a") => {
                serde_json::from_slice::<PhaseState>(bytes).ok()
            }
            _ => None,
        });
        let state = state.expect("the state moves on");
        assert_eq!(state.attempt, 1);
        assert_eq!(state.status, PhaseStatus::Pending);
        assert!(changes.iter().any(
            |c| matches!(c, Change::Write { path, .. } if *path == layout::attempt_error("a", 1))
        ));
        assert_eq!(claim_changes(&snap, "a", &mine, None).len(), 1);
    }
}
