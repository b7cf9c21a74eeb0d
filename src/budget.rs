//! Budgets: the limits an agent phase or a run may spend (tokens, cost in
//! US dollars, wall time, tool calls), what was spent, and the one check
//! that says whether the next model request may go out.
//!
//! A budget has a hard limit per dimension and a soft fraction (default
//! 80%): reaching the soft share pauses the phase for a person's approval,
//! reaching the limit ends the attempt. An approval records the spend the
//! person saw, so the same soft threshold does not ask twice; a raise
//! ([`Raise`]) lifts limits. Where budgets come from (config, template,
//! `--budget`) and where spend is stored is the engine's business; this
//! module is plain values and arithmetic, nothing else.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::attempt::AttemptUsage;
use crate::retry::DurationSpec;

/// The share of a limit that pauses for approval unless a budget says otherwise.
pub const DEFAULT_SOFT: f64 = 0.8;

/// Limits on what an agent phase (or a whole run) may spend, e.g.
/// `{"tokens": 200000, "cost_usd": 2.5, "wall": "30m", "tool_calls": 200, "soft": 0.8}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tokens read and written by every model request, reviewers included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens: Option<u64>,
    /// US dollars, priced by `models` in `.wfe/config.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cost_usd: Option<f64>,
    /// Time the agent's attempts run (`"30m"`, `"1h"` or seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<DurationSpec>,
    /// Tool calls the agent makes (submissions not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tool_calls: Option<u64>,
    /// The share of a limit at which the phase pauses for approval before
    /// its next model request (default 0.8; 1 never pauses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub soft: Option<f64>,
}

impl Budget {
    /// True when no limit is set (a `soft` alone limits nothing).
    pub fn is_empty(&self) -> bool {
        Dimension::ALL.iter().all(|&d| self.limit(d).is_none())
    }

    /// This budget over `base`: each field set here wins, the rest come
    /// from `base` (`--budget` over the template over the config).
    pub fn over(&self, base: &Budget) -> Budget {
        Budget {
            tokens: self.tokens.or(base.tokens),
            cost_usd: self.cost_usd.or(base.cost_usd),
            wall: self.wall.or(base.wall),
            tool_calls: self.tool_calls.or(base.tool_calls),
            soft: self.soft.or(base.soft),
        }
    }

    /// The soft share of each limit.
    pub fn soft(&self) -> f64 {
        self.soft.unwrap_or(DEFAULT_SOFT)
    }

    /// The limit in `dimension`, in its unit (milliseconds for wall time).
    pub fn limit(&self, dimension: Dimension) -> Option<f64> {
        match dimension {
            Dimension::Tokens => self.tokens.map(|n| n as f64),
            Dimension::CostUsd => self.cost_usd,
            Dimension::Wall => self.wall.map(|d| d.0.as_millis() as f64),
            Dimension::ToolCalls => self.tool_calls.map(|n| n as f64),
        }
    }

    /// Sets the limit in `dimension` (rounded for whole units).
    fn set_limit(&mut self, dimension: Dimension, value: f64) {
        let whole = value.round().max(1.0) as u64;
        match dimension {
            Dimension::Tokens => self.tokens = Some(whole),
            Dimension::CostUsd => self.cost_usd = Some(value),
            Dimension::Wall => {
                self.wall = Some(DurationSpec(
                    Duration::from_millis(whole).min(DurationSpec::MAX),
                ));
            }
            Dimension::ToolCalls => self.tool_calls = Some(whole),
        }
    }

