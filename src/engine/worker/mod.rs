//! `wfe worker`: many machines run one workflow together through a git
//! remote, with no server but the git host.
//!
//! A worker loops: fetch the run's ref (only that ref), pick a ready
//! phase nobody holds, claim it with a checkpoint pushed by
//! compare-and-swap (exactly one of the workers racing from a tip wins),
//! run it here exactly as a local runner would (the runner's own drive
//! loop, restricted to that phase: same executors, validation, retries,
//! timeouts), and put its result onto whatever the run's tip is by then
//! ([`claim::reapply`]), again by compare-and-swap. Nothing is ever
//! forced: a worker that loses a race fetches and tries again.
//!
//! Leases: a claim lapses unless its worker renews it (a heartbeat thread
//! pushes a renewal every third of the lease). A worker that dies stops
//! renewing; another takes the phase over by compare-and-swap on the
//! lapsed claim it saw, and the phase runs again as a new attempt. A
//! worker that cannot renew in time (the remote is unreachable) stops its
//! phase before the lease ends, so a phase never runs twice at once. The
//! heartbeat also sees a run paused on request or cancelled elsewhere and
//! stops the phase then; the worker gives it back and claims nothing more
//! from the run ([`held_back`]; [`requeue`] hands a paused run back).

pub mod claim;
pub mod requeue;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use self::claim::{Claim, claim_changes, claims, ready, reapply_all, release_changes, without};
use super::executor::Executor;
use super::{
    CheckpointEvent, CheckpointMessage, EngineError, Observer, PhaseStatus, RunRecord, RunSnapshot,
    RunStatus, Settings, StopReason, drive_with, layout,
};
use crate::retry::Backoff;
use crate::store::{Change, CheckpointId, GitStore, RunId, RunStore, StoreError};

/// What a worker is asked to do.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The remote the run is shared through.
    pub remote: String,
    /// The run.
    pub run: RunId,
    /// Only this phase (none: any ready phase).
    pub phase: Option<String>,
    /// Run at most one phase, then stop.
    pub once: bool,
    /// Run at most this many phases (none: no limit).
    pub max_phases: Option<usize>,
    /// How long a claim holds unless renewed.
    pub lease: Duration,
    /// This worker's id (unique among the run's workers).
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Waits between tries of a remote that failed.
    pub backoff: Backoff,
    /// How long the remote may keep failing before the worker gives up.
    pub give_up_after: Duration,
    /// The longest wait before looking again when every ready phase is
    /// held elsewhere (waits start short and double up to it).
    pub poll: Duration,
    /// How many ready phases to claim in one push and run at once.
    pub jobs: usize,
}

impl Worker {
    /// `id@host`, as phase states record the worker.
    pub fn label(&self) -> String {
        format!("{}@{}", self.id, self.host)
    }
}

/// Why a worker stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The run ended (completed, failed, cancelled).
    RunEnded(RunStatus),
    /// The run is paused, or waits for an approval: nothing to claim until
    /// someone acts.
    RunHeld(RunStatus),
    /// `--once` or `--max-phases` reached.
    Limit,
    /// `--phase`: that phase is done (or not ready and held elsewhere, with `--once`).
    PhaseDone,
    /// Nothing was ready and `--once` was given.
    NothingReady,
    /// The worker was told to stop (a signal).
    Interrupted,
}

/// What happened to one phase this worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The phase.
    pub phase: String,
    /// Its status once its result was in the run; none when the result
    /// was given up (the claim was lost, or the run stopped under it).
    pub status: Option<PhaseStatus>,
    /// Whether it took over a lapsed claim.
    pub took_over: bool,
}

/// What a worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Every phase it claimed, in order.
    pub ran: Vec<Ran>,
    /// Why it stopped.
    pub ended: Ended,
    /// Pushes another worker's checkpoint beat.
    pub races_lost: u32,
    /// Remote operations that failed and were tried again.
    pub retries: u32,
}

