//! How fast search is over a large repository of runs.
//!
//! `cargo bench --bench search` generates (seeded, through the run store) a
//! repository of `WFE_BENCH_RUNS` runs (default 10,000), each two
//! checkpoints with ten artifacts of English-like text, five phase logs and
//! sometimes a comment; then measures, in one go: the full index build
//! (time, size against the artifacts' raw JSON), the incremental update
//! after one checkpoint (median, p99), catch-up after 1 and 100 new runs,
//! and query latency (p50, p99) for a rare word, a common word, a phrase
//! and a field query, next to `git grep` for the same over the same refs.
//! It prints a table with each goal met or missed.
//!
//! `WFE_BENCH_REPO=DIR` reuses (or generates once into) DIR instead of a
//! temporary directory, so the measurements can be repeated without
//! generating again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wfe::index::{Search, SearchIndex};
use wfe::store::{Change, GitStore, Message, RunHead, RunId, RunStore, Trailer};

/// A word so rare it is planted in a handful of artifacts only.
const RARE: &str = "quixotically";
/// The phrase planted in about one artifact in a hundred.
const PHRASE: &str = "flaky integration harness";
/// The base time of generated runs (2026-01-01).
const EPOCH: i64 = 1_767_225_600;

fn main() {
    let runs: usize = std::env::var("WFE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let (repo, _temp) = match std::env::var_os("WFE_BENCH_REPO") {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let temp = tempfile::tempdir().unwrap_or_else(|e| fail(&format!("no temp dir: {e}")));
            (temp.path().join("repo"), Some(temp))
        }
    };
    let marker = repo.join(".git/wfe-bench-generated");
    if marker.is_file() {
        eprintln!("reusing the repository at {}", repo.display());
    } else {
        let start = Instant::now();
        generate(&repo, runs);
        let _ = std::fs::write(&marker, runs.to_string());
        eprintln!(
            "generated {runs} runs in {:.1}s at {}",
            start.elapsed().as_secs_f64(),
            repo.display()
        );
    }
    let store = GitStore::discover(&repo).unwrap_or_else(|e| fail(&e.to_string()));
    let heads = store.runs().unwrap_or_else(|e| fail(&e.to_string()));
    let (artifacts, raw_bytes, log_bytes) = artifacts_size(&store, &heads);
    let dir = repo.join(".git/wfe/index");
    let mut table = Table::default();

    // Full build.
    let start = Instant::now();
    let mut index = SearchIndex::create(&dir).unwrap_or_else(|e| fail(&e.to_string()));
    let report = index
        .catch_up(&store, Duration::from_secs(60))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let build = start.elapsed();
    let size = index.size_bytes();
    table.row(
        "full index build",
        format!(
            "{:.1}s ({} runs, {} documents, {} artifacts)",
            build.as_secs_f64(),
            report.runs_indexed,
            report.docs_added,
            artifacts
        ),
        None,
    );
    let share = size as f64 / raw_bytes.max(1) as f64;
    table.row(
        "index size / artifacts' raw JSON",
        format!(
            "{:.1} MB / {:.1} MB = {:.0}%",
            size as f64 / 1e6,
            raw_bytes as f64 / 1e6,
            share * 100.0
        ),
        Some(("≤ 50%", share <= 0.5)),
    );
    table.row(
        "  also indexed: logs (raw JSON lines)",
        format!("{:.1} MB", log_bytes as f64 / 1e6),
        None,
    );
    let parts = index.space_usage().unwrap_or_default();
    table.row(
        "  largest parts",
        parts
            .iter()
            .take(6)
            .map(|(what, bytes)| format!("{what} {:.1} MB", *bytes as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", "),
        None,
    );

    // Nothing new: what every `wfe search` pays before searching.
    let idle = sample(20, || {
        let start = Instant::now();
        let _ = index.catch_up(&store, Duration::from_secs(1));
        start.elapsed()
    });
    table.row(
        "catch-up, nothing new (lists every ref)",
        format!("p50 {}", ms(percentile(&idle, 0.5))),
        None,
    );

    // One checkpoint on an indexed run, as a runner makes them, indexed as
    // its background indexer does: through one kept writer.
    let mut rng = Rng(0x5eed_0001);
    let mut updates = Vec::new();
    index.keep_writer(true);
    for i in 0..200 {
        let head = &heads[(i * 37) % heads.len()];
        let tip = store
            .tip(&head.run)
            .ok()
            .flatten()
            .unwrap_or_else(|| head.tip.id.clone());
        let changes = vec![
            Change::write(
                format!("phases/extra{i}/artifacts/notes.json"),
                pretty(&notes(&mut rng)),
            ),
            Change::write(
                format!("phases/extra{i}/state.json"),
                pretty(&json!({ "id": format!("extra{i}"), "status": "completed", "attempt": 1 })),
            ),
        ];
        let message = Message::new("wfe: extra completed").trailer(Trailer::Status, "completed");
        if store
            .commit(&head.run, Some(&tip), &changes, &message, EPOCH + 86_400)
            .is_err()
        {
            continue;
        }
        let start = Instant::now();
        let _ = index.catch_up_run(&store, &head.run, Duration::from_secs(5));
        updates.push(start.elapsed());
    }
    updates.sort();
    let median = percentile(&updates, 0.5);
    table.row(
        "incremental update per checkpoint",
        format!(
            "median {}, p99 {}",
            ms(median),
            ms(percentile(&updates, 0.99))
        ),
        Some(("median ≤ 10 ms", median <= Duration::from_millis(10))),
    );
    // What the indexer pays once quiet: the background merges.
    let start = Instant::now();
    index.keep_writer(false);
    index
        .release_writer()
        .unwrap_or_else(|e| fail(&e.to_string()));
    table.row(
        "  then letting go of the writer (merges)",
        ms(start.elapsed()),
        None,
    );

    // New runs, as if fetched or written by another process.
    for n in [1, 100] {
        let base = heads.len() + if n == 1 { 0 } else { 1 };
        let mut rng = Rng(0xfeed + n as u64);
        for i in 0..n {
            write_run(&store, &mut rng, base + i);
        }
        let start = Instant::now();
        let report = index
            .catch_up(&store, Duration::from_secs(10))
            .unwrap_or_else(|e| fail(&e.to_string()));
        table.row(
            &format!(
                "catch-up after {n} new run{}",
                if n == 1 { "" } else { "s" }
            ),
            format!(
                "{} ({} runs indexed)",
                ms(start.elapsed()),
                report.runs_indexed
            ),
            None,
        );
    }

    // Queries, against git grep over the same refs.
    let refs: Vec<String> = store
        .runs()
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.run.ref_name())
        .collect();
    let queries = [
        ("rare word", RARE.to_string(), vec!["-w", "-e", RARE]),
        (
            "common word",
            "system".to_string(),
            vec!["-w", "-e", "system"],
        ),
        ("phrase", format!("\"{PHRASE}\""), vec!["-F", "-e", PHRASE]),
        (
            "field query",
            "verdict:changes_requested".to_string(),
            vec!["-F", "-e", "\"verdict\": \"changes_requested\""],
        ),
    ];
    for (name, query, grep) in queries {
        let search = Search::new(query.clone());
        let mut hits = 0;
        let times = sample(100, || {
            let start = Instant::now();
            hits = index.search(&store, &search).map_or(0, |h| h.len());
            start.elapsed()
        });
        let p50 = percentile(&times, 0.5);
        let grep_time = git_grep(&repo, &grep, &refs);
        let ratio = grep_time.as_secs_f64() / p50.as_secs_f64().max(1e-9);
        table.row(
            &format!("query: {name} `{query}`"),
            format!(
                "p50 {}, p99 {} ({hits} hits shown); git grep {} = {:.0}×",
                ms(p50),
                ms(percentile(&times, 0.99)),
                ms(grep_time),
                ratio
            ),
            Some((
                "p50 ≤ 20 ms, ≥ 50× git grep",
                p50 <= Duration::from_millis(20) && ratio >= 50.0,
            )),
        );
    }

    // The whole command, process start to exit.
    let wfe = env!("CARGO_BIN_EXE_wfe");
    let process = sample(10, || {
        let start = Instant::now();
        let _ = Command::new(wfe)
            .args(["search", RARE, "-q"])
            .current_dir(&repo)
            .output();
        start.elapsed()
    });
    table.row(
        "`wfe search` as a process (catch-up + query)",
        format!("p50 {}", ms(percentile(&process, 0.5))),
        None,
    );
    table.print(runs);
}

