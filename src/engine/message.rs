//! Checkpoint commit messages, typed.
//!
//! Every checkpoint's message is a summary line and `Wfe-*` trailers
//! (DESIGN.md §3). The runner, the offline operations and the readers
//! (`wfe list`, `wfe log`, rollback's search for a phase's completion) all
//! go through [`CheckpointMessage`]: one writer ([`CheckpointMessage::to_message`])
//! and one parser ([`CheckpointMessage::parse`]), so the trailers' order
//! and spelling live here and in [`Trailer`] alone.

use std::fmt;

use crate::engine::RunStatus;
use crate::store::{Message, Trailer};

/// What a checkpoint recorded: the value of a `Wfe-Event` trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointEvent {
    /// The run's first checkpoint.
    RunCreated,
    /// A runner started (or resumed) the run.
    RunStarted,
    /// Every phase ended well.
    RunCompleted,
    /// A phase that stops the run failed.
    RunFailed,
    /// The run stopped and can go on.
    RunPaused,
    /// The run was cancelled.
    RunCancelled,
    /// The run waits for a person.
    RunWaiting,
    /// The run went back to pending.
    RunPending,
    /// An attempt of a phase started.
    PhaseStarted,
    /// A phase completed.
    PhaseCompleted,
    /// A phase failed (its last attempt did).
    PhaseFailed,
    /// An attempt failed and another will follow.
    AttemptFailed,
    /// A phase's attempt ran out of time.
    PhaseTimedOut,
    /// A phase was cancelled.
    PhaseCancelled,
    /// A phase waits for approval.
    PhaseWaiting,
    /// A phase was skipped (its condition was false, or by hand).
    PhaseSkipped,
    /// A running attempt was lost (its runner stopped or died).
    PhaseInterrupted,
    /// A phase went back to pending (downstream of a retry).
    PhaseReset,
    /// `wfe retry` asked for a phase to run again.
    PhaseRetryRequested,
    /// A retry took the repo's current template for the phase and what follows.
    TemplateRefreshed,
    /// A waiting phase was approved.
    PhaseApproved,
    /// A phase's outputs were accepted by hand.
    PhaseAccepted,
    /// An artifact was edited by hand.
    ArtifactEdited,
    /// A loop began an iteration.
    IterationStarted,
    /// A loop's earlier iterations were moved under its attempt.
    IterationsSetAside,
    /// An agent's request and answer.
    AgentExchange,
    /// An agent's tool call.
    ToolCall,
    /// A second opinion on an agent's output.
    Review,
    /// `wfe pause` was asked.
    PauseRequested,
    /// `wfe cancel` was asked.
    CancelRequested,
    /// `wfe continue` was asked.
    ContinueRequested,
    /// `wfe auto RUN on`.
    AutoOn,
    /// `wfe auto RUN off`.
    AutoOff,
    /// A comment was added.
    Comment,
    /// The working tree was saved before `wfe rollback --code` restored a snapshot.
    CodeSaved,
    /// A `wfe worker` claimed a phase.
    PhaseClaimed,
    /// A `wfe worker` renewed its claim on a phase.
    ClaimRenewed,
    /// A `wfe worker` gave a phase back without a result.
    PhaseReleased,
    /// A `wfe worker` brought a phase's result into the run.
    PhaseMerged,
    /// An event this version of wfe does not know (written by another one).
    Other(String),
}

