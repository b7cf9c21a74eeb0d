//! Finishing: recording what an attempt did (its outcome, log, artifacts,
//! archived failures), phases a dead runner left running, and the run's
//! own end.

use std::time::Duration;

use super::launch::Report;
use super::{Runner, Stop, Unit, blocking_failures};
use crate::agent::Step;
use crate::attempt::{AttemptError, AttemptOutcome, AttemptUsage, LogLine};
use crate::budget::Spend;
use crate::engine::operations::cancel;
use crate::engine::{
    CheckpointEvent, Event, Failure, PhaseStatus, RunStatus, StopReason, Transition, layout,
    to_file_bytes,
};
use crate::provider::ProviderErrorKind;
use crate::store::{Change, WORKSPACE};
use crate::template::{Approval, OnConflict, PhaseKind};

impl Runner<'_> {
    /// Phases left `running` by a runner that died start over as a new
    /// attempt; the lost attempt is archived as interrupted. A loop left
    /// running is not one of them: it goes on in its iteration, where its
    /// children that were running start over.
    pub(super) fn recover_interrupted(&mut self) {
        let interrupted: Vec<Unit> = self
            .units()
            .into_iter()
            .filter(|&u| {
                self.state(u).status == PhaseStatus::Running
                    && self.spec(u).kind != PhaseKind::Loop
                    && self.mine(u)
            })
            .collect();
        for u in interrupted {
            let attempt = self.state(u).attempt;
            if self.spec(u).kind == PhaseKind::Agent {
                // Its conversation is in the run: the next start resumes it.
                self.transition(u, Transition::Interrupt { continues: true });
                let label = self.label(u);
                self.note(
                    Some(u),
                    CheckpointEvent::PhaseInterrupted,
                    format!("{label} interrupted (attempt {attempt}); its conversation goes on"),
                );
                continue;
            }
            let error = AttemptError::Internal {
                message: "interrupted: the runner stopped during this attempt".into(),
            };
            let key = self.key(u);
            self.pending.changes.push(Change::write(
                layout::attempt_error(&key, attempt),
                to_file_bytes(&error),
            ));
            self.transition(u, Transition::Interrupt { continues: false });
            self.state_mut(u).error = Some(error);
            let label = self.label(u);
            self.note(
                Some(u),
                CheckpointEvent::PhaseInterrupted,
                format!("{label} interrupted (attempt {attempt})"),
            );
        }
    }

    /// Records a report; returns true when the phase's task has ended.
    pub(super) fn apply(&mut self, report: Report, paused: bool) -> bool {
        match report {
            Report::Retrying {
                unit,
                attempt,
                mut outcome,
                elapsed,
                wait,
                live_file,
            } => {
                let label = self.label(unit);
                outcome.mask(&self.settings.masker);
                if live_file {
                    self.live_done.push((self.key(unit), attempt));
                }
                let error = outcome.result.as_ref().err().cloned();
                self.archive(unit, attempt, &outcome);
                if let Some(error) = &error {
                    self.observer.event(&Event::PhaseRetrying {
                        phase: &label,
                        attempt,
                        error,
                        wait,
                    });
                }
                self.account(unit, outcome.usage);
                let state = self.state_mut(unit);
                // The next attempt starts its own usage and approvals.
                state.usage = None;
                state.budget_approved = None;
                state.attempt = attempt.saturating_add(1);
                state.exit_code = outcome.exit_code;
                state.duration_ms = Some(elapsed.as_millis() as u64);
                state.error = error.clone();
                self.mark(unit);
                let why = error.map(|e| e.to_string()).unwrap_or_default();
                self.note(
                    Some(unit),
                    CheckpointEvent::AttemptFailed,
                    format!("{label} attempt {attempt} failed ({why}); retrying"),
                );
                false
            }
            Report::Finished {
                unit,
                attempt,
                mut outcome,
                elapsed,
                live_file,
            } => {
                // Secrets are masked before anything is shown, kept or handed on.
                let masked = outcome.mask(&self.settings.masker);
                if live_file {
                    self.live_done.push((self.key(unit), attempt));
                }
                self.finish_phase(unit, attempt, outcome, elapsed, paused);
                if let Unit::Top(i) = unit
                    && matches!(
                        self.states[i].status,
                        PhaseStatus::Failed | PhaseStatus::TimedOut
                    )
                {
                    self.cancels.remove(&unit);
                    self.fail_fast_matrix(i);
                }
                if self.state(unit).masked != masked {
                    self.state_mut(unit).masked = masked;
                    self.mark(unit);
                }
                self.agent_files.remove(&unit);
                self.slots.give_back(unit);
                true
            }
            Report::Progress {
                unit,
                attempt,
                step,
                ack,
            } => {
                let read_only = matches!(&step, Step::ToolCall(call)
                    if crate::template::Tool::from_name(&call.tool).is_some_and(crate::template::Tool::is_read_only));
                let was_quiet = self.quiet();
                self.record_step(unit, attempt, step);
                if read_only {
                    // Nothing to lose: the agent goes on now, and the call
                    // is committed with whatever comes next (its turn's
                    // exchange, at the latest with the attempt's end).
                    self.defer_step(was_quiet);
                    let _ = ack.send(());
                } else {
                    self.acks.push(ack);
                }
                false
            }
        }
    }

    pub(super) fn finish_phase(
        &mut self,
        u: Unit,
        attempt: u32,
        mut outcome: AttemptOutcome,
        elapsed: Duration,
        paused: bool,
    ) {
        let key = self.key(u);
        let label = self.label(u);
        let log = log_bytes(&outcome.log);
        self.pending
            .changes
            .push(Change::write(layout::log(&key), log));
        let agent = self.spec(u).kind == PhaseKind::Agent;
        let status = match &outcome.result {
            Ok(artifacts) => {
                self.pending.changes.push(Change::Remove {
                    path: layout::artifacts(&key),
                });
                for (name, value) in artifacts {
                    self.pending.changes.push(Change::write(
                        layout::artifact(&key, name),
                        to_file_bytes(value),
                    ));
                }
                self.pending.changes.push(Change::Remove {
                    path: layout::files(&key),
                });
                for file in std::mem::take(&mut outcome.files) {
                    self.pending
                        .changes
                        .push(Change::write(layout::file(&key, &file.path), file.bytes));
                }
                *self.outputs_mut(u) = artifacts.clone();
                self.invalid.remove(&u);
                PhaseStatus::Completed
            }
            // An interrupt sends the phase back to pending: resuming runs it again.
            Err(AttemptError::Cancelled) if paused => PhaseStatus::Pending,
            // A provider outage pauses the run; resuming goes on.
            Err(AttemptError::Provider {
                failure: ProviderErrorKind::Exhausted,
                ..
            }) => PhaseStatus::Pending,
            // A budget's soft share: the phase waits for approval, and its
            // conversation goes on after it.
            Err(AttemptError::Budget { soft: true, .. }) if agent => PhaseStatus::Waiting,
            Err(AttemptError::Cancelled) => PhaseStatus::Cancelled,
            Err(AttemptError::TimedOut { .. }) => PhaseStatus::TimedOut,
            Err(_) => PhaseStatus::Failed,
        };
        let budget_pause = agent && status == PhaseStatus::Waiting;
        // An agent sent back to pending (or waiting on its budget) keeps its
        // conversation for the next start; its attempt is not over, so
        // nothing is archived yet.
        let continues = agent && (status == PhaseStatus::Pending || budget_pause);
        if continues {
            if let Err(AttemptError::Provider {
                provider, message, ..
            }) = &outcome.result
            {
                self.provider_pause = Some(StopReason::ProviderUnavailable {
                    phase: label.clone(),
                    provider: provider.clone(),
                    message: message.clone(),
                });
            }
        } else if status != PhaseStatus::Completed {
            self.archive(u, attempt, &outcome);
        }
        // `approval: after`: the outputs are in, but dependants wait for a person.
        let status =
            if status == PhaseStatus::Completed && self.spec(u).approval == Some(Approval::After) {
                PhaseStatus::Waiting
            } else {
                status
            };
        // `on_conflict: gate`: a person decides what becomes of the changes.
        let status = if matches!(outcome.result, Err(AttemptError::MergeConflict { .. }))
            && self.spec(u).on_conflict == Some(OnConflict::Gate)
        {
            PhaseStatus::Waiting
        } else {
            status
        };
        if matches!(status, PhaseStatus::Completed | PhaseStatus::Waiting) && !self.record.auto {
            self.hold = true;
        }
        let error = outcome.result.as_ref().err().cloned();
        self.observer.event(&Event::PhaseFinished {
            phase: &label,
            status,
            attempt,
            duration: elapsed,
            error: error.as_ref(),
        });
        self.transition(u, ending(status, continues));
        let answered = outcome
            .usage
            .as_ref()
            .and_then(|usage| Some((usage.provider.clone()?, usage.model.clone()?)));
        self.account(u, outcome.usage);
        let state = self.state_mut(u);
        state.continues |= budget_pause;
        state.attempt = attempt;
        state.duration_ms = Some(elapsed.as_millis() as u64);
        state.exit_code = outcome.exit_code;
        if let Some((provider, model)) = &answered {
            state.record_model(attempt, provider, model);
        }
        state.artifacts = outcome
            .result
            .as_ref()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        state.error = error.clone();
        let summary = match (&status, &error) {
            (PhaseStatus::Pending, _) => format!("{label} interrupted (attempt {attempt})"),
            (_, Some(e)) => format!("{label} {} (attempt {attempt}): {e}", status.as_str()),
            (_, None) => format!("{label} {} (attempt {attempt})", status.as_str()),
        };
        self.note(Some(u), finished_event(status), summary);
        // The code as the phase left it, so `wfe rollback --code` can bring it back.
        let snapshot = Change::Snapshot {
            path: WORKSPACE.to_string(),
            masker: self.settings.masker.clone(),
        };
        if status != PhaseStatus::Pending
            && self.spec(u).snapshots(&self.template.defaults)
            && !self.pending.changes.contains(&snapshot)
        {
            self.pending.changes.push(snapshot);
        }
    }

    /// Records an agent attempt's `usage` so far as the unit's current
    /// usage, adding what it spent since last recorded to the unit's spend
    /// (and a loop child's to its loop's, so the top-level phases sum to
    /// the run's spend).
    pub(super) fn account(&mut self, u: Unit, usage: Option<AttemptUsage>) {
        let Some(usage) = usage else { return };
        let state = self.state_mut(u);
        // `usage` of a continued attempt already counts what `state.usage` did.
        let before = state
            .usage
            .as_ref()
            .map(Spend::of_usage)
            .unwrap_or_else(Spend::zero);
        let delta = Spend::of_usage(&usage).minus(&before);
        state.usage = Some(usage);
        state.spend = Some(state.spend.unwrap_or_else(Spend::zero).plus(&delta));
        // Every enclosing loop counts it too, up to the top-level phase (a
        // nested loop's slot is not a top-level index: walk the owners).
        let mut v = u;
        while let Unit::Child { parent, .. } = v {
            let owner = self.loops[parent].owner;
            let loop_state = self.state_mut(owner);
            loop_state.spend = Some(loop_state.spend.unwrap_or_else(Spend::zero).plus(&delta));
            self.mark(owner);
            v = owner;
        }
    }

    /// Keeps a failed attempt under `attempts/<n>/`: its error, its log and
    /// any rejected output, so nothing it produced is lost.
    pub(super) fn archive(&mut self, u: Unit, attempt: u32, outcome: &AttemptOutcome) {
        let key = self.key(u);
        if let Err(error) = &outcome.result {
            self.pending.changes.push(Change::write(
                layout::attempt_error(&key, attempt),
                to_file_bytes(error),
            ));
        }
        self.pending.changes.push(Change::write(
            layout::attempt_log(&key, attempt),
            log_bytes(&outcome.log),
        ));
        for (name, bytes) in &outcome.rejected {
            self.pending.changes.push(Change::write(
                layout::rejected(&key, attempt, name),
                bytes.clone(),
            ));
        }
    }

    /// Sets the run's final status once no phase is running.
    pub(super) fn finish(&mut self, stop: Option<Stop>) -> RunStatus {
        self.settle_loops();
        let failed: Vec<String> = blocking_failures(&self.template, &self.states)
            .filter(|s| s.status != PhaseStatus::Cancelled)
            .map(|s| s.id.clone())
            .collect();
        let (status, reason) = if stop == Some(Stop::Cancel) {
            // Nothing left will ever run: say so in every phase, and in
            // every loop still going (with its children yet to run).
            // Every attempt has ended by now (cancelled), so what is still
            // running is a loop.
            let now = self.settings.clock.stamp();
            for u in self.units() {
                if cancel::cancel_open(self.state_mut(u), &now) {
                    self.mark(u);
                }
            }
            (
                RunStatus::Cancelled,
                Some(StopReason::Cancelled { by: None }),
            )
        } else if !failed.is_empty() {
            (
                RunStatus::Failed,
                Some(StopReason::PhasesFailed { phases: failed }),
            )
        } else if stop == Some(Stop::Interrupt) {
            (RunStatus::Paused, Some(StopReason::Interrupted))
        } else if stop == Some(Stop::Deadline) {
            (RunStatus::Paused, Some(StopReason::Deadline))
        } else if let Some(reason) = self.provider_pause.take() {
            (RunStatus::Paused, Some(reason))
        } else if stop == Some(Stop::Pause) {
            (
                RunStatus::Paused,
                Some(StopReason::PausedOnRequest { by: None }),
            )
        } else if self.states.iter().all(|s| s.status.is_final()) {
            (RunStatus::Completed, None)
        } else if let Some(reason) = self.waiting() {
            (RunStatus::Waiting, Some(reason))
        } else if self.settings.only.is_some() {
            // A worker's runner ran its phases; the rest are other
            // workers' (or wait for theirs): the run goes on.
            (RunStatus::Running, None)
        } else {
            // Unreachable for a validated DAG: every pending phase becomes ready eventually.
            (RunStatus::Failed, Some(StopReason::Blocked))
        };
        self.set_status(status, reason);
        status
    }
}