    /// What is wrong with the budget, as (field, message); empty when valid.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Some(cost) = self.cost_usd
            && !(cost.is_finite() && cost > 0.0)
        {
            problems.push((
                "cost_usd",
                format!("{cost} is not a cost; expected a positive number of US dollars"),
            ));
        }
        if self.tokens == Some(0) {
            problems.push(("tokens", "0 is not a limit; expected at least 1".into()));
        }
        if self.tool_calls == Some(0) {
            problems.push(("tool_calls", "0 is not a limit; expected at least 1".into()));
        }
        if self.wall.is_some_and(|w| w.0.is_zero()) {
            problems.push((
                "wall",
                "0s is not a limit; expected a positive duration".into(),
            ));
        }
        if let Some(soft) = self.soft
            && !(soft > 0.0 && soft <= 1.0)
        {
            problems.push((
                "soft",
                format!(
                    "{soft} is not a share; expected a number above 0 and at most 1 (e.g. 0.8)"
                ),
            ));
        }
        problems
    }

    /// Parses `--budget`: `key=value` pairs separated by commas, keys
    /// `tokens`, `cost` (or `cost_usd`), `wall`, `tool_calls` and `soft`.
    pub fn parse(text: &str) -> Result<Budget, String> {
        let mut budget = Budget::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(format!(
                    "`{item}` is not key=value; expected e.g. tokens=200000,cost=2.5,wall=30m,tool_calls=200,soft=0.8"
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            let number = |what: &str| {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("{key}: `{value}` is not {what}"))
            };
            let whole = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}: `{value}` is not a whole number"))
            };
            if key == "soft" {
                budget.soft = Some(number("a number")?);
                continue;
            }
            match Dimension::parse(key)? {
                Dimension::Tokens => budget.tokens = Some(whole()?),
                Dimension::CostUsd => budget.cost_usd = Some(number("a number of US dollars")?),
                Dimension::Wall => {
                    budget.wall =
                        Some(DurationSpec::parse(value).map_err(|e| format!("{key}: {e}"))?);
                }
                Dimension::ToolCalls => budget.tool_calls = Some(whole()?),
            }
        }
        if let Some((field, message)) = self_problem(&budget) {
            return Err(format!("{field}: {message}"));
        }
        Ok(budget)
    }

    /// Whether the next model request may go out, given what was `spent`
    /// and what a person already `approved` (the spend they saw when they
    /// approved the last pause). A hard limit wins over a soft one; the
    /// first dimension reached (in [`Dimension::ALL`] order) is named.
    pub fn check(&self, spent: &Spend, approved: &Spend) -> Check {
        for &d in Dimension::ALL {
            let Some(limit) = self.limit(d) else { continue };
            let Some(value) = spent.get(d) else {
                return Check::Uncountable(d);
            };
            if value >= limit {
                return Check::Hard(d);
            }
        }
        let soft = self.soft();
        for &d in Dimension::ALL {
            let (Some(limit), Some(value)) = (self.limit(d), spent.get(d)) else {
                continue;
            };
            let threshold = limit * soft;
            let seen = approved.get(d).unwrap_or(0.0);
            // Once per crossing: a person who approved past this
            // threshold is not asked again until a raise moves it above
            // what they saw.
            if value >= threshold && seen < threshold {
                return Check::Soft(d);
            }
        }
        Check::Within
    }
}

fn self_problem(budget: &Budget) -> Option<(&'static str, String)> {
    budget.problems().into_iter().next()
}

/// What [`Budget::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every limit has room.
    Within,
    /// The soft share of this limit is reached: pause for approval.
    Soft(Dimension),
    /// This limit is reached: end the attempt.
    Hard(Dimension),
    /// This limit cannot be counted (a cost without prices): end the attempt.
    Uncountable(Dimension),
}

/// One thing a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Tokens in and out.
    Tokens,
    /// US dollars.
    CostUsd,
    /// Wall time.
    Wall,
    /// Tool calls.
    ToolCalls,
}

