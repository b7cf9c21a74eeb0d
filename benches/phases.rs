//! `cargo bench --bench phases`: what a no-op phase costs in wfe next to
//! make (and, where they can be installed, snakemake and DVC).
//!
//! Rows, each a wfe run and its yardstick run in pairs, interleaved (the
//! order alternates from round to round so drift hits both alike), over
//! `ROUNDS` rounds:
//!
//! - a chain of 100 and of 1000 no-op phases, `--jobs 1`, against GNU make
//!   building the same phony targets with `-j1`;
//! - a 10-wide DAG of 1000 phases (100 layers of 10; each phase needs two
//!   of the layer above), `--jobs 2`, against `make -j2`.
//!
//! Both spawn one `/bin/sh -c` per phase (make's recipe is `true;`, which
//! makes it use a shell). For each row the bench prints wall time and CPU
//! time (user + sys of the process and every child it waited for, as
//! `wait4` accounts them: read from this process's `cutime`/`cstime`, in
//! clock ticks) as min/median/max, the median of the per-pair ratios, and
//! whether the goal (≤ 2× make) is met. Also the peak memory of the
//! 1000-phase runs (goal ≤ 64 MB).
//!
//! `WFE_BENCH_BIN=/path/to/wfe` measures that build instead of the one
//! cargo built; `WFE_BENCH_BEFORE=/path/to/an/older/wfe` adds that binary to every pair
//! (a before/after comparison in the same run, on the same disk).
//!
//! Further yardsticks, when a Python venv under the target dir can hold
//! them (`python3 -m venv` + `pip install snakemake dvc`, made once and
//! kept): snakemake running a 100-rule chain, and `dvc repro` of 50
//! stages, each next to wfe running a chain of the same length. When they
//! cannot be installed, the bench says why and goes on.
//! `-- make` or `-- yardsticks` runs one part.
//!
//! It prints figures; it fails only when something did not run as it
//! should (a run that did not complete), since its figures would then lie.

mod common;

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use common::{first_line, fmt_duration, git, isolate, output};

/// Pairs per row.
const ROUNDS: usize = 5;
/// Goals: wfe's time (wall and CPU) at most this many times make's.
const GOAL_RATIO: f64 = 2.0;
/// Goal: peak memory of a 1000-phase run.
const GOAL_PEAK_MB: f64 = 64.0;
/// Width of the layered DAG.
const WIDTH: usize = 10;

fn main() {
    isolate(&["MAKEFLAGS", "MFLAGS", "MAKELEVEL"]);
    let base = std::env::var_os("TMPDIR")
        .map_or_else(|| env!("CARGO_TARGET_TMPDIR").into(), PathBuf::from);
    fs::create_dir_all(&base).expect("the bench's temp dir");
    let sandbox = tempfile::Builder::new()
        .prefix("wfe-phases-")
        .tempdir_in(&base)
        .expect("a sandbox");
    let wfe = common::wfe_bin();
    let before = std::env::var_os("WFE_BENCH_BEFORE").map(PathBuf::from);
    println!("wfe phases benchmark: {}", wfe.display());
    if let Some(before) = &before {
        println!("  before: {}", before.display());
    }
    println!(
        "  {} CPUs; {}; {}; /bin/sh is {}; repositories under {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_line(&output(Command::new("git").arg("--version"))),
        first_line(&output(Command::new("make").arg("--version"))),
        fs::read_link("/bin/sh").map_or("/bin/sh".into(), |p| p.display().to_string()),
        base.display(),
    );
    println!("  {ROUNDS} rounds; each pair interleaved, order alternating");
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let bench = Bench {
        wfe,
        before,
        sandbox: sandbox.path().to_path_buf(),
    };
    if wanted("make") {
        bench.make_rows();
    }
    if wanted("yardsticks") {
        bench.yardsticks();
    }
}

struct Bench {
    wfe: PathBuf,
    before: Option<PathBuf>,
    sandbox: PathBuf,
}

/// A round of one row: wfe, its yardstick, and the older wfe if any.
type Pair = (Sample, Sample, Option<Sample>);

/// One timed run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    /// User + sys of the process and its waited-for children.
    cpu: Duration,
    peak_kb: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chain,
    /// Layers of [`WIDTH`]; a phase needs the one above it and the next.
    Wide,
}

impl Shape {
    fn needs(self, i: usize) -> Vec<usize> {
        match self {
            Shape::Chain if i == 0 => vec![],
            Shape::Chain => vec![i - 1],
            Shape::Wide if i < WIDTH => vec![],
            Shape::Wide => {
                let above = (i / WIDTH - 1) * WIDTH;
                vec![above + i % WIDTH, above + (i % WIDTH + 1) % WIDTH]
            }
        }
    }

