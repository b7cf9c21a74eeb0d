//! Launching: resolving a unit into a job, marking it started, and the
//! task that runs its attempts (retrying with backoff) and reports back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::agent::AgentFiles;
use super::{Runner, Unit};
use crate::agent::{AgentJob, Progress, Step};
use crate::artifact::OutputSpec;
use crate::attempt::{ArtifactProblem, AttemptError, AttemptOutcome, LogSink};
use crate::engine::Executor;
use crate::engine::live::{self, LiveSink};
use crate::engine::{CheckpointEvent, Event, Observer, Transition, to_file_bytes};
use crate::exec::{FilesJob, ScriptJob};
use crate::retry::Backoff;
use crate::store::{Isolated, Merged, Worktrees};
use crate::template::PhaseKind;
use crate::template::{RetryPolicy, expr};
use crate::time::Clock;

/// How long a stopped script phase gets between `SIGTERM` and `SIGKILL`
/// unless its template says otherwise (what `docker stop` gives, too).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// The longest `kill_grace` any phase of `template` (a loop's children
/// included) gets: how long before a deadline a runner must stop its
/// phases for them all to have ended by then.
pub fn longest_kill_grace(template: &crate::template::Template) -> Duration {
    template
        .all_phases()
        .into_iter()
        .map(|p| {
            p.kill_grace
                .or(template.defaults.kill_grace)
                .map_or(DEFAULT_KILL_GRACE, |d| d.0)
        })
        .max()
        .unwrap_or(DEFAULT_KILL_GRACE)
}

/// What a phase task sends back to the runner.
pub(super) enum Report {
    /// An attempt failed; the task waits `wait` and tries again.
    Retrying {
        unit: Unit,
        attempt: u32,
        outcome: AttemptOutcome,
        elapsed: Duration,
        wait: Duration,
        /// The attempt published output, so its live file may exist.
        live_file: bool,
    },
    /// The phase's last attempt ended; the task is gone.
    Finished {
        unit: Unit,
        attempt: u32,
        outcome: AttemptOutcome,
        elapsed: Duration,
        /// The attempt published output, so its live file may exist.
        live_file: bool,
    },
    /// An agent did something that must be committed before it goes on;
    /// `ack` answers once it is.
    Progress {
        unit: Unit,
        attempt: u32,
        step: Step,
        ack: oneshot::Sender<()>,
    },
}

/// What a phase task runs.
pub(super) enum Job {
    Script(Box<ScriptJob>),
    Agent(Box<AgentJob>),
}

/// Everything a phase task needs, resolved by the runner.
pub(super) struct Launch {
    pub(super) unit: Unit,
    pub(super) job: Job,
    /// An agent's record files as committed, to append its steps to.
    pub(super) files: Option<AgentFiles>,
    pub(super) first_attempt: u32,
    pub(super) max_attempts: u32,
    pub(super) retry: Option<RetryPolicy>,
    /// The scratch directory the unit's attempts share, one after another
    /// (each empties it first).
    pub(super) scratch: PathBuf,
    /// `isolation: "worktree"`: where each attempt gets its worktree.
    pub(super) isolation: Option<Isolate>,
}

/// How an isolated unit's attempts get their worktrees.
#[derive(Debug, Clone)]
pub(super) struct Isolate {
    pub(super) worktrees: Worktrees,
    pub(super) run: String,
    /// The unit's label made safe as a directory name; `-<attempt>` follows.
    pub(super) name: String,
    /// The user's work tree, which the job's directories are relative to.
    pub(super) work_dir: PathBuf,
}

impl Isolate {
    /// Makes the attempt's worktree and points the job at it.
    async fn enter(
        &self,
        job: &mut Job,
        attempt: u32,
    ) -> Result<(Isolated, PathBuf), AttemptError> {
        let worktrees = self.worktrees.clone();
        let (run, name) = (self.run.clone(), format!("{}-{attempt}", self.name));
        let isolated = tokio::task::spawn_blocking(move || worktrees.add(&run, &name))
            .await
            .map_err(|e| internal(format!("making the attempt's worktree: {e}")))?
            .map_err(|e| internal(format!("making the attempt's worktree: {e}")))?;
        let moved = |dir: &std::path::Path| {
            isolated.path.join(
                dir.strip_prefix(&self.work_dir)
                    .unwrap_or(std::path::Path::new("")),
            )
        };
        let dir = match job {
            Job::Script(job) => {
                let there = moved(&job.cwd);
                std::mem::replace(&mut job.cwd, there)
            }
            Job::Agent(job) => {
                let there = moved(&job.work_dir);
                std::mem::replace(&mut job.work_dir, there)
            }
        };
        Ok((isolated, dir))
    }

