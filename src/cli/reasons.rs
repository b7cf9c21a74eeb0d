//! Hints from typed reasons: the engine says why a run stands where it
//! does ([`StopReason`]) or why a request was refused; the command that
//! moves things on is the CLI's to name, so it is computed here from the
//! reason and the run id.

use super::context::Context;
use crate::engine::{RunStatus, StopReason};
use crate::store::{RunId, RunLock};

/// Whether a live runner holds `run` now (an unreadable lock counts as none).
pub fn runner_live(ctx: &Context, run: &RunId) -> bool {
    let locks = ctx.store.wfe_dir().join("locks");
    matches!(RunLock::holder(&locks, run), Ok(Some(_)))
}

/// The command that moves a run that is `status` for `reason` on, as a
/// hint; `live` when a runner holds the run (only a live runner can be
/// told to continue). `None` when no command does (completed, failed,
/// cancelled, or a reason an older wfe wrote with its own advice).
pub fn next_step(
    status: RunStatus,
    reason: Option<&StopReason>,
    run: &str,
    live: bool,
) -> Option<String> {
    match (status, reason?) {
        (_, StopReason::Legacy { .. }) => None,
        (RunStatus::Waiting, StopReason::WaitingForApproval { phases }) => {
            let first = phases.first()?;
            Some(format!("`wfe approve {run} {first}` approves {first}"))
        }
        (RunStatus::Waiting, StopReason::AutoOff) if live => {
            Some(format!("`wfe continue {run}` goes on"))
        }
        (RunStatus::Waiting, StopReason::AutoOff) | (RunStatus::Paused, _) => {
            Some(format!("`wfe resume {run}` goes on"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_names_the_command_that_goes_on() {
        let run = "01run";
        let waiting = StopReason::WaitingForApproval {
            phases: vec!["ok".into(), "ok2".into()],
        };
        let table = [
            (
                RunStatus::Waiting,
                Some(&waiting),
                false,
                Some("`wfe approve 01run ok` approves ok"),
            ),
            (
                RunStatus::Waiting,
                Some(&StopReason::AutoOff),
                true,
                Some("`wfe continue 01run` goes on"),
            ),
            // With no runner there is nothing to continue: resuming goes on.
            (
                RunStatus::Waiting,
                Some(&StopReason::AutoOff),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Paused,
                Some(&StopReason::Interrupted),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Paused,
                Some(&StopReason::PausedOnRequest { by: None }),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Paused,
                Some(&StopReason::FixedByHand { phase: "b".into() }),
                false,
                Some("`wfe resume 01run` goes on"),
            ),
            (
                RunStatus::Failed,
                Some(&StopReason::PhasesFailed {
                    phases: vec!["b".into()],
                }),
                false,
                None,
            ),
            (
                RunStatus::Cancelled,
                Some(&StopReason::Cancelled { by: None }),
                false,
                None,
            ),
            (RunStatus::Completed, None, false, None),
            (
                RunStatus::Paused,
                Some(&StopReason::Legacy {
                    text: "b fixed by hand".into(),
                }),
                false,
                None,
            ),
        ];
        for (status, reason, live, hint) in table {
            assert_eq!(
                next_step(status, reason, run, live).as_deref(),
                hint,
                "{status:?} {reason:?}"
            );
        }
    }

    /// The string literals of Rust source, each with the line it starts on;
    /// comments (doc comments too) are skipped.
    fn string_literals(src: &str) -> Vec<(usize, String)> {
        let chars: Vec<char> = src.chars().collect();
        let mut out = Vec::new();
        let (mut i, mut line) = (0, 1);
        let ident = |c: char| c.is_alphanumeric() || c == '_';
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c == '\n' {
                line += 1;
                i += 1;
            } else if c == '/' && next == Some('/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && next == Some('*') {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        line += usize::from(chars[i] == '\n');
                        i += 1;
                    }
                }
            } else if c == 'r'
                && matches!(next, Some('"' | '#'))
                && (i == 0 || !ident(chars[i - 1]) || chars[i - 1] == 'b')
            {
                // A raw string: r"…", r#"…"#, …
                let mut j = i + 1;
                while chars.get(j) == Some(&'#') {
                    j += 1;
                }
                if chars.get(j) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let hashes = j - i - 1;
                let (start, mut text) = (line, String::new());
                j += 1;
                while j < chars.len() {
                    if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    line += usize::from(chars[j] == '\n');
                    text.push(chars[j]);
                    j += 1;
                }
                out.push((start, text));
                i = j;
            } else if c == '"' {
                let (start, mut text) = (line, String::new());
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        text.push(chars[i]);
                        i += 1;
                    }
                    if let Some(&c) = chars.get(i) {
                        line += usize::from(c == '\n');
                        text.push(c);
                    }
                    i += 1;
                }
                out.push((start, text));
                i += 1;
            } else if c == '\'' {
                // A char literal ('x', '\n', '"'); otherwise a lifetime.
                if next == Some('\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            } else {
                i += 1;
            }
        }
        out
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src/ is readable")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_lexer_finds_strings_and_skips_comments() {
        let src = "/// `wfe a` in a doc\n// `wfe b`\nlet x = \"one\"; /* \"no\" */ let c = '\"';\nlet r = r#\"two \"q\"\"#; fn f<'a>(s: &'a str) {}\nlet y = \"th\\\"ree\n\";";
        assert_eq!(
            string_literals(src),
            [
                (3, "one".to_string()),
                (4, "two \"q\"".to_string()),
                (5, "th\\\"ree\n".to_string()),
            ]
        );
    }

    /// Below the CLI, messages say what happened; which command to run is
    /// the CLI's hint. Doc comments may name commands; strings may not.
    #[test]
    fn no_string_below_the_cli_names_a_wfe_command() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let needle = ["`", "wfe "].concat();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut found = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap_or(&file);
            if rel.starts_with("cli") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("a source file is readable");
            for (line, literal) in string_literals(&text) {
                if literal.contains(&needle) {
                    found.push(format!("src/{}:{line}: \"{literal}\"", rel.display()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "strings below the CLI that name a wfe command (make the reason typed and let the CLI add the hint):\n{}",
            found.join("\n")
        );
    }
}
