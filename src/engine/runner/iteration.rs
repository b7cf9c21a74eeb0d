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
use crate::template::{Approval, OnExhausted, OnFailure, Phase, PhaseKind};
use crate::time::format_stamp;

/// Refuses loops this version cannot run: loops inside loops, and
/// settings a loop has no use for (`retry`, `timeout`: its children take
/// them). Template validation refuses the same; this guards templates
/// frozen into runs by other versions.
pub(super) fn ensure_runnable(phase: &Phase) -> Result<(), EngineError> {
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
    for child in &phase.phases {
        if child.kind == PhaseKind::Loop {
            return refuse(
                &child.id,
                Unrunnable::LoopInLoop {
                    parent: phase.id.clone(),
                },
            );
        }
    }
    Ok(())
}

/// The iterations of one loop, as the runner keeps them.
#[derive(Debug, Clone)]
pub(super) struct LoopState {
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

impl Default for LoopState {
    /// Not started (and the state of every phase that is not a loop).
    fn default() -> Self {
        LoopState {
            iteration: 0,
            dag: Dag::new(&[]),
            states: Vec::new(),
            artifacts: Vec::new(),
            previous: Vec::new(),
        }
    }
}

impl LoopState {
    /// A loop's iterations before the first, its children known.
    fn new(phase: &Phase) -> Self {
        let n = phase.phases.len();
        LoopState {
            iteration: 0,
            dag: Dag::new(&phase.phases),
            states: Vec::new(),
            artifacts: vec![BTreeMap::new(); n],
            previous: vec![BTreeMap::new(); n],
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
    /// while running, the iteration before's for `previous`). A loop sent
    /// back to pending after it ran has its old iterations set aside.
    pub(super) fn load_loops(&mut self, snapshot: &RunSnapshot) -> Result<(), EngineError> {
        for p in 0..self.states.len() {
            let phase = self.template.phases[p].clone();
            if phase.kind != PhaseKind::Loop {
                continue;
            }
            let state = &self.states[p];
            let (status, k) = (state.status, state.iteration);
            if status == PhaseStatus::Pending {
                if state.attempt > 0 {
                    self.set_aside_iterations(p)?;
                }
                continue;
            }
            if k == 0 {
                // Started without an iteration (never written by a runner,
                // which starts both in one checkpoint): begin the first.
                if status == PhaseStatus::Running {
                    self.loops[p] = LoopState::new(&phase);
                    self.begin_iteration(p, 1);
                }
                continue;
            }
            let mut l = LoopState::new(&phase);
            l.iteration = k;
            l.states = snapshot
                .children
                .get(&phase.id)
                .cloned()
                .unwrap_or_default();
            for (c, (spec, child)) in phase.phases.iter().zip(&l.states).enumerate() {
                let key = layout::child_key(&phase.id, k, &spec.id);
                let (found, problems) =
                    load_artifacts(self.store, snapshot, &self.schemas, spec, child, &key)?;
                l.artifacts[c] = found;
                if !problems.is_empty() {
                    self.invalid.insert(
                        Unit::Child {
                            parent: p,
                            child: c,
                        },
                        problems,
                    );
                }
            }
            if status == PhaseStatus::Running && k > 1 {
                let before = snapshot.iteration(self.store, &phase.id, k - 1)?;
                for (c, (spec, child)) in phase.phases.iter().zip(&before).enumerate() {
                    let key = layout::child_key(&phase.id, k - 1, &spec.id);
                    // Only context for the children: checked when they were made.
                    let (found, _) =
                        load_artifacts(self.store, snapshot, &self.schemas, spec, child, &key)?;
                    l.previous[c] = found;
                }
            }
            self.loops[p] = l;
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

    /// Starts loop `i` (a new attempt) at iteration 1.
    pub(super) fn start_loop(&mut self, i: usize) {
        self.start(Unit::Top(i));
        let state = &mut self.states[i];
        state.error = None;
        state.exhausted = false;
        self.loops[i] = LoopState::new(&self.template.phases[i]);
        self.begin_iteration(i, 1);
    }

    /// Starts iteration `k` of loop `p`: its children are created pending
    /// (their state files are written with the loop's), and the artifacts
    /// of the iteration that ended become `previous`.
    fn begin_iteration(&mut self, p: usize, k: u32) {
        // Children marked for the next checkpoint still belong to the
        // iteration that ends: write them now, before their units name the
        // new one.
        let dirty = std::mem::take(&mut self.pending.dirty);
        let (ended, rest): (Vec<Unit>, Vec<Unit>) = dirty
            .into_iter()
            .partition(|u| matches!(u, Unit::Child { parent, .. } if *parent == p));
        for u in ended {
            let path = layout::state(&self.key(u));
            let bytes = to_file_bytes(self.state(u));
            self.pending.changes.push(Change::write(path, bytes));
        }
        self.pending.dirty = rest;
        self.invalid
            .retain(|u, _| !matches!(u, Unit::Child { parent, .. } if *parent == p));

        let phase = &self.template.phases[p];
        let id = phase.id.clone();
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
        let l = &mut self.loops[p];
        let ended = std::mem::replace(&mut l.artifacts, vec![BTreeMap::new(); n]);
        l.previous = if k > 1 {
            ended
        } else {
            vec![BTreeMap::new(); n]
        };
        l.iteration = k;
        l.states = states;
        self.states[p].iteration = k;
        self.mark(Unit::Top(p));
        for child in 0..n {
            self.mark(Unit::Child { parent: p, child });
        }
        self.observer.event(&Event::IterationStarted {
            phase: &id,
            iteration: k,
            max_iters,
            children: n,
        });
        self.note(
            Some(Unit::Top(p)),
            CheckpointEvent::IterationStarted,
            format!("{id} iteration {k} of {max_iters} started"),
        );
    }

    /// The child of loop `p` that failed with `on_failure: stop` in the
    /// current iteration, if one did.
    fn blocking_child(&self, p: usize) -> Option<usize> {
        let l = &self.loops[p];
        (0..l.states.len()).find(|&child| {
            l.states[child].status.is_failure()
                && self.on_failure(Unit::Child { parent: p, child }) == OnFailure::Stop
        })
    }

    /// True when loop `p` is bound to fail: a child failed with
    /// `on_failure: stop`. No other child starts; the loop fails once the
    /// running ones end.
    pub(super) fn doomed(&self, p: usize) -> bool {
        self.blocking_child(p).is_some()
    }

    /// Ends the iterations that are over, starting the next or ending
    /// their loop; true if any loop moved on.
    pub(super) fn settle_loops(&mut self) -> bool {
        let mut moved = false;
        for p in 0..self.states.len() {
            if self.phase(p).kind != PhaseKind::Loop
                || self.states[p].status != PhaseStatus::Running
            {
                continue;
            }
            match self.verdict(p) {
                None => continue,
                Some(Verdict::Next) => {
                    let next = self.loops[p].iteration.saturating_add(1);
                    self.begin_iteration(p, next);
                }
                Some(Verdict::Completed { exhausted }) => {
                    self.conclude(p, PhaseStatus::Completed, None, exhausted);
                }
                Some(Verdict::Failed { status, error }) => {
                    self.conclude(p, status, Some(error), false);
                }
            }
            moved = true;
        }
        moved
    }

    /// How the current iteration of loop `p` ends, once it is over.
    fn verdict(&self, p: usize) -> Option<Verdict> {
        let l = &self.loops[p];
        let phase = self.phase(p);
        if let Some(c) = self.blocking_child(p) {
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
            match crate::template::expr::eval_condition(until, &self.until_context(p)) {
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

    /// Ends loop `p` with `status`: like a phase's last attempt (approval
    /// after, auto mode, the error kept under `attempts/<n>/`), timed from
    /// the loop's start.
    fn conclude(
        &mut self,
        p: usize,
        status: PhaseStatus,
        error: Option<AttemptError>,
        exhausted: bool,
    ) {
        let id = self.dag.id(p).to_string();
        let iterations = self.loops[p].iteration;
        let attempt = self.states[p].attempt;
        let now = self.settings.clock.now();
        let elapsed = self.states[p]
            .started_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339_weak(at).ok())
            .and_then(|start| now.duration_since(start).ok())
            .unwrap_or_default();
        let status = if status == PhaseStatus::Completed
            && self.phase(p).approval == Some(Approval::After)
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
                layout::attempt_error(&id, attempt),
                to_file_bytes(error),
            ));
        }
        self.observer.event(&Event::PhaseFinished {
            phase: &id,
            status,
            attempt,
            duration: elapsed,
            error: error.as_ref(),
        });
        self.transition_at(Unit::Top(p), ending(status, false), &format_stamp(now));
        let state = &mut self.states[p];
        state.duration_ms = Some(elapsed.as_millis() as u64);
        state.error = error.clone();
        state.exhausted = exhausted;
        let s = if iterations == 1 { "" } else { "s" };
        let summary = match (&error, exhausted) {
            (Some(e), _) => format!("{id} {} (attempt {attempt}): {e}", status.as_str()),
            (None, true) => {
                let then = match self.phase(p).on_exhausted.as_ref().and_then(|o| o.next()) {
                    Some(next) => format!("on_exhausted: next `{next}`"),
                    None => "on_exhausted: continue".to_string(),
                };
                format!(
                    "{id} {} after {iterations} iteration{s}, `until` still false ({then})",
                    status.as_str()
                )
            }
            (None, false) => format!("{id} {} after {iterations} iteration{s}", status.as_str()),
        };
        self.note(Some(Unit::Top(p)), finished_event(status), summary);
    }

    /// What `until` sees once an iteration is over: args, the artifacts
    /// upstream of the loop and this iteration's children's (by child id),
    /// `loop` and `previous`.
    fn until_context(&self, p: usize) -> Value {
        let mut units = self.upstream(Unit::Top(p));
        let children = self.loops[p].states.len();
        units.extend((0..children).map(|child| Unit::Child { parent: p, child }));
        let (this_loop, previous) = self.loop_context(p);
        json!({
            "args": self.record.args,
            "artifacts": self.artifacts_json(&units),
            "run": { "id": self.record.id, "template": self.record.template },
            "loop": this_loop,
            "previous": previous,
        })
    }

    /// For the children of loop `p`: `loop` (`id`, `iteration`,
    /// `max_iters`) and `previous` (the artifacts of the iteration before,
    /// by child id; empty in the first).
    pub(super) fn loop_context(&self, p: usize) -> (Value, Value) {
        let l = &self.loops[p];
        let phase = self.phase(p);
        let previous: serde_json::Map<String, Value> = phase
            .phases
            .iter()
            .zip(&l.previous)
            .filter(|(_, found)| !found.is_empty())
            .map(|(c, found)| (c.id.clone(), json!(found)))
            .collect();
        let this_loop = json!({
            "id": phase.id,
            "iteration": l.iteration,
            "max_iters": phase.max_iters.unwrap_or(1),
        });
        (this_loop, Value::Object(previous))
    }

    /// The iteration before's artifacts as inputs for a child of loop `p`:
    /// `$WFE_IN/previous.<child>/<name>.json` (a phase id has no `.`, so
    /// they never meet a sibling's `$WFE_IN/<child>/`).
    pub(super) fn previous_inputs(&self, p: usize) -> Vec<(String, String, Vec<u8>)> {
        let l = &self.loops[p];
        let mut inputs = Vec::new();
        for (c, found) in self.phase(p).phases.iter().zip(&l.previous) {
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
    /// iteration its loops started.
    pub(super) fn progress(&self) -> (usize, usize) {
        let mut total = self.states.len();
        let mut done = self.states.iter().filter(|s| s.status.is_final()).count();
        for l in self.loops.iter().filter(|l| l.iteration > 0) {
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
