//! `wfe template validate`: each template, and whether the repository's
//! config and the user's keys can set up its agent phases.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, ErrorKind, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::engine::seat_requests;

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
        // The template itself, then whether this repository's config and
        // the user's keys can seat its agent phases.
        let checked = ctx
            .catalog
            .load(name, &ctx.registry)
            .map_err(CliError::from)
            .and_then(|(template, source)| {
                ctx.check_agent_setup(&template, &seat_requests(&template))?;
                Ok(((), source))
            });
        match checked {
            Ok((_, source)) => ui.note(&format!(
                "{} {name} ({source})",
                ui.paint(Style::Green, "valid")
            )),
            Err(e) => {
                bad += 1;
                ui.error(&e);
            }
        }
    }
    Ok(if bad > 0 {
        Outcome::Reported(ErrorKind::Input)
    } else {
        Outcome::Success
    })
}
