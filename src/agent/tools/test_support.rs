//! Helpers shared by the tools' tests: a working tree beside an outside
//! directory, git, and checks on process groups.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use super::ToolOutcome;

/// A temp dir holding `repo/` (the working tree) and `outside/` (with a
/// file `secret`), which no file tool may reach.
pub(super) struct Repo {
    _dir: TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl Repo {
    pub(super) fn new() -> Repo {
        let dir = TempDir::new().unwrap();
        // Canonical, so paths the tests build compare equal to the tools'.
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("repo");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "secret\n").unwrap();
        Repo {
            _dir: dir,
            root,
            outside,
        }
    }

    /// A working tree that is a git repository with a fixed identity and no
    /// signing or hooks, whatever the user's global config says.
    pub(super) fn git_init() -> Repo {
        let repo = Repo::new();
        git(&repo.root, &["init", "-q", "-b", "main"]);
        for (key, value) in [
            ("user.name", "Test Author"),
            ("user.email", "author@example.com"),
            ("commit.gpgsign", "false"),
            ("core.hooksPath", "/dev/null"),
        ] {
            git(&repo.root, &["config", key, value]);
        }
        repo
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// A path in the working tree.
    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A path in the outside directory.
    pub(super) fn outside(&self, rel: &str) -> PathBuf {
        self.outside.join(rel)
    }

    /// Writes `rel` in the working tree, creating its parents.
    pub(super) fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// The names in the outside directory: tests check nothing was added.
    pub(super) fn outside_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The output of a call that must have succeeded.
#[track_caller]
pub(super) fn ok(outcome: ToolOutcome) -> Value {
    match outcome.output {
        Ok(value) => value,
        Err(message) => panic!("expected success, got: {message}"),
    }
}

/// The message of a call that must have failed.
#[track_caller]
pub(super) fn err(outcome: ToolOutcome) -> String {
    match outcome.output {
        Ok(value) => panic!("expected an error, got: {value}"),
        Err(message) => message,
    }
}

pub(super) use crate::testing::git::git;
pub(super) use crate::testing::process::live_members;