/// Writes `runs` runs into a new repository at `path`.
fn generate(path: &Path, runs: usize) {
    let _ = std::fs::remove_dir_all(path);
    if let Err(e) = std::fs::create_dir_all(path) {
        fail(&format!("cannot create {}: {e}", path.display()));
    }
    let store =
        GitStore::init_with_empty_commit(path, EPOCH).unwrap_or_else(|e| fail(&e.to_string()));
    let mut rng = Rng(0x5eed);
    for i in 0..runs {
        write_run(&store, &mut rng, i);
        if i % 1000 == 999 {
            eprintln!("  {} runs written", i + 1);
        }
    }
    // As a repository that has seen `git gc`: packed refs and objects.
    for args in [&["pack-refs", "--all"][..], &["repack", "-adq"][..]] {
        let _ = Command::new("git").args(args).current_dir(path).status();
    }
}

/// The phases of a generated run and the artifacts each writes.
const PHASES: [(&str, [&str; 2]); 5] = [
    ("research", ["notes", "sources"]),
    ("spec", ["spec", "decision"]),
    ("plan", ["tasks", "risks"]),
    ("review", ["review", "summary"]),
    ("test", ["report", "coverage"]),
];

/// Writes one run as two checkpoints (three phases, then two and the end).
fn write_run(store: &GitStore, rng: &mut Rng, n: usize) {
    let run = run_id(rng, n);
    let template = json!({
        "name": "feature",
        "phases": PHASES.iter().map(|(id, outs)| json!({
            "id": id, "kind": "script", "run": "true",
            "outputs": outs.iter().map(|o| (o.to_string(), json!("any"))).collect::<serde_json::Map<_, _>>()
        })).collect::<Vec<_>>()
    });
    let time = EPOCH + n as i64 * 60;
    let record = |status: &str| {
        pretty(&json!({
            "id": run.as_str(), "template": "feature", "status": status,
            "args": { "feature": sentence(&mut Rng(n as u64 + 1), 4) }, "created_at": "2026-01-01T00:00:00.000Z"
        }))
    };
    let phase_changes =
        |rng: &mut Rng, range: std::ops::Range<usize>, changes: &mut Vec<Change>| {
            for (id, outs) in &PHASES[range] {
                for out in outs {
                    let doc = artifact(rng, id, out);
                    let bytes = pretty(&doc);
                    changes.push(Change::write(
                        format!("phases/{id}/artifacts/{out}.json"),
                        bytes,
                    ));
                }
                let lines: Vec<String> = (0..rng.below(4) + 2)
                .map(|_| {
                    json!({ "time": "2026-01-01T00:00:00.000Z", "attempt": 1, "stream": "stdout",
                            "line": sentence_between(rng, 6, 10) })
                    .to_string()
                })
                .collect();
                changes.push(Change::write(
                    format!("phases/{id}/log.jsonl"),
                    lines.join("\n") + "\n",
                ));
                changes.push(Change::write(
                    format!("phases/{id}/state.json"),
                    pretty(
                        &json!({ "id": id, "kind": "script", "status": "completed", "attempt": 1,
                                "finished_at": "2026-01-01T00:00:00.000Z", "artifacts": outs }),
                    ),
                ));
            }
        };
    let mut first = vec![
        Change::write("run.json", record("running")),
        Change::write("template.json", pretty(&template)),
    ];
    phase_changes(rng, 0..3, &mut first);
    let message = |status: &str| {
        Message::new("wfe: phases completed")
            .trailer(Trailer::Run, run.as_str())
            .trailer(Trailer::Template, "feature")
            .trailer(Trailer::Status, status)
    };
    let Ok(tip) = store.commit(&run, None, &first, &message("running"), time) else {
        fail("cannot write a run");
    };
    let mut second = vec![Change::write("run.json", record("completed"))];
    phase_changes(rng, 3..5, &mut second);
    if rng.below(5) == 0 {
        let comment = json!({ "time": "2026-01-01T00:00:00.000Z", "author": "Ada <ada@example.com>",
                              "text": sentence(rng, 12) });
        second.push(Change::write("comments.jsonl", comment.to_string() + "\n"));
    }
    if store
        .commit(&run, Some(&tip), &second, &message("completed"), time + 30)
        .is_err()
    {
        fail("cannot write a run");
    }
}

