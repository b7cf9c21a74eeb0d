//! `wfe run`: validate everything, create the run, drive it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio::sync::watch;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Progress, Style, Ui};
use crate::engine::control::ControlDir;
use crate::engine::{self, NewRun, Observer, REVIEW_SCHEMA, RunSnapshot, Seats};
use crate::store::{ProcessRegistry, RunId, RunLock, SecretArgs};
use crate::template::{Template, build_args};

/// Start a run of a template
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The template: a name (`.wfe/templates/NAME.json` or built-in) or a path
    pub template: String,
    /// An argument NAME=VALUE (repeatable); VALUE is parsed as JSON where the args schema wants a non-string
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    pub args: Vec<String>,
    /// A JSON (or YAML) file with the arguments, `-` for standard input; --arg values override it
    #[arg(long, value_name = "FILE")]
    pub args_file: Option<PathBuf>,
    /// Answer every agent phase from the exchanges RUN recorded (no network, no tokens); a request that differs stops the phase with a diff
    #[arg(long, value_name = "RUN")]
    pub replay: Option<String>,
    /// Start the run in the background: print its id at once and exit 0; the runner's output goes to `<git-dir>/wfe/detached/<id>.log`
    #[arg(long)]
    pub detach: bool,
    /// The run's budget over its agent phases, e.g. tokens=200000,cost=2.5,wall=30m,tool_calls=200,soft=0.8 (repeatable; over the template's `defaults.budget` and the config's `budget`)
    #[arg(long, value_name = "LIMITS")]
    pub budget: Vec<String>,
    /// Create the run and its first checkpoint but run no phase: print its id, for `wfe push` and `wfe worker` (it stays `pending` until a worker or `wfe resume` starts it)
    #[arg(long, conflicts_with_all = ["detach", "replay"])]
    pub queue: bool,
    #[command(flatten)]
    pub drive: DriveArgs,
}

/// The run's budget: each `--budget` over the template's `defaults.budget`
/// over the config's `budget`, limit by limit; none when nothing is limited.
fn run_budget(
    ctx: &Context,
    template: &Template,
    flags: &[String],
) -> Result<Option<crate::budget::Budget>, CliError> {
    let mut budget = crate::budget::Budget::default();
    for flag in flags {
        let parsed = crate::budget::Budget::parse(flag)
            .map_err(|e| CliError::input(format!("--budget {flag}: {e}")))?;
        budget = parsed.over(&budget);
    }
    let base = template
        .defaults
        .budget
        .clone()
        .unwrap_or_default()
        .over(&ctx.config.budget.clone().unwrap_or_default());
    let budget = budget.over(&base);
    Ok((!budget.is_empty()).then_some(budget))
}

/// Flags of every command that drives a run (`run`, `resume`, `retry`).
#[derive(Debug, Args)]
pub struct DriveArgs {
    /// Phases to run at once (default: the config's `jobs`, else the number of CPUs)
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Print the finished run as one JSON document on stdout
    #[arg(long)]
    pub json: bool,
    /// Don't echo the phases' output lines (they are still recorded)
    #[arg(long)]
    pub no_output: bool,
    /// When the run waits for an approval (or `wfe continue`), keep waiting instead of exiting 3
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub ci: crate::cli::ci::CiArgs,
}

