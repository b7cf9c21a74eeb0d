//! `wfe search`: ranked results over every run's artifacts, logs, comments,
//! tool calls and errors, from the index, caught up with the refs first.

use std::time::Instant;

use clap::Args;
use clap::builder::PossibleValuesParser;
use serde_json::json;

use super::index::{SEARCH_WAIT, open_current, rebuild};
use crate::cli::context::Context;
use crate::cli::error::{CliError, Outcome};
use crate::cli::ui::{Style, Ui, human_duration};
use crate::index::{Hit, Kind, Search};

/// The statuses a run can have.
const RUN_STATUSES: [&str; 7] = [
    "pending",
    "running",
    "paused",
    "waiting",
    "completed",
    "failed",
    "cancelled",
];

/// Search every run's artifacts, logs, comments, tool calls and errors
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query: words (all must match), "a phrase", field:value on artifact JSON (verdict:changes_requested), OR, -word
    #[arg(required = true, value_name = "QUERY")]
    pub query: Vec<String>,
    /// Only this run (an id, a unique prefix, or `latest`)
    #[arg(long)]
    pub run: Option<String>,
    /// Only runs of this template
    #[arg(long)]
    pub template: Option<String>,
    /// Only this phase
    #[arg(long)]
    pub phase: Option<String>,
    /// Only artifacts of this schema
    #[arg(long)]
    pub schema: Option<String>,
    /// Only runs with this status
    #[arg(long, value_parser = PossibleValuesParser::new(RUN_STATUSES))]
    pub status: Option<String>,
    /// Only documents of this kind
    #[arg(long, value_parser = PossibleValuesParser::new(Kind::ALL.map(Kind::as_str)))]
    pub kind: Option<String>,
    /// Only what was written on or after DATE (YYYY-MM-DD, or RFC 3339)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// At most N results
    #[arg(long, short = 'n', value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Print the results as one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe search`.
pub(crate) fn run(args: SearchArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let start = Instant::now();
    let search = Search {
        query: args.query.join(" "),
        run: args
            .run
            .as_deref()
            .map(|r| ctx.resolve_run(r))
            .transpose()?,
        template: args.template,
        phase: args.phase,
        schema: args.schema,
        status: args.status,
        kind: args.kind.as_deref().and_then(Kind::parse),
        since: args.since.as_deref().map(parse_since).transpose()?,
        limit: args.limit as usize,
    };
    let (mut index, report) = open_current(ctx, ui, SEARCH_WAIT)?;
    if report.busy {
        ui.note("note: another wfe process is updating the search index; results may miss its latest changes");
    }
    let hits = match index.search(&ctx.store, &search) {
        Err(e) if e.is_index_failure() => {
            index = rebuild(ui, index.dir().to_path_buf().as_path(), &e)?;
            index.catch_up(&ctx.store, SEARCH_WAIT)?;
            index.search(&ctx.store, &search)?
        }
        other => other?,
    };
    if args.json {
        ui.json(&json!({
            "query": search.query,
            "stale": report.busy,
            "hits": hits.iter().map(Hit::to_json).collect::<Vec<_>>(),
        }));
        return Ok(Outcome::Success);
    }
    for hit in &hits {
        print_hit(ui, hit);
    }
    let took = human_duration(start.elapsed());
    ui.note(&match hits.len() {
        0 => format!("no results ({took})"),
        1 => format!("1 result ({took})"),
        n => format!("{n} results ({took})"),
    });
    Ok(Outcome::Success)
}

/// `RUN PHASE PATH @checkpoint`, then the snippet with the matches in bold.
fn print_hit(ui: &Ui, hit: &Hit) {
    let mut place = hit.path.clone();
    if let Some(line) = hit.line {
        place.push_str(&format!(":{}", line + 1));
    }
    let short = &hit.checkpoint[..hit.checkpoint.len().min(12)];
    ui.out(&format!(
        "{}  {}  {}  {}",
        hit.run,
        ui.paint(Style::Bold, hit.phase.as_deref().unwrap_or("-")),
        place,
        ui.paint(Style::Dim, &format!("@{short}")),
    ));
    let mut snippet = String::new();
    let mut at = 0;
    for range in &hit.highlights {
        let (Some(before), Some(matched)) = (
            hit.snippet.get(at..range.start),
            hit.snippet.get(range.clone()),
        ) else {
            continue;
        };
        snippet.push_str(before);
        snippet.push_str(&ui.paint(Style::Bold, matched));
        at = range.end;
    }
    snippet.push_str(hit.snippet.get(at..).unwrap_or_default());
    ui.out(&format!("    {}", snippet.trim()));
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, as seconds since the epoch.
fn parse_since(text: &str) -> Result<i64, CliError> {
    crate::time::parse_day_or_time(text).ok_or_else(|| {
            CliError::input(format!(
                "--since `{text}` is not a date: expected YYYY-MM-DD or an RFC 3339 time such as 2026-01-31T12:00:00Z"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_and_rfc3339_times() {
        assert_eq!(parse_since("1970-01-02").ok(), Some(86_400));
        assert_eq!(parse_since("1970-01-01T00:01:00Z").ok(), Some(60));
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("2026-13-01").is_err());
    }
}
