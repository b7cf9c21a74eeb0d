//! How much artifact validation costs, next to what a phase costs anyway.
//!
//! `cargo bench --bench validate` prints: the compile time of the
//! `task-list` validator on first use, validation and parse+validate
//! throughput for ~10 KB `task-list` artifacts with the validator reused,
//! and both as a share of spawning `sh -c true` (the floor of a no-op
//! script phase). The goal is validation at most 5% of that. Figures only:
//! nothing is asserted, machines differ.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wfe::artifact::{Registry, parse_json_document};

/// A `task-list` artifact of at least `bytes` bytes, shaped like real output.
fn task_list(bytes: usize) -> Value {
    let mut tasks = Vec::new();
    let mut doc = json!({});
    for i in 1.. {
        tasks.push(json!({
            "id": format!("T{i}"),
            "title": format!("Implement part {i} of the parser and wire it into the CLI"),
            "description": "Read the config file, report every problem with its line and column, \
                            and keep the old behaviour behind a flag until the next release.",
            "status": if i % 3 == 0 { "done" } else { "todo" },
            "depends_on": if i > 1 { vec![format!("T{}", i - 1)] } else { Vec::new() },
            "acceptance_criteria": [
                "an end-to-end test covers the happy path",
                "every error names the file, line and column"
            ],
            "files": [format!("src/config/part{i}.rs"), "src/cli/commands/run.rs".to_string()]
        }));
        doc = json!({ "summary": "Parse the new config format.", "tasks": tasks });
        if serde_json::to_vec_pretty(&doc).map_or(0, |v| v.len()) >= bytes {
            break;
        }
    }
    doc
}

/// Runs `f` repeatedly for about `budget`; the mean time per call.
fn mean(budget: Duration, mut f: impl FnMut()) -> Duration {
    // Warm up caches and the allocator first.
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut n: u32 = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    start.elapsed() / n
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let dir = std::env::temp_dir().join(format!("wfe-bench-validate-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let registry = Registry::new(&dir);

    let start = Instant::now();
    let schema = match registry.compile("task-list") {
        Ok(schema) => schema,
        Err(e) => {
            eprintln!("cannot compile task-list: {e}");
            std::process::exit(1);
        }
    };
    let compile = start.elapsed();
    let start = Instant::now();
    let _again = registry.compile("task-list");
    let cached = start.elapsed();

    let doc = task_list(10 * 1024);
    let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    let tasks = doc["tasks"].as_array().map_or(0, Vec::len);
    if !schema.validate(&doc).is_empty() {
        eprintln!("the generated task-list sample does not match the schema");
        std::process::exit(1);
    }

    let budget = Duration::from_secs(2);
    let validate = mean(budget, || {
        black_box(schema.validate(black_box(&doc)));
    });
    let parse_validate = mean(budget, || {
        if let Ok(doc) = parse_json_document("task-list.json", black_box(&bytes)) {
            black_box(schema.validate(&doc));
        }
    });
    let strict_parse = mean(budget, || {
        black_box(parse_json_document("task-list.json", black_box(&bytes)).ok());
    });
    let serde_parse = mean(budget, || {
        black_box(serde_json::from_slice::<Value>(black_box(&bytes)).ok());
    });
    let mut invalid = doc.clone();
    invalid["tasks"][0]["status"] = json!("finished");
    invalid["tasks"][1]["acceptance_criteria"] = json!([]);
    let reject = mean(budget, || {
        black_box(schema.validate(black_box(&invalid)));
    });

    let spawns = 200;
    let start = Instant::now();
    for _ in 0..spawns {
        let status = Command::new("sh").args(["-c", "true"]).status();
        black_box(status.ok());
    }
    let spawn = start.elapsed() / spawns;

    let per_second = |d: Duration| 1.0 / d.as_secs_f64();
    let share = |d: Duration| 100.0 * d.as_secs_f64() / spawn.as_secs_f64();
    println!("task-list validator");
    println!(
        "  compile (first use, resolve + compile) {:>10.1} µs",
        micros(compile)
    );
    println!(
        "  compile (second use, cached)           {:>10.1} µs",
        micros(cached)
    );
    println!(
        "artifact: {} bytes, {tasks} tasks (pretty JSON)",
        bytes.len()
    );
    println!(
        "  validate (valid, reused)       {:>10.1} µs each {:>10.0} artifacts/s",
        micros(validate),
        per_second(validate)
    );
    println!(
        "  parse + validate               {:>10.1} µs each {:>10.0} artifacts/s",
        micros(parse_validate),
        per_second(parse_validate)
    );
    println!(
        "  parse only (duplicate keys checked) {:>5.1} µs each (serde_json::from_slice: {:.1} µs)",
        micros(strict_parse),
        micros(serde_parse)
    );
    println!(
        "  validate (invalid, 2 errors)   {:>10.1} µs each {:>10.0} artifacts/s",
        micros(reject),
        per_second(reject)
    );
    println!(
        "no-op phase floor: `sh -c true` spawn + wait, mean of {spawns}: {:.1} µs",
        micros(spawn)
    );
    println!(
        "  validate         = {:.2}% of a no-op spawn (goal <= 5%)",
        share(validate)
    );
    println!(
        "  parse + validate = {:.2}% of a no-op spawn",
        share(parse_validate)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