/// Every known event with its spelling, so writing and reading never disagree.
const EVENTS: &[(CheckpointEvent, &str)] = &[
    (CheckpointEvent::RunCreated, "run-created"),
    (CheckpointEvent::RunStarted, "run-started"),
    (CheckpointEvent::RunCompleted, "run-completed"),
    (CheckpointEvent::RunFailed, "run-failed"),
    (CheckpointEvent::RunPaused, "run-paused"),
    (CheckpointEvent::RunCancelled, "run-cancelled"),
    (CheckpointEvent::RunWaiting, "run-waiting"),
    (CheckpointEvent::RunPending, "run-pending"),
    (CheckpointEvent::PhaseStarted, "phase-started"),
    (CheckpointEvent::PhaseCompleted, "phase-completed"),
    (CheckpointEvent::PhaseFailed, "phase-failed"),
    (CheckpointEvent::AttemptFailed, "attempt-failed"),
    (CheckpointEvent::PhaseTimedOut, "phase-timed-out"),
    (CheckpointEvent::PhaseCancelled, "phase-cancelled"),
    (CheckpointEvent::PhaseWaiting, "phase-waiting"),
    (CheckpointEvent::PhaseSkipped, "phase-skipped"),
    (CheckpointEvent::PhaseInterrupted, "phase-interrupted"),
    (CheckpointEvent::PhaseReset, "phase-reset"),
    (
        CheckpointEvent::PhaseRetryRequested,
        "phase-retry-requested",
    ),
    (CheckpointEvent::TemplateRefreshed, "template-refreshed"),
    (CheckpointEvent::PhaseApproved, "phase-approved"),
    (CheckpointEvent::PhaseAccepted, "phase-accepted"),
    (CheckpointEvent::ArtifactEdited, "artifact-edited"),
    (CheckpointEvent::IterationStarted, "iteration-started"),
    (CheckpointEvent::IterationsSetAside, "iterations-set-aside"),
    (CheckpointEvent::AgentExchange, "agent-exchange"),
    (CheckpointEvent::ToolCall, "tool-call"),
    (CheckpointEvent::Review, "review"),
    (CheckpointEvent::PauseRequested, "pause-requested"),
    (CheckpointEvent::CancelRequested, "cancel-requested"),
    (CheckpointEvent::ContinueRequested, "continue-requested"),
    (CheckpointEvent::AutoOn, "auto-on"),
    (CheckpointEvent::AutoOff, "auto-off"),
    (CheckpointEvent::Comment, "comment"),
    (CheckpointEvent::PhaseClaimed, "phase-claimed"),
    (CheckpointEvent::ClaimRenewed, "claim-renewed"),
    (CheckpointEvent::PhaseReleased, "phase-released"),
    (CheckpointEvent::PhaseMerged, "phase-merged"),
    (CheckpointEvent::CodeSaved, "code-saved"),
];

impl CheckpointEvent {
    /// The event as written in the `Wfe-Event` trailer.
    pub fn as_str(&self) -> &str {
        if let CheckpointEvent::Other(text) = self {
            return text;
        }
        EVENTS
            .iter()
            .find(|(e, _)| e == self)
            .map_or("", |(_, s)| s)
    }

    /// Reads a `Wfe-Event` value; one this version does not know is kept as [`CheckpointEvent::Other`].
    pub fn parse(text: &str) -> Self {
        EVENTS.iter().find(|(_, s)| *s == text).map_or_else(
            || CheckpointEvent::Other(text.to_string()),
            |(e, _)| e.clone(),
        )
    }

    /// The event of a run reaching `status`.
    pub fn run(status: RunStatus) -> Self {
        match status {
            RunStatus::Running => CheckpointEvent::RunStarted,
            RunStatus::Completed => CheckpointEvent::RunCompleted,
            RunStatus::Failed => CheckpointEvent::RunFailed,
            RunStatus::Paused => CheckpointEvent::RunPaused,
            RunStatus::Cancelled => CheckpointEvent::RunCancelled,
            RunStatus::Waiting => CheckpointEvent::RunWaiting,
            RunStatus::Pending => CheckpointEvent::RunPending,
        }
    }
}

impl fmt::Display for CheckpointEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of a checkpoint, with the phase it is about (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted {
    /// The phase key (`build`, `fix/iterations/2/test`), or `None` for the run.
    pub phase: Option<String>,
    /// What happened.
    pub event: CheckpointEvent,
}

/// A checkpoint's commit message with typed trailers.
///
/// Trailers are written in one order: run, template, each `(phase, event)`
/// pair, provider, model, forced, failed phases, who asked, and the status last (where
/// tools look for it). Several events fold into one checkpoint when they
/// happen together (a phase completing and the next starting).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointMessage {
    /// The one-line summary, without the `wfe: ` prefix.
    pub summary: String,
    /// The run's id.
    pub run: String,
    /// The template's name.
    pub template: String,
    /// What happened, in order.
    pub events: Vec<Noted>,
    /// A provider chosen for a retry.
    pub provider: Option<String>,
    /// A model chosen for a retry.
    pub model: Option<String>,
    /// The change overrode a validation (`wfe accept --force`, `wfe edit` of an invalid artifact).
    pub forced: bool,
    /// Phases that failed or timed out in a run that completed anyway
    /// (`on_failure: continue`); written only with status `completed`.
    pub failed: Vec<String>,
    /// Who asked: `Name <email>` and the process.
    pub requested_by: Vec<String>,
    /// The run's status after the checkpoint; `None` only when read from a
    /// message that lacks it or names a status this version does not know.
    pub status: Option<RunStatus>,
}

