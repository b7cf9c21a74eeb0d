//! Driving a run from its tip to the end (or a stop).
//!
//! The runner owns the run's in-memory state and is the only writer of its
//! ref. It alternates between scheduling (start every ready phase, up to
//! `jobs`), committing what changed as one checkpoint, and waiting for
//! phase tasks to report. Starting phases is committed before their
//! processes spawn, so a checkpoint never lags behind a side effect it
//! could have recorded.
//!
//! What it schedules are [`Unit`]s: top-level phases, and the child phases
//! of running loops (a loop inside a loop too) in their current iteration. Both go through the same
//! steps (ready, `if`, prepare, start, report, finish), so retries,
//! timeouts, outputs and control requests work the same inside a loop;
//! what only loops have (iterations, `until`, their end) is in
//! [`iteration`].
//!
//! This file holds the runner's state and its drive loop; the steps live
//! beside it, one concept per file: [`create`](mod@create) (a run's first checkpoint),
//! [`schedule`] (what may start), [`launch`] (resolving and running a
//! phase's attempts), [`finish`] (recording what an attempt did, and the
//! run's end), [`requests`] (control requests from other processes),
//! [`checkpoint`] (folding transitions into one commit), [`agent`] and
//! [`iteration`].

mod agent;
mod checkpoint;
mod create;
mod finish;
mod iteration;
mod launch;
mod requests;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use self::agent::AgentFiles;
use self::checkpoint::Pending;
use self::iteration::LoopState;
use self::launch::{Report, phase_task};
use super::control::{self, ControlDir, Reply};
use super::executor::{Executor, System};
use super::snapshot::RunSnapshot;
use super::{
    Dag, EngineError, Event, Observer, PhaseState, PhaseStatus, RunRecord, RunStatus, Seats,
    StopReason, Transition, layout,
};
use crate::artifact::Schema;
use crate::attempt::ArtifactProblem;
use crate::process::{Group, end_leftover, find_tagged};
use crate::secret::Masker;
use crate::store::{CheckpointId, ProcessRecord, ProcessRegistry, RunId, RunStore};
use crate::template::{OnFailure, Phase, PhaseKind, Template};
use crate::time::Clock;

pub use self::create::{NewRun, create, ensure_runnable};
pub use self::launch::DEFAULT_KILL_GRACE;
pub use self::launch::longest_kill_grace;

/// How a runner works: resolved by the CLI, the same for every phase.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Phases running at once, at most.
    pub jobs: usize,
    /// The clock for timestamps.
    pub clock: Clock,
    /// The repository's work tree: scripts run here unless `cwd` says otherwise.
    pub work_dir: PathBuf,
    /// Scratch space for attempts (`<git-dir>/wfe/work`).
    pub scratch: PathBuf,
    /// Largest accepted artifact file, in bytes.
    pub max_artifact_bytes: u64,
    /// Bytes of output a script attempt's committed log keeps.
    pub max_log_bytes: u64,
    /// Default cap of one phase's file artifacts together, in bytes.
    pub max_files_bytes: u64,
    /// Where requests from other processes arrive (none: not listening).
    pub control: Option<ControlDir>,
    /// When only approvals (or `wfe continue`) could move the run on: keep
    /// waiting for them (true) or stop with status `waiting` (false).
    pub wait: bool,
    /// Who plays agent phases (none: agent phases fail with a config error).
    pub seats: Option<Arc<dyn Seats>>,
    /// Where script attempts record their process groups, and where the
    /// groups a dead runner left are found (none: not recorded).
    pub processes: Option<ProcessRegistry>,
    /// Secret values, masked in every checkpoint, log line and event.
    pub masker: Masker,
    /// Provider key variables no phase inherits unless it names them in `pass_env`.
    pub provider_key_vars: Vec<String>,
    /// The values of the run's secret args (committed masked in
    /// `run.json`), which phases are rendered with.
    pub secret_args: serde_json::Map<String, serde_json::Value>,
    /// Where isolated phases get their worktrees (none: isolation is not
    /// available, e.g. in a bare repository or the unit tests' store).
    pub worktrees: Option<crate::store::Worktrees>,
    /// When the runner must have stopped by (none: no limit): at this
    /// instant running phases are interrupted as by Ctrl-C and the run is
    /// paused with reason `deadline`, resumable elsewhere.
    pub deadline: Option<std::time::Instant>,
    /// Where running attempts publish their output live
    /// (`<git-dir>/wfe/live`; none: not published).
    pub live: Option<PathBuf>,
    /// A worker's phases (`wfe worker`): only these top-level phases (and,
    /// for a loop, its children) start or are recovered; the others belong
    /// to other workers. None: the whole run.
    pub only: Option<Vec<String>>,
    /// Who runs the phases (`wfe worker`'s id), recorded in each phase's
    /// state as it starts. None: a local runner, recorded as nobody.
    pub worker: Option<String>,
    /// During a burst of short phases, at most one checkpoint per this
    /// long: transitions that come sooner after the last checkpoint wait
    /// for it and are folded into one commit (zero: one per transition).
    pub checkpoint_interval: Duration,
}

