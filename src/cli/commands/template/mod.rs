//! `wfe template list|show|validate|new`.

mod list;
mod new;
mod show;
mod validate;

use clap::Subcommand;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;

/// List, show and validate templates
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List the templates (repo templates shadow built-ins)
    List(list::ListArgs),
    /// Print a template as JSON
    Show(show::ShowArgs),
    /// Validate templates by name or path; exit 2 if any is invalid
    Validate(validate::ValidateArgs),
    /// Write a new template (minimal, or a copy of another with --from) into .wfe/templates/NAME.json
    New(new::NewArgs),
}

/// Runs a template subcommand.
pub(crate) fn run(cmd: TemplateCommand, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    match cmd {
        TemplateCommand::List(args) => list::run(args, ctx, ui),
        TemplateCommand::Show(args) => show::run(args, ctx, ui),
        TemplateCommand::Validate(args) => validate::run(args, ctx, ui),
        TemplateCommand::New(args) => new::run(args, ctx, ui),
    }
}
