//! `wfe worker`: run phases of a run shared through a git remote, together
//! with other workers on other machines (see [`crate::engine::worker`]).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Progress, Style, Ui};
use crate::engine::worker::{Ended, Worker, work};
use crate::engine::{self, Observer, RunSnapshot, RunStatus, StopReason, System};
use crate::retry::{Backoff, DurationSpec};
use crate::store::{ProcessRegistry, RunId, RunStore};

/// Claim and run ready phases of a run shared through a git remote, with other workers
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The remote the run was pushed to (default: the current branch's upstream remote, else `origin`)
    #[arg(long)]
    pub remote: Option<String>,
    /// The run: its id (as `wfe run --queue` printed it), a unique prefix of one, or `latest`, as the remote has them
    #[arg(
        long,
        required_unless_present = "template",
        conflicts_with = "template"
    )]
    pub run: Option<String>,
    /// Queue a new run of this template, push it, and work on it (its id is printed first, for other workers' `--run`)
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// With --template: an argument NAME=VALUE (repeatable)
    #[arg(long = "arg", value_name = "NAME=VALUE", requires = "template")]
    pub args: Vec<String>,
    /// With --template: a JSON (or YAML) file with the arguments, `-` for standard input; --arg values override it
    #[arg(long, value_name = "FILE", requires = "template")]
    pub args_file: Option<std::path::PathBuf>,
    /// Only this phase
    #[arg(long, value_name = "PHASE")]
    pub phase: Option<String>,
    /// Run at most one phase, and stop when none is ready
    #[arg(long)]
    pub once: bool,
    /// Run at most N phases
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_phases: Option<u32>,
    /// Claim up to N ready phases in one push and run them at once (default 1)
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// How long a claim holds unless renewed (renewed every third of it)
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub lease: String,
    /// How long the remote may stay unreachable before the worker gives up
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub give_up_after: String,
    /// This worker's id (default: `<host>-<pid>`); unique among the run's workers
    #[arg(long)]
    pub id: Option<String>,
    /// Don't echo the phases' output lines (they are still recorded)
    #[arg(long)]
    pub no_output: bool,
    /// Print what the worker did as one JSON document
    #[arg(long)]
    pub json: bool,
}

fn duration(flag: &str, text: &str) -> Result<Duration, CliError> {
    let d = DurationSpec::parse(text).map_err(|e| CliError::input(format!("--{flag}: {e}")))?;
    if d.0.is_zero() {
        return Err(CliError::input(format!("--{flag}: must be more than zero")));
    }
    Ok(d.0)
}

