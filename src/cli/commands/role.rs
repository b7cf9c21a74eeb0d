//! `wfe role set ROLE PROVIDER MODEL`: who plays a role, edited in
//! `.wfe/config.json` through [`crate::provider::edit`].

use clap::{Args, Subcommand};

use super::provider::config_path;
use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::Ui;
use crate::provider::edit::ConfigDoc;

/// Seat roles with a provider and model
#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Make PROVIDER with MODEL play ROLE (the role's other settings are kept)
    Set(SetArgs),
}

/// `wfe role set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The role, e.g. primary or reviewer
    pub role: String,
    /// A provider named in .wfe/config.json
    pub provider: String,
    /// The model, as the provider names it
    pub model: String,
}

/// Runs a role subcommand.
pub(crate) fn run(cmd: RoleCommand, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    match cmd {
        RoleCommand::Set(args) => {
            let path = config_path(ctx);
            let mut doc = ConfigDoc::load(&path, ".wfe/config.json")?;
            doc.set_role(&args.role, &args.provider, &args.model)?;
            doc.save(&path)?;
            ui.note(&format!(
                "role `{}` is played by `{}` with model `{}`",
                args.role, args.provider, args.model
            ));
            Ok(Outcome::Success)
        }
    }
}
