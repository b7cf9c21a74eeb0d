//! The budgets an agent attempt runs under, and the check made before each
//! model request and tool call.
//!
//! The phase's budget limits the attempt's own spend (a resumed attempt
//! carries what it spent before); the run's budget limits the run's spend,
//! counted live in a [`RunMeter`] that every running agent of the run adds
//! to, so parallel phases see each other's spend. Reaching a soft share
//! before a model request pauses the phase (an [`AttemptError::Budget`]
//! with `soft`, which the engine turns into a wait); reaching a limit ends
//! the attempt.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::attempt::AttemptError;
use crate::budget::{Budget, Check, Dimension, Scope, Spend};

/// The budgets of one attempt, resolved by the engine.
#[derive(Debug, Clone, Default)]
pub struct AgentBudget {
    /// The phase's limits and the attempt spend a person already approved.
    pub phase: Option<(Budget, Spend)>,
    /// The run's limits and the run spend a person already approved.
    pub run: Option<(Budget, Spend)>,
    /// The run's spend so far, shared by the run's running agents.
    pub meter: RunMeter,
    /// Wall time the attempt ran under earlier runners (it goes on).
    pub wall_before: Duration,
    /// Whether a soft share pauses the phase: only phases a person can
    /// approve (not a loop's children, whose hard limits still hold).
    pub pauses: bool,
}

/// The run's spend, counted live by every agent of the run.
#[derive(Debug, Clone, Default)]
pub struct RunMeter(Arc<Mutex<Spend>>);

impl RunMeter {
    /// A meter starting at `spent`.
    pub fn new(spent: Spend) -> RunMeter {
        RunMeter(Arc::new(Mutex::new(spent)))
    }

    /// Adds `spend`.
    pub fn add(&self, spend: &Spend) {
        let mut total = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *total = total.plus(spend);
    }

