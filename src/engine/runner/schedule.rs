//! Scheduling: which units may start now, what their templates see, and
//! the steps that need no process (a false `if`, a gate, a loop's start).

use std::time::Duration;

use serde_json::{Value, json};

use super::launch::Launch;
use super::{Runner, Unit};
use crate::attempt::AttemptError;
use crate::engine::{CheckpointEvent, Event, PhaseStatus, StopReason, Transition};
use crate::template::{PhaseKind, expr};

impl Runner<'_> {
    /// The units whose artifacts `u` reads: its top-level ancestors (for a
    /// completed loop, the children of its last iteration), and for a
    /// loop's child also its ancestors among its siblings, this iteration
    /// (inside a nested loop, those of each enclosing loop too).
    pub(super) fn upstream(&self, u: Unit) -> Vec<Unit> {
        let mut out = Vec::new();
        for a in self.dag.ancestors(self.top(u)) {
            self.add_upstream(Unit::Top(a), &mut out);
        }
        let mut enclosing = Vec::new();
        let mut v = u;
        while let Unit::Child { parent, child } = v {
            enclosing.push((parent, child));
            v = self.loops[parent].owner;
        }
        for (parent, child) in enclosing.into_iter().rev() {
            for c in self.loops[parent].dag.ancestors(child) {
                self.add_upstream(Unit::Child { parent, child: c }, &mut out);
            }
        }
        out
    }

    /// Adds what dependants of `a` read: `a` itself, or for a loop the
    /// children of its last iteration.
    fn add_upstream(&self, a: Unit, out: &mut Vec<Unit>) {
        match self.slot(a) {
            // Like a skipped phase, a loop that failed (`on_failure:
            // continue`) leaves its dependants nothing.
            Some(s) => {
                if self.state(a).status == PhaseStatus::Completed {
                    let children = self.loops[s].states.len();
                    out.extend((0..children).map(|child| Unit::Child { parent: s, child }));
                }
            }
            None => out.push(a),
        }
    }

    /// `artifacts` of a context: the artifacts of `units` by phase id; a
    /// matrix's combinations by the matrix phase's id, then by combination
    /// (`artifacts.test["python=3.11"].report`).
    pub(super) fn artifacts_json(&self, units: &[Unit]) -> serde_json::Map<String, Value> {
        let mut artifacts = serde_json::Map::new();
        for &v in units {
            let found = self.outputs(v);
            if found.is_empty() {
                continue;
            }
            match &self.spec(v).combination {
                Some(c) => {
                    let by_key = artifacts.entry(c.of.clone()).or_insert_with(|| json!({}));
                    if let Value::Object(by_key) = by_key {
                        by_key.insert(c.key.clone(), json!(found));
                    }
                }
                None => {
                    artifacts.insert(self.id(v).to_string(), json!(found));
                }
            }
        }
        artifacts
    }

    /// The template context of a unit: args, the artifacts upstream of it,
    /// the run and the phase; for a loop's child also `loop` and
    /// `previous` (see [`Runner::loop_context`]).
    pub(super) fn context(&self, u: Unit) -> Value {
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
            "phase": { "id": self.id(u), "attempt": self.state(u).attempt.saturating_add(1) },
        });
        if let Some(c) = &self.spec(u).combination {
            let values: serde_json::Map<String, Value> = c.values.iter().cloned().collect();
            context["matrix"] = Value::Object(values);
        }
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
    pub(super) fn ready(&self) -> Vec<Unit> {
        let mut ready: Vec<Unit> = self
            .dag
            .ready(
                |i| self.states[i].status == PhaseStatus::Pending,
                |n| self.satisfied(Unit::Top(n)),
            )
            .into_iter()
            .map(Unit::Top)
            .filter(|&u| self.mine(u))
            .collect();
        for (parent, l) in self.loops.iter().enumerate() {
            if !self.loop_running(parent) || self.doomed(parent) {
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
    pub(super) fn schedule(&mut self, mut running: usize) -> Vec<Launch> {
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
                if self.matrix_full(u) {
                    continue;
                }
                if let Some(reason) = self.not_handed_over(u) {
                    self.skip(u, reason);
                    progressed = true;
                    continue;
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
                    (_, PhaseKind::Gate) => self.await_approval(u),
                    (_, PhaseKind::Loop) => {
                        if let Some(s) = self.slot(u) {
                            self.start_loop(s);
                        }
                        progressed = true;
                    }
                    _ => match self.prepare(u, &context) {
                        Ok(mut launch) => {
                            self.start(u);
                            launch.scratch = self.scratch_dir(u);
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

    /// Whether `u` is a matrix combination whose matrix already runs
    /// `max_parallel` combinations.
    fn matrix_full(&self, u: Unit) -> bool {
        let Some((of, max)) = self
            .spec(u)
            .combination
            .as_ref()
            .and_then(|c| Some((&c.of, c.max_parallel?)))
        else {
            return false;
        };
        let running = self
            .template
            .phases
            .iter()
            .zip(&self.states)
            .filter(|(p, s)| {
                s.status == PhaseStatus::Running
                    && p.combination.as_ref().is_some_and(|c| &c.of == of)
            })
            .count();
        running >= max as usize
    }

    /// Why a ready unit that loops hand over to (`on_exhausted: {"next":
    /// …}`) is skipped: none of them ran out (each ended with `until`
    /// true, failed, or was skipped). A fallback runs only when handed
    /// over to; its dependants then go on as after any skipped phase.
    fn not_handed_over(&self, u: Unit) -> Option<String> {
        let Unit::Top(i) = u else { return None };
        let id = self.dag.id(i);
        let sources: Vec<usize> = (0..self.states.len())
            .filter(|&l| self.phase(l).on_exhausted.as_ref().and_then(|o| o.next()) == Some(id))
            .collect();
        if sources.is_empty()
            || sources.iter().any(|&l| {
                self.states[l].status == PhaseStatus::Completed && self.states[l].exhausted
            })
        {
            return None;
        }
        let names: Vec<String> = sources
            .iter()
            .map(|&l| format!("`{}`", self.dag.id(l)))
            .collect();
        Some(format!(
            "{} did not run out (it runs only as their on_exhausted: next)",
            names.join(", ")
        ))
    }

    /// A gate that became ready waits for a person to approve it (inside
    /// a loop, its iteration waits with it).
    pub(super) fn await_approval(&mut self, u: Unit) {
        let id = self.label(u);
        self.transition(u, Transition::Wait);
        self.observer.event(&Event::PhaseFinished {
            phase: &id,
            status: PhaseStatus::Waiting,
            attempt: 0,
            duration: Duration::ZERO,
            error: None,
        });
        self.note(
            Some(u),
            CheckpointEvent::PhaseWaiting,
            format!("{id} waiting for approval"),
        );
    }

    pub(super) fn skip(&mut self, u: Unit, reason: String) {
        let label = self.label(u);
        self.observer.event(&Event::PhaseSkipped {
            phase: &label,
            reason: &reason,
        });
        self.transition(u, Transition::Skip { reason });
        self.note(
            Some(u),
            CheckpointEvent::PhaseSkipped,
            format!("{label} skipped"),
        );
    }

    /// Why the run cannot go on by itself, if only a person can move it:
    /// a phase waiting for approval, or auto mode off after a phase.
    /// A loop's child is named as `wfe approve` takes it: `CHILD@K`.
    pub(super) fn waiting(&self) -> Option<StopReason> {
        let waiting: Vec<String> = self
            .units()
            .into_iter()
            .filter(|&u| self.state(u).status == PhaseStatus::Waiting)
            .map(|u| self.address(u))
            .collect();
        if !waiting.is_empty() {
            return Some(StopReason::WaitingForApproval { phases: waiting });
        }
        let pending = self
            .units()
            .into_iter()
            .any(|u| self.state(u).status == PhaseStatus::Pending);
        (self.hold && pending).then_some(StopReason::AutoOff)
    }
}
