//! What the benchmarks share: a hermetic environment for the git they
//! run, running commands, and the arithmetic of their figures.

// Each bench uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The wfe a bench measures: `WFE_BENCH_BIN` (another build, e.g. a
/// release binary measured by a bench compiled in the dev profile), else
/// the one cargo built for the bench.
pub(crate) fn wfe_bin() -> PathBuf {
    std::env::var_os("WFE_BENCH_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wfe")), PathBuf::from)
}

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

/// Runs `command` to its end: its exit status, wall time, and peak
/// resident memory in KB (the child's `VmHWM`, sampled every millisecond
/// by a second thread; what it misses is the last millisecond's growth).
/// `wait4` would give the exact figure but only through `unsafe`, and
/// `getrusage(RUSAGE_CHILDREN)` merges all children once several ran.
pub(crate) fn measure_peak(command: &mut Command) -> (std::process::ExitStatus, Duration, u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let start = std::time::Instant::now();
    let mut child = command.spawn().expect("spawn the measured process");
    let status_file = format!("/proc/{}/status", child.id());
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak_kb = 0;
            while !done.load(Ordering::Relaxed) {
                // Gone (or a zombie, whose memory is released): keep the last figure.
                let hwm = std::fs::read_to_string(&status_file).ok().and_then(|text| {
                    text.lines()
                        .find_map(|line| line.strip_prefix("VmHWM:"))
                        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
                });
                peak_kb = hwm.map_or(peak_kb, |kb: u64| kb.max(peak_kb));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak_kb
        })
    };
    let status = child.wait().expect("wait for the measured process");
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    (status, wall, sampler.join().expect("the memory sampler"))
}
