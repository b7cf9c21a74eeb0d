//! Creating a run: its first checkpoint, once the template is known to be
//! runnable.

use serde_json::Value;

use super::iteration;
use crate::engine::{
    CheckpointEvent, CheckpointMessage, EngineError, RunRecord, RunStatus, layout, to_file_bytes,
};
use crate::store::{Change, CheckpointId, RunId, RunStore};
use crate::template::{PhaseKind, Template, digest, expand};
use crate::time::Clock;
use std::collections::BTreeMap;

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
    /// Args whose values `args` holds masked (see [`RunRecord::secret_args`]).
    pub secret_args: Vec<String>,
    /// The run's budget (see [`RunRecord::budget`]).
    pub budget: Option<crate::budget::Budget>,
}

/// Refuses templates this version cannot run, before anything is written:
/// loops nested more than two deep, a fallback on a nested loop, `retry`
/// or `timeout` on a loop.
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
/// schemas. No phase has a state file yet: a phase without one is pending
/// (as `RunSnapshot::load` reads it), and each gets its file
/// with its first transition.
pub fn create(
    store: &dyn RunStore,
    new: &NewRun,
    clock: &Clock,
) -> Result<CheckpointId, EngineError> {
    // The template is frozen as written; states are for what runs: each
    // matrix phase's combinations.
    let runnable = expand(&new.template);
    ensure_runnable(&runnable)?;
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
        secret_args: new.secret_args.clone(),
        budget: new.budget.clone().filter(|b| !b.is_empty()),
        budget_approved: None,
    };
    changes.push(Change::write(layout::RUN, to_file_bytes(&record)));
    changes.push(Change::write(
        layout::TEMPLATE,
        to_file_bytes(&new.template),
    ));
    let message = CheckpointMessage::new(
        new.id.as_str(),
        &new.template.name,
        format!("run created from template {}", new.template.name),
    )
    .event(None, CheckpointEvent::RunCreated)
    .status(RunStatus::Pending)
    .to_message();
    Ok(store.commit(&new.id, None, &changes, &message, clock.epoch_seconds())?)
}
