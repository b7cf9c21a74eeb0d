//! Sending control requests: to the live runner through the control
//! directory, or, when no runner holds the run, straight to the ref.

use std::time::{Duration, Instant};

use super::context::Context;
use super::error::{CliError, Outcome};
use super::reasons;
use super::ui::{Style, Ui};
use crate::engine::control::{Action, ControlDir};
use crate::engine::operations;
use crate::engine::{RunStatus, StopReason};
use crate::store::{RunId, RunStore, StoreError};

/// How long to wait for a live runner to answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Who is asking, for the `Wfe-Requested-By` trailer.
pub fn requester(ctx: &Context) -> String {
    let who = match &ctx.store.info().identity {
        Some((name, email)) => format!("{name} <{email}>"),
        None => "unknown".to_string(),
    };
    format!("{who} (pid {})", std::process::id())
}

/// Asks for `action` on `run` and reports the answer.
pub fn request(ctx: &Context, ui: &Ui, run: &RunId, action: Action) -> Result<Outcome, CliError> {
    let by = requester(ctx);
    let control = ControlDir::new(&ctx.store.wfe_dir(), run.as_str());
    let io = |e: std::io::Error| {
        CliError::internal(format!("cannot write a control request for run {run}: {e}"))
    };
    loop {
        if let Some(holder) = ctx.store.lock_holder(run)? {
            let id = control.send(action.clone(), &by).map_err(io)?;
            let deadline = Instant::now() + ANSWER_WAIT;
            loop {
                if let Some(reply) = control.take_reply(&id) {
                    // A runner that answered and then ended (a cancel) may
                    // have found our reply still there; once no runner
                    // holds the run, remove the directory it left.
                    if let Ok(lock) = ctx.store.lock(run, &ctx.clock.stamp()) {
                        control.tidy();
                        drop(lock);
                    }
                    if !reply.ok {
                        return Err(CliError::input(format!("run {run}: {}", reply.message)));
                    }
                    ui.note(&format!(
                        "run {run} (runner pid {} on {}): {}",
                        holder.pid, holder.host, reply.message
                    ));
                    return Ok(Outcome::Success);
                }
                // A runner that went away without answering: take the request back and act alone.
                if ctx.store.lock_holder(run)?.is_none() && control.withdraw(&id) {
                    break;
                }
                if Instant::now() > deadline {
                    control.withdraw(&id);
                    return Err(CliError::failed(format!(
                        "the runner of run {run} (pid {} on {}) did not answer within {}s",
                        holder.pid,
                        holder.host,
                        ANSWER_WAIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        }
        match ctx.store.lock(run, &ctx.clock.stamp()) {
            Ok(lock) => {
                let done = operations::control_offline(&ctx.store, run, &action, &by, &ctx.clock);
                // Holding the lock, no runner watches the directory: remove
                // what a request that came too late left behind.
                control.tidy();
                let done = done?;
                drop(lock);
                ui.note(&format!("no runner is running run {run}: {}", done.outcome));
                let hint = worker_step(ctx, run, done.status, done.reason.as_ref()).or_else(|| {
                    reasons::next_step(done.status, done.reason.as_ref(), run.as_str(), false)
                });
                if let Some(hint) = hint {
                    ui.note(&format!("{} {hint}", ui.paint(Style::Yellow, "hint:")));
                }
                return Ok(Outcome::Success);
            }
            // A runner started meanwhile: ask it instead.
            Err(StoreError::Locked { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What goes on after a request made without a runner on a run that
/// workers work on (a phase claimed or run by one): the request reaches
/// them through `wfe push`, and a paused run goes back to them with
/// `wfe resume --queue`. `None` for a run no worker has touched.
fn worker_step(
    ctx: &Context,
    run: &RunId,
    status: RunStatus,
    reason: Option<&StopReason>,
) -> Option<String> {
    let snapshot = ctx.snapshot(run).ok()?;
    let claimed = ctx
        .store
        .list_files(&snapshot.checkpoint, crate::engine::layout::CLAIMS)
        .is_ok_and(|claims| !claims.is_empty());
    if !claimed && snapshot.phases.iter().all(|p| p.worker.is_none()) {
        return None;
    }
    match (status, reason) {
        (RunStatus::Paused, Some(StopReason::PausedOnRequest { .. })) => Some(format!(
            "`wfe push` stops its workers (at their next heartbeat); later `wfe resume {run} --queue` and `wfe push` hand it back to them (`wfe resume {run}` runs it here)"
        )),
        (RunStatus::Paused, _) => Some(format!(
            "`wfe push`, then workers started again go on (`wfe resume {run}` runs it here)"
        )),
        (RunStatus::Cancelled, _) => {
            Some("`wfe push` stops its workers (at their next heartbeat)".to_string())
        }
        _ => None,
    }
}
