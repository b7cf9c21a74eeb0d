//! `wfe list`: runs from their ref tips and trailers alone (no trees read).

use clap::Args;
use serde_json::json;

use crate::cli::context::Context;
use crate::cli::error::CliError;
use crate::cli::ui::{Style, Ui};
use crate::store::RunStore;

/// List runs
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs with this status (pending, running, paused, waiting, completed, failed, cancelled)
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs of this template
    #[arg(long)]
    pub template: Option<String>,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe list`.
pub fn run(args: ListArgs, ctx: &Context, ui: &Ui) -> Result<u8, CliError> {
    let runs: Vec<_> = ctx
        .store
        .runs()?
        .into_iter()
        .filter(|h| {
            args.status
                .as_deref()
                .is_none_or(|s| h.tip.message.get("Wfe-Status") == Some(s))
        })
        .filter(|h| {
            args.template
                .as_deref()
                .is_none_or(|t| h.tip.message.get("Wfe-Template") == Some(t))
        })
        .collect();
    if args.json {
        ui.json(&json!(
            runs.iter()
                .map(|h| json!({
                    "id": h.run.as_str(),
                    "template": h.tip.message.get("Wfe-Template"),
                    "status": h.tip.message.get("Wfe-Status"),
                    "checkpoint": h.tip.id.0,
                    "updated": h.tip.time,
                    "summary": h.tip.message.summary,
                }))
                .collect::<Vec<_>>()
        ));
        return Ok(0);
    }
    if runs.is_empty() {
        ui.note(
            "no runs yet: `wfe run TEMPLATE` starts one (`wfe template list` shows the templates)",
        );
        return Ok(0);
    }
    for h in &runs {
        let status = h.tip.message.get("Wfe-Status").unwrap_or("?");
        let style = match status {
            "completed" => Style::Green,
            "failed" | "cancelled" => Style::Red,
            _ => Style::Yellow,
        };
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(h.tip.time.max(0) as u64),
        );
        ui.out(&format!(
            "{}  {:<16} {:<10} {}  {}",
            h.run,
            h.tip.message.get("Wfe-Template").unwrap_or("?"),
            ui.paint(style, &format!("{status:<10}")),
            when,
            ui.paint(
                Style::Dim,
                h.tip.message.summary.trim_start_matches("wfe: ")
            ),
        ));
    }
    Ok(0)
}
