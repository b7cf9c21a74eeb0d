//! Who plays an agent phase: the engine asks, the caller's config answers.
//! Also which seats a run will ask for ([`SeatRequest`]), so the caller can
//! check them all before anything is written.

use crate::agent::Seat;
use crate::engine::operations::Overrides;
use std::collections::BTreeMap;

use crate::engine::{Dag, PhaseState, PhaseStatus, RunSnapshot};
use crate::provider::ProviderError;
use crate::template::{Phase, PhaseKind, Template};

/// The schema a second opinion submits; frozen into runs whose phases have a `review`.
pub const REVIEW_SCHEMA: &str = "review";

/// Which seat of an agent phase is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatRole {
    /// The model doing the phase's work.
    Primary,
    /// The second opinion.
    Reviewer,
}

/// Resolves a phase's role, provider and model into a ready [`Seat`].
///
/// The CLI implements it from `.wfe/config.json`, the user's keys and
/// `--replay`; the engine stays free of config files and environments.
pub trait Seats: Send + Sync + std::fmt::Debug {
    /// The seat for phase `phase` (its key: the id of a top-level phase,
    /// `LOOP/iterations/K/CHILD` for a loop's child in iteration K, see
    /// [`crate::engine::layout::child_key`]): `role`, or
    /// `provider` and `model` overriding it (a retry's override wins over
    /// the template's, the caller has already chosen).
    fn seat(
        &self,
        phase: &str,
        seat: SeatRole,
        role: Option<&str>,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Result<Seat, ProviderError>;
}

/// The role that reviews when a review names neither a role nor a provider.
pub const DEFAULT_REVIEWER_ROLE: &str = "reviewer";

/// One seat a run will ask [`Seats`] for, known before it starts: which
/// phase, where it sits in the template, and what it asks with. The CLI
/// checks every one against the config before it writes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRequest {
    /// The phase's id.
    pub phase: String,
    /// Where the seat is set in the template: `phases[1]`, `phases[3].review`.
    pub path: String,
    /// Which seat of the phase.
    pub seat: SeatRole,
    /// The role asked for (a review without role or provider asks for
    /// [`DEFAULT_REVIEWER_ROLE`]).
    pub role: Option<String>,
    /// The provider, from a retry's override or the template.
    pub provider: Option<String>,
    /// The model, from a retry's override or the template.
    pub model: Option<String>,
}

/// A provider and model chosen for a phase's next attempt (by `wfe retry`),
/// which win over the template's.
type Chosen<'a> = (Option<&'a str>, Option<&'a str>);

/// The seats of one phase (none unless it is an agent), as the runner asks
/// for them: the primary with `chosen` winning over the template's
/// provider and model, then the reviewer.
fn phase_requests(phase: &Phase, path: &str, chosen: Chosen<'_>, out: &mut Vec<SeatRequest>) {
    if phase.kind != PhaseKind::Agent {
        return;
    }
    out.push(SeatRequest {
        phase: phase.id.clone(),
        path: path.to_string(),
        seat: SeatRole::Primary,
        role: phase.role.clone(),
        provider: chosen.0.or(phase.provider.as_deref()).map(str::to_string),
        model: chosen.1.or(phase.model.as_deref()).map(str::to_string),
    });
    if let Some(review) = &phase.review {
        let role = review
            .role
            .as_deref()
            .or(review.provider.is_none().then_some(DEFAULT_REVIEWER_ROLE));
        out.push(SeatRequest {
            phase: phase.id.clone(),
            path: format!("{path}.review"),
            seat: SeatRole::Reviewer,
            role: role.map(str::to_string),
            provider: review.provider.clone(),
            model: review.model.clone(),
        });
    }
}

/// The seats of the top-level phases `runs` picks (with a loop's
/// children), each with the provider and model `chosen` gives it (by
/// phase id, loop children included).
fn requests<'a>(
    template: &Template,
    runs: impl Fn(usize) -> bool,
    chosen: impl Fn(&str) -> Chosen<'a>,
) -> Vec<SeatRequest> {
    let mut out = Vec::new();
    for (i, phase) in template.phases.iter().enumerate().filter(|(i, _)| runs(*i)) {
        let path = format!("phases[{i}]");
        phase_requests(phase, &path, chosen(&phase.id), &mut out);
        for (j, child) in phase.phases.iter().enumerate() {
            let path = format!("{path}.phases[{j}]");
            phase_requests(child, &path, chosen(&child.id), &mut out);
        }
    }
    out
}

/// Every seat `template`'s agent phases ask for: what a new run needs.
pub fn seat_requests(template: &Template) -> Vec<SeatRequest> {
    requests(template, |_| true, |_| (None, None))
}

/// The seats still to be asked for in a run: those of phases that have not
/// completed or been skipped, with the provider and model a retry recorded
/// in their state. What `wfe resume` needs.
pub fn pending_seat_requests(snapshot: &RunSnapshot) -> Vec<SeatRequest> {
    Progress::of(snapshot).pending(&snapshot.template)
}

/// The seats a retry of `phase` with `overrides` will ask for: the phase's
/// own (with the overrides), those of every phase downstream of it, and
/// those still pending anyway.
pub fn retry_seat_requests(
    snapshot: &RunSnapshot,
    phase: &str,
    overrides: &Overrides,
) -> Vec<SeatRequest> {
    Progress::of(snapshot).retry(&snapshot.template, phase, overrides)
}

