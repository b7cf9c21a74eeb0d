//! `wfe diff A B`: the artifacts of two runs, checkpoints, phases or
//! attempts, compared structurally (by JSON pointer) and printed for people
//! or as one JSON document. The comparison itself is [`crate::engine::compare`], which
//! prints nothing.

use clap::Args;
use serde_json::Value;

use crate::artifact::Change;
use crate::cli::context::Context;
use crate::cli::error::{CliError, ErrorKind, Outcome};
use crate::cli::ui::{Style, Ui};
use crate::engine::compare::{ArtifactChange, ArtifactDiff, Comparison, FileDiff, Side, compare};
use crate::engine::view::FileEntry;

/// Values longer than this (as compact JSON, in characters) are cut.
const MAX_VALUE_CHARS: usize = 120;

/// Compare the artifacts of two runs, checkpoints or phases
#[derive(Debug, Args)]
#[command(after_help = "\
Each side is one of:
  RUN                  the run's tip, every phase (RUN: an id, a unique prefix, or `latest`)
  RUN@N                its Nth checkpoint, from 1 (the creation), as `wfe log` numbers them
  RUN@COMMIT           that checkpoint, by commit id or prefix (digits only: 7 or more)
  RUN:PHASE            one phase's artifacts (RUN@N:PHASE works too)
  RUN:PHASE#ATTEMPT    one attempt's: its artifacts, or the outputs it had rejected
Whole runs are compared phase by phase (by id); two named phases are compared
even if their ids differ; when only one side names a phase, the other side is
narrowed to the phase of that id.")]
pub struct DiffArgs {
    /// The old side: RUN, RUN@N, RUN@COMMIT, RUN:PHASE or RUN:PHASE#ATTEMPT
    #[arg(value_name = "A")]
    pub a: String,
    /// The new side, named the same way
    #[arg(value_name = "B")]
    pub b: String,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when there are differences (like `git diff --exit-code`)
    #[arg(long)]
    pub exit_code: bool,
}

/// Runs `wfe diff`.
pub(crate) fn run(args: DiffArgs, ctx: &Context, ui: &Ui) -> Result<Outcome, CliError> {
    let cmp = compare(&ctx.store, &args.a, &args.b)?;
    if args.json {
        // Serialised from the types, not via a `Value`, to keep their field order.
        let doc = serde_json::to_string_pretty(&cmp)
            .map_err(|e| CliError::internal(format!("cannot write the diff as JSON: {e}")))?;
        ui.out(&doc);
    } else {
        for note in &cmp.notes {
            ui.note(&format!("note: {note}"));
        }
        render(&cmp, ui);
    }
    Ok(if args.exit_code && !cmp.is_empty() {
        Outcome::Reported(ErrorKind::Failed)
    } else {
        Outcome::Success
    })
}

/// The diff for people: which sides, then each phase and artifact that differs.
fn render(cmp: &Comparison, ui: &Ui) {
    if cmp.is_empty() {
        // Nothing on stdout, as `git diff` prints nothing; people still get an answer.
        ui.note(&format!(
            "no differences between {} and {}",
            cmp.a.spec, cmp.b.spec
        ));
        return;
    }
    ui.out(&ui.paint(Style::Bold, &format!("--- a {}", describe(&cmp.a))));
    ui.out(&ui.paint(Style::Bold, &format!("+++ b {}", describe(&cmp.b))));
    if let Some(change) = &cmp.run_status {
        ui.out(&format!(
            "{} {} → {}",
            ui.paint(Style::Bold, "run"),
            status_text(change.from.map(|s| s.as_str())),
            status_text(change.to.map(|s| s.as_str()))
        ));
    }
    for phase in &cmp.phases {
        let mut head = format!("phase {}", phase.phase);
        if let Some(other) = &phase.other_phase {
            head.push_str(&format!(" → {other}"));
        }
        let mut line = ui.paint(Style::Bold, &head);
        if let Some(change) = &phase.status {
            line.push_str(&format!(
                "  {} → {}",
                status_text(change.from.map(|s| s.as_str())),
                status_text(change.to.map(|s| s.as_str()))
            ));
        }
        ui.out(&line);
        for artifact in &phase.artifacts {
            render_artifact(artifact, ui);
        }
        for file in &phase.files {
            render_file(file, ui);
        }
    }
}

