//! Control requests from other processes (pause, cancel, approve,
//! continue, auto), acted on by the live runner at its next safe point.

use serde_json::Value;
use tokio::sync::watch;

use super::{Runner, Stop, Unit};
use crate::budget::Raise;
use crate::engine::control::{Action, Reply, Request};
use crate::engine::operations::{
    approve_budget, approve_phase, artifact_on_budget_pause, is_budget_pause, not_paused_at_budget,
};
use crate::engine::{layout, to_file_bytes};
use crate::store::Change;

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
                Ok(budget) => {
                    let (note, reply) = match budget {
                        Some(summary) => (summary.clone(), summary),
                        None => (format!("{phase} approved"), format!("approved {phase}")),
                    };
                    self.note(
                        self.dag.index(&phase).map(Unit::Top),
                        event,
                        format!("{note} by {by}"),
                    );
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

    /// Completes a waiting phase, recording an attached artifact; a phase
    /// paused at a budget goes on instead, its budget raised as asked.
    /// Returns what was done to a budget, if that is what was approved.
    pub(super) fn approve(
        &mut self,
        phase: &str,
        artifact: Option<&Value>,
        raise: Option<&Raise>,
    ) -> Result<Option<String>, String> {
        let i = self
            .dag
            .index(phase)
            .ok_or_else(|| format!("run {} has no phase `{phase}`", self.record.id))?;
        let now = self.settings.clock.stamp();
        let spec = &self.template.phases[i];
        if is_budget_pause(&self.states[i]) {
            if artifact.is_some() {
                return Err(artifact_on_budget_pause(phase));
            }
            let run_spend = super::run_spend(&self.states);
            let summary = approve_budget(
                spec,
                &mut self.states[i],
                &mut self.record,
                raise,
                run_spend,
                &now,
            )?;
            self.pending.record_dirty = true;
            self.mark(Unit::Top(i));
            return Ok(Some(summary));
        }
        if raise.is_some() {
            return Err(not_paused_at_budget(phase));
        }
        let attach = approve_phase(spec, &mut self.states[i], artifact, &self.schemas, &now)?;
        self.mark(Unit::Top(i));
        if let Some((name, value)) = attach {
            self.pending.changes.push(Change::write(
                layout::artifact(phase, &name),
                to_file_bytes(&value),
            ));
            self.artifacts[i].insert(name, value);
        }
        Ok(None)
    }
}