/// [`Settings::checkpoint_interval`] unless the config says otherwise:
/// a no-op phase takes about a millisecond, a checkpoint about as long,
/// so folding a burst's transitions roughly halves its time, while a
/// runner killed in the window loses at most this long of work.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);

/// Why the runner stops before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `wfe pause`: start nothing new; running phases finish.
    Pause,
    /// Ctrl-C, SIGTERM or SIGHUP: stop running phases (SIGTERM, their
    /// `kill_grace`, SIGKILL); they go back to pending.
    Interrupt,
    /// `wfe cancel`: kill running phases; the run ends cancelled.
    Cancel,
    /// [`Settings::deadline`] came: stop running phases as an interrupt
    /// does; the run is paused with reason `deadline`.
    Deadline,
}

impl Stop {
    /// Whether running phases are stopped and go back to pending.
    fn interrupts(self) -> bool {
        matches!(self, Stop::Interrupt | Stop::Deadline)
    }
}

/// What a failure of `phase` does to what holds it: the run for a
/// top-level phase, its loop for a loop's child.
fn on_failure(template: &Template, phase: &Phase) -> OnFailure {
    phase
        .on_failure
        .or(template.defaults.on_failure)
        .unwrap_or(OnFailure::Stop)
}

/// The top-level phases whose failure stops the run (`on_failure: stop`).
fn blocking_failures<'s>(
    template: &'s Template,
    states: &'s [PhaseState],
) -> impl Iterator<Item = &'s PhaseState> {
    template
        .phases
        .iter()
        .zip(states)
        .filter(|(p, s)| s.status.is_failure() && on_failure(template, p) == OnFailure::Stop)
        .map(|(_, s)| s)
}

/// The top-level phases that could start now, by index: pending, every
/// need satisfied (completed, skipped, or failed with `on_failure:
/// continue`); none once a failure stops the run. What a worker may claim.
pub fn ready_phases(template: &Template, states: &[PhaseState]) -> Vec<usize> {
    if blocking_failures(template, states).next().is_some() {
        return Vec::new();
    }
    let satisfied = |n: usize| {
        let status = states[n].status;
        matches!(status, PhaseStatus::Completed | PhaseStatus::Skipped)
            || (status.is_failure()
                && on_failure(template, &template.phases[n]) == OnFailure::Continue)
    };
    Dag::new(&template.phases).ready(|i| states[i].status == PhaseStatus::Pending, satisfied)
}

/// How a run shared by workers ends once its phases say so: failed when a
/// phase failed that stops it, completed when every phase ended; none
/// while phases are still to run.
pub fn settled(
    template: &Template,
    states: &[PhaseState],
) -> Option<(RunStatus, Option<StopReason>)> {
    let failed: Vec<String> = blocking_failures(template, states)
        .filter(|s| s.status != PhaseStatus::Cancelled)
        .map(|s| s.id.clone())
        .collect();
    let running = states.iter().any(|s| s.status == PhaseStatus::Running);
    if !failed.is_empty() && !running {
        return Some((
            RunStatus::Failed,
            Some(StopReason::PhasesFailed { phases: failed }),
        ));
    }
    states
        .iter()
        .all(|s| s.status.is_final())
        .then_some((RunStatus::Completed, None))
}

/// Whether resuming would do anything: not for a completed or cancelled
/// run, nor for a failed one whose failed phases still stand.
pub fn resumable(snapshot: &RunSnapshot) -> bool {
    match snapshot.record.status {
        RunStatus::Completed | RunStatus::Cancelled => false,
        RunStatus::Failed => blocking_failures(&snapshot.template, &snapshot.phases)
            .next()
            .is_none(),
        _ => true,
    }
}

/// Drives a run from its tip until it completes, fails, or is interrupted
/// (`interrupt` turning true: running phases are killed and go back to
/// pending, the run is paused). Phases that were running when an earlier
/// runner died start a new attempt; completed phases never run again; a
/// loop goes on in the iteration it was in.
pub async fn drive(
    store: &dyn RunStore,
    run: &RunId,
    settings: &Settings,
    observer: Arc<dyn Observer>,
    interrupt: watch::Receiver<bool>,
) -> Result<RunStatus, EngineError> {
    let executor: Arc<dyn Executor> = Arc::new(System);
    drive_with(store, run, settings, executor, observer, interrupt).await
}

