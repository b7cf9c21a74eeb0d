//! Helpers shared by the tools' tests: a working tree beside an outside
//! directory, git, and checks on process groups.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Runs the git CLI in `dir` with no inherited repository variables;
/// panics with its output when it fails.
pub(super) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// True when SIGKILL is queued for the process: `killpg` returns before
/// the target is scheduled to die, so a member may still show state `R`
/// for a moment, but it will never run another instruction of its own.
/// (The same check as `exec::script`'s tests.)
fn kill_pending(proc_dir: &Path) -> bool {
    // A process that vanished between two reads is gone, not alive.
    let Ok(status) = std::fs::read_to_string(proc_dir.join("status")) else {
        return true;
    };
    status.lines().any(|line| {
        let Some((key, mask)) = line.split_once(':') else {
            return false;
        };
        matches!(key, "ShdPnd" | "SigPnd")
            && u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| m & (1 << 8) != 0)
    })
}

/// The processes of group `pgid` that are still alive.
///
/// `kill(-pgid, 0)` is not the test: SIGKILLed grandchildren are
/// reparented to init as zombies and stay in the group until init reaps
/// them, on init's schedule. A zombie has run its last instruction, so
/// only other states count.
pub(super) fn live_members(pgid: u32) -> Vec<String> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces or parens.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let in_group = fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid);
        if in_group && !matches!(fields[0], "Z" | "X") && !kill_pending(&entry.path()) {
            live.push(stat);
        }
    }
    live
}