/// The transition of a running phase (or loop) whose attempt ended in
/// `status`; `continues` for an agent whose conversation goes on.
pub(super) fn ending(status: PhaseStatus, continues: bool) -> Transition {
    match status {
        PhaseStatus::Completed => Transition::Complete,
        PhaseStatus::Waiting => Transition::Wait,
        PhaseStatus::Pending => Transition::Interrupt { continues },
        PhaseStatus::Cancelled => Transition::Fail(Failure::Cancelled),
        PhaseStatus::TimedOut => Transition::Fail(Failure::TimedOut),
        _ => Transition::Fail(Failure::Failed),
    }
}

/// The `Wfe-Event` of a phase reaching `status` at the end of an attempt.
pub(super) fn finished_event(status: PhaseStatus) -> CheckpointEvent {
    match status {
        PhaseStatus::Completed => CheckpointEvent::PhaseCompleted,
        PhaseStatus::Waiting => CheckpointEvent::PhaseWaiting,
        PhaseStatus::Pending => CheckpointEvent::PhaseInterrupted,
        PhaseStatus::TimedOut => CheckpointEvent::PhaseTimedOut,
        PhaseStatus::Cancelled => CheckpointEvent::PhaseCancelled,
        _ => CheckpointEvent::PhaseFailed,
    }
}

/// A log as `log.jsonl`: one JSON object per line.
fn log_bytes(lines: &[LogLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        // LogLine is plain strings and numbers: serialising cannot fail.
        if let Ok(text) = serde_json::to_string(line) {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
    }
    out
}