/// The machine's name, as the kernel has it.
fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The run `name` names on `remote`: its full id, a unique prefix of one,
/// or `latest` (the newest run there), read from the remote's refs.
fn remote_run(ctx: &Context, remote: &str, name: &str) -> Result<RunId, CliError> {
    let runs = ctx.store.remote_runs(remote)?;
    if name == "latest" {
        return runs.last().cloned().ok_or_else(|| {
            CliError::input(format!("--run latest: remote {remote} has no runs"))
                .hint("queue one with `wfe run TEMPLATE --queue` and `wfe push`, or start with --template")
        });
    }
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() {
        return Err(CliError::input("--run: the run id is empty"));
    }
    let hits: Vec<&RunId> = runs
        .iter()
        .filter(|r| r.as_str().starts_with(&lower))
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(CliError::input(format!(
            "--run {name}: no run on remote {remote} has that id"
        ))
        .hint("push it first: `wfe push` where it was queued")),
        many => Err(CliError::input(format!(
            "--run {name}: {} runs on remote {remote} start with it: {}",
            many.len(),
            many.iter()
                .take(5)
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("give more of the id")),
    }
}

/// Runs `wfe worker`.
pub(crate) async fn run(args: WorkerArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let lease = duration("lease", &args.lease)?;
    let give_up_after = duration("give-up-after", &args.give_up_after)?;
    let remote = match &args.remote {
        Some(r) => {
            ctx.store.check_remote(r)?;
            r.clone()
        }
        None => ctx.store.default_remote()?.ok_or_else(|| {
            CliError::input("no remote to work with: the current branch has no upstream and there is no `origin`")
                .hint("name one with --remote")
        })?,
    };
    let run = match (&args.run, &args.template) {
        (Some(name), _) => remote_run(ctx, &remote, name)?,
        (None, Some(template)) => {
            let id = super::run::queue(
                ctx,
                template,
                &args.args,
                args.args_file.as_ref(),
                &[],
                &crate::cli::ci::CiArgs::default(),
            )?;
            let tip = ctx.store.tip(&id)?.ok_or_else(|| {
                CliError::internal(format!("run {id} has no checkpoint after it was queued"))
            })?;
            if !ctx.store.push_run_cas(&remote, &id, None, &tip)? {
                return Err(CliError::internal(format!(
                    "remote {remote} already has a run {id}; not overwriting it"
                )));
            }
            // Other workers join with `--run ID`: say it before working.
            if args.json {
                ui.note(&format!("queued run {id} on {remote}"));
            } else {
                ui.out(id.as_str());
            }
            ui.note(&format!(
                "other workers join with `wfe worker --run {id}` (after `git fetch` of the template's commit)"
            ));
            id
        }
        (None, None) => return Err(CliError::input("give --run RUN or --template TEMPLATE")),
    };
    let host = host_name();
    let pid = std::process::id();
    let id = args.id.clone().unwrap_or_else(|| format!("{host}-{pid}"));
    if id.is_empty() || id.contains(['@', '\n']) {
        return Err(CliError::input(format!(
            "--id {id:?}: must be non-empty, without `@` or newlines"
        )));
    }
    // One driver of the run per clone: the worker keeps the run's local ref
    // and its phases' process records here, which a second worker (or a
    // local `wfe resume`) of the run in the same clone would fight over.
    let _lock = ctx
        .store
        .lock(&run, &ctx.clock.stamp())
        .map_err(|e| match e {
            crate::store::StoreError::Locked { .. } => CliError::input(e.to_string()).hint(
                "one worker per run and clone: give that worker `--jobs N` to run N phases at once, or start this one in another clone",
            ),
            e => e.into(),
        })?;
    // The run's template decides secrets and seats: fetch it first.
    let tip = ctx.store.fetch_run(&remote, &run)?.ok_or_else(|| {
        CliError::input(format!("run {run} is not on remote {remote}"))
            .hint("push it first: `wfe push` where it was queued")
    })?;
    ctx.store.follow_remote(&run, &tip)?;
    let snapshot = RunSnapshot::load_tip(&ctx.store, &run)?;
    let template = snapshot.template;
    if let Some(phase) = &args.phase
        && !template.phases.iter().any(|p| &p.id == phase)
    {
        return Err(
            CliError::input(format!("--phase {phase}: run {run} has no such phase")).hint(format!(
                "its phases: {}",
                template
                    .phases
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    let mut settings = ctx.settings(args.jobs.map(|j| j as usize));
    settings.seats = ctx.seats(&template, None, &engine::seat_requests(&template))?;
    (settings.provider_key_vars, settings.masker) =
        crate::cli::config::run_secrets(&ctx.config, &template, Vec::<String>::new());
    // Ends the phase's processes if this worker dies without doing so
    // (SIGKILL, OOM, a cancelled CI job), before another worker takes the
    // phase over once the lease lapses.
    let grace = template
        .defaults
        .kill_grace
        .map_or(engine::DEFAULT_KILL_GRACE, |d| d.0);
    let (processes, guardian) = super::guard::start(
        ui,
        ProcessRegistry::new(&ctx.store.wfe_dir(), run.as_str()),
        grace,
    );
    settings.processes = Some(processes);
    let worker = Worker {
        remote,
        run: run.clone(),
        phase: args.phase.clone(),
        once: args.once,
        max_phases: args.max_phases.map(|m| m as usize),
        lease,
        id,
        host,
        pid,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        give_up_after,
        poll: (lease / 20).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        jobs: args.jobs.map_or(1, |j| j as usize),
    };
    let (interrupt_tx, interrupt_rx) = watch::channel(false);
    let stop_signals = crate::cli::signals::stop_signals()?;
    let signals = tokio::spawn(async move {
        stop_signals.recv().await;
        let _ = interrupt_tx.send(true);
    });
    let observer: Arc<dyn Observer> = Arc::new(Progress::new(ui, !args.no_output));
    let summary = work(
        &ctx.store,
        &worker,
        &settings,
        Arc::new(System),
        observer,
        interrupt_rx,
    )
    .await;
    signals.abort();
    super::guard::finish(guardian);
    let summary = summary?;
    let ended = match &summary.ended {
        Ended::RunEnded(s) => format!("run {}", s.as_str()),
        Ended::RunHeld(s) => format!("run {}", s.as_str()),
        Ended::Limit => "limit reached".into(),
        Ended::PhaseDone => "phase done".into(),
        Ended::NothingReady => "nothing ready".into(),
        Ended::Interrupted => "interrupted".into(),
    };
    if args.json {
        let ran: Vec<_> = summary
            .ran
            .iter()
            .map(|r| {
                serde_json::json!({
                    "phase": r.phase,
                    "status": r.status.map(|s| s.as_str()),
                    "took_over": r.took_over,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "run": run.as_str(),
            "worker": worker.label(),
            "ran": ran,
            "ended": ended,
            "races_lost": summary.races_lost,
            "retries": summary.retries,
        });
        ui.out(&doc.to_string());
    } else {
        // Phases stopped before their end (the run paused or cancelled
        // under them, a claim lost) were given back, not run.
        let given_back: Vec<&str> = summary
            .ran
            .iter()
            .filter(|r| r.status.is_none())
            .map(|r| r.phase.as_str())
            .collect();
        let given_back = if given_back.is_empty() {
            String::new()
        } else {
            format!(" (stopped and gave back: {})", given_back.join(", "))
        };
        ui.note(&format!(
            "worker {} ran {} phase(s) of {}{given_back}; {ended}",
            worker.label(),
            summary.ran.iter().filter(|r| r.status.is_some()).count(),
            run.as_str()
        ));
    }
    if let Ended::RunHeld(_) = summary.ended
        && let Some(hint) = held_hint(ctx, &run)
    {
        ui.note(&format!("{} {hint}", ui.paint(Style::Yellow, "hint:")));
    }
    // A run that stopped before its end (paused, waiting, cancelled) ends
    // the worker with 3, as it ends `wfe run`.
    Ok(match summary.ended {
        Ended::Interrupted => Outcome::Reported(crate::cli::error::ErrorKind::Stopped),
        Ended::RunEnded(s) | Ended::RunHeld(s) => Outcome::from(s),
        _ => Outcome::Success,
    })
}

/// What lets workers go on with a run that holds them back, as the
/// worker's clone has it now: the approvals it waits for, or handing a
/// paused run back to workers.
fn held_hint(ctx: &Context, run: &RunId) -> Option<String> {
    let snapshot = RunSnapshot::load_tip(&ctx.store, run).ok()?;
    match (&snapshot.record.status, &snapshot.record.reason) {
        (RunStatus::Waiting, Some(StopReason::WaitingForApproval { phases })) => {
            let first = phases.first()?;
            Some(format!(
                "the run waits for an approval: in a clone, `wfe pull`, `wfe approve {run} {first}` and `wfe push`, then start workers again"
            ))
        }
        (RunStatus::Paused, _) => Some(format!(
            "the run was paused: in a clone, `wfe pull`, `wfe resume {run} --queue` (hands it back to workers) and `wfe push`, then start workers again"
        )),
        _ => None,
    }
}
