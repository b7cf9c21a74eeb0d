//! `wfe worker`: run phases of a run shared through a git remote, together
//! with other workers on other machines (see [`crate::engine::worker`]).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Progress, Ui};
use crate::engine::worker::{Ended, Worker, work};
use crate::engine::{self, Observer, RunSnapshot, System};
use crate::retry::{Backoff, DurationSpec};
use crate::store::{ProcessRegistry, RunId};

/// Claim and run ready phases of a run shared through a git remote, with other workers
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The remote the run was pushed to (default: the current branch's upstream remote, else `origin`)
    #[arg(long)]
    pub remote: Option<String>,
    /// The run's full id (as `wfe run --queue` printed it)
    #[arg(long)]
    pub run: String,
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

/// Runs `wfe worker`.
pub(crate) async fn run(args: WorkerArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let lease = duration("lease", &args.lease)?;
    let give_up_after = duration("give-up-after", &args.give_up_after)?;
    let run = RunId::parse(&args.run)
        .filter(|r| r.as_str() == args.run.to_ascii_lowercase())
        .ok_or_else(|| {
            CliError::input(format!("--run {}: not a run id", args.run))
                .hint("give the run's full id, as `wfe run --queue` printed it")
        })?;
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
    let host = host_name();
    let pid = std::process::id();
    let id = args.id.clone().unwrap_or_else(|| format!("{host}-{pid}"));
    if id.is_empty() || id.contains(['@', '\n']) {
        return Err(CliError::input(format!(
            "--id {id:?}: must be non-empty, without `@` or newlines"
        )));
    }
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
    settings.processes = Some(ProcessRegistry::new(&ctx.store.wfe_dir(), run.as_str()));
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
        ui.note(&format!(
            "worker {} ran {} phase(s) of {}; {ended}",
            worker.label(),
            summary.ran.iter().filter(|r| r.status.is_some()).count(),
            run.as_str()
        ));
    }
    Ok(match summary.ended {
        Ended::Interrupted => Outcome::Reported(crate::cli::error::ErrorKind::Stopped),
        Ended::RunEnded(s) => Outcome::from(s),
        _ => Outcome::Success,
    })
}
