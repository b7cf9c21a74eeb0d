//! Shared helpers for integration tests: a hermetic temporary git repo and
//! the real `wfe` binary run inside it.

#![allow(dead_code)]

pub mod llm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary git repository with one commit, its own HOME, fixed identity.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

impl Repo {
    /// `git init` + a first commit with a README.
    pub fn new() -> Repo {
        let repo = Repo::empty();
        std::fs::write(repo.path().join("README.md"), "test repo\n").unwrap();
        repo.git(&["add", "README.md"]);
        repo.git(&["commit", "-q", "-m", "initial"]);
        repo
    }

    /// `git init` without any commit.
    pub fn empty() -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.name", "Test User"]);
        repo.git(&["config", "user.email", "test@example.com"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file relative to the repo root, creating directories.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `.wfe/templates/NAME.json`.
    pub fn template(&self, name: &str, json: &serde_json::Value) -> PathBuf {
        self.write(
            &format!(".wfe/templates/{name}.json"),
            &serde_json::to_string_pretty(json).unwrap(),
        )
    }

    /// A `Command` for the wfe binary in this repo, hermetic.
    pub fn wfe_cmd(&self) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("wfe"));
        cmd.current_dir(self.path());
        self.hermetic(&mut cmd);
        cmd
    }

    /// Runs wfe with `args` to completion.
    pub fn wfe(&self, args: &[&str]) -> Run {
        let out = self.wfe_cmd().args(args).output().unwrap();
        Run::from(out)
    }

    /// Runs the real git CLI; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the real git CLI and returns whatever happened.
    pub fn git_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("git");
        cmd.current_dir(self.path()).args(args);
        self.hermetic(&mut cmd);
        cmd.output().unwrap()
    }

    /// Starts wfe with `args` in the background, its output piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.wfe_cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The id of the repository's first run (by ref name).
    pub fn run_id(&self) -> String {
        self.wfe_refs()[0]
            .trim_start_matches("refs/wfe/runs/")
            .to_string()
    }

    /// Every ref under `refs/wfe/`.
    pub fn wfe_refs(&self) -> Vec<String> {
        self.git(&["for-each-ref", "--format=%(refname)", "refs/wfe/"])
            .lines()
            .map(String::from)
            .collect()
    }

    fn hermetic(&self, cmd: &mut Command) {
        cmd.env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env("NO_COLOR", "1")
            .env_remove("WFE_NOW");
    }
}

/// A finished process: exit code and output as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it is wrong.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A script phase as JSON.
pub fn script(id: &str, needs: &[&str], run: &str) -> serde_json::Value {
    serde_json::json!({ "id": id, "kind": "script", "needs": needs, "run": run })
}

/// Makes a FIFO: tests synchronise with phases through them, never with sleeps.
pub fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo failed");
}

/// Blocks until a writer opens the FIFO and writes a line; returns it.
pub fn read_fifo_line(path: &Path) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(std::fs::File::open(path).unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

/// Writes a line into a FIFO (blocks until a reader opens it).
pub fn write_fifo_line(path: &Path, line: &str) {
    use std::io::Write;
    writeln!(
        std::fs::OpenOptions::new().write(true).open(path).unwrap(),
        "{line}"
    )
    .unwrap();
}

/// True while a process of group `pgid` is alive. Zombies don't count:
/// killed grandchildren are reparented to init and stay in the group until
/// init reaps them, on init's schedule.
pub fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces or parens.
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
            && !matches!(fields[0], "Z" | "X")
            && !kill_pending(&entry.path())
    })
}

/// True when SIGKILL is queued for the process: `killpg` returns before the
/// target is scheduled to die, so it may still show state `R` for a moment,
/// but it will never run another instruction of its own.
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