/// [`drive`], running attempts through `executor`.
pub async fn drive_with(
    store: &dyn RunStore,
    run: &RunId,
    settings: &Settings,
    executor: Arc<dyn Executor>,
    observer: Arc<dyn Observer>,
    mut interrupt: watch::Receiver<bool>,
) -> Result<RunStatus, EngineError> {
    let mut runner = Runner::load(store, run, settings, observer.clone())?;
    // Whatever a dead runner left running goes before anything new starts,
    // even when the run has nothing left to do.
    if let Some(processes) = &settings.processes {
        let grace = runner
            .template
            .defaults
            .kill_grace
            .map_or(DEFAULT_KILL_GRACE, |d| d.0);
        end_leftovers(run, processes, grace, &*observer).await?;
    }
    // Then the worktrees its isolated attempts worked in (their processes
    // are gone now, so nothing writes there any more).
    if let Some(worktrees) = &settings.worktrees {
        let names = worktrees
            .sweep(run.as_str())
            .map_err(|e| EngineError::Worktrees {
                run: run.to_string(),
                message: e.to_string(),
            })?;
        if !names.is_empty() {
            observer.event(&Event::WorktreesRemoved { names: &names });
        }
    }
    // A failed run goes on only once its failure is dealt with (e.g. an
    // invalid output accepted by hand); until then resuming changes nothing.
    if matches!(
        runner.record.status,
        RunStatus::Completed | RunStatus::Cancelled
    ) || (runner.record.status == RunStatus::Failed && runner.must_stop())
    {
        return Ok(runner.record.status);
    }
    // Live files a dead runner left are stale: the checkpoint has the truth.
    if let Some(live) = &settings.live {
        super::live::remove_run(live, run.as_str());
    }
    runner.recover_interrupted();
    runner.set_status(RunStatus::Running, None);
    let (phases, done) = runner.progress();
    observer.event(&Event::RunStarted {
        run: run.as_str(),
        template: &runner.record.template,
        phases,
        done,
    });

    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut control_watch = settings.control.as_ref().map(ControlDir::watch);
    let mut running = 0usize;
    let mut stop: Option<Stop> = None;
    // Fail fast: the running phases were told to stop because a phase
    // failed that stops the run.
    let mut failing_fast = false;
    // Whether the control directory may hold a request not yet handled:
    // it is listed (an open, a stat, two reads) only then, not on every
    // turn of the loop, i.e. not once or twice per phase. Requests that
    // came before the watch started are found by the first listing; any
    // later one wakes the watch (or its poller, where the directory
    // cannot be watched), which sets this again.
    let mut control_changed = true;
    loop {
        if let Some(control) = &settings.control
            && std::mem::take(&mut control_changed)
        {
            let requests = control.pending();
            if !requests.is_empty() {
                let replies: Vec<(String, Reply)> = requests
                    .into_iter()
                    .map(|r| (r.id.clone(), runner.handle(r, &mut stop, &cancel_tx)))
                    .collect();
                runner.flush()?;
                for (id, reply) in replies {
                    control.reply(&id, &reply);
                }
            }
        }
        // Iterations end (and loops with them) whether or not anything may
        // start now: a paused run still records that a loop moved on.
        runner.settle_loops();
        let launches = if stop.is_some() || runner.must_stop() {
            Vec::new()
        } else {
            runner.schedule(running)
        };
        if running == 0 && launches.is_empty() {
            let waiting = stop.is_none() && !runner.must_stop() && runner.waiting().is_some();
            if !(waiting && settings.wait) {
                // The run's end folds into the checkpoint of its last transitions.
                break;
            }
            let reason = runner.waiting();
            runner.set_status(RunStatus::Waiting, reason);
        } else if runner.record.status == RunStatus::Waiting {
            runner.set_status(RunStatus::Running, None);
        }
        // In a burst, what just happened waits (at most the interval) to
        // be folded with what comes next; the phases start meanwhile.
        if runner.commit_due().is_none_or(|due| Instant::now() >= due) {
            runner.flush()?;
        }
        for launch in launches {
            running += 1;
            let cancel = runner.cancel_for(launch.unit, &cancel_rx);
            let live = runner.live_target(launch.unit);
            tokio::spawn(phase_task(
                launch,
                live,
                executor.clone(),
                cancel,
                observer.clone(),
                settings.clock,
                tx.clone(),
            ));
        }
        // A phase failed that stops the run: nothing new starts, and (fail
        // fast, the default) the phases still running are stopped the way
        // `wfe cancel` stops them, so the run ends now rather than when its
        // slowest sibling does. They end cancelled, not failed.
        if !failing_fast && running > 0 && runner.fails_fast() && runner.must_stop() {
            failing_fast = true;
            let _ = cancel_tx.send(true);
        }
        let killing = matches!(stop, Some(Stop::Interrupt | Stop::Cancel | Stop::Deadline));
        tokio::select! {
            report = rx.recv() => {
                // Every task holds a sender and the runner keeps one, so the channel cannot close here.
                let Some(report) = report else { break };
                let interrupting = stop.is_some_and(Stop::interrupts);
                running -= usize::from(runner.apply(report, interrupting));
                while let Ok(report) = rx.try_recv() {
                    running -= usize::from(runner.apply(report, interrupting));
                }
                if runner.provider_pause.is_some() && stop.is_none() {
                    stop = Some(Stop::Pause);
                }
            }
            changed = interrupt.changed(), if !killing => {
                if changed.is_err() || *interrupt.borrow() {
                    stop = Some(Stop::Interrupt);
                    let _ = cancel_tx.send(true);
                }
            }
            () = next_request(&mut control_watch) => control_changed = true,
            () = until(settings.deadline), if !killing => {
                stop = Some(Stop::Deadline);
                let _ = cancel_tx.send(true);
            }
            // Folded transitions never wait longer than the interval.
            () = until(runner.commit_due()) => {}
        }
    }
    let status = runner.finish(stop);
    runner.flush()?;
    let _ = std::fs::remove_dir_all(settings.scratch.join(run.as_str()));
    if let Some(live) = &settings.live {
        super::live::remove_run(live, run.as_str());
    }
    // Stop watching, then remove the (empty) control directory: a finished
    // run leaves none behind. A request that came too late keeps it until
    // its sender takes the request back and acts alone (and tidies).
    drop(control_watch);
    if let Some(control) = &settings.control {
        control.tidy_when_answered().await;
    }
    if let Some(processes) = &settings.processes {
        processes.tidy();
    }
    // A worker's runner ends with its phases, not with the run: the
    // worker reports what it did itself.
    if settings.only.is_none() {
        observer.event(&Event::RunFinished {
            status,
            run: run.as_str(),
            reason: runner.record.reason.as_ref(),
        });
    }
    Ok(status)
}

