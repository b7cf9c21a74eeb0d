//! Snapshots of wfe's human output with insta: a finished process becomes
//! one text (exit code, stdout, stderr), and the repository's temporary
//! paths are filtered to stable names. Ids and times need no filter: the
//! harness pins the clock and seeds run ids.
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
/// given and canonical, become `[REPO]` and `[HOME]`.
pub fn settings(repo: &Repo) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for (dir, name) in [(repo.path(), "[REPO]"), (repo.home.path(), "[HOME]")] {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        for path in [canonical, dir.to_path_buf()] {
            settings.add_filter(&regex::escape(&path.display().to_string()), name);
        }
    }
    settings
}

/// Asserts that `run` (a [`Run`] made in `repo`) matches snapshot `name`.
macro_rules! assert_run {
    ($repo:expr, $name:expr, $run:expr $(,)?) => {
        $crate::common::snapshot::settings($repo).bind(|| {
            insta::assert_snapshot!(String::from($name), $crate::common::snapshot::transcript($run));
        })
    };
}
pub(crate) use assert_run;
