//! `cargo bench --bench engine`: what wfe costs next to the tools it competes with.
//!
//! Three questions, each answered against a baseline timed in the same run
//! (the machines this runs on are noisy, so absolute figures from another run
//! mean little; every measurement is repeated and its median reported, and
//! the repetitions of compared things are interleaved so drift hits them alike):
//!
//! - (a, b) **Engine overhead per phase**: the release `wfe` binary running
//!   1000 no-op script phases (a chain and a 10×100 layered DAG, `--jobs 1`
//!   and `2`) next to GNU make running 1000 phony targets of the same shapes.
//!   Both spawn exactly one `sh -c` per phase, so the difference is what
//!   scheduling and checkpointing cost. Also the peak memory of each wfe run
//!   and how many checkpoints it wrote per phase.
//! - (c) **Cost of a checkpoint**: 1000 commits that each add or change one
//!   ~1 KB file in a growing tree, written by wfe's store in-process, by
//!   `git fast-import` (the practical floor: one process, one pack) and by
//!   git plumbing commands (what a shell script would do). Also whether a
//!   checkpoint gets dearer as the run's tree grows.
//!
//! Both wfe and its store create several small files per checkpoint (a
//! pack and its index, a ref lock, scratch dirs) where fast-import and make create
//! none, so the filesystem's cost of creating a file weighs on every ratio.
//! The bench measures that cost where it works (under cargo's
//! `CARGO_TARGET_TMPDIR`, on the project's filesystem, or `$TMPDIR` if set)
//! and repeats the key measurements on tmpfs (`/dev/shm`, where present) to
//! separate what wfe computes from what the disk charges.
//!
//! It prints figures and a summary of the project's goals; it never fails on
//! a timing. It fails only if something did not run as it should (a run that
//! did not complete, trees that differ), since its figures would then be lies.

mod common;

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use common::{
    first_line, fmt_duration, git, isolate, mean, median_duration, output, ratio, tree_of,
};
use wfe::store::{Change, CheckpointId, GitStore, Message, RunId, RunStore, Trailer};

/// Phases per engine run, targets per Makefile.
const PHASES: usize = 1000;
/// The layered DAG: `LAYERS` layers of `WIDTH` phases (`LAYERS × WIDTH = PHASES`).
const LAYERS: usize = 10;
const WIDTH: usize = 100;
const _: () = assert!(LAYERS * WIDTH == PHASES);
/// Each figure is the median of this many measurements.
const REPEATS: usize = 3;
/// Checkpoints written by the store and by fast-import.
const CHECKPOINTS: usize = 1000;
/// Plumbing spawns five processes per checkpoint (~12 ms): a prefix is enough.
const PLUMBING_CHECKPOINTS: usize = 200;
/// Checkpoints averaged to compare an early with a late checkpoint.
const WINDOW: usize = 20;
/// Directories the checkpoint files are spread over.
const CHECKPOINT_DIRS: usize = 50;
/// Every this-many-th checkpoint changes an existing file instead of adding one.
const REWRITE_EVERY: usize = 10;
/// Checkpoint times: fixed, so the three writers produce the same trees.
const EPOCH: i64 = 1_700_000_000;
const AUTHOR_NAME: &str = "wfe bench";
const AUTHOR_EMAIL: &str = "bench@wfe.invalid";

/// The goals the summary checks.
const GOAL_PHASE_RATIO: f64 = 2.0;
const GOAL_CHECKPOINT_RATIO: f64 = 3.0;
const GOAL_GROWTH_RATIO: f64 = 1.5;
const GOAL_PEAK_MB: f64 = 64.0;

fn main() {
    isolate(&["MAKEFLAGS", "MFLAGS", "MAKELEVEL"]);
    // Repositories live on the project's filesystem, where users' runs are
    // written, not in /tmp (RAM-backed on many systems), unless TMPDIR says so.
    let base = std::env::var_os("TMPDIR")
        .map_or_else(|| env!("CARGO_TARGET_TMPDIR").into(), PathBuf::from);
    fs::create_dir_all(&base).expect("the bench's temp dir");
    let disk = sandbox_in(&base).expect("a sandbox");
    let tmpfs = Path::new("/dev/shm")
        .is_dir()
        .then(|| sandbox_in(Path::new("/dev/shm")));
    let tmpfs = tmpfs.and_then(Result::ok);
    let places = Places {
        main: disk.path(),
        tmpfs: tmpfs.as_ref().map(TempDir::path),
    };
    let wfe = Path::new(env!("CARGO_BIN_EXE_wfe"));

    println!("wfe benchmark: {}", wfe.display());
    println!(
        "  {} CPUs; {}; {}; /bin/sh is {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first_line(&output(Command::new("git").arg("--version"))),
        first_line(&output(Command::new("make").arg("--version"))),
        fs::read_link("/bin/sh").map_or("/bin/sh".into(), |p| p.display().to_string()),
    );
    println!(
        "  repositories under {}{}",
        base.display(),
        if places.tmpfs.is_some() {
            "; tmpfs rows under /dev/shm"
        } else {
            "; no /dev/shm, so no tmpfs rows"
        }
    );
    println!("  every figure is the median of {REPEATS} runs, interleaved");

    // `cargo bench --bench engine -- checkpoints` runs one part, for digging
    // into it; cargo itself passes `--bench`, which is not a part's name.
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let engine = wanted("engine").then(|| bench_engine(wfe, &places));
    let checkpoints = wanted("checkpoints").then(|| bench_checkpoints(&places));
    summary(engine.as_deref(), checkpoints.as_ref());
}