/// Ends the process groups that attempts of an earlier runner of `run`
/// recorded in `processes` and never removed (the runner died: kill -9,
/// OOM, power loss), each gracefully with its phase's grace, and says so
/// ([`Event::LeftoversEnded`]); then the processes no record names but
/// whose environment says they belong to the run, with `grace`. The caller must hold the run's lock, so no
/// live runner owns them.
pub async fn end_leftovers(
    run: &RunId,
    processes: &ProcessRegistry,
    grace: Duration,
    observer: &dyn Observer,
) -> Result<(), EngineError> {
    let failed = |record: &ProcessRecord, message: String| EngineError::Leftovers {
        run: run.to_string(),
        phase: record.phase.clone(),
        attempt: record.attempt,
        pgid: record.pgid,
        message,
    };
    let leftovers = processes.leftovers().map_err(|e| EngineError::Leftovers {
        run: run.to_string(),
        phase: String::new(),
        attempt: 0,
        pgid: 0,
        message: format!("cannot read the attempt registry: {e}"),
    })?;
    for (registered, record) in leftovers {
        let group = Group {
            pgid: record.pgid,
            start_time: record.start_time,
        };
        let count = end_leftover(group, record.grace())
            .await
            .map_err(|e| failed(&record, e.to_string()))?;
        if count > 0 {
            observer.event(&Event::LeftoversEnded {
                phase: &record.phase,
                attempt: record.attempt,
                count,
            });
        }
        processes
            .remove(&registered)
            .map_err(|e| failed(&record, format!("cannot remove its record: {e}")))?;
    }
    // What no record names: a child spawned an instant before its runner
    // died and could record it, or one that left its group (`setsid`).
    // Every phase process carries the registry's tag (scripts set it, agent
    // tools and CLI agents get it through the attempt recorder).
    let (var, value) = processes.tag();
    for tagged in find_tagged(var, &value) {
        let var = |name: &str| {
            tagged
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        // Another live driver's phase (a second worker of the run in this
        // clone) is not a leftover; its own guardian ends it with it.
        if var(ProcessRegistry::DRIVER_VAR).is_some_and(|t| crate::process::token_alive(&t)) {
            continue;
        }
        let phase = var("WFE_PHASE").unwrap_or_else(|| "?".into());
        let attempt = var("WFE_ATTEMPT").and_then(|a| a.parse().ok()).unwrap_or(0);
        let group = Group {
            pgid: tagged.pgid,
            start_time: None,
        };
        let count = end_leftover(group, grace)
            .await
            .map_err(|e| EngineError::Leftovers {
                run: run.to_string(),
                phase: phase.clone(),
                attempt,
                pgid: tagged.pgid,
                message: e.to_string(),
            })?;
        if count > 0 {
            observer.event(&Event::LeftoversEnded {
                phase: &phase,
                attempt,
                count,
            });
        }
    }
    Ok(())
}

/// Waits until `deadline`; for ever without one.
async fn until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Waits for the control directory to change; for ever when not listening.
async fn next_request(watch: &mut Option<control::Watch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// A phase the runner schedules: a top-level phase by index, or a child
/// of a started loop in the loop's current iteration. A loop is named by
/// its slot in [`Runner::loops`]: a top-level loop's slot is its index, a
/// loop inside a loop has a slot of its own after the top-level phases
/// (see [`LoopState::owner`]), so a child of a nested loop is a `Child`
/// like any other and nesting needs no deeper unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    /// `template.phases[i]`.
    Top(usize),
    /// Child `child` of the loop in slot `parent`.
    Child {
        /// The loop's slot.
        parent: usize,
        /// The child's index among the loop's phases.
        child: usize,
    },
}

/// The runner's state for one run.
struct Runner<'a> {
    store: &'a dyn RunStore,
    settings: &'a Settings,
    observer: Arc<dyn Observer>,
    run: RunId,
    tip: CheckpointId,
    record: RunRecord,
    template: Template,
    dag: Dag,
    states: Vec<PhaseState>,
    /// Artifacts of completed phases, by phase index.
    artifacts: Vec<BTreeMap<String, Value>>,
    /// The iterations of each loop, by slot: first one per top-level
    /// phase, by index (empty unless it is a loop that has started), then
    /// one per loop inside a loop (see [`Unit`]).
    loops: Vec<LoopState>,
    /// Compiled frozen schemas by name as written in the template.
    schemas: BTreeMap<String, Arc<Schema>>,
    /// Loaded artifacts that no longer match their schema, by producing
    /// unit: the units that need them fail instead of starting.
    invalid: BTreeMap<Unit, Vec<ArtifactProblem>>,
    /// Auto mode is off and a phase just ended: start nothing until
    /// `wfe continue` (or auto mode on).
    hold: bool,
    /// What the next checkpoint will hold.
    pending: Pending,
    /// Record files of agent units with a task running.
    agent_files: BTreeMap<Unit, AgentFiles>,
    /// Agents waiting for their steps to be committed.
    acks: Vec<oneshot::Sender<()>>,
    /// A provider gave up: pause the run once running phases end, saying why.
    provider_pause: Option<StopReason>,
    /// The cancel signal of each running matrix combination, so a failing
    /// sibling can stop it alone (`fail_fast`).
    cancels: BTreeMap<Unit, watch::Sender<bool>>,
    /// The run's spend, counted live by its running agents (for the run budget).
    meter: crate::agent::RunMeter,
    /// Attempts whose live files go once their result is committed: (key, attempt).
    live_done: Vec<(String, u32)>,
    /// Scratch directories by slot, reused by one running unit after
    /// another (see [`ScratchSlots`]).
    slots: ScratchSlots,
    /// When this runner last committed a checkpoint (none yet: the first
    /// transitions are committed at once).
    last_commit: Option<Instant>,
}

