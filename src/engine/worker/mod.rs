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
//! heartbeat also sees a run paused or cancelled elsewhere and stops the
//! phase then.

pub mod claim;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use self::claim::{Claim, claim_changes, claims, ready, reapply, release_changes};
use super::executor::Executor;
use super::{
    CheckpointEvent, CheckpointMessage, EngineError, Observer, PhaseStatus, RunRecord, RunSnapshot,
    RunStatus, Settings, drive_with, layout,
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
    /// How often to look again when every ready phase is held elsewhere.
    pub poll: Duration,
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

/// Milliseconds since the Unix epoch, now: leases are wall-clock times
/// shared between machines.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why the heartbeat stopped the phase.
const HELD: u8 = 0;
const LOST: u8 = 1;
const STOPPED: u8 = 2;
const UNREACHABLE: u8 = 3;

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
    loop {
        if *interrupt.borrow() {
            summary.ended = Ended::Interrupted;
            return Ok(summary);
        }
        let tip = fetch(store, worker, &mut summary, &*observer).await?;
        store.follow_remote(&worker.run, &tip)?;
        let snapshot = RunSnapshot::load(store, &worker.run, &tip)?;
        let status = snapshot.record.status;
        if status.is_final() {
            summary.ended = Ended::RunEnded(status);
            return Ok(summary);
        }
        let held = claims(store, &worker.run, &tip)?;
        if status == RunStatus::Paused || (status == RunStatus::Waiting && held.is_empty()) {
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
        let now = now_ms();
        let candidates: Vec<_> = ready(&snapshot, &held)
            .into_iter()
            .filter(|r| worker.phase.as_ref().is_none_or(|p| *p == r.phase))
            .filter(|r| r.free(now))
            .collect();
        if candidates.is_empty() {
            if worker.once {
                summary.ended = Ended::NothingReady;
                return Ok(summary);
            }
            // Every ready phase is held elsewhere (or none is ready until
            // a running one ends): look again soon.
            let mut interrupt = interrupt.clone();
            tokio::select! {
                () = tokio::time::sleep(worker.poll) => {}
                _ = interrupt.changed() => {}
            }
            continue;
        }
        // Workers that fetched the same tip pick different phases.
        picks += 1;
        let pick = spread(&worker.id, picks) % candidates.len();
        let chosen = &candidates[pick];
        let lapsed = chosen.claim.clone();
        let claim = Claim {
            worker: worker.id.clone(),
            host: worker.host.clone(),
            pid: worker.pid,
            claimed_at: settings.clock.stamp(),
            expires_ms: now_ms() + millis(worker.lease),
            took_over: lapsed.as_ref().map(Claim::label),
        };
        let changes = claim_changes(&snapshot, &chosen.phase, &claim, lapsed.as_ref());
        let summary_line = match &lapsed {
            Some(old) => format!(
                "{} took over {} from {} (its claim lapsed)",
                worker.label(),
                chosen.phase,
                old.label()
            ),
            None => format!("{} claimed {}", worker.label(), chosen.phase),
        };
        let message =
            CheckpointMessage::new(worker.run.as_str(), &snapshot.record.template, summary_line)
                .event(Some(&chosen.phase), CheckpointEvent::PhaseClaimed)
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
            continue;
        }
        let phase = chosen.phase.clone();
        let ran = run_claimed(
            store,
            worker,
            settings,
            &executor,
            &observer,
            &interrupt,
            &phase,
            commit,
            &claim,
            &mut summary,
        )
        .await?;
        let took_over = lapsed.is_some();
        summary.ran.push(Ran {
            phase,
            status: ran,
            took_over,
        });
        if *interrupt.borrow() {
            summary.ended = Ended::Interrupted;
            return Ok(summary);
        }
        if worker.once || worker.max_phases.is_some_and(|m| summary.ran.len() >= m) {
            summary.ended = Ended::Limit;
            return Ok(summary);
        }
    }
}