    /// Merges a successful attempt back and removes the worktree; the
    /// outcome becomes a conflict when the merge cannot be made.
    async fn leave(&self, isolated: Isolated, outcome: &mut AttemptOutcome) {
        let worktrees = self.worktrees.clone();
        let merge = outcome.result.is_ok();
        let done = tokio::task::spawn_blocking(move || {
            let merged = if merge {
                Some(worktrees.merge(&isolated))
            } else {
                None
            };
            let removed = worktrees.remove(&isolated.path);
            (merged, removed, isolated)
        })
        .await;
        let (merged, removed, isolated) = match done {
            Ok(done) => done,
            Err(e) => {
                outcome.result = Err(internal(format!("merging the attempt's worktree: {e}")));
                return;
            }
        };
        match merged {
            Some(Ok(Merged::Conflict { paths, theirs })) => {
                outcome.result = Err(AttemptError::MergeConflict {
                    paths,
                    base: isolated.base,
                    theirs,
                });
            }
            Some(Err(e)) => {
                outcome.result = Err(internal(format!(
                    "merging the attempt's changes into the working tree: {e}"
                )));
            }
            _ => {}
        }
        if let Err(e) = removed
            && outcome.result.is_ok()
        {
            outcome.result = Err(internal(format!("removing the attempt's worktree: {e}")));
        }
    }
}

fn internal(message: String) -> AttemptError {
    AttemptError::Internal { message }
}

/// Where a unit's attempts publish their output live.
#[derive(Debug, Clone)]
pub(super) struct LiveTarget {
    root: PathBuf,
    run: String,
    key: String,
    /// Bytes one attempt's live file may hold.
    cap: u64,
}

impl LiveTarget {
    fn sink(&self, inner: Arc<dyn LogSink>, attempt: u32) -> Arc<LiveSink> {
        let path = live::attempt_file(&self.root, &self.run, &self.key, attempt);
        Arc::new(LiveSink::new(inner, path, self.cap))
    }
}

/// Everything published is in the live file before the attempt's result
/// goes to the runner (which commits it, then removes the file); returns
/// whether there may be a file to remove.
async fn finish_live(live: Option<Arc<LiveSink>>) -> bool {
    let Some(live) = live else { return false };
    if !live.published() {
        // No writer thread to wait for (an attempt that printed nothing,
        // most no-op phases): no round trip through the blocking pool.
        live.finish();
        return false;
    }
    let _ = tokio::task::spawn_blocking(move || live.finish()).await;
    true
}

