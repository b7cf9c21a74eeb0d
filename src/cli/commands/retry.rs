//! `wfe retry`: run a phase again, and everything downstream of it.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine;
use crate::engine::operations::{self, Overrides};
use crate::template::{PhaseKind, Template};

/// Run a phase again, and every phase downstream of it
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// The phase to run again
    pub phase: String,
    /// The provider for the new attempt, instead of the template's
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// The model for the new attempt, instead of the template's
    #[arg(long, value_name = "M")]
    pub model: Option<String>,
    /// Instructions for the agent's next attempt, added to its prompt
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Like --prompt, read from a file
    #[arg(long, value_name = "F")]
    pub prompt_file: Option<std::path::PathBuf>,
    /// Take the repo's current template for the phase and what follows, instead of the one frozen at the start of the run
    #[arg(long)]
    pub refresh_template: bool,
    /// Only mark the phases pending; `wfe resume RUN` runs them
    #[arg(long)]
    pub no_run: bool,
    #[command(flatten)]
    pub drive: super::run::DriveArgs,
}

/// Runs `wfe retry`.
pub(crate) async fn run(args: RetryArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let prompt = steering(args.prompt, args.prompt_file.as_deref())?;
    let lock = ctx.lock_waiting(&id, ui)?;
    let mut snapshot = ctx.snapshot(&id)?;
    // The current template is loaded and validated before anything is
    // written; the engine refuses one whose shape the run cannot follow.
    let template = if args.refresh_template {
        let current = current_template(ctx, &snapshot.record)?;
        let taken = operations::refresh_template(
            &snapshot.template,
            &current,
            &args.phase,
            &snapshot.record.schemas,
        )
        .map_err(|why| {
            CliError::input(format!(
                "cannot retry phase `{}` of run {id} with the current template: it changes the run's shape: {why}",
                args.phase
            ))
        })?;
        // Seats and approvals are checked against what will run.
        snapshot.template = taken.template;
        Some(Box::new(current))
    } else {
        None
    };
    let overrides = Overrides {
        provider: args.provider,
        model: args.model,
        prompt,
        template,
    };
    // The new attempt's seats are checked before the retry is recorded, so a
    // provider that cannot be used leaves the run as it was.
    crate::cli::ci::check_approvals(&args.drive.ci, &snapshot.template)?;
    check_overrides(&snapshot.template, &args.phase, &overrides)?;
    let requests = engine::retry_seat_requests(&snapshot, &args.phase, &overrides);
    let seats = ctx.seats(&snapshot.template, None, &requests)?;
    // The new attempt renders the secret args: they must be here before
    // the retry is recorded.
    super::run::kept_secret_args(ctx, &id, &snapshot.record.secret_args)?;
    let retried = operations::retry(
        &ctx.store,
        &id,
        &args.phase,
        &requested_by(ctx),
        &overrides,
        &ctx.clock,
    )?;
    let downstream = if retried.reset.is_empty() {
        String::new()
    } else {
        format!("; {} back to pending", retried.reset.join(", "))
    };
    ui.note(&format!(
        "retry of {} requested (attempt {} next){downstream} ({})",
        args.phase,
        retried.next_attempt,
        retried.checkpoint.short()
    ));
    if retried.refreshed.is_empty() {
        ui.note(
            "using the template as frozen at the start of the run; --refresh-template takes the current one",
        );
    } else {
        ui.note(&format!(
            "using the current template for {}",
            retried.refreshed.join(", ")
        ));
    }
    if args.no_run {
        drop(lock);
        ui.note(&format!("`wfe resume {id}` runs them"));
        if args.drive.json {
            super::run::report(ctx, ui, &id, true)?;
        }
        return Ok(Outcome::Success);
    }
    super::run::drive(ctx, ui, &id, lock, &args.drive, seats).await
}

/// Refuses `--provider`/`--model` on a script or gate phase, where they
/// cannot apply (an unknown provider is refused with the seat check).
/// Checked before the retry is recorded, so nothing is written.
fn check_overrides(
    template: &Template,
    phase: &str,
    overrides: &Overrides,
) -> Result<(), CliError> {
    let flag = match (&overrides.provider, &overrides.model, &overrides.prompt) {
        (None, None, None) => return Ok(()),
        (Some(_), _, _) => "--provider",
        (None, Some(_), _) => "--model",
        (None, None, Some(_)) => "--prompt",
    };
    let found = template.all_phases().into_iter().find(|p| p.id == phase);
    if let Some(found) = found
        && matches!(found.kind, PhaseKind::Script | PhaseKind::Gate)
    {
        let kind = if found.kind == PhaseKind::Script {
            "script"
        } else {
            "gate"
        };
        let what = if flag == "--prompt" {
            "steers"
        } else {
            "chooses the model of"
        };
        return Err(CliError::input(format!(
            "{flag} {what} an agent phase, but `{phase}` is a {kind} phase"
        )));
    }
    Ok(())
}

/// Who asks for a change by hand, for the `Wfe-Requested-By` trailer:
/// `Name <email>` from git config.
pub(crate) fn requested_by(ctx: &Context) -> String {
    match &ctx.store.info().identity {
        Some((name, email)) => format!("{name} <{email}>"),
        None => "unknown".to_string(),
    }
}

/// The instructions `--prompt` or `--prompt-file` give; an empty text is
/// refused rather than sent.
fn steering(
    prompt: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, CliError> {
    let text = match (prompt, file) {
        (Some(text), _) => text,
        (None, Some(path)) => crate::bounded::read_to_string(path, crate::bounded::TEXT_LIMIT)
            .map_err(|e| CliError::input(format!("--prompt-file: {e}")))?,
        (None, None) => return Ok(None),
    };
    if text.trim().is_empty() {
        return Err(CliError::input("the prompt for the next attempt is empty"));
    }
    Ok(Some(text))
}

/// The repo's current version of the run's template: by name for one
/// under `.wfe/templates/` or built in, else from the path it was run from.
fn current_template(ctx: &Context, record: &engine::RunRecord) -> Result<Template, CliError> {
    let source = record.template_source.as_str();
    let name = if source.starts_with("built-in:") || source.starts_with(".wfe/templates/") {
        record.template.as_str()
    } else {
        source
    };
    let (template, _) = ctx.catalog.load(name, &ctx.registry)?;
    engine::ensure_runnable(&template)?;
    Ok(template)
}