/// The run's scratch directories (`<scratch>/<run>/<slot>`): a running
/// unit holds one, its attempts reuse it, and it goes back to the pool
/// when the unit's task ends. So a run makes about as many scratch
/// directories as phases run at once, not four per attempt (creating
/// and removing directories costs 0.1–1.5 ms each on a slow disk).
#[derive(Debug, Default)]
struct ScratchSlots {
    /// Slots no running unit holds.
    free: Vec<u32>,
    /// Slots handed out so far.
    made: u32,
    /// The slot each running unit holds.
    held: BTreeMap<Unit, u32>,
}

impl ScratchSlots {
    /// A slot for `u` (the one it holds already, if any).
    fn take(&mut self, u: Unit) -> u32 {
        if let Some(&slot) = self.held.get(&u) {
            return slot;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.made += 1;
            self.made
        });
        self.held.insert(u, slot);
        slot
    }

    /// `u`'s task ended: its slot is free for the next unit.
    fn give_back(&mut self, u: Unit) {
        if let Some(slot) = self.held.remove(&u) {
            self.free.push(slot);
        }
    }
}

/// The run's spend: its top-level phases' (a loop's holds its children's).
pub(crate) fn run_spend(states: &[PhaseState]) -> crate::budget::Spend {
    states
        .iter()
        .filter_map(|s| s.spend)
        .fold(crate::budget::Spend::zero(), |total, s| total.plus(&s))
}

