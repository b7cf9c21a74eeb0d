//! `wfe template show`.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;

/// Print a template as JSON
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A template name or path
    pub template: String,
}

/// Runs `wfe template show`.
pub(super) fn run(args: ShowArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let (template, source) = ctx.catalog.load(&args.template, &ctx.registry)?;
    ui.note(&format!("# {source}"));
    ui.json(&serde_json::to_value(&template).unwrap_or_default());
    Ok(Outcome::Success)
}
