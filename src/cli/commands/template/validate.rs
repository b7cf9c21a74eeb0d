//! `wfe template validate`.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, ErrorKind, Outcome};
use crate::cli::ui::{Style, Ui};

/// Validate templates by name or path
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Template names or paths (default: every template `wfe template list` shows)
    pub templates: Vec<String>,
}

/// Runs `wfe template validate`.
pub(super) fn run(args: ValidateArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let names = if args.templates.is_empty() {
        ctx.catalog.list().into_iter().map(|(n, _)| n).collect()
    } else {
        args.templates
    };
    let mut bad = 0;
    for name in &names {
        match ctx.catalog.load(name, &ctx.registry) {
            Ok((_, source)) => ui.note(&format!(
                "{} {name} ({source})",
                ui.paint(Style::Green, "valid")
            )),
            Err(e) => {
                bad += 1;
                ui.error(&CliError::from(e));
            }
        }
    }
    Ok(if bad > 0 {
        Outcome::Reported(ErrorKind::Input)
    } else {
        Outcome::Success
    })
}