/// Whether a person holds the run back from workers: paused on request
/// (`wfe pause`, or a reason this wfe cannot tell). A run paused for
/// another reason (a phase approved, skipped or fixed while no runner
/// held it, a local runner interrupted) only lacks a runner: workers take
/// it up, as `wfe resume` would.
pub fn held_back(record: &RunRecord) -> bool {
    record.status == RunStatus::Paused
        && matches!(
            record.reason,
            None | Some(StopReason::PausedOnRequest { .. } | StopReason::Legacy { .. })
        )
}

/// Milliseconds since the Unix epoch, now: leases are wall-clock times
/// shared between machines.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Waits after lost races (another worker's push moved the run first):
/// the first retry comes soon, later ones spread out (jittered, doubling),
/// so workers that lost together do not all come back at once and lose
/// again. A worker putting results in waits less than one only claiming:
/// results free the phases that need them.
const CLAIM_RACES: Backoff = Backoff {
    base: Duration::from_millis(20),
    cap: Duration::from_secs(1),
};
const RESULT_RACES: Backoff = Backoff {
    base: Duration::from_millis(10),
    cap: Duration::from_millis(250),
};

/// Why the heartbeat stopped the phase.
const HELD: u8 = 0;
const LOST: u8 = 1;
const STOPPED: u8 = 2;
const UNREACHABLE: u8 = 3;

/// Phases this worker holds by one pushed claim checkpoint.
struct Batch {
    /// The checkpoint that claimed them.
    claimed: CheckpointId,
    /// Each phase, this worker's claim on it, and whether that claim took
    /// a lapsed one over.
    phases: Vec<(String, Claim, bool)>,
}

impl Worker {
    /// How many phases to claim next, having claimed `so_far`: up to
    /// `jobs`, within `--once` and `--max-phases`.
    fn want(&self, so_far: usize) -> usize {
        let cap = if self.once {
            1
        } else {
            self.max_phases.unwrap_or(usize::MAX)
        };
        self.jobs.max(1).min(cap.saturating_sub(so_far))
    }
}

/// Up to `want` phases of `snapshot` this worker may claim now (ready,
/// nobody holds them or their holder's lease lapsed), with the claims and
/// the changes that make them; workers that saw the same tip start at
/// different places among the candidates.
fn pick(
    worker: &Worker,
    settings: &Settings,
    snapshot: &RunSnapshot,
    held: &[(String, Claim)],
    want: usize,
    picks: &mut u64,
) -> (Vec<(String, Claim, bool)>, Vec<Change>) {
    if want == 0 {
        return (Vec::new(), Vec::new());
    }
    let now = now_ms();
    let candidates: Vec<_> = ready(snapshot, held)
        .into_iter()
        .filter(|r| worker.phase.as_ref().is_none_or(|p| *p == r.phase))
        .filter(|r| r.free(now))
        .collect();
    if candidates.is_empty() {
        return (Vec::new(), Vec::new());
    }
    *picks += 1;
    let first = spread(&worker.id, *picks) % candidates.len();
    let mut chosen = Vec::new();
    let mut changes = Vec::new();
    for k in 0..want.min(candidates.len()) {
        let candidate = &candidates[(first + k) % candidates.len()];
        let lapsed = candidate.claim.clone();
        let claim = Claim {
            worker: worker.id.clone(),
            host: worker.host.clone(),
            pid: worker.pid,
            claimed_at: settings.clock.stamp(),
            expires_ms: now_ms() + millis(worker.lease),
            took_over: lapsed.as_ref().map(Claim::label),
        };
        changes.extend(claim_changes(
            snapshot,
            &candidate.phase,
            &claim,
            lapsed.as_ref(),
        ));
        chosen.push((candidate.phase.clone(), claim, lapsed.is_some()));
    }
    (chosen, changes)
}

/// How a claim checkpoint names what it claimed: `w1@h claimed a, b` (or
/// `took over a from w0@h (its claim lapsed)`).
fn claimed_line(worker: &Worker, chosen: &[(String, Claim, bool)]) -> String {
    let mut fresh = Vec::new();
    let mut parts = Vec::new();
    for (phase, claim, took) in chosen {
        match (took, &claim.took_over) {
            (true, Some(from)) => {
                parts.push(format!("took over {phase} from {from} (its claim lapsed)"));
            }
            _ => fresh.push(phase.as_str()),
        }
    }
    if !fresh.is_empty() {
        parts.insert(0, format!("claimed {}", fresh.join(", ")));
    }
    format!("{} {}", worker.label(), parts.join("; "))
}

