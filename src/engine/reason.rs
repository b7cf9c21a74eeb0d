//! Why a run stands where it does, and why an operation does not apply:
//! typed facts, never advice.
//!
//! [`StopReason`] is what `run.json` records next to a run's status (it
//! failed, waits, paused, was cancelled); [`Refusal`] and [`Unrunnable`]
//! are what the engine's errors say when a person's request or a
//! template's shape does not fit. Each displays as a plain sentence; which
//! command moves the run on is the CLI's to say (`cli` renders the hint),
//! so stored files and library messages hold data, not command lines.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::{IllegalTransition, PhaseStatus, RunStatus};

/// Why a run failed, stopped or waits: `run.json`'s `reason`.
///
/// Serialised internally tagged by `kind`, e.g.
/// `{"kind": "phases-failed", "phases": ["bad"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StopReason {
    /// These phases failed (or timed out) and stopped the run.
    PhasesFailed {
        /// The phases, in template order.
        phases: Vec<String>,
    },
    /// The run was cancelled on request.
    Cancelled {
        /// Who asked, when it was done without a runner (`Name <email>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The run was paused on request.
    PausedOnRequest {
        /// Who asked, when it was done without a runner (`Name <email>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The runner was interrupted (Ctrl-C); running phases go back to pending.
    Interrupted,
    /// The runner's `--deadline` came: it stopped as an interrupt does
    /// (running phases back to pending), so another runner can resume.
    Deadline,
    /// A provider's retries ran out: the phase waits, pending, for the
    /// provider to come back.
    ProviderUnavailable {
        /// The phase (a loop's child as `loop[k].child`).
        phase: String,
        /// The provider's name in config.
        provider: String,
        /// What the provider's last failure was.
        message: String,
    },
    /// These phases wait for a person's approval.
    WaitingForApproval {
        /// The waiting phases, in template order; a loop's child as
        /// `wfe approve` takes it, `CHILD@K`.
        phases: Vec<String>,
    },
    /// Auto mode is off and a phase ended: the run waits to be told to go on.
    AutoOff,
    /// No phase can start although some are pending (a DAG that cannot
    /// progress; unreachable for a validated template).
    Blocked,
    /// A failed phase's outputs were accepted or edited by hand.
    FixedByHand {
        /// The phase.
        phase: String,
    },
    /// The phase was approved while no runner held the run.
    Approved {
        /// The phase.
        phase: String,
    },
    /// The phase was skipped by hand.
    SkippedByHand {
        /// The phase.
        phase: String,
    },
    /// Another attempt of the phase was asked for.
    RetryRequested {
        /// The phase.
        phase: String,
    },
    /// A reason an older wfe wrote as a sentence (before reasons were typed).
    Legacy {
        /// The sentence as written.
        text: String,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::PhasesFailed { phases } => {
                let s = if phases.len() == 1 { "" } else { "s" };
                write!(f, "phase{s} {} failed", phases.join(", "))
            }
            StopReason::Cancelled { by: None } => f.write_str("cancelled on request"),
            StopReason::Cancelled { by: Some(by) } => write!(f, "cancelled by {by}"),
            StopReason::PausedOnRequest { by: None } => f.write_str("paused on request"),
            StopReason::PausedOnRequest { by: Some(by) } => write!(f, "paused by {by}"),
            StopReason::Interrupted => f.write_str("interrupted"),
            StopReason::Deadline => f.write_str("stopped at its deadline"),
            StopReason::ProviderUnavailable {
                phase,
                provider,
                message,
            } => write!(f, "{phase} paused: provider `{provider}`: {message}"),
            StopReason::WaitingForApproval { phases } => {
                write!(f, "{} waiting for approval", phases.join(", "))
            }
            StopReason::AutoOff => f.write_str("auto mode is off"),
            StopReason::Blocked => f.write_str("no phase can start: the DAG is blocked"),
            StopReason::FixedByHand { phase } => write!(f, "{phase} fixed by hand"),
            StopReason::Approved { phase } => write!(f, "{phase} approved"),
            StopReason::SkippedByHand { phase } => write!(f, "{phase} skipped by hand"),
            StopReason::RetryRequested { phase } => write!(f, "retry of {phase} requested"),
            StopReason::Legacy { text } => f.write_str(text),
        }
    }
}

