//! The integration tests' harness: a temporary git repository and the
//! real `wfe` binary run inside it, hermetically.
//!
//! Every process the tests start through [`Repo`] (wfe and git alike) gets
//! a cleared environment plus only what it needs
//! ([`wfe::testing::git::hermetic`]: PATH, a temporary HOME and
//! XDG_CONFIG_HOME, no system or global git config, a fixed identity and
//! dates), and wfe also a pinned clock ([`NOW`] through `WFE_NOW`) and a
//! run-id seed (`WFE_RUN_ID_SEED`, one per wfe started by the repo), so
//! ids and times in its output are the same on every run, and one
//! checkpoint per transition (`WFE_CHECKPOINT_INTERVAL_MS=0`), so are its
//! commits.

#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod snapshot;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The instant every wfe the tests start believes it is.
pub const NOW: &str = "2026-01-02T03:04:05Z";

/// A temporary git repository with one commit, its own HOME, fixed identity.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    /// The run-id seed of the next wfe started: each gets its own, so two
    /// runs made by two processes never share an id, yet every test run
    /// makes the same ids.
    seeds: Cell<u64>,
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
            seeds: Cell::new(1),
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

    /// A `Command` for the wfe binary in this repo, hermetic, with the
    /// clock pinned at [`NOW`] and the next run-id seed.
    pub fn wfe_cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wfe"));
        cmd.current_dir(self.path());
        self.hermetic(&mut cmd);
        let seed = self.seeds.get();
        self.seeds.set(seed + 1);
        cmd.env("WFE_NOW", NOW)
            .env("WFE_RUN_ID_SEED", seed.to_string())
            // A checkpoint per transition: the commits a test reads are the
            // same on every run, however fast its phases (folding bursts
            // has tests of its own in tests/phases.rs).
            .env("WFE_CHECKPOINT_INTERVAL_MS", "0");
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
        self.git_cmd(args).output().unwrap()
    }

    /// The real git CLI in this repo, hermetic, not yet run.
    pub fn git_cmd(&self, args: &[&str]) -> Command {
        wfe::testing::git::git_in(self.path(), self.home.path(), args)
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

    /// Makes `cmd` hermetic, with this repo's HOME.
    pub fn hermetic(&self, cmd: &mut Command) {
        wfe::testing::git::hermetic(cmd, self.home.path());
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

/// True while a process of group `pgid` is alive (zombies and processes
/// with SIGKILL pending do not count).
pub fn group_alive(pgid: i32) -> bool {
    u32::try_from(pgid).is_ok_and(wfe::testing::process::group_alive)
}

/// True while process `pid` runs (zombies do not count).
pub fn pid_alive(pid: u32) -> bool {
    wfe::testing::process::pid_alive(pid)
}

/// The guardian `wfe` process `parent` started (its child running the
/// hidden `__guard` command), if it has one.
pub fn guardian_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (ppid == parent && cmdline.split(|&b| b == 0).any(|a| a == b"__guard")).then_some(pid)
        })
}

/// SIGKILLs `child` (a runner or worker) and its guardian with it, the
/// guardian first, so nothing ends the phases the runner leaves: what
/// `wfe resume`, `wfe cancel` or a lease must deal with on their own.
pub fn kill_9_with_guardian(child: &mut std::process::Child) {
    let guardian = guardian_of(child.id()).expect("the runner has a guardian");
    let killed = Command::new("kill")
        .args(["-s", "KILL", &guardian.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(killed, "SIGKILL of the guardian {guardian}");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pid_alive(guardian) {
        assert!(
            std::time::Instant::now() < until,
            "the guardian outlived SIGKILL"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
