//! `wfe show`: a run, one phase of it, or one artifact.

use clap::Args;
use serde_json::json;

use crate::cli::context::Context;
use crate::cli::error::CliError;
use crate::cli::ui::{Style, Ui, describe_error, human_duration};
use crate::engine::{Comment, RunSnapshot, layout, manual};
use crate::exec::AttemptError;
use crate::exec::LogLine;
use crate::store::{EntryKind, RunStore};

/// Lines of a phase's log shown by default.
const LOG_TAIL: usize = 40;

/// Show a run, a phase, or an artifact
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// A phase of the run
    pub phase: Option<String>,
    /// An artifact of the phase (printed as JSON on stdout)
    pub artifact: Option<String>,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs `wfe show`.
pub fn run(args: ShowArgs, ctx: &Context, ui: &Ui) -> Result<u8, CliError> {
    let id = ctx.resolve_run(&args.run)?;
    let snap = ctx.snapshot(&id)?;
    let comments = manual::comments(&ctx.store, &snap)?;
    let Some(phase) = args.phase.as_deref() else {
        if args.json {
            let mut doc = snap.to_json();
            doc["comments"] = json!(comments);
            ui.json(&doc);
        } else {
            show_run(&snap, ui);
            show_comments(ui, comments.iter());
        }
        return Ok(0);
    };
    let comments: Vec<&Comment> = comments
        .iter()
        .filter(|c| c.phase.as_deref() == Some(phase))
        .collect();
    let Some(state) = snap.phase(phase) else {
        let known: Vec<&str> = snap.phases.iter().map(|p| p.id.as_str()).collect();
        return Err(CliError::input(format!(
            "run {id} has no phase `{phase}`; its phases: {}",
            known.join(", ")
        )));
    };
    if let Some(name) = args.artifact.as_deref() {
        let value = snap.artifact(&ctx.store, phase, name)?.ok_or_else(|| {
            let have = if state.artifacts.is_empty() {
                "none".to_string()
            } else {
                state.artifacts.join(", ")
            };
            CliError::input(format!(
                "phase `{phase}` of run {id} has no artifact `{name}`; it has: {have}"
            ))
        })?;
        ui.json(&value);
        return Ok(0);
    }
    let log = read_log(ctx, &snap, phase)?;
    let attempts: Vec<String> = ctx
        .store
        .list_dir(
            &snap.checkpoint,
            &format!("{}/{phase}/attempts", layout::PHASES),
        )?
        .into_iter()
        .filter(|(_, k)| *k == EntryKind::Dir)
        .map(|(n, _)| n)
        .collect();
    let rejected = rejected_outputs(ctx, &snap, phase, &attempts)?;
    // The schemas the rejected outputs had to match, shown beside them.
    let mut expected = serde_json::Map::new();
    if let Some(AttemptError::InvalidOutputs { problems }) = &state.error {
        for p in problems {
            let schema = manual::artifact_schema(&ctx.store, &snap, phase, &p.artifact)?;
            expected.insert(p.artifact.clone(), schema.json().clone());
        }
    }
    if args.json {
        let rejected: serde_json::Map<String, serde_json::Value> = rejected
            .iter()
            .map(|(n, file, text)| (format!("{n}/{file}"), json!(text)))
            .collect();
        ui.json(&json!({
            "state": state, "log": log, "failed_attempts": attempts, "rejected": rejected,
            "expected_schemas": expected, "comments": comments,
        }));
        return Ok(0);
    }
    ui.out(&format!(
        "{} {}  {}  attempt {}",
        ui.phase_mark(state.status),
        ui.paint(Style::Bold, phase),
        ui.phase_status(state.status),
        state.attempt
    ));
    if let Some(ms) = state.duration_ms {
        ui.out(&format!(
            "  took       {}",
            human_duration(std::time::Duration::from_millis(ms))
        ));
    }
    if let Some(code) = state.exit_code {
        ui.out(&format!("  exit code  {code}"));
    }
    if let Some(reason) = &state.skip_reason {
        ui.out(&format!("  skipped    {reason}"));
    }
    if let Some(error) = &state.error {
        for (n, line) in describe_error(error).into_iter().enumerate() {
            ui.out(&format!(
                "  {}  {}",
                if n == 0 { "error     " } else { "          " },
                ui.paint(Style::Red, &line)
            ));
        }
    }
    for name in &state.artifacts {
        ui.out(&format!(
            "  artifact   {name}   {}",
            ui.paint(
                Style::Dim,
                &format!("wfe show {} {phase} {name}", &id.as_str()[..10])
            )
        ));
    }
    if !attempts.is_empty() {
        ui.out(&format!(
            "  failed attempts kept under {}/{phase}/attempts/: {}",
            layout::PHASES,
            attempts.join(", ")
        ));
        for (n, file, text) in &rejected {
            ui.out(&format!("  rejected output (attempt {n}) {file}:"));
            for line in text.lines().take(LOG_TAIL) {
                ui.out(&format!("    {line}"));
            }
        }
    }
    for (artifact, schema) in &expected {
        ui.out(&format!("  expected schema of {artifact}:"));
        for line in serde_json::to_string_pretty(schema)
            .unwrap_or_default()
            .lines()
        {
            ui.out(&format!("    {}", ui.paint(Style::Dim, line)));
        }
    }
    if matches!(state.error, Some(AttemptError::InvalidOutputs { .. })) {
        ui.out(&format!(
            "  {} `wfe edit {id} {phase} ARTIFACT` to fix an output, or `wfe accept {id} {phase} --force` to take them as they are",
            ui.paint(Style::Yellow, "next:")
        ));
    }
    show_comments(ui, comments.into_iter());
    if !log.is_empty() {
        let skip = log.len().saturating_sub(LOG_TAIL);
        ui.out(&format!(
            "  log ({} lines{}):",
            log.len(),
            if skip > 0 {
                format!(", last {LOG_TAIL}")
            } else {
                String::new()
            }
        ));
        for line in &log[skip..] {
            ui.out(&format!(
                "    {} {}",
                ui.paint(Style::Dim, &format!("{:?}", line.stream).to_lowercase()),
                line.line
            ));
        }
    }
    Ok(0)
}

