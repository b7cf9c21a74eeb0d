//! Collapsible log groups in each CI host's dialect.
//!
//! GitHub Actions folds what lies between `::group::TITLE` and
//! `::endgroup::`; GitLab between `section_start:<unix>:<name>` and
//! `section_end:<unix>:<name>` markers (each followed by `\r\e[0K`, which
//! erases the marker on the page); Buildkite folds everything after a
//! `--- TITLE` line up to the next such line. Elsewhere a group is a
//! title line and its lines prefixed with the phase. Groups cannot nest
//! or interleave, so a caller emits a phase's group whole, once it ended.

use super::Host;

/// The lines of one group: `title` over `lines`, for `host`. `key` names
/// the group where the dialect needs a name (GitLab's section name: only
/// `[A-Za-z0-9_.-]` is kept) or a prefix (plain lines); `epoch` is the
/// Unix time GitLab's markers carry.
pub fn group(host: Host, key: &str, title: &str, lines: &[String], epoch: i64) -> Vec<String> {
    let mut out = Vec::with_capacity(lines.len() + 2);
    match host {
        Host::GitHub => {
            out.push(format!("::group::{}", one_line(title)));
            // A line that is itself a workflow command would run inside the
            // group (e.g. `::endgroup::` closing it early): stop commands
            // while the phase's own lines are shown, with a token no line
            // can know in advance: a hash of the lines themselves.
            let token = format!("wfe-{:016x}", fnv1a(lines));
            let guarded = lines.iter().any(|l| l.trim_start().starts_with("::"));
            if guarded {
                out.push(format!("::stop-commands::{token}"));
            }
            out.extend(lines.iter().cloned());
            if guarded {
                out.push(format!("::{token}::"));
            }
            out.push("::endgroup::".to_string());
        }
        Host::GitLab => {
            let name = section_name(key);
            out.push(format!(
                "\x1b[0Ksection_start:{epoch}:{name}[collapsed=true]\r\x1b[0K{}",
                one_line(title)
            ));
            out.extend(lines.iter().cloned());
            out.push(format!("\x1b[0Ksection_end:{epoch}:{name}\r\x1b[0K"));
        }
        Host::Buildkite => {
            out.push(format!("--- {}", one_line(title)));
            out.extend(lines.iter().cloned());
        }
        Host::Plain => {
            out.push(one_line(title));
            out.extend(lines.iter().map(|l| format!("  {key} │ {l}")));
        }
    }
    out
}

/// FNV-1a over the lines: a token that depends on every byte they hold.
fn fnv1a(lines: &[String]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A GitLab section name: the characters it allows, the rest as `_`.
pub fn section_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A title on one line: a newline would end the marker early.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_host_folds_a_group_its_own_way() {
        let body = lines(&["a", "b"]);
        assert_eq!(
            group(Host::GitHub, "build", "build ok", &body, 7),
            ["::group::build ok", "a", "b", "::endgroup::"]
        );
        assert_eq!(
            group(Host::GitLab, "test@2", "test\nok", &body, 7),
            [
                "\x1b[0Ksection_start:7:test_2[collapsed=true]\r\x1b[0Ktest ok",
                "a",
                "b",
                "\x1b[0Ksection_end:7:test_2\r\x1b[0K"
            ]
        );
        assert_eq!(
            group(Host::Buildkite, "build", "build ok", &body, 7),
            ["--- build ok", "a", "b"]
        );
        assert_eq!(
            group(Host::Plain, "build", "build ok", &body, 7),
            ["build ok", "  build │ a", "  build │ b"]
        );
    }

    #[test]
    fn a_phase_line_that_looks_like_a_workflow_command_cannot_close_the_group() {
        let body = lines(&["::endgroup::", "x"]);
        let out = group(Host::GitHub, "p", "p", &body, 0);
        let token = format!("wfe-{:016x}", fnv1a(&body));
        assert_eq!(
            out,
            [
                "::group::p".to_string(),
                format!("::stop-commands::{token}"),
                "::endgroup::".to_string(),
                "x".to_string(),
                format!("::{token}::"),
                "::endgroup::".to_string()
            ]
        );
    }
}