/// A seeded run id: a ULID from the run's number and the generator.
fn run_id(rng: &mut Rng, n: usize) -> RunId {
    const CROCKFORD: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let millis = (EPOCH as u64 * 1000) + n as u64;
    let mut text = String::new();
    for i in (0..10).rev() {
        text.push(CROCKFORD[((millis >> (i * 5)) & 31) as usize] as char);
    }
    for _ in 0..16 {
        text.push(CROCKFORD[rng.below(32)] as char);
    }
    RunId::parse(&text).unwrap_or_else(|| fail("generated an invalid run id"))
}

/// An artifact shaped by its name.
fn artifact(rng: &mut Rng, phase: &str, name: &str) -> Value {
    match name {
        "review" => {
            let verdict = pick(rng, &["approve", "changes_requested", "reject"]);
            json!({
                "verdict": verdict,
                "summary": paragraph(rng, 2),
                "findings": (0..rng.below(5)).map(|_| json!({
                    "severity": pick(rng, &["blocker", "major", "minor", "nit"]),
                    "message": sentence_between(rng, 8, 12),
                    "location": { "file": format!("src/{}/{}.rs", word(rng), word(rng)), "line": rng.below(900) + 1 }
                })).collect::<Vec<_>>()
            })
        }
        "tasks" => json!({
            "tasks": (0..rng.below(6) + 2).map(|i| json!({
                "id": format!("T{}", i + 1),
                "title": sentence_between(rng, 4, 5),
                "description": paragraph(rng, 1),
                "status": pick(rng, &["todo", "doing", "done"])
            })).collect::<Vec<_>>()
        }),
        "spec" => json!({
            "title": sentence(rng, 5),
            "summary": paragraph(rng, 2),
            "requirements": (0..rng.below(5) + 2).map(|i| json!({
                "id": format!("R{}", i + 1), "priority": pick(rng, &["must", "should", "could"]),
                "text": sentence_between(rng, 10, 10)
            })).collect::<Vec<_>>()
        }),
        "report" => json!({
            "passed": rng.below(4) != 0,
            "total": rng.below(400) + 10,
            "failures": (0..rng.below(3)).map(|_| json!({
                "test": format!("{}::{}", word(rng), word(rng)), "message": sentence(rng, 10)
            })).collect::<Vec<_>>()
        }),
        _ => {
            let sentences = 1 + rng.below(3);
            json!({
            "topic": format!("{phase} {name}"),
            "summary": paragraph(rng, sentences),
            "points": (0..rng.below(4) + 1).map(|_| sentence_between(rng, 8, 14)).collect::<Vec<_>>()
            })
        }
    }
}

