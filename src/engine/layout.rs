//! Paths inside a checkpoint's tree (DESIGN.md §3), in one place: no
//! other code spells a checkpoint path.

use std::fmt::Display;

/// `run.json`.
pub const RUN: &str = "run.json";
/// `template.json`: the frozen template.
pub const TEMPLATE: &str = "template.json";
/// `schemas/`: frozen schemas.
pub const SCHEMAS: &str = "schemas";
/// `phases/`.
pub const PHASES: &str = "phases";
/// `claims/`: the phases `wfe worker`s hold right now.
pub const CLAIMS: &str = "claims";
/// `comments.jsonl`: comments on the run and its phases.
pub const COMMENTS: &str = "comments.jsonl";

// The helpers below take a phase *key*: a top-level phase's id (`build`),
// or a loop child's key from [`child_key`] (`fix/iterations/2/test`), so a
// child's files have a phase's layout under its iteration.

/// `phases/<id>`: everything of one phase.
pub fn phase_dir(phase: &str) -> String {
    format!("{PHASES}/{phase}")
}

/// `claims/<id>.json`: the claim a worker holds on top-level phase `id`.
pub fn claim(phase: &str) -> String {
    format!("{CLAIMS}/{phase}.json")
}

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

/// `phases/<id>/files/`: the phase's file artifacts.
pub fn files(phase: &str) -> String {
    format!("{PHASES}/{phase}/files")
}

/// `phases/<id>/files/<path>`: one file artifact (`path` as kept:
/// `<output>/<file>`, or its path under `$WFE_OUT/files/`).
pub fn file(phase: &str, path: &str) -> String {
    format!("{PHASES}/{phase}/files/{path}")
}

/// `phases/<id>/attempts/<n>/files/`: a completed attempt's file artifacts, set aside by a retry.
pub fn attempt_files(phase: &str, n: impl Display) -> String {
    format!("{}/files", attempt(phase, n))
}

/// `phases/<id>/exchanges.jsonl`: an agent's requests and answers, every attempt.
pub fn exchanges(phase: &str) -> String {
    format!("{PHASES}/{phase}/exchanges.jsonl")
}

/// `phases/<id>/tool-calls.jsonl`: an agent's tool calls, every attempt.
pub fn tool_calls(phase: &str) -> String {
    format!("{PHASES}/{phase}/tool-calls.jsonl")
}

/// `phases/<id>/reviews/`: the second opinions of every attempt.
pub fn reviews(phase: &str) -> String {
    format!("{PHASES}/{phase}/reviews")
}

/// `phases/<id>/reviews/<attempt>-<round>.json`: a second opinion.
pub fn review(phase: &str, attempt: u32, round: u32) -> String {
    format!("{PHASES}/{phase}/reviews/{attempt}-{round}.json")
}

/// `phases/<id>/attempts/`: every earlier (or failed) attempt.
pub fn attempts(phase: &str) -> String {
    format!("{PHASES}/{phase}/attempts")
}

/// `phases/<id>/attempts/<n>/`: an earlier (or failed) attempt. `n` is
/// an attempt number, or a directory name read back from the tree.
pub fn attempt(phase: &str, n: impl Display) -> String {
    format!("{PHASES}/{phase}/attempts/{n}")
}

/// `phases/<id>/attempts/<n>/error.json`: why that attempt failed.
pub fn attempt_error(phase: &str, n: impl Display) -> String {
    format!("{}/error.json", attempt(phase, n))
}

/// `phases/<id>/attempts/<n>/log.jsonl`: that attempt's output.
pub fn attempt_log(phase: &str, n: impl Display) -> String {
    format!("{}/log.jsonl", attempt(phase, n))
}

/// `phases/<id>/attempts/<n>/artifacts/`: a completed attempt's outputs, set aside by a retry.
pub fn attempt_artifacts(phase: &str, n: impl Display) -> String {
    format!("{}/artifacts", attempt(phase, n))
}

/// `phases/<id>/attempts/<n>/rejected/`: outputs that failed validation.
pub fn rejected_dir(phase: &str, n: impl Display) -> String {
    format!("{}/rejected", attempt(phase, n))
}

/// `phases/<id>/attempts/<n>/rejected/<name>.json`: one rejected output.
pub fn rejected(phase: &str, n: impl Display, name: &str) -> String {
    format!("{}/{name}.json", rejected_dir(phase, n))
}

/// `phases/<loop>/attempts/<n>/iterations`: a loop's iterations of an earlier attempt.
pub fn attempt_iterations(parent: &str, n: impl Display) -> String {
    format!("{}/iterations", attempt(parent, n))
}

/// `phases/<loop>/iterations`: every iteration of a loop's current attempt.
pub fn iterations(parent: &str) -> String {
    format!("{PHASES}/{parent}/iterations")
}

/// The key of child `child` of loop `parent` in iteration `iteration`:
/// `<loop>/iterations/<k>/<child>`, so its files are under
/// `phases/<loop>/iterations/<k>/<child>/` (`state.json`, `artifacts/`,
/// `log.jsonl`, `attempts/`).
pub fn child_key(parent: &str, iteration: u32, child: &str) -> String {
    format!("{parent}/iterations/{iteration}/{child}")
}

/// The frozen file for a schema name as the template wrote it. Plain names
/// keep their name (`schemas/spec.json`); names with other characters
/// (paths, URIs) are folded and get a short digest of the full name, so two
/// names never share a file (`docs/spec.json` ≠ `docs_spec.json`).
pub fn frozen_schema(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !name.is_empty() && name.chars().all(plain) {
        return format!("{SCHEMAS}/{name}.json");
    }
    let folded: String = stem
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let digest = Sha256::digest(name.as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{SCHEMAS}/{}-{short}.json", folded.trim_matches('_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_key_gives_a_child_a_phase_layout_under_its_iteration() {
        let key = child_key("fix", 2, "test");
        assert_eq!(state(&key), "phases/fix/iterations/2/test/state.json");
        assert_eq!(
            artifact(&key, "result"),
            "phases/fix/iterations/2/test/artifacts/result.json"
        );
        assert_eq!(attempt(&key, 1), "phases/fix/iterations/2/test/attempts/1");
        assert!(state(&key).starts_with(&iterations("fix")));
        // A loop inside a loop: its child's key nests under the inner
        // loop's key, iteration by iteration.
        let inner = child_key("outer", 2, "inner");
        let nested = child_key(&inner, 3, "work");
        assert_eq!(
            state(&nested),
            "phases/outer/iterations/2/inner/iterations/3/work/state.json"
        );
        assert!(state(&nested).starts_with(&iterations(&inner)));
    }

    #[test]
    fn frozen_schema_files_never_collide() {
        assert_eq!(frozen_schema("spec"), "schemas/spec.json");
        assert_eq!(frozen_schema("task-list"), "schemas/task-list.json");
        let a = frozen_schema("docs/spec.json");
        let b = frozen_schema("docs_spec.json");
        let c = frozen_schema("docs_spec");
        assert!(
            a.starts_with("schemas/docs_spec-") && a.ends_with(".json"),
            "{a}"
        );
        assert_ne!(a, b);
        assert_ne!(b, c);
        let uri = frozen_schema("https://wfe.local/schemas/decision.json");
        assert_eq!(
            uri.matches('/').count(),
            1,
            "one file right under schemas/: {uri}"
        );
    }
}