/// Runs phases of `worker.run` until it ends or a limit is reached.
/// `settings` are the runner's, used for every phase (with
/// [`Settings::only`] and [`Settings::worker`] set here).
pub async fn work(
    store: &GitStore,
    worker: &Worker,
    settings: &Settings,
    executor: Arc<dyn Executor>,
    observer: Arc<dyn Observer>,
    interrupt: watch::Receiver<bool>,
) -> Result<Summary, EngineError> {
    let mut summary = Summary {
        ran: Vec::new(),
        ended: Ended::NothingReady,
        races_lost: 0,
        retries: 0,
    };
    let mut picks = 0u64;
    let mut next: Option<Batch> = None;
    // Nothing ready: look again soon, then less and less often.
    let first_wait = Duration::from_millis(50).min(worker.poll);
    let mut idle = first_wait;
    // Claim pushes lost in a row.
    let mut lost = 0u32;
    // The run as last read: an idle worker that fetches the same tip again
    // only looks whether a claim lapsed meanwhile, without reading every
    // phase's state again.
    let mut seen: Option<(RunSnapshot, Vec<(String, Claim)>)> = None;
    loop {
        if *interrupt.borrow() {
            if let Some(batch) = next.take() {
                for (phase, claim, _) in &batch.phases {
                    release(store, worker, phase, claim, &mut summary, &observer).await?;
                }
            }
            summary.ended = Ended::Interrupted;
            return Ok(summary);
        }
        let batch = match next.take() {
            Some(batch) => batch,
            None => {
                let tip = fetch(store, worker, &mut summary, &*observer).await?;
                let (snapshot, held) = match seen.take() {
                    Some((snapshot, held)) if snapshot.checkpoint == tip => (snapshot, held),
                    _ => {
                        store.follow_remote(&worker.run, &tip)?;
                        let snapshot = RunSnapshot::load(store, &worker.run, &tip)?;
                        let held = claims(store, &worker.run, &tip)?;
                        (snapshot, held)
                    }
                };
                let status = snapshot.record.status;
                if status.is_final() {
                    summary.ended = Ended::RunEnded(status);
                    return Ok(summary);
                }
                if held_back(&snapshot.record) || (status == RunStatus::Waiting && held.is_empty())
                {
                    summary.ended = Ended::RunHeld(status);
                    return Ok(summary);
                }
                if let Some(only) = &worker.phase {
                    let state = snapshot
                        .phase(only)
                        .ok_or_else(|| EngineError::NoSuchPhase {
                            run: worker.run.to_string(),
                            phase: only.clone(),
                            known: snapshot.phases.iter().map(|s| s.id.clone()).collect(),
                        })?;
                    if state.status != PhaseStatus::Pending {
                        summary.ended = Ended::PhaseDone;
                        return Ok(summary);
                    }
                }
                let want = worker.want(summary.ran.len());
                let (chosen, changes) = pick(worker, settings, &snapshot, &held, want, &mut picks);
                if chosen.is_empty() {
                    if worker.once {
                        summary.ended = Ended::NothingReady;
                        return Ok(summary);
                    }
                    // Every ready phase is held elsewhere (or none is ready
                    // until a running one ends): look again, backing off.
                    let mut interrupt = interrupt.clone();
                    tokio::select! {
                        () = tokio::time::sleep(idle) => {}
                        _ = interrupt.changed() => {}
                    }
                    idle = (idle * 2).min(worker.poll);
                    seen = Some((snapshot, held));
                    continue;
                }
                idle = first_wait;
                let message = CheckpointMessage::new(
                    worker.run.as_str(),
                    &snapshot.record.template,
                    claimed_line(worker, &chosen),
                )
                .event(
                    chosen.first().map(|(p, _, _)| p.as_str()),
                    CheckpointEvent::PhaseClaimed,
                )
                .status(status)
                .to_message();
                let commit = store.commit_detached(
                    &worker.run,
                    &tip,
                    &changes,
                    &message,
                    settings.clock.epoch_seconds(),
                )?;
                if !push(store, worker, &tip, &commit, &mut summary, &*observer).await? {
                    summary.races_lost += 1;
                    lost += 1;
                    race_wait(CLAIM_RACES.wait(lost), &interrupt).await;
                    continue;
                }
                lost = 0;
                Batch {
                    claimed: commit,
                    phases: chosen,
                }
            }
        };
        next = run_claimed(
            store,
            worker,
            settings,
            &executor,
            &observer,
            &interrupt,
            batch,
            &mut summary,
            &mut picks,
        )
        .await?;
        if next.is_none() && !*interrupt.borrow() && worker.want(summary.ran.len()) == 0 {
            summary.ended = Ended::Limit;
            return Ok(summary);
        }
    }
}

