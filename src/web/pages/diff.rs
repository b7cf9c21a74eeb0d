//! `/diff?a=…&b=…`: two runs, checkpoints, phases or attempts compared as
//! `wfe diff` compares them (the same side syntax, the same
//! [`crate::engine::compare`]), shown side by side by JSON pointer.
//! `/api/diff` is `wfe diff --json`.

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Repo;
use crate::artifact::Change;
use crate::engine::compare::{CompareError, Comparison, compare};
use crate::web::render::{WebError, page};

/// The two sides.
#[derive(Debug, Default, Deserialize)]
pub struct Sides {
    /// The old side: RUN, RUN@N, RUN@COMMIT, RUN:PHASE or RUN:PHASE#ATTEMPT.
    #[serde(default)]
    pub a: Option<String>,
    /// The new side, named the same way.
    #[serde(default)]
    pub b: Option<String>,
}

/// One changed place, side by side.
#[derive(Debug, Serialize)]
struct Row {
    mark: &'static str,
    path: String,
    a: String,
    b: String,
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn rows(changes: &[Change]) -> Vec<Row> {
    changes
        .iter()
        .map(|c| match c {
            Change::Added { path, value } => Row {
                mark: "added",
                path: path.clone(),
                a: String::new(),
                b: show(value),
            },
            Change::Removed { path, value } => Row {
                mark: "removed",
                path: path.clone(),
                a: show(value),
                b: String::new(),
            },
            Change::Changed { path, from, to } => Row {
                mark: "changed",
                path: path.clone(),
                a: show(from),
                b: show(to),
            },
            Change::Moved { from_path, to_path } => Row {
                mark: "moved",
                path: to_path.clone(),
                a: format!("at {from_path}"),
                b: format!("at {to_path}"),
            },
        })
        .collect()
}

fn from_compare(e: CompareError) -> WebError {
    match e {
        CompareError::Engine(inner) => inner.into(),
        other => WebError::BadRequest(other.to_string()),
    }
}

async fn run_compare(repo: &Repo, sides: Sides) -> Result<Option<Comparison>, WebError> {
    let (Some(a), Some(b)) = (
        sides.a.filter(|s| !s.trim().is_empty()),
        sides.b.filter(|s| !s.trim().is_empty()),
    ) else {
        return Ok(None);
    };
    repo.read(move |r| compare(&r.store, &a, &b).map(Some).map_err(from_compare))
        .await
}

/// `GET /diff`.
pub async fn html(repo: Repo, Query(sides): Query<Sides>) -> Response {
    let (a, b) = (sides.a.clone(), sides.b.clone());
    let cmp = match run_compare(&repo, sides).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let phases: Vec<Value> = cmp
        .iter()
        .flat_map(|c| &c.phases)
        .map(|p| {
            serde_json::json!({
                "phase": p.phase,
                "other_phase": p.other_phase,
                "status": p.status.as_ref().map(|s| [
                    s.from.map(|x| x.as_str()).unwrap_or("-"),
                    s.to.map(|x| x.as_str()).unwrap_or("-"),
                ]),
                "artifacts": p.artifacts.iter().map(|a| serde_json::json!({
                    "name": a.name,
                    "kind": serde_json::to_value(a.kind).unwrap_or_default(),
                    "rows": rows(&a.changes),
                })).collect::<Vec<_>>(),
                "files": p.files.iter().map(|f| serde_json::json!({
                    "path": f.path,
                    "kind": serde_json::to_value(f.kind).unwrap_or_default(),
                    "a": f.from.as_ref().map(|e| format!("{} bytes sha256:{}", e.size, e.sha256.get(..12).unwrap_or_default())),
                    "b": f.to.as_ref().map(|e| format!("{} bytes sha256:{}", e.size, e.sha256.get(..12).unwrap_or_default())),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    page(
        "diff.html",
        serde_json::json!({
            "layout": repo.layout("Diff", "diff"),
            "a": a,
            "b": b,
            "compared": cmp.is_some(),
            "sides": cmp.as_ref().map(|c| [&c.a, &c.b]),
            "run_status": cmp.as_ref().and_then(|c| c.run_status.as_ref()).map(|s| [
                s.from.map(|x| x.as_str()).unwrap_or("-"),
                s.to.map(|x| x.as_str()).unwrap_or("-"),
            ]),
            "notes": cmp.as_ref().map(|c| c.notes.clone()).unwrap_or_default(),
            "phases": phases,
        }),
    )
}

/// `GET /api/diff`: `wfe diff A B --json`.
pub async fn json(repo: Repo, Query(sides): Query<Sides>) -> Response {
    match run_compare(&repo, sides).await {
        Ok(Some(cmp)) => axum::Json(cmp).into_response(),
        Ok(None) => WebError::BadRequest("give both sides: ?a=…&b=…".into()).json(),
        Err(e) => e.json(),
    }
}
