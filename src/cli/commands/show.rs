//! `wfe show`: a run, one phase of it, or one artifact.

use clap::Args;
use serde_json::json;

use crate::cli::context::Context;
use crate::cli::error::CliError;
use crate::cli::ui::{Style, Ui, describe_error, human_duration};
use crate::engine::{Comment, PhaseState, RunSnapshot, layout, operations};
use crate::exec::AttemptError;
use crate::exec::LogLine;
use crate::store::{EntryKind, RunStore};
use crate::template::PhaseKind;

/// Lines of a phase's log shown by default.
const LOG_TAIL: usize = 40;

/// Show a run, a phase, or an artifact
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run: an id, a unique prefix, or `latest`
    pub run: String,
    /// A phase of the run; a loop's child as CHILD (its latest iteration) or CHILD@N
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
    let comments = operations::comments(&ctx.store, &snap)?;
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
    let target = locate(ctx, &snap, phase)?;
    let Target {
        phase,
        key,
        state,
        name: shown,
    } = &target;
    let (phase, key, state) = (phase.as_str(), key.as_str(), state);
    let comments: Vec<&Comment> = comments
        .iter()
        .filter(|c| c.phase.as_deref() == Some(phase))
        .collect();
    if let Some(name) = args.artifact.as_deref() {
        let value = snap.artifact(&ctx.store, key, name)?.ok_or_else(|| {
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
    let log = read_log(ctx, &snap, key)?;
    let attempts: Vec<String> = ctx
        .store
        .list_dir(
            &snap.checkpoint,
            &format!("{}/{key}/attempts", layout::PHASES),
        )?
        .into_iter()
        .filter(|(_, k)| *k == EntryKind::Dir)
        .map(|(n, _)| n)
        .collect();
    let rejected = rejected_outputs(ctx, &snap, key, &attempts)?;
    // The schemas the rejected outputs had to match, shown beside them.
    let mut expected = serde_json::Map::new();
    if let Some(AttemptError::InvalidOutputs { problems }) = &state.error {
        let schemas = snap.schemas(&ctx.store)?;
        let outputs = snap.spec(phase).map(|p| &p.outputs);
        for p in problems {
            let schema = outputs
                .and_then(|o| o.get(&p.artifact))
                .and_then(|name| schemas.get(name));
            if let Some(schema) = schema {
                expected.insert(p.artifact.clone(), schema.json().clone());
            }
        }
    }
    let iterations = iterations(ctx, &snap, phase, state)?;
    if args.json {
        let rejected: serde_json::Map<String, serde_json::Value> = rejected
            .iter()
            .map(|(n, file, text)| (format!("{n}/{file}"), json!(text)))
            .collect();
        let mut doc = json!({
            "state": state, "log": log, "failed_attempts": attempts, "rejected": rejected,
            "expected_schemas": expected, "comments": comments,
        });
        if snap.spec(phase).is_some_and(|p| p.kind == PhaseKind::Loop) {
            doc["iterations"] = iterations
                .iter()
                .enumerate()
                .map(|(k, children)| json!({ "iteration": k + 1, "children": children }))
                .collect();
        }
        ui.json(&doc);
        return Ok(0);
    }
    ui.out(&format!(
        "{} {}  {}  attempt {}",
        ui.phase_mark(state.status),
        ui.paint(Style::Bold, shown),
        ui.phase_status(state.status),
        state.attempt
    ));
    if let Some(spec) = snap.spec(phase).filter(|p| p.kind == PhaseKind::Loop) {
        ui.out(&format!(
            "  iteration  {} of at most {}{}",
            state.iteration,
            spec.max_iters.unwrap_or(1),
            spec.until
                .as_ref()
                .map(|u| format!(", until {u}"))
                .unwrap_or_default()
        ));
        if state.exhausted {
            ui.out("  exhausted  `until` still false after the last iteration (on_exhausted: continue)");
        }
    }
    if let Some(ms) = state.duration_ms {
        ui.out(&format!(
            "  took       {}",
            human_duration(std::time::Duration::from_millis(ms))
        ));
    }
    if let Some(code) = state.exit_code {
        ui.out(&format!("  exit code  {code}"));
    }
    if let Some(usage) = &state.usage {
        let cost = usage
            .cost_usd
            .map(|c| format!(", ${c:.4}"))
            .unwrap_or_default();
        ui.out(&format!(
            "  model      {} request{}, {} tokens in, {} out{cost}",
            usage.requests,
            if usage.requests == 1 { "" } else { "s" },
            usage.input_tokens,
            usage.output_tokens
        ));
    }
    if state.kind == PhaseKind::Agent {
        let dir = format!("{}/{key}", layout::PHASES);
        let files = ctx.store.list_dir(&snap.checkpoint, &dir)?;
        for (file, what) in [
            ("exchanges.jsonl", "exchanges"),
            ("tool-calls.jsonl", "tool calls"),
        ] {
            if files.iter().any(|(n, _)| n == file) {
                ui.out(&format!(
                    "  {what:<10} {}",
                    ui.paint(
                        Style::Dim,
                        &format!("git show {}:{dir}/{file}", id.ref_name())
                    )
                ));
            }
        }
        if state.continues {
            ui.out("  continues  its conversation goes on at the next `wfe resume`");
        }
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
    let named = if key == phase {
        phase.to_string()
    } else {
        format!("{phase}@{}", state.iteration)
    };
    for name in &state.artifacts {
        ui.out(&format!(
            "  artifact   {name}   {}",
            ui.paint(
                Style::Dim,
                &format!("wfe show {} {named} {name}", &id.as_str()[..10])
            )
        ));
    }
    for (k, children) in iterations.iter().enumerate() {
        let cells: Vec<String> = children
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    ui.phase_mark(c.status),
                    c.id,
                    ui.phase_status(c.status)
                )
            })
            .collect();
        ui.out(&format!(
            "  {:<10} {}",
            format!("iter {}", k + 1),
            cells.join("   ")
        ));
    }
    if !attempts.is_empty() {
        ui.out(&format!(
            "  failed attempts kept under {}/{key}/attempts/: {}",
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
    // `wfe edit` and `wfe accept` change top-level phases only.
    if key == phase && matches!(state.error, Some(AttemptError::InvalidOutputs { .. })) {
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

/// A phase as `wfe show RUN PHASE` names it.
struct Target {
    /// Its id.
    phase: String,
    /// Where its files are: its id, or a loop child's key.
    key: String,
    /// Its state.
    state: PhaseState,
    /// How it is shown: its id, or `child (loop iteration k)`.
    name: String,
}

/// Finds a top-level phase (`PHASE`), or a loop's child in its loop's
/// current iteration (`CHILD`) or in iteration N (`CHILD@N`).
fn locate(ctx: &Context, snap: &RunSnapshot, asked: &str) -> Result<Target, CliError> {
    let run = &snap.record.id;
    let (phase, at) = match asked.split_once('@') {
        Some((phase, n)) => {
            let n: u32 = n.parse().map_err(|_| {
                CliError::input(format!(
                    "`{asked}`: expected CHILD@N with N an iteration number"
                ))
            })?;
            (phase, Some(n))
        }
        None => (asked, None),
    };
    if let Some(state) = snap.phase(phase) {
        if at.is_some() {
            return Err(CliError::input(format!(
                "`{phase}` is not inside a loop; `@N` picks an iteration of a loop's child phase"
            )));
        }
        return Ok(Target {
            phase: phase.to_string(),
            key: phase.to_string(),
            state: state.clone(),
            name: phase.to_string(),
        });
    }
    let Some(parent) = snap.parent_of(phase) else {
        let known: Vec<String> = snap
            .template
            .phases
            .iter()
            .map(|p| match p.kind {
                PhaseKind::Loop => {
                    let children: Vec<&str> = p.phases.iter().map(|c| c.id.as_str()).collect();
                    format!("{} (loop of {})", p.id, children.join(", "))
                }
                _ => p.id.clone(),
            })
            .collect();
        return Err(CliError::input(format!(
            "run {run} has no phase `{phase}`; its phases: {}",
            known.join(", ")
        )));
    };
    let ran = snap.phase(&parent.id).map_or(0, |p| p.iteration);
    let k = at.unwrap_or(ran);
    if ran == 0 {
        return Err(CliError::input(format!(
            "loop `{}` of run {run} has no iteration yet, so `{phase}` has not run",
            parent.id
        )));
    }
    if k == 0 || k > ran {
        return Err(CliError::input(format!(
            "loop `{}` of run {run} has iterations 1 to {ran}; there is no `{phase}@{k}`",
            parent.id
        )));
    }
    let children = snap.iteration(&ctx.store, &parent.id, k)?;
    let state = children
        .into_iter()
        .find(|c| c.id == phase)
        .ok_or_else(|| CliError::input(format!("run {run} has no phase `{phase}`")))?;
    Ok(Target {
        phase: phase.to_string(),
        key: layout::child_key(&parent.id, k, phase),
        state,
        name: format!("{phase} ({} iteration {k})", parent.id),
    })
}

/// A loop's iterations (its children's states in each, from the first);
/// empty for any other phase.
fn iterations(
    ctx: &Context,
    snap: &RunSnapshot,
    phase: &str,
    state: &PhaseState,
) -> Result<Vec<Vec<PhaseState>>, CliError> {
    let is_loop = snap.phase(phase).is_some() && snap.children.contains_key(phase);
    if !is_loop {
        return Ok(Vec::new());
    }
    (1..=state.iteration)
        .map(|k| Ok(snap.iteration(&ctx.store, phase, k)?))
        .collect()
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
    let row = |p: &PhaseState, indent: &str| {
        let took = p
            .duration_ms
            .map(|ms| human_duration(std::time::Duration::from_millis(ms)))
            .unwrap_or_default();
        let artifacts = if p.artifacts.is_empty() {
            String::new()
        } else {
            format!("→ {}", p.artifacts.join(", "))
        };
        let iteration = match p.kind {
            PhaseKind::Loop if p.iteration > 0 => format!("iteration {}", p.iteration),
            _ => String::new(),
        };
        ui.out(&format!(
            "    {indent}{} {:<w$} {} {:>8}  {}",
            ui.phase_mark(p.status),
            p.id,
            ui.phase_status_cell(p.status),
            took,
            ui.paint(Style::Dim, &format!("{iteration}{artifacts}")),
            w = 20 - indent.chars().count(),
        ));
    };
    for p in &snap.phases {
        row(p, "");
        for c in snap.children.get(&p.id).into_iter().flatten() {
            row(c, "  ");
        }
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