impl Dimension {
    /// Every dimension, in the order checks name them.
    pub const ALL: &'static [Dimension] = &[
        Dimension::Tokens,
        Dimension::CostUsd,
        Dimension::Wall,
        Dimension::ToolCalls,
    ];

    /// The name as budgets write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Tokens => "tokens",
            Dimension::CostUsd => "cost_usd",
            Dimension::Wall => "wall",
            Dimension::ToolCalls => "tool_calls",
        }
    }

    /// Parses a dimension's name (`cost` is `cost_usd`).
    pub fn parse(name: &str) -> Result<Dimension, String> {
        match name {
            "tokens" => Ok(Dimension::Tokens),
            "cost" | "cost_usd" => Ok(Dimension::CostUsd),
            "wall" => Ok(Dimension::Wall),
            "tool_calls" => Ok(Dimension::ToolCalls),
            other => Err(format!(
                "`{other}` is not a budget limit; expected tokens, cost, wall, tool_calls or soft"
            )),
        }
    }

    /// `value` (in this dimension's unit) for people: `1200 tokens`,
    /// `$0.42`, `30m`, `12 tool calls`.
    pub fn show(self, value: f64) -> String {
        match self {
            Dimension::Tokens => format!("{} tokens", value.round() as u64),
            // Cents hide what a few requests cost.
            Dimension::CostUsd if value.abs() < 1.0 => format!("${value:.4}"),
            Dimension::CostUsd => format!("${value:.2}"),
            Dimension::Wall => {
                let ms = value.max(0.0) as u64;
                // Milliseconds of a long run are noise: `850ms`, `12.4s`, `30m`.
                if ms < 1000 {
                    format!("{ms}ms")
                } else if ms < 60_000 {
                    format!("{:.1}s", ms as f64 / 1000.0)
                } else {
                    DurationSpec(Duration::from_secs(ms / 1000)).to_string()
                }
            }
            Dimension::ToolCalls => {
                let n = value.round() as u64;
                format!("{n} tool call{}", if n == 1 { "" } else { "s" })
            }
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was spent: by an attempt, a phase, or a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spend {
    /// Tokens read and written.
    #[serde(default)]
    pub tokens: u64,
    /// US dollars; absent when a model used has no prices in config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Tool calls made.
    #[serde(default)]
    pub tool_calls: u64,
    /// Milliseconds the agent's attempts ran.
    #[serde(default)]
    pub wall_ms: u64,
}

impl Spend {
    /// Nothing spent, with a known cost of 0.
    pub fn zero() -> Spend {
        Spend {
            cost_usd: Some(0.0),
            ..Spend::default()
        }
    }

    /// What an attempt's `usage` says it spent.
    pub fn of_usage(usage: &AttemptUsage) -> Spend {
        Spend {
            tokens: usage.input_tokens.saturating_add(usage.output_tokens),
            cost_usd: usage.cost_usd,
            tool_calls: usage.tool_calls,
            wall_ms: usage.wall_ms,
        }
    }

    /// The spend in `dimension`, in its unit; `None` for an unknown cost.
    pub fn get(&self, dimension: Dimension) -> Option<f64> {
        match dimension {
            Dimension::Tokens => Some(self.tokens as f64),
            Dimension::CostUsd => self.cost_usd,
            Dimension::Wall => Some(self.wall_ms as f64),
            Dimension::ToolCalls => Some(self.tool_calls as f64),
        }
    }

    /// The sum of two spends (saturating; an unknown cost stays unknown).
    pub fn plus(&self, other: &Spend) -> Spend {
        Spend {
            tokens: self.tokens.saturating_add(other.tokens),
            cost_usd: match (self.cost_usd, other.cost_usd) {
                (Some(a), Some(b)) => Some(a + b).filter(|c| c.is_finite()),
                _ => None,
            },
            tool_calls: self.tool_calls.saturating_add(other.tool_calls),
            wall_ms: self.wall_ms.saturating_add(other.wall_ms),
        }
    }

    /// `self` less `other`, never below zero (an unknown cost stays unknown).
    pub fn minus(&self, other: &Spend) -> Spend {
        Spend {
            tokens: self.tokens.saturating_sub(other.tokens),
            cost_usd: match (self.cost_usd, other.cost_usd) {
                (Some(a), Some(b)) => Some((a - b).max(0.0)),
                _ => None,
            },
            tool_calls: self.tool_calls.saturating_sub(other.tool_calls),
            wall_ms: self.wall_ms.saturating_sub(other.wall_ms),
        }
    }

    /// One line for people: `1200 tokens, $0.42, 3 tool calls, 12s`.
    pub fn summary(&self) -> String {
        let mut parts = vec![Dimension::Tokens.show(self.tokens as f64)];
        if let Some(cost) = self.cost_usd {
            parts.push(Dimension::CostUsd.show(cost));
        }
        parts.push(Dimension::ToolCalls.show(self.tool_calls as f64));
        parts.push(Dimension::Wall.show(self.wall_ms as f64));
        parts.join(", ")
    }
}

/// Which budget a limit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The phase's own budget (each attempt).
    Phase,
    /// The run's budget, summed over its phases.
    Run,
}

impl Scope {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Phase => "phase",
            Scope::Run => "run",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Scope> {
        match name {
            "phase" => Some(Scope::Phase),
            "run" => Some(Scope::Run),
            _ => None,
        }
    }
}

/// `wfe approve --budget`: how to raise the limits of the budget that
/// paused a phase. Items, comma-separated: `tokens=+100000` (add),
/// `tokens=300000` (set), `tokens=+50%`, `cost=+1`, `wall=+10m`,
/// `tool_calls=+50`; without a name, `+N` raises the limit that paused the
/// phase and `+50%` every limit of its budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Raise {
    /// The items, in order.
    pub items: Vec<RaiseItem>,
}