    fn sinks(self, phases: usize) -> Vec<usize> {
        match self {
            Shape::Chain => vec![phases - 1],
            Shape::Wide => (phases - WIDTH..phases).collect(),
        }
    }
}

fn template(shape: Shape, phases: usize) -> Value {
    let phases: Vec<Value> = (0..phases)
        .map(|i| {
            let needs: Vec<String> = shape.needs(i).iter().map(|n| format!("p{n}")).collect();
            json!({ "id": format!("p{i}"), "kind": "script", "run": "true", "needs": needs })
        })
        .collect();
    json!({ "name": "bench-phases", "phases": phases })
}

fn makefile(shape: Shape, phases: usize) -> String {
    let mut out = String::new();
    let all: Vec<String> = (0..phases).map(|n| format!("p{n}")).collect();
    let sinks: Vec<String> = shape
        .sinks(phases)
        .iter()
        .map(|n| format!("p{n}"))
        .collect();
    writeln!(out, ".PHONY: all {}", all.join(" ")).expect("a String");
    writeln!(out, "all: {}", sinks.join(" ")).expect("a String");
    for i in 0..phases {
        let needs: Vec<String> = shape.needs(i).iter().map(|n| format!("p{n}")).collect();
        writeln!(out, "p{i}: {}\n\t@true;", needs.join(" ")).expect("a String");
    }
    out
}