/// `run.json`'s `reason` as stored: typed, or a sentence from an older wfe.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub(super) enum StoredReason {
    /// As wfe writes it.
    Typed(StopReason),
    /// A sentence an older wfe wrote; it reads as [`StopReason::Legacy`].
    Text(String),
}

/// Reads `run.json`'s `reason`, turning an older wfe's sentence into
/// [`StopReason::Legacy`] so those repositories still load.
pub(super) fn read_reason<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StopReason>, D::Error> {
    Ok(
        Option::<StoredReason>::deserialize(deserializer)?.map(|stored| match stored {
            StoredReason::Typed(reason) => reason,
            StoredReason::Text(text) => StopReason::Legacy { text },
        }),
    )
}

/// Why a manual operation (accept, retry, skip, a control request without
/// a runner) does not apply to the run or phase as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Retry: the phase never ran, so resuming the run runs it.
    #[error("it has not run yet")]
    NotRunYet,
    /// Skip: the phase completed; its artifacts stand.
    #[error("it completed and its artifacts stand")]
    Completed,
    /// Skip: the phase is skipped already.
    #[error("it is already skipped")]
    AlreadySkipped,
    /// Retry, skip: the phase waits for an approval.
    #[error("it is waiting for an approval")]
    WaitingForApproval,
    /// Pause, cancel: the run already is where the request would put it.
    #[error("it is already {}", .0.as_str())]
    Already(RunStatus),
    /// Accept: the phase's last attempt left no rejected outputs.
    #[error("it is {} and its last attempt has no rejected outputs; accept takes outputs that failed their schema", .status.as_str())]
    NoRejectedOutputs {
        /// The phase's status.
        status: PhaseStatus,
    },
    /// Accept: one of the phase's outputs was never written.
    #[error("output `{artifact}` was never written, so there is nothing to accept")]
    NeverWritten {
        /// The output.
        artifact: String,
    },
    /// Accept: a rejected output is not a JSON document.
    #[error("{message}")]
    Unparsable {
        /// The output.
        artifact: String,
        /// What the parser said, with the file.
        message: Box<str>,
    },
    /// Continue: only a live runner holds a run back; none is running it.
    #[error("no runner is running it")]
    NoRunner {
        /// The run's status, so the one command that moves it on can be named.
        status: RunStatus,
        /// Why it stands there (boxed: engine errors stay small).
        reason: Option<Box<StopReason>>,
    },
    /// Continue: the run is over (completed, cancelled, or failed with its
    /// failures standing); nothing would go on.
    #[error("it is {} and nothing is left to run", .0.as_str())]
    Over(RunStatus),
    /// Approve: the phase is not waiting, or the attached artifact does not fit.
    #[error("{0}")]
    Approval(String),
    /// The phase's status does not allow the change.
    #[error(transparent)]
    Transition(Box<IllegalTransition>),
    /// Retry with a prompt, a comment for the agent: the phase is no agent.
    #[error("it is a {0} phase; only an agent phase has a prompt")]
    NotAnAgent(&'static str),
    /// Retry with a refreshed template: the run cannot follow its shape.
    #[error("the current template changes the run's shape: {0}")]
    TemplateShape(String),
}

impl From<IllegalTransition> for Refusal {
    fn from(e: IllegalTransition) -> Self {
        // Boxed: engine errors stay small however much a refusal says.
        Refusal::Transition(Box::new(e))
    }
}

