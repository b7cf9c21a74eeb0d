//! Loops: a loop's child phases run again, iteration after iteration,
//! until `until` holds.
//!
//! A loop that starts gets iteration 1: its children are created pending
//! under `phases/<loop>/iterations/1/` and the runner schedules them as
//! units, like any phase (same `jobs`, retries, timeouts, outputs, `if`).
//! Once every child of iteration k has ended, `until` is evaluated over
//! this iteration's artifacts: true completes the loop; false starts
//! iteration k+1, or after `max_iters` fails the loop (`on_exhausted:
//! fail`) or completes it marked `exhausted` (`on_exhausted: continue`).
//! Without `until`, a loop runs `max_iters` iterations and completes. A
//! child that fails with `on_failure: stop` fails its loop once the
//! siblings still running have ended; the loop's own `on_failure` then
//! decides for the run.
//!
//! The loop's `state.json` holds its current iteration, and every
//! iteration keeps its children's files, so a runner that dies
//! mid-iteration goes on where it was. A loop sent back to pending after it
//! ran (`wfe retry`) starts over at iteration 1 as its next attempt, with
//! the iterations of its last attempt moved under `attempts/<n>/iterations/`.
//!
//! A loop inside a loop (two deep at most) is a child of its enclosing
//! loop like any other: each iteration of the outer loop starts a new
//! instance of it at iteration 1, and the outer iteration ends only once
//! it has. Each loop has a slot in the runner (see [`LoopState::slots`]),
//! so a nested loop's children are units like a top-level loop's, their
//! files under `phases/<outer>/iterations/<j>/<inner>/iterations/<k>/`.
//!
//! This module only adds what loops need; starting, preparing and
//! finishing a child are the runner's steps for every unit.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::finish::{ending, finished_event};
use super::{Runner, Unit, load_artifacts};
use crate::attempt::AttemptError;
use crate::engine::{
    CheckpointEvent, Dag, EngineError, Event, PhaseState, PhaseStatus, RunSnapshot, Unrunnable,
    layout, to_file_bytes,
};
use crate::store::{Change, CheckpointId, EntryKind, RunStore};
use crate::template::{
    Approval, MAX_LOOP_DEPTH, OnExhausted, OnFailure, Phase, PhaseKind, Template,
};
use crate::time::format_stamp;

/// Refuses loops this version cannot run: loops nested deeper than
/// [`MAX_LOOP_DEPTH`], `on_exhausted: {"next": …}` on a loop inside a loop
/// (a fallback is a top-level phase), and settings a loop has no use for
/// (`retry`, `timeout`: its children take them). Template validation
/// refuses the same; this guards templates frozen into runs by other
/// versions.
pub(super) fn ensure_runnable(phase: &Phase) -> Result<(), EngineError> {
    ensure_runnable_at(phase, 1)
}

/// [`ensure_runnable`] for a loop at `depth` (1 at the top level).
fn ensure_runnable_at(phase: &Phase, depth: usize) -> Result<(), EngineError> {
    let refuse = |id: &str, reason: Unrunnable| {
        Err(EngineError::NotRunnable {
            phase: id.to_string(),
            reason,
        })
    };
    if phase.retry.is_some() {
        return refuse(&phase.id, Unrunnable::RetryOnLoop);
    }
    if phase.timeout.is_some() {
        return refuse(&phase.id, Unrunnable::TimeoutOnLoop);
    }
    if depth > 1 && phase.on_exhausted.as_ref().and_then(|o| o.next()).is_some() {
        return refuse(&phase.id, Unrunnable::NextInNestedLoop);
    }
    for child in &phase.phases {
        if child.kind == PhaseKind::Loop {
            if depth >= MAX_LOOP_DEPTH {
                return refuse(
                    &child.id,
                    Unrunnable::LoopInLoop {
                        parent: phase.id.clone(),
                    },
                );
            }
            ensure_runnable_at(child, depth + 1)?;
        }
    }
    Ok(())
}

