//! A phase's state (`phases/<id>/state.json`) and the one state machine
//! that moves it.
//!
//! Every change of a phase's status goes through [`PhaseState::apply`]:
//! the live runner, loops, the offline control path, accept and edit, and
//! retry and skip all name a [`Transition`], so what each does to the
//! status and its timestamps is written once, here, and a transition the
//! status does not allow is refused instead of written. What an attempt
//! produced (exit code, artifacts, error, usage) is recorded by whoever
//! ran it; this module only knows where a phase stands.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::attempt::{AttemptError, AttemptUsage};
use crate::budget::{Budget, Spend};
use crate::template::PhaseKind;

/// Where a phase is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// Not started.
    Pending,
    /// An attempt is running (or waiting to be retried).
    Running,
    /// Waiting for an approval.
    Waiting,
    /// Ended well; its artifacts are valid.
    Completed,
    /// Its last attempt failed.
    Failed,
    /// Not run: its `if` was false, or it was skipped by hand.
    Skipped,
    /// Stopped on request.
    Cancelled,
    /// Its last attempt ran out of time.
    TimedOut,
}

impl PhaseStatus {
    /// The status as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Pending => "pending",
            PhaseStatus::Running => "running",
            PhaseStatus::Waiting => "waiting",
            PhaseStatus::Completed => "completed",
            PhaseStatus::Failed => "failed",
            PhaseStatus::Skipped => "skipped",
            PhaseStatus::Cancelled => "cancelled",
            PhaseStatus::TimedOut => "timed_out",
        }
    }

    /// True once the phase will not run again by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PhaseStatus::Completed
                | PhaseStatus::Failed
                | PhaseStatus::Skipped
                | PhaseStatus::Cancelled
                | PhaseStatus::TimedOut
        )
    }

    /// True for a phase that failed or timed out: what a run that went on
    /// past it (`on_failure: continue`) reports as not clean. A cancelled
    /// phase is not one: someone (or fail-fast) stopped it.
    pub fn is_unclean_end(self) -> bool {
        matches!(self, PhaseStatus::Failed | PhaseStatus::TimedOut)
    }

    /// True for the statuses of a phase that did not end well.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            PhaseStatus::Failed | PhaseStatus::TimedOut | PhaseStatus::Cancelled
        )
    }
}

/// `phases/<id>/state.json`: one phase's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseState {
    /// The phase's id.
    pub id: String,
    /// The phase's kind.
    pub kind: PhaseKind,
    /// Where the phase stands.
    pub status: PhaseStatus,
    /// The current (or last) attempt, from 1; 0 before the first.
    pub attempt: u32,
    /// A loop: its current (or last) iteration, from 1; a loop's child: the
    /// iteration it belongs to. 0 (left out) for everything else.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iteration: u32,
    /// When the current attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the phase ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How long the last attempt took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The last attempt's exit code, for scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The provider the next (or current) attempt uses instead of the
    /// template's, as `wfe retry --provider` asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The model the next (or current) attempt uses instead of the
    /// template's, as `wfe retry --model` asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// An agent's tokens and cost in the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<AttemptUsage>,
    /// An agent attempt that was interrupted (runner died, paused, provider
    /// outage): the next start continues its conversation instead of
    /// starting a new attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
    /// The artifacts under `artifacts/`, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    /// Why the phase was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// A loop that completed because `max_iters` ran out before `until`
    /// held (`on_exhausted: continue`, or `next`: the phase it names runs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exhausted: bool,
    /// Artifacts a person accepted or edited without them passing their schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forced: Vec<String>,
    /// Artifacts of the last attempt that held a secret and were stored with it masked (`***`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    /// An agent's spend over all its attempts (a loop: its children's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<Spend>,
    /// The phase's budget as a person raised it (`wfe approve --budget`);
    /// absent: the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// The current attempt's spend a person saw when they last approved a
    /// pause at the phase budget's soft share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_approved: Option<Spend>,
    /// An agent: the provider and model of each attempt, in attempt order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<AttemptModel>,
    /// The `wfe worker` that ran the current attempt (`<id>@<host>`);
    /// absent when a local runner did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The attempts made before the last manual retry: the automatic retry
    /// budget (`retry.max_attempts`) counts the attempts after these, so a
    /// manual retry never eats it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_base: u32,
    /// The person's instructions for the attempts after the last manual
    /// retry (`retry --prompt`), added to an agent's prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<String>,
}