/// Runs the phases this worker just claimed (its claim is checkpoint
/// `batch.claimed`) together, with a heartbeat renewing their claims, and
/// brings their results into the run; the push that does so also claims
/// the next ready phases, returned as the next batch. Each phase's
/// outcome goes into `summary.ran`.
#[allow(clippy::too_many_arguments)]
async fn run_claimed(
    store: &GitStore,
    worker: &Worker,
    settings: &Settings,
    executor: &Arc<dyn Executor>,
    observer: &Arc<dyn Observer>,
    interrupt: &watch::Receiver<bool>,
    batch: Batch,
    summary: &mut Summary,
    picks: &mut u64,
) -> Result<Option<Batch>, EngineError> {
    let Batch { claimed, phases } = batch;
    store.follow_remote(&worker.run, &claimed)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let why = Arc::new(AtomicU8::new(HELD));
    // The worker's own stop reaches the phases as an interrupt does.
    let forward = {
        let stop_tx = stop_tx.clone();
        let mut interrupt = interrupt.clone();
        tokio::spawn(async move {
            if interrupt.wait_for(|stop| *stop).await.is_ok() {
                let _ = stop_tx.send(true);
            }
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let beat = {
        let store = store.reopen()?;
        let worker = worker.clone();
        let held: Vec<(String, Claim)> = phases
            .iter()
            .map(|(p, c, _)| (p.clone(), c.clone()))
            .collect();
        let stop_tx = stop_tx.clone();
        let why = why.clone();
        std::thread::spawn(move || heartbeat(&store, &worker, held, &done_rx, &stop_tx, &why))
    };
    let names: Vec<String> = phases.iter().map(|(p, _, _)| p.clone()).collect();
    let mut phase_settings = settings.clone();
    phase_settings.only = Some(names.clone());
    phase_settings.worker = Some(worker.label());
    let driven = drive_with(
        store,
        &worker.run,
        &phase_settings,
        executor.clone(),
        observer.clone(),
        stop_rx,
    )
    .await;
    forward.abort();
    // The heartbeat keeps renewing the claims until the results are in:
    // putting them in can take a while when many workers race for the
    // run's ref, and a claim that lapsed meanwhile would be run again.
    let stop_beat = move || {
        drop(done_tx);
        let _ = beat.join();
    };
    let driven = driven.and_then(|_| Ok(store.tip(&worker.run)?.unwrap_or(claimed)));
    let result = match driven {
        Ok(result) => result,
        Err(err) => {
            stop_beat();
            return Err(err);
        }
    };
    let given_up = |summary: &mut Summary, which: &[(String, Claim, bool)]| {
        for (phase, _, took_over) in which {
            summary.ran.push(Ran {
                phase: phase.clone(),
                status: None,
                took_over: *took_over,
            });
        }
    };
    let interrupted = *interrupt.borrow();
    if why.load(Ordering::SeqCst) != HELD || interrupted {
        stop_beat();
        // A claim was lost, the run stopped under the phases, the remote
        // stayed away or the worker was stopped: give back what is still
        // this worker's (release checks that).
        for (phase, claim, _) in &phases {
            release(store, worker, phase, claim, summary, observer).await?;
        }
        given_up(summary, &phases);
        return Ok(None);
    }
    // Put the results onto the run as it is now, and claim what is ready
    // next in the same push.
    let merged = put_results(
        store, worker, settings, observer, interrupt, &phases, &result, summary, picks,
    )
    .await;
    stop_beat();
    merged
}

/// Puts the results of `phases` (checkpoint `result` holds them) onto the
/// run's tip by compare-and-swap, claiming the next ready phases in the
/// same push: that next batch, if any.
#[allow(clippy::too_many_arguments)]
async fn put_results(
    store: &GitStore,
    worker: &Worker,
    settings: &Settings,
    observer: &Arc<dyn Observer>,
    interrupt: &watch::Receiver<bool>,
    phases: &[(String, Claim, bool)],
    result: &CheckpointId,
    summary: &mut Summary,
    picks: &mut u64,
) -> Result<Option<Batch>, EngineError> {
    let given_up = |summary: &mut Summary, which: &[(String, Claim, bool)]| {
        for (phase, _, took_over) in which {
            summary.ran.push(Ran {
                phase: phase.clone(),
                status: None,
                took_over: *took_over,
            });
        }
    };
    // The run's tip as this worker last saw it (its own claim push, or a
    // renewal since): when no other worker moved the run meanwhile, the
    // results go onto it with no fetch first; a push that loses says so,
    // and the next attempt fetches.
    let mut known = store.remote_tip(&worker.remote, &worker.run)?;
    let mut races = 0u32;
    loop {
        let tip = match known.take() {
            Some(tip) => tip,
            None => fetch(store, worker, summary, &**observer).await?,
        };
        let onto = RunSnapshot::load(store, &worker.run, &tip)?;
        let held = claims(store, &worker.run, &tip)?;
        let (mine, lost): (Vec<_>, Vec<_>) = phases
            .iter()
            .cloned()
            .partition(|(p, c, _)| held.iter().any(|(hp, hc)| hp == p && hc.worker == c.worker));
        if mine.is_empty() {
            // Every claim lapsed and other workers took the phases over:
            // their attempts are the ones that count.
            given_up(summary, &lost);
            return Ok(None);
        }
        let mine_names: Vec<String> = mine.iter().map(|(p, _, _)| p.clone()).collect();
        let now = settings.clock.stamp();
        let merged = reapply_all(store, &worker.run, &mine_names, result, &onto, &now)?;
        let mut changes = merged.changes;
        let new_status = merged.snapshot.record.status;
        let ran_states: Vec<(String, Option<PhaseStatus>, bool)> = mine
            .iter()
            .map(|(p, _, took)| (p.clone(), merged.snapshot.phase(p).map(|s| s.status), *took))
            .collect();
        let want = worker.want(summary.ran.len() + phases.len());
        let open = !new_status.is_final()
            && !held_back(&merged.snapshot.record)
            && new_status != RunStatus::Waiting
            && !*interrupt.borrow();
        let (chosen, claim_changes) = if open {
            let others = without(&held, &mine_names);
            pick(worker, settings, &merged.snapshot, &others, want, picks)
        } else {
            (Vec::new(), Vec::new())
        };
        changes.extend(claim_changes);
        let mut line = ran_states
            .iter()
            .map(|(p, s, _)| format!("{p} {}", s.map_or("ended", PhaseStatus::as_str)))
            .collect::<Vec<_>>()
            .join(", ");
        line.push_str(&format!(" on {}", worker.label()));
        if !chosen.is_empty() {
            line.push_str(&format!(
                "; {}",
                claimed_line(worker, &chosen)
                    .trim_start_matches(&worker.label())
                    .trim_start()
            ));
        }
        let message = CheckpointMessage::new(worker.run.as_str(), &onto.record.template, line)
            .event(
                mine_names.first().map(String::as_str),
                CheckpointEvent::PhaseMerged,
            )
            .status(new_status)
            .to_message();
        let commit = store.commit_detached(
            &worker.run,
            &tip,
            &changes,
            &message,
            settings.clock.epoch_seconds(),
        )?;
        if push(store, worker, &tip, &commit, summary, &**observer).await? {
            // With a next batch, running it follows this checkpoint.
            if chosen.is_empty() {
                store.follow_remote(&worker.run, &commit)?;
            }
            given_up(summary, &lost);
            for (phase, status, took_over) in ran_states {
                summary.ran.push(Ran {
                    phase,
                    status,
                    took_over,
                });
            }
            return Ok((!chosen.is_empty()).then_some(Batch {
                claimed: commit,
                phases: chosen,
            }));
        }
        summary.races_lost += 1;
        races += 1;
        race_wait(RESULT_RACES.wait(races), interrupt).await;
    }
}

/// Gives a claimed phase back without a result, if the claim is still
/// this worker's.
async fn release(
    store: &GitStore,
    worker: &Worker,
    phase: &str,
    claim: &Claim,
    summary: &mut Summary,
    observer: &Arc<dyn Observer>,
) -> Result<(), EngineError> {
    loop {
        let tip = fetch(store, worker, summary, &**observer).await?;
        let held = claims(store, &worker.run, &tip)?;
        if !held
            .iter()
            .any(|(p, c)| p == phase && c.worker == claim.worker)
        {
            return Ok(());
        }
        let record = read_record(store, &worker.run, &tip)?;
        let message = CheckpointMessage::new(
            worker.run.as_str(),
            &record.template,
            format!("{} gave {phase} back", worker.label()),
        )
        .event(Some(phase), CheckpointEvent::PhaseReleased)
        .status(record.status)
        .to_message();
        let commit = store.commit_detached(
            &worker.run,
            &tip,
            &release_changes(phase),
            &message,
            now_seconds(),
        )?;
        if push(store, worker, &tip, &commit, summary, &**observer).await? {
            store.follow_remote(&worker.run, &commit)?;
            return Ok(());
        }
        summary.races_lost += 1;
    }
}

/// Renews the claims every third of the lease until `done` closes; stops
/// the phases (through `stop`) when a claim is lost, the run is paused or
/// cancelled, or the remote stays unreachable until the lease nearly ends.
fn heartbeat(
    store: &GitStore,
    worker: &Worker,
    mut held: Vec<(String, Claim)>,
    done: &std::sync::mpsc::Receiver<()>,
    stop: &watch::Sender<bool>,
    why: &AtomicU8,
) {
    // Look every sixth of the lease; renew (a push that moves the run's
    // ref, which makes every other worker's push in flight lose) only once
    // the earliest claim has less than two thirds of its lease left, so a
    // batch that ends within a third of the lease never renews.
    let every = worker.lease / 6;
    let renew_below = millis(worker.lease) * 2 / 3;
    let margin = millis(worker.lease / 4);
    loop {
        match done.recv_timeout(every) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let expires = held.iter().map(|(_, c)| c.expires_ms).min().unwrap_or(0);
        if !due(now_ms(), expires, renew_below) {
            continue;
        }
        let outcome = renew(store, worker, &mut held);
        let expires = held.iter().map(|(_, c)| c.expires_ms).min().unwrap_or(0);
        let verdict = match outcome {
            Ok(Renewal::Renewed) => continue,
            Ok(Renewal::Lost) => LOST,
            Ok(Renewal::Stopped) => STOPPED,
            Err(_) if now_ms() + margin < expires => continue,
            Err(_) => UNREACHABLE,
        };
        why.store(verdict, Ordering::SeqCst);
        let _ = stop.send(true);
        return;
    }
}

enum Renewal {
    Renewed,
    Lost,
    Stopped,
}

/// One renewal of every claim in `held`, in one push: fetch, check, push
/// later expiries (trying again while other workers' checkpoints beat it).
fn renew(
    store: &GitStore,
    worker: &Worker,
    held: &mut [(String, Claim)],
) -> Result<Renewal, EngineError> {
    let names = held
        .iter()
        .map(|(p, _)| p.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for round in 0..8u32 {
        if round > 0 {
            std::thread::sleep(RESULT_RACES.wait(round));
        }
        let Some(tip) = store.fetch_run(&worker.remote, &worker.run)? else {
            return Ok(Renewal::Stopped);
        };
        let record = read_record(store, &worker.run, &tip)?;
        if record.status == RunStatus::Cancelled || held_back(&record) {
            return Ok(Renewal::Stopped);
        }
        let on_remote = claims(store, &worker.run, &tip)?;
        let all_held = held.iter().all(|(phase, claim)| {
            on_remote
                .iter()
                .any(|(p, c)| p == phase && c.worker == claim.worker)
        });
        if !all_held {
            return Ok(Renewal::Lost);
        }
        let expires_ms = now_ms() + millis(worker.lease);
        let renewed: Vec<(String, Claim)> = held
            .iter()
            .map(|(p, c)| {
                let mut c = c.clone();
                c.expires_ms = expires_ms;
                (p.clone(), c)
            })
            .collect();
        let message = CheckpointMessage::new(
            worker.run.as_str(),
            &record.template,
            format!("{} renewed its claim on {names}", worker.label()),
        )
        .event(
            held.first().map(|(p, _)| p.as_str()),
            CheckpointEvent::ClaimRenewed,
        )
        .status(record.status)
        .to_message();
        let changes: Vec<Change> = renewed
            .iter()
            .map(|(p, c)| Change::write(layout::claim(p), super::to_file_bytes(c)))
            .collect();
        let commit = store.commit_detached(&worker.run, &tip, &changes, &message, now_seconds())?;
        if store.push_run_cas(&worker.remote, &worker.run, Some(&tip), &commit)? {
            held.clone_from_slice(&renewed);
            return Ok(Renewal::Renewed);
        }
    }
    Err(StoreError::Git {
        message: format!("renewing the claims on {names}: other workers kept moving the run"),
    }
    .into())
}

/// The run's tip on the remote, trying again with backoff while the
/// remote cannot be reached.
async fn fetch(
    store: &GitStore,
    worker: &Worker,
    summary: &mut Summary,
    observer: &dyn Observer,
) -> Result<CheckpointId, EngineError> {
    let tip = retrying(worker, summary, observer, || {
        store.fetch_run(&worker.remote, &worker.run)
    })
    .await?;
    tip.ok_or_else(|| {
        StoreError::NoSuchRun {
            run: format!("{} (on remote {})", worker.run, worker.remote),
        }
        .into()
    })
}

/// Pushes `to` over `expected` by compare-and-swap, trying again with
/// backoff while the remote cannot be reached; false when another
/// worker's checkpoint got there first.
async fn push(
    store: &GitStore,
    worker: &Worker,
    expected: &CheckpointId,
    to: &CheckpointId,
    summary: &mut Summary,
    observer: &dyn Observer,
) -> Result<bool, EngineError> {
    retrying(worker, summary, observer, || {
        store.push_run_cas(&worker.remote, &worker.run, Some(expected), to)
    })
    .await
}

/// Runs `op` until it succeeds, waiting [`Worker::backoff`] between
/// failures of the remote, for at most [`Worker::give_up_after`].
async fn retrying<T>(
    worker: &Worker,
    summary: &mut Summary,
    observer: &dyn Observer,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, EngineError> {
    let started = std::time::Instant::now();
    let mut failures = 0u32;
    loop {
        match op() {
            Ok(value) => return Ok(value),
            Err(err @ StoreError::Git { .. }) => {
                if started.elapsed() >= worker.give_up_after {
                    return Err(err.into());
                }
                failures += 1;
                summary.retries += 1;
                let wait = worker.backoff.wait(failures);
                observer.event(&super::Event::RemoteRetry {
                    remote: &worker.remote,
                    message: &err.to_string(),
                    wait,
                });
                tokio::time::sleep(wait).await;
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// `run.json` at a checkpoint.
fn read_record(store: &GitStore, run: &RunId, at: &CheckpointId) -> Result<RunRecord, EngineError> {
    let corrupt = |message: String| EngineError::Corrupt {
        run: run.to_string(),
        checkpoint: at.to_string(),
        path: layout::RUN.to_string(),
        message,
    };
    let bytes = store
        .read(at, layout::RUN)?
        .ok_or_else(|| corrupt("missing".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))
}

/// Whether a claim expiring at `expires_ms` is due for renewal at
/// `now_ms`: less than `below` milliseconds of it left.
fn due(now_ms: u64, expires_ms: u64, below: u64) -> bool {
    expires_ms.saturating_sub(now_ms) < below
}

/// Waits `wait` after a lost race, or less if the worker is told to stop.
async fn race_wait(wait: Duration, interrupt: &watch::Receiver<bool>) {
    let mut interrupt = interrupt.clone();
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        _ = interrupt.changed() => {}
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_seconds() -> i64 {
    i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX)
}

/// A number that differs between workers and picks, so workers that saw
/// the same ready phases try different ones first.
fn spread(id: &str, pick: u64) -> usize {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(id.as_bytes());
    hasher.write_u64(pick);
    usize::try_from(hasher.finish() % (u32::MAX as u64)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(jobs: usize, once: bool, max_phases: Option<usize>) -> Worker {
        Worker {
            remote: "origin".into(),
            run: RunId::parse("01kaxz00000000000000000001").expect("an id"),
            phase: None,
            once,
            max_phases,
            lease: Duration::from_secs(60),
            id: "w1".into(),
            host: "h".into(),
            pid: 1,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            give_up_after: Duration::from_secs(1),
            poll: Duration::from_secs(1),
            jobs,
        }
    }

    #[test]
    fn a_worker_claims_up_to_its_jobs_within_once_and_max_phases() {
        assert_eq!(worker(1, false, None).want(10), 1);
        assert_eq!(worker(8, false, None).want(10), 8);
        assert_eq!(worker(8, false, Some(10)).want(7), 3);
        assert_eq!(worker(8, false, Some(10)).want(10), 0);
        assert_eq!(worker(8, true, None).want(0), 1);
        assert_eq!(worker(8, true, None).want(1), 0);
        assert_eq!(worker(0, false, None).want(0), 1);
    }

    #[test]
    fn only_a_pause_on_request_holds_workers_back() {
        let record = |status: RunStatus, reason: Option<StopReason>| {
            let mut r: RunRecord = serde_json::from_value(serde_json::json!({
                "id": "01kaxz00000000000000000001", "template": "t",
                "template_source": "t", "template_digest": "d", "args": {},
                "status": "pending", "auto": true, "base_commit": "c",
                "created_at": "t", "finished_at": null, "schemas": {}, "reason": null
            }))
            .expect("a record");
            r.status = status;
            r.reason = reason;
            r
        };
        let by_request = StopReason::PausedOnRequest { by: None };
        let approved = StopReason::Approved { phase: "ok".into() };
        for (status, reason, held) in [
            (RunStatus::Paused, Some(by_request.clone()), true),
            (RunStatus::Paused, None, true),
            (RunStatus::Paused, Some(approved.clone()), false),
            (RunStatus::Paused, Some(StopReason::Interrupted), false),
            (RunStatus::Running, Some(by_request), false),
            (RunStatus::Pending, None, false),
            (RunStatus::Waiting, Some(approved), false),
        ] {
            assert_eq!(
                held_back(&record(status, reason.clone())),
                held,
                "{status:?} {reason:?}"
            );
        }
    }

    #[test]
    fn a_claim_is_renewed_only_when_its_lease_runs_low() {
        // A 60 s lease renews below 40 s left.
        assert!(!due(1_000, 61_000, 40_000));
        assert!(!due(20_000, 61_000, 40_000));
        assert!(due(21_001, 61_000, 40_000));
        assert!(due(70_000, 61_000, 40_000));
    }

    #[test]
    fn lost_races_are_retried_soon_then_spread_out() {
        assert!(RESULT_RACES.wait(1) <= Duration::from_millis(10));
        assert!(CLAIM_RACES.wait(1) <= Duration::from_millis(20));
        assert!(CLAIM_RACES.wait(30) <= Duration::from_secs(1));
        assert!(CLAIM_RACES.wait(30) >= Duration::from_millis(500));
    }

    #[test]
    fn a_claim_line_names_fresh_claims_and_takeovers() {
        let w = worker(2, false, None);
        let claim = |took: Option<&str>| Claim {
            worker: "w1".into(),
            host: "h".into(),
            pid: 1,
            claimed_at: "t".into(),
            expires_ms: 1,
            took_over: took.map(String::from),
        };
        let line = claimed_line(
            &w,
            &[
                ("a".into(), claim(None), false),
                ("b".into(), claim(None), false),
                ("c".into(), claim(Some("w0@h")), true),
            ],
        );
        assert_eq!(
            line,
            "w1@h claimed a, b; took over c from w0@h (its claim lapsed)"
        );
    }
}