    /// The spend so far.
    pub fn get(&self) -> Spend {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Moment {
    /// Before a model request: soft shares pause, limits end the attempt.
    Request,
    /// Before a tool call: only limits count.
    ToolCall,
}

impl AgentBudget {
    /// Set up for the phase's next attempt: the phase budget starts afresh
    /// (nothing spent or approved); the run's goes on counting.
    pub fn next_attempt(&mut self) {
        self.wall_before = Duration::ZERO;
        if let Some((_, approved)) = &mut self.phase {
            *approved = Spend::default();
        }
    }

    /// Whether the attempt may go on, given its own spend (`attempt`) and
    /// the wall time of this runner's part of it (`running`): `Err` with
    /// the budget error when a limit (or, before a request, a soft share)
    /// is reached.
    pub(super) fn check(
        &self,
        attempt: &Spend,
        running: Duration,
        moment: Moment,
    ) -> Result<(), AttemptError> {
        let running_ms = u64::try_from(running.as_millis()).unwrap_or(u64::MAX);
        // The meter holds the wall time of ended parts; this one is running.
        let mut run_spend = self.meter.get();
        run_spend.wall_ms = run_spend.wall_ms.saturating_add(running_ms);
        let scopes = [
            (Scope::Phase, self.phase.as_ref(), *attempt),
            (Scope::Run, self.run.as_ref(), run_spend),
        ];
        let mut soft = None;
        for (scope, budget, spent) in scopes {
            let Some((limits, approved)) = budget else {
                continue;
            };
            match limits.check(&spent, approved) {
                Check::Within => {}
                Check::Hard(d) => return Err(reached(scope, limits, &spent, d, false)),
                Check::Uncountable(d) => {
                    return Err(AttemptError::Budget {
                        scope: scope.as_str().into(),
                        limit: d.as_str().into(),
                        soft: false,
                        message: format!(
                            "the {}'s {d} limit of {} cannot be checked: a model used has no prices under `models` in .wfe/config.json",
                            scope.as_str(),
                            d.show(limits.limit(d).unwrap_or_default()),
                        ),
                    });
                }
                Check::Soft(d) => {
                    soft.get_or_insert(reached(scope, limits, &spent, d, true));
                }
            }
        }
        match soft {
            Some(error) if moment == Moment::Request && self.pauses => Err(error),
            _ => Ok(()),
        }
    }

    /// How long until a wall limit is reached, counting from now (none:
    /// no wall limit), so a long tool call or answer cannot outrun it.
    pub(super) fn wall_left(&self, attempt_wall: Duration) -> Option<(Scope, Duration)> {
        let phase = self
            .phase
            .as_ref()
            .and_then(|(b, _)| b.wall)
            .map(|w| (Scope::Phase, w.0.saturating_sub(attempt_wall)));
        let run = self.run.as_ref().and_then(|(b, _)| b.wall).map(|w| {
            let spent = Duration::from_millis(self.meter.get().wall_ms);
            (Scope::Run, w.0.saturating_sub(spent))
        });
        match (phase, run) {
            (Some(p), Some(r)) => Some(if r.1 < p.1 { r } else { p }),
            (one, other) => one.or(other),
        }
    }

    /// The error of a wall limit reached while waiting: `scope`'s `wall`.
    pub(super) fn wall_reached(&self, scope: Scope) -> AttemptError {
        let limits = match scope {
            Scope::Phase => self.phase.as_ref(),
            Scope::Run => self.run.as_ref(),
        };
        let limit = limits
            .and_then(|(b, _)| b.wall)
            .map(|w| Dimension::Wall.show(w.0.as_millis() as f64))
            .unwrap_or_default();
        AttemptError::Budget {
            scope: scope.as_str().into(),
            limit: Dimension::Wall.as_str().into(),
            soft: false,
            message: format!("the {}'s wall limit of {limit} is reached", scope.as_str()),
        }
    }
}

/// The error for `scope`'s limit in `d` reached (`soft`: its soft share).
fn reached(scope: Scope, limits: &Budget, spent: &Spend, d: Dimension, soft: bool) -> AttemptError {
    let limit = limits.limit(d).unwrap_or_default();
    let value = spent.get(d).unwrap_or_default();
    let whose = scope.as_str();
    let message = if soft {
        format!(
            "{} of the {whose}'s {} spent ({}%, past its soft share of {}%): waiting for approval",
            d.show(value),
            d.show(limit),
            percent(value, limit),
            (limits.soft() * 100.0).round() as u64,
        )
    } else {
        format!(
            "the {whose}'s {d} limit of {} is reached: {} spent",
            d.show(limit),
            d.show(value)
        )
    };
    AttemptError::Budget {
        scope: whose.into(),
        limit: d.as_str().into(),
        soft,
        message,
    }
}

fn percent(value: f64, limit: f64) -> u64 {
    if limit > 0.0 {
        (value / limit * 100.0).floor() as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(n: u64) -> Spend {
        Spend {
            tokens: n,
            ..Spend::zero()
        }
    }

    fn limit(n: u64) -> Budget {
        Budget {
            tokens: Some(n),
            ..Budget::default()
        }
    }

    #[test]
    fn the_phase_pauses_before_a_request_and_stops_at_its_limit() {
        let budget = AgentBudget {
            phase: Some((limit(1000), Spend::zero())),
            pauses: true,
            ..AgentBudget::default()
        };
        let zero = Duration::ZERO;
        assert!(budget.check(&tokens(700), zero, Moment::Request).is_ok());
        let soft = budget
            .check(&tokens(840), zero, Moment::Request)
            .unwrap_err();
        assert_eq!(
            soft.to_string(),
            "budget: 840 tokens of the phase's 1000 tokens spent (84%, past its soft share of 80%): waiting for approval"
        );
        // Before a tool call only the limit counts.
        assert!(budget.check(&tokens(840), zero, Moment::ToolCall).is_ok());
        let hard = budget
            .check(&tokens(1000), zero, Moment::ToolCall)
            .unwrap_err();
        assert_eq!(
            hard.to_string(),
            "budget: the phase's tokens limit of 1000 tokens is reached: 1000 tokens spent"
        );
    }

    #[test]
    fn the_run_counts_every_agent_through_its_meter() {
        let meter = RunMeter::new(tokens(500));
        let budget = AgentBudget {
            run: Some((limit(1000), Spend::zero())),
            meter: meter.clone(),
            pauses: true,
            ..AgentBudget::default()
        };
        assert!(
            budget
                .check(&tokens(0), Duration::ZERO, Moment::Request)
                .is_ok()
        );
        meter.add(&tokens(500));
        let e = budget
            .check(&tokens(0), Duration::ZERO, Moment::Request)
            .unwrap_err();
        assert!(e.to_string().contains("the run's tokens limit"), "{e}");
    }

    #[test]
    fn a_phase_that_cannot_be_approved_does_not_pause() {
        let budget = AgentBudget {
            phase: Some((limit(1000), Spend::zero())),
            pauses: false,
            ..AgentBudget::default()
        };
        assert!(
            budget
                .check(&tokens(900), Duration::ZERO, Moment::Request)
                .is_ok()
        );
    }
}
