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
    /// Only mark the phases pending; `wfe resume RUN` runs them
    #[arg(long)]
    pub no_run: bool,
    #[command(flatten)]
    pub drive: super::run::DriveArgs,
}

/// Runs `wfe retry`.
pub(crate) async fn run(args: RetryArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let lock = ctx.lock_waiting(&id, ui)?;
    let overrides = Overrides {
        provider: args.provider,
        model: args.model,
    };
    // The new attempt's seats are checked before the retry is recorded, so a
    // provider that cannot be used leaves the run as it was.
    let snapshot = ctx.snapshot(&id)?;
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
    let flag = match (&overrides.provider, &overrides.model) {
        (None, None) => return Ok(()),
        (Some(_), _) => "--provider",
        (None, Some(_)) => "--model",
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
        return Err(CliError::input(format!(
            "{flag} chooses the model of an agent phase, but `{phase}` is a {kind} phase"
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
