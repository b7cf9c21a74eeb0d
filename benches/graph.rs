//! How the run page's DAG layout and timeline scale with the run.
//!
//! `cargo bench --bench graph` builds run views in memory (no store) of
//! 100, 2,000 and 10,000 phases in four shapes: a chain; a 10-wide DAG
//! where each phase needs two of the layer above; a wide fan-out (a root,
//! a matrix of N combinations, a join), folded as the page first shows it
//! and with the matrix expanded (one layer N wide). For each it prints the
//! median of 5 of: layout (`layout_run`), SVG render (`render_svg`), SVG
//! size, and the timeline (`timeline_run` + `render_gantt_svg`).
//!
//! The goal (issue 15): a 2,000-phase run well under 100 ms in-process, a
//! 10,000-phase run quickly. Figures only, nothing asserted. `-- chain`
//! (or `dag`, `fanout`, `expanded`) runs one shape.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use wfe::engine::view::{
    LayoutOptions, PhaseRow, RunView, layout_run, render_gantt_svg, render_svg, timeline_run,
};
use wfe::engine::{PhaseState, PhaseStatus};
use wfe::template::PhaseKind;

const REPEATS: usize = 5;
const SIZES: [usize; 3] = [100, 2_000, 10_000];
const SHAPES: [&str; 4] = ["chain", "dag", "fanout", "expanded"];

/// A run of `n` phases in `shape`, a mix of states, each started a second
/// after the one before.
fn generate(shape: &str, n: usize) -> RunView {
    let id = |i: usize| format!("p{i:05}");
    let mut rows: Vec<(String, Vec<String>)> = Vec::with_capacity(n);
    match shape {
        "chain" => {
            for i in 0..n {
                rows.push((id(i), if i > 0 { vec![id(i - 1)] } else { vec![] }));
            }
        }
        "dag" => {
            for i in 0..n {
                let needs = if i >= 10 {
                    let (layer, k) = (i / 10, i % 10);
                    vec![
                        id((layer - 1) * 10 + k),
                        id((layer - 1) * 10 + (k + 1) % 10),
                    ]
                } else {
                    vec![]
                };
                rows.push((id(i), needs));
            }
        }
        _ => {
            rows.push(("root".into(), vec![]));
            let combos: Vec<String> = (0..n.saturating_sub(2))
                .map(|i| format!("test[n={i}]"))
                .collect();
            for c in &combos {
                rows.push((c.clone(), vec!["root".into()]));
            }
            rows.push(("join".into(), combos));
        }
    }
    let t0 = humantime::parse_rfc3339_weak("2026-01-02T03:00:00Z").expect("a stamp");
    let phases = rows
        .into_iter()
        .enumerate()
        .map(|(i, (id, needs))| {
            let mut state = PhaseState::pending(&id, PhaseKind::Script);
            state.status = match i % 10 {
                0..=6 => PhaseStatus::Completed,
                7 => PhaseStatus::Failed,
                8 => PhaseStatus::Running,
                _ => PhaseStatus::Pending,
            };
            if state.status != PhaseStatus::Pending {
                state.attempt = 1;
                state.started_at =
                    Some(wfe::time::format_stamp(t0 + Duration::from_secs(i as u64)));
            }
            if matches!(state.status, PhaseStatus::Completed | PhaseStatus::Failed) {
                state.finished_at = Some(wfe::time::format_stamp(
                    t0 + Duration::from_secs(i as u64 + 5),
                ));
                state.duration_ms = Some(5_000);
            }
            PhaseRow {
                state,
                needs,
                max_iters: None,
                children: Vec::new(),
                budget: None,
                nested: Default::default(),
                claim: None,
            }
        })
        .collect();
    let record = serde_json::from_value(json!({
        "id": "01bbbbbbbbbbbbbbbbbbbbbbbb", "template": shape, "template_source": "bench",
        "template_digest": "sha256:0", "args": {}, "status": "running", "auto": true,
        "base_commit": "0".repeat(40), "created_at": "2026-01-02T03:00:00Z", "schemas": {}
    }))
    .expect("a run record");
    RunView {
        checkpoint: "0".repeat(40),
        record,
        phases,
        layers: Vec::new(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| SHAPES.contains(&a.as_str()))
        .collect();
    println!(
        "{:<10} {:>7} {:>6} {:>7} {:>11} {:>11} {:>10} {:>11} {:>10}",
        "shape", "phases", "nodes", "layers", "layout", "svg", "svg size", "timeline", "crossings"
    );
    for shape in SHAPES {
        if !only.is_empty() && !only.iter().any(|o| o == shape) {
            continue;
        }
        for n in SIZES {
            let view = generate(shape, n);
            let options = if shape == "expanded" {
                LayoutOptions {
                    expanded: ["test".to_string()].into(),
                    ..LayoutOptions::default()
                }
            } else {
                LayoutOptions::default()
            };
            let now = humantime::parse_rfc3339_weak("2026-01-02T06:00:00Z")
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let (mut lay, mut draw, mut gantt) = (Vec::new(), Vec::new(), Vec::new());
            let mut last = None;
            for _ in 0..REPEATS {
                let t = Instant::now();
                let layout = layout_run(&view, &options);
                lay.push(t.elapsed());
                let t = Instant::now();
                let svg = render_svg(&layout);
                draw.push(t.elapsed());
                let t = Instant::now();
                let timeline = timeline_run(&view, now, &HashMap::new(), &options);
                let gsvg = render_gantt_svg(&timeline);
                gantt.push(t.elapsed());
                std::hint::black_box(&gsvg);
                last = Some((layout, svg.len()));
            }
            let Some((layout, size)) = last else { continue };
            println!(
                "{:<10} {:>7} {:>6} {:>7} {:>11} {:>11} {:>7} KB {:>11} {:>4} → {}",
                shape,
                n,
                layout.nodes.len(),
                layout.layers,
                ms(median(lay)),
                ms(median(draw)),
                size / 1024,
                ms(median(gantt)),
                layout.initial_crossings,
                layout.crossings,
            );
        }
    }
}