/// Runs a phase's attempts (retrying with backoff) and reports each one.
pub(super) async fn phase_task(
    launch: Launch,
    live: Option<LiveTarget>,
    executor: Arc<dyn Executor>,
    mut cancel: watch::Receiver<bool>,
    sink: Arc<dyn Observer>,
    clock: Clock,
    tx: mpsc::UnboundedSender<Report>,
) {
    let Launch {
        unit,
        mut job,
        first_attempt,
        max_attempts,
        retry,
        scratch,
        isolation,
        ..
    } = launch;
    let sink: Arc<dyn LogSink> = sink;
    let mut attempt = first_attempt;
    loop {
        let started = Instant::now();
        let isolated = match &isolation {
            Some(isolate) => match isolate.enter(&mut job, attempt).await {
                Ok(isolated) => Some(isolated),
                Err(error) => {
                    let outcome = AttemptOutcome {
                        result: Err(error),
                        exit_code: None,
                        log: Vec::new(),
                        rejected: Vec::new(),
                        usage: None,
                        files: Vec::new(),
                    };
                    let _ = tx.send(Report::Finished {
                        unit,
                        attempt,
                        outcome,
                        elapsed: started.elapsed(),
                        live_file: false,
                    });
                    return;
                }
            },
            None => None,
        };
        let published = live.as_ref().map(|l| l.sink(sink.clone(), attempt));
        let attempt_sink: Arc<dyn LogSink> = match &published {
            Some(p) => p.clone(),
            None => sink.clone(),
        };
        let mut outcome = match &mut job {
            Job::Script(job) => {
                job.attempt = attempt;
                job.scratch.clone_from(&scratch);
                let job = (**job).clone();
                executor
                    .run_script(job, cancel.clone(), attempt_sink, clock)
                    .await
            }
            Job::Agent(job) => {
                job.attempt = attempt;
                let outcome = agent_attempt(
                    &*executor,
                    unit,
                    job,
                    &cancel,
                    (&attempt_sink, published.as_deref()),
                    clock,
                    &tx,
                )
                .await;
                // A later attempt starts a new conversation, and a new
                // phase budget.
                job.journal = Default::default();
                job.budget.next_attempt();
                outcome
            }
        };
        let live_file = finish_live(published).await;
        if let (Some(isolate), Some((isolated, dir))) = (&isolation, isolated) {
            isolate.leave(isolated, &mut outcome).await;
            // The next attempt gets a new worktree of its own.
            match &mut job {
                Job::Script(job) => job.cwd = dir,
                Job::Agent(job) => job.work_dir = dir,
            }
        }
        let elapsed = started.elapsed();
        // A provider that gave up pauses the run; one that refused the
        // request would refuse it again; a conflict would conflict again.
        let retryable = matches!(&outcome.result, Err(e) if !matches!(e, AttemptError::Cancelled | AttemptError::Render { .. } | AttemptError::Provider { .. } | AttemptError::Budget { .. } | AttemptError::MergeConflict { .. }));
        if !retryable || attempt >= max_attempts || *cancel.borrow() {
            let _ = tx.send(Report::Finished {
                unit,
                attempt,
                outcome,
                elapsed,
                live_file,
            });
            return;
        }
        let wait = Backoff::for_phase(retry.as_ref()).wait(attempt);
        let _ = tx.send(Report::Retrying {
            unit,
            attempt,
            outcome,
            elapsed,
            wait,
            live_file,
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.wait_for(|c| *c) => {
                let outcome = AttemptOutcome { result: Err(AttemptError::Cancelled), exit_code: None, log: Vec::new(), rejected: Vec::new(), usage: None, files: Vec::new() };
                // The cancelled attempt never started: nothing of its own to keep.
                let _ = tx.send(Report::Finished { unit, attempt: attempt + 1, outcome, elapsed: Duration::ZERO, live_file: false });
                return;
            }
        }
        attempt += 1;
    }
}

/// Runs one agent attempt, passing its steps to the runner to commit.
async fn agent_attempt(
    executor: &dyn Executor,
    unit: Unit,
    job: &AgentJob,
    cancel: &watch::Receiver<bool>,
    (sink, live): (&Arc<dyn LogSink>, Option<&LiveSink>),
    clock: Clock,
    tx: &mpsc::UnboundedSender<Report>,
) -> AttemptOutcome {
    let (progress, mut steps) = Progress::channel();
    let attempt = job.attempt;
    let forward = {
        let tx = tx.clone();
        async move {
            while let Some((step, ack)) = steps.recv().await {
                if let (Some(live), Step::ToolCall(call)) = (live, &step)
                    && let Ok(text) = serde_json::to_string(call)
                {
                    live.tool(call.time.clone(), job.masker.mask_str(&text).into_owned());
                }
                let _ = tx.send(Report::Progress {
                    unit,
                    attempt,
                    step,
                    ack,
                });
            }
        }
    };
    let run = executor.run_agent(job.clone(), cancel.clone(), sink.clone(), progress, clock);
    // The forwarder ends when the agent drops its `Progress`, i.e. with the attempt.
    let (outcome, ()) = tokio::join!(run, forward);
    outcome
}

impl Runner<'_> {
    pub(super) fn start(&mut self, u: Unit) {
        let label = self.label(u);
        self.transition(u, Transition::Start);
        let worker = self.settings.worker.clone();
        self.state_mut(u).worker = worker;
        let attempt = self.state(u).attempt;
        self.observer.event(&Event::PhaseStarted {
            phase: &label,
            attempt,
        });
        self.note(
            Some(u),
            CheckpointEvent::PhaseStarted,
            format!("{label} started (attempt {attempt})"),
        );
    }

    /// A unit that cannot even start (its `if` or a template field does
    /// not render) fails its next attempt without running anything.
    pub(super) fn fail_before_start(&mut self, u: Unit, error: AttemptError) {
        self.start(u);
        let attempt = self.state(u).attempt;
        let outcome = AttemptOutcome {
            result: Err(error),
            exit_code: None,
            log: Vec::new(),
            rejected: Vec::new(),
            usage: None,
            files: Vec::new(),
        };
        self.apply(
            Report::Finished {
                unit: u,
                attempt,
                outcome,
                elapsed: Duration::ZERO,
                live_file: false,
            },
            false,
        );
    }

    /// Resolves a unit into a job: rendered command, cwd and env, input
    /// artifacts, compiled output schemas.
    pub(super) fn prepare(&self, u: Unit, context: &Value) -> Result<Launch, AttemptError> {
        if self.spec(u).kind == PhaseKind::Agent {
            return self.prepare_agent(u, context);
        }
        let phase = self.spec(u);
        let render = |field: &str, source: &str| {
            expr::render(source, context).map_err(|e| AttemptError::Render {
                field: field.to_string(),
                message: e.message,
            })
        };
        let command = render("run", phase.run.as_deref().unwrap_or_default())?;
        let cwd = match &phase.cwd {
            Some(cwd) => self.settings.work_dir.join(render("cwd", cwd)?),
            None => self.settings.work_dir.clone(),
        };
        let mut env = args_env(&self.record.args);
        if let Unit::Child { parent, .. } = u {
            let owner = self.loops[parent].owner;
            env.push(("WFE_LOOP".into(), self.id(owner).to_string()));
            env.push((
                "WFE_ITERATION".into(),
                self.loops[parent].iteration.to_string(),
            ));
        }
        // The phase's env over `defaults.env` over the template's: one
        // value per name, each rendered like the phase's own.
        let mut merged: std::collections::BTreeMap<&str, (String, &str)> = Default::default();
        for (at, source) in [
            ("env", &self.template.env),
            ("defaults.env", &self.template.defaults.env),
        ] {
            for (key, value) in source {
                merged.insert(key, (format!("{at}.{key}"), value));
            }
        }
        for (key, value) in &phase.env {
            merged.insert(key, (format!("env.{key}"), value));
        }
        for (key, (field, value)) in merged {
            env.push((key.to_string(), render(&field, value)?));
        }
        self.check_inputs(u)?;
        let upstream = self.upstream(u);
        let mut inputs = Vec::new();
        for v in upstream {
            for (name, value) in self.outputs(v) {
                inputs.push((self.id(v).to_string(), name.clone(), to_file_bytes(value)));
            }
        }
        if let Unit::Child { parent, .. } = u {
            inputs.extend(self.previous_inputs(parent));
        }
        let outputs = self.output_specs(u)?;
        let retry = self.retry_policy(u);
        // The runner hands out a scratch slot once the unit starts.
        let scratch = PathBuf::new();
        Ok(Launch {
            unit: u,
            files: None,
            job: Job::Script(Box::new(ScriptJob {
                run: self.record.id.clone(),
                phase: phase.id.clone(),
                attempt: 0,
                command,
                cwd,
                env,
                inputs,
                outputs,
                scratch: scratch.clone(),
                timeout: phase
                    .timeout
                    .or(self.template.defaults.timeout)
                    .map(|d| d.0),
                kill_grace: phase
                    .kill_grace
                    .or(self.template.defaults.kill_grace)
                    .map_or(DEFAULT_KILL_GRACE, |d| d.0),
                processes: self.settings.processes.clone(),
                label: self.label(u),
                max_artifact_bytes: self.settings.max_artifact_bytes,
                max_log_bytes: self.settings.max_log_bytes,
                env_remove: self.removed_env(u),
                masker: self.settings.masker.clone(),
                files: FilesJob {
                    root: self.settings.work_dir.clone(),
                    outputs: phase
                        .outputs
                        .files
                        .iter()
                        .map(|(name, decl)| (name.clone(), decl.clone()))
                        .collect(),
                    max_bytes: phase
                        .max_files_bytes
                        .unwrap_or(self.settings.max_files_bytes),
                },
            })),
            isolation: self.isolation(u),
            first_attempt: self.state(u).attempt.saturating_add(1),
            // The budget counts from the last manual retry.
            max_attempts: self
                .state(u)
                .retry_base
                .saturating_add(retry.as_ref().map_or(1, |r| r.max_attempts.max(1))),
            retry,
            scratch,
        })
    }

    /// Fails a unit before it starts when an artifact it reads no longer
    /// matches its schema.
    pub(super) fn check_inputs(&self, u: Unit) -> Result<(), AttemptError> {
        let problems: Vec<ArtifactProblem> = self
            .upstream(u)
            .iter()
            .filter_map(|v| self.invalid.get(v))
            .flatten()
            .cloned()
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AttemptError::InvalidInputs { problems })
        }
    }

    /// The provider key variables the unit does not inherit: all of them
    /// but those its `pass_env` names.
    pub(super) fn removed_env(&self, u: Unit) -> Vec<String> {
        let keep = &self.spec(u).pass_env;
        self.settings
            .provider_key_vars
            .iter()
            .filter(|var| !keep.contains(var))
            .cloned()
            .collect()
    }

    /// The unit's retry policy: its own, else the template's default.
    /// The worktrees an isolated unit's attempts work in; `None` when the
    /// phase is not isolated (or the repository has no work tree).
    pub(super) fn isolation(&self, u: Unit) -> Option<Isolate> {
        self.spec(u).isolation?;
        let worktrees = self.settings.worktrees.clone()?;
        let name: String = self
            .label(u)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(Isolate {
            worktrees,
            run: self.record.id.clone(),
            name,
            work_dir: self.settings.work_dir.clone(),
        })
    }

    pub(super) fn retry_policy(&self, u: Unit) -> Option<RetryPolicy> {
        self.spec(u)
            .retry
            .clone()
            .or_else(|| self.template.defaults.retry.clone())
    }

    /// Where the unit's attempts publish their output live, if anywhere.
    pub(super) fn live_target(&self, u: Unit) -> Option<LiveTarget> {
        self.settings.live.as_ref().map(|root| LiveTarget {
            root: root.clone(),
            run: self.run.as_str().to_string(),
            key: self.key(u),
            cap: self.settings.max_log_bytes,
        })
    }

    /// The scratch directory of a unit about to start: a slot of the
    /// run's, which it holds until its task ends (see `ScratchSlots`).
    pub(super) fn scratch_dir(&mut self, u: Unit) -> PathBuf {
        let slot = self.slots.take(u);
        self.settings
            .scratch
            .join(self.run.as_str())
            .join(slot.to_string())
    }

    /// The unit's declared outputs with their frozen, compiled schemas.
    pub(super) fn output_specs(&self, u: Unit) -> Result<Vec<OutputSpec>, AttemptError> {
        let mut outputs = Vec::new();
        for (name, schema_name) in &self.spec(u).outputs {
            let schema =
                self.schemas
                    .get(schema_name)
                    .cloned()
                    .ok_or_else(|| AttemptError::Internal {
                        message: format!(
                            "schema `{schema_name}` of output `{name}` is not frozen in this run"
                        ),
                    })?;
            outputs.push(OutputSpec {
                name: name.clone(),
                schema,
            });
        }
        Ok(outputs)
    }
}

/// `WFE_ARG_<NAME>` for every top-level arg: strings as they are, other
/// values as compact JSON.
fn args_env(args: &Value) -> Vec<(String, String)> {
    let Some(map) = args.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(key, value)| {
            let name: String = key
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (format!("WFE_ARG_{name}"), text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn args_become_upper_case_env() {
        let env = args_env(&json!({"feature": "x y", "max-count": 3, "deep": {"a": true}}));
        assert_eq!(
            env,
            vec![
                ("WFE_ARG_DEEP".to_string(), "{\"a\":true}".to_string()),
                ("WFE_ARG_FEATURE".to_string(), "x y".to_string()),
                ("WFE_ARG_MAX_COUNT".to_string(), "3".to_string()),
            ]
        );
    }
}
