//! Hints from typed reasons: the engine says why a run stands where it
//! does ([`StopReason`]) or why a request was refused; the command that
//! moves things on is the CLI's to name, so it is computed here from the
//! reason and the run id.

use super::context::Context;
use crate::engine::{RunStatus, StopReason};
use crate::store::{LockHolder, RunId};

/// Whether a live runner holds `run` now (an unreadable lock counts as none).
pub fn runner_live(ctx: &Context, run: &RunId) -> bool {
    runner(ctx, run).is_some()
}

/// The live process holding `run` now, if any (an unreadable lock counts
/// as none).
pub fn runner(ctx: &Context, run: &RunId) -> Option<LockHolder> {
    ctx.store.lock_holder(run).ok().flatten()
}

/// The status shown for a run stored as `status`: a run.json that says
/// `running` is only true while a runner holds the run; without one (the
/// runner was killed with SIGKILL, or lost power) it is `interrupted`.
/// run.json itself keeps `running`; this is how it is displayed.
pub fn shown_status(status: &str, live: bool) -> &str {
    if status == RunStatus::Running.as_str() && !live {
        "interrupted"
    } else {
        status
    }
}

/// The hint for a run that shows as `interrupted` (see [`shown_status`]).
pub fn interrupted_hint(run: &str) -> String {
    format!("`wfe resume {run}` goes on")
}

/// The command that moves `run` on as it stands now, after a change made
/// without its runner (skip, accept): the one [`next_step`] names, else
/// resuming; `None` when nothing would go on (the run is over, or other
/// failures still stand), so no hint sends the user to a command that
/// does nothing.
pub fn go_on_hint(ctx: &Context, run: &RunId) -> Option<String> {
    let snap = ctx.snapshot(run).ok()?;
    if !crate::engine::resumable(&snap) {
        return None;
    }
    let live = runner_live(ctx, run);
    next_step(
        snap.record.status,
        snap.record.reason.as_ref(),
        run.as_str(),
        live,
    )
    .or_else(|| (!live).then(|| format!("`wfe resume {run}` goes on")))
}

/// The command that moves a run that is `status` for `reason` on, as a
/// hint; `live` when a runner holds the run (only a live runner can be
/// told to continue). `None` when no command does (completed, failed,
/// cancelled, or a reason an older wfe wrote with its own advice).
pub fn next_step(
    status: RunStatus,
    reason: Option<&StopReason>,
    run: &str,
    live: bool,
) -> Option<String> {
    match (status, reason?) {
        (_, StopReason::Legacy { .. }) => None,
        (RunStatus::Waiting, StopReason::WaitingForApproval { phases }) => {
            let first = phases.first()?;
            Some(format!("`wfe approve {run} {first}` approves {first}"))
        }
        (RunStatus::Waiting, StopReason::AutoOff) if live => {
            Some(format!("`wfe continue {run}` goes on"))
        }
        (RunStatus::Waiting, StopReason::AutoOff) | (RunStatus::Paused, _) => {
            Some(format!("`wfe resume {run}` goes on"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_without_a_runner_shows_as_interrupted() {
        assert_eq!(shown_status("running", false), "interrupted");
        assert_eq!(shown_status("running", true), "running");
        for other in ["paused", "waiting", "completed", "failed", "cancelled"] {
            assert_eq!(shown_status(other, false), other);
            assert_eq!(shown_status(other, true), other);
        }
    }

    #[test]
    fn each_reason_names_the_command_that_goes_on() {
        let run = "01run";
        let waiting = StopReason::WaitingForApproval {
            phases: vec!["ok".into(), "ok2".into()],
        };
        let table = [
            (
                RunStatus::Waiting,
                Some(&waiting),
                false,
                Some("`wfe approve 01run ok` approves ok"),
            ),
            (
                RunStatus::Waiting,
                Some(&StopReason::AutoOff),
                true,
                Some("`wfe continue 01run` goes on"),
            ),
            // With no runner there is nothing to continue: resuming goes on.
            (
                RunStatus::Waiting,
                Some(&StopReason::AutoOff),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Paused,
                Some(&StopReason::Interrupted),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Paused,
                Some(&StopReason::PausedOnRequest { by: None }),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Paused,
                Some(&StopReason::FixedByHand { phase: "b".into() }),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Failed,
                Some(&StopReason::PhasesFailed {
                    phases: vec!["b".into()],
                }),
                false,
                None,
            ),
            (
                RunStatus::Cancelled,
                Some(&StopReason::Cancelled { by: None }),
                false,
                None,
            ),
            (RunStatus::Completed, None, false, None),
            (
                RunStatus::Paused,
                Some(&StopReason::Legacy {
                    text: "b fixed by hand".into(),
                }),
                false,
                None,
            ),
        ];
        for (status, reason, live, hint) in table {
            assert_eq!(
                next_step(status, reason, run, live).as_deref(),
                hint,
                "{status:?} {reason:?}"
            );
        }
    }
}
