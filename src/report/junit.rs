//! JUnit XML of a run: one test case per phase and per loop child in each
//! iteration, for CI pages that render test reports.
//!
//! The document follows the Jenkins xUnit plugin's `junit-10.xsd` (what
//! GitLab, Jenkins and the GitHub test-report actions read): a
//! `<testsuites>` holding one `<testsuite>` for the run, its metadata as
//! `<properties>`, and per case a unique `classname` + `name`, `time` in
//! seconds, a `<failure>` (message and type) or `<skipped>`, and the log
//! tail as `<system-out>`.

use std::fmt::Write as _;

use super::{Case, Report, error_kind, error_lines};
use crate::engine::PhaseStatus;

/// The JUnit XML document of `report`.
pub fn render(report: &Report) -> String {
    let r = &report.run.record;
    let count = |f: &dyn Fn(&Case) -> bool| report.cases.iter().filter(|c| f(c)).count();
    let tests = report.cases.len();
    let failures =
        count(&|c| matches!(c.state.status, PhaseStatus::Failed | PhaseStatus::TimedOut));
    let errors = count(&|c| c.state.status == PhaseStatus::Cancelled);
    let skipped = count(&|c| {
        matches!(
            c.state.status,
            PhaseStatus::Skipped
                | PhaseStatus::Pending
                | PhaseStatus::Waiting
                | PhaseStatus::Running
        )
    });
    // Loop children's time is inside their loop's: count top-level phases only.
    let total_ms: u64 = report
        .cases
        .iter()
        .filter(|c| c.within.is_none())
        .filter_map(|c| c.state.duration_ms)
        .sum();
    let time = seconds(total_ms);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"wfe\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time}\">"
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" id=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time}\" timestamp=\"{}\">",
        attr(&r.template),
        attr(&r.id),
        attr(&r.created_at)
    );
    x.push_str("    <properties>\n");
    let args = serde_json::to_string(&r.args).unwrap_or_default();
    let reason = r
        .reason
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let props = [
        ("wfe.run", r.id.as_str()),
        ("wfe.template", r.template.as_str()),
        ("wfe.status", r.status.as_str()),
        ("wfe.reason", reason.as_str()),
        ("wfe.checkpoint", report.run.checkpoint.as_str()),
        ("wfe.base_commit", r.base_commit.as_str()),
        ("wfe.created_at", r.created_at.as_str()),
        ("wfe.finished_at", r.finished_at.as_deref().unwrap_or("")),
        ("wfe.args", args.as_str()),
    ];
    for (name, value) in props {
        let _ = writeln!(
            x,
            "      <property name=\"{name}\" value=\"{}\"/>",
            attr(value)
        );
    }
    x.push_str("    </properties>\n");
    for case in &report.cases {
        test_case(&mut x, &r.template, case);
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn test_case(x: &mut String, template: &str, case: &Case) {
    let classname = match &case.within {
        Some((parent, _)) => format!("wfe.{template}.{parent}"),
        None => format!("wfe.{template}"),
    };
    let s = &case.state;
    let _ = writeln!(
        x,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\">",
        attr(&classname),
        attr(&case.name),
        seconds(s.duration_ms.unwrap_or(0))
    );
    match s.status {
        PhaseStatus::Failed | PhaseStatus::TimedOut | PhaseStatus::Cancelled => {
            let element = if s.status == PhaseStatus::Cancelled {
                "error"
            } else {
                "failure"
            };
            let (message, kind, body) = match &s.error {
                Some(e) => (e.to_string(), error_kind(e), error_lines(e).join("\n")),
                None => (
                    format!("phase {}", s.status.as_str()),
                    s.status.as_str().to_string(),
                    String::new(),
                ),
            };
            let _ = writeln!(
                x,
                "      <{element} message=\"{}\" type=\"{}\">{}</{element}>",
                attr(&message),
                attr(&kind),
                text(&body)
            );
        }
        PhaseStatus::Skipped => {
            let why = s.skip_reason.as_deref().unwrap_or("skipped");
            let _ = writeln!(x, "      <skipped message=\"{}\"/>", attr(why));
        }
        PhaseStatus::Pending | PhaseStatus::Waiting | PhaseStatus::Running => {
            let why = match s.status {
                PhaseStatus::Waiting => "waiting for approval",
                _ => "did not run to its end",
            };
            let _ = writeln!(x, "      <skipped message=\"{why}\"/>");
        }
        PhaseStatus::Completed => {}
    }
    let (before, tail) = &case.log_tail;
    if !tail.is_empty() {
        let mut out = String::new();
        if *before > 0 {
            let _ = writeln!(out, "[{before} earlier lines left out]");
        }
        for line in tail {
            out.push_str(&line.line);
            out.push('\n');
        }
        let _ = writeln!(x, "      <system-out>{}</system-out>", text(&out));
    }
    x.push_str("    </testcase>\n");
}

/// Milliseconds as seconds with three decimals.
fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Text content: markup escaped, and characters XML 1.0 cannot hold
/// (controls other than tab, newline and carriage return, e.g. a colour
/// escape's ESC) removed.
pub fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if allowed(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// An attribute value: as [`text`], with quotes escaped and tab, newline
/// and carriage return as character references (a parser would turn them
/// into spaces otherwise).
pub fn attr(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if allowed(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether XML 1.0 allows `c` (its `Char` production, less the controls
/// handled by the callers).
fn allowed(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_and_control_characters_removed() {
        assert_eq!(
            text("a<b & c>\x1b[31mred\x07\n"),
            "a&lt;b &amp; c&gt;[31mred\n"
        );
        assert_eq!(
            attr("say \"hi\" 'x'\n\tok\u{0}\u{FFFE}"),
            "say &quot;hi&quot; &apos;x&apos;&#10;&#9;ok"
        );
    }

    #[test]
    fn time_is_seconds_with_milliseconds() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(1234), "1.234");
        assert_eq!(seconds(61_005), "61.005");
    }
}