/// A completed phase's artifacts as committed, and the problems of those
/// that no longer match their schema: the ref may have been changed by
/// hand since they were valid, so they are checked again, once, on load.
/// `key` is where the phase's files are.
fn load_artifacts(
    store: &dyn RunStore,
    snapshot: &RunSnapshot,
    schemas: &BTreeMap<String, Arc<Schema>>,
    spec: &Phase,
    state: &PhaseState,
    key: &str,
) -> Result<(BTreeMap<String, Value>, Vec<ArtifactProblem>), EngineError> {
    let mut found = BTreeMap::new();
    let mut problems = Vec::new();
    if state.status != PhaseStatus::Completed {
        return Ok((found, problems));
    }
    for name in &state.artifacts {
        let Some(value) = snapshot.artifact(store, key, name)? else {
            continue;
        };
        let schema = spec.outputs.get(name).and_then(|n| schemas.get(n));
        if let (Some(schema), false) = (schema, state.forced.contains(name)) {
            let violations = schema.validate(&value);
            if !violations.is_empty() {
                problems.push(ArtifactProblem {
                    artifact: format!("{}/{name}", state.id),
                    schema: schema.name().to_string(),
                    message: "no longer matches its schema".into(),
                    violations,
                });
            }
        }
        found.insert(name.clone(), value);
    }
    Ok((found, problems))
}

impl<'a> Runner<'a> {
    fn load(
        store: &'a dyn RunStore,
        run: &RunId,
        settings: &'a Settings,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, EngineError> {
        let snapshot = RunSnapshot::load_tip(store, run)?;
        ensure_runnable(&snapshot.template)?;
        let schemas = snapshot.schemas(store)?;
        let mut artifacts = Vec::with_capacity(snapshot.phases.len());
        let mut invalid = BTreeMap::new();
        for (i, state) in snapshot.phases.iter().enumerate() {
            let spec = &snapshot.template.phases[i];
            let (found, problems) =
                load_artifacts(store, &snapshot, &schemas, spec, state, &state.id)?;
            artifacts.push(found);
            if !problems.is_empty() {
                invalid.insert(Unit::Top(i), problems);
            }
        }
        let mut runner = Runner {
            store,
            settings,
            observer,
            run: run.clone(),
            tip: snapshot.checkpoint.clone(),
            dag: Dag::new(&snapshot.template.phases),
            record: snapshot.record.clone(),
            template: snapshot.template.clone(),
            states: snapshot.phases.clone(),
            artifacts,
            loops: LoopState::slots(&snapshot.template),
            schemas,
            invalid,
            hold: false,
            pending: Pending::default(),
            agent_files: BTreeMap::new(),
            acks: Vec::new(),
            provider_pause: None,
            cancels: BTreeMap::new(),
            meter: crate::agent::RunMeter::new(run_spend(&snapshot.phases)),
            live_done: Vec::new(),
            slots: ScratchSlots::default(),
            last_commit: None,
        };
        // Secret args are `***` in git; phases see their values. The
        // checkpoint masker keeps them out of every `run.json` written back.
        if let serde_json::Value::Object(args) = &mut runner.record.args {
            for (name, value) in &settings.secret_args {
                args.insert(name.clone(), value.clone());
            }
        }
        runner.load_loops(&snapshot)?;
        Ok(runner)
    }

    /// The cancel signal a unit's task listens to: the run's, and for a
    /// matrix combination its own too (which the run's also raises), so
    /// [`Runner::fail_fast_matrix`] can stop it without stopping the run.
    fn cancel_for(&mut self, u: Unit, run: &watch::Receiver<bool>) -> watch::Receiver<bool> {
        if self.spec(u).combination.is_none() {
            return run.clone();
        }
        let (tx, rx) = watch::channel(*run.borrow());
        let forward = tx.clone();
        let mut run = run.clone();
        tokio::spawn(async move {
            tokio::select! {
                raised = run.wait_for(|c| *c) => {
                    if raised.is_ok() {
                        let _ = forward.send(true);
                    }
                }
                // The task ended: nothing left to forward to.
                () = forward.closed() => {}
            }
        });
        self.cancels.insert(u, tx);
        rx
    }

