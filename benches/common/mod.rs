//! What the benchmarks share: a hermetic environment for the git they
//! run, running commands, and the arithmetic of their figures.

// Each bench uses its own subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Set in the environment of the isolated copy of a bench.
const ISOLATED: &str = "WFE_BENCH_ISOLATED";

/// Makes every git this process runs or embeds hermetic: a scratch HOME, no
/// system or global config, nothing inherited from whatever launched
/// `cargo bench` (nor the variables in `also_unset`).
///
/// A process cannot safely change its own environment once threads may
/// run, so the bench starts itself again with that environment, waits, and
/// exits with its status; in that copy this returns at once. Call it first
/// thing in `main`.
pub(crate) fn isolate(also_unset: &[&str]) {
    if std::env::var_os(ISOLATED).is_some() {
        return;
    }
    let home = tempfile::Builder::new()
        .prefix("wfe-bench-home-")
        .tempdir()
        .expect("a HOME");
    let mut copy = Command::new(std::env::current_exe().expect("the bench's own path"));
    copy.args(std::env::args_os().skip(1))
        .env(ISOLATED, "1")
        .env("HOME", home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("NO_COLOR", "1");
    let common = [
        "XDG_CONFIG_HOME",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_CEILING_DIRECTORIES",
        "WFE_NOW",
        "WFE_RUN_ID_SEED",
    ];
    for name in common.iter().chain(also_unset) {
        copy.env_remove(name);
    }
    let status = copy.status().expect("run the bench isolated");
    drop(home);
    std::process::exit(status.code().unwrap_or(1));
}

/// Runs git in `dir` in the bench's isolated environment.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    output(Command::new("git").args(args).current_dir(dir))
}

/// Runs `command` with no stdin; panics with its output when it fails.
/// The bench process is already isolated (see [`isolate`]), so the
/// command inherits a hermetic environment and the bench's own identity.
pub(crate) fn output(command: &mut Command) -> String {
    wfe::testing::git::run(command.stdin(Stdio::null()))
}

pub(crate) fn tree_of(repo: &Path, rev: &str) -> String {
    git(repo, &["rev-parse", &format!("{rev}^{{tree}}")])
        .trim()
        .to_string()
}

pub(crate) fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

pub(crate) fn median_duration(values: impl IntoIterator<Item = Duration>) -> Duration {
    let mut values: Vec<Duration> = values.into_iter().collect();
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn mean(values: &[Duration]) -> Duration {
    values.iter().sum::<Duration>() / values.len().max(1) as u32
}

pub(crate) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.0} µs", secs * 1e6)
    }
}
