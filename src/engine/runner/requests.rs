//! Control requests from other processes (pause, cancel, approve,
//! continue, auto), acted on by the live runner at its next safe point.

use serde_json::Value;
use tokio::sync::watch;

use super::{Runner, Stop, Unit};
use crate::budget::Raise;
use crate::engine::PhaseStatus;
use crate::engine::control::{Action, Reply, Request};
use crate::engine::operations::{
    approve_budget, approve_phase, artifact_on_budget_pause, check_iteration, is_budget_pause,
    not_paused_at_budget, split_address,
};
use crate::engine::{layout, to_file_bytes};
use crate::store::Change;
use crate::template::PhaseKind;

impl Runner<'_> {
    /// Acts on a control request; the checkpoint names who asked.
    pub(super) fn handle(
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
            Action::Approve {
                phase,
                artifact,
                budget,
            } => match self.approve(&phase, artifact.as_ref(), budget.as_ref()) {
                Ok((u, budget)) => {
                    let phase = self.address(u);
                    let (note, reply) = match budget {
                        Some(summary) => (summary.clone(), summary),
                        None => (format!("{phase} approved"), format!("approved {phase}")),
                    };
                    self.note(Some(u), event, format!("{note} by {by}"));
                    ok(reply)
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
                    message: "nothing is held back waiting to continue".into(),
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

    /// Completes a waiting phase, recording an attached artifact; a loop's
    /// child is named `CHILD` or `CHILD@K` (its current iteration). A phase
    /// paused at a budget goes on instead, its budget raised as asked.
    /// Returns the unit approved, and what was done to a budget if that is
    /// what was approved.
    pub(super) fn approve(
        &mut self,
        asked: &str,
        artifact: Option<&Value>,
        raise: Option<&Raise>,
    ) -> Result<(Unit, Option<String>), String> {
        let u = self.addressed(asked)?;
        let now = self.settings.clock.stamp();
        let spec = self.spec(u).clone();
        if is_budget_pause(self.state(u)) {
            if artifact.is_some() {
                return Err(artifact_on_budget_pause(asked));
            }
            let run_spend = super::run_spend(&self.states);
            let mut state = self.state(u).clone();
            let summary =
                approve_budget(&spec, &mut state, &mut self.record, raise, run_spend, &now)?;
            *self.state_mut(u) = state;
            self.pending.record_dirty = true;
            self.mark(u);
            return Ok((u, Some(summary)));
        }
        if raise.is_some() {
            return Err(not_paused_at_budget(asked));
        }
        let schemas = self.schemas.clone();
        let attach = approve_phase(&spec, self.state_mut(u), artifact, &schemas, &now)?;
        self.mark(u);
        if let Some((name, value)) = attach {
            self.pending.changes.push(Change::write(
                layout::artifact(&self.key(u), &name),
                to_file_bytes(&value),
            ));
            self.outputs_mut(u).insert(name, value);
        }
        Ok((u, None))
    }

    /// The unit `asked` names: a top-level phase, or a loop's child in
    /// the loop's current iteration (inside a nested loop, in the current
    /// iterations of the loops around it).
    fn addressed(&self, asked: &str) -> Result<Unit, String> {
        let run = &self.record.id;
        let (id, at) = split_address(asked).ok_or_else(|| {
            format!("`{asked}` is not a phase: expected PHASE, or CHILD@N for a loop's child in iteration N")
        })?;
        if let Some(i) = self.dag.index(id) {
            if at.is_some() {
                return Err(format!("`{id}` is not inside a loop: approve it as `{id}`"));
            }
            return Ok(Unit::Top(i));
        }
        for (parent, l) in self.loops.iter().enumerate() {
            let phase = self.spec(l.owner);
            if phase.kind != PhaseKind::Loop {
                continue;
            }
            let Some(child) = phase.phases.iter().position(|c| c.id == id) else {
                continue;
            };
            let started = self
                .loop_status(parent)
                .is_some_and(|s| s != PhaseStatus::Pending);
            if !started || l.iteration == 0 || child >= l.states.len() {
                return Err(format!(
                    "phase `{id}` is inside loop `{}`, which has not started an iteration",
                    phase.id
                ));
            }
            let u = Unit::Child { parent, child };
            check_iteration(id, &phase.id, &self.iterations_of(u), at.as_deref())?;
            return Ok(u);
        }
        Err(format!("run {run} has no phase `{id}`"))
    }
}