    /// A matrix combination failed and its matrix fails fast: its running
    /// siblings are stopped (they end `cancelled`) and, when the run goes
    /// on regardless (`on_failure: continue`), those not started yet are
    /// cancelled so they never start; when the run stops they stay
    /// `pending`, like every phase that never started.
    fn fail_fast_matrix(&mut self, failed: usize) {
        let Some(of) = self.template.phases[failed]
            .combination
            .as_ref()
            .filter(|c| c.fail_fast)
            .map(|c| c.of.clone())
        else {
            return;
        };
        let label = self.dag.id(failed).to_string();
        let stopping = self.must_stop();
        for j in 0..self.states.len() {
            let sibling = self.template.phases[j]
                .combination
                .as_ref()
                .is_some_and(|c| c.of == of);
            if j == failed || !sibling {
                continue;
            }
            match self.states[j].status {
                PhaseStatus::Running => {
                    if let Some(tx) = self.cancels.get(&Unit::Top(j)) {
                        let _ = tx.send(true);
                    }
                }
                PhaseStatus::Pending if !stopping => {
                    let id = self.dag.id(j).to_string();
                    self.transition(Unit::Top(j), Transition::Cancel);
                    self.note(
                        Some(Unit::Top(j)),
                        super::CheckpointEvent::PhaseCancelled,
                        format!("{id} cancelled: fail fast after {label} failed"),
                    );
                }
                _ => {}
            }
        }
    }

