//! `wfe approve`: let a waiting phase (a gate, or `approval: "after"`)
//! complete, or a phase paused at a budget's soft share go on.

use std::path::PathBuf;

use clap::Args;

use crate::artifact::parse_json_document;
use crate::cli::context::Context;
use crate::cli::control;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::engine::control::Action;

/// Approve a phase that waits for approval, optionally attaching its artifact
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// The waiting phase
    pub phase: String,
    /// A JSON file recorded as the phase's (one) output, validated against its schema
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,
    /// Raise the budget that paused the phase: +N (the limit reached), tokens=+N, cost=+USD, wall=+10m, tool_calls=+N, a limit=VALUE, or +50% (every limit); comma-separated
    #[arg(long, value_name = "RAISE", allow_hyphen_values = true)]
    pub budget: Option<String>,
}

/// Runs `wfe approve`.
pub(crate) fn run(args: ApproveArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let budget = args
        .budget
        .as_deref()
        .map(|text| {
            crate::budget::Raise::parse(text)
                .map_err(|e| CliError::input(format!("--budget {text}: {e}")))
        })
        .transpose()?;
    let id = ctx.resolve_run(&args.run)?;
    let artifact = match &args.artifact {
        Some(path) => {
            let limit = ctx.settings(None).max_artifact_bytes;
            let bytes = crate::bounded::read(path, limit)
                .map_err(|e| CliError::input(format!("--artifact: {e}")))?;
            let mut value = parse_json_document(&path.display().to_string(), &bytes)?;
            // A secret never reaches git, whoever commits it.
            super::run::run_masker(ctx, &id)?.mask_json(&mut value);
            Some(value)
        }
        None => None,
    };
    control::request(
        ctx,
        ui,
        &id,
        Action::Approve {
            phase: args.phase,
            artifact,
            budget,
        },
    )
}