/// Runs a phase this worker just claimed (its claim is checkpoint
/// `claimed`), with a heartbeat renewing the claim, and brings its result
/// into the run. The phase's status once merged; none when the result was
/// given up.
#[allow(clippy::too_many_arguments)]
async fn run_claimed(
    store: &GitStore,
    worker: &Worker,
    settings: &Settings,
    executor: &Arc<dyn Executor>,
    observer: &Arc<dyn Observer>,
    interrupt: &watch::Receiver<bool>,
    phase: &str,
    claimed: CheckpointId,
    claim: &Claim,
    summary: &mut Summary,
) -> Result<Option<PhaseStatus>, EngineError> {
    store.follow_remote(&worker.run, &claimed)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let why = Arc::new(AtomicU8::new(HELD));
    // The worker's own stop reaches the phase as an interrupt does.
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
        let phase = phase.to_string();
        let claim = claim.clone();
        let stop_tx = stop_tx.clone();
        let why = why.clone();
        std::thread::spawn(move || {
            heartbeat(&store, &worker, &phase, claim, &done_rx, &stop_tx, &why)
        })
    };
    let mut phase_settings = settings.clone();
    phase_settings.only = Some(phase.to_string());
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
    drop(done_tx);
    let _ = beat.join();
    forward.abort();
    driven?;
    let result = store.tip(&worker.run)?.unwrap_or(claimed);
    let interrupted = *interrupt.borrow();
    match why.load(Ordering::SeqCst) {
        // Someone else holds the phase now, or the run stopped under it:
        // its claim is not this worker's to touch any more (or is released).
        LOST => return Ok(None),
        STOPPED | UNREACHABLE => {
            release(store, worker, phase, claim, summary, observer).await?;
            return Ok(None);
        }
        _ if interrupted => {
            release(store, worker, phase, claim, summary, observer).await?;
            return Ok(None);
        }
        _ => {}
    }
    // Put the result onto the run as it is now.
    loop {
        let tip = fetch(store, worker, summary, &**observer).await?;
        let onto = RunSnapshot::load(store, &worker.run, &tip)?;
        let held = claims(store, &worker.run, &tip)?;
        if !held
            .iter()
            .any(|(p, c)| p == phase && c.worker == claim.worker)
        {
            // The claim lapsed and another worker took the phase over:
            // its attempt is the one that counts.
            return Ok(None);
        }
        let now = settings.clock.stamp();
        let changes = reapply(store, &worker.run, phase, &result, &onto, &now)?;
        let state = RunSnapshot::load(store, &worker.run, &result)?
            .phase(phase)
            .map(|s| s.status);
        let new_status = changes
            .iter()
            .find_map(|c| match c {
                Change::Write { path, bytes } if path == layout::RUN => {
                    serde_json::from_slice::<RunRecord>(bytes)
                        .ok()
                        .map(|r| r.status)
                }
                _ => None,
            })
            .unwrap_or(onto.record.status);
        let message = CheckpointMessage::new(
            worker.run.as_str(),
            &onto.record.template,
            format!(
                "{} {} on {}",
                phase,
                state.map_or("ended", PhaseStatus::as_str),
                worker.label()
            ),
        )
        .event(Some(phase), CheckpointEvent::PhaseMerged)
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
            store.follow_remote(&worker.run, &commit)?;
            return Ok(state);
        }
        summary.races_lost += 1;
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

/// Renews the claim every third of the lease until `done` closes; stops
/// the phase (through `stop`) when the claim is lost, the run is paused or
/// cancelled, or the remote stays unreachable until the lease nearly ends.
fn heartbeat(
    store: &GitStore,
    worker: &Worker,
    phase: &str,
    mut claim: Claim,
    done: &std::sync::mpsc::Receiver<()>,
    stop: &watch::Sender<bool>,
    why: &AtomicU8,
) {
    let every = worker.lease / 3;
    let margin = millis(worker.lease / 4);
    loop {
        match done.recv_timeout(every) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let outcome = renew(store, worker, phase, &mut claim);
        let verdict = match outcome {
            Ok(Renewal::Renewed) => continue,
            Ok(Renewal::Lost) => LOST,
            Ok(Renewal::Stopped) => STOPPED,
            Err(_) if now_ms() + margin < claim.expires_ms => continue,
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

/// One renewal: fetch, check, push a later expiry (trying again while
/// other workers' checkpoints beat it).
fn renew(
    store: &GitStore,
    worker: &Worker,
    phase: &str,
    claim: &mut Claim,
) -> Result<Renewal, EngineError> {
    for _ in 0..8 {
        let Some(tip) = store.fetch_run(&worker.remote, &worker.run)? else {
            return Ok(Renewal::Stopped);
        };
        let record = read_record(store, &worker.run, &tip)?;
        if matches!(record.status, RunStatus::Paused | RunStatus::Cancelled) {
            return Ok(Renewal::Stopped);
        }
        let held = claims(store, &worker.run, &tip)?;
        if !held
            .iter()
            .any(|(p, c)| p == phase && c.worker == claim.worker)
        {
            return Ok(Renewal::Lost);
        }
        let mut renewed = claim.clone();
        renewed.expires_ms = now_ms() + millis(worker.lease);
        let message = CheckpointMessage::new(
            worker.run.as_str(),
            &record.template,
            format!("{} renewed its claim on {phase}", worker.label()),
        )
        .event(Some(phase), CheckpointEvent::ClaimRenewed)
        .status(record.status)
        .to_message();
        let commit = store.commit_detached(
            &worker.run,
            &tip,
            &[Change::write(
                layout::claim(phase),
                super::to_file_bytes(&renewed),
            )],
            &message,
            now_seconds(),
        )?;
        if store.push_run_cas(&worker.remote, &worker.run, Some(&tip), &commit)? {
            *claim = renewed;
            return Ok(Renewal::Renewed);
        }
    }
    Err(StoreError::Git {
        message: format!("renewing the claim on {phase}: other workers kept moving the run"),
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