/// The iterations of one loop, as the runner keeps them: for a loop
/// inside a loop, those of its instance in the enclosing loop's current
/// iteration (a new instance starts over when that iteration starts it).
#[derive(Debug, Clone)]
pub(super) struct LoopState {
    /// The loop itself as a unit: `Top(i)` for a top-level loop, a child
    /// of its enclosing loop's slot for a nested one.
    pub(super) owner: Unit,
    /// The slot of each child that is a loop, by child index.
    pub(super) slots: Vec<Option<usize>>,
    /// The current (or last) iteration, from 1; 0 before the loop starts.
    pub(super) iteration: u32,
    /// The DAG of the loop's children.
    pub(super) dag: Dag,
    /// The children's states in the current iteration, in template order.
    pub(super) states: Vec<PhaseState>,
    /// The children's artifacts in the current iteration.
    pub(super) artifacts: Vec<BTreeMap<String, Value>>,
    /// The children's artifacts in the iteration before (empty in the first).
    pub(super) previous: Vec<BTreeMap<String, Value>>,
}

impl LoopState {
    /// Not started (and the state of every phase that is not a loop).
    fn empty(owner: Unit) -> Self {
        LoopState {
            owner,
            slots: Vec::new(),
            iteration: 0,
            dag: Dag::new(&[]),
            states: Vec::new(),
            artifacts: Vec::new(),
            previous: Vec::new(),
        }
    }

    /// Every slot of a template: one per top-level phase (by index), then
    /// one per loop inside a loop, depth first, each knowing its owner and
    /// its children's slots.
    pub(super) fn slots(template: &Template) -> Vec<LoopState> {
        let mut slots: Vec<LoopState> = (0..template.phases.len())
            .map(|i| LoopState::empty(Unit::Top(i)))
            .collect();
        for (i, phase) in template.phases.iter().enumerate() {
            if phase.kind == PhaseKind::Loop {
                add_nested(&mut slots, i, phase);
            }
        }
        slots
    }

    /// Before its first iteration: the children known, the slots kept.
    fn reset(&mut self, phase: &Phase) {
        let n = phase.phases.len();
        self.iteration = 0;
        self.dag = Dag::new(&phase.phases);
        self.states = Vec::new();
        self.artifacts = vec![BTreeMap::new(); n];
        self.previous = vec![BTreeMap::new(); n];
    }
}

/// Gives every loop among `phase`'s children (the loop in slot `s`) a
/// slot of its own, and theirs in turn.
fn add_nested(slots: &mut Vec<LoopState>, s: usize, phase: &Phase) {
    slots[s].slots = vec![None; phase.phases.len()];
    for (c, child) in phase.phases.iter().enumerate() {
        if child.kind == PhaseKind::Loop {
            let inner = slots.len();
            slots.push(LoopState::empty(Unit::Child {
                parent: s,
                child: c,
            }));
            slots[s].slots[c] = Some(inner);
            add_nested(slots, inner, child);
        }
    }
}

/// How an iteration whose children have all ended (or must stop) ends.
enum Verdict {
    /// `until` is false and iterations are left: start the next one.
    Next,
    /// The loop ends well; `exhausted` when `max_iters` ran out first.
    Completed { exhausted: bool },
    /// The loop fails (or is cancelled, when its failing child was).
    Failed {
        status: PhaseStatus,
        error: AttemptError,
    },
}