/// Where repositories are made.
#[derive(Debug, Clone, Copy)]
struct Places<'a> {
    /// Where the goals are judged.
    main: &'a Path,
    /// RAM-backed, for contrast: what is left when creating files is ~free.
    tmpfs: Option<&'a Path>,
}

fn sandbox_in(dir: &Path) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("wfe-bench-")
        .tempdir_in(dir)
}

// ---------------------------------------------------------------------------
// (a, b) engine vs make

/// The dependency shapes both wfe and make run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `p_i` needs `p_{i-1}`: nothing can run in parallel.
    Chain,
    /// 10 layers of 100; `p` in layer k needs the phases of layer k-1 at the
    /// same index and the next (mod 100), so each layer waits for the last.
    Layered,
}

impl Shape {
    const ALL: [Shape; 2] = [Shape::Chain, Shape::Layered];

    fn name(self) -> &'static str {
        match self {
            Shape::Chain => "chain",
            Shape::Layered => "layered",
        }
    }

    /// The phases (by number) that phase `i` needs.
    fn needs(self, i: usize) -> Vec<usize> {
        match self {
            Shape::Chain if i == 0 => vec![],
            Shape::Chain => vec![i - 1],
            Shape::Layered if i < WIDTH => vec![],
            Shape::Layered => {
                let (layer, index) = (i / WIDTH, i % WIDTH);
                let above = (layer - 1) * WIDTH;
                vec![above + index, above + (index + 1) % WIDTH]
            }
        }
    }

    /// Phases nothing needs: what make's default goal must depend on.
    fn sinks(self, phases: usize) -> Vec<usize> {
        match self {
            Shape::Chain => vec![phases - 1],
            Shape::Layered => (phases - WIDTH..phases).collect(),
        }
    }
}

/// A wfe template of `phases` no-op script phases.
fn template(shape: Shape, phases: usize) -> Value {
    let phases: Vec<Value> = (0..phases)
        .map(|i| {
            let needs: Vec<String> = shape.needs(i).iter().map(|n| format!("p{n}")).collect();
            json!({ "id": format!("p{i}"), "kind": "script", "run": "true", "needs": needs })
        })
        .collect();
    json!({ "name": format!("bench-{}", shape.name()), "phases": phases })
}

/// A Makefile of the same shape. The recipe is `true;` rather than `true`
/// because GNU make execs a recipe without shell metacharacters directly;
/// the `;` makes it spawn `/bin/sh -c 'true;'`, one shell per target, as
/// wfe spawns one `sh -c true` per phase (checked with `strace -f`).
fn makefile(shape: Shape) -> String {
    let name = |n: &usize| format!("p{n}");
    let mut out = String::new();
    let all: Vec<String> = (0..PHASES).map(|n| name(&n)).collect();
    let sinks: Vec<String> = shape.sinks(PHASES).iter().map(name).collect();
    writeln!(out, ".PHONY: all {}", all.join(" ")).expect("write to a String");
    writeln!(out, "all: {}", sinks.join(" ")).expect("write to a String");
    for i in 0..PHASES {
        let needs: Vec<String> = shape.needs(i).iter().map(name).collect();
        writeln!(out, "p{i}: {}\n\t@true;", needs.join(" ")).expect("write to a String");
    }
    out
}

/// One timed engine or make run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    /// Peak resident memory of the process (and of its largest child), KB.
    peak_kb: u64,
    /// Commits on the run's ref (0 for make).
    checkpoints: u64,
}

/// The repeated samples of one configuration.
#[derive(Debug, Clone)]
struct EngineRow {
    shape: Shape,
    jobs: usize,
    /// Run on tmpfs (context) rather than the main place (the goals).
    tmpfs: bool,
    wfe: Vec<Sample>,
    make: Vec<Sample>,
}