impl Bench {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.sandbox.join(name);
        fs::write(&path, text).expect("write a bench file");
        path
    }

    fn template(&self, shape: Shape, phases: usize) -> PathBuf {
        let name = format!("{shape:?}-{phases}.json");
        let text = serde_json::to_string(&template(shape, phases)).expect("JSON");
        self.write(&name, &text)
    }

    /// Runs `template` with `wfe` in a fresh repository; checks it completed.
    fn run_wfe(&self, wfe: &Path, template: &Path, jobs: usize, phases: usize) -> Sample {
        let repo = fresh_repo(&self.sandbox);
        let out_path = repo.path().with_extension("json");
        let out = File::create(&out_path).expect("a file for wfe's output");
        let mut command = Command::new(wfe);
        command
            .arg("run")
            .arg(template)
            .args(["--jobs", &jobs.to_string(), "--json", "--no-output"])
            .current_dir(repo.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null());
        let (status, sample) = measure(&mut command);
        assert!(status.success(), "wfe run failed: {status}");
        let text = fs::read_to_string(&out_path).expect("wfe's --json output");
        let _ = fs::remove_file(&out_path);
        let run: Value = serde_json::from_str(&text).expect("wfe --json prints JSON");
        assert_eq!(run["status"], "completed", "the run did not complete");
        let completed = run["phases"].as_array().map_or(0, |p| {
            p.iter().filter(|p| p["status"] == "completed").count()
        });
        assert_eq!(completed, phases, "every phase must have completed");
        sample
    }

    fn run_make(&self, makefile: &Path, jobs: usize) -> Sample {
        let dir = tempfile::tempdir_in(&self.sandbox).expect("a dir for make");
        let mut command = Command::new("make");
        command
            .args(["-r", "-s", &format!("-j{jobs}"), "-f"])
            .arg(makefile)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (status, sample) = measure(&mut command);
        assert!(status.success(), "make failed: {status}");
        sample
    }

    fn make_rows(&self) {
        println!("\nno-op phases: wfe vs GNU make (one `sh -c` per phase)");
        let rows = [
            ("chain of 100, -j1", Shape::Chain, 100, 1),
            ("chain of 1000, -j1", Shape::Chain, 1000, 1),
            ("10-wide DAG of 1000, -j2", Shape::Wide, 1000, 2),
        ];
        let mut peak_kb = 0u64;
        let mut before_peak_kb = 0u64;
        for (label, shape, phases, jobs) in rows {
            let template = self.template(shape, phases);
            let makefile = self.write(&format!("{shape:?}-{phases}.mk"), &makefile(shape, phases));
            let mut pairs: Vec<Pair> = Vec::new();
            for round in 0..ROUNDS {
                let mut wfe = None;
                let mut make = None;
                let mut before = None;
                // Alternate which goes first, so neither always gets a warm cache.
                for turn in 0..3 {
                    match (turn + round) % 3 {
                        0 => wfe = Some(self.run_wfe(&self.wfe, &template, jobs, phases)),
                        1 => make = Some(self.run_make(&makefile, jobs)),
                        _ => {
                            before = self
                                .before
                                .as_ref()
                                .map(|b| self.run_wfe(b, &template, jobs, phases));
                        }
                    }
                }
                pairs.push((wfe.expect("ran wfe"), make.expect("ran make"), before));
            }
            if phases == 1000 {
                peak_kb = peak_kb.max(pairs.iter().map(|p| p.0.peak_kb).max().unwrap_or(0));
                before_peak_kb = before_peak_kb.max(
                    pairs
                        .iter()
                        .filter_map(|p| p.2.map(|s| s.peak_kb))
                        .max()
                        .unwrap_or(0),
                );
            }
            print_row(label, phases, &pairs, "make");
        }
        let mb = peak_kb as f64 / 1024.0;
        println!(
            "  peak memory of a 1000-phase run: {mb:.1} MB (highest VmHWM over the rounds){}; goal ≤ {GOAL_PEAK_MB} MB: {}",
            if before_peak_kb > 0 {
                format!("; before: {:.1} MB", before_peak_kb as f64 / 1024.0)
            } else {
                String::new()
            },
            if mb <= GOAL_PEAK_MB {
                "goal met"
            } else {
                "goal missed"
            }
        );
    }

    fn yardsticks(&self) {
        println!("\nfurther yardsticks: snakemake (100-rule chain), dvc repro (50 stages)");
        let venv = match yardstick_venv() {
            Ok(venv) => venv,
            Err(why) => {
                println!("  skipped: {why}");
                return;
            }
        };
        let snakemake = venv.join("bin/snakemake");
        if snakemake.is_file() {
            self.snakemake_row(&snakemake);
        } else {
            println!("  snakemake skipped: not in {}", venv.display());
        }
        let dvc = venv.join("bin/dvc");
        if dvc.is_file() {
            self.dvc_row(&dvc);
        } else {
            println!("  dvc skipped: not in {}", venv.display());
        }
    }

    fn snakemake_row(&self, snakemake: &Path) {
        const RULES: usize = 100;
        let mut snakefile = String::new();
        writeln!(snakefile, "rule all:\n    input: \"f{}\"\n", RULES - 1).expect("a String");
        for i in 0..RULES {
            let input = if i == 0 {
                String::new()
            } else {
                format!("    input: \"f{}\"\n", i - 1)
            };
            writeln!(
                snakefile,
                "rule r{i}:\n{input}    output: \"f{i}\"\n    shell: \"true; touch {{output}}\"\n"
            )
            .expect("a String");
        }
        let snakefile = self.write("Snakefile", &snakefile);
        let template = self.template(Shape::Chain, RULES);
        let mut pairs = Vec::new();
        for round in 0..ROUNDS {
            let run_snakemake = || {
                let dir = tempfile::tempdir_in(&self.sandbox).expect("a dir for snakemake");
                let mut command = Command::new(snakemake);
                command
                    .args(["--cores", "1", "--quiet", "all", "--snakefile"])
                    .arg(&snakefile)
                    .current_dir(dir.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let (status, sample) = measure(&mut command);
                assert!(status.success(), "snakemake failed: {status}");
                assert!(dir.path().join(format!("f{}", RULES - 1)).exists());
                sample
            };
            let (wfe, other) = if round % 2 == 0 {
                let wfe = self.run_wfe(&self.wfe, &template, 1, RULES);
                (wfe, run_snakemake())
            } else {
                let other = run_snakemake();
                (self.run_wfe(&self.wfe, &template, 1, RULES), other)
            };
            pairs.push((wfe, other, None));
        }
        print_row("chain of 100 vs snakemake", RULES, &pairs, "snakemake");
    }

    fn dvc_row(&self, dvc: &Path) {
        const STAGES: usize = 50;
        let mut yaml = String::from("stages:\n");
        for i in 0..STAGES {
            writeln!(yaml, "  s{i}:\n    cmd: true; touch f{i}").expect("a String");
            if i > 0 {
                writeln!(yaml, "    deps: [f{}]", i - 1).expect("a String");
            }
            writeln!(yaml, "    outs: [f{i}]").expect("a String");
        }
        let template = self.template(Shape::Chain, STAGES);
        let mut pairs = Vec::new();
        for round in 0..ROUNDS {
            let run_dvc = || {
                let dir = tempfile::tempdir_in(&self.sandbox).expect("a dir for dvc");
                let quiet = |command: &mut Command| {
                    command
                        .current_dir(dir.path())
                        .env("DVC_NO_ANALYTICS", "1")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                };
                let mut init = Command::new(dvc);
                init.args(["init", "--no-scm", "-q"]);
                quiet(&mut init);
                assert!(
                    init.status().expect("dvc init").success(),
                    "dvc init failed"
                );
                fs::write(dir.path().join("dvc.yaml"), &yaml).expect("write dvc.yaml");
                let mut repro = Command::new(dvc);
                repro.arg("repro");
                quiet(&mut repro);
                let (status, sample) = measure(&mut repro);
                assert!(status.success(), "dvc repro failed: {status}");
                sample
            };
            let (wfe, other) = if round % 2 == 0 {
                let wfe = self.run_wfe(&self.wfe, &template, 1, STAGES);
                (wfe, run_dvc())
            } else {
                let other = run_dvc();
                (self.run_wfe(&self.wfe, &template, 1, STAGES), other)
            };
            pairs.push((wfe, other, None));
        }
        print_row("chain of 50 vs dvc repro", STAGES, &pairs, "dvc");
    }
}

