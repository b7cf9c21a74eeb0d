//! Paths inside a checkpoint's tree (DESIGN.md §3), in one place.

/// `run.json`.
pub const RUN: &str = "run.json";
/// `template.json`: the frozen template.
pub const TEMPLATE: &str = "template.json";
/// `schemas/`: frozen schemas.
pub const SCHEMAS: &str = "schemas";
/// `phases/`.
pub const PHASES: &str = "phases";

/// `phases/<id>/state.json`.
pub fn state(phase: &str) -> String {
    format!("{PHASES}/{phase}/state.json")
}

/// `phases/<id>/log.jsonl`.
pub fn log(phase: &str) -> String {
    format!("{PHASES}/{phase}/log.jsonl")
}

/// `phases/<id>/artifacts/`.
pub fn artifacts(phase: &str) -> String {
    format!("{PHASES}/{phase}/artifacts")
}

/// `phases/<id>/artifacts/<name>.json`.
pub fn artifact(phase: &str, name: &str) -> String {
    format!("{PHASES}/{phase}/artifacts/{name}.json")
}

/// `phases/<id>/attempts/<n>/`: an earlier (or failed) attempt.
pub fn attempt(phase: &str, n: u32) -> String {
    format!("{PHASES}/{phase}/attempts/{n}")
}

/// The frozen file for a schema name as the template wrote it: path
/// characters are folded so names like `docs/spec.json` stay one file.
pub fn frozen_schema(name: &str) -> String {
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{SCHEMAS}/{}.json", safe.trim_start_matches('.'))
}