    /// Whether this runner may start or recover `u`: always, unless it is
    /// a worker's runner for another phase ([`Settings::only`]).
    fn mine(&self, u: Unit) -> bool {
        self.settings
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|p| self.dag.id(self.top(u)) == p))
    }

    fn phase(&self, i: usize) -> &Phase {
        &self.template.phases[i]
    }

    /// The template entry of a unit.
    fn spec(&self, u: Unit) -> &Phase {
        match u {
            Unit::Top(i) => &self.template.phases[i],
            Unit::Child { parent, child } => &self.spec(self.loops[parent].owner).phases[child],
        }
    }

    fn state(&self, u: Unit) -> &PhaseState {
        match u {
            Unit::Top(i) => &self.states[i],
            Unit::Child { parent, child } => &self.loops[parent].states[child],
        }
    }

    fn state_mut(&mut self, u: Unit) -> &mut PhaseState {
        match u {
            Unit::Top(i) => &mut self.states[i],
            Unit::Child { parent, child } => &mut self.loops[parent].states[child],
        }
    }

    /// The artifacts a unit produced (in its loop's current iteration).
    fn outputs(&self, u: Unit) -> &BTreeMap<String, Value> {
        match u {
            Unit::Top(i) => &self.artifacts[i],
            Unit::Child { parent, child } => &self.loops[parent].artifacts[child],
        }
    }

    fn outputs_mut(&mut self, u: Unit) -> &mut BTreeMap<String, Value> {
        match u {
            Unit::Top(i) => &mut self.artifacts[i],
            Unit::Child { parent, child } => &mut self.loops[parent].artifacts[child],
        }
    }

    fn id(&self, u: Unit) -> &str {
        &self.spec(u).id
    }

    /// Where a unit's files are (see [`layout::child_key`]): a nested
    /// loop's child is under its loop's key, iteration by iteration.
    fn key(&self, u: Unit) -> String {
        match u {
            Unit::Top(i) => self.dag.id(i).to_string(),
            Unit::Child { parent, .. } => {
                let l = &self.loops[parent];
                layout::child_key(&self.key(l.owner), l.iteration, self.id(u))
            }
        }
    }

    /// How people see a unit: its id, or `loop[k]/child`
    /// (`outer[j]/inner[k]/child` inside a nested loop).
    fn label(&self, u: Unit) -> String {
        match u {
            Unit::Top(i) => self.dag.id(i).to_string(),
            Unit::Child { parent, .. } => {
                let l = &self.loops[parent];
                format!("{}[{}]/{}", self.label(l.owner), l.iteration, self.id(u))
            }
        }
    }

    /// How commands address a unit (`wfe approve`, `wfe show`): its id,
    /// or `child@k` for a loop's child in iteration k; inside a nested
    /// loop, the iterations from the outermost loop in, joined by `.`
    /// (`child@j.k`).
    fn address(&self, u: Unit) -> String {
        match u {
            Unit::Top(i) => self.dag.id(i).to_string(),
            Unit::Child { .. } => format!(
                "{}@{}",
                self.id(u),
                super::operations::join_iterations(&self.iterations_of(u))
            ),
        }
    }

    /// The iterations a loop's child is in, outermost first; empty for a
    /// top-level phase.
    fn iterations_of(&self, u: Unit) -> Vec<u32> {
        let mut at = Vec::new();
        let mut v = u;
        while let Unit::Child { parent, .. } = v {
            at.push(self.loops[parent].iteration);
            v = self.loops[parent].owner;
        }
        at.reverse();
        at
    }

    /// The top-level phase a unit is or is inside.
    fn top(&self, u: Unit) -> usize {
        match u {
            Unit::Top(i) => i,
            Unit::Child { parent, .. } => self.top(self.loops[parent].owner),
        }
    }

    /// The loop slot of a unit that is a loop (none otherwise).
    fn slot(&self, u: Unit) -> Option<usize> {
        match u {
            Unit::Top(i) => (self.phase(i).kind == PhaseKind::Loop).then_some(i),
            Unit::Child { parent, child } => self.loops[parent].slots.get(child).copied().flatten(),
        }
    }

    /// The status of the loop in slot `s` in its current instance (none
    /// while the loop holding it has no iteration to hold it in).
    fn loop_status(&self, s: usize) -> Option<PhaseStatus> {
        match self.loops[s].owner {
            Unit::Top(i) => Some(self.states[i].status),
            Unit::Child { parent, child } => {
                self.loops[parent].states.get(child).map(|st| st.status)
            }
        }
    }

    /// Whether the loop in slot `s` is running (in its enclosing loop's
    /// current iteration).
    fn loop_running(&self, s: usize) -> bool {
        self.loop_status(s) == Some(PhaseStatus::Running)
    }

    /// Whether `u` is inside the loop in slot `s`, at any depth.
    fn within(&self, u: Unit, s: usize) -> bool {
        let mut v = u;
        while let Unit::Child { parent, .. } = v {
            if parent == s {
                return true;
            }
            v = self.loops[parent].owner;
        }
        false
    }

    /// Every unit that may still change: each top-level phase, and the
    /// children of each running loop in its current iteration.
    fn units(&self) -> Vec<Unit> {
        let mut units: Vec<Unit> = (0..self.states.len()).map(Unit::Top).collect();
        for (parent, l) in self.loops.iter().enumerate() {
            if self.loop_running(parent) {
                units.extend((0..l.states.len()).map(|child| Unit::Child { parent, child }));
            }
        }
        units
    }

    /// Moves a unit through `transition` now, for the next checkpoint. The
    /// runner picks units by status, so it only asks for transitions their
    /// status allows; a refusal would be a bug here, and leaves the state as
    /// it was.
    fn transition(&mut self, u: Unit, transition: Transition) {
        let now = self.settings.clock.stamp();
        self.transition_at(u, transition, &now);
    }

    /// [`Runner::transition`] at a given time.
    fn transition_at(&mut self, u: Unit, transition: Transition, now: &str) {
        let result = self.state_mut(u).apply(transition, now);
        debug_assert!(result.is_ok(), "{result:?}");
        self.mark(u);
    }

    fn on_failure(&self, u: Unit) -> OnFailure {
        on_failure(&self.template, self.spec(u))
    }

    /// A unit whose dependants may start: it ended well, was skipped, or
    /// failed with `on_failure: continue`.
    fn satisfied(&self, u: Unit) -> bool {
        let status = self.state(u).status;
        matches!(status, PhaseStatus::Completed | PhaseStatus::Skipped)
            || (status.is_failure() && self.on_failure(u) == OnFailure::Continue)
    }

    /// Whether a failure that stops the run cancels the phases still
    /// running (`defaults.fail_fast`, true unless the template says false).
    fn fails_fast(&self) -> bool {
        self.template.defaults.fail_fast.unwrap_or(true)
    }

    /// True once a phase failed with `on_failure: stop` (or a running
    /// loop's child did, and the loop will fail with `on_failure: stop`):
    /// nothing new starts.
    fn must_stop(&self) -> bool {
        blocking_failures(&self.template, &self.states)
            .next()
            .is_some()
            || (0..self.states.len()).any(|p| {
                self.states[p].status == PhaseStatus::Running
                    && self.doomed(p)
                    && self.on_failure(Unit::Top(p)) == OnFailure::Stop
            })
    }
}
