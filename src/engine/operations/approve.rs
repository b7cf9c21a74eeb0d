//! `wfe approve`: a phase waiting for a person completes, optionally with
//! the artifact they attach. The live runner and the offline path both
//! approve through [`approve_phase`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{Done, require_phase, require_state};
use crate::artifact::Schema;
use crate::attempt::AttemptError;
use crate::budget::{Budget, Dimension, Raise, Scope, Spend};
use crate::engine::{
    EngineError, PhaseState, PhaseStatus, Refusal, RunRecord, RunSnapshot, RunStatus, StopReason,
    Transition, layout, to_file_bytes,
};
use crate::store::{Change, RunStore};
use crate::template::Phase;

/// Approves `phase` (in `state`) at `now`: it must be waiting, and an
/// attached artifact must match the phase's one declared output. The
/// phase completes with the artifact's name recorded; returns the
/// artifact to write as (name, value), or why the approval does not apply.
pub(crate) fn approve_phase(
    phase: &Phase,
    state: &mut PhaseState,
    artifact: Option<&Value>,
    schemas: &BTreeMap<String, Arc<Schema>>,
    now: &str,
) -> Result<Option<(String, Value)>, String> {
    let attach = check_approval(phase, state, artifact, schemas)?;
    // Checked above: the phase is waiting, which completing allows.
    state
        .apply(Transition::Complete, now)
        .map_err(|e| e.to_string())?;
    if let Some((name, _)) = &attach
        && !state.artifacts.contains(name)
    {
        state.artifacts.push(name.clone());
        state.artifacts.sort();
    }
    Ok(attach)
}

/// Splits how a person names a phase to approve: `PHASE`, or a loop's
/// child `CHILD@K` (iteration K, which must be the loop's current one);
/// inside a nested loop `CHILD@J.K`, one iteration per enclosing loop,
/// outermost first. `None` for an iteration that is not a number.
pub(crate) fn split_address(asked: &str) -> Option<(&str, Option<Vec<u32>>)> {
    match asked.split_once('@') {
        Some((id, at)) => at
            .split('.')
            .map(|k| k.parse().ok())
            .collect::<Option<Vec<u32>>>()
            .map(|at| (id, Some(at))),
        None => Some((asked, None)),
    }
}

