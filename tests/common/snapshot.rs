//! Snapshots of wfe's human output with insta: a finished process becomes
//! one text (exit code, stdout, stderr), and the repository's temporary
//! paths are filtered to stable names. Ids and times need no filter (the
//! harness pins the clock and seeds run ids); what the wall clock measures
//! does: phase durations, and the checkpoint ids that record them.
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

/// insta settings for output made in `repo`: its work tree and HOME, as
/// given and canonical, become `[REPO]` and `[HOME]`, and this crate's
/// directory (where test data lives) `[CRATE]`.
pub fn settings(repo: &Repo) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
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
    settings.add_filter(
        r#""checkpoint": "[0-9a-f]{40}""#,
        r#""checkpoint": "[SHA]""#,
    );
    settings
}

/// Asserts that `run` (a [`Run`] made in `repo`) matches snapshot `name`.
macro_rules! assert_run {
    ($repo:expr, $name:expr, $run:expr $(,)?) => {
        $crate::common::snapshot::settings($repo).bind(|| {
            insta::assert_snapshot!(
                String::from($name),
                $crate::common::snapshot::transcript($run)
            );
        })
    };
}
pub(crate) use assert_run;