impl EngineRow {
    fn wfe_wall(&self) -> Duration {
        median_duration(self.wfe.iter().map(|s| s.wall))
    }
    fn make_wall(&self) -> Duration {
        median_duration(self.make.iter().map(|s| s.wall))
    }
    /// The worst of the repeats: the goal is a bound.
    fn peak_kb(&self) -> u64 {
        self.wfe.iter().map(|s| s.peak_kb).max().unwrap_or(0)
    }
    fn label(&self) -> String {
        let place = if self.tmpfs { " (tmpfs)" } else { "" };
        format!("{}{place}", self.shape.name())
    }
}

fn bench_engine(wfe: &Path, places: &Places) -> Vec<EngineRow> {
    println!("\n(a, b) {PHASES} no-op phases: wfe vs make, one `sh -c` per phase");
    let sandbox = places.main;
    let templates = sandbox.join("templates");
    fs::create_dir(&templates).expect("a templates dir");
    let template_path = |shape: Shape, phases: usize| {
        let path = templates.join(format!("{}-{phases}.json", shape.name()));
        if !path.exists() {
            let text = serde_json::to_string(&template(shape, phases)).expect("JSON");
            fs::write(&path, text).expect("write a template");
        }
        path
    };
    let makefiles = sandbox.join("makefiles");
    fs::create_dir(&makefiles).expect("a makefiles dir");

    let mut rows: Vec<EngineRow> = Vec::new();
    let new_row = |shape, jobs, tmpfs| EngineRow {
        shape,
        jobs,
        tmpfs,
        wfe: Vec::new(),
        make: Vec::new(),
    };
    for shape in Shape::ALL {
        fs::write(makefiles.join(shape.name()), makefile(shape)).expect("write a Makefile");
        for jobs in [1, 2] {
            rows.push(new_row(shape, jobs, false));
        }
    }
    if places.tmpfs.is_some() {
        rows.push(new_row(Shape::Chain, 1, true));
        rows.push(new_row(Shape::Layered, 2, true));
    }
    let mut floor = Vec::new();
    let mut fixed = Vec::new();
    for _ in 0..REPEATS {
        for row in &mut rows {
            let place = match (row.tmpfs, places.tmpfs) {
                (true, Some(tmpfs)) => tmpfs,
                _ => sandbox,
            };
            let template = template_path(row.shape, PHASES);
            row.wfe
                .push(run_wfe(wfe, place, &template, row.jobs, PHASES));
            let makefile = makefiles.join(row.shape.name());
            row.make.push(run_make(place, &makefile, row.jobs));
        }
        floor.push(spawn_floor(PHASES));
        fixed.push(run_wfe(wfe, sandbox, &template_path(Shape::Chain, 1), 1, 1).wall);
    }

    println!(
        "  {:<15} {:>4} {:>9} {:>10} {:>13} {:>10} {:>9} {:>10} {:>6}",
        "shape", "jobs", "wfe", "per phase", "peak MB", "ckpt/phase", "make", "per target", "ratio"
    );
    for row in &rows {
        let (wfe_wall, make_wall) = (row.wfe_wall(), row.make_wall());
        let checkpoints = median_u64(row.wfe.iter().map(|s| s.checkpoints));
        let peaks = row.wfe.iter().map(|s| s.peak_kb);
        let peak_range = format!(
            "{:.0}-{:.0}",
            peaks.clone().min().unwrap_or(0) as f64 / 1024.0,
            peaks.max().unwrap_or(0) as f64 / 1024.0
        );
        println!(
            "  {:<15} {:>4} {:>9} {:>10} {:>13} {:>10.3} {:>9} {:>10} {:>5.1}×",
            row.label(),
            row.jobs,
            fmt_duration(wfe_wall),
            fmt_duration(wfe_wall / PHASES as u32),
            peak_range,
            checkpoints as f64 / PHASES as f64,
            fmt_duration(make_wall),
            fmt_duration(make_wall / PHASES as u32),
            ratio(wfe_wall, make_wall),
        );
    }
    let spawn_floor = median_duration(floor);
    println!(
        "  peak MB: lowest-highest ru_maxrss of the wfe process over the repeats (wait4 on its pid)"
    );
    println!(
        "  context: {PHASES} sequential `sh -c true` spawns from Rust alone take {} ({} each);",
        fmt_duration(spawn_floor),
        fmt_duration(spawn_floor / PHASES as u32)
    );
    println!(
        "           a 1-phase wfe run takes {} end to end (start-up, validation, run creation)",
        fmt_duration(median_duration(fixed))
    );
    rows
}

