//! `wfe comment`: a note on a run or one of its phases, as a checkpoint.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::operations;

/// Leave a comment on a run or one of its phases
#[derive(Debug, Args)]
pub struct CommentArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// The phase the comment is about (optional), then the text
    #[arg(required = true, num_args = 1..=2, value_names = ["PHASE", "TEXT"])]
    pub words: Vec<String>,
    /// Send the comment to the phase's next attempt (an agent phase): its prompt carries it
    #[arg(long)]
    pub for_agent: bool,
}

/// Runs `wfe comment`.
pub(crate) fn run(args: CommentArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let (phase, text) = match args.words.as_slice() {
        [text] => (None, text),
        [phase, text] => (Some(phase.as_str()), text),
        _ => return Err(CliError::input("expected `wfe comment RUN [PHASE] TEXT`")),
    };
    if text.trim().is_empty() {
        return Err(CliError::input("the comment is empty"));
    }
    if args.for_agent && phase.is_none() {
        return Err(CliError::input(
            "--for-agent sends the comment to a phase's next attempt: expected `wfe comment RUN PHASE --for-agent TEXT`",
        ));
    }
    let author = match &ctx.store.info().identity {
        Some((name, email)) => format!("{name} <{email}>"),
        None => "unknown".to_string(),
    };
    // A secret never reaches git, whoever commits it.
    let masker = super::run::run_masker(ctx, &id)?;
    let text = masker.mask_str(text);
    let checkpoint = operations::comment(
        &ctx.store,
        &id,
        phase,
        &author,
        &text,
        args.for_agent,
        &ctx.clock,
    )?;
    ui.note(&format!("commented on run {id} ({})", checkpoint.short()));
    if args.for_agent
        && let Some(phase) = phase
    {
        ui.note(&format!(
            "the next attempt of {phase} gets it with its prompt"
        ));
    }
    Ok(Outcome::Success)
}