impl CheckpointMessage {
    /// A message about run `run` of template `template`, summarised by `summary`.
    pub fn new(run: &str, template: &str, summary: impl Into<String>) -> Self {
        CheckpointMessage {
            summary: summary.into(),
            run: run.to_string(),
            template: template.to_string(),
            ..CheckpointMessage::default()
        }
    }

    /// Adds an event, about `phase` if given.
    pub fn event(mut self, phase: Option<&str>, event: CheckpointEvent) -> Self {
        self.events.push(Noted {
            phase: phase.map(str::to_string),
            event,
        });
        self
    }

    /// Adds who asked.
    pub fn requested_by(mut self, by: &str) -> Self {
        self.requested_by.push(by.to_string());
        self
    }

    /// Sets the run's status after the checkpoint.
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Whether any event is `event`.
    pub fn has(&self, event: &CheckpointEvent) -> bool {
        self.events.iter().any(|n| &n.event == event)
    }

    /// The raw message, as committed.
    pub fn to_message(&self) -> Message {
        let mut m = Message::new(format!("wfe: {}", self.summary))
            .trailer(Trailer::Run, self.run.as_str())
            .trailer(Trailer::Template, self.template.as_str());
        for noted in &self.events {
            if let Some(phase) = &noted.phase {
                m = m.trailer(Trailer::Phase, phase.as_str());
            }
            m = m.trailer(Trailer::Event, noted.event.as_str());
        }
        if let Some(provider) = &self.provider {
            m = m.trailer(Trailer::Provider, provider.as_str());
        }
        if let Some(model) = &self.model {
            m = m.trailer(Trailer::Model, model.as_str());
        }
        if self.forced {
            m = m.trailer(Trailer::Forced, "true");
        }
        if self.status == Some(RunStatus::Completed) {
            for phase in &self.failed {
                m = m.trailer(Trailer::Failed, phase.as_str());
            }
        }
        for by in &self.requested_by {
            m = m.trailer(Trailer::RequestedBy, by.as_str());
        }
        if let Some(status) = self.status {
            m = m.trailer(Trailer::Status, status.as_str());
        }
        m
    }

    /// Reads a committed message. Never fails: a message that is not a
    /// checkpoint's (or is damaged) reads as one with fewer trailers. An
    /// event belongs to the `Wfe-Phase` right before it, if any.
    pub fn parse(message: &Message) -> Self {
        let summary = message
            .summary
            .strip_prefix("wfe: ")
            .unwrap_or(&message.summary);
        let mut out = CheckpointMessage {
            summary: summary.to_string(),
            ..CheckpointMessage::default()
        };
        let mut phase = None;
        for (key, value) in &message.trailers {
            let value = value.as_str();
            if Trailer::Phase.is(key) {
                phase = Some(value.to_string());
                continue;
            }
            if Trailer::Event.is(key) {
                out.events.push(Noted {
                    phase: phase.take(),
                    event: CheckpointEvent::parse(value),
                });
                continue;
            }
            phase = None;
            if Trailer::Run.is(key) {
                out.run = value.to_string();
            } else if Trailer::Template.is(key) {
                out.template = value.to_string();
            } else if Trailer::Provider.is(key) {
                out.provider = Some(value.to_string());
            } else if Trailer::Model.is(key) {
                out.model = Some(value.to_string());
            } else if Trailer::Forced.is(key) {
                out.forced = value == "true";
            } else if Trailer::Failed.is(key) {
                out.failed.push(value.to_string());
            } else if Trailer::RequestedBy.is(key) {
                out.requested_by.push(value.to_string());
            } else if Trailer::Status.is(key) {
                out.status = parse_status(value);
            }
        }
        out
    }
}

