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
use crate::store::{ProcessRegistry, RunId, RunLock};
use crate::template::{Template, build_args};

/// Start a run of a template
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The template: a name (`.wfe/templates/NAME.json` or built-in) or a path
    pub template: String,
    /// An argument NAME=VALUE (repeatable); VALUE is parsed as JSON where the args schema wants a non-string
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    pub args: Vec<String>,
    /// A JSON (or YAML) file with the arguments; --arg values override it
    #[arg(long, value_name = "FILE")]
    pub args_file: Option<PathBuf>,
    /// Answer every agent phase from the exchanges RUN recorded (no network, no tokens); a request that differs stops the phase with a diff
    #[arg(long, value_name = "RUN")]
    pub replay: Option<String>,
    #[command(flatten)]
    pub drive: DriveArgs,
}

/// Flags of every command that drives a run (`run`, `resume`).
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
}

/// Runs `wfe run`.
pub(crate) async fn run(args: RunArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let (template, source) = ctx.catalog.load(&args.template, &ctx.registry)?;
    engine::ensure_runnable(&template)?;
    let file_args = args
        .args_file
        .as_ref()
        .map(|p| read_args_file(&ctx.root, p))
        .transpose()?;
    let run_args = build_args(template.args.as_ref(), file_args, &args.args)?;
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
    let base_commit = ctx.head_commit()?;
    let schemas = resolve_schemas(ctx, &template)?;
    let id = ctx.run_ids.next(&ctx.clock);
    let lock = ctx.store.lock(&id, &ctx.clock.stamp())?;
    let new = NewRun {
        id: id.clone(),
        template,
        template_source: source.to_string(),
        args: run_args,
        schemas,
        base_commit,
        auto: ctx.config.auto.unwrap_or(true),
    };
    engine::create(&ctx.store, &new, &ctx.clock)?;
    drive(ctx, ui, &id, lock, &args.drive, seats).await
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
    // Secrets of the run as it was frozen: its template's `secrets` lists.
    let template = RunSnapshot::load_tip(&ctx.store, id)?.template;
    (settings.provider_key_vars, settings.masker) =
        crate::cli::config::run_secrets(&ctx.config, &template);
    settings.control = Some(ControlDir::new(&ctx.store.wfe_dir(), id.as_str()));
    settings.wait = flags.wait;
    settings.processes = Some(ProcessRegistry::new(&ctx.store.wfe_dir(), id.as_str()));
    let (interrupt_tx, interrupt_rx) = watch::channel(false);
    // SIGINT (Ctrl-C), SIGTERM (`docker stop`, Kubernetes, CI cancels) and
    // SIGHUP (the terminal went away) all stop the runner the same way.
    let stop_signals = crate::cli::signals::stop_signals()?;
    let ctrl_c = tokio::spawn(async move {
        stop_signals.recv().await;
        let _ = interrupt_tx.send(true);
    });
    let observer: Arc<dyn Observer> = Arc::new(Progress::new(ui, !flags.no_output));
    // Search index: updated on a thread of its own after each checkpoint, never in the run's way.
    let indexer = super::index::start_background(ctx, id);
    let observer = match &indexer {
        Some(indexer) => indexer.observer(observer),
        None => observer,
    };
    let status = engine::drive(&ctx.store, id, &settings, observer, interrupt_rx).await;
    ctrl_c.abort();
    drop(lock);
    super::index::finish_background(indexer, ui);
    let status = status?;
    report(ctx, ui, id, flags.json)?;
    Ok(Outcome::from(status))
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
        .phases
        .iter()
        .flat_map(|p| std::iter::once(p).chain(&p.phases))
        .flat_map(|p| p.outputs.values())
        .collect();
    // A second opinion submits a `review`: freeze it like any output's schema.
    let review = REVIEW_SCHEMA.to_string();
    if template
        .phases
        .iter()
        .flat_map(|p| std::iter::once(p).chain(&p.phases))
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
    let text = crate::bounded::read_to_string(&full, crate::bounded::TEXT_LIMIT)
        .map_err(|e| CliError::input(format!("--args-file: {e}")))?;
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