/// Why this version of wfe cannot run a phase the way the template asks
/// (checked before a run is created).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrunnable {
    /// `retry` on a loop (its children may have one).
    #[error("`retry` on a loop is not supported; give it to the loop's child phases")]
    RetryOnLoop,
    /// `timeout` on a loop (its children may have one).
    #[error("`timeout` on a loop is not supported; give it to the loop's child phases")]
    TimeoutOnLoop,
    /// A loop inside a loop inside a loop: loops nest two deep at most.
    #[error(
        "it is a loop inside loop `{parent}`, itself inside a loop; loops nest two deep at most"
    )]
    LoopInLoop {
        /// The loop holding it.
        parent: String,
    },
    /// `on_exhausted: {"next": …}` on a loop inside a loop: a fallback is
    /// a top-level phase, beside a top-level loop.
    #[error(
        "it is a loop inside a loop with `on_exhausted: next`; only a top-level loop hands over to a fallback"
    )]
    NextInNestedLoop,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn phase(id: &str) -> String {
        id.to_string()
    }

    /// Every reason with its sentence and its stored form.
    fn table() -> Vec<(StopReason, &'static str, serde_json::Value)> {
        vec![
            (
                StopReason::PhasesFailed {
                    phases: vec![phase("bad")],
                },
                "phase bad failed",
                json!({"kind": "phases-failed", "phases": ["bad"]}),
            ),
            (
                StopReason::PhasesFailed {
                    phases: vec![phase("a"), phase("b")],
                },
                "phases a, b failed",
                json!({"kind": "phases-failed", "phases": ["a", "b"]}),
            ),
            (
                StopReason::Cancelled { by: None },
                "cancelled on request",
                json!({"kind": "cancelled"}),
            ),
            (
                StopReason::Cancelled {
                    by: Some("Ann <a@x>".into()),
                },
                "cancelled by Ann <a@x>",
                json!({"kind": "cancelled", "by": "Ann <a@x>"}),
            ),
            (
                StopReason::PausedOnRequest { by: None },
                "paused on request",
                json!({"kind": "paused-on-request"}),
            ),
            (
                StopReason::PausedOnRequest {
                    by: Some("Ann <a@x>".into()),
                },
                "paused by Ann <a@x>",
                json!({"kind": "paused-on-request", "by": "Ann <a@x>"}),
            ),
            (
                StopReason::Interrupted,
                "interrupted",
                json!({"kind": "interrupted"}),
            ),
            (
                StopReason::ProviderUnavailable {
                    phase: phase("plan"),
                    provider: "claude".into(),
                    message: "failed after 3 attempts: HTTP 503".into(),
                },
                "plan paused: provider `claude`: failed after 3 attempts: HTTP 503",
                json!({"kind": "provider-unavailable", "phase": "plan", "provider": "claude",
                       "message": "failed after 3 attempts: HTTP 503"}),
            ),
            (
                StopReason::WaitingForApproval {
                    phases: vec![phase("ok"), phase("ok2")],
                },
                "ok, ok2 waiting for approval",
                json!({"kind": "waiting-for-approval", "phases": ["ok", "ok2"]}),
            ),
            (
                StopReason::AutoOff,
                "auto mode is off",
                json!({"kind": "auto-off"}),
            ),
            (
                StopReason::Blocked,
                "no phase can start: the DAG is blocked",
                json!({"kind": "blocked"}),
            ),
            (
                StopReason::FixedByHand { phase: phase("b") },
                "b fixed by hand",
                json!({"kind": "fixed-by-hand", "phase": "b"}),
            ),
            (
                StopReason::Approved { phase: phase("ok") },
                "ok approved",
                json!({"kind": "approved", "phase": "ok"}),
            ),
            (
                StopReason::SkippedByHand { phase: phase("b") },
                "b skipped by hand",
                json!({"kind": "skipped-by-hand", "phase": "b"}),
            ),
            (
                StopReason::RetryRequested { phase: phase("c") },
                "retry of c requested",
                json!({"kind": "retry-requested", "phase": "c"}),
            ),
            (
                StopReason::Legacy {
                    text: "phase bad failed".into(),
                },
                "phase bad failed",
                json!({"kind": "legacy", "text": "phase bad failed"}),
            ),
        ]
    }

    #[test]
    fn every_reason_reads_as_a_sentence_without_commands_and_round_trips() {
        for (reason, text, stored) in table() {
            assert_eq!(reason.to_string(), text, "{reason:?}");
            assert!(!text.contains("`wfe"), "{text}");
            assert_eq!(serde_json::to_value(&reason).unwrap(), stored, "{reason:?}");
            let back: StopReason = serde_json::from_value(stored).unwrap();
            assert_eq!(back, reason);
        }
    }

    #[derive(Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "read_reason")]
        reason: Option<StopReason>,
    }

    #[test]
    fn a_stored_sentence_reads_as_a_legacy_reason_and_a_typed_one_as_itself() {
        // As wfe wrote it before reasons were typed (split so that no
        // string here names a command).
        let text = ["b fixed by hand; `", "wfe resume` goes on"].concat();
        let old: Holder = serde_json::from_value(json!({ "reason": text })).unwrap();
        assert_eq!(old.reason, Some(StopReason::Legacy { text }));
        let typed: Holder =
            serde_json::from_value(json!({"reason": {"kind": "auto-off"}})).unwrap();
        assert_eq!(typed.reason, Some(StopReason::AutoOff));
        let none: Holder = serde_json::from_value(json!({})).unwrap();
        assert_eq!(none.reason, None);
        let null: Holder = serde_json::from_value(json!({"reason": null})).unwrap();
        assert_eq!(null.reason, None);
        assert!(
            serde_json::from_value::<Holder>(json!({"reason": {"kind": "no-such-kind"}})).is_err()
        );
    }

    #[test]
    fn a_run_json_written_before_reasons_were_typed_still_loads() {
        // A `run.json` as an older wfe committed it, advice and all.
        let text = ["ok waiting for approval: `", "wfe approve 01run ok`"].concat();
        let old = json!({
            "id": "01run",
            "template": "gated",
            "template_source": ".wfe/templates/gated.json",
            "template_digest": "sha256:0",
            "args": {},
            "status": "waiting",
            "auto": true,
            "base_commit": "0000000000000000000000000000000000000000",
            "created_at": "2026-01-01T00:00:00Z",
            "schemas": {},
            "reason": text,
        });
        let bytes = serde_json::to_vec_pretty(&old).unwrap();
        let record: super::super::RunRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(record.status, RunStatus::Waiting);
        assert_eq!(
            record.reason,
            Some(StopReason::Legacy { text: text.clone() })
        );
        assert_eq!(record.reason.unwrap().to_string(), text);
    }

    #[test]
    fn refusals_and_unrunnable_phases_say_the_facts_only() {
        let table: Vec<(String, &str)> = vec![
            (Refusal::NotRunYet.to_string(), "it has not run yet"),
            (
                Refusal::Completed.to_string(),
                "it completed and its artifacts stand",
            ),
            (Refusal::AlreadySkipped.to_string(), "it is already skipped"),
            (
                Refusal::WaitingForApproval.to_string(),
                "it is waiting for an approval",
            ),
            (
                Refusal::Already(RunStatus::Cancelled).to_string(),
                "it is already cancelled",
            ),
            (
                Refusal::NoRejectedOutputs {
                    status: PhaseStatus::Completed,
                }
                .to_string(),
                "it is completed and its last attempt has no rejected outputs; accept takes outputs that failed their schema",
            ),
            (
                Refusal::NeverWritten {
                    artifact: "note".into(),
                }
                .to_string(),
                "output `note` was never written, so there is nothing to accept",
            ),
            (
                Refusal::Unparsable {
                    artifact: "note".into(),
                    message: "note.json is not JSON".into(),
                }
                .to_string(),
                "note.json is not JSON",
            ),
            (
                Refusal::NoRunner {
                    status: RunStatus::Paused,
                    reason: None,
                }
                .to_string(),
                "no runner is running it",
            ),
            (
                Refusal::Over(RunStatus::Completed).to_string(),
                "it is completed and nothing is left to run",
            ),
            (
                Refusal::Approval("phase `g` is pending, not waiting for an approval".into())
                    .to_string(),
                "phase `g` is pending, not waiting for an approval",
            ),
            (
                Refusal::from(IllegalTransition {
                    phase: "p".into(),
                    from: PhaseStatus::Skipped,
                    transition: "skip",
                })
                .to_string(),
                "phase `p` is skipped: it cannot skip",
            ),
            (
                Unrunnable::RetryOnLoop.to_string(),
                "`retry` on a loop is not supported; give it to the loop's child phases",
            ),
            (
                Unrunnable::TimeoutOnLoop.to_string(),
                "`timeout` on a loop is not supported; give it to the loop's child phases",
            ),
            (
                Unrunnable::LoopInLoop {
                    parent: "fix".into(),
                }
                .to_string(),
                "it is a loop inside loop `fix`, itself inside a loop; loops nest two deep at most",
            ),
        ];
        for (text, expected) in table {
            assert_eq!(text, expected);
        }
    }
}