fn notes(rng: &mut Rng) -> Value {
    json!({ "summary": paragraph(rng, 2), "points": [sentence(rng, 12), sentence(rng, 9)] })
}

fn pick(rng: &mut Rng, options: &[&'static str]) -> &'static str {
    options[rng.below(options.len())]
}

/// Common English words, then made-up ones: a Zipf-like vocabulary.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "this",
    "be",
    "by",
    "not",
    "are",
    "from",
    "or",
    "when",
    "which",
    "should",
    "must",
    "we",
    "new",
    "all",
    "system",
    "parser",
    "build",
    "test",
    "error",
    "config",
    "file",
    "user",
    "change",
    "run",
    "phase",
    "review",
    "output",
    "input",
    "value",
    "cache",
    "index",
    "query",
    "server",
    "client",
    "request",
    "response",
    "module",
    "function",
    "type",
    "field",
    "schema",
    "commit",
    "branch",
    "merge",
    "release",
    "version",
    "feature",
    "bug",
    "fix",
    "report",
    "log",
    "line",
    "path",
    "token",
    "model",
    "agent",
    "prompt",
    "timeout",
    "retry",
    "lock",
    "thread",
    "memory",
    "disk",
    "network",
    "latency",
    "throughput",
    "failure",
    "success",
    "check",
    "validate",
    "format",
    "document",
    "artifact",
    "template",
    "store",
    "read",
    "write",
    "update",
    "delete",
    "create",
    "list",
    "show",
    "handle",
    "parse",
    "render",
    "compile",
    "deploy",
    "monitor",
    "metric",
    "alert",
    "database",
    "migration",
    "table",
    "column",
    "row",
    "key",
    "map",
    "queue",
    "event",
];

/// Syllables for made-up words, the long tail of the vocabulary.
const SYLLABLES: &[&str] = &[
    "ka", "ren", "lo", "mi", "tas", "por", "vel", "din", "ust", "ar", "qua", "bel", "sor", "ith",
    "nex", "tor", "al", "pen", "mur", "os", "lin", "gra", "ve", "dor", "pha", "sil", "cu", "ran",
];

/// How many distinct words the text draws from.
const VOCABULARY: usize = 30_000;

/// A word drawn with Zipf's law (frequency ∝ 1/rank), as in English: the
/// common words first, then made-up ones for the long tail.
fn word(rng: &mut Rng) -> String {
    static CUMULATIVE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let cumulative = CUMULATIVE.get_or_init(|| {
        let mut total = 0.0;
        (1..=VOCABULARY)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect()
    });
    let target = rng.unit() * cumulative[VOCABULARY - 1];
    let rank = cumulative.partition_point(|&c| c < target);
    if rank < WORDS.len() {
        return WORDS[rank].to_string();
    }
    let mut seed = rank as u64 * 0x9e37_79b9_7f4a_7c15;
    let len = 2 + (seed % 3) as usize;
    let mut w = String::new();
    for _ in 0..len {
        w.push_str(SYLLABLES[(seed % SYLLABLES.len() as u64) as usize]);
        seed /= SYLLABLES.len() as u64;
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    w
}

fn sentence(rng: &mut Rng, words: usize) -> String {
    let mut out: Vec<String> = (0..words).map(|_| word(rng)).collect();
    if rng.below(100) == 0 {
        out.push(PHRASE.to_string());
    }
    if rng.below(20_000) == 0 {
        out.push(RARE.to_string());
    }
    let mut text = out.join(" ");
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    text + "."
}

/// A sentence of `min` to `min + spread - 1` words.
fn sentence_between(rng: &mut Rng, min: usize, spread: usize) -> String {
    let n = min + rng.below(spread);
    sentence(rng, n)
}

fn paragraph(rng: &mut Rng, sentences: usize) -> String {
    (0..sentences)
        .map(|_| {
            let n = 6 + rng.below(14);
            sentence(rng, n)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How many artifacts the runs' tips hold, their bytes, and the bytes of
/// their logs (indexed too, but not part of the size goal).
fn artifacts_size(store: &GitStore, heads: &[RunHead]) -> (usize, u64, u64) {
    let (mut count, mut bytes, mut logs) = (0, 0, 0);
    for head in heads {
        let tip = &head.tip.id;
        for (phase, _) in store.list_dir(tip, "phases").unwrap_or_default() {
            if let Ok(Some(data)) = store.read(tip, &format!("phases/{phase}/log.jsonl")) {
                logs += data.len() as u64;
            }
            let dir = format!("phases/{phase}/artifacts");
            for (name, _) in store.list_dir(tip, &dir).unwrap_or_default() {
                if let Ok(Some(data)) = store.read(tip, &format!("{dir}/{name}")) {
                    count += 1;
                    bytes += data.len() as u64;
                }
            }
        }
    }
    (count, bytes, logs)
}

/// `git grep -l ARGS REFS…`, the median of three.
fn git_grep(repo: &Path, args: &[&str], refs: &[String]) -> Duration {
    let times = sample(3, || {
        let start = Instant::now();
        let _ = Command::new("git")
            .arg("grep")
            .arg("-l")
            .args(args)
            .args(refs)
            .current_dir(repo)
            .output();
        start.elapsed()
    });
    percentile(&times, 0.5)
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn sample(n: usize, mut f: impl FnMut() -> Duration) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..n).map(|_| f()).collect();
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench: {message}");
    std::process::exit(1);
}

/// splitmix64: small, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A goal and whether it was met.
type Goal = Option<(&'static str, bool)>;

/// The results, printed once at the end.
#[derive(Default)]
struct Table {
    rows: Vec<(String, String, Goal)>,
}

impl Table {
    fn row(&mut self, what: &str, value: String, goal: Goal) {
        eprintln!("  {what}: {value}");
        self.rows.push((what.to_string(), value, goal));
    }

    fn print(&self, runs: usize) {
        println!("\nsearch benchmark: {runs} runs\n");
        let width = self
            .rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0);
        for (what, value, goal) in &self.rows {
            let goal = match goal {
                Some((text, true)) => format!("  [met: {text}]"),
                Some((text, false)) => format!("  [MISSED: {text}]"),
                None => String::new(),
            };
            println!("{what:<width$}  {value}{goal}");
        }
    }
}
