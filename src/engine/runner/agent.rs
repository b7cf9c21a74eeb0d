//! The runner's side of agent phases: resolving a job (seats, prompts,
//! the journal of an interrupted attempt) and committing each step.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::launch::{Job, Launch};
use super::{Runner, Unit};
use crate::agent::{AgentBudget, AgentJob, Journal, ReviewJob, Step, ToolCall};
use crate::artifact::OutputSpec;
use crate::attempt::AttemptError;
use crate::budget::Spend;
use crate::engine::{CheckpointEvent, Comment, REVIEW_SCHEMA, SeatRole, layout, to_file_bytes};
use crate::provider::{Exchange, ProviderError, ProviderErrorKind};
use crate::store::{AttemptRecorder, Change, EntryKind};
use crate::template::expr;

/// Turns the model may take in one attempt unless the phase says otherwise.
const DEFAULT_MAX_TURNS: u32 = 50;
/// Invalid submissions answered before an attempt fails, unless the phase says otherwise.
const DEFAULT_MAX_INVALID_SUBMISSIONS: u32 = 3;

/// An agent unit's append-only record files, as the runner last wrote them.
#[derive(Debug, Clone, Default)]
pub(super) struct AgentFiles {
    exchanges: Vec<u8>,
    tool_calls: Vec<u8>,
}

