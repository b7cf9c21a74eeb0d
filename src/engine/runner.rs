//! Creating a run, and driving it from its tip to the end (or a stop).
//!
//! The runner owns the run's in-memory state and is the only writer of its
//! ref. It alternates between scheduling (start every ready phase, up to
//! `jobs`), committing what changed as one checkpoint, and waiting for
//! phase tasks to report. Starting phases is committed before their
//! processes spawn, so a checkpoint never lags behind a side effect it
//! could have recorded.
//!
//! What it schedules are [`Unit`]s: top-level phases, and the child phases
//! of running loops in their current iteration. Both go through the same
//! steps (ready, `if`, prepare, start, report, finish), so retries,
//! timeouts, outputs and control requests work the same inside a loop;
//! what only loops have (iterations, `until`, their end) is in
//! [`iteration`].

mod agent;
mod iteration;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use self::agent::AgentFiles;
use self::iteration::LoopState;
use super::control::{self, Action, ControlDir, Reply, Request};
use super::snapshot::RunSnapshot;
use super::{
    Dag, EngineError, Event, Observer, PhaseState, PhaseStatus, RunRecord, RunStatus, Seats,
    layout, to_file_bytes,
};
use crate::agent::{AgentJob, Progress, Step, run_agent};
use crate::artifact::{OutputSpec, Schema};
use crate::attempt::{ArtifactProblem, AttemptError, AttemptOutcome, LogLine, LogSink};
use crate::exec::{ScriptJob, run_script};
use crate::provider::ProviderErrorKind;
use crate::store::{Change, CheckpointId, Message, RunId, RunStore, StoreError, WORKSPACE};
use crate::template::{Approval, OnFailure, Phase, PhaseKind, RetryPolicy, Template, digest, expr};
use crate::time::Clock;

/// The `Wfe-Event` of a checkpoint that only appends to `comments.jsonl`.
pub const COMMENT_EVENT: &str = "comment";

/// Waits between attempts never exceed this unless the template says so.
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The first wait when a retry policy gives no `backoff`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

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
    /// Where requests from other processes arrive (none: not listening).
    pub control: Option<ControlDir>,
    /// When only approvals (or `wfe continue`) could move the run on: keep
    /// waiting for them (true) or stop with status `waiting` (false).
    pub wait: bool,
    /// Who plays agent phases (none: agent phases fail with a config error).
    pub seats: Option<Arc<dyn Seats>>,
}

/// Why the runner stops before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// `wfe pause`: start nothing new; running phases finish.
    Pause,
    /// Ctrl-C: kill running phases; they go back to pending.
    Interrupt,
    /// `wfe cancel`: kill running phases; the run ends cancelled.
    Cancel,
}

/// A run about to be created: everything already validated.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The new run's id.
    pub id: RunId,
    /// The validated template.
    pub template: Template,
    /// Where the template came from.
    pub template_source: String,
    /// The validated args.
    pub args: Value,
    /// Every schema the template names: (name as written, schema document).
    pub schemas: Vec<(String, Value)>,
    /// The commit HEAD points at.
    pub base_commit: String,
    /// Advance without asking after each phase.
    pub auto: bool,
}

/// Refuses templates this version cannot run, before anything is written:
/// loops of anything but script and agent phases.
pub fn ensure_runnable(template: &Template) -> Result<(), EngineError> {
    for phase in &template.phases {
        match phase.kind {
            PhaseKind::Script | PhaseKind::Gate | PhaseKind::Agent => {}
            PhaseKind::Loop => iteration::ensure_runnable(phase)?,
        }
    }
    Ok(())
}

