//! How template validation scales with the template.
//!
//! `cargo bench --bench template` generates templates of no-op script
//! phases (a chain; a 10-wide DAG where each phase needs two of the layer
//! above; a chain where each phase reads its predecessor's artifact) of
//! 100, 1,000 and 10,000 phases and prints, for each:
//!
//! - parse and validate time in this process (median of 5);
//! - `wfe template validate FILE` as a process: wall time (min / median /
//!   max of 5) and peak resident memory (the child's `VmHWM`, sampled).
//!
//! The goal (issue 13): a 10,000-phase chain in ≤ 1 s and ≤ 100 MB, time
//! growing linearly with phases + edges. Figures only, nothing asserted.
//! `WFE_BENCH_BIN=/path/to/wfe` measures another build (e.g. an older one)
//! as the process; `-- chain` (or `dag`, `refs`) runs one shape.

mod common;

use std::fs;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wfe::artifact::Registry;
use wfe::template::{parse_template, validate};

use common::{fmt_duration, git, isolate, median_duration};

const REPEATS: usize = 5;
const SIZES: [usize; 3] = [100, 1_000, 10_000];

/// A template of `n` no-op script phases in `shape`.
fn generate(shape: &str, n: usize) -> Value {
    let id = |i: usize| format!("p{i:05}");
    let phases: Vec<Value> = (0..n)
        .map(|i| {
            let mut phase = json!({ "id": id(i), "kind": "script", "run": "true" });
            match shape {
                "chain" if i > 0 => phase["needs"] = json!([id(i - 1)]),
                "dag" if i >= 10 => {
                    let (layer, k) = (i / 10, i % 10);
                    let mut needs = vec![
                        id((layer - 1) * 10 + k),
                        id((layer - 1) * 10 + (k + 1) % 10),
                    ];
                    needs.sort();
                    phase["needs"] = json!(needs);
                }
                "refs" => {
                    phase["outputs"] = json!({ "report": "message" });
                    if i > 0 {
                        phase["needs"] = json!([id(i - 1)]);
                        phase["run"] = json!(format!(
                            "echo {{{{ artifacts.{}.report.text }}}}",
                            id(i - 1)
                        ));
                    }
                }
                _ => {}
            }
            phase
        })
        .collect();
    json!({ "name": format!("{shape}-{n}"), "phases": phases })
}

/// Spawns `command`, waits, and returns its status, wall time and peak
/// resident memory in KB (the child's `VmHWM`, sampled every millisecond
/// by a second thread; what it misses is the last millisecond's growth).
fn measure(command: &mut Command) -> (ExitStatus, Duration, u64) {
    common::measure_peak(command)
}

fn main() {
    isolate(&[]);
    let wfe = common::wfe_bin();
    let shapes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |shape: &str| shapes.is_empty() || shapes.iter().any(|s| s == shape);
    let sandbox = tempfile::tempdir().expect("a sandbox");
    let repo = sandbox.path().join("repo");
    fs::create_dir_all(&repo).expect("a repo dir");
    git(&repo, &["init", "-q", "-b", "main"]);
    let registry = Registry::new(&repo);

    println!("template validation: {}", wfe.display());
    println!(
        "  in-process: parse and validate, median of {REPEATS}; process: `wfe template validate FILE`, \
         wall min/median/max of {REPEATS}, peak RSS (VmHWM) max of {REPEATS}"
    );
    println!(
        "  {:<6} {:>7} {:>7} {:>10} {:>10} {:>28} {:>9} {:>12}",
        "shape", "phases", "edges", "parse", "validate", "process wall", "peak MB", "per phase"
    );
    for shape in ["chain", "dag", "refs"] {
        if !wanted(shape) {
            continue;
        }
        for n in SIZES {
            let doc = generate(shape, n);
            let edges: usize = doc["phases"].as_array().map_or(0, |p| {
                p.iter()
                    .map(|p| p["needs"].as_array().map_or(0, Vec::len))
                    .sum()
            });
            let text = serde_json::to_string(&doc).expect("json");
            let file = sandbox.path().join(format!("{shape}-{n}.json"));
            fs::write(&file, &text).expect("write the template");

            let mut parse = Vec::new();
            let mut check = Vec::new();
            for _ in 0..REPEATS {
                let start = Instant::now();
                let template = parse_template(&text, "bench.json", false).expect("parses");
                parse.push(start.elapsed());
                let start = Instant::now();
                let checked = validate(&template, "bench.json", &registry);
                check.push(start.elapsed());
                if let Err(e) = checked {
                    eprintln!("{shape}-{n} is invalid: {e}");
                    std::process::exit(1);
                }
            }

            let mut walls = Vec::new();
            let mut peak = 0;
            for _ in 0..REPEATS {
                let (status, wall, kb) = measure(
                    Command::new(&wfe)
                        .args(["template", "validate"])
                        .arg(&file)
                        .current_dir(&repo)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null()),
                );
                if !status.success() {
                    eprintln!("wfe template validate {} failed: {status}", file.display());
                    std::process::exit(1);
                }
                walls.push(wall);
                peak = peak.max(kb);
            }
            walls.sort();
            let median = median_duration(walls.iter().copied());
            println!(
                "  {:<6} {:>7} {:>7} {:>10} {:>10} {:>28} {:>9.1} {:>12}",
                shape,
                n,
                edges,
                fmt_duration(median_duration(parse)),
                fmt_duration(median_duration(check)),
                format!(
                    "{} / {} / {}",
                    fmt_duration(walls[0]),
                    fmt_duration(median),
                    fmt_duration(walls[walls.len() - 1])
                ),
                peak as f64 / 1024.0,
                fmt_duration(median / n as u32),
            );
        }
    }
    println!(
        "  goal: a 10,000-phase chain validated in <= 1 s and <= 100 MB, linear in phases + edges"
    );
}