/// Runs a template in a fresh repository and checks the run completed.
fn run_wfe(wfe: &Path, sandbox: &Path, template: &Path, jobs: usize, phases: usize) -> Sample {
    let repo = fresh_repo(sandbox);
    let stdout_path = repo.path().with_extension("json");
    let stdout = File::create(&stdout_path).expect("a file for wfe's stdout");
    let mut command = Command::new(wfe);
    command
        .arg("run")
        .arg(template)
        .args(["--jobs", &jobs.to_string(), "--json", "--no-output"])
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        // Progress lines go to stderr; a terminal would slow wfe down for nothing.
        .stderr(Stdio::null());
    let (status, wall, peak_kb) = measure(&mut command);
    assert!(
        status.success(),
        "wfe run {} failed: {status}",
        template.display()
    );

    let text = fs::read_to_string(&stdout_path).expect("wfe's --json output");
    fs::remove_file(&stdout_path).expect("remove wfe's output");
    let run: Value = serde_json::from_str(&text).expect("wfe --json prints JSON");
    assert_eq!(run["status"], "completed", "the run did not complete");
    let completed = run["phases"]
        .as_array()
        .expect("a phases array")
        .iter()
        .filter(|p| p["status"] == "completed")
        .count();
    assert_eq!(completed, phases, "every phase must have completed");

    let refs = git(
        repo.path(),
        &["for-each-ref", "--format=%(refname)", "refs/wfe/runs/"],
    );
    let run_ref = refs.trim();
    assert_eq!(run_ref.lines().count(), 1, "one run ref: {refs}");
    let checkpoints = git(repo.path(), &["rev-list", "--count", run_ref])
        .trim()
        .parse()
        .expect("a commit count");
    Sample {
        wall,
        peak_kb,
        checkpoints,
    }
}

fn run_make(sandbox: &Path, makefile: &Path, jobs: usize) -> Sample {
    let dir = tempfile::tempdir_in(sandbox).expect("a dir for make");
    let mut command = Command::new("make");
    command
        // -r: no built-in rules, so make does only what the Makefile says.
        .args(["-r", "-s", &format!("-j{jobs}"), "-f"])
        .arg(makefile)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (status, wall, peak_kb) = measure(&mut command);
    assert!(
        status.success(),
        "make -f {} failed: {status}",
        makefile.display()
    );
    Sample {
        wall,
        peak_kb,
        checkpoints: 0,
    }
}