/// Writes the run's first checkpoint: run.json, the frozen template and
/// schemas, and a pending state for every top-level phase (a loop's
/// children get theirs when an iteration starts).
pub fn create(
    store: &dyn RunStore,
    new: &NewRun,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    ensure_runnable(&new.template)?;
    let mut changes = Vec::new();
    let mut frozen = BTreeMap::new();
    for (name, json) in &new.schemas {
        let path = layout::frozen_schema(name);
        changes.push(Change::write(path.clone(), to_file_bytes(json)));
        frozen.insert(name.clone(), path);
    }
    let record = RunRecord {
        id: new.id.to_string(),
        template: new.template.name.clone(),
        template_source: new.template_source.clone(),
        template_digest: digest(&new.template),
        args: new.args.clone(),
        status: RunStatus::Pending,
        auto: new.auto,
        base_commit: new.base_commit.clone(),
        created_at: clock.stamp(),
        finished_at: None,
        schemas: frozen,
        reason: None,
    };
    changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
    changes.push(Change::write(
        layout::TEMPLATE,
        to_file_bytes(&new.template),
    ));
    for phase in &new.template.phases {
        changes.push(Change::write(
            layout::state(&phase.id),
            to_file_bytes(&PhaseState::pending(&phase.id, phase.kind)),
        ));
    }
    let message = Message::new(format!(
        "wfe: run created from template {}",
        new.template.name
    ))
    .trailer("Wfe-Run", new.id.as_str())
    .trailer("Wfe-Template", new.template.name.as_str())
    .trailer("Wfe-Event", "run-created")
    .trailer("Wfe-Status", RunStatus::Pending.as_str());
    Ok(store.commit(&new.id, None, &changes, &message, clock.epoch_seconds())?)
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
    mut interrupt: watch::Receiver<bool>,
) -> Result<RunStatus, EngineError> {
    let mut runner = Runner::load(store, run, settings, observer.clone())?;
    // A failed run goes on only once its failure is dealt with (e.g. an
    // invalid output accepted by hand); until then resuming changes nothing.
    if matches!(
        runner.record.status,
        RunStatus::Completed | RunStatus::Cancelled
    ) || (runner.record.status == RunStatus::Failed && runner.must_stop())
    {
        return Ok(runner.record.status);
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
    loop {
        if let Some(control) = &settings.control {
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
        runner.flush()?;
        for launch in launches {
            running += 1;
            tokio::spawn(phase_task(
                launch,
                cancel_rx.clone(),
                observer.clone(),
                settings.clock,
                tx.clone(),
            ));
        }
        let killing = matches!(stop, Some(Stop::Interrupt | Stop::Cancel));
        tokio::select! {
            report = rx.recv() => {
                // Every task holds a sender and the runner keeps one, so the channel cannot close here.
                let Some(report) = report else { break };
                let interrupting = stop == Some(Stop::Interrupt);
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
            () = next_request(&mut control_watch) => {}
        }
    }
    let status = runner.finish(stop);
    runner.flush()?;
    let _ = std::fs::remove_dir_all(settings.scratch.join(run.as_str()));
    observer.event(&Event::RunFinished {
        status,
        reason: runner.record.reason.as_deref(),
    });
    Ok(status)
}

/// Waits for the control directory to change; for ever when not listening.
async fn next_request(watch: &mut Option<control::Watch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// A phase the runner schedules: a top-level phase by index, or a child
/// of a started loop (both by index in the template) in the loop's current
/// iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    /// `template.phases[i]`.
    Top(usize),
    /// `template.phases[parent].phases[child]`.
    Child {
        /// The loop's index.
        parent: usize,
        /// The child's index among the loop's phases.
        child: usize,
    },
}

impl Unit {
    /// The top-level phase the unit is or belongs to.
    fn top(self) -> usize {
        match self {
            Unit::Top(i) | Unit::Child { parent: i, .. } => i,
        }
    }
}

/// What a phase task sends back to the runner.
enum Report {
    /// An attempt failed; the task waits `wait` and tries again.
    Retrying {
        unit: Unit,
        attempt: u32,
        outcome: AttemptOutcome,
        elapsed: Duration,
        wait: Duration,
    },
    /// The phase's last attempt ended; the task is gone.
    Finished {
        unit: Unit,
        attempt: u32,
        outcome: AttemptOutcome,
        elapsed: Duration,
    },
    /// An agent did something that must be committed before it goes on;
    /// `ack` answers once it is.
    Progress {
        unit: Unit,
        attempt: u32,
        step: Step,
        ack: oneshot::Sender<()>,
    },
}

/// What a phase task runs.
enum Job {
    Script(Box<ScriptJob>),
    Agent(Box<AgentJob>),
}

/// Everything a phase task needs, resolved by the runner.
struct Launch {
    unit: Unit,
    job: Job,
    /// An agent's record files as committed, to append its steps to.
    files: Option<AgentFiles>,
    first_attempt: u32,
    max_attempts: u32,
    retry: Option<RetryPolicy>,
    /// The phase's scratch directory; each attempt gets `<n>/` inside.
    scratch: PathBuf,
}

/// Runs a phase's attempts (retrying with backoff) and reports each one.
async fn phase_task(
    launch: Launch,
    mut cancel: watch::Receiver<bool>,
    sink: Arc<dyn Observer>,
    clock: Clock,
    tx: mpsc::UnboundedSender<Report>,
) {
    let Launch {
        unit,
        mut job,
        first_attempt,
        max_attempts,
        retry,
        scratch,
        ..
    } = launch;
    let sink: Arc<dyn LogSink> = sink;
    let mut attempt = first_attempt;
    loop {
        let started = Instant::now();
        let outcome = match &mut job {
            Job::Script(job) => {
                job.attempt = attempt;
                job.scratch = scratch.join(attempt.to_string());
                run_script((**job).clone(), cancel.clone(), sink.clone(), clock).await
            }
            Job::Agent(job) => {
                job.attempt = attempt;
                let outcome = agent_attempt(unit, job, &cancel, &sink, clock, &tx).await;
                // A later attempt starts a new conversation.
                job.journal = Default::default();
                outcome
            }
        };
        let elapsed = started.elapsed();
        // A provider that gave up pauses the run; one that refused the
        // request would refuse it again.
        let retryable = matches!(&outcome.result, Err(e) if !matches!(e, AttemptError::Cancelled | AttemptError::Render { .. } | AttemptError::Provider { .. }));
        if !retryable || attempt >= max_attempts || *cancel.borrow() {
            let _ = tx.send(Report::Finished {
                unit,
                attempt,
                outcome,
                elapsed,
            });
            return;
        }
        let wait = backoff(retry.as_ref(), attempt);
        let _ = tx.send(Report::Retrying {
            unit,
            attempt,
            outcome,
            elapsed,
            wait,
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.wait_for(|c| *c) => {
                let outcome = AttemptOutcome { result: Err(AttemptError::Cancelled), exit_code: None, log: Vec::new(), rejected: Vec::new(), usage: None };
                // The cancelled attempt never started: nothing of its own to keep.
                let _ = tx.send(Report::Finished { unit, attempt: attempt + 1, outcome, elapsed: Duration::ZERO });
                return;
            }
        }
        attempt += 1;
    }
}

/// Runs one agent attempt, passing its steps to the runner to commit.
async fn agent_attempt(
    unit: Unit,
    job: &AgentJob,
    cancel: &watch::Receiver<bool>,
    sink: &Arc<dyn LogSink>,
    clock: Clock,
    tx: &mpsc::UnboundedSender<Report>,
) -> AttemptOutcome {
    let (progress, mut steps) = Progress::channel();
    let attempt = job.attempt;
    let forward = {
        let tx = tx.clone();
        async move {
            while let Some((step, ack)) = steps.recv().await {
                let _ = tx.send(Report::Progress {
                    unit,
                    attempt,
                    step,
                    ack,
                });
            }
        }
    };
    let run = run_agent(job.clone(), cancel.clone(), sink.clone(), progress, clock);
    // The forwarder ends when the agent drops its `Progress`, i.e. with the attempt.
    let (outcome, ()) = tokio::join!(run, forward);
    outcome
}

/// The wait after failed attempt `attempt`: `backoff · 2^(attempt-1)`,
/// capped, with "equal jitter" (between half and all of it) so retries of
/// parallel phases spread out.
fn backoff(policy: Option<&RetryPolicy>, attempt: u32) -> Duration {
    let base = policy
        .and_then(|p| p.backoff)
        .map_or(DEFAULT_BACKOFF, |d| d.0);
    let cap = policy
        .and_then(|p| p.max_backoff)
        .map_or(DEFAULT_MAX_BACKOFF, |d| d.0);
    let full = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(cap);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
    full.mul_f64(fraction)
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
    /// The iterations of each top-level phase, by index: empty unless it
    /// is a loop that has started.
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
    provider_pause: Option<String>,
}

/// Changes and transitions waiting to be committed together.
#[derive(Default)]
struct Pending {
    changes: Vec<Change>,
    record_dirty: bool,
    dirty: Vec<Unit>,
    /// Human summaries, joined into the commit's first line.
    summaries: Vec<String>,
    /// (phase key, event) trailers in order.
    events: Vec<(Option<String>, &'static str)>,
    /// Who asked for the control actions in this checkpoint.
    requested_by: Vec<String>,
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
            loops: vec![LoopState::default(); snapshot.phases.len()],
            schemas,
            invalid,
            hold: false,
            pending: Pending::default(),
            agent_files: BTreeMap::new(),
            acks: Vec::new(),
            provider_pause: None,
        };
        runner.load_loops(&snapshot)?;
        Ok(runner)
    }

    fn phase(&self, i: usize) -> &Phase {
        &self.template.phases[i]
    }

    /// The template entry of a unit.
    fn spec(&self, u: Unit) -> &Phase {
        match u {
            Unit::Top(i) => &self.template.phases[i],
            Unit::Child { parent, child } => &self.template.phases[parent].phases[child],
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

    /// Where a unit's files are (see [`layout::child_key`]).
    fn key(&self, u: Unit) -> String {
        match u {
            Unit::Top(i) => self.dag.id(i).to_string(),
            Unit::Child { parent, .. } => layout::child_key(
                self.dag.id(parent),
                self.loops[parent].iteration,
                self.id(u),
            ),
        }
    }

    /// How people see a unit: its id, or `loop[k]/child`.
    fn label(&self, u: Unit) -> String {
        match u {
            Unit::Top(i) => self.dag.id(i).to_string(),
            Unit::Child { parent, .. } => format!(
                "{}[{}]/{}",
                self.dag.id(parent),
                self.loops[parent].iteration,
                self.id(u)
            ),
        }
    }

    /// Every unit that may still change: each top-level phase, and the
    /// children of each running loop in its current iteration.
    fn units(&self) -> Vec<Unit> {
        let mut units: Vec<Unit> = (0..self.states.len()).map(Unit::Top).collect();
        for (parent, l) in self.loops.iter().enumerate() {
            if self.states[parent].status == PhaseStatus::Running {
                units.extend((0..l.states.len()).map(|child| Unit::Child { parent, child }));
            }
        }
        units
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

    fn mark(&mut self, u: Unit) {
        if !self.pending.dirty.contains(&u) {
            self.pending.dirty.push(u);
        }
    }

    fn note(&mut self, u: Option<Unit>, event: &'static str, summary: String) {
        let key = u.map(|u| self.key(u));
        self.pending.events.push((key, event));
        self.pending.summaries.push(summary);
    }

    fn set_status(&mut self, status: RunStatus, reason: Option<String>) {
        if self.record.status == status && self.record.reason == reason {
            return;
        }
        let event = match status {
            RunStatus::Running => "run-started",
            RunStatus::Completed => "run-completed",
            RunStatus::Failed => "run-failed",
            RunStatus::Paused => "run-paused",
            RunStatus::Cancelled => "run-cancelled",
            RunStatus::Waiting => "run-waiting",
            RunStatus::Pending => "run-pending",
        };
        let summary = match (&status, &reason) {
            (RunStatus::Running, _) if self.record.status == RunStatus::Pending => {
                "run started".to_string()
            }
            (RunStatus::Running, _) => "run resumed".to_string(),
            (_, Some(reason)) => format!("run {}: {reason}", status.as_str()),
            (_, None) => format!("run {}", status.as_str()),
        };
        self.record.status = status;
        self.record.reason = reason;
        self.record.finished_at = status.is_final().then(|| self.settings.clock.stamp());
        self.pending.record_dirty = true;
        self.note(None, event, summary);
    }

    /// Phases left `running` by a runner that died start over as a new
    /// attempt; the lost attempt is archived as interrupted. A loop left
    /// running is not one of them: it goes on in its iteration, where its
    /// children that were running start over.
    fn recover_interrupted(&mut self) {
        let interrupted: Vec<Unit> = self
            .units()
            .into_iter()
            .filter(|&u| {
                self.state(u).status == PhaseStatus::Running && self.spec(u).kind != PhaseKind::Loop
            })
            .collect();
        for u in interrupted {
            let attempt = self.state(u).attempt;
            if self.spec(u).kind == PhaseKind::Agent {
                // Its conversation is in the run: the next start resumes it.
                let state = self.state_mut(u);
                state.status = PhaseStatus::Pending;
                state.continues = true;
                self.mark(u);
                let label = self.label(u);
                self.note(
                    Some(u),
                    "phase-interrupted",
                    format!("{label} interrupted (attempt {attempt}); its conversation goes on"),
                );
                continue;
            }
            let error = AttemptError::Internal {
                message: "interrupted: the runner stopped during this attempt".into(),
            };
            let key = self.key(u);
            self.pending.changes.push(Change::write(
                format!("{}/error.json", layout::attempt(&key, attempt)),
                to_file_bytes(&error),
            ));
            let state = self.state_mut(u);
            state.status = PhaseStatus::Pending;
            state.error = Some(error);
            self.mark(u);
            let label = self.label(u);
            self.note(
                Some(u),
                "phase-interrupted",
                format!("{label} interrupted (attempt {attempt})"),
            );
        }
    }

    /// The units whose artifacts `u` reads: its top-level ancestors (for a
    /// completed loop, the children of its last iteration), and for a
    /// loop's child also its ancestors among its siblings, this iteration.
    fn upstream(&self, u: Unit) -> Vec<Unit> {
        let mut out = Vec::new();
        for a in self.dag.ancestors(u.top()) {
            if self.phase(a).kind == PhaseKind::Loop {
                // Like a skipped phase, a loop that failed (`on_failure:
                // continue`) leaves its dependants nothing.
                if self.states[a].status == PhaseStatus::Completed {
                    let children = self.loops[a].states.len();
                    out.extend((0..children).map(|child| Unit::Child { parent: a, child }));
                }
            } else {
                out.push(Unit::Top(a));
            }
        }
        if let Unit::Child { parent, child } = u {
            let siblings = self.loops[parent].dag.ancestors(child);
            out.extend(
                siblings
                    .into_iter()
                    .map(|c| Unit::Child { parent, child: c }),
            );
        }
        out
    }

    /// `artifacts` of a context: the artifacts of `units` by phase id.
    fn artifacts_json(&self, units: &[Unit]) -> serde_json::Map<String, Value> {
        let mut artifacts = serde_json::Map::new();
        for &v in units {
            let found = self.outputs(v);
            if !found.is_empty() {
                artifacts.insert(self.id(v).to_string(), json!(found));
            }
        }
        artifacts
    }

    /// The template context of a unit: args, the artifacts upstream of it,
    /// the run and the phase; for a loop's child also `loop` and
    /// `previous` (see [`Runner::loop_context`]).
    fn context(&self, u: Unit) -> Value {
        let upstream = self.upstream(u);
        // Skipped phases have no artifacts; `skipped` says so explicitly, so
        // templates can tell "skipped" from "produced nothing".
        let skipped: Vec<&str> = upstream
            .iter()
            .filter(|&&a| self.state(a).status == PhaseStatus::Skipped)
            .map(|&a| self.id(a))
            .collect();
        let mut context = json!({
            "args": self.record.args,
            "artifacts": self.artifacts_json(&upstream),
            "skipped": skipped,
            "run": { "id": self.record.id, "template": self.record.template },
            "phase": { "id": self.id(u), "attempt": self.state(u).attempt + 1 },
        });
        if let Unit::Child { parent, .. } = u {
            let (this_loop, previous) = self.loop_context(parent);
            context["loop"] = this_loop;
            context["previous"] = previous;
        }
        context
    }

    /// The units that could start now: pending, with every need satisfied.
    /// A loop's children wait while their loop is running and not bound
    /// to fail.
    fn ready(&self) -> Vec<Unit> {
        let mut ready: Vec<Unit> = self
            .dag
            .ready(
                |i| self.states[i].status == PhaseStatus::Pending,
                |n| self.satisfied(Unit::Top(n)),
            )
            .into_iter()
            .map(Unit::Top)
            .collect();
        for (parent, l) in self.loops.iter().enumerate() {
            if self.states[parent].status != PhaseStatus::Running || self.doomed(parent) {
                continue;
            }
            let children = l.dag.ready(
                |c| l.states[c].status == PhaseStatus::Pending,
                |c| self.satisfied(Unit::Child { parent, child: c }),
            );
            ready.extend(
                children
                    .into_iter()
                    .map(|child| Unit::Child { parent, child }),
            );
        }
        ready
    }

    /// Starts every ready unit (up to `jobs` running), skipping those whose
    /// `if` is false and beginning loops; returns what to spawn once the
    /// start is committed.
    fn schedule(&mut self, mut running: usize) -> Vec<Launch> {
        let mut launches = Vec::new();
        if self.hold {
            return launches;
        }
        loop {
            // Skips, failures before start, new loops and ended iterations
            // can make more units ready: go round until nothing changes.
            let mut progressed = false;
            for u in self.ready() {
                if running >= self.settings.jobs.max(1) || self.must_stop() {
                    break;
                }
                let context = self.context(u);
                if let Some(condition) = self.spec(u).condition.clone() {
                    match expr::eval_condition(&condition, &context) {
                        Ok(true) => {}
                        Ok(false) => {
                            self.skip(u, format!("`if: {condition}` is false"));
                            progressed = true;
                            continue;
                        }
                        Err(e) => {
                            let error = AttemptError::Render {
                                field: "if".into(),
                                message: e.message,
                            };
                            self.fail_before_start(u, error);
                            progressed = true;
                            continue;
                        }
                    }
                }
                match (u, self.spec(u).kind) {
                    (Unit::Top(i), PhaseKind::Gate) => self.await_approval(i),
                    (Unit::Top(i), PhaseKind::Loop) => {
                        self.start_loop(i);
                        progressed = true;
                    }
                    _ => match self.prepare(u, &context) {
                        Ok(mut launch) => {
                            self.start(u);
                            if let Some(files) = launch.files.take() {
                                self.agent_files.insert(u, files);
                            }
                            launches.push(launch);
                            running += 1;
                        }
                        Err(error) => {
                            self.fail_before_start(u, error);
                            progressed = true;
                        }
                    },
                }
            }
            progressed |= self.settle_loops();
            if !progressed {
                return launches;
            }
        }
    }

    /// A gate that became ready waits for `wfe approve`.
    fn await_approval(&mut self, i: usize) {
        let id = self.dag.id(i).to_string();
        let now = self.settings.clock.stamp();
        let state = &mut self.states[i];
        state.status = PhaseStatus::Waiting;
        state.started_at = Some(now);
        self.mark(Unit::Top(i));
        self.observer.event(&Event::PhaseFinished {
            phase: &id,
            status: PhaseStatus::Waiting,
            attempt: 0,
            duration: Duration::ZERO,
            error: None,
        });
        self.note(
            Some(Unit::Top(i)),
            "phase-waiting",
            format!("{id} waiting for approval"),
        );
    }

    fn skip(&mut self, u: Unit, reason: String) {
        let label = self.label(u);
        self.observer.event(&Event::PhaseSkipped {
            phase: &label,
            reason: &reason,
        });
        let now = self.settings.clock.stamp();
        let state = self.state_mut(u);
        state.status = PhaseStatus::Skipped;
        state.finished_at = Some(now);
        state.skip_reason = Some(reason);
        self.mark(u);
        self.note(Some(u), "phase-skipped", format!("{label} skipped"));
    }

    fn start(&mut self, u: Unit) {
        let label = self.label(u);
        let now = self.settings.clock.stamp();
        let state = self.state_mut(u);
        // An interrupted agent attempt goes on with its conversation.
        if !std::mem::take(&mut state.continues) {
            state.attempt += 1;
        }
        state.status = PhaseStatus::Running;
        state.started_at = Some(now);
        state.finished_at = None;
        state.duration_ms = None;
        state.exit_code = None;
        let attempt = state.attempt;
        self.mark(u);
        self.observer.event(&Event::PhaseStarted {
            phase: &label,
            attempt,
        });
        self.note(
            Some(u),
            "phase-started",
            format!("{label} started (attempt {attempt})"),
        );
    }

    /// A unit that cannot even start (its `if` or a template field does
    /// not render) fails its next attempt without running anything.
    fn fail_before_start(&mut self, u: Unit, error: AttemptError) {
        self.start(u);
        let attempt = self.state(u).attempt;
        let outcome = AttemptOutcome {
            result: Err(error),
            exit_code: None,
            log: Vec::new(),
            rejected: Vec::new(),
            usage: None,
        };
        self.apply(
            Report::Finished {
                unit: u,
                attempt,
                outcome,
                elapsed: Duration::ZERO,
            },
            false,
        );
    }

    /// Resolves a unit into a job: rendered command, cwd and env, input
    /// artifacts, compiled output schemas.
    fn prepare(&self, u: Unit, context: &Value) -> Result<Launch, AttemptError> {
        if self.spec(u).kind == PhaseKind::Agent {
            return self.prepare_agent(u, context);
        }
        let phase = self.spec(u);
        let render = |field: &str, source: &str| {
            expr::render(source, context).map_err(|e| AttemptError::Render {
                field: field.to_string(),
                message: e.message,
            })
        };
        let command = render("run", phase.run.as_deref().unwrap_or_default())?;
        let cwd = match &phase.cwd {
            Some(cwd) => self.settings.work_dir.join(render("cwd", cwd)?),
            None => self.settings.work_dir.clone(),
        };
        let mut env = args_env(&self.record.args);
        if let Unit::Child { parent, .. } = u {
            env.push(("WFE_LOOP".into(), self.dag.id(parent).to_string()));
            env.push((
                "WFE_ITERATION".into(),
                self.loops[parent].iteration.to_string(),
            ));
        }
        for (key, value) in &phase.env {
            env.push((key.clone(), render(&format!("env.{key}"), value)?));
        }
        self.check_inputs(u)?;
        let upstream = self.upstream(u);
        let mut inputs = Vec::new();
        for v in upstream {
            for (name, value) in self.outputs(v) {
                inputs.push((self.id(v).to_string(), name.clone(), to_file_bytes(value)));
            }
        }
        if let Unit::Child { parent, .. } = u {
            inputs.extend(self.previous_inputs(parent));
        }
        let outputs = self.output_specs(u)?;
        let retry = self.retry_policy(u);
        let scratch = self.scratch_dir(u);
        Ok(Launch {
            unit: u,
            files: None,
            job: Job::Script(Box::new(ScriptJob {
                run: self.record.id.clone(),
                phase: phase.id.clone(),
                attempt: 0,
                command,
                cwd,
                env,
                inputs,
                outputs,
                scratch: scratch.clone(),
                timeout: phase
                    .timeout
                    .or(self.template.defaults.timeout)
                    .map(|d| d.0),
                max_artifact_bytes: self.settings.max_artifact_bytes,
            })),
            first_attempt: self.state(u).attempt + 1,
            max_attempts: retry.as_ref().map_or(1, |r| r.max_attempts.max(1)),
            retry,
            scratch,
        })
    }

    /// Fails a unit before it starts when an artifact it reads no longer
    /// matches its schema.
    fn check_inputs(&self, u: Unit) -> Result<(), AttemptError> {
        let problems: Vec<ArtifactProblem> = self
            .upstream(u)
            .iter()
            .filter_map(|v| self.invalid.get(v))
            .flatten()
            .cloned()
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AttemptError::InvalidInputs { problems })
        }
    }

    /// The unit's retry policy: its own, else the template's default.
    fn retry_policy(&self, u: Unit) -> Option<RetryPolicy> {
        self.spec(u)
            .retry
            .clone()
            .or_else(|| self.template.defaults.retry.clone())
    }

    /// The unit's scratch directory; each attempt gets `<n>/` inside.
    fn scratch_dir(&self, u: Unit) -> PathBuf {
        self.settings
            .scratch
            .join(self.run.as_str())
            .join(self.key(u))
    }

    /// The unit's declared outputs with their frozen, compiled schemas.
    fn output_specs(&self, u: Unit) -> Result<Vec<OutputSpec>, AttemptError> {
        let mut outputs = Vec::new();
        for (name, schema_name) in &self.spec(u).outputs {
            let schema =
                self.schemas
                    .get(schema_name)
                    .cloned()
                    .ok_or_else(|| AttemptError::Internal {
                        message: format!(
                            "schema `{schema_name}` of output `{name}` is not frozen in this run"
                        ),
                    })?;
            outputs.push(OutputSpec {
                name: name.clone(),
                schema,
            });
        }
        Ok(outputs)
    }

    /// Records a report; returns true when the phase's task has ended.
    fn apply(&mut self, report: Report, paused: bool) -> bool {
        match report {
            Report::Retrying {
                unit,
                attempt,
                outcome,
                elapsed,
                wait,
            } => {
                let label = self.label(unit);
                let error = outcome.result.as_ref().err().cloned();
                self.archive(unit, attempt, &outcome);
                if let Some(error) = &error {
                    self.observer.event(&Event::PhaseRetrying {
                        phase: &label,
                        attempt,
                        error,
                        wait,
                    });
                }
                let state = self.state_mut(unit);
                state.attempt = attempt + 1;
                state.exit_code = outcome.exit_code;
                state.duration_ms = Some(elapsed.as_millis() as u64);
                state.error = error.clone();
                self.mark(unit);
                let why = error.map(|e| e.to_string()).unwrap_or_default();
                self.note(
                    Some(unit),
                    "attempt-failed",
                    format!("{label} attempt {attempt} failed ({why}); retrying"),
                );
                false
            }
            Report::Finished {
                unit,
                attempt,
                outcome,
                elapsed,
            } => {
                self.finish_phase(unit, attempt, outcome, elapsed, paused);
                self.agent_files.remove(&unit);
                true
            }
            Report::Progress {
                unit,
                attempt,
                step,
                ack,
            } => {
                self.record_step(unit, attempt, step);
                self.acks.push(ack);
                false
            }
        }
    }

    fn finish_phase(
        &mut self,
        u: Unit,
        attempt: u32,
        outcome: AttemptOutcome,
        elapsed: Duration,
        paused: bool,
    ) {
        let key = self.key(u);
        let label = self.label(u);
        let now = self.settings.clock.stamp();
        let log = log_bytes(&outcome.log);
        self.pending
            .changes
            .push(Change::write(layout::log(&key), log));
        let status = match &outcome.result {
            Ok(artifacts) => {
                self.pending.changes.push(Change::Remove {
                    path: layout::artifacts(&key),
                });
                for (name, value) in artifacts {
                    self.pending.changes.push(Change::write(
                        layout::artifact(&key, name),
                        to_file_bytes(value),
                    ));
                }
                *self.outputs_mut(u) = artifacts.clone();
                self.invalid.remove(&u);
                PhaseStatus::Completed
            }
            // An interrupt sends the phase back to pending: `wfe resume` runs it again.
            Err(AttemptError::Cancelled) if paused => PhaseStatus::Pending,
            // A provider outage pauses the run; `wfe resume` goes on.
            Err(AttemptError::Provider {
                failure: ProviderErrorKind::Exhausted,
                ..
            }) => PhaseStatus::Pending,
            Err(AttemptError::Cancelled) => PhaseStatus::Cancelled,
            Err(AttemptError::TimedOut { .. }) => PhaseStatus::TimedOut,
            Err(_) => PhaseStatus::Failed,
        };
        let agent = self.spec(u).kind == PhaseKind::Agent;
        // An agent sent back to pending keeps its conversation for the next
        // start; its attempt is not over, so nothing is archived yet.
        let continues = agent && status == PhaseStatus::Pending;
        if continues {
            if let Err(e @ AttemptError::Provider { .. }) = &outcome.result {
                self.provider_pause = Some(format!(
                    "{label} paused: {e}; `wfe resume {}` goes on",
                    self.record.id
                ));
            }
        } else if status != PhaseStatus::Completed {
            self.archive(u, attempt, &outcome);
        }
        // `approval: after`: the outputs are in, but dependants wait for a person.
        let status =
            if status == PhaseStatus::Completed && self.spec(u).approval == Some(Approval::After) {
                PhaseStatus::Waiting
            } else {
                status
            };
        if matches!(status, PhaseStatus::Completed | PhaseStatus::Waiting) && !self.record.auto {
            self.hold = true;
        }
        let error = outcome.result.as_ref().err().cloned();
        self.observer.event(&Event::PhaseFinished {
            phase: &label,
            status,
            attempt,
            duration: elapsed,
            error: error.as_ref(),
        });
        let state = self.state_mut(u);
        state.status = status;
        state.attempt = attempt;
        state.finished_at = (status != PhaseStatus::Pending).then_some(now);
        state.duration_ms = Some(elapsed.as_millis() as u64);
        state.exit_code = outcome.exit_code;
        state.continues = continues;
        if outcome.usage.is_some() {
            state.usage = outcome.usage;
        }
        state.artifacts = outcome
            .result
            .as_ref()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        state.error = error.clone();
        self.mark(u);
        let summary = match (&status, &error) {
            (PhaseStatus::Pending, _) => format!("{label} interrupted (attempt {attempt})"),
            (_, Some(e)) => format!("{label} {} (attempt {attempt}): {e}", status.as_str()),
            (_, None) => format!("{label} {} (attempt {attempt})", status.as_str()),
        };
        self.note(Some(u), finished_event(status), summary);
        // The code as the phase left it, so `wfe rollback --code` can bring it back.
        let snapshot = Change::Snapshot {
            path: WORKSPACE.to_string(),
        };
        if status != PhaseStatus::Pending
            && self.spec(u).snapshots(&self.template.defaults)
            && !self.pending.changes.contains(&snapshot)
        {
            self.pending.changes.push(snapshot);
        }
    }

    /// Keeps a failed attempt under `attempts/<n>/`: its error, its log and
    /// any rejected output, so nothing it produced is lost.
    fn archive(&mut self, u: Unit, attempt: u32, outcome: &AttemptOutcome) {
        let dir = layout::attempt(&self.key(u), attempt);
        if let Err(error) = &outcome.result {
            self.pending.changes.push(Change::write(
                format!("{dir}/error.json"),
                to_file_bytes(error),
            ));
        }
        self.pending.changes.push(Change::write(
            format!("{dir}/log.jsonl"),
            log_bytes(&outcome.log),
        ));
        for (name, bytes) in &outcome.rejected {
            self.pending.changes.push(Change::write(
                format!("{dir}/rejected/{name}.json"),
                bytes.clone(),
            ));
        }
    }

    /// Sets the run's final status once no phase is running.
    fn finish(&mut self, stop: Option<Stop>) -> RunStatus {
        self.settle_loops();
        let failed: Vec<String> = blocking_failures(&self.template, &self.states)
            .filter(|s| s.status != PhaseStatus::Cancelled)
            .map(|s| s.id.clone())
            .collect();
        let (status, reason) = if stop == Some(Stop::Cancel) {
            // Nothing left will ever run: say so in every phase, and in
            // every loop still going (with its children yet to run).
            for u in self.units() {
                let status = self.state(u).status;
                let cancel = matches!(status, PhaseStatus::Pending | PhaseStatus::Waiting)
                    || (status == PhaseStatus::Running && self.spec(u).kind == PhaseKind::Loop);
                if cancel {
                    self.state_mut(u).status = PhaseStatus::Cancelled;
                    self.mark(u);
                }
            }
            (
                RunStatus::Cancelled,
                Some("cancelled on request".to_string()),
            )
        } else if !failed.is_empty() {
            let s = if failed.len() == 1 { "" } else { "s" };
            (
                RunStatus::Failed,
                Some(format!("phase{s} {} failed", failed.join(", "))),
            )
        } else if stop == Some(Stop::Interrupt) {
            (RunStatus::Paused, Some("interrupted".to_string()))
        } else if let Some(reason) = self.provider_pause.take() {
            (RunStatus::Paused, Some(reason))
        } else if stop == Some(Stop::Pause) {
            (RunStatus::Paused, Some("paused on request".to_string()))
        } else if self.states.iter().all(|s| s.status.is_final()) {
            (RunStatus::Completed, None)
        } else if let Some(reason) = self.waiting() {
            (RunStatus::Waiting, Some(reason))
        } else {
            // Unreachable for a validated DAG: every pending phase becomes ready eventually.
            (
                RunStatus::Failed,
                Some("no phase can start: the DAG is blocked".to_string()),
            )
        };
        self.set_status(status, reason);
        status
    }

    /// Why the run cannot go on by itself, if only a person can move it:
    /// a phase waiting for approval, or auto mode off after a phase.
    fn waiting(&self) -> Option<String> {
        let run = &self.record.id;
        let waiting: Vec<&str> = self
            .states
            .iter()
            .filter(|s| s.status == PhaseStatus::Waiting)
            .map(|s| s.id.as_str())
            .collect();
        if let Some(first) = waiting.first() {
            return Some(format!(
                "{} waiting for approval: `wfe approve {run} {first}`",
                waiting.join(", ")
            ));
        }
        let pending = self
            .units()
            .into_iter()
            .any(|u| self.state(u).status == PhaseStatus::Pending);
        (self.hold && pending).then(|| format!("auto mode is off: `wfe continue {run}` goes on"))
    }
    /// Acts on a control request; the checkpoint names who asked.
    fn handle(
        &mut self,
        request: Request,
        stop: &mut Option<Stop>,
        cancel: &watch::Sender<bool>,
    ) -> Reply {
        let by = request.by.clone();
        let ok = |message: String| Reply { ok: true, message };
        let event = request.action.event();
        let reply = match request.action {
            Action::Pause => {
                stop.get_or_insert(Stop::Pause);
                self.note(None, event, format!("pause requested by {by}"));
                ok("the run pauses once its running phases end".into())
            }
            Action::Cancel => {
                *stop = Some(Stop::Cancel);
                let _ = cancel.send(true);
                self.note(None, event, format!("cancel requested by {by}"));
                ok("cancelled: running phases are being killed".into())
            }
            Action::Approve { phase, artifact } => match self.approve(&phase, artifact.as_ref()) {
                Ok(()) => {
                    self.note(
                        self.dag.index(&phase).map(Unit::Top),
                        event,
                        format!("{phase} approved by {by}"),
                    );
                    ok(format!("approved {phase}"))
                }
                Err(message) => return Reply { ok: false, message },
            },
            Action::Continue if self.hold => {
                self.hold = false;
                self.note(None, event, format!("continue requested by {by}"));
                ok("going on".into())
            }
            Action::Continue => {
                return Reply {
                    ok: false,
                    message: "nothing is waiting for `wfe continue`".into(),
                };
            }
            Action::Auto { on } => {
                self.record.auto = on;
                self.pending.record_dirty = true;
                if on {
                    self.hold = false;
                }
                self.note(
                    None,
                    event,
                    format!("auto mode {} by {by}", if on { "on" } else { "off" }),
                );
                ok(format!("auto mode is {}", if on { "on" } else { "off" }))
            }
        };
        self.pending.requested_by.push(by);
        reply
    }

    /// Completes a waiting phase, recording an attached artifact.
    fn approve(&mut self, phase: &str, artifact: Option<&Value>) -> Result<(), String> {
        let i = self
            .dag
            .index(phase)
            .ok_or_else(|| format!("run {} has no phase `{phase}`", self.record.id))?;
        let attach =
            control::check_approval(self.phase(i), &self.states[i], artifact, &self.schemas)?;
        if let Some((name, value)) = attach {
            self.pending.changes.push(Change::write(
                layout::artifact(phase, &name),
                to_file_bytes(&value),
            ));
            self.artifacts[i].insert(name.clone(), value);
            if !self.states[i].artifacts.contains(&name) {
                self.states[i].artifacts.push(name);
                self.states[i].artifacts.sort();
            }
        }
        let now = self.settings.clock.stamp();
        let state = &mut self.states[i];
        state.status = PhaseStatus::Completed;
        state.finished_at = Some(now);
        self.mark(Unit::Top(i));
        Ok(())
    }

    /// After a conflict: if every checkpoint another writer added since our
    /// tip only appended comments (which a live run accepts), moves our tip
    /// onto theirs and returns true; the runner's changes are whole files it
    /// alone writes, so they apply unchanged on top.
    fn rebase_over_comments(&mut self) -> Result<bool, EngineError> {
        let Some(theirs) = self.store.tip(&self.run)? else {
            return Ok(false);
        };
        let mut next = Some(theirs.clone());
        while let Some(id) = next {
            if id == self.tip {
                self.tip = theirs;
                return Ok(true);
            }
            let checkpoint = self.store.checkpoint(&id)?;
            if checkpoint.message.get("Wfe-Event") != Some(COMMENT_EVENT) {
                return Ok(false);
            }
            next = checkpoint.parent;
        }
        Ok(false)
    }

    /// Commits everything pending as one checkpoint (nothing if nothing changed).
    fn flush(&mut self) -> Result<(), EngineError> {
        if self.pending.events.is_empty()
            && self.pending.changes.is_empty()
            && self.pending.dirty.is_empty()
        {
            for ack in self.acks.drain(..) {
                let _ = ack.send(());
            }
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut changes = pending.changes;
        if pending.record_dirty {
            changes.push(Change::write(layout::RUN, to_file_bytes(&self.record)));
        }
        for u in pending.dirty {
            changes.push(Change::write(
                layout::state(&self.key(u)),
                to_file_bytes(self.state(u)),
            ));
        }
        let mut message = Message::new(format!("wfe: {}", pending.summaries.join("; ")))
            .trailer("Wfe-Run", self.run.as_str())
            .trailer("Wfe-Template", self.record.template.as_str());
        for (phase, event) in pending.events {
            if let Some(phase) = phase {
                message = message.trailer("Wfe-Phase", phase);
            }
            message = message.trailer("Wfe-Event", event);
        }
        for by in pending.requested_by {
            message = message.trailer("Wfe-Requested-By", by);
        }
        message = message.trailer("Wfe-Status", self.record.status.as_str());
        let id = loop {
            let time = self.settings.clock.epoch_seconds();
            match self
                .store
                .commit(&self.run, Some(&self.tip), &changes, &message, time)
            {
                Err(StoreError::Conflict { .. }) if self.rebase_over_comments()? => continue,
                other => break other?,
            }
        };
        self.observer.event(&Event::Checkpoint {
            id: &id,
            summary: &message.summary,
        });
        self.tip = id;
        // The agents' steps are in git now: they may go on.
        for ack in self.acks.drain(..) {
            let _ = ack.send(());
        }
        Ok(())
    }
}

/// The `Wfe-Event` of a phase reaching `status` at the end of an attempt.
fn finished_event(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Completed => "phase-completed",
        PhaseStatus::Waiting => "phase-waiting",
        PhaseStatus::Pending => "phase-interrupted",
        PhaseStatus::TimedOut => "phase-timed-out",
        PhaseStatus::Cancelled => "phase-cancelled",
        _ => "phase-failed",
    }
}

/// `WFE_ARG_<NAME>` for every top-level arg: strings as they are, other
/// values as compact JSON.
fn args_env(args: &Value) -> Vec<(String, String)> {
    let Some(map) = args.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(key, value)| {
            let name: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (format!("WFE_ARG_{name}"), text)
        })
        .collect()
}

/// A log as `log.jsonl`: one JSON object per line.
fn log_bytes(lines: &[LogLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        // LogLine is plain strings and numbers: serialising cannot fail.
        if let Ok(text) = serde_json::to_string(line) {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{self, Quiet};
    use crate::store::MemoryStore;

    struct Fixture {
        store: MemoryStore,
        dir: tempfile::TempDir,
        settings: Settings,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let settings = testing::settings(dir.path(), 2);
            Fixture {
                store: MemoryStore::new(),
                dir,
                settings,
            }
        }

        /// Creates a run of `phases` (JSON) with `args`; returns its id.
        fn create(&self, phases: Value, args: Value) -> RunId {
            let template: Template =
                serde_json::from_value(json!({ "name": "t", "phases": phases })).unwrap();
            let schemas = vec![
                (
                    "message".to_string(),
                    json!({ "type": "object", "required": ["text"] }),
                ),
                (
                    "result".to_string(),
                    json!({ "type": "object", "required": ["passed"] }),
                ),
            ];
            let new = NewRun {
                id: RunId::generate(),
                template,
                template_source: "test".into(),
                args,
                schemas,
                base_commit: "0".repeat(40),
                auto: true,
            };
            create(&self.store, &new, &Clock::system()).unwrap();
            new.id
        }

        async fn drive(&self, run: &RunId) -> RunStatus {
            testing::drive_quietly(&self.store, run, &self.settings).await
        }

        fn snapshot(&self, run: &RunId) -> RunSnapshot {
            RunSnapshot::load_tip(&self.store, run).unwrap()
        }

        fn status(&self, run: &RunId, phase: &str) -> PhaseStatus {
            self.snapshot(run).phase(phase).unwrap().status
        }

        /// Lines appended by phases to `ran.txt` (their side effects).
        fn ran(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("ran.txt"))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect()
        }
    }

    fn phase(id: &str, needs: &[&str], run: &str) -> Value {
        json!({ "id": id, "kind": "script", "needs": needs, "run": format!("echo {id} >> ran.txt; {run}") })
    }

    #[tokio::test]
    async fn a_chain_takes_one_checkpoint_per_phase_plus_start_and_creation() {
        let f = Fixture::new();
        let run = f.create(
            json!([
                phase("a", &[], "true"),
                phase("b", &["a"], "true"),
                phase("c", &["b"], "true")
            ]),
            json!({}),
        );
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        let summaries: Vec<String> = f
            .store
            .history(&run)
            .unwrap()
            .into_iter()
            .rev()
            .map(|c| c.message.summary)
            .collect();
        assert_eq!(
            summaries,
            [
                "wfe: run created from template t",
                "wfe: run started; a started (attempt 1)",
                "wfe: a completed (attempt 1); b started (attempt 1)",
                "wfe: b completed (attempt 1); c started (attempt 1)",
                "wfe: c completed (attempt 1); run completed",
            ]
        );
        assert_eq!(f.ran(), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_false_if_skips_the_phase_and_its_dependants_still_run() {
        let f = Fixture::new();
        let mut maybe = phase("maybe", &["a"], "true");
        maybe["if"] = json!("args.go");
        let run = f.create(
            json!([
                phase("a", &[], "true"),
                maybe,
                phase("z", &["maybe"], "test '{{ skipped | join(',') }}' = maybe")
            ]),
            json!({ "go": false }),
        );
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(f.status(&run, "maybe"), PhaseStatus::Skipped);
        assert_eq!(f.ran(), ["a", "z"]);
        let snap = f.snapshot(&run);
        assert_eq!(
            snap.phase("maybe").unwrap().skip_reason.as_deref(),
            Some("`if: args.go` is false")
        );
    }

    #[tokio::test]
    async fn a_failure_stops_new_phases_but_lets_running_ones_finish() {
        let f = Fixture::new();
        let run = f.create(
            json!([
                phase("bad", &[], "exit 3"),
                phase("next", &["bad"], "true"),
                phase("other", &[], "true")
            ]),
            json!({}),
        );
        assert_eq!(f.drive(&run).await, RunStatus::Failed);
        assert_eq!(f.status(&run, "bad"), PhaseStatus::Failed);
        assert_eq!(f.status(&run, "next"), PhaseStatus::Pending);
        assert_eq!(
            f.status(&run, "other"),
            PhaseStatus::Completed,
            "started alongside, it runs to its end"
        );
        let snap = f.snapshot(&run);
        assert_eq!(snap.record.reason.as_deref(), Some("phase bad failed"));
        assert_eq!(
            snap.phase("bad").unwrap().error,
            Some(AttemptError::Exit { code: 3 })
        );
    }

    #[tokio::test]
    async fn a_render_error_fails_the_phase_without_retrying() {
        let f = Fixture::new();
        let mut p = phase("p", &[], "true");
        p["run"] = json!("echo {{ args.x | nosuchfilter }}");
        p["retry"] = json!({ "max_attempts": 3, "backoff": "1ms" });
        let run = f.create(json!([p]), json!({}));
        assert_eq!(f.drive(&run).await, RunStatus::Failed);
        let snap = f.snapshot(&run);
        let state = snap.phase("p").unwrap();
        assert_eq!(state.attempt, 1);
        assert!(
            matches!(&state.error, Some(AttemptError::Render { field, .. }) if field == "run"),
            "{:?}",
            state.error
        );
        assert!(f.ran().is_empty());
    }

    #[tokio::test]
    async fn resuming_reruns_only_what_was_running() {
        let f = Fixture::new();
        let run = f.create(
            json!([
                phase("a", &[], "true"),
                phase("b", &["a"], "true"),
                phase("c", &["b"], "true")
            ]),
            json!({}),
        );
        // Forge what a runner killed inside `b` leaves behind: a done, b running.
        let tip = f.store.tip(&run).unwrap().unwrap();
        let mut a = PhaseState::pending("a", PhaseKind::Script);
        a.status = PhaseStatus::Completed;
        a.attempt = 1;
        let mut b = PhaseState::pending("b", PhaseKind::Script);
        b.status = PhaseStatus::Running;
        b.attempt = 1;
        let changes = [
            Change::write(layout::state("a"), to_file_bytes(&a)),
            Change::write(layout::state("b"), to_file_bytes(&b)),
        ];
        f.store
            .commit(&run, Some(&tip), &changes, &Message::new("forged"), 0)
            .unwrap();

        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(
            f.ran(),
            ["b", "c"],
            "a completed before the crash and never runs again"
        );
        let snap = f.snapshot(&run);
        assert_eq!(snap.phase("b").unwrap().attempt, 2);
        let archived = f
            .store
            .read(&snap.checkpoint, "phases/b/attempts/1/error.json")
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&archived).contains("interrupted"));
    }

    #[tokio::test]
    async fn outputs_are_validated_and_passed_to_dependants() {
        let f = Fixture::new();
        let mut make = phase(
            "make",
            &[],
            "echo '{\"text\": \"hi\"}' > \"$WFE_OUT/note.json\"",
        );
        make["outputs"] = json!({ "note": "message" });
        let mut bad = phase("bad", &[], "echo '{}' > \"$WFE_OUT/note.json\"");
        bad["outputs"] = json!({ "note": "message" });
        bad["on_failure"] = json!("continue");
        let use_it = phase(
            "use",
            &["make"],
            "test \"$(cat $WFE_IN/make/note.json | tr -d ' \\n')\" = '{\"text\":\"hi\"}' && test '{{ artifacts.make.note.text }}' = hi",
        );
        let run = f.create(json!([make, bad, use_it]), json!({}));
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(f.status(&run, "use"), PhaseStatus::Completed);
        assert_eq!(f.status(&run, "bad"), PhaseStatus::Failed);
        let snap = f.snapshot(&run);
        assert_eq!(
            snap.artifact(&f.store, "make", "note").unwrap(),
            Some(json!({ "text": "hi" }))
        );
        assert_eq!(snap.artifact(&f.store, "bad", "note").unwrap(), None);
        let rejected = f
            .store
            .read(&snap.checkpoint, "phases/bad/attempts/1/rejected/note.json")
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&rejected).trim(), "{}");
    }

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let policy: RetryPolicy = serde_json::from_value(
            json!({"max_attempts": 5, "backoff": "2s", "max_backoff": "5s"}),
        )
        .unwrap();
        let cases = [(1, 2.0), (2, 4.0), (3, 5.0), (10, 5.0)];
        for (attempt, full) in cases {
            let wait = backoff(Some(&policy), attempt).as_secs_f64();
            assert!(
                wait >= full / 2.0 - 1e-9 && wait <= full + 1e-9,
                "attempt {attempt}: {wait}s not in [{}, {full}]",
                full / 2.0
            );
        }
    }

    #[test]
    fn args_become_upper_case_env() {
        let env = args_env(&json!({"feature": "x y", "max-count": 3, "deep": {"a": true}}));
        assert_eq!(
            env,
            vec![
                ("WFE_ARG_DEEP".to_string(), "{\"a\":true}".to_string()),
                ("WFE_ARG_FEATURE".to_string(), "x y".to_string()),
                ("WFE_ARG_MAX_COUNT".to_string(), "3".to_string()),
            ]
        );
    }

    /// A loop `fix` of `children` repeated until `until` (at most `max`).
    fn loop_phase(needs: &[&str], until: Option<&str>, max: u32, children: Value) -> Value {
        let mut phase = json!({ "id": "fix", "kind": "loop", "needs": needs, "max_iters": max, "phases": children });
        if let Some(until) = until {
            phase["until"] = json!(until);
        }
        phase
    }

    /// A child that writes `result` with `passed` true from iteration `from`
    /// on, its iteration, and what `previous` held of itself.
    fn tester(id: &str, needs: &[&str], from: u32) -> Value {
        let mut p = phase(
            id,
            needs,
            &format!(
                "echo '{{\"passed\": {{{{ (loop.iteration >= {from}) | tojson }}}}, \"iteration\": {{{{ loop.iteration }}}}, \"env\": '$WFE_ITERATION', \"prev\": {{{{ previous.{id}.result.iteration | default(0) }}}}}}' > \"$WFE_OUT/result.json\""
            ),
        );
        p["outputs"] = json!({ "result": "result" });
        p
    }

    fn summaries(f: &Fixture, run: &RunId) -> Vec<String> {
        f.store
            .history(run)
            .unwrap()
            .into_iter()
            .rev()
            .map(|c| c.message.summary)
            .collect()
    }

    #[tokio::test]
    async fn a_loop_repeats_until_its_condition_holds_and_dependants_see_the_last_iteration() {
        let f = Fixture::new();
        let run = f.create(
            json!([
                phase("build", &[], "true"),
                loop_phase(
                    &["build"],
                    Some("artifacts.test.result.passed"),
                    5,
                    json!([
                        phase("change", &[], "test \"$WFE_LOOP\" = fix"),
                        tester("test", &["change"], 3),
                    ])
                ),
                phase(
                    "after",
                    &["fix"],
                    "test {{ artifacts.test.result.iteration }} = 3 && grep -q '\"iteration\": 3' \"$WFE_IN/test/result.json\""
                ),
            ]),
            json!({}),
        );
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(
            f.ran(),
            [
                "build", "change", "test", "change", "test", "change", "test", "after"
            ]
        );
        let snap = f.snapshot(&run);
        let fix = snap.phase("fix").unwrap();
        assert_eq!(
            (fix.status, fix.iteration, fix.exhausted, fix.attempt),
            (PhaseStatus::Completed, 3, false, 1)
        );
        assert_eq!(f.status(&run, "after"), PhaseStatus::Completed);
        for k in 1..=3u32 {
            let result = snap
                .artifact(&f.store, &layout::child_key("fix", k, "test"), "result")
                .unwrap()
                .unwrap();
            assert_eq!(
                result,
                json!({ "passed": k == 3, "iteration": k, "env": k, "prev": k - 1 }),
                "iteration {k} kept its own artifact; `previous` held the one before"
            );
        }
        let tests = snap.iteration(&f.store, "fix", 2).unwrap();
        assert_eq!(tests[1].iteration, 2);
        assert_eq!(tests[1].status, PhaseStatus::Completed);
        assert_eq!(snap.children["fix"][1].iteration, 3);
        let doc = snap.to_json();
        assert_eq!(doc["phases"][1]["iteration"], 3);
        assert_eq!(doc["phases"][1]["children"][1]["id"], "test");
        assert!(doc["phases"][0].get("iteration").is_none());
        let summaries = summaries(&f, &run);
        assert!(
            summaries.contains(
                &"wfe: fix[1]/test completed (attempt 1); fix iteration 2 of 5 started; fix[2]/change started (attempt 1)".to_string()
            ),
            "the end of an iteration and the start of the next fold into one checkpoint: {summaries:#?}"
        );
        assert!(
            summaries.contains(
                &"wfe: fix[3]/test completed (attempt 1); fix completed after 3 iterations; after started (attempt 1)".to_string()
            ),
            "{summaries:#?}"
        );
        let trailers = f.store.history(&run).unwrap()[1].message.clone();
        assert_eq!(
            trailers.get("Wfe-Phase"),
            Some("fix/iterations/3/test"),
            "a child's Wfe-Phase is its path under phases/"
        );
    }

    #[tokio::test]
    async fn an_exhausted_loop_fails_or_completes_as_on_exhausted_says() {
        for (on_exhausted, run_status, loop_status) in [
            (None, RunStatus::Failed, PhaseStatus::Failed),
            (Some("fail"), RunStatus::Failed, PhaseStatus::Failed),
            (
                Some("continue"),
                RunStatus::Completed,
                PhaseStatus::Completed,
            ),
        ] {
            let f = Fixture::new();
            let mut fix = loop_phase(
                &[],
                Some("artifacts.test.result.passed"),
                2,
                json!([tester("test", &[], 99)]),
            );
            if let Some(choice) = on_exhausted {
                fix["on_exhausted"] = json!(choice);
            }
            let run = f.create(json!([fix, phase("after", &["fix"], "true")]), json!({}));
            assert_eq!(f.drive(&run).await, run_status, "{on_exhausted:?}");
            let snap = f.snapshot(&run);
            let state = snap.phase("fix").unwrap();
            assert_eq!(state.status, loop_status, "{on_exhausted:?}");
            assert_eq!(state.iteration, 2);
            assert_eq!(
                f.ran(),
                if run_status == RunStatus::Completed {
                    vec!["test", "test", "after"]
                } else {
                    vec!["test", "test"]
                }
            );
            if loop_status == PhaseStatus::Failed {
                assert_eq!(
                    state.error,
                    Some(AttemptError::Exhausted {
                        until: "artifacts.test.result.passed".into(),
                        iterations: 2
                    })
                );
                assert_eq!(snap.record.reason.as_deref(), Some("phase fix failed"));
                assert_eq!(f.status(&run, "after"), PhaseStatus::Pending);
                assert!(
                    f.store
                        .read(&snap.checkpoint, "phases/fix/attempts/1/error.json")
                        .unwrap()
                        .is_some()
                );
            } else {
                assert!(state.exhausted);
                assert_eq!(state.error, None);
            }
        }
    }

    #[tokio::test]
    async fn a_failing_child_fails_its_loop_unless_it_may_continue() {
        let f = Fixture::new();
        let mut flaky = phase("flaky", &[], "exit 1");
        flaky["on_failure"] = json!("continue");
        let run = f.create(
            json!([
                loop_phase(
                    &[],
                    None,
                    3,
                    json!([
                        flaky,
                        phase(
                            "a",
                            &["flaky"],
                            "if [ {{ loop.iteration }} = 2 ]; then exit 4; fi"
                        ),
                        phase("b", &["a"], "true"),
                    ])
                ),
                phase("after", &["fix"], "true"),
            ]),
            json!({}),
        );
        assert_eq!(f.drive(&run).await, RunStatus::Failed);
        assert_eq!(f.ran(), ["flaky", "a", "b", "flaky", "a"]);
        let snap = f.snapshot(&run);
        let fix = snap.phase("fix").unwrap();
        assert_eq!((fix.status, fix.iteration), (PhaseStatus::Failed, 2));
        assert_eq!(
            fix.error,
            Some(AttemptError::ChildFailed {
                phase: "a".into(),
                iteration: 2,
                status: "failed".into(),
                message: Some("the script exited with code 4".into()),
            })
        );
        let children: Vec<PhaseStatus> = snap.children["fix"].iter().map(|c| c.status).collect();
        assert_eq!(
            children,
            [
                PhaseStatus::Failed,
                PhaseStatus::Failed,
                PhaseStatus::Pending
            ],
            "b never started"
        );
        assert_eq!(f.status(&run, "after"), PhaseStatus::Pending);
        assert_eq!(snap.record.reason.as_deref(), Some("phase fix failed"));
        assert!(!resumable(&snap));
    }

    #[tokio::test]
    async fn a_loop_without_until_runs_max_iters_even_when_every_child_is_skipped() {
        let f = Fixture::new();
        let mut never = phase("never", &[], "true");
        never["if"] = json!("loop.iteration > 5");
        let run = f.create(json!([loop_phase(&[], None, 3, json!([never]))]), json!({}));
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert!(f.ran().is_empty());
        let snap = f.snapshot(&run);
        assert_eq!(snap.phase("fix").unwrap().iteration, 3);
        assert!(!snap.phase("fix").unwrap().exhausted);
        assert_eq!(snap.children["fix"][0].status, PhaseStatus::Skipped);
    }

    /// Commits `files` (path, JSON) on top of the run's tip.
    fn forge(f: &Fixture, run: &RunId, files: &[(String, Value)]) {
        let tip = f.store.tip(run).unwrap().unwrap();
        let changes: Vec<Change> = files
            .iter()
            .map(|(path, value)| Change::write(path.clone(), to_file_bytes(value)))
            .collect();
        f.store
            .commit(run, Some(&tip), &changes, &Message::new("forged"), 0)
            .unwrap();
    }

    fn forged_state(id: &str, status: PhaseStatus, attempt: u32, iteration: u32) -> Value {
        let kind = if id == "fix" {
            PhaseKind::Loop
        } else {
            PhaseKind::Script
        };
        let mut state = PhaseState::pending(id, kind);
        state.status = status;
        state.attempt = attempt;
        state.iteration = iteration;
        if id == "b" && status == PhaseStatus::Completed {
            state.artifacts = vec!["result".into()];
        }
        serde_json::to_value(state).unwrap()
    }

    #[tokio::test]
    async fn resuming_mid_loop_reruns_only_the_child_that_was_running() {
        let f = Fixture::new();
        let run = f.create(
            json!([loop_phase(
                &[],
                Some("artifacts.b.result.passed"),
                5,
                json!([phase("a", &[], "true"), tester("b", &["a"], 3)])
            )]),
            json!({}),
        );
        // What a runner killed inside iteration 2's `b` leaves behind.
        let key = |k, id| layout::child_key("fix", k, id);
        use PhaseStatus::{Completed, Running};
        forge(
            &f,
            &run,
            &[
                (layout::state("fix"), forged_state("fix", Running, 1, 2)),
                (
                    layout::state(&key(1, "a")),
                    forged_state("a", Completed, 1, 1),
                ),
                (
                    layout::state(&key(1, "b")),
                    forged_state("b", Completed, 1, 1),
                ),
                (
                    layout::artifact(&key(1, "b"), "result"),
                    json!({ "passed": false, "iteration": 1 }),
                ),
                (
                    layout::state(&key(2, "a")),
                    forged_state("a", Completed, 1, 2),
                ),
                (
                    layout::state(&key(2, "b")),
                    forged_state("b", Running, 1, 2),
                ),
            ],
        );

        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(
            f.ran(),
            ["b", "a", "b"],
            "iteration 2's a completed before the crash and never runs again"
        );
        let snap = f.snapshot(&run);
        assert_eq!(snap.phase("fix").unwrap().iteration, 3);
        let second = snap.iteration(&f.store, "fix", 2).unwrap();
        assert_eq!((second[1].status, second[1].attempt), (Completed, 2));
        let result = snap
            .artifact(&f.store, &key(2, "b"), "result")
            .unwrap()
            .unwrap();
        assert_eq!(result["prev"], 1, "`previous` was rebuilt from iteration 1");
        let archived = f
            .store
            .read(
                &snap.checkpoint,
                "phases/fix/iterations/2/b/attempts/1/error.json",
            )
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&archived).contains("interrupted"));
    }

    #[tokio::test]
    async fn a_loop_sent_back_to_pending_starts_over_and_keeps_its_old_iterations() {
        let f = Fixture::new();
        let run = f.create(
            json!([loop_phase(&[], None, 2, json!([phase("a", &[], "true")]))]),
            json!({}),
        );
        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        // What `wfe retry RUN fix` leaves: the loop pending, its attempt
        // and (here) its iteration as they were, the run paused.
        let snap = f.snapshot(&run);
        let mut fix = snap.phase("fix").unwrap().clone();
        fix.status = PhaseStatus::Pending;
        let mut record = snap.record.clone();
        record.status = RunStatus::Paused;
        forge(
            &f,
            &run,
            &[
                (layout::state("fix"), serde_json::to_value(&fix).unwrap()),
                (
                    layout::RUN.to_string(),
                    serde_json::to_value(&record).unwrap(),
                ),
            ],
        );
        assert!(
            f.snapshot(&run).children.is_empty(),
            "a pending loop shows no iteration"
        );

        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(f.ran(), ["a", "a", "a", "a"]);
        let snap = f.snapshot(&run);
        let fix = snap.phase("fix").unwrap();
        assert_eq!((fix.attempt, fix.iteration), (2, 2));
        for k in 1..=2 {
            let old = format!("phases/fix/attempts/1/iterations/{k}/a/state.json");
            assert!(
                f.store.read(&snap.checkpoint, &old).unwrap().is_some(),
                "{old}"
            );
        }
        let summaries = summaries(&f, &run);
        assert!(
            summaries
                .iter()
                .any(|s| s.contains("fix: iterations of attempt 1 moved under attempts/1/")),
            "{summaries:#?}"
        );
    }

    #[test]
    fn only_loops_of_scripts_and_agents_are_runnable() {
        let template = |fix: Value| -> Template {
            serde_json::from_value(json!({ "name": "t", "phases": [fix] })).unwrap()
        };
        let ok = loop_phase(&[], None, 2, json!([phase("a", &[], "true")]));
        assert!(ensure_runnable(&template(ok.clone())).is_ok());
        let agent = json!([{ "id": "fix", "kind": "agent", "prompt": "fix it" }]);
        assert!(ensure_runnable(&template(loop_phase(&[], None, 2, agent))).is_ok());
        let mut timed = ok.clone();
        timed["timeout"] = json!("1m");
        let mut approved = ok.clone();
        approved["phases"][0]["approval"] = json!("after");
        let cases = [
            (
                loop_phase(&[], None, 2, json!([{ "id": "g", "kind": "gate" }])),
                "phase `g` cannot run: it is a gate phase inside loop `fix`",
            ),
            (
                loop_phase(&[], None, 2, json!([ok.clone()])),
                "phase `fix` cannot run: it is a loop phase inside loop `fix`",
            ),
            (
                timed,
                "phase `fix` cannot run: `timeout` on a loop is not supported",
            ),
            (
                approved,
                "phase `a` cannot run: `approval` inside loop `fix` is not supported",
            ),
        ];
        for (fix, expected) in cases {
            let message = ensure_runnable(&template(fix)).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message}");
        }
    }

    #[tokio::test]
    async fn an_interrupt_inside_a_loop_pauses_the_run_and_resume_goes_on_in_that_iteration() {
        let f = Fixture::new();
        let fifo = f.dir.path().join("running.fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let block = format!(
            "if [ $WFE_ITERATION = 2 ] && [ $WFE_ATTEMPT = 1 ]; then echo go > {}; sleep 1000; fi",
            fifo.display()
        );
        let run = f.create(
            json!([loop_phase(
                &[],
                None,
                2,
                json!([phase("a", &[], "true"), phase("b", &["a"], &block)])
            )]),
            json!({}),
        );
        let (tx, rx) = watch::channel(false);
        let (status, ()) = tokio::join!(
            drive(&f.store, &run, &f.settings, Arc::new(Quiet), rx),
            async {
                let fifo = fifo.clone();
                tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo))
                    .await
                    .unwrap()
                    .unwrap();
                tx.send(true).unwrap();
            }
        );
        assert_eq!(status.unwrap(), RunStatus::Paused);
        let snap = f.snapshot(&run);
        let fix = snap.phase("fix").unwrap();
        assert_eq!((fix.status, fix.iteration), (PhaseStatus::Running, 2));
        let b = &snap.children["fix"][1];
        assert_eq!(
            (b.status, b.attempt),
            (PhaseStatus::Pending, 1),
            "the killed child goes back to pending"
        );

        assert_eq!(f.drive(&run).await, RunStatus::Completed);
        assert_eq!(f.ran(), ["a", "b", "a", "b", "b"]);
        let snap = f.snapshot(&run);
        assert_eq!(snap.children["fix"][1].attempt, 2);
    }

    #[tokio::test]
    async fn cancelling_a_run_without_its_runner_cancels_the_loop_and_its_open_children() {
        let f = Fixture::new();
        let run = f.create(
            json!([loop_phase(
                &[],
                None,
                3,
                json!([phase("a", &[], "true"), phase("b", &["a"], "true")])
            )]),
            json!({}),
        );
        let key = |id| layout::child_key("fix", 2, id);
        use PhaseStatus::{Completed, Running};
        forge(
            &f,
            &run,
            &[
                (layout::state("fix"), forged_state("fix", Running, 1, 2)),
                (
                    layout::state(&layout::child_key("fix", 1, "a")),
                    forged_state("a", Completed, 1, 1),
                ),
                (
                    layout::state(&layout::child_key("fix", 1, "b")),
                    forged_state("b", Completed, 1, 1),
                ),
                (layout::state(&key("a")), forged_state("a", Completed, 1, 2)),
                (layout::state(&key("b")), forged_state("b", Running, 1, 2)),
            ],
        );
        super::super::manual::control_offline(
            &f.store,
            &run,
            &Action::Cancel,
            "me",
            &Clock::system(),
        )
        .unwrap();
        let snap = f.snapshot(&run);
        assert_eq!(snap.record.status, RunStatus::Cancelled);
        assert_eq!(snap.phase("fix").unwrap().status, PhaseStatus::Cancelled);
        let children: Vec<PhaseStatus> = snap.children["fix"].iter().map(|c| c.status).collect();
        assert_eq!(children, [Completed, PhaseStatus::Cancelled]);
    }
}