impl Runner<'_> {
    /// Rebuilds the iterations of every loop that has started, from the
    /// tip: the current iteration's children with their artifacts (and,
    /// while running, the iteration before's for `previous`), then those
    /// of the loops inside them in that iteration. A loop sent back to
    /// pending after it ran has its old iterations set aside.
    pub(super) fn load_loops(&mut self, snapshot: &RunSnapshot) -> Result<(), EngineError> {
        for p in 0..self.states.len() {
            if self.template.phases[p].kind != PhaseKind::Loop {
                continue;
            }
            let state = &self.states[p];
            if state.status == PhaseStatus::Pending && state.attempt > 0 {
                self.set_aside_iterations(p)?;
                continue;
            }
            self.load_loop(snapshot, p)?;
        }
        Ok(())
    }

    /// Loads the loop in slot `s` (its state as its owner unit has it) and
    /// the loops inside its current iteration.
    fn load_loop(&mut self, snapshot: &RunSnapshot, s: usize) -> Result<(), EngineError> {
        let owner = self.loops[s].owner;
        let phase = self.spec(owner).clone();
        let state = self.state(owner);
        let (status, k) = (state.status, state.iteration);
        if status == PhaseStatus::Pending {
            return Ok(());
        }
        if k == 0 {
            // Started without an iteration (never written by a runner,
            // which starts both in one checkpoint): begin the first.
            if status == PhaseStatus::Running {
                self.loops[s].reset(&phase);
                self.begin_iteration(s, 1);
            }
            return Ok(());
        }
        self.loops[s].reset(&phase);
        self.loops[s].iteration = k;
        let key = self.key(owner);
        let states = match owner {
            Unit::Top(_) => snapshot
                .children
                .get(&phase.id)
                .cloned()
                .unwrap_or_default(),
            Unit::Child { .. } => snapshot.iteration_at(self.store, &phase, &key, k)?,
        };
        let mut artifacts = vec![BTreeMap::new(); phase.phases.len()];
        for (c, (spec, child)) in phase.phases.iter().zip(&states).enumerate() {
            let child_key = layout::child_key(&key, k, &spec.id);
            let (found, problems) =
                load_artifacts(self.store, snapshot, &self.schemas, spec, child, &child_key)?;
            artifacts[c] = found;
            if !problems.is_empty() {
                self.invalid.insert(
                    Unit::Child {
                        parent: s,
                        child: c,
                    },
                    problems,
                );
            }
        }
        let mut previous = vec![BTreeMap::new(); phase.phases.len()];
        if status == PhaseStatus::Running && k > 1 {
            let before = snapshot.iteration_at(self.store, &phase, &key, k - 1)?;
            for (c, (spec, child)) in phase.phases.iter().zip(&before).enumerate() {
                let child_key = layout::child_key(&key, k - 1, &spec.id);
                // Only context for the children: checked when they were made.
                let (found, _) =
                    load_artifacts(self.store, snapshot, &self.schemas, spec, child, &child_key)?;
                previous[c] = found;
            }
        }
        let l = &mut self.loops[s];
        l.states = states;
        l.artifacts = artifacts;
        l.previous = previous;
        let inner: Vec<usize> = l.slots.iter().flatten().copied().collect();
        for inner in inner {
            self.load_loop(snapshot, inner)?;
        }
        Ok(())
    }

    /// Moves the iterations of loop `p`'s last attempt (still in the tree
    /// when `wfe retry` sent the loop back to pending) under
    /// `attempts/<n>/iterations/`, so its next attempt starts at
    /// iteration 1 with nothing of the old one in the way, and nothing of
    /// it lost.
    fn set_aside_iterations(&mut self, p: usize) -> Result<(), EngineError> {
        let id = self.dag.id(p).to_string();
        let attempt = self.states[p].attempt;
        let from = layout::iterations(&id);
        let to = layout::attempt_iterations(&id, attempt);
        let mut moved = Vec::new();
        copy_tree(self.store, &self.tip, &from, &to, &mut moved)?;
        if !moved.is_empty() {
            self.pending.changes.extend(moved);
            self.pending.changes.push(Change::Remove { path: from });
            self.note(
                Some(Unit::Top(p)),
                CheckpointEvent::IterationsSetAside,
                format!("{id}: iterations of attempt {attempt} moved under attempts/{attempt}/"),
            );
        }
        if self.states[p].iteration != 0 {
            self.states[p].iteration = 0;
            self.mark(Unit::Top(p));
        }
        Ok(())
    }

    /// Starts the loop in slot `s` (a new attempt, or a nested loop's
    /// instance in its enclosing loop's iteration) at iteration 1.
    pub(super) fn start_loop(&mut self, s: usize) {
        let owner = self.loops[s].owner;
        self.start(owner);
        let state = self.state_mut(owner);
        state.error = None;
        state.exhausted = false;
        let phase = self.spec(owner).clone();
        self.loops[s].reset(&phase);
        self.begin_iteration(s, 1);
    }

    /// Starts iteration `k` of the loop in slot `s`: its children are
    /// created pending (their state files are written with the loop's),
    /// and the artifacts of the iteration that ended become `previous`.
    fn begin_iteration(&mut self, s: usize, k: u32) {
        // Units marked for the next checkpoint that are inside this loop
        // still belong to the iteration that ends: write them now, before
        // their keys name the new one.
        let dirty = std::mem::take(&mut self.pending.dirty);
        let (ended, rest): (Vec<Unit>, Vec<Unit>) =
            dirty.into_iter().partition(|&u| self.within(u, s));
        for u in ended {
            let path = layout::state(&self.key(u));
            let bytes = to_file_bytes(self.state(u));
            self.pending.changes.push(Change::write(path, bytes));
        }
        self.pending.dirty = rest;
        let invalid = std::mem::take(&mut self.invalid);
        self.invalid = invalid
            .into_iter()
            .filter(|(u, _)| !self.within(*u, s))
            .collect();

        let owner = self.loops[s].owner;
        let phase = self.spec(owner);
        let label = self.label(owner);
        let max_iters = phase.max_iters.unwrap_or(1);
        let states: Vec<PhaseState> = phase
            .phases
            .iter()
            .map(|c| PhaseState {
                iteration: k,
                ..PhaseState::pending(&c.id, c.kind)
            })
            .collect();
        let n = states.len();
        let l = &mut self.loops[s];
        let ended = std::mem::replace(&mut l.artifacts, vec![BTreeMap::new(); n]);
        l.previous = if k > 1 {
            ended
        } else {
            vec![BTreeMap::new(); n]
        };
        l.iteration = k;
        l.states = states;
        self.state_mut(owner).iteration = k;
        self.mark(owner);
        for child in 0..n {
            self.mark(Unit::Child { parent: s, child });
        }
        self.observer.event(&Event::IterationStarted {
            phase: &label,
            iteration: k,
            max_iters,
            children: n,
        });
        self.note(
            Some(owner),
            CheckpointEvent::IterationStarted,
            format!("{label} iteration {k} of {max_iters} started"),
        );
    }

    /// The child of the loop in slot `s` that failed with `on_failure:
    /// stop` in the current iteration, if one did.
    fn blocking_child(&self, s: usize) -> Option<usize> {
        let l = &self.loops[s];
        (0..l.states.len()).find(|&child| {
            l.states[child].status.is_failure()
                && self.on_failure(Unit::Child { parent: s, child }) == OnFailure::Stop
        })
    }

    /// True when the loop in slot `s` is bound to fail: a child failed
    /// with `on_failure: stop`. No other child starts; the loop fails once
    /// the running ones end.
    pub(super) fn doomed(&self, s: usize) -> bool {
        self.blocking_child(s).is_some()
    }

    /// Ends the iterations that are over, starting the next or ending
    /// their loop; true if any loop moved on. Inner loops settle first,
    /// so an iteration that holds one sees it ended.
    pub(super) fn settle_loops(&mut self) -> bool {
        let mut moved = false;
        for s in (0..self.loops.len()).rev() {
            let owner = self.loops[s].owner;
            if self.spec(owner).kind != PhaseKind::Loop || !self.loop_running(s) {
                continue;
            }
            match self.verdict(s) {
                None => continue,
                Some(Verdict::Next) => {
                    let next = self.loops[s].iteration.saturating_add(1);
                    self.begin_iteration(s, next);
                }
                Some(Verdict::Completed { exhausted }) => {
                    self.conclude(s, PhaseStatus::Completed, None, exhausted);
                }
                Some(Verdict::Failed { status, error }) => {
                    self.conclude(s, status, Some(error), false);
                }
            }
            moved = true;
        }
        moved
    }

    /// How the current iteration of the loop in slot `s` ends, once it is over.
    fn verdict(&self, s: usize) -> Option<Verdict> {
        let l = &self.loops[s];
        let phase = self.spec(l.owner);
        if let Some(c) = self.blocking_child(s) {
            if l.states.iter().any(|s| s.status == PhaseStatus::Running) {
                return None;
            }
            let child = &l.states[c];
            let status = if child.status == PhaseStatus::Cancelled {
                PhaseStatus::Cancelled
            } else {
                PhaseStatus::Failed
            };
            let error = AttemptError::ChildFailed {
                phase: child.id.clone(),
                iteration: l.iteration,
                status: child.status.as_str().to_string(),
                message: child.error.as_ref().map(ToString::to_string),
            };
            return Some(Verdict::Failed { status, error });
        }
        if !l.states.iter().all(|s| s.status.is_final()) {
            return None;
        }
        let max_iters = phase.max_iters.unwrap_or(1);
        let left = l.iteration < max_iters;
        let Some(until) = &phase.until else {
            return Some(if left {
                Verdict::Next
            } else {
                Verdict::Completed { exhausted: false }
            });
        };
        Some(
            match crate::template::expr::eval_condition(until, &self.until_context(s)) {
                Err(e) => Verdict::Failed {
                    status: PhaseStatus::Failed,
                    error: AttemptError::Render {
                        field: "until".into(),
                        message: e.message,
                    },
                },
                Ok(true) => Verdict::Completed { exhausted: false },
                Ok(false) if left => Verdict::Next,
                Ok(false) => match phase.on_exhausted.as_ref().unwrap_or(&OnExhausted::Fail) {
                    OnExhausted::Continue | OnExhausted::Next(_) => {
                        Verdict::Completed { exhausted: true }
                    }
                    OnExhausted::Fail => Verdict::Failed {
                        status: PhaseStatus::Failed,
                        error: AttemptError::Exhausted {
                            until: until.clone(),
                            iterations: l.iteration,
                        },
                    },
                },
            },
        )
    }

    /// Ends the loop in slot `s` with `status`: like a phase's last attempt
    /// (approval after, auto mode, the error kept under `attempts/<n>/`),
    /// timed from the loop's start.
    fn conclude(
        &mut self,
        s: usize,
        status: PhaseStatus,
        error: Option<AttemptError>,
        exhausted: bool,
    ) {
        let owner = self.loops[s].owner;
        let label = self.label(owner);
        let key = self.key(owner);
        let iterations = self.loops[s].iteration;
        let attempt = self.state(owner).attempt;
        let now = self.settings.clock.now();
        let elapsed = self
            .state(owner)
            .started_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
            .and_then(|start| now.duration_since(start).ok())
            .unwrap_or_default();
        let status = if status == PhaseStatus::Completed
            && self.spec(owner).approval == Some(Approval::After)
        {
            PhaseStatus::Waiting
        } else {
            status
        };
        if matches!(status, PhaseStatus::Completed | PhaseStatus::Waiting) && !self.record.auto {
            self.hold = true;
        }
        if let Some(error) = &error {
            self.pending.changes.push(Change::write(
                layout::attempt_error(&key, attempt),
                to_file_bytes(error),
            ));
        }
        self.observer.event(&Event::PhaseFinished {
            phase: &label,
            status,
            attempt,
            duration: elapsed,
            error: error.as_ref(),
        });
        self.transition_at(owner, ending(status, false), &format_stamp(now));
        let state = self.state_mut(owner);
        state.duration_ms = Some(elapsed.as_millis() as u64);
        state.error = error.clone();
        state.exhausted = exhausted;
        let s = if iterations == 1 { "" } else { "s" };
        let summary = match (&error, exhausted) {
            (Some(e), _) => format!("{label} {} (attempt {attempt}): {e}", status.as_str()),
            (None, true) => {
                let then = match self
                    .spec(owner)
                    .on_exhausted
                    .as_ref()
                    .and_then(|o| o.next())
                {
                    Some(next) => format!("on_exhausted: next `{next}`"),
                    None => "on_exhausted: continue".to_string(),
                };
                format!(
                    "{label} {} after {iterations} iteration{s}, `until` still false ({then})",
                    status.as_str()
                )
            }
            (None, false) => {
                format!(
                    "{label} {} after {iterations} iteration{s}",
                    status.as_str()
                )
            }
        };
        self.note(Some(owner), finished_event(status), summary);
    }

    /// What `until` sees once an iteration is over: args, the artifacts
    /// upstream of the loop and this iteration's children's (by child id),
    /// `loop` and `previous`.
    fn until_context(&self, s: usize) -> Value {
        let owner = self.loops[s].owner;
        let mut units = self.upstream(owner);
        let children = self.loops[s].states.len();
        units.extend((0..children).map(|child| Unit::Child { parent: s, child }));
        let (this_loop, previous) = self.loop_context(s);
        json!({
            "args": self.record.args,
            "artifacts": self.artifacts_json(&units),
            "run": { "id": self.record.id, "template": self.record.template },
            "loop": this_loop,
            "previous": previous,
        })
    }

    /// For the children of the loop in slot `s`: `loop` (`id`,
    /// `iteration`, `max_iters`, and inside a nested loop `parent`: the
    /// enclosing loop's, with its own `previous`) and `previous` (the
    /// artifacts of the iteration before, by child id; empty in the first).
    pub(super) fn loop_context(&self, s: usize) -> (Value, Value) {
        let l = &self.loops[s];
        let phase = self.spec(l.owner);
        let previous: serde_json::Map<String, Value> = phase
            .phases
            .iter()
            .zip(&l.previous)
            .filter(|(_, found)| !found.is_empty())
            .map(|(c, found)| (c.id.clone(), json!(found)))
            .collect();
        let mut this_loop = json!({
            "id": phase.id,
            "iteration": l.iteration,
            "max_iters": phase.max_iters.unwrap_or(1),
        });
        if let Unit::Child { parent, .. } = l.owner {
            let (mut outer, outer_previous) = self.loop_context(parent);
            outer["previous"] = outer_previous;
            this_loop["parent"] = outer;
        }
        (this_loop, Value::Object(previous))
    }

    /// The iteration before's artifacts as inputs for a child of the loop
    /// in slot `s`: `$WFE_IN/previous.<child>/<name>.json` (a phase id has
    /// no `.`, so they never meet a sibling's `$WFE_IN/<child>/`).
    pub(super) fn previous_inputs(&self, s: usize) -> Vec<(String, String, Vec<u8>)> {
        let l = &self.loops[s];
        let mut inputs = Vec::new();
        for (c, found) in self.spec(l.owner).phases.iter().zip(&l.previous) {
            for (name, value) in found {
                inputs.push((
                    format!("previous.{}", c.id),
                    name.clone(),
                    to_file_bytes(value),
                ));
            }
        }
        inputs
    }

    /// How many units the run has so far and how many have ended, for
    /// progress displays: its top-level phases, plus the children of every
    /// iteration its loops started (a nested loop's in its current
    /// instance).
    pub(super) fn progress(&self) -> (usize, usize) {
        let mut total = self.states.len();
        let mut done = self.states.iter().filter(|s| s.status.is_final()).count();
        for (s, l) in self.loops.iter().enumerate() {
            let live = self
                .loop_status(s)
                .is_some_and(|st| st != PhaseStatus::Pending);
            if l.iteration == 0 || !live {
                continue;
            }
            let n = l.states.len();
            let before = (l.iteration as usize - 1) * n;
            total += before + n;
            done += before + l.states.iter().filter(|s| s.status.is_final()).count();
        }
        (total, done)
    }
}

/// Adds a write to `out` for every file under `from` (read at `at`), at
/// the same place under `to`.
fn copy_tree(
    store: &dyn RunStore,
    at: &CheckpointId,
    from: &str,
    to: &str,
    out: &mut Vec<Change>,
) -> Result<(), EngineError> {
    for (name, kind) in store.list_dir(at, from)? {
        let (source, target) = (format!("{from}/{name}"), format!("{to}/{name}"));
        match kind {
            EntryKind::Dir => copy_tree(store, at, &source, &target, out)?,
            EntryKind::File => {
                if let Some(bytes) = store.read(at, &source)? {
                    out.push(Change::write(target, bytes));
                }
            }
        }
    }
    Ok(())
}