/// What spawning the phases' shells costs with no engine around them.
/// `Command::new("sh")` looks `sh` up on PATH, as wfe does.
fn spawn_floor(count: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        let status = Command::new("sh")
            .args(["-c", "true"])
            .stdin(Stdio::null())
            .status()
            .expect("spawn sh");
        assert!(status.success());
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------
// (c) checkpoints

/// One checkpoint's change: the same for every writer.
struct Step {
    path: String,
    bytes: Vec<u8>,
    summary: String,
    time: i64,
}

/// `CHECKPOINTS` steps over a growing tree: checkpoint n adds
/// `phases/p{n % 50}/artifacts/a{n}.json`, except every tenth, which rewrites
/// an earlier file, so the tree ends with 900 files of ~1 KB in 50 dirs.
fn steps() -> Vec<Step> {
    let file_path = |m: usize| format!("phases/p{}/artifacts/a{m}.json", m % CHECKPOINT_DIRS);
    (0..CHECKPOINTS)
        .map(|n| {
            let rewrite = n % REWRITE_EVERY == REWRITE_EVERY - 1;
            // A multiple of REWRITE_EVERY below n: a checkpoint that added a file.
            let file = if rewrite {
                n / 2 / REWRITE_EVERY * REWRITE_EVERY
            } else {
                n
            };
            let head = format!("{{\n  \"checkpoint\": {n},\n  \"file\": {file},\n  \"pad\": \"");
            let tail = "\"\n}\n";
            let pad = "x".repeat(1024 - head.len() - tail.len());
            Step {
                path: file_path(file),
                bytes: format!("{head}{pad}{tail}").into_bytes(),
                summary: format!("wfe: checkpoint {n}"),
                time: EPOCH + n as i64,
            }
        })
        .collect()
}

/// Repeated samples of the three writers.
struct CheckpointResults {
    /// Whole loop of 1000 `GitStore::commit`s.
    store: Vec<Duration>,
    /// Mean of checkpoints 1..=WINDOW, and of the last WINDOW.
    store_early: Vec<Duration>,
    store_late: Vec<Duration>,
    /// The whole fast-import process for 1000 commits.
    fast_import: Vec<Duration>,
    /// `PLUMBING_CHECKPOINTS` checkpoints of plumbing processes.
    plumbing: Vec<Duration>,
    /// The store and fast-import again on tmpfs (empty without one).
    store_tmpfs: Vec<Duration>,
    store_early_tmpfs: Vec<Duration>,
    store_late_tmpfs: Vec<Duration>,
    fast_import_tmpfs: Vec<Duration>,
    /// What one small file costs to create where the store writes.
    probe: Vec<Duration>,
    probe_tmpfs: Vec<Duration>,
}

impl CheckpointResults {
    fn store_each(&self) -> Duration {
        median_duration(self.store.iter().copied()) / CHECKPOINTS as u32
    }
    fn fast_import_each(&self) -> Duration {
        median_duration(self.fast_import.iter().copied()) / CHECKPOINTS as u32
    }
    fn plumbing_each(&self) -> Duration {
        median_duration(self.plumbing.iter().copied()) / PLUMBING_CHECKPOINTS as u32
    }
    fn early(&self) -> Duration {
        median_duration(self.store_early.iter().copied())
    }
    fn late(&self) -> Duration {
        median_duration(self.store_late.iter().copied())
    }
    /// The early and late windows on tmpfs, if measured.
    fn tmpfs_windows(&self) -> Option<(Duration, Duration)> {
        (!self.store_tmpfs.is_empty()).then(|| {
            (
                median_duration(self.store_early_tmpfs.iter().copied()),
                median_duration(self.store_late_tmpfs.iter().copied()),
            )
        })
    }
    /// Store and fast-import per checkpoint on tmpfs, if measured.
    fn tmpfs_each(&self) -> Option<(Duration, Duration)> {
        (!self.store_tmpfs.is_empty()).then(|| {
            (
                median_duration(self.store_tmpfs.iter().copied()) / CHECKPOINTS as u32,
                median_duration(self.fast_import_tmpfs.iter().copied()) / CHECKPOINTS as u32,
            )
        })
    }
}

/// Files the store creates per checkpoint: one pack and its index holding
/// the checkpoint's objects (a blob, the trees `artifacts/`, `p{n}/`,
/// `phases/` and the root, the commit), and the ref's lock.
const FILES_PER_CHECKPOINT: u32 = 3;

fn bench_checkpoints(places: &Places) -> CheckpointResults {
    println!(
        "\n(c) {CHECKPOINTS} checkpoints, each adding or changing one ~1 KB file \
         (tree grows to {} files in {CHECKPOINT_DIRS} dirs)",
        CHECKPOINTS - CHECKPOINTS / REWRITE_EVERY
    );
    let sandbox = places.main;
    let steps = steps();
    let run = RunId::generate();
    let stream = sandbox.join("fast-import.stream");
    fs::write(&stream, fast_import_stream(&run, &steps)).expect("write the fast-import stream");

    let mut results = CheckpointResults {
        store: Vec::new(),
        store_early: Vec::new(),
        store_late: Vec::new(),
        fast_import: Vec::new(),
        plumbing: Vec::new(),
        store_tmpfs: Vec::new(),
        store_early_tmpfs: Vec::new(),
        store_late_tmpfs: Vec::new(),
        fast_import_tmpfs: Vec::new(),
        probe: Vec::new(),
        probe_tmpfs: Vec::new(),
    };
    for _ in 0..REPEATS {
        results.probe.push(file_probe(sandbox));
        let store = store_checkpoints(sandbox, &run, &steps);
        let fast_import = fast_import_checkpoints(sandbox, &run, &stream);
        let plumbing = plumbing_checkpoints(sandbox, &run, &steps[..PLUMBING_CHECKPOINTS]);
        // The three writers must have built the same trees, or the
        // comparison compares different work.
        assert_eq!(
            store.final_tree, fast_import.1,
            "store vs fast-import trees"
        );
        assert_eq!(
            store.tree_at_plumbing_end, plumbing.1,
            "store vs plumbing trees"
        );

        results.store.push(store.total);
        let (early, late) = windows(&store.each);
        results.store_early.push(early);
        results.store_late.push(late);
        results.fast_import.push(fast_import.0);
        results.plumbing.push(plumbing.0);

        if let Some(tmpfs) = places.tmpfs {
            results.probe_tmpfs.push(file_probe(tmpfs));
            let store = store_checkpoints(tmpfs, &run, &steps);
            let (early, late) = windows(&store.each);
            results.store_tmpfs.push(store.total);
            results.store_early_tmpfs.push(early);
            results.store_late_tmpfs.push(late);
            results
                .fast_import_tmpfs
                .push(fast_import_checkpoints(tmpfs, &run, &stream).0);
        }
    }

    let line = |what: &str, total: Duration, count: usize, each: Duration, note: &str| {
        println!(
            "  {what:<26} {:>9} for {count:>4} = {:>9} per checkpoint  {note}",
            fmt_duration(total),
            fmt_duration(each)
        );
    };
    line(
        "wfe store (GitStore)",
        median_duration(results.store.iter().copied()),
        CHECKPOINTS,
        results.store_each(),
        "in-process; one pack per checkpoint; CAS ref update + reflog each",
    );
    line(
        "git fast-import",
        median_duration(results.fast_import.iter().copied()),
        CHECKPOINTS,
        results.fast_import_each(),
        "whole process; one pack; ref written once at the end",
    );
    line(
        "git plumbing processes",
        median_duration(results.plumbing.iter().copied()),
        PLUMBING_CHECKPOINTS,
        results.plumbing_each(),
        "5 processes each (hash-object, update-index, write-tree, commit-tree, update-ref)",
    );
    println!(
        "  store, mean of checkpoints 1-{WINDOW}: {}; of checkpoints {}-{}: {} ({:.2}×)",
        fmt_duration(results.early()),
        CHECKPOINTS - WINDOW + 1,
        CHECKPOINTS,
        fmt_duration(results.late()),
        ratio(results.late(), results.early()),
    );
    println!("  (the three writers' trees were checked identical)");
    let probe = median_duration(results.probe.iter().copied());
    println!(
        "  filesystem: creating a small file and renaming it into a fan-out dir costs {} here;",
        fmt_duration(probe)
    );
    println!(
        "    the store creates {FILES_PER_CHECKPOINT} per checkpoint (a pack, its index, the ref lock): \
         {FILES_PER_CHECKPOINT} × that = {}, next to its {} per checkpoint",
        fmt_duration(probe * FILES_PER_CHECKPOINT),
        fmt_duration(results.store_each()),
    );
    if let (Some((store, fast)), Some((early, late))) =
        (results.tmpfs_each(), results.tmpfs_windows())
    {
        println!(
            "  on tmpfs (a file costs {}): store {} vs fast-import {} per checkpoint ({:.2}×);",
            fmt_duration(median_duration(results.probe_tmpfs.iter().copied())),
            fmt_duration(store),
            fmt_duration(fast),
            ratio(store, fast),
        );
        println!(
            "    store checkpoints 1-{WINDOW}: {}, {}-{}: {} ({:.2}×)",
            fmt_duration(early),
            CHECKPOINTS - WINDOW + 1,
            CHECKPOINTS,
            fmt_duration(late),
            ratio(late, early),
        );
    }
    results
}

/// The mean cost of checkpoints 1..=WINDOW and of the last WINDOW
/// (checkpoint 0 creates the run's ref, a different operation).
fn windows(each: &[Duration]) -> (Duration, Duration) {
    (mean(&each[1..=WINDOW]), mean(&each[each.len() - WINDOW..]))
}

/// What the filesystem charges for what a loose object write does: create
/// a temp file, write ~300 bytes, rename it into a fan-out directory. The
/// 256 fan-out dirs are made first, as they exist after a run's first few
/// hundred objects: this is the steady-state cost.
fn file_probe(dir: &Path) -> Duration {
    const FILES: u32 = 500;
    let probe = tempfile::tempdir_in(dir).expect("a probe dir");
    let fan_out = |i: u32| probe.path().join(format!("{:02x}", i % 256));
    for i in 0..256 {
        fs::create_dir(fan_out(i)).expect("a fan-out dir");
    }
    let start = Instant::now();
    for i in 0..FILES {
        let tmp = probe.path().join(format!(".tmp{i}"));
        let mut file = File::create_new(&tmp).expect("create a probe file");
        file.write_all(&[b'x'; 300]).expect("write a probe file");
        drop(file);
        fs::rename(&tmp, fan_out(i).join(format!("{i:038}"))).expect("rename a probe file");
    }
    start.elapsed() / FILES
}

struct StoreRun {
    total: Duration,
    each: Vec<Duration>,
    final_tree: String,
    tree_at_plumbing_end: String,
}

fn store_checkpoints(sandbox: &Path, run: &RunId, steps: &[Step]) -> StoreRun {
    let repo = fresh_repo(sandbox);
    let store = GitStore::discover(repo.path()).expect("open the store");
    let mut tip: Option<CheckpointId> = None;
    let mut ids = Vec::with_capacity(steps.len());
    let mut each = Vec::with_capacity(steps.len());
    let start = Instant::now();
    for step in steps {
        let one = Instant::now();
        let id = store
            .commit(
                run,
                tip.as_ref(),
                &[Change::write(step.path.clone(), step.bytes.clone())],
                &Message::new(step.summary.clone()).trailer(Trailer::Run, run.as_str()),
                step.time,
            )
            .expect("a checkpoint");
        each.push(one.elapsed());
        ids.push(id.clone());
        tip = Some(id);
    }
    let total = start.elapsed();
    drop(store);

    let count = git(repo.path(), &["rev-list", "--count", &run.ref_name()]);
    assert_eq!(
        count.trim(),
        steps.len().to_string(),
        "one commit per checkpoint"
    );
    StoreRun {
        total,
        each,
        final_tree: tree_of(repo.path(), &run.ref_name()),
        tree_at_plumbing_end: tree_of(repo.path(), &ids[PLUMBING_CHECKPOINTS - 1].0),
    }
}

/// One `commit` per checkpoint, each from the previous one's mark.
fn fast_import_stream(run: &RunId, steps: &[Step]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let message = Message::new(step.summary.clone())
            .trailer(Trailer::Run, run.as_str())
            .render();
        write!(
            out,
            "commit {}\nmark :{}\ncommitter {AUTHOR_NAME} <{AUTHOR_EMAIL}> {} +0000\ndata {}\n{message}",
            run.ref_name(),
            n + 1,
            step.time,
            message.len(),
        )
        .expect("write to a Vec");
        if n > 0 {
            writeln!(out, "from :{n}").expect("write to a Vec");
        }
        writeln!(
            out,
            "M 100644 inline {}\ndata {}",
            step.path,
            step.bytes.len()
        )
        .expect("write to a Vec");
        out.extend_from_slice(&step.bytes);
        out.push(b'\n');
    }
    out
}