/// Who answered in one attempt of an agent phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttemptModel {
    /// The attempt, from 1.
    pub attempt: u32,
    /// The provider's name in config.
    pub provider: String,
    /// The model.
    pub model: String,
}

impl PhaseState {
    /// Records who answered in `attempt` (an interrupted attempt that went
    /// on keeps one entry, with whoever answered last).
    pub fn record_model(&mut self, attempt: u32, provider: &str, model: &str) {
        let entry = AttemptModel {
            attempt,
            provider: provider.to_string(),
            model: model.to_string(),
        };
        match self.models.iter_mut().find(|m| m.attempt == attempt) {
            Some(existing) => *existing = entry,
            None => {
                self.models.push(entry);
                self.models.sort_by_key(|m| m.attempt);
            }
        }
    }
}

impl PhaseState {
    /// A phase that has not started.
    pub fn pending(id: &str, kind: PhaseKind) -> Self {
        PhaseState {
            id: id.to_string(),
            kind,
            status: PhaseStatus::Pending,
            attempt: 0,
            iteration: 0,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            exit_code: None,
            provider: None,
            model: None,
            usage: None,
            continues: false,
            artifacts: Vec::new(),
            error: None,
            skip_reason: None,
            exhausted: false,
            forced: Vec::new(),
            masked: Vec::new(),
            spend: None,
            budget: None,
            budget_approved: None,
            models: Vec::new(),
            retry_base: 0,
            guidance: None,
            worker: None,
        }
    }

    /// Moves the phase through `transition` at time `now` (RFC 3339), or
    /// refuses, changing nothing, when its status does not allow it.
    pub fn apply(&mut self, transition: Transition, now: &str) -> Result<(), IllegalTransition> {
        let from = self.status;
        if !transition.allowed_from(from) {
            return Err(IllegalTransition {
                phase: self.id.clone(),
                from,
                transition: transition.name(),
            });
        }
        match transition {
            Transition::Start => {
                // An interrupted agent attempt goes on with its conversation.
                if !std::mem::take(&mut self.continues) {
                    self.attempt += 1;
                    // `usage` and approvals are the current attempt's.
                    self.usage = None;
                    self.budget_approved = None;
                }
                self.status = PhaseStatus::Running;
                self.started_at = Some(now.to_string());
                self.finished_at = None;
                self.duration_ms = None;
                self.exit_code = None;
            }
            Transition::Complete => {
                self.status = PhaseStatus::Completed;
                self.finished_at = Some(now.to_string());
                self.error = None;
            }
            Transition::Fail(failure) => {
                self.status = failure.status();
                self.finished_at = Some(now.to_string());
            }
            Transition::Wait => {
                // A gate starts waiting; a phase with `approval: after` ends
                // its attempt waiting.
                if from == PhaseStatus::Pending {
                    self.started_at = Some(now.to_string());
                } else {
                    self.finished_at = Some(now.to_string());
                }
                self.status = PhaseStatus::Waiting;
            }
            Transition::Skip { reason } => {
                self.status = PhaseStatus::Skipped;
                self.finished_at = Some(now.to_string());
                self.skip_reason = Some(reason);
            }
            Transition::Cancel => {
                self.status = PhaseStatus::Cancelled;
            }
            Transition::Reset => {
                // The attempt count, iteration, provider and model stay: the
                // next start is the next attempt, with the choices made for it.
                self.status = PhaseStatus::Pending;
                self.started_at = None;
                self.finished_at = None;
                self.duration_ms = None;
                self.exit_code = None;
                self.usage = None;
                self.continues = false;
                self.artifacts = Vec::new();
                self.error = None;
                self.skip_reason = None;
                self.forced = Vec::new();
                self.masked = Vec::new();
            }
            Transition::Interrupt { continues } => {
                self.status = PhaseStatus::Pending;
                self.finished_at = None;
                self.continues = continues;
            }
        }
        Ok(())
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How an attempt (or a loop) that did not end well ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It failed.
    Failed,
    /// It ran out of time.
    TimedOut,
    /// It was stopped on request while running.
    Cancelled,
}

impl Failure {
    /// The status a phase ends in.
    pub fn status(self) -> PhaseStatus {
        match self {
            Failure::Failed => PhaseStatus::Failed,
            Failure::TimedOut => PhaseStatus::TimedOut,
            Failure::Cancelled => PhaseStatus::Cancelled,
        }
    }
}

/// A change of a phase's status, with what it needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Pending → running: a new attempt starts (or an interrupted agent
    /// attempt goes on).
    Start,
    /// → completed: an attempt or loop ended well, a waiting phase was
    /// approved, or a person accepted or edited the outputs of one that
    /// failed.
    Complete,
    /// Running → failed, timed out or cancelled: the attempt (or loop) ended badly.
    Fail(Failure),
    /// → waiting for an approval: a gate became ready (from pending), or a
    /// phase with `approval: after` ended well (from running).
    Wait,
    /// Pending → skipped: its `if` was false, or a person skipped it.
    Skip {
        /// Why, as `skip_reason` keeps it.
        reason: String,
    },
    /// Pending, waiting or running → cancelled: the run was cancelled and
    /// the phase will never run (no attempt of its own ended).
    Cancel,
    /// Any → pending: set up for another attempt (`wfe retry`, and the
    /// dependants it sends back); what the last attempt left is cleared.
    Reset,
    /// Running → pending: its runner stopped during the attempt; with
    /// `continues`, an agent's conversation goes on at the next start.
    Interrupt {
        /// The next start continues this attempt instead of a new one.
        continues: bool,
    },
}