/// The venv holding snakemake and dvc, made (once) under the target dir.
fn yardstick_venv() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("yardsticks-venv");
    let ready = venv.join(".installed");
    if ready.exists() {
        return Ok(venv);
    }
    println!(
        "  making {} (python3 -m venv; pip install snakemake dvc; once)",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err(format!("python3 -m venv failed ({status})"));
    }
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "snakemake", "dvc"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "pip install snakemake dvc failed: {}",
            why.lines().last().unwrap_or("no message")
        ));
    }
    fs::write(&ready, "").map_err(|e| format!("cannot mark the venv ready: {e}"))?;
    Ok(venv)
}

fn print_row(label: &str, phases: usize, pairs: &[Pair], yard: &str) {
    let per = |d: Duration| d / phases as u32;
    let spread = |values: Vec<Duration>| -> String {
        let (min, med, max) = min_med_max(values);
        format!(
            "{}/{}/{}",
            fmt_duration(per(min)),
            fmt_duration(per(med)),
            fmt_duration(per(max))
        )
    };
    let ratios = |f: fn(&Sample) -> Duration,
                  of: &dyn Fn(&Pair) -> Option<Sample>|
     -> Option<(f64, f64, f64)> {
        let mut values: Vec<f64> = pairs
            .iter()
            .filter_map(|p| of(p).map(|s| f(&s).as_secs_f64() / f(&p.1).as_secs_f64().max(1e-9)))
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some((
            values[0],
            values[values.len() / 2],
            values[values.len() - 1],
        ))
    };
    println!(
        "  {label}: per phase, min/median/max of {} pairs",
        pairs.len()
    );
    for (what, f) in [
        ("wall", (|s: &Sample| s.wall) as fn(&Sample) -> Duration),
        ("CPU ", |s: &Sample| s.cpu),
    ] {
        let after = ratios(f, &|p| Some(p.0)).expect("wfe ran");
        // The goal is make's pace; the other yardsticks are context.
        let met = match (yard, after.1 <= GOAL_RATIO) {
            ("make", true) => format!(" (goal ≤ {GOAL_RATIO}×: goal met)"),
            ("make", false) => format!(" (goal ≤ {GOAL_RATIO}×: goal missed)"),
            _ => String::new(),
        };
        println!(
            "    {what}  wfe {}  {yard} {}  ratio {:.1}×/{:.1}×/{:.1}×{met}",
            spread(pairs.iter().map(|p| f(&p.0)).collect()),
            spread(pairs.iter().map(|p| f(&p.1)).collect()),
            after.0,
            after.1,
            after.2,
        );
        if let Some(before) = ratios(f, &|p| p.2) {
            println!(
                "          before {}  ratio {:.1}×/{:.1}×/{:.1}×",
                spread(pairs.iter().filter_map(|p| p.2.map(|s| f(&s))).collect()),
                before.0,
                before.1,
                before.2,
            );
        }
    }
}

fn min_med_max(mut values: Vec<Duration>) -> (Duration, Duration, Duration) {
    values.sort();
    match (values.first(), values.last()) {
        (Some(&min), Some(&max)) => (min, values[values.len() / 2], max),
        _ => Default::default(),
    }
}

/// This process's children's CPU time so far (user + sys of every child
/// it waited for, and of theirs): `cutime` + `cstime` of `/proc/self/stat`.
fn children_cpu() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name (field 2) may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 16 and 17 (1-based) are cutime and cstime; `rest` starts at field 3.
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Runs `command` to its end: exit status, wall and CPU time, and peak
/// memory (its `VmHWM`, sampled every millisecond from another thread).
fn measure(command: &mut Command) -> (ExitStatus, Sample) {
    let cpu_before = children_cpu();
    let (status, wall, peak_kb) = common::measure_peak(command);
    let cpu = children_cpu().saturating_sub(cpu_before);
    (status, Sample { wall, cpu, peak_kb })
}

/// A new repository with one commit and a fixed identity.
fn fresh_repo(sandbox: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(sandbox).expect("a repo dir");
    let path = dir.path();
    git(path, &["init", "-q", "-b", "main"]);
    git(path, &["config", "user.name", "wfe bench"]);
    git(path, &["config", "user.email", "bench@wfe.invalid"]);
    git(
        path,
        &["commit", "-q", "--allow-empty", "-m", "initial commit"],
    );
    dir
}