/// One item of a [`Raise`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaiseItem {
    /// The limit raised; none: the one that paused (or every one, for a share).
    pub dimension: Option<Dimension>,
    /// By how much.
    pub amount: Amount,
}

/// How a [`RaiseItem`] changes a limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// Add this much (in the dimension's unit; milliseconds for wall time).
    Add(f64),
    /// Set the limit to this.
    Set(f64),
    /// Add this percentage of the current limit.
    Percent(f64),
}

impl Raise {
    /// Parses the text of `--budget` (see [`Raise`]).
    pub fn parse(text: &str) -> Result<Raise, String> {
        let mut items = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (dimension, value) = match item.split_once('=') {
                Some((key, value)) => (Some(Dimension::parse(key.trim())?), value.trim()),
                None => (None, item),
            };
            items.push(RaiseItem {
                dimension,
                amount: parse_amount(dimension, value).map_err(|e| format!("`{item}`: {e}"))?,
            });
        }
        if items.is_empty() {
            return Err(
                "expected a raise, e.g. +100000, tokens=+100000, cost=+1, wall=+10m or +50%".into(),
            );
        }
        Ok(Raise { items })
    }

    /// `limits` raised; `paused` is the limit that paused the phase.
    /// Refuses a raise of a limit the budget does not have, or one that
    /// would leave a limit at or below zero.
    pub fn apply(&self, limits: &Budget, paused: Dimension) -> Result<Budget, String> {
        let mut out = limits.clone();
        for item in &self.items {
            let dimensions: Vec<Dimension> = match (item.dimension, item.amount) {
                (Some(d), _) => vec![d],
                (None, Amount::Percent(_)) => Dimension::ALL
                    .iter()
                    .copied()
                    .filter(|&d| limits.limit(d).is_some())
                    .collect(),
                (None, _) => vec![paused],
            };
            for d in dimensions {
                let current = out.limit(d);
                let new = match (item.amount, current) {
                    (Amount::Set(v), _) => v,
                    (Amount::Add(v), Some(c)) => c + v,
                    (Amount::Percent(p), Some(c)) => c + c * p / 100.0,
                    (_, None) => {
                        return Err(format!(
                            "the budget has no {d} limit to raise; set one with {d}=VALUE"
                        ));
                    }
                };
                if !(new.is_finite() && new > 0.0) {
                    return Err(format!(
                        "the {d} limit would be {new}; expected a positive limit"
                    ));
                }
                out.set_limit(d, new);
            }
        }
        Ok(out)
    }
}

