//! Reports of a run for CI hosts: collapsible log groups in each host's
//! dialect ([`groups`]), the GitHub Actions job summary ([`summary`]),
//! workflow-command annotations ([`annotations`]) and JUnit XML
//! ([`junit`]).
//!
//! Everything here renders text from a [`Report`], which is read from the
//! run's checkpoint only (the run view and its phase views), so what a CI
//! page shows is what the run recorded: secrets stay masked as they were
//! committed. Nothing here prints, reads the environment or names a
//! command; the CLI picks the host, writes the files and adds the advice.

pub mod annotations;
pub mod groups;
pub mod junit;
pub mod summary;

use crate::attempt::{AttemptError, LogLine};
use crate::engine::view::{PhaseView, RunView, ViewError};
use crate::engine::{PhaseState, PhaseStatus};
use crate::store::{RunId, RunStore};
use crate::template::PhaseKind;

/// How many log lines of a phase a report keeps (its tail).
pub const LOG_TAIL: usize = 40;

/// The CI service a run's output is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// GitHub Actions: `::group::` and workflow commands.
    GitHub,
    /// GitLab CI: `section_start` / `section_end` markers.
    GitLab,
    /// Buildkite: `--- ` lines open a collapsible group.
    Buildkite,
    /// Anything else: plain lines prefixed with the phase.
    Plain,
}

/// A run read for reporting: the run view and one [`Case`] per phase and
/// per loop child in each iteration.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run at its tip.
    pub run: RunView,
    /// Every phase, top-level phases in template order, each loop followed
    /// by its children iteration by iteration.
    pub cases: Vec<Case>,
}

/// One phase (or one loop child in one iteration) of a [`Report`].
#[derive(Debug, Clone)]
pub struct Case {
    /// How the phase is named: its id, or `child@N` for a loop's child in
    /// iteration N.
    pub name: String,
    /// The loop that holds it and the iteration, for a loop's child.
    pub within: Option<(String, u32)>,
    /// Its state at the tip.
    pub state: PhaseState,
    /// The last [`LOG_TAIL`] lines of its log, and how many came before.
    pub log_tail: (usize, Vec<LogLine>),
    /// Errors of earlier attempts that rejected outputs (invalid
    /// artifacts a retry got past), oldest first.
    pub earlier_errors: Vec<(String, AttemptError)>,
}

impl Report {
    /// Reads run `run` at its tip.
    pub fn load(store: &dyn RunStore, run: &RunId) -> Result<Self, ViewError> {
        let view = RunView::load(store, run)?;
        let mut cases = Vec::new();
        for row in &view.phases {
            let phase = PhaseView::load(store, run, &row.state.id)?;
            let iterations = phase.iterations.clone();
            cases.push(Case::from_view(phase));
            if row.state.kind != PhaseKind::Loop {
                continue;
            }
            add_iterations(store, run, &[], &iterations, &mut cases)?;
        }
        Ok(Report { run: view, cases })
    }

    /// The cases that failed or timed out.
    pub fn failed(&self) -> impl Iterator<Item = &Case> {
        self.cases
            .iter()
            .filter(|c| matches!(c.state.status, PhaseStatus::Failed | PhaseStatus::TimedOut))
    }
}

/// Adds a case per child of each of a loop's `iterations` (the loops
/// around it in iterations `at`), named as `wfe show` takes it
/// (`CHILD@K`, `CHILD@J.K`), and for a loop among them its own children's.
fn add_iterations(
    store: &dyn RunStore,
    run: &RunId,
    at: &[u32],
    iterations: &[Vec<PhaseState>],
    cases: &mut Vec<Case>,
) -> Result<(), ViewError> {
    for (i, children) in iterations.iter().enumerate() {
        let mut here = at.to_vec();
        here.push(i as u32 + 1);
        let joined: Vec<String> = here.iter().map(u32::to_string).collect();
        for child in children {
            let asked = format!("{}@{}", child.id, joined.join("."));
            let view = PhaseView::load(store, run, &asked)?;
            let inner = view.iterations.clone();
            cases.push(Case::from_view(view));
            if child.kind == PhaseKind::Loop {
                add_iterations(store, run, &here, &inner, cases)?;
            }
        }
    }
    Ok(())
}

impl Case {
    fn from_view(view: PhaseView) -> Self {
        let name = view.address.clone();
        let (skipped, tail) = view.log_tail(LOG_TAIL);
        let log_tail = (skipped, tail.to_vec());
        let earlier_errors = view
            .attempts
            .iter()
            .filter_map(|a| Some((a.number.clone(), a.error.clone()?)))
            .filter(|(_, e)| matches!(e, AttemptError::InvalidOutputs { .. }))
            .collect();
        Case {
            name,
            within: view.within,
            state: view.state,
            log_tail,
            earlier_errors,
        }
    }
}

/// Every line of an attempt error: its sentence, and for invalid inputs or
/// outputs each artifact's problem and each schema violation.
pub fn error_lines(error: &AttemptError) -> Vec<String> {
    match error {
        AttemptError::InvalidOutputs { problems } | AttemptError::InvalidInputs { problems } => {
            let what = if matches!(error, AttemptError::InvalidInputs { .. }) {
                "input"
            } else {
                "output"
            };
            let mut lines = vec![format!("{} invalid {what}(s):", problems.len())];
            for p in problems {
                lines.push(format!(
                    "  {} (schema {}): {}",
                    p.artifact, p.schema, p.message
                ));
                for v in &p.violations {
                    lines.push(format!("    {v}  (schema {})", v.schema_path));
                }
            }
            lines
        }
        other => vec![other.to_string()],
    }
}

/// The kind of an attempt error as stored (`exit`, `timed_out`,
/// `invalid_outputs`, …): JUnit's failure `type`.
pub fn error_kind(error: &AttemptError) -> String {
    serde_json::to_value(error)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_else(|| "error".to_string())
}

/// A duration in milliseconds as people read it: `12ms`, `3.4s`, `2m05s`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_progress_lines() {
        assert_eq!(human_ms(12), "12ms");
        assert_eq!(human_ms(3400), "3.4s");
        assert_eq!(human_ms(125_000), "2m05s");
    }

    #[test]
    fn an_error_kind_is_its_stored_tag() {
        assert_eq!(error_kind(&AttemptError::Exit { code: 2 }), "exit");
        assert_eq!(error_kind(&AttemptError::Cancelled), "cancelled");
    }
}