impl Runner<'_> {
    /// Resolves an agent unit into a job: rendered prompts, seats, output
    /// schemas, and the journal of the attempt it continues, if any.
    pub(super) fn prepare_agent(&self, u: Unit, context: &Value) -> Result<Launch, AttemptError> {
        let phase = self.spec(u);
        let render = |field: &str, source: &str| {
            expr::render(source, context).map_err(|e| AttemptError::Render {
                field: field.to_string(),
                message: e.message,
            })
        };
        let prompt = render("prompt", phase.prompt.as_deref().unwrap_or_default())?;
        let system = match &phase.system {
            Some(system) => Some(render("system", system)?),
            None => None,
        };
        self.check_inputs(u)?;
        let state = self.state(u);
        let seats = self
            .settings
            .seats
            .as_ref()
            .ok_or_else(|| AttemptError::Provider {
                provider: phase.provider.clone().unwrap_or_else(|| "-".into()),
                failure: ProviderErrorKind::Config,
                message: "no providers are set up for this run: name them under `providers` and `roles` in .wfe/config.json".into(),
            })?;
        let provider = state.provider.as_deref().or(phase.provider.as_deref());
        let model = state.model.as_deref().or(phase.model.as_deref());
        // Without an explicit provider, the role names who failed to be seated.
        let role = phase.role.as_deref().unwrap_or("primary");
        let seat_error = |e: ProviderError, name: Option<&str>| AttemptError::Provider {
            provider: name.unwrap_or(role).to_string(),
            failure: e.kind,
            message: e.message,
        };
        // Seats are asked for by key, so a replay answers a loop's child
        // from the same iteration's recording.
        let key = self.key(u);
        let mut primary = seats
            .seat(
                &key,
                SeatRole::Primary,
                phase.role.as_deref(),
                provider,
                model,
            )
            .map_err(|e| seat_error(e, provider))?;
        // The phase's own limit beats its role's; a replay keeps the one
        // its recording used, since its requests must match exactly.
        if let Some(max_tokens) = phase.max_tokens
            && primary.provider.kind() != "replay"
        {
            primary.max_tokens = max_tokens;
        }
        let review = match &phase.review {
            None => None,
            Some(review) => {
                // Without a role or a provider, the `reviewer` role reviews.
                let role = review.role.as_deref().or(review
                    .provider
                    .is_none()
                    .then_some(crate::engine::DEFAULT_REVIEWER_ROLE));
                let seat = seats
                    .seat(
                        &key,
                        SeatRole::Reviewer,
                        role,
                        review.provider.as_deref(),
                        review.model.as_deref(),
                    )
                    .map_err(|e| seat_error(e, review.provider.as_deref()))?;
                let schema = self.schemas.get(REVIEW_SCHEMA).cloned().ok_or_else(|| {
                    AttemptError::Internal {
                        message: format!("schema `{REVIEW_SCHEMA}` is not frozen in this run"),
                    }
                })?;
                Some(ReviewJob {
                    seat,
                    rounds: review.rounds.unwrap_or(1),
                    schema,
                })
            }
        };
        let outputs: Vec<OutputSpec> = self.output_specs(u)?;
        let files = AgentFiles {
            exchanges: self.read_file(&layout::exchanges(&key)),
            tool_calls: self.read_file(&layout::tool_calls(&key)),
        };
        let attempt = if state.continues {
            state.attempt
        } else {
            state.attempt.saturating_add(1)
        };
        let journal = if state.continues {
            self.journal(&key, attempt, &files)
        } else {
            Journal::default()
        };
        let prompt = self.steered_prompt(u, prompt, attempt);
        let retry = self.retry_policy(u);
        // The runner hands out a scratch slot once the unit starts.
        let scratch = std::path::PathBuf::new();
        let budget = self.agent_budget(u);
        Ok(Launch {
            unit: u,
            files: Some(files),
            job: Job::Agent(Box::new(AgentJob {
                run: self.record.id.clone(),
                phase: phase.id.clone(),
                attempt,
                primary,
                system,
                prompt,
                tools: phase.tools.clone(),
                work_dir: self.settings.work_dir.clone(),
                outputs,
                max_turns: phase.max_turns.unwrap_or(DEFAULT_MAX_TURNS),
                max_invalid_submissions: phase
                    .max_invalid_submissions
                    .unwrap_or(DEFAULT_MAX_INVALID_SUBMISSIONS),
                timeout: phase
                    .timeout
                    .or(self.template.defaults.timeout)
                    .map(|d| d.0),
                review,
                journal,
                env_remove: self.removed_env(u),
                masker: self.settings.masker.clone(),
                max_log_bytes: self.settings.max_log_bytes,
                processes: self
                    .settings
                    .processes
                    .clone()
                    .map(|registry| AttemptRecorder {
                        registry,
                        phase: self.label(u),
                        attempt,
                        grace: phase
                            .kill_grace
                            .or(self.template.defaults.kill_grace)
                            .map_or(super::launch::DEFAULT_KILL_GRACE, |d| d.0),
                    }),
                budget,
            })),
            isolation: self.isolation(u),
            first_attempt: attempt,
            // The budget counts from the last manual retry.
            max_attempts: state
                .retry_base
                .saturating_add(retry.as_ref().map_or(1, |r| r.max_attempts.max(1))),
            retry,
            scratch,
        })
    }

    /// The budgets of the unit's next attempt: the phase's (as raised, else
    /// the template's) and the run's, with what a person approved; a
    /// continued attempt carries its wall time.
    fn agent_budget(&self, u: Unit) -> AgentBudget {
        let state = self.state(u);
        let phase = state
            .budget
            .clone()
            .or_else(|| self.spec(u).budget.clone())
            .filter(|b| !b.is_empty());
        let continues = state.continues;
        let approved = if continues {
            state.budget_approved.unwrap_or_default()
        } else {
            Spend::default()
        };
        let wall_before = state
            .usage
            .as_ref()
            .filter(|_| continues)
            .map_or(0, |usage| usage.wall_ms);
        AgentBudget {
            phase: phase.map(|b| (b, approved)),
            run: self
                .record
                .budget
                .clone()
                .filter(|b| !b.is_empty())
                .map(|b| (b, self.record.budget_approved.unwrap_or_default())),
            meter: self.meter.clone(),
            wall_before: std::time::Duration::from_millis(wall_before),
            // Approvals name top-level phases (matrix combinations included).
            pauses: matches!(u, Unit::Top(_)),
        }
    }

    /// The prompt with what a person said for this attempt: the
    /// instructions of the last manual retry (`guidance`), then each
    /// comment sent to this attempt, oldest first. The exchanges record
    /// the prompt as sent.
    fn steered_prompt(&self, u: Unit, mut prompt: String, attempt: u32) -> String {
        let state = self.state(u);
        if let Some(guidance) = &state.guidance {
            prompt.push_str("\n\nInstructions from the user for this attempt:\n");
            prompt.push_str(guidance);
        }
        let id = &self.spec(u).id;
        // Comments name top-level phases; a loop's child runs per iteration.
        if self.key(u) != *id {
            return prompt;
        }
        let comments: Vec<Comment> = lines(&self.read_file(layout::COMMENTS));
        let sent: Vec<&Comment> = comments
            .iter()
            .filter(|c| c.phase.as_ref() == Some(id) && c.for_attempt == Some(attempt))
            .collect();
        if !sent.is_empty() {
            prompt.push_str("\n\nComments from the user on earlier attempts:");
            for c in sent {
                prompt.push_str("\n- ");
                prompt.push_str(&c.text);
            }
        }
        prompt
    }

    /// A file of the run at its tip; empty when absent or unreadable (the
    /// record files are append-only logs: a missing one is an empty one).
    fn read_file(&self, path: &str) -> Vec<u8> {
        self.store
            .read(&self.tip, path)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// What attempt `attempt` of the unit at `key` already did.
    fn journal(&self, key: &str, attempt: u32, files: &AgentFiles) -> Journal {
        let exchanges: Vec<Exchange> = lines(&files.exchanges);
        let tool_calls: Vec<ToolCall> = lines(&files.tool_calls);
        let dir = layout::reviews(key);
        let mut reviews = Vec::new();
        for (name, kind) in self.store.list_dir(&self.tip, &dir).unwrap_or_default() {
            let Some((a, round)) = name
                .strip_suffix(".json")
                .and_then(|n| n.split_once('-'))
                .and_then(|(a, r)| Some((a.parse::<u32>().ok()?, r.parse::<u32>().ok()?)))
            else {
                continue;
            };
            if kind != EntryKind::File || a != attempt {
                continue;
            }
            let bytes = self.read_file(&layout::review(key, a, round));
            if let Ok(review) = serde_json::from_slice::<Value>(&bytes) {
                reviews.push((round, review));
            }
        }
        reviews.sort_by_key(|(round, _)| *round);
        Journal {
            exchanges: exchanges
                .into_iter()
                .filter(|e| e.attempt == attempt)
                .collect(),
            tool_calls: tool_calls
                .into_iter()
                .filter(|c| c.attempt == attempt)
                .collect(),
            reviews,
        }
    }

    /// Puts an agent's step into the next checkpoint.
    pub(super) fn record_step(&mut self, u: Unit, attempt: u32, step: Step) {
        let key = self.key(u);
        let label = self.label(u);
        let files = self.agent_files.entry(u).or_default();
        let (path, bytes, event, summary) = match &step {
            Step::Exchange(exchange) => {
                append_line(&mut files.exchanges, exchange);
                (
                    layout::exchanges(&key),
                    files.exchanges.clone(),
                    CheckpointEvent::AgentExchange,
                    format!(
                        "{label} {} turn {} ({})",
                        exchange.conversation, exchange.turn, exchange.model
                    ),
                )
            }
            Step::ToolCall(call) => {
                append_line(&mut files.tool_calls, call);
                let outcome = if call.error.is_some() { "failed" } else { "ok" };
                (
                    layout::tool_calls(&key),
                    files.tool_calls.clone(),
                    CheckpointEvent::ToolCall,
                    format!("{label} tool {} {outcome}", call.tool),
                )
            }
            Step::Review { round, review } => {
                let verdict = review
                    .get("verdict")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                (
                    layout::review(&key, attempt, *round),
                    to_file_bytes(review),
                    CheckpointEvent::Review,
                    format!("{label} review round {round}: {verdict}"),
                )
            }
        };
        // One write per file per checkpoint: the latest content wins.
        self.pending
            .changes
            .retain(|c| !matches!(c, Change::Write { path: p, .. } if *p == path));
        self.pending.changes.push(Change::write(path, bytes));
        self.note(Some(u), event, summary);
    }
}

/// Appends `value` as one JSON line.
fn append_line<T: serde::Serialize>(buffer: &mut Vec<u8>, value: &T) {
    // These records are plain data: serialising them cannot fail.
    if let Ok(line) = serde_json::to_vec(value) {
        buffer.extend_from_slice(&line);
        buffer.push(b'\n');
    }
}

/// The records of a JSON-lines file; lines that don't parse are left out
/// (a hand-edited record must not stop a resume).
fn lines<T: DeserializeOwned>(bytes: &[u8]) -> Vec<T> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect()
}
