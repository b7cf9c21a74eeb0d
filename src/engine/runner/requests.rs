//! Control requests from other processes (pause, cancel, approve,
//! continue, auto), acted on by the live runner at its next safe point.

use serde_json::Value;
use tokio::sync::watch;

use super::{Runner, Stop, Unit};
use crate::engine::control::{Action, Reply, Request};
use crate::engine::operations::approve_phase;
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

    /// Completes a waiting phase, recording an attached artifact.
    pub(super) fn approve(&mut self, phase: &str, artifact: Option<&Value>) -> Result<(), String> {
        let i = self
            .dag
            .index(phase)
            .ok_or_else(|| format!("run {} has no phase `{phase}`", self.record.id))?;
        let now = self.settings.clock.stamp();
        let spec = &self.template.phases[i];
        let attach = approve_phase(spec, &mut self.states[i], artifact, &self.schemas, &now)?;
        self.mark(Unit::Top(i));
        if let Some((name, value)) = attach {
            self.pending.changes.push(Change::write(
                layout::artifact(phase, &name),
                to_file_bytes(&value),
            ));
            self.artifacts[i].insert(name, value);
        }
        Ok(())
    }
}