/// A file artifact that differs: by size and (short) SHA-256.
fn render_file(file: &FileDiff, ui: &Ui) {
    let sum = |e: &FileEntry| format!("{} bytes sha256:{}", e.size, &e.sha256[..12]);
    let (style, text) = match (file.kind, &file.from, &file.to) {
        (ArtifactChange::Changed, Some(a), Some(b)) => (
            Style::Yellow,
            format!("  ~ files/{} {} → {}", file.path, sum(a), sum(b)),
        ),
        (_, None, Some(b)) => (Style::Green, format!("  + files/{} {}", file.path, sum(b))),
        (_, Some(a), _) => (Style::Red, format!("  - files/{} {}", file.path, sum(a))),
        (_, None, None) => return,
    };
    ui.out(&ui.paint(style, &text));
}

fn render_artifact(artifact: &ArtifactDiff, ui: &Ui) {
    let whole = match (artifact.kind, artifact.changes.as_slice()) {
        (ArtifactChange::Added, [Change::Added { value, .. }]) => Some((Style::Green, '+', value)),
        (ArtifactChange::Removed, [Change::Removed { value, .. }]) => {
            Some((Style::Red, '-', value))
        }
        _ => None,
    };
    if let Some((style, mark, value)) = whole {
        let text = format!("  {mark} {} {}", artifact.name, compact(value));
        ui.out(&ui.paint(style, &text));
        return;
    }
    ui.out(&format!(
        "  {} {}",
        ui.paint(Style::Yellow, "~"),
        ui.paint(Style::Bold, &artifact.name)
    ));
    for change in &artifact.changes {
        let (style, text) = match change {
            Change::Added { path, value } => (
                Some(Style::Green),
                format!("+ {} {}", pointer(path), compact(value)),
            ),
            Change::Removed { path, value } => (
                Some(Style::Red),
                format!("- {} {}", pointer(path), compact(value)),
            ),
            Change::Changed { path, from, to } => (
                Some(Style::Yellow),
                format!("~ {} {} → {}", pointer(path), compact(from), compact(to)),
            ),
            Change::Moved { from_path, to_path } => (
                None,
                format!("↷ {} → {}", pointer(from_path), pointer(to_path)),
            ),
        };
        let text = format!("    {text}");
        ui.out(&match style {
            Some(style) => ui.paint(style, &text),
            None => text,
        });
    }
}

/// `RUN@N:PHASE#ATTEMPT (checkpoint abcdef123456)`.
fn describe(side: &Side) -> String {
    let mut text = format!("{}@{}", side.run, side.number);
    if let Some(phase) = &side.phase {
        text.push_str(&format!(":{phase}"));
    }
    if let Some(attempt) = side.attempt {
        text.push_str(&format!("#{attempt}"));
    }
    let short = &side.checkpoint[..side.checkpoint.len().min(12)];
    text.push_str(&format!(" (checkpoint {short}"));
    if side.rejected {
        text.push_str(", rejected outputs");
    }
    text.push(')');
    text
}

fn status_text(status: Option<&str>) -> &str {
    status.unwrap_or("absent")
}

/// A JSON pointer for people: the empty pointer is the whole document.
fn pointer(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

/// A value as compact JSON on one line, cut to [`MAX_VALUE_CHARS`].
fn compact(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_VALUE_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(compact(&json!({"a": 1})), r#"{"a":1}"#);
        let long = compact(&json!("é".repeat(300)));
        assert_eq!(long.chars().count(), MAX_VALUE_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(pointer(""), "(root)");
        assert_eq!(pointer("/a"), "/a");
    }
}