/// Runs fast-import on the stream; returns its wall time and the final tree.
fn fast_import_checkpoints(sandbox: &Path, run: &RunId, stream: &Path) -> (Duration, String) {
    let repo = fresh_repo(sandbox);
    let mut command = Command::new("git");
    command
        .args(["fast-import", "--quiet"])
        .current_dir(repo.path())
        .stdin(File::open(stream).expect("open the stream"))
        .stdout(Stdio::null());
    let (status, wall, _) = measure(&mut command);
    assert!(status.success(), "git fast-import failed: {status}");
    let count = git(repo.path(), &["rev-list", "--count", &run.ref_name()]);
    assert_eq!(count.trim(), CHECKPOINTS.to_string(), "fast-import commits");
    (wall, tree_of(repo.path(), &run.ref_name()))
}

/// What a script would do with git alone: five processes per checkpoint,
/// a private index that accumulates the tree, a CAS update of the ref.
fn plumbing_checkpoints(sandbox: &Path, run: &RunId, steps: &[Step]) -> (Duration, String) {
    let repo = fresh_repo(sandbox);
    let dir = repo.path();
    let index = dir.with_extension("index");
    let ref_name = run.ref_name();
    let zero = "0".repeat(40);
    let mut tip: Option<String> = None;
    let start = Instant::now();
    for step in steps {
        let blob = git_with(dir, &["hash-object", "-w", "--stdin"], &index, &step.bytes);
        let cacheinfo = format!("100644,{},{}", blob.trim(), step.path);
        git_with(
            dir,
            &["update-index", "--add", "--cacheinfo", &cacheinfo],
            &index,
            b"",
        );
        let tree = git_with(dir, &["write-tree"], &index, b"");
        let trailer = format!("Wfe-Run: {run}");
        let mut args = vec![
            "commit-tree",
            tree.trim(),
            "-m",
            &step.summary,
            "-m",
            &trailer,
        ];
        if let Some(parent) = &tip {
            args.extend(["-p", parent.as_str()]);
        }
        let date = format!("{} +0000", step.time);
        let commit = Command::new("git")
            .args(&args)
            .current_dir(dir)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .stdin(Stdio::null())
            .output()
            .expect("spawn git commit-tree");
        assert!(commit.status.success(), "git commit-tree failed");
        let commit = String::from_utf8(commit.stdout).expect("a commit id");
        let old = tip.as_deref().unwrap_or(&zero);
        git(
            dir,
            &[
                "update-ref",
                "--create-reflog",
                "-m",
                &step.summary,
                &ref_name,
                commit.trim(),
                old,
            ],
        );
        tip = Some(commit.trim().to_string());
    }
    let wall = start.elapsed();
    (wall, tree_of(dir, &ref_name))
}

