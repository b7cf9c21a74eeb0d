//! GitHub Actions annotations: `::error` and `::warning` workflow commands
//! for failed phases and invalid artifacts.
//!
//! GitHub shows at most 10 annotations of each level per step and drops the
//! rest silently, so at most [`PER_LEVEL`] of each are emitted and one
//! `::notice` counts what was left out.

use super::{Report, error_lines};

/// The most annotations of one level GitHub shows per step.
pub const PER_LEVEL: usize = 10;

/// An annotation's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `::error`: a phase failed or timed out.
    Error,
    /// `::warning`: an artifact was rejected (an attempt a retry got past).
    Warning,
}

/// One annotation before it is capped and rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Its level.
    pub level: Level,
    /// Its title.
    pub title: String,
    /// Its message (may span lines).
    pub message: String,
}

/// The annotations of a run: an error per failed phase, a warning per
/// invalid artifact of an earlier attempt.
pub fn collect(report: &Report) -> Vec<Annotation> {
    let mut out = Vec::new();
    for case in report.failed() {
        let message = case
            .state
            .error
            .as_ref()
            .map(|e| error_lines(e).join("\n"))
            .unwrap_or_else(|| case.state.status.as_str().to_string());
        out.push(Annotation {
            level: Level::Error,
            title: format!("wfe: phase {} {}", case.name, case.state.status.as_str()),
            message,
        });
    }
    for case in &report.cases {
        for (attempt, error) in &case.earlier_errors {
            out.push(Annotation {
                level: Level::Warning,
                title: format!("wfe: phase {} attempt {attempt}: invalid output", case.name),
                message: error_lines(error).join("\n"),
            });
        }
    }
    out
}

/// The workflow-command lines for `annotations`: at most [`PER_LEVEL`] per
/// level, then one `::notice` counting the rest, if any.
pub fn render(annotations: &[Annotation]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut left_out = 0;
    for level in [Level::Error, Level::Warning] {
        let of_level: Vec<&Annotation> = annotations.iter().filter(|a| a.level == level).collect();
        left_out += of_level.len().saturating_sub(PER_LEVEL);
        for a in of_level.into_iter().take(PER_LEVEL) {
            let name = match level {
                Level::Error => "error",
                Level::Warning => "warning",
            };
            lines.push(format!(
                "::{name} title={}::{}",
                escape_property(&a.title),
                escape_data(&a.message)
            ));
        }
    }
    if left_out > 0 {
        let s = if left_out == 1 { "" } else { "s" };
        lines.push(format!(
            "::notice title=wfe::{}",
            escape_data(&format!(
                "{left_out} more annotation{s} left out (GitHub shows {PER_LEVEL} per level); the job summary lists every phase"
            ))
        ));
    }
    lines
}

/// A workflow command's message: `%`, `\r` and `\n` escaped.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as data, and `:` and `,` too.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_properties_are_escaped_as_github_reads_them() {
        assert_eq!(escape_data("50% a\r\nb: c, d"), "50%25 a%0D%0Ab: c, d");
        assert_eq!(escape_property("50% a\nb: c, d"), "50%25 a%0Ab%3A c%2C d");
        // `%` first, so an escape is never escaped twice.
        assert_eq!(escape_data("%0A"), "%250A");
    }

    #[test]
    fn at_most_ten_per_level_and_one_notice_counts_the_rest() {
        let make = |level, n: usize| {
            (0..n)
                .map(|i| Annotation {
                    level,
                    title: format!("t{i}"),
                    message: "m".into(),
                })
                .collect::<Vec<_>>()
        };
        let mut all = make(Level::Error, 12);
        all.extend(make(Level::Warning, 11));
        let lines = render(&all);
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("::error ")).count(),
            10
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("::warning ")).count(),
            10
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some(
                "::notice title=wfe::3 more annotations left out (GitHub shows 10 per level); the job summary lists every phase"
            )
        );
        assert!(
            !render(&make(Level::Error, 10))
                .iter()
                .any(|l| l.starts_with("::notice"))
        );
    }
}