impl Transition {
    /// The transition's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Start => "start",
            Transition::Complete => "complete",
            Transition::Fail(_) => "fail",
            Transition::Wait => "wait",
            Transition::Skip { .. } => "skip",
            Transition::Cancel => "cancel",
            Transition::Reset => "reset",
            Transition::Interrupt { .. } => "interrupt",
        }
    }

    /// Whether a phase in `from` may take this transition.
    pub fn allowed_from(&self, from: PhaseStatus) -> bool {
        use PhaseStatus::{Cancelled, Failed, Pending, Running, TimedOut, Waiting};
        match self {
            Transition::Start | Transition::Skip { .. } => from == Pending,
            // Accepting outputs by hand completes a phase whose attempt
            // ended badly; nothing completes twice or without having run.
            Transition::Complete => {
                matches!(from, Running | Waiting | Failed | TimedOut | Cancelled)
            }
            Transition::Fail(_) => from == Running,
            // From waiting: a phase paused at its budget's soft share was
            // approved, and its conversation goes on.
            Transition::Interrupt { .. } => matches!(from, Running | Waiting),
            Transition::Wait => matches!(from, Pending | Running),
            Transition::Cancel => matches!(from, Pending | Waiting | Running),
            Transition::Reset => true,
        }
    }
}

/// A transition the phase's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phase `{phase}` is {}: it cannot {transition}", .from.as_str())]
pub struct IllegalTransition {
    /// The phase.
    pub phase: String,
    /// Its status.
    pub from: PhaseStatus,
    /// The transition refused.
    pub transition: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2024-01-02T03:04:05Z";
    const ALL: [PhaseStatus; 8] = [
        PhaseStatus::Pending,
        PhaseStatus::Running,
        PhaseStatus::Waiting,
        PhaseStatus::Completed,
        PhaseStatus::Failed,
        PhaseStatus::Skipped,
        PhaseStatus::Cancelled,
        PhaseStatus::TimedOut,
    ];

    fn state(status: PhaseStatus) -> PhaseState {
        PhaseState {
            status,
            attempt: 2,
            started_at: Some("then".into()),
            ..PhaseState::pending("p", PhaseKind::Script)
        }
    }

    fn skip() -> Transition {
        Transition::Skip {
            reason: "why".into(),
        }
    }

    #[test]
    fn each_transition_is_allowed_from_exactly_its_statuses() {
        use PhaseStatus::*;
        let cases: [(Transition, &[PhaseStatus]); 10] = [
            (Transition::Start, &[Pending]),
            (
                Transition::Complete,
                &[Running, Waiting, Failed, TimedOut, Cancelled],
            ),
            (Transition::Fail(Failure::Failed), &[Running]),
            (Transition::Fail(Failure::TimedOut), &[Running]),
            (Transition::Fail(Failure::Cancelled), &[Running]),
            (Transition::Wait, &[Pending, Running]),
            (skip(), &[Pending]),
            (Transition::Cancel, &[Pending, Waiting, Running]),
            (Transition::Reset, &ALL),
            (
                Transition::Interrupt { continues: true },
                &[Running, Waiting],
            ),
        ];
        for (transition, allowed) in cases {
            for from in ALL {
                let mut s = state(from);
                let before = s.clone();
                let result = s.apply(transition.clone(), NOW);
                if allowed.contains(&from) {
                    assert_eq!(result, Ok(()), "{} from {from:?}", transition.name());
                } else {
                    assert_eq!(
                        result,
                        Err(IllegalTransition {
                            phase: "p".into(),
                            from,
                            transition: transition.name(),
                        }),
                        "{} from {from:?}",
                        transition.name()
                    );
                    assert_eq!(s, before, "a refused transition changes nothing");
                }
            }
        }
    }

