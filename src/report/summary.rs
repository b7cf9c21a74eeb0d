//! The GitHub Actions job summary of a run: markdown appended to
//! `$GITHUB_STEP_SUMMARY`.
//!
//! It lists every phase with its status, duration, attempts, tokens and
//! cost; each failed phase with its error (validation errors included) and
//! a log excerpt; the artifacts; and whatever next steps the caller adds
//! (how to approve a gate from elsewhere). GitHub refuses a summary of
//! 1 MiB or more, so [`cap`] cuts it below a byte budget with a note.

use std::fmt::Write as _;

use super::{Case, Report, error_lines, human_ms};
use crate::engine::PhaseStatus;

/// GitHub's limit on one step's summary, in bytes.
pub const GITHUB_LIMIT: usize = 1024 * 1024;

/// The summary of `report`; `next_steps` is markdown the caller adds at the
/// end under "Next steps" (none: no such section).
pub fn render(report: &Report, next_steps: &[String]) -> String {
    let r = &report.run.record;
    let mut md = String::new();
    let reason = r
        .reason
        .as_ref()
        .map(|why| format!(" ({})", cell(&why.to_string())))
        .unwrap_or_default();
    let _ = writeln!(
        md,
        "## wfe run `{}` of `{}`: {} {}{reason}\n",
        r.id,
        r.template,
        report_status_mark(r.status.as_str()),
        r.status.as_str()
    );
    md.push_str("| phase | status | duration | attempts | tokens in / out | cost |\n");
    md.push_str("|---|---|---|---|---|---|\n");
    let (mut tokens_in, mut tokens_out, mut cost, mut any_usage) = (0u64, 0u64, 0f64, false);
    for case in &report.cases {
        let s = &case.state;
        let (tokens, dollars) = match &s.usage {
            Some(u) => {
                any_usage = true;
                tokens_in += u.input_tokens;
                tokens_out += u.output_tokens;
                cost += u.cost_usd.unwrap_or(0.0);
                (
                    format!("{} / {}", u.input_tokens, u.output_tokens),
                    u.cost_usd
                        .map(|c| format!("${c:.4}"))
                        .unwrap_or_else(|| "–".into()),
                )
            }
            None => ("–".into(), "–".into()),
        };
        let name = match &case.within {
            Some((parent, _)) => format!("{parent} › {}", case.name),
            None => case.name.clone(),
        };
        let _ = writeln!(
            md,
            "| `{}` | {} {} | {} | {} | {tokens} | {dollars} |",
            cell(&name),
            status_mark(s.status),
            s.status.as_str(),
            s.duration_ms.map(human_ms).unwrap_or_else(|| "–".into()),
            s.attempt,
        );
    }
    if any_usage {
        let _ = writeln!(
            md,
            "\n**Total:** {tokens_in} tokens in, {tokens_out} tokens out, ${cost:.4}"
        );
    }
    let failed: Vec<&Case> = report.failed().collect();
    if !failed.is_empty() {
        md.push_str("\n### Failed phases\n");
        for case in failed {
            failed_phase(&mut md, case);
        }
    }
    let artifacts: Vec<String> = report
        .cases
        .iter()
        .flat_map(|c| {
            c.state
                .artifacts
                .iter()
                .map(move |a| format!("- `{}` › `{}`", cell(&c.name), cell(a)))
        })
        .collect();
    if !artifacts.is_empty() {
        md.push_str("\n### Artifacts\n\n");
        for line in artifacts {
            md.push_str(&line);
            md.push('\n');
        }
    }
    if !next_steps.is_empty() {
        md.push_str("\n### Next steps\n\n");
        for line in next_steps {
            md.push_str(line);
            md.push('\n');
        }
    }
    md
}

fn failed_phase(md: &mut String, case: &Case) {
    let s = &case.state;
    let _ = writeln!(md, "\n#### `{}` {}\n", cell(&case.name), s.status.as_str());
    if let Some(error) = &s.error {
        fenced(md, &error_lines(error).join("\n"));
    }
    let (before, tail) = &case.log_tail;
    if !tail.is_empty() {
        let more = if *before > 0 {
            format!(
                " (the last {}; {before} earlier lines left out)",
                tail.len()
            )
        } else {
            String::new()
        };
        let _ = writeln!(md, "Log{more}:\n");
        let text: Vec<&str> = tail.iter().map(|l| l.line.as_str()).collect();
        fenced(md, &text.join("\n"));
    }
}

/// A fenced code block longer than any run of backticks inside, so a log
/// line cannot close it.
fn fenced(md: &mut String, body: &str) {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(md, "{fence}text\n{body}\n{fence}\n");
}

/// Text for a table cell or inline code: pipes and newlines would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace(['\r', '\n'], " ")
        .replace('`', "'")
}

fn status_mark(status: PhaseStatus) -> &'static str {
    match status {
        PhaseStatus::Completed => "✅",
        PhaseStatus::Failed | PhaseStatus::TimedOut | PhaseStatus::Cancelled => "❌",
        PhaseStatus::Skipped => "⏭️",
        PhaseStatus::Waiting => "⏸️",
        PhaseStatus::Running => "▶️",
        PhaseStatus::Pending => "⚪",
    }
}

fn report_status_mark(status: &str) -> &'static str {
    match status {
        "completed" => "✅",
        "failed" | "cancelled" => "❌",
        _ => "⏸️",
    }
}

/// `summary` cut to at most `budget` bytes, at a line boundary, ending in
/// a note that says it was truncated (and how much was left out); as it
/// is when it fits.
pub fn cap(summary: &str, budget: usize) -> String {
    if summary.len() <= budget {
        return summary.to_string();
    }
    let note = format!(
        "\n\n> **truncated:** this summary was cut at {budget} bytes of {} (GitHub refuses a job summary of 1 MiB or more); the run's checkpoint holds everything.\n",
        summary.len()
    );
    let room = budget.saturating_sub(note.len());
    let mut cut = room.min(summary.len());
    while !summary.is_char_boundary(cut) {
        cut -= 1;
    }
    let kept = match summary[..cut].rfind('\n') {
        Some(at) => &summary[..at],
        None => &summary[..cut],
    };
    // An open code fence would swallow the note: close it.
    let fences = kept.lines().filter(|l| l.starts_with("```")).count();
    let close = if fences % 2 == 1 { "\n```" } else { "" };
    let mut out = String::with_capacity(budget);
    out.push_str(kept);
    if out.len() + close.len() + note.len() <= budget {
        out.push_str(close);
    }
    out.push_str(&note);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_over_budget_is_cut_at_a_line_with_a_truncated_note() {
        let long: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let capped = cap(&long, 4096);
        assert!(capped.len() <= 4096, "{}", capped.len());
        assert!(capped.contains("**truncated:**"));
        assert!(capped.starts_with("line 0\nline 1\n"));
        assert_eq!(cap("short\n", 4096), "short\n");
    }

    #[test]
    fn a_fence_is_longer_than_any_backticks_inside() {
        let mut md = String::new();
        fenced(&mut md, "a ```` b");
        assert!(md.starts_with("`````text\n"), "{md}");
    }
}
