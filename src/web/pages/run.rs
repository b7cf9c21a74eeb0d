//! `/runs/RUN`: a run's summary, args, base commit, auto mode, comments
//! and its phases by layer (state, duration, attempts, tokens, cost).
//! `/api/runs/RUN` is `wfe show RUN --json`.

use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};

use super::{Repo, resolve};
use crate::engine::view::{ClaimView, PhaseRow, RunDetail};
use crate::engine::{PhaseState, RunStatus};
use crate::web::render::{WebError, duration, part};
use crate::web::state::RepoState;

/// `?fragment=live`: only the part live updates replace.
#[derive(Debug, Default, Deserialize)]
pub struct Fragment {
    /// `live` for the fragment.
    #[serde(default)]
    pub fragment: Option<String>,
}

/// One phase as the run page shows it.
#[derive(Debug, Serialize)]
pub struct PhaseCell {
    /// Its id (the link).
    pub id: String,
    /// script, agent, gate, loop …
    pub kind: String,
    /// Its status.
    pub status: String,
    /// Its current attempt.
    pub attempt: u32,
    /// How long it took, in words.
    pub duration: String,
    /// Tokens in + out over all attempts, when a model was used.
    pub tokens: Option<u64>,
    /// What the model cost, when known.
    pub cost: Option<String>,
    /// The phases it needs.
    pub needs: Vec<String>,
    /// A loop's iterations so far and its children's states in the latest.
    pub children: Vec<(String, String)>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The `wfe worker` that ran it (`id@host`), when one did.
    pub worker: Option<String>,
    /// A worker's claim on it: running there while live.
    pub claim: Option<ClaimView>,
}

/// What a phase's row shows.
pub fn cell(row: &PhaseRow) -> PhaseCell {
    let s: &PhaseState = &row.state;
    let (tokens, cost) = match (&s.spend, &s.usage) {
        (Some(spend), _) => (Some(spend.tokens), spend.cost_usd),
        (None, Some(u)) => (Some(u.input_tokens + u.output_tokens), u.cost_usd),
        (None, None) => (None, None),
    };
    PhaseCell {
        id: s.id.clone(),
        kind: serde_json::to_value(s.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        status: row.shown_status().as_str().to_string(),
        attempt: s.attempt,
        duration: s.duration_ms.map(duration).unwrap_or_default(),
        tokens: tokens.filter(|t| *t > 0),
        cost: cost.map(|c| format!("${c:.4}")),
        needs: row.needs.clone(),
        children: row
            .children
            .iter()
            .map(|c| (c.id.clone(), c.status.as_str().to_string()))
            .collect(),
        error: s.error.as_ref().map(|e| e.to_string()),
        worker: s.worker.clone(),
        claim: row.claim.clone(),
    }
}

/// The run's status as shown: `running` only with a live runner.
pub fn shown_status(repo: &RepoState, detail: &RunDetail) -> String {
    let status = detail.run.shown_status();
    // Workers holding live claims work on the run elsewhere.
    let live = detail.run.claimed()
        || crate::store::RunId::parse(&detail.run.record.id)
            .is_some_and(|id| repo.store.lock_holder(&id).ok().flatten().is_some());
    if status == RunStatus::Running && !live {
        "interrupted".into()
    } else {
        status.as_str().into()
    }
}

/// `GET /runs/RUN`.
pub async fn html(repo: Repo, Path(run): Path<String>, Query(f): Query<Fragment>) -> Response {
    let loaded = repo
        .read(move |r| {
            let id = resolve(r, &run)?;
            let detail = RunDetail::load(&r.store, &id)?;
            let status = shown_status(r, &detail);
            Ok((detail, status))
        })
        .await;
    let (detail, status) = match loaded {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let view = &detail.run;
    let layers: Vec<Vec<PhaseCell>> = view
        .layers
        .iter()
        .map(|layer| {
            layer
                .iter()
                .filter_map(|&i| view.phases.get(i))
                .map(cell)
                .collect()
        })
        .collect();
    let spend = view.spend();
    let counts = view.counts();
    let record = &view.record;
    let ctx = serde_json::json!({
        "layout": repo.layout(&format!("Run {}", &record.id), "runs"),
        "live_run": record.id,
        "run": {
            "id": record.id,
            "template": record.template,
            "status": status,
            "auto": record.auto,
            "base_commit": record.base_commit,
            "created_at": record.created_at,
            "finished_at": record.finished_at,
            "checkpoint": view.checkpoint,
            "args": serde_json::to_string_pretty(&record.args).unwrap_or_default(),
            "reason": record.reason.as_ref().and_then(|r| serde_json::to_value(r).ok()),
        },
        "spend": (spend.tokens > 0 || spend.cost_usd.is_some()).then(|| spend.summary()),
        "counts": {
            "total": counts.total,
            "completed": counts.completed,
            "failed": counts.failed + counts.timed_out,
        },
        "failed_phases": view.failed_phases(),
        "layers": layers,
        "comments": detail.comments,
    });
    part("run.html", ctx, f.fragment.as_deref() == Some("live"))
}

/// `GET /api/runs/RUN`: `wfe show RUN --json` (the view, the runner
/// holding the run, and its failed phases).
pub async fn json(repo: Repo, Path(run): Path<String>) -> Response {
    let built = repo
        .read(move |r| {
            let id = resolve(r, &run)?;
            let detail = RunDetail::load(&r.store, &id)?;
            let runner = r.store.lock_holder(&id).ok().flatten();
            let mut doc = serde_json::to_value(&detail)
                .map_err(|e| WebError::Internal(format!("cannot write the JSON document: {e}")))?;
            if let Some(map) = doc.as_object_mut() {
                map.insert(
                    "runner".into(),
                    serde_json::to_value(runner.as_ref()).unwrap_or_default(),
                );
                map.insert("failed_phases".into(), detail.run.failed_phases().into());
            }
            Ok(doc)
        })
        .await;
    match built {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => e.json(),
    }
}