/// Where a run stands: the states its seats depend on.
struct Progress<'s> {
    /// Each top-level phase's state, in template order.
    phases: &'s [PhaseState],
    /// The states of each started loop's children.
    children: &'s BTreeMap<String, Vec<PhaseState>>,
}

impl<'s> Progress<'s> {
    fn of(snapshot: &'s RunSnapshot) -> Self {
        Progress {
            phases: &snapshot.phases,
            children: &snapshot.children,
        }
    }

    fn pending(&self, template: &Template) -> Vec<SeatRequest> {
        requests(template, |i| self.still_runs(i), |id| self.recorded(id))
    }

    fn retry(&self, template: &Template, phase: &str, overrides: &Overrides) -> Vec<SeatRequest> {
        let dag = Dag::new(&template.phases);
        let retried = dag.index(phase);
        requests(
            template,
            |i| {
                self.still_runs(i)
                    || retried.is_some_and(|r| i == r || dag.ancestors(i).contains(&r))
            },
            |id| {
                let recorded = self.recorded(id);
                if id == phase {
                    (
                        overrides.provider.as_deref().or(recorded.0),
                        overrides.model.as_deref().or(recorded.1),
                    )
                } else {
                    recorded
                }
            },
        )
    }

    /// Whether top-level phase `i` has anything left to run.
    fn still_runs(&self, i: usize) -> bool {
        self.phases
            .get(i)
            .is_none_or(|s| !matches!(s.status, PhaseStatus::Completed | PhaseStatus::Skipped))
    }

    /// The provider and model a retry recorded in phase `id`'s state, if any.
    fn recorded(&self, id: &str) -> Chosen<'s> {
        self.phases
            .iter()
            .chain(self.children.values().flatten())
            .find(|s| s.id == id)
            .map_or((None, None), |s| {
                (s.provider.as_deref(), s.model.as_deref())
            })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::parse_template;

    fn template() -> Template {
        let doc = json!({
            "name": "t",
            "phases": [
                { "id": "lint", "kind": "script", "run": "true" },
                { "id": "plan", "kind": "agent", "prompt": "p", "role": "planner",
                  "outputs": { "plan": "message" }, "review": { "model": "m2" } },
                { "id": "fix", "kind": "loop", "needs": ["plan"], "max_iters": 2, "phases": [
                    { "id": "edit", "kind": "agent", "prompt": "p", "provider": "local", "model": "m" }
                ] },
                { "id": "last", "kind": "agent", "needs": ["fix"], "prompt": "p",
                  "outputs": { "x": "message" }, "review": { "provider": "gpt", "model": "g" } }
            ]
        });
        parse_template(&doc.to_string(), "t.json", false).unwrap()
    }

    fn summary(requests: &[SeatRequest]) -> Vec<String> {
        requests
            .iter()
            .map(|r| {
                format!(
                    "{} {} {:?} {:?} {:?} {:?}",
                    r.path, r.phase, r.seat, r.role, r.provider, r.model
                )
            })
            .collect()
    }

    #[test]
    fn every_seat_of_every_agent_phase_is_requested_as_the_runner_asks() {
        assert_eq!(
            summary(&seat_requests(&template())),
            [
                r#"phases[1] plan Primary Some("planner") None None"#,
                // A review without role or provider is the `reviewer` role's.
                r#"phases[1].review plan Reviewer Some("reviewer") None Some("m2")"#,
                r#"phases[2].phases[0] edit Primary None Some("local") Some("m")"#,
                r#"phases[3] last Primary None None None"#,
                // With a provider, no role is implied.
                r#"phases[3].review last Reviewer None Some("gpt") Some("g")"#,
            ]
        );
    }

    #[test]
    fn a_run_in_progress_checks_only_what_is_left_and_a_retry_what_it_reruns() {
        let template = template();
        let mut phases: Vec<PhaseState> = template
            .phases
            .iter()
            .map(|p| PhaseState::pending(&p.id, p.kind))
            .collect();
        for state in &mut phases[..3] {
            state.status = PhaseStatus::Completed;
        }
        phases[3].provider = Some("recorded".into());
        let children = BTreeMap::new();
        let progress = Progress {
            phases: &phases,
            children: &children,
        };
        assert_eq!(
            summary(&progress.pending(&template)),
            [
                r#"phases[3] last Primary None Some("recorded") None"#,
                r#"phases[3].review last Reviewer None Some("gpt") Some("g")"#,
            ]
        );
        let overrides = Overrides {
            provider: Some("other".into()),
            model: None,
            ..Overrides::default()
        };
        let retried = summary(&progress.retry(&template, "plan", &overrides));
        assert_eq!(retried.len(), 5, "{retried:#?}");
        assert_eq!(
            retried[0],
            r#"phases[1] plan Primary Some("planner") Some("other") None"#
        );
        assert_eq!(
            retried[2],
            r#"phases[2].phases[0] edit Primary None Some("local") Some("m")"#
        );
        // Retrying the last phase asks nothing of the ones before it.
        let last = progress.retry(&template, "last", &Overrides::default());
        assert!(last.iter().all(|r| r.phase == "last"), "{last:?}");
    }
}