/// Runs `wfe run`.
pub(crate) async fn run(args: RunArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    if args.queue {
        let id = queue(
            ctx,
            &args.template,
            &args.args,
            args.args_file.as_ref(),
            &args.budget,
            &args.drive.ci,
        )?;
        if args.drive.json {
            let doc = serde_json::json!({ "run": id.as_str(), "status": "pending" });
            ui.out(&doc.to_string());
        } else {
            ui.out(id.as_str());
        }
        ui.note(&format!(
            "queued: `wfe push` sends it to the remote, where `wfe worker --run {}` runs its phases (or `wfe resume {}` runs it here)",
            id.as_str(),
            id.as_str()
        ));
        return Ok(Outcome::Success);
    }
    let (template, source) = ctx.catalog.load(&args.template, &ctx.registry)?;
    engine::ensure_runnable(&template)?;
    crate::cli::ci::check_approvals(&args.drive.ci, &template)?;
    let file_args = args
        .args_file
        .as_ref()
        .map(|p| read_args_file(&ctx.root, p))
        .transpose()?;
    let run_args = build_args(template.args.as_ref(), file_args, &args.args)?;
    let (run_args, secret_args) = split_secret_args(ctx, &template, run_args)?;
    let replay = args
        .replay
        .as_deref()
        .map(|r| ctx.resolve_run(r))
        .transpose()?;
    let seats = ctx.seats(
        &template,
        replay.as_ref(),
        &engine::seat_requests(&template),
    )?;
    let budget = run_budget(ctx, &template, &args.budget)?;
    let base_commit = ctx.head_commit()?;
    let schemas = resolve_schemas(ctx, &template)?;
    let id = ctx.run_ids.next(&ctx.clock);
    let lock = ctx.store.lock(&id, &ctx.clock.stamp())?;
    if !secret_args.is_empty() {
        let kept = SecretArgs::new(&ctx.store.wfe_dir(), id.as_str());
        kept.write(&secret_args).map_err(|e| {
            CliError::internal(format!(
                "cannot keep the run's secret args in {}: {e}",
                kept.path().display()
            ))
        })?;
    }
    let new = NewRun {
        id: id.clone(),
        template,
        template_source: source.recorded(&ctx.root),
        args: run_args,
        schemas,
        base_commit,
        auto: ctx.config.auto.unwrap_or(true),
        secret_args: secret_args.keys().cloned().collect(),
        budget,
    };
    engine::create(&ctx.store, &new, &ctx.clock)?;
    if args.detach {
        drop(lock);
        crate::cli::detach::spawn(ctx, &id, &args.drive)?;
        ui.out(id.as_str());
        return Ok(Outcome::Success);
    }
    drive(ctx, ui, &id, lock, &args.drive, seats).await
}