/// The amount of one raise item; `dimension` gives a bare number its unit.
fn parse_amount(dimension: Option<Dimension>, value: &str) -> Result<Amount, String> {
    let (add, rest) = match value.strip_prefix('+') {
        Some(rest) => (true, rest.trim()),
        None => (false, value),
    };
    if let Some(share) = rest.strip_suffix('%') {
        let p: f64 = share
            .trim()
            .parse()
            .ok()
            .filter(|p: &f64| p.is_finite() && *p > 0.0)
            .ok_or_else(|| format!("`{share}%` is not a positive percentage"))?;
        if !add {
            return Err("a percentage raises a limit: write it as +N%".into());
        }
        return Ok(Amount::Percent(p));
    }
    let number = match dimension {
        Some(Dimension::Wall) => DurationSpec::parse(rest)?.0.as_millis() as f64,
        _ => rest
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n > 0.0)
            .ok_or_else(|| format!("`{rest}` is not a positive number"))?,
    };
    match (add, dimension) {
        (true, _) => Ok(Amount::Add(number)),
        (false, Some(_)) => Ok(Amount::Set(number)),
        (false, None) => Err("a bare number raises the limit that paused: write it as +N".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(tokens: u64) -> Budget {
        Budget {
            tokens: Some(tokens),
            ..Budget::default()
        }
    }

    fn spent(tokens: u64) -> Spend {
        Spend {
            tokens,
            ..Spend::zero()
        }
    }

    #[test]
    fn check_pauses_once_at_the_soft_share_and_stops_at_the_limit() {
        let b = budget(1000);
        let none = Spend::zero();
        assert_eq!(b.check(&spent(799), &none), Check::Within);
        assert_eq!(b.check(&spent(800), &none), Check::Soft(Dimension::Tokens));
        // Approved at 850: no second pause below the limit.
        assert_eq!(b.check(&spent(900), &spent(850)), Check::Within);
        assert_eq!(
            b.check(&spent(1000), &spent(850)),
            Check::Hard(Dimension::Tokens)
        );
        // A raise that moves the threshold above what was seen asks again.
        let raised = budget(1100);
        assert_eq!(raised.check(&spent(870), &spent(850)), Check::Within);
        assert_eq!(
            raised.check(&spent(880), &spent(850)),
            Check::Soft(Dimension::Tokens)
        );
        // soft 1 never pauses.
        let never = Budget {
            soft: Some(1.0),
            ..budget(1000)
        };
        assert_eq!(never.check(&spent(999), &none), Check::Within);
    }

    #[test]
    fn an_unpriced_cost_cannot_be_budgeted() {
        let b = Budget {
            cost_usd: Some(1.0),
            ..Budget::default()
        };
        let unpriced = Spend {
            cost_usd: None,
            ..Spend::zero()
        };
        assert_eq!(
            b.check(&unpriced, &Spend::zero()),
            Check::Uncountable(Dimension::CostUsd)
        );
    }

    #[test]
    fn parse_reads_every_key_and_refuses_nonsense() {
        let b = Budget::parse("tokens=200000, cost=2.5,wall=30m,tool_calls=200,soft=0.9").unwrap();
        assert_eq!(b.tokens, Some(200_000));
        assert_eq!(b.cost_usd, Some(2.5));
        assert_eq!(b.wall, Some(DurationSpec(Duration::from_secs(1800))));
        assert_eq!(b.tool_calls, Some(200));
        assert_eq!(b.soft, Some(0.9));
        for (bad, says) in [
            ("tokens", "not key=value"),
            ("tokes=1", "`tokes` is not a budget limit"),
            ("tokens=1.5", "not a whole number"),
            ("soft=2", "soft: 2 is not a share"),
            ("cost=-1", "cost_usd: -1 is not a cost"),
            ("wall=soon", "wall: `soon` is not a duration"),
        ] {
            let e = Budget::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn raises_add_set_and_scale() {
        let b = Budget {
            tokens: Some(1000),
            cost_usd: Some(2.0),
            ..Budget::default()
        };
        let r = |t: &str| {
            Raise::parse(t)
                .unwrap()
                .apply(&b, Dimension::Tokens)
                .unwrap()
        };
        assert_eq!(r("+500").tokens, Some(1500));
        assert_eq!(r("tokens=+100").tokens, Some(1100));
        assert_eq!(r("tokens=3000").tokens, Some(3000));
        assert_eq!(r("cost=+1").cost_usd, Some(3.0));
        let all = r("+50%");
        assert_eq!((all.tokens, all.cost_usd), (Some(1500), Some(3.0)));
        let e = Raise::parse("wall=+10m")
            .unwrap()
            .apply(&b, Dimension::Tokens)
            .unwrap_err();
        assert!(e.contains("no wall limit"), "{e}");
        assert!(Raise::parse("500").unwrap_err().contains("+N"));
        assert!(Raise::parse("").is_err());
        assert!(
            Raise::parse("tokens=+x")
                .unwrap_err()
                .contains("not a positive number")
        );
    }
}
