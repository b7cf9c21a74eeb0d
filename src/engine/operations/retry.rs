//! `wfe retry`: a phase set up for another attempt, with every phase
//! downstream of it sent back to pending.

use super::refresh::refresh_template;
use super::{commit_on, locate_phase, set_aside, with_retries};
use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, PhaseStatus, Refusal, RunSnapshot, RunStatus,
    StopReason, layout, to_file_bytes,
};
use crate::store::{Change, CheckpointId, RunId, RunStore};
use crate::template::{Template, digest};
use crate::time::Clock;

/// Choices for a retried phase's next attempt; `None` keeps what is recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// The provider to use instead of the template's.
    pub provider: Option<String>,
    /// The model to use instead of the template's.
    pub model: Option<String>,
    /// A person's instructions added to the prompt of the phase's next
    /// attempts (an agent phase); `None` clears earlier ones.
    pub prompt: Option<String>,
    /// The repo's current template (validated): its definitions of the
    /// phase and every phase downstream replace the frozen ones.
    pub template: Option<Box<Template>>,
}

/// What a retry request changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    /// The checkpoint that records the request.
    pub checkpoint: CheckpointId,
    /// The attempt the phase runs next.
    pub next_attempt: u32,
    /// Dependants sent back to pending, in template order.
    pub reset: Vec<String>,
    /// With a refreshed template: the phases whose current definitions
    /// were taken, in template order.
    pub refreshed: Vec<String>,
}

/// Marks `phase` for another attempt and every phase downstream of it
/// pending; the run becomes paused, so `wfe resume` runs them again.
///
/// The phase keeps its attempt count (the runner starts the next one) and
/// its last attempt's artifacts and log are archived under
/// `attempts/<n>/`; the same happens to each dependant that is not already
/// pending, phases skipped by an `if` included (it is evaluated again).
/// `requested_by` is recorded as `Wfe-Requested-By`.
pub fn retry(
    store: &dyn RunStore,
    run: &RunId,
    phase: &str,
    requested_by: &str,
    overrides: &Overrides,
    clock: &Clock,
) -> Result<Retried, EngineError> {
    with_retries(|| {
        let snap = RunSnapshot::load_tip(store, run)?;
        let (i, dag) = locate_phase(&snap, phase)?;
        let state = &snap.phases[i];
        let refused = |reason: Refusal| EngineError::Refused {
            action: "retry",
            run: run.to_string(),
            phase: phase.to_string(),
            reason,
        };
        match state.status {
            PhaseStatus::Pending if state.attempt == 0 => {
                return Err(refused(Refusal::NotRunYet));
            }
            PhaseStatus::Waiting => {
                return Err(refused(Refusal::WaitingForApproval));
            }
            _ => {}
        }
        let mut changes = Vec::new();
        let now = clock.stamp();
        let mut again = set_aside(store, &snap, state, &mut changes, &now)?;
        if overrides.provider.is_some() {
            again.provider.clone_from(&overrides.provider);
        }
        if overrides.model.is_some() {
            again.model.clone_from(&overrides.model);
        }
        again.guidance.clone_from(&overrides.prompt);
        // A manual retry gives the phase its whole automatic budget again.
        again.retry_base = again.attempt;
        changes.push(Change::write(layout::state(phase), to_file_bytes(&again)));
        let next_attempt = again.attempt + 1;

        let mut events = vec![(phase.to_string(), CheckpointEvent::PhaseRetryRequested)];
        let mut reset = Vec::new();
        for d in (0..dag.len()).filter(|&d| dag.ancestors(d).contains(&i)) {
            let dependant = &snap.phases[d];
            if dependant.status == PhaseStatus::Pending && dependant.attempt == 0 {
                continue;
            }
            let mut pending = set_aside(store, &snap, dependant, &mut changes, &now)?;
            pending.retry_base = pending.attempt;
            changes.push(Change::write(
                layout::state(&dependant.id),
                to_file_bytes(&pending),
            ));
            events.push((dependant.id.clone(), CheckpointEvent::PhaseReset));
            reset.push(dependant.id.clone());
        }

        let mut record = snap.record.clone();
        let mut refreshed = Vec::new();
        if let Some(current) = &overrides.template {
            let taken = refresh_template(&snap.template, current, phase, &record.schemas)
                .map_err(|why| refused(Refusal::TemplateShape(why)))?;
            record.template_digest = digest(&taken.template);
            changes.push(Change::write(
                layout::TEMPLATE,
                to_file_bytes(&taken.template),
            ));
            events.push((phase.to_string(), CheckpointEvent::TemplateRefreshed));
            refreshed = taken.taken;
        }
        let was = record.status;
        let reason = StopReason::RetryRequested {
            phase: phase.to_string(),
        };
        record.set_status(RunStatus::Paused, Some(reason), &now);
        changes.push(Change::write(layout::RUN, to_file_bytes(&record)));

        let mut summary = format!("retry of {phase} requested (attempt {next_attempt} next)");
        if !reset.is_empty() {
            summary.push_str(&format!("; {} back to pending", reset.join(", ")));
        }
        if !refreshed.is_empty() {
            summary.push_str(&format!(
                "; current template taken for {}",
                refreshed.join(", ")
            ));
        }
        let mut message = CheckpointMessage::new(&snap.record.id, &snap.record.template, summary);
        for (id, event) in events {
            message = message.event(Some(&id), event);
        }
        if was != RunStatus::Paused {
            message = message.event(None, CheckpointEvent::RunPaused);
        }
        message.provider.clone_from(&overrides.provider);
        message.model.clone_from(&overrides.model);
        let message = message.requested_by(requested_by).status(RunStatus::Paused);
        let checkpoint = commit_on(store, run, &snap, &changes, &message, clock)?;
        Ok(Retried {
            checkpoint,
            next_attempt,
            reset,
            refreshed,
        })
    })
}