/// Creates a run of `template` and its first checkpoint without running
/// any phase (`wfe run --queue`, `wfe worker --template`): its id.
pub(crate) fn queue(
    ctx: &Context,
    template: &str,
    args: &[String],
    args_file: Option<&PathBuf>,
    budget: &[String],
    ci: &crate::cli::ci::CiArgs,
) -> Result<RunId, CliError> {
    let (template, source) = ctx.catalog.load(template, &ctx.registry)?;
    engine::ensure_runnable(&template)?;
    crate::cli::ci::check_approvals(ci, &template)?;
    let file_args = args_file
        .map(|p| read_args_file(&ctx.root, p))
        .transpose()?;
    let run_args = build_args(template.args.as_ref(), file_args, args)?;
    let (run_args, secret_args) = split_secret_args(ctx, &template, run_args)?;
    ctx.seats(&template, None, &engine::seat_requests(&template))?;
    let budget = run_budget(ctx, &template, budget)?;
    if !secret_args.is_empty() {
        // Secret args stay on this machine; a worker elsewhere could not
        // render the phases that use them.
        return Err(CliError::input(format!(
            "--queue: secret args ({}) cannot travel with a queued run; pass them through the workers' environment instead",
            secret_args.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let base_commit = ctx.head_commit()?;
    let schemas = resolve_schemas(ctx, &template)?;
    let id = ctx.run_ids.next(&ctx.clock);
    let lock = ctx.store.lock(&id, &ctx.clock.stamp())?;
    let new = NewRun {
        id: id.clone(),
        template,
        template_source: source.recorded(&ctx.root),
        args: run_args,
        schemas,
        base_commit,
        auto: ctx.config.auto.unwrap_or(true),
        secret_args: Vec::new(),
        budget,
    };
    engine::create(&ctx.store, &new, &ctx.clock)?;
    drop(lock);
    Ok(id)
}

/// Drives a run that this process holds the lock of, then reports it.
pub(crate) async fn drive(
    ctx: &Context,
    ui: &Ui,
    id: &RunId,
    lock: RunLock,
    flags: &DriveArgs,
    seats: Option<Arc<dyn Seats>>,
) -> Result<Outcome, CliError> {
    let mut settings = ctx.settings(flags.jobs.map(|j| j as usize));
    settings.seats = seats;
    // Secrets of the run as it was frozen: its template's `secrets` lists,
    // and its secret args, which the runner renders with their values.
    let snapshot = RunSnapshot::load_tip(&ctx.store, id)?;
    let template = snapshot.template;
    let secret_args = kept_secret_args(ctx, id, &snapshot.record.secret_args)?;
    (settings.provider_key_vars, settings.masker) = crate::cli::config::run_secrets(
        &ctx.config,
        &template,
        secret_values(&template, &secret_args),
    );
    settings.secret_args = secret_args;
    settings.control = Some(ControlDir::new(&ctx.store.wfe_dir(), id.as_str()));
    settings.wait = flags.wait;
    // Descendants of phases whose parent dies (a `setsid` escapee, a
    // daemon a phase started) come back to this runner instead of init, so
    // the sweep below ends them. Not fatal: the process groups still are.
    if let Err(e) = crate::process::become_subreaper() {
        ui.warn(&format!(
            "cannot become the child subreaper of the run's phases ({e}): processes that leave their phase's process group may outlive this runner"
        ));
    }
    let orphan_grace = template
        .defaults
        .kill_grace
        .map_or(engine::DEFAULT_KILL_GRACE, |d| d.0);
    // Ends the phases if this process dies without doing so (SIGKILL, OOM).
    let (processes, guardian) = super::guard::start(
        ui,
        ProcessRegistry::new(&ctx.store.wfe_dir(), id.as_str()),
        orphan_grace,
    );
    settings.processes = Some(processes);
    let (interrupt_tx, interrupt_rx) = watch::channel(false);
    // SIGINT (Ctrl-C), SIGTERM (`docker stop`, Kubernetes, CI cancels) and
    // SIGHUP (the terminal went away) all stop the runner the same way.
    let stop_signals = crate::cli::signals::stop_signals()?;
    let ctrl_c = tokio::spawn(async move {
        stop_signals.recv().await;
        let _ = interrupt_tx.send(true);
    });
    let host = crate::cli::ci::mode(&flags.ci);
    if let Some(deadline) = flags.ci.deadline {
        settings.deadline = Some(crate::cli::ci::stop_at(deadline, &template));
    }
    let observer: Arc<dyn Observer> = match host {
        Some(host) => Arc::new(crate::cli::ci::CiProgress::new(
            ui,
            host,
            ctx.clock,
            !flags.no_output,
        )),
        None => Arc::new(Progress::new(ui, !flags.no_output)),
    };
    let approvals = crate::cli::ci::Approvals::new(&flags.ci);
    let approver = (!approvals.is_empty()).then(|| {
        Arc::new(crate::cli::ci::Approver::new(
            observer.clone(),
            approvals.clone(),
            ControlDir::new(&ctx.store.wfe_dir(), id.as_str()),
            ui,
        ))
    });
    let observer: Arc<dyn Observer> = match &approver {
        Some(approver) => approver.clone(),
        None => observer,
    };
    // Search index: updated on a thread of its own after each checkpoint, never in the run's way.
    let indexer = super::index::start_background(ctx, id);
    let observer = match &indexer {
        Some(indexer) => indexer.observer(observer),
        None => observer,
    };
    let status = loop {
        if approver.is_some() {
            approve_waiting(ctx, ui, id, &approvals)?;
        }
        let status = engine::drive(
            &ctx.store,
            id,
            &settings,
            observer.clone(),
            interrupt_rx.clone(),
        )
        .await;
        // Gates approved up front that the runner stopped at: approve them
        // here and drive on.
        if let Some(approver) = &approver {
            approver.withdraw_unread();
            if matches!(status, Ok(engine::RunStatus::Waiting))
                && waiting_covered(ctx, id, &approvals)?
            {
                continue;
            }
        }
        break status;
    };
    ctrl_c.abort();
    // Every phase has ended: a child left now is an orphan of one. Ended
    // before the lock goes, so no next runner meets it.
    match crate::process::end_orphans(orphan_grace).await {
        Ok(0) => {}
        Ok(n) => ui.note(&format!(
            "{} ended {n} process(es) that outlived their phases",
            ui.paint(Style::Yellow, "!")
        )),
        Err(e) => ui.warn(&format!("cannot end what the phases left running: {e}")),
    }
    super::guard::finish(guardian);
    drop(lock);
    super::index::finish_background(indexer, ui);
    let status = status?;
    crate::cli::ci::after_run(ctx, ui, id, host, &flags.ci)?;
    report(ctx, ui, id, flags.json)?;
    Ok(Outcome::from(status))
}

/// Takes the secret args out of `args`: those the args schema declares
/// `"secret": true` (they must be strings) and any whose value holds a
/// secret of the run (a declared `secrets` variable's value, a provider
/// key). Returns the args to commit, masked, and the secret ones with their
/// values, to keep out of git.
fn split_secret_args(
    ctx: &Context,
    template: &Template,
    args: serde_json::Value,
) -> Result<
    (
        serde_json::Value,
        serde_json::Map<String, serde_json::Value>,
    ),
    CliError,
> {
    let declared = crate::template::secret_args(template.args.as_ref());
    let (_, env) = crate::cli::config::run_secrets(&ctx.config, template, []);
    let serde_json::Value::Object(args) = args else {
        return Ok((args, serde_json::Map::new()));
    };
    let mut secret = serde_json::Map::new();
    for (name, value) in &args {
        let is_declared = declared.contains(name);
        if is_declared && !value.is_string() {
            return Err(CliError::input(format!(
                "arg `{name}` is declared secret (`\"secret\": true` in the template's args schema), so it must be a string; got {value}"
            )));
        }
        if is_declared || env.mask_json(&mut value.clone()) {
            secret.insert(name.clone(), value.clone());
        }
    }
    let masker = crate::secret::Masker::new(secret_values(template, &secret));
    let mut committed = serde_json::Value::Object(args);
    masker.mask_json(&mut committed);
    env.mask_json(&mut committed);
    Ok((committed, secret))
}

/// The values of the args `template` declares secret, to mask wherever
/// they appear. (An arg that is secret because it holds a secret value
/// needs no mask of its own: that value's mask covers it.)
pub(crate) fn secret_values(
    template: &Template,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    let declared = crate::template::secret_args(template.args.as_ref());
    args.iter()
        .filter(|(name, _)| declared.contains(name))
        .map(|(_, v)| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// The secret args this clone kept for run `id` when it created it; every
/// name in `names` must be there, or the runner would render `***`.
pub(crate) fn kept_secret_args(
    ctx: &Context,
    id: &RunId,
    names: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    let kept = SecretArgs::new(&ctx.store.wfe_dir(), id.as_str());
    let found = kept.read().map_err(|e| {
        CliError::input(format!(
            "cannot read the run's secret args from {}: {e}",
            kept.path().display()
        ))
    })?;
    let found = found.unwrap_or_default();
    let missing: Vec<&str> = names
        .iter()
        .filter(|n| !found.contains_key(*n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(CliError::input(format!(
            "run {id} has secret args ({}) whose values are kept only in the clone that started it ({} is missing here)",
            missing.join(", "),
            kept.path().display()
        )));
    }
    Ok(found)
}

/// The masker of run `id` for what a person commits by hand (`approve
/// --artifact`, `edit`, `comment`): the run's declared secrets, provider
/// keys and the secret args this clone kept (none kept is no error here).
pub(crate) fn run_masker(ctx: &Context, id: &RunId) -> Result<crate::secret::Masker, CliError> {
    let template = RunSnapshot::load_tip(&ctx.store, id)?.template;
    let kept = SecretArgs::new(&ctx.store.wfe_dir(), id.as_str())
        .read()
        .ok()
        .flatten()
        .unwrap_or_default();
    let (_, masker) =
        crate::cli::config::run_secrets(&ctx.config, &template, secret_values(&template, &kept));
    Ok(masker)
}

/// Whether a phase `--approve` covers waits in the run.
fn waiting_covered(
    ctx: &Context,
    id: &RunId,
    approvals: &crate::cli::ci::Approvals,
) -> Result<bool, CliError> {
    let snapshot = RunSnapshot::load_tip(&ctx.store, id)?;
    Ok(snapshot
        .phases
        .iter()
        .any(|p| p.status == engine::PhaseStatus::Waiting && approvals.covers(&p.id)))
}

/// Approves, before the runner starts, the phases `--approve` covers that
/// already wait (a run resumed at a gate); this process holds the lock.
fn approve_waiting(
    ctx: &Context,
    ui: &Ui,
    id: &RunId,
    approvals: &crate::cli::ci::Approvals,
) -> Result<(), CliError> {
    let snapshot = RunSnapshot::load_tip(&ctx.store, id)?;
    let waiting = snapshot
        .phases
        .iter()
        .filter(|p| p.status == engine::PhaseStatus::Waiting && approvals.covers(&p.id));
    for phase in waiting {
        let action = crate::engine::control::Action::Approve {
            phase: phase.id.clone(),
            artifact: None,
            budget: None,
        };
        let by = format!("wfe --approve (pid {})", std::process::id());
        crate::engine::operations::control_offline(&ctx.store, id, &action, &by, &ctx.clock)?;
        ui.note(&format!("{}: approved up front (--approve)", phase.id));
    }
    Ok(())
}

/// Prints where a finished run lives (human) or the run document (`--json`).
pub(crate) fn report(ctx: &Context, ui: &Ui, id: &RunId, json: bool) -> Result<(), CliError> {
    let snapshot = RunSnapshot::load_tip(&ctx.store, id)?;
    if json {
        ui.json(&snapshot.to_json());
    } else if ui.is_quiet() {
        // Quiet drops the progress, not why a run stopped: one line on
        // stderr when it did not complete.
        let r = &snapshot.record;
        if r.status != engine::RunStatus::Completed {
            let reason = r
                .reason
                .as_ref()
                .map(|why| format!(": {why}"))
                .unwrap_or_default();
            let live = crate::cli::reasons::runner_live(ctx, id);
            let hint = crate::cli::reasons::next_step(r.status, r.reason.as_ref(), &r.id, live)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            ui.err_line(&format!("run {} {}{reason}{hint}", r.id, r.status.as_str()));
        }
    } else {
        ui.note(&format!(
            "{} {}\n  {}   {}",
            ui.paint(Style::Dim, "the run lives at"),
            id.ref_name(),
            ui.paint(Style::Dim, &format!("wfe show {}", &id.as_str()[..10])),
            ui.paint(Style::Dim, &format!("git log {}", id.ref_name())),
        ));
    }
    Ok(())
}

/// Resolves every schema the template's outputs name, to freeze them into the
/// run, with every document their `$ref`s reach (frozen under its URI).
fn resolve_schemas(
    ctx: &Context,
    template: &Template,
) -> Result<Vec<(String, serde_json::Value)>, CliError> {
    // A loop's children have outputs too (a loop itself has none).
    let mut names: Vec<&String> = template
        .all_phases()
        .into_iter()
        .flat_map(|p| p.outputs.values())
        .collect();
    // A second opinion submits a `review`: freeze it like any output's schema.
    let review = REVIEW_SCHEMA.to_string();
    if template
        .all_phases()
        .into_iter()
        .any(|p| p.review.is_some())
    {
        names.push(&review);
    }
    names.sort();
    names.dedup();
    let mut frozen = std::collections::BTreeMap::new();
    for name in names {
        let (resolved, refs) = ctx.registry.resolve_with_refs(name)?;
        frozen.insert(name.clone(), resolved.json);
        frozen.extend(refs);
    }
    Ok(frozen.into_iter().collect())
}

fn read_args_file(
    root: &std::path::Path,
    path: &std::path::Path,
) -> Result<serde_json::Value, CliError> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| root.to_path_buf())
            .join(path)
    };
    // `-` is standard input, bounded like a file (a pipe cannot be a
    // regular file, which is what a path must be).
    let read = if path == std::path::Path::new("-") {
        crate::bounded::read_stream(
            std::io::stdin().lock(),
            std::path::Path::new("standard input"),
            crate::bounded::TEXT_LIMIT,
        )
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| crate::bounded::ReadError::NotText {
                path: "standard input".into(),
            })
        })
    } else {
        crate::bounded::read_to_string(&full, crate::bounded::TEXT_LIMIT)
    };
    let text = read.map_err(|e| CliError::input(format!("--args-file: {e}")))?;
    let is_yaml = matches!(
        full.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let parsed = if is_yaml {
        crate::strict::parse_yaml(&text)
    } else {
        crate::strict::parse_json(&text)
    };
    let value = parsed.map_err(|e| {
        let syntax = if is_yaml { "YAML" } else { "JSON" };
        match e {
            crate::strict::StrictError::Syntax(message) => CliError::input(format!(
                "--args-file {}: not valid {syntax}: {message}",
                path.display()
            )),
            duplicate => CliError::input(format!("--args-file {}: {duplicate}", path.display())),
        }
    })?;
    if !value.is_object() {
        return Err(CliError::input(format!(
            "--args-file {}: expected an object of NAME: VALUE",
            path.display()
        )));
    }
    Ok(value)
}