/// A status as `RunStatus::as_str` writes it.
fn parse_status(text: &str) -> Option<RunStatus> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_as_itself_and_unknown_ones_are_kept() {
        for (event, text) in EVENTS {
            assert_eq!(event.as_str(), *text);
            assert_eq!(&CheckpointEvent::parse(text), event);
        }
        let other = CheckpointEvent::parse("phase-teleported");
        assert_eq!(other, CheckpointEvent::Other("phase-teleported".into()));
        assert_eq!(other.as_str(), "phase-teleported");
        let mut spellings: Vec<&str> = EVENTS.iter().map(|(_, s)| *s).collect();
        spellings.sort_unstable();
        spellings.dedup();
        assert_eq!(spellings.len(), EVENTS.len(), "two events share a spelling");
    }

    #[test]
    fn writes_trailers_in_one_order_and_reads_them_back() {
        let m = CheckpointMessage::new("01jf", "feature", "a completed; b started")
            .event(Some("a"), CheckpointEvent::PhaseCompleted)
            .event(Some("b"), CheckpointEvent::PhaseStarted)
            .event(None, CheckpointEvent::RunStarted)
            .requested_by("Ann <ann@example.com> (pid 7)")
            .status(RunStatus::Running);
        let text = m.to_message().render();
        assert_eq!(
            text,
            "wfe: a completed; b started\n\n\
             Wfe-Run: 01jf\nWfe-Template: feature\n\
             Wfe-Phase: a\nWfe-Event: phase-completed\n\
             Wfe-Phase: b\nWfe-Event: phase-started\n\
             Wfe-Event: run-started\n\
             Wfe-Requested-By: Ann <ann@example.com> (pid 7)\n\
             Wfe-Status: running\n"
        );
        assert_eq!(CheckpointMessage::parse(&Message::parse(&text)), m);
    }

    #[test]
    fn optional_trailers_round_trip() {
        let mut m = CheckpointMessage::new("r", "t", "retry of c requested")
            .event(Some("c"), CheckpointEvent::PhaseRetryRequested)
            .status(RunStatus::Paused);
        m.provider = Some("gpt".into());
        m.model = Some("m2".into());
        m.forced = true;
        let back = CheckpointMessage::parse(&Message::parse(&m.to_message().render()));
        assert_eq!(back, m);
    }

    #[test]
    fn failed_phases_are_written_only_for_a_completed_run() {
        let mut m = CheckpointMessage::new("r", "t", "run completed")
            .event(None, CheckpointEvent::RunCompleted)
            .status(RunStatus::Completed);
        m.failed = vec!["lint".into(), "fix/iterations/2/test".into()];
        let text = m.to_message().render();
        assert!(
            text.ends_with(
                "Wfe-Failed: lint\nWfe-Failed: fix/iterations/2/test\nWfe-Status: completed\n"
            ),
            "{text}"
        );
        assert_eq!(CheckpointMessage::parse(&Message::parse(&text)), m);
        m.status = Some(RunStatus::Failed);
        assert!(!m.to_message().render().contains("Wfe-Failed"));
    }

    #[test]
    fn an_event_belongs_only_to_the_phase_right_before_it() {
        let raw = Message::new("wfe: x")
            .trailer(Trailer::Run, "r")
            .trailer(Trailer::Phase, "a")
            .trailer(Trailer::Event, "phase-completed")
            .trailer(Trailer::Phase, "b")
            .trailer(Trailer::Event, "phase-started")
            .trailer(Trailer::Event, "run-completed")
            .trailer(Trailer::Phase, "c")
            .trailer(Trailer::Status, "running")
            .trailer(Trailer::Event, "odd");
        let m = CheckpointMessage::parse(&raw);
        let pairs: Vec<(Option<&str>, &str)> = m
            .events
            .iter()
            .map(|n| (n.phase.as_deref(), n.event.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (Some("a"), "phase-completed"),
                (Some("b"), "phase-started"),
                (None, "run-completed"),
                (None, "odd"),
            ]
        );
        assert_eq!(m.status, Some(RunStatus::Running));
    }

    #[test]
    fn a_foreign_message_reads_as_an_empty_checkpoint() {
        let m = CheckpointMessage::parse(&Message::parse("Merge branch 'x'\n"));
        assert_eq!(m.summary, "Merge branch 'x'");
        assert!(m.events.is_empty() && m.status.is_none() && m.run.is_empty());
    }
}