/// Joins iterations as addresses spell them: `2.3`.
pub(crate) fn join_iterations(at: &[u32]) -> String {
    at.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// Checks that iterations `asked` (if given) of the loops holding `child`
/// (innermost `parent`) are the ones they are in (`current`): only there
/// can a child wait.
pub(crate) fn check_iteration(
    child: &str,
    parent: &str,
    current: &[u32],
    asked: Option<&[u32]>,
) -> Result<(), String> {
    match asked {
        Some(at) if at != current => {
            let (at, current) = (join_iterations(at), join_iterations(current));
            Err(format!(
                "`{child}@{at}` cannot be approved: loop `{parent}` is in iteration {current}, and only its current iteration waits (`{child}@{current}`)"
            ))
        }
        _ => Ok(()),
    }
}

/// The waiting phases of `snap` as `wfe approve` names them (a loop's
/// child as `CHILD@K`), but `except`.
fn waiting_in(snap: &RunSnapshot, except: &str) -> Vec<String> {
    let mut waiting: Vec<String> = snap
        .phases
        .iter()
        .filter(|p| p.status == PhaseStatus::Waiting)
        .map(|p| p.id.clone())
        .collect();
    for children in snap.children.values() {
        waiting.extend(
            children
                .iter()
                .filter(|c| c.status == PhaseStatus::Waiting)
                .map(|c| {
                    format!(
                        "{}@{}",
                        c.id,
                        join_iterations(&snap.current_iterations(&c.id))
                    )
                }),
        );
    }
    waiting.retain(|w| w != except);
    waiting
}

/// True for a phase waiting because its attempt reached a budget's soft share.
pub(crate) fn is_budget_pause(state: &PhaseState) -> bool {
    state.status == PhaseStatus::Waiting
        && matches!(state.error, Some(AttemptError::Budget { soft: true, .. }))
}

/// Why an artifact does not apply to `phase`, paused at a budget.
pub(crate) fn artifact_on_budget_pause(phase: &str) -> String {
    format!(
        "phase `{phase}` is paused at a budget, not waiting for its outputs to be approved; it takes no artifact"
    )
}

/// Why `--budget` does not apply to `phase`.
pub(crate) fn not_paused_at_budget(phase: &str) -> String {
    format!("phase `{phase}` is not paused at a budget; a budget raise applies to a phase that is")
}

/// Approves `phase` (in `state`), paused at a budget's soft share, at
/// `now`: the budget that paused it (the phase's, or the run's in
/// `record`) is raised by `raise`, the spend so far (`run_spend` for the
/// run's) is recorded as approved so the same soft share does not ask
/// again, and the phase goes back to pending with its conversation kept.
/// Returns what was done, or why the raise does not apply.
pub(crate) fn approve_budget(
    phase: &Phase,
    state: &mut PhaseState,
    record: &mut RunRecord,
    raise: Option<&Raise>,
    run_spend: Spend,
    now: &str,
) -> Result<String, String> {
    let Some(AttemptError::Budget { scope, limit, .. }) = &state.error else {
        return Err(not_paused_at_budget(&phase.id));
    };
    let scope = Scope::parse(scope).unwrap_or(Scope::Phase);
    let paused = Dimension::parse(limit).map_err(|e| format!("phase `{}`: {e}", phase.id))?;
    let attempt_spend = state
        .usage
        .as_ref()
        .map(Spend::of_usage)
        .unwrap_or_default();
    let mut raised = None;
    match scope {
        Scope::Phase => {
            let limits = state
                .budget
                .clone()
                .or_else(|| phase.budget.clone())
                .unwrap_or_default();
            if let Some(raise) = raise {
                let new = raise.apply(&limits, paused)?;
                raised = Some(describe(&new));
                state.budget = Some(new);
            }
            state.budget_approved = Some(attempt_spend);
        }
        Scope::Run => {
            let limits = record.budget.clone().unwrap_or_default();
            if let Some(raise) = raise {
                let new = raise.apply(&limits, paused)?;
                raised = Some(describe(&new));
                record.budget = Some(new);
            }
            record.budget_approved = Some(run_spend);
        }
    }
    state
        .apply(Transition::Interrupt { continues: true }, now)
        .map_err(|e| e.to_string())?;
    state.error = None;
    Ok(match raised {
        Some(limits) => format!(
            "{} approved past its {} budget, raised to {limits}",
            phase.id,
            scope.as_str()
        ),
        None => format!(
            "{} approved past its {} budget's soft limit",
            phase.id,
            scope.as_str()
        ),
    })
}

/// A budget's limits in words: `2000 tokens, $1.00`.
fn describe(budget: &Budget) -> String {
    Dimension::ALL
        .iter()
        .filter_map(|&d| budget.limit(d).map(|v| d.show(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Approves `phase` of the run in `snap` when no runner holds it; a run
/// that waited for nothing else becomes paused, so resuming goes on; one
/// that still waits for others records which. A loop's child is named
/// `CHILD` or `CHILD@K` (see [`split_address`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn offline(
    store: &dyn RunStore,
    snap: &RunSnapshot,
    record: &mut RunRecord,
    changes: &mut Vec<Change>,
    phase: &str,
    artifact: Option<&Value>,
    raise: Option<&Raise>,
    now: &str,
) -> Result<Result<Done, Refusal>, EngineError> {
    let (spec, mut state, key, address) = match locate(snap, phase)? {
        Ok(found) => found,
        Err(reason) => return Ok(Err(Refusal::Approval(reason))),
    };
    let schemas = snap.schemas(store)?;
    let mut summary = format!("{phase} approved");
    let attach = if is_budget_pause(&state) {
        if artifact.is_some() {
            return Ok(Err(Refusal::Approval(artifact_on_budget_pause(phase))));
        }
        let run_spend = crate::engine::runner::run_spend(&snap.phases);
        match approve_budget(spec, &mut state, record, raise, run_spend, now) {
            Ok(done) => {
                summary = done;
                None
            }
            Err(reason) => return Ok(Err(Refusal::Approval(reason))),
        }
    } else if raise.is_some() {
        return Ok(Err(Refusal::Approval(not_paused_at_budget(phase))));
    } else {
        match approve_phase(spec, &mut state, artifact, &schemas, now) {
            Ok(attach) => attach,
            Err(reason) => return Ok(Err(Refusal::Approval(reason))),
        }
    };
    if let Some((name, value)) = attach {
        changes.push(Change::write(
            layout::artifact(&key, &name),
            to_file_bytes(&value),
        ));
    }
    changes.push(Change::write(layout::state(&key), to_file_bytes(&state)));
    let phase = address.as_str();
    let others = waiting_in(snap, phase);
    if record.status == RunStatus::Waiting && others.is_empty() {
        let reason = StopReason::Approved {
            phase: phase.to_string(),
        };
        record.set_status(RunStatus::Paused, Some(reason), now);
    } else if record.status == RunStatus::Waiting
        && matches!(record.reason, Some(StopReason::WaitingForApproval { .. }))
    {
        // Still waiting, for the others only.
        record.reason = Some(StopReason::WaitingForApproval { phases: others });
    }
    Ok(Ok(Done {
        summary,
        phase: Some(phase.to_string()),
        outcome: "approved".to_string(),
    }))
}

/// The phase `asked` names: its template entry, its state, where its
/// files are and how it is addressed (`CHILD@K` inside a loop); or why
/// no waiting phase can be that.
#[allow(clippy::type_complexity)]
fn locate<'s>(
    snap: &'s RunSnapshot,
    asked: &str,
) -> Result<Result<(&'s Phase, PhaseState, String, String), String>, EngineError> {
    let Some((id, at)) = split_address(asked) else {
        return Ok(Err(format!(
            "`{asked}` is not a phase: expected PHASE, or CHILD@N for a loop's child in iteration N"
        )));
    };
    let Some(parent) = snap.parent_of(id) else {
        if at.is_some() {
            return Ok(Err(format!(
                "`{id}` is not inside a loop: approve it as `{id}`"
            )));
        }
        let spec = require_phase(snap, id)?;
        let state = require_state(snap, id)?.clone();
        return Ok(Ok((spec, state, id.to_string(), id.to_string())));
    };
    let current = snap.current_iterations(id);
    let state = snap.state_of(id);
    let (Some(state), Some(spec)) = (state, parent.phases.iter().find(|c| c.id == id)) else {
        return Ok(Err(format!(
            "phase `{id}` is inside loop `{}`, which has not started an iteration",
            parent.id
        )));
    };
    if let Err(reason) = check_iteration(id, &parent.id, &current, at.as_deref()) {
        return Ok(Err(reason));
    }
    Ok(Ok((
        spec,
        state.clone(),
        snap.key_at(id, &current),
        format!("{id}@{}", join_iterations(&current)),
    )))
}

/// Checks an approval of `phase` (in `state`): it must be waiting, and an
/// attached artifact must match the phase's one declared output. Returns
/// the artifact to record as (name, value).
fn check_approval(
    phase: &Phase,
    state: &PhaseState,
    artifact: Option<&Value>,
    schemas: &BTreeMap<String, Arc<Schema>>,
) -> Result<Option<(String, Value)>, String> {
    if state.status != PhaseStatus::Waiting {
        return Err(format!(
            "phase `{}` is {}, not waiting for an approval",
            phase.id,
            state.status.as_str()
        ));
    }
    let Some(value) = artifact else {
        return Ok(None);
    };
    let mut outputs = phase.outputs.iter();
    let (name, schema_name) = match (outputs.next(), outputs.next()) {
        (Some(only), None) => only,
        (None, _) => {
            return Err(format!(
                "phase `{}` declares no output to attach an artifact to",
                phase.id
            ));
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "phase `{}` declares several outputs; an approval attaches one",
                phase.id
            ));
        }
    };
    if let Some(schema) = schemas.get(schema_name) {
        let violations = schema.validate(value);
        if !violations.is_empty() {
            let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Err(format!(
                "the artifact does not match schema `{schema_name}`:\n  {}",
                list.join("\n  ")
            ));
        }
    }
    Ok(Some((name.clone(), value.clone())))
}