// ---------------------------------------------------------------------------
// the summary

fn summary(engine: Option<&[EngineRow]>, checkpoints: Option<&CheckpointResults>) {
    println!("\nsummary (goals from the project brief; timings vary ±20% on a noisy machine)");
    println!(
        "  {:<46} {:>10} {:>10} {:>7} {:>7}  verdict",
        "measure", "wfe", "baseline", "ratio", "goal"
    );
    let line = |what: &str, wfe: String, base: String, ratio: String, goal: String, verdict| {
        println!("  {what:<46} {wfe:>10} {base:>10} {ratio:>7} {goal:>7}  {verdict}");
    };
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    // Goals are judged on the main place; tmpfs rows only show how much of
    // a miss the filesystem explains.
    let row = |what: &str, wfe: Duration, base: Duration, goal: f64, judged: bool| {
        let value = ratio(wfe, base);
        line(
            what,
            fmt_duration(wfe),
            fmt_duration(base),
            format!("{value:.2}×"),
            format!("≤{goal}×"),
            if judged {
                met(value <= goal)
            } else {
                "(context)"
            },
        );
    };
    if let Some(rows) = engine {
        for r in rows {
            let (w, m) = (r.wfe_wall() / PHASES as u32, r.make_wall() / PHASES as u32);
            let what = format!("per phase, {} -j{} (wfe vs make)", r.label(), r.jobs);
            row(&what, w, m, GOAL_PHASE_RATIO, !r.tmpfs);
        }
        let peak_kb = rows.iter().map(EngineRow::peak_kb).max();
        let peak = peak_kb.unwrap_or(0) as f64 / 1024.0;
        line(
            &format!("peak memory, {PHASES}-phase runs (worst)"),
            format!("{peak:.1} MB"),
            "-".into(),
            "-".into(),
            format!("≤{GOAL_PEAK_MB}MB"),
            met(peak <= GOAL_PEAK_MB),
        );
    }
    if let Some(checkpoints) = checkpoints {
        let (store, fast) = (checkpoints.store_each(), checkpoints.fast_import_each());
        let what = "per checkpoint (store vs fast-import)";
        row(what, store, fast, GOAL_CHECKPOINT_RATIO, true);
        if let Some((store, fast)) = checkpoints.tmpfs_each() {
            let what = "per checkpoint (tmpfs) (store vs fast-import)";
            row(what, store, fast, GOAL_CHECKPOINT_RATIO, false);
        }
        let plumbing = checkpoints.plumbing_each();
        line(
            "per checkpoint (store vs git plumbing)",
            fmt_duration(store),
            fmt_duration(plumbing),
            format!("{:.2}×", ratio(store, plumbing)),
            "-".into(),
            "(no goal)",
        );
        let what = format!("checkpoint ~{CHECKPOINTS} vs ~{WINDOW} (store)");
        let (late, early) = (checkpoints.late(), checkpoints.early());
        row(&what, late, early, GOAL_GROWTH_RATIO, true);
        if let Some((early, late)) = checkpoints.tmpfs_windows() {
            let what = format!("checkpoint ~{CHECKPOINTS} vs ~{WINDOW} (tmpfs) (store)");
            row(&what, late, early, GOAL_GROWTH_RATIO, false);
        }
    }
}