fn show_comments<'a>(ui: &Ui, comments: impl Iterator<Item = &'a Comment>) {
    for c in comments {
        let about = c
            .phase
            .as_deref()
            .map(|p| format!(" on {p}"))
            .unwrap_or_default();
        ui.out(&format!(
            "  {} {}{about}, {}:",
            ui.paint(Style::Bold, "comment"),
            c.author,
            c.time
        ));
        for line in c.text.lines() {
            ui.out(&format!("    {line}"));
        }
    }
}

fn show_run(snap: &RunSnapshot, ui: &Ui) {
    let r = &snap.record;
    ui.out(&format!(
        "{} {}  {}",
        ui.paint(Style::Bold, "run"),
        r.id,
        ui.run_status(r.status)
    ));
    ui.out(&format!(
        "  template   {} ({})",
        r.template, r.template_source
    ));
    ui.out(&format!("  created    {}", r.created_at));
    if let Some(at) = &r.finished_at {
        ui.out(&format!("  finished   {at}"));
    }
    if let Some(reason) = &r.reason {
        ui.out(&format!("  reason     {reason}"));
    }
    ui.out(&format!("  base       {}", r.base_commit));
    ui.out(&format!(
        "  args       {}",
        serde_json::to_string(&r.args).unwrap_or_default()
    ));
    ui.out(&format!("  ref        refs/wfe/runs/{}", r.id));
    ui.out("  phases");
    for p in &snap.phases {
        let took = p
            .duration_ms
            .map(|ms| human_duration(std::time::Duration::from_millis(ms)))
            .unwrap_or_default();
        let artifacts = if p.artifacts.is_empty() {
            String::new()
        } else {
            format!("→ {}", p.artifacts.join(", "))
        };
        ui.out(&format!(
            "    {} {:<20} {} {:>8}  {}",
            ui.phase_mark(p.status),
            p.id,
            ui.phase_status_cell(p.status),
            took,
            ui.paint(Style::Dim, &artifacts)
        ));
    }
}

/// The raw outputs rejected in failed attempts: (attempt, file, text).
fn rejected_outputs(
    ctx: &Context,
    snap: &RunSnapshot,
    phase: &str,
    attempts: &[String],
) -> Result<Vec<(String, String, String)>, CliError> {
    let mut out = Vec::new();
    for n in attempts {
        let dir = format!("{}/{phase}/attempts/{n}/rejected", layout::PHASES);
        for (file, _) in ctx.store.list_dir(&snap.checkpoint, &dir)? {
            if let Some(bytes) = ctx.store.read(&snap.checkpoint, &format!("{dir}/{file}"))? {
                out.push((
                    n.clone(),
                    file,
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
    }
    Ok(out)
}

fn read_log(ctx: &Context, snap: &RunSnapshot, phase: &str) -> Result<Vec<LogLine>, CliError> {
    let bytes = ctx
        .store
        .read(&snap.checkpoint, &layout::log(phase))?
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
        .collect())
}
