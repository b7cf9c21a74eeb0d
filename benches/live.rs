//! `cargo bench --bench live`: what publishing a phase's output live costs.
//!
//! A script phase printing 100,000 lines (`seq`), run through wfe's script
//! executor with its output going to a sink that drops it (as a terminal
//! would not slow it much) and again through the live sink, which also
//! appends every line to a live file on a writer thread of its own.
//! Repetitions are interleaved so drift hits both alike; medians are
//! printed, with the ratio. It prints figures and never fails on a timing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wfe::attempt::{LogLine, LogSink};
use wfe::engine::live::{LiveSink, attempt_file};
use wfe::exec::{FilesJob, ScriptJob, run_script};
use wfe::secret::Masker;
use wfe::time::Clock;

/// Lines the phase prints.
const LINES: u32 = 100_000;
/// Each figure is the median of this many runs.
const REPEATS: usize = 7;

struct Drop_;
impl LogSink for Drop_ {
    fn line(&self, _: &str, _: &LogLine) {}
}

fn job(dir: &Path, n: usize) -> ScriptJob {
    let cwd = dir.join("work");
    std::fs::create_dir_all(&cwd).expect("work dir");
    ScriptJob {
        run: "01jbenchrun".into(),
        phase: "noisy".into(),
        attempt: 1,
        command: format!(
            "seq -f 'line %06g of the bench output, about sixty bytes long' 1 {LINES}"
        ),
        cwd,
        env: Vec::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        scratch: dir.join(format!("scratch/{n}")),
        timeout: Some(Duration::from_secs(600)),
        kill_grace: Duration::ZERO,
        processes: None,
        label: "noisy".into(),
        max_artifact_bytes: 1 << 20,
        max_log_bytes: wfe::attempt::DEFAULT_MAX_LOG_BYTES,
        env_remove: Vec::new(),
        masker: Masker::new(["tok-not-in-the-output-0123"]),
        files: FilesJob::default(),
    }
}

/// How long the phase took, how long until its live file was whole, and
/// the file's size.
async fn once(dir: &Path, n: usize, live: bool) -> (Duration, Duration, u64) {
    let (_tx, cancel) = tokio::sync::watch::channel(false);
    let path = attempt_file(&dir.join("live"), "01jbenchrun", "noisy", n as u32);
    let started = Instant::now();
    let phase;
    let sink: Arc<dyn LogSink> = Arc::new(Drop_);
    let outcome = if live {
        let live = Arc::new(LiveSink::new(sink, path.clone(), u64::MAX));
        let outcome = run_script(job(dir, n), cancel, live.clone(), Clock::system()).await;
        phase = started.elapsed();
        // The attempt is over only once its live file is whole.
        live.finish();
        outcome
    } else {
        let outcome = run_script(job(dir, n), cancel, sink, Clock::system()).await;
        phase = started.elapsed();
        outcome
    };
    let took = started.elapsed();
    assert!(
        outcome.result.is_ok(),
        "the phase failed: {:?}",
        outcome.result
    );
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if live {
        let lines = std::fs::read_to_string(&path)
            .expect("live file")
            .lines()
            .count();
        assert_eq!(lines as u32, LINES, "every line is in the live file");
    }
    (phase, took, size)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir_in(
        std::env::var_os("CARGO_TARGET_TMPDIR")
            .unwrap_or_else(|| std::env::temp_dir().into_os_string()),
    )
    .expect("temp dir");
    let (mut plain, mut live, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    // One warm-up of each, not counted.
    once(dir.path(), 0, false).await;
    once(dir.path(), 0, true).await;
    for n in 1..=REPEATS {
        plain.push(once(dir.path(), n, false).await.1);
        let (phase, took, bytes) = once(dir.path(), n, true).await;
        live.push(phase);
        whole.push(took);
        size = bytes;
    }
    let (plain, live, whole) = (median(plain), median(live), median(whole));
    println!("live output: a script phase printing {LINES} lines, median of {REPEATS}");
    println!(
        "  without live publishing  {:>8.1} ms",
        plain.as_secs_f64() * 1e3
    );
    println!(
        "  with live publishing     {:>8.1} ms  ({} KB live file)",
        live.as_secs_f64() * 1e3,
        size / 1024
    );
    println!(
        "  … until the file is whole {:>7.1} ms",
        whole.as_secs_f64() * 1e3
    );
    println!(
        "  ratio (phase)            {:>8.2}x",
        live.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "  ratio (file whole)       {:>8.2}x",
        whole.as_secs_f64() / plain.as_secs_f64()
    );
}
