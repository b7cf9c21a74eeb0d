//! `wfe list`: runs from their ref tips and trailers alone (no trees read),
//! as the engine's list view gives them.

use std::fmt::Write as _;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::reasons;
use crate::cli::ui::{Style, Ui};
use crate::engine::RunStatus;
use crate::engine::view::{ListFilter, list_all};
use crate::store::RunId;

/// The statuses a run can be stored with, for `--status`.
const STATUSES: [RunStatus; 7] = [
    RunStatus::Pending,
    RunStatus::Running,
    RunStatus::Paused,
    RunStatus::Waiting,
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
];

/// List runs
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs with this status (pending, running, interrupted, paused, waiting, completed, failed, cancelled)
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
pub(crate) fn run(args: ListArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    // `running` and `interrupted` are both stored as running; which one a
    // run is depends on whether a runner holds it now.
    let mut live_wanted = None;
    if let Some(status) = &args.status {
        let mut valid: Vec<&str> = STATUSES.map(RunStatus::as_str).to_vec();
        valid.insert(2, "interrupted");
        if !valid.contains(&status.as_str()) {
            return Err(CliError::input(format!(
                "--status `{status}` is not a run status; expected one of {}",
                valid.join(", ")
            )));
        }
        live_wanted = match status.as_str() {
            "running" => Some(true),
            "interrupted" => Some(false),
            _ => None,
        };
    }
    let filter = ListFilter {
        status: args.status.map(|s| {
            if s == "interrupted" {
                "running".into()
            } else {
                s
            }
        }),
        template: args.template,
    };
    let mut listing = list_all(&ctx.store, &filter)?;
    if let Some(live) = live_wanted {
        listing.rows.retain(|row| {
            RunId::parse(&row.id).is_some_and(|id| reasons::runner_live(ctx, &id)) == live
        });
    }
    // A template no run used and the catalog does not have is a typo, not
    // "no runs yet". (A run of a since-deleted template still lists.)
    if let Some(template) = &filter.template
        && listing.rows.is_empty()
    {
        let known: Vec<String> = ctx.catalog.list().into_iter().map(|(n, _)| n).collect();
        if !known.contains(template) {
            return Err(CliError::input(format!(
                "--template `{template}`: no such template and no run of it; known templates: {}",
                known.join(", ")
            )));
        }
    }
    // A broken run has no row; it is named on stderr, so stdout stays the list.
    for broken in &listing.broken {
        ui.skipped_run(&broken.run, &broken.error);
    }
    let runs = listing.rows;
    if args.json {
        let doc = serde_json::to_value(&runs)
            .map_err(|e| CliError::internal(format!("cannot write the JSON document: {e}")))?;
        ui.json(&doc);
        return Ok(Outcome::Success);
    }
    if runs.is_empty() && listing.broken.is_empty() {
        ui.note(
            "no runs yet: `wfe run TEMPLATE` starts one (`wfe template list` shows the templates)",
        );
        return Ok(Outcome::Success);
    }
    // Lines go out 64 KB at a time: a write per line made 10,000 write
    // calls, and one text for all of them 1 MB of memory to fault in.
    const CHUNK: usize = 64 * 1024;
    let mut text = String::with_capacity(CHUNK + 1024);
    for row in &runs {
        // One lock-file stat per running row: `running` is only true while
        // a runner holds the run.
        let live = row.status.as_deref() == Some("running")
            && RunId::parse(&row.id).is_some_and(|id| reasons::runner_live(ctx, &id));
        let status = reasons::shown_status(row.status.as_deref().unwrap_or("?"), live);
        let style = match status {
            "completed" if !row.failed_phases.is_empty() => Style::Yellow,
            "completed" => Style::Green,
            "failed" | "cancelled" | "interrupted" => Style::Red,
            _ => Style::Yellow,
        };
        let summary = if status == "interrupted" {
            std::borrow::Cow::Owned(format!(
                "no runner holds it: {}",
                reasons::interrupted_hint(&row.id)
            ))
        } else {
            std::borrow::Cow::Borrowed(row.summary.trim_start_matches("wfe: "))
        };
        let when = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(row.updated.max(0) as u64),
        );
        // A completed run whose failed phases were let through says so.
        let status = match row.failed_phases.len() {
            0 => format!("{status:<10}"),
            n if status == "completed" => format!("{:<10}", format!("completed ({n} failed)")),
            _ => format!("{status:<10}"),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "{}  {:<16} {} {}  {}",
            row.id,
            row.template.as_deref().unwrap_or("?"),
            ui.paint(style, &status),
            when,
            ui.paint(Style::Dim, &summary),
        );
        if text.len() >= CHUNK {
            ui.out(&text);
            text.clear();
        }
    }
    if !text.is_empty() {
        ui.out(&text);
    }
    Ok(Outcome::Success)
}
