//! Snapshots of wfe's human output with insta: a finished process becomes
//! one text (exit code, stdout, stderr), and the repository's temporary
//! paths are filtered to stable names. Ids and times need no filter (the
//! harness pins the clock and seeds run ids); what the wall clock measures
//! does: phase durations, and the checkpoint ids that record them (a
//! checkpoint's tree holds its phases' durations, so its hash changes from
//! one test run to the next). So do what the machine decides: the host
//! name and pid of a lock holder.
//!
//! A test that must tell one such value from another (the pid of *this*
//! runner, a checkpoint of *another* run) names it first: the `names` of
//! [`settings_with`] (and of the macros' last argument) are replaced before
//! the general filters run, so the snapshot still shows which one was meant.
//!
//! Snapshots live in `tests/snapshots/`. A mismatch fails the test; with
//! `CI` set insta writes nothing, elsewhere it leaves a `.snap.new` beside
//! the snapshot. To bless new output: `INSTA_UPDATE=always cargo test`,
//! then review the diff of `tests/snapshots/` before committing.

use super::{Repo, Run};

/// The text a snapshot of `run` holds.
pub fn transcript(run: &Run) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

/// The transcript of `wfe ARGS` headed by the command line, for snapshots
/// that hold several commands (a table of bad inputs, a short session).
pub fn command(args: &[&str], run: &Run) -> String {
    let line: Vec<String> = args
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a.to_string()
            }
        })
        .collect();
    format!("$ wfe {}\n{}\n", line.join(" "), transcript(run))
}

/// insta settings for output made in `repo`: its work tree and HOME, as
/// given and canonical, become `[REPO]` and `[HOME]`, and this crate's
/// directory (where test data lives) `[CRATE]`.
pub fn settings(repo: &Repo) -> insta::Settings {
    settings_with(repo, &[])
}

/// [`settings`], with each `(text, name)` of `names` replaced first: for
/// values the general filters would blur (a pid, a checkpoint) that the
/// snapshot must still tell apart.
pub fn settings_with(repo: &Repo, names: &[(&str, &str)]) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for (text, name) in names {
        settings.add_filter(&regex::escape(text), *name);
    }
    let dirs = [
        (repo.path(), "[REPO]"),
        (repo.home.path(), "[HOME]"),
        (std::path::Path::new(env!("CARGO_MANIFEST_DIR")), "[CRATE]"),
    ];
    for (dir, name) in dirs {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        for path in [canonical, dir.to_path_buf()] {
            settings.add_filter(&regex::escape(&path.display().to_string()), name);
        }
    }
    // Durations as wfe prints them (`5ms`, `1.2s`, right-aligned in columns).
    settings.add_filter(r" +\d+(?:\.\d+)?(?:ms|s|m)\b", " [DUR]");
    settings.add_filter(r#""duration_ms": \d+"#, r#""duration_ms": "[DUR]""#);
    settings.add_filter(r#""wall_ms": \d+"#, r#""wall_ms": "[DUR]""#);
    settings.add_filter(r"\((\d+(?:\.\d+)?(?:ms|s|m))\)", "([DUR])");
    settings.add_filter(r"\b\d+ ms\b", "[DUR] ms");
    // Checkpoints, whole and short (`wfe` shows 12 hex digits).
    settings.add_filter(r"\b[0-9a-f]{40}\b", "[SHA]");
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[CKPT]");
    // A lock holder: this machine's name, and a pid no test named.
    if let Some(host) = hostname() {
        settings.add_filter(
            &format!(r"(pid \S+ on ){}", regex::escape(&host)),
            "${1}[HOST]",
        );
    }
    settings.add_filter(r"\bpid \d+", "pid [PID]");
    settings
}

/// This machine's host name, as a lock file records it.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Asserts that `text` (output made in `repo`) matches snapshot `name`,
/// with the optional `[(text, name), ..]` replaced first.
macro_rules! assert_text {
    ($repo:expr, $name:expr, $text:expr $(,)?) => {
        $crate::common::snapshot::assert_text!($repo, $name, $text, [])
    };
    ($repo:expr, $name:expr, $text:expr, [$(($from:expr, $to:expr)),* $(,)?] $(,)?) => {{
        let names: &[(&str, &str)] = &[$((::std::convert::AsRef::<str>::as_ref(&$from), $to)),*];
        $crate::common::snapshot::settings_with($repo, names).bind(|| {
            insta::assert_snapshot!(String::from($name), $text);
        })
    }};
}
pub(crate) use assert_text;

/// Asserts that `run` (a [`Run`] made in `repo`) matches snapshot `name`,
/// with the optional `[(text, name), ..]` replaced first.
macro_rules! assert_run {
    ($repo:expr, $name:expr, $run:expr $(,)?) => {
        $crate::common::snapshot::assert_text!(
            $repo,
            $name,
            $crate::common::snapshot::transcript($run)
        )
    };
    ($repo:expr, $name:expr, $run:expr, [$($names:tt)*] $(,)?) => {
        $crate::common::snapshot::assert_text!(
            $repo,
            $name,
            $crate::common::snapshot::transcript($run),
            [$($names)*]
        )
    };
}
pub(crate) use assert_run;
