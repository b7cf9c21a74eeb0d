//! `wfe template list`.

use clap::Args;
use serde_json::json;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Style, Ui};

/// List the templates
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe template list`.
pub(super) fn run(args: ListArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let mut rows = Vec::new();
    for (name, source) in ctx.catalog.list() {
        let loaded = ctx.catalog.load(&name, &ctx.registry);
        let (description, error) = match &loaded {
            Ok((t, _)) => (t.description.clone().unwrap_or_default(), None),
            Err(e) => (String::new(), Some(e.to_string())),
        };
        rows.push((name, source.to_string(), description, error));
    }
    if args.json {
        ui.json(&json!(
            rows.iter()
                .map(|(n, s, d, e)| json!({"name": n, "source": s, "description": d, "error": e}))
                .collect::<Vec<_>>()
        ));
        return Ok(Outcome::Success);
    }
    for (name, source, description, error) in rows {
        let detail = match error {
            Some(_) => ui.paint(Style::Red, "invalid: `wfe template validate` says why"),
            None => description,
        };
        ui.out(&format!(
            "{name:<20} {detail}  {}",
            ui.paint(Style::Dim, &source)
        ));
    }
    Ok(Outcome::Success)
}