// ---------------------------------------------------------------------------
// helpers

/// Spawns `command`, waits for it and returns its exit status, wall time
/// and peak resident memory in KB.
///
/// The peak is the child's own high-water mark (`VmHWM` in
/// `/proc/<pid>/status`), sampled by a second thread every millisecond
/// while this one waits, so the wall time is not stretched by the sampling.
/// A sample taken after the last one and before exit is all it can miss;
/// `wait4` would give the exact figure but only through `unsafe`, and
/// `getrusage(RUSAGE_CHILDREN)` merges all children once several ran.
fn measure(command: &mut Command) -> (ExitStatus, Duration, u64) {
    common::measure_peak(command)
}

/// A new repository with one commit and a fixed identity, in the sandbox.
fn fresh_repo(sandbox: &Path) -> TempDir {
    let dir = tempfile::tempdir_in(sandbox).expect("a repo dir");
    let path = dir.path();
    git(path, &["init", "-q", "-b", "main"]);
    git(path, &["config", "user.name", AUTHOR_NAME]);
    git(path, &["config", "user.email", AUTHOR_EMAIL]);
    git(
        path,
        &["commit", "-q", "--allow-empty", "-m", "initial commit"],
    );
    dir
}

/// Runs git with a private index and `input` on stdin.
fn git_with(dir: &Path, args: &[&str], index: &Path, input: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_INDEX_FILE", index)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn git");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write to git");
    let out = child.wait_with_output().expect("wait for git");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).expect("git prints UTF-8")
}

fn median_u64(values: impl IntoIterator<Item = u64>) -> u64 {
    let mut values: Vec<u64> = values.into_iter().collect();
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}