    #[test]
    fn each_transition_sets_its_status_and_timestamps() {
        use PhaseStatus::*;
        let now = Some(NOW.to_string());
        let then = Some("then".to_string());
        // (from, transition, status, attempt, started_at, finished_at)
        let cases = [
            (Pending, Transition::Start, Running, 3, now.clone(), None),
            (
                Running,
                Transition::Complete,
                Completed,
                2,
                then.clone(),
                now.clone(),
            ),
            (
                Waiting,
                Transition::Complete,
                Completed,
                2,
                then.clone(),
                now.clone(),
            ),
            (
                Running,
                Transition::Fail(Failure::Failed),
                Failed,
                2,
                then.clone(),
                now.clone(),
            ),
            (
                Running,
                Transition::Fail(Failure::TimedOut),
                TimedOut,
                2,
                then.clone(),
                now.clone(),
            ),
            (
                Running,
                Transition::Fail(Failure::Cancelled),
                Cancelled,
                2,
                then.clone(),
                now.clone(),
            ),
            (Pending, Transition::Wait, Waiting, 2, now.clone(), None),
            (
                Running,
                Transition::Wait,
                Waiting,
                2,
                then.clone(),
                now.clone(),
            ),
            (Pending, skip(), Skipped, 2, then.clone(), now.clone()),
            (
                Waiting,
                Transition::Cancel,
                Cancelled,
                2,
                then.clone(),
                None,
            ),
            (Completed, Transition::Reset, Pending, 2, None, None),
            (
                Running,
                Transition::Interrupt { continues: false },
                Pending,
                2,
                then.clone(),
                None,
            ),
        ];
        for (from, transition, status, attempt, started_at, finished_at) in cases {
            let name = transition.name();
            let mut s = state(from);
            s.apply(transition, NOW).expect(name);
            assert_eq!(
                (s.status, s.attempt, s.started_at, s.finished_at),
                (status, attempt, started_at, finished_at),
                "{name} from {from:?}"
            );
        }
    }

    #[test]
    fn start_goes_on_with_an_interrupted_agent_attempt() {
        let mut s = state(PhaseStatus::Running);
        s.apply(Transition::Interrupt { continues: true }, NOW)
            .expect("interrupt");
        assert!(s.continues);
        s.apply(Transition::Start, NOW).expect("start");
        assert_eq!((s.attempt, s.continues), (2, false), "same attempt");
        s.apply(Transition::Fail(Failure::Failed), NOW)
            .expect("fail");
        s.apply(Transition::Reset, NOW).expect("reset");
        s.apply(Transition::Start, NOW).expect("start");
        assert_eq!(s.attempt, 3, "a new attempt");
    }

    #[test]
    fn reset_clears_what_the_last_attempt_left_and_keeps_the_choices() {
        let mut s = state(PhaseStatus::Failed);
        s.iteration = 4;
        s.provider = Some("p".into());
        s.model = Some("m".into());
        s.exit_code = Some(3);
        s.duration_ms = Some(5);
        s.artifacts = vec!["a".into()];
        s.forced = vec!["a".into()];
        s.error = Some(AttemptError::Exit { code: 3 });
        s.skip_reason = Some("x".into());
        s.continues = true;
        s.apply(Transition::Reset, NOW).expect("reset");
        let expected = PhaseState {
            attempt: 2,
            iteration: 4,
            provider: Some("p".into()),
            model: Some("m".into()),
            ..PhaseState::pending("p", PhaseKind::Script)
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn completing_clears_the_error_and_skipping_keeps_its_reason() {
        let mut s = state(PhaseStatus::Failed);
        s.error = Some(AttemptError::Exit { code: 1 });
        s.apply(Transition::Complete, NOW).expect("complete");
        assert_eq!(s.error, None);
        let mut s = state(PhaseStatus::Pending);
        s.apply(skip(), NOW).expect("skip");
        assert_eq!(s.skip_reason.as_deref(), Some("why"));
        let refused = state(PhaseStatus::Completed)
            .apply(Transition::Start, NOW)
            .expect_err("completed phases do not start");
        assert_eq!(
            refused.to_string(),
            "phase `p` is completed: it cannot start"
        );
    }
}
