//! The git CLI (and any other child, `wfe` included) in a hermetic
//! environment: nothing inherited but `PATH`, a HOME of the caller's
//! choosing, no system or global git config, and a fixed identity and
//! dates, so commits and their ids do not depend on who runs the tests.

use std::path::Path;
use std::process::Command;

/// The author and committer name every hermetic process uses.
pub const NAME: &str = "Test User";
/// The author and committer email every hermetic process uses.
pub const EMAIL: &str = "test@example.com";
/// The author and committer date of every commit the git CLI makes.
pub const DATE: &str = "2026-01-01T00:00:00Z";

/// Clears `cmd`'s environment and sets only what a hermetic child needs:
/// `PATH`, `HOME` and `XDG_CONFIG_HOME` under `home`, no system or global
/// git config, a fixed git identity and dates, the C locale, UTC and no
/// colour. Callers add what their child needs beyond that.
pub fn hermetic<'c>(cmd: &'c mut Command, home: &Path) -> &'c mut Command {
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", NAME)
        .env("GIT_AUTHOR_EMAIL", EMAIL)
        .env("GIT_COMMITTER_NAME", NAME)
        .env("GIT_COMMITTER_EMAIL", EMAIL)
        .env("GIT_AUTHOR_DATE", DATE)
        .env("GIT_COMMITTER_DATE", DATE)
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("NO_COLOR", "1")
}

/// A hermetic `git` command in `dir` whose HOME is `home`, not yet run.
pub fn git_in(dir: &Path, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    hermetic(&mut cmd, home).args(args).current_dir(dir);
    cmd
}

/// A hermetic `git` command in `dir`, not yet run; its HOME is a path
/// under `dir` that does not exist, so nothing can be read from it.
pub fn git_command(dir: &Path, args: &[&str]) -> Command {
    git_in(dir, &dir.join(".no-home"), args)
}

/// Runs `cmd`; panics with its output when it fails, else returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs the hermetic git CLI in `dir`; panics with its output when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run(&mut git_command(dir, args))
}
