//! `/`: every run of the repository, filtered by status, template and
//! text; `?view=board&template=T` lays the runs of one template out as a
//! kanban board, one column per phase. `/api/runs` is `wfe list --json`.

use axum::extract::Query;
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};

use super::{Repo, age, now_secs};
use crate::engine::PhaseStatus;
use crate::engine::view::{ListFilter, RunRow, RunView, list_all};
use crate::store::RunId;
use crate::web::render::{WebError, part};
use crate::web::state::RepoState;

/// The most runs the board lays out (each needs its tree read).
const BOARD_MAX: usize = 200;

/// The statuses a filter may name (`interrupted`: stored as running, no runner).
const STATUSES: [&str; 8] = [
    "pending",
    "running",
    "interrupted",
    "paused",
    "waiting",
    "completed",
    "failed",
    "cancelled",
];

/// The filters, as query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    /// Only runs with this (shown) status.
    #[serde(default)]
    pub status: Option<String>,
    /// Only runs of this template.
    #[serde(default)]
    pub template: Option<String>,
    /// Only runs whose id, template, phase or summary contain this text.
    #[serde(default)]
    pub q: Option<String>,
    /// `board` for the kanban board.
    #[serde(default)]
    pub view: Option<String>,
    /// `live`: only the part that live updates replace.
    #[serde(default)]
    pub fragment: Option<String>,
}

/// One run as the page shows it.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    template: String,
    status: String,
    phase: String,
    age: String,
    duration: String,
    failed_phases: Vec<String>,
    summary: String,
}

/// The rows the filters admit, with each one's shown status.
fn rows(repo: &RepoState, f: &Filters) -> Result<Vec<(RunRow, String)>, WebError> {
    let blank = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(String::from);
    let status = blank(&f.status);
    if let Some(s) = &status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(WebError::BadRequest(format!(
            "status=`{s}` is not a run status; expected one of {}",
            STATUSES.join(", ")
        )));
    }
    let filter = ListFilter {
        status: status.clone().map(|s| {
            if s == "interrupted" {
                "running".into()
            } else {
                s
            }
        }),
        template: blank(&f.template),
    };
    let text = blank(&f.q).map(|t| t.to_lowercase());
    let listing = list_all(&repo.store, &filter)?;
    let mut out = Vec::new();
    for row in listing.rows {
        let shown = shown_status(repo, &row);
        if status.as_ref().is_some_and(|s| *s != shown) {
            continue;
        }
        if let Some(t) = &text {
            let hay = format!(
                "{} {} {} {}",
                row.id,
                row.template.as_deref().unwrap_or_default(),
                row.phase.as_deref().unwrap_or_default(),
                row.summary
            )
            .to_lowercase();
            if !hay.contains(t.as_str()) {
                continue;
            }
        }
        out.push((row, shown));
    }
    Ok(out)
}

/// The status to show: `running` only while a runner holds the run.
pub fn shown_status(repo: &RepoState, row: &RunRow) -> String {
    let stored = row.status.clone().unwrap_or_else(|| "?".into());
    if stored == "running" {
        let live = RunId::parse(&row.id)
            .is_some_and(|id| repo.store.lock_holder(&id).ok().flatten().is_some());
        if !live {
            return "interrupted".into();
        }
    }
    stored
}

/// Seconds since the epoch when run `id` was created (its ULID's time).
fn created(id: &str) -> Option<i64> {
    ulid::Ulid::from_string(&id.to_uppercase())
        .ok()
        .map(|u| (u.timestamp_ms() / 1000) as i64)
}

fn row_view(row: RunRow, status: String, now: i64) -> Row {
    let born = created(&row.id).unwrap_or(row.updated);
    let ongoing = matches!(
        status.as_str(),
        "running" | "pending" | "waiting" | "paused"
    );
    let end = if ongoing { now } else { row.updated };
    Row {
        template: row.template.unwrap_or_else(|| "?".into()),
        phase: row.phase.unwrap_or_default(),
        age: age(now - born),
        duration: age(end - born),
        failed_phases: row.failed_phases,
        summary: row.summary.trim_start_matches("wfe: ").to_string(),
        id: row.id,
        status,
    }
}

/// `GET /`.
pub async fn html(repo: Repo, Query(f): Query<Filters>) -> Response {
    if f.view.as_deref() == Some("board") {
        return board(repo, f).await;
    }
    let templates = match repo.read(|r| Ok(templates(r))).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let status = f.status.clone();
    let template = f.template.clone();
    let q = f.q.clone();
    let fragment = f.fragment.as_deref() == Some("live");
    let listed = repo
        .read(move |r| {
            let now = now_secs();
            Ok(rows(r, &f)?
                .into_iter()
                .map(|(row, s)| row_view(row, s, now))
                .collect::<Vec<_>>())
        })
        .await;
    match listed {
        Ok(runs) => part(
            "runs.html",
            serde_json::json!({
                "layout": repo.layout("Runs", "runs"),
                "live_list": true,
                "runs": runs,
                "statuses": STATUSES,
                "templates": templates,
                "status": status,
                "template": template,
                "q": q,
            }),
            fragment,
        ),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/runs`: the rows as `wfe list --json` prints them.
pub async fn json(repo: Repo, Query(f): Query<Filters>) -> Response {
    match repo
        .read(move |r| {
            Ok(rows(r, &f)?
                .into_iter()
                .map(|(row, _)| row)
                .collect::<Vec<_>>())
        })
        .await
    {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => e.json(),
    }
}

/// Every template a run used or the catalog has, sorted.
fn templates(repo: &RepoState) -> Vec<String> {
    let mut names: Vec<String> = repo.catalog.list().into_iter().map(|(n, _)| n).collect();
    if let Ok(listing) = list_all(&repo.store, &ListFilter::default()) {
        names.extend(listing.rows.into_iter().filter_map(|r| r.template));
    }
    names.sort();
    names.dedup();
    names
}

/// One column of the board.
#[derive(Debug, Serialize)]
struct Column {
    phase: String,
    cards: Vec<Row>,
}

/// Where a run stands: its first phase (in layer order) that is not
/// done; `None` once every phase is.
pub fn standing(view: &RunView) -> Option<String> {
    view.layers
        .iter()
        .flatten()
        .filter_map(|&i| view.phases.get(i))
        .find(|p| {
            !matches!(
                p.state.status,
                PhaseStatus::Completed | PhaseStatus::Skipped
            )
        })
        .map(|p| p.state.id.clone())
}

/// `GET /?view=board&template=T`.
async fn board(repo: Repo, f: Filters) -> Response {
    let Some(template) = f.template.clone().filter(|t| !t.is_empty()) else {
        return WebError::BadRequest(
            "the board shows one template's runs: add &template=NAME".into(),
        )
        .into_response();
    };
    let shown_template = template.clone();
    let fragment = f.fragment.as_deref() == Some("live");
    let built = repo
        .read(move |r| {
            let now = now_secs();
            let mut columns: Vec<Column> = Vec::new();
            let mut done = Column {
                phase: "done".into(),
                cards: Vec::new(),
            };
            for (row, status) in rows(r, &f)?.into_iter().take(BOARD_MAX) {
                let Some(id) = RunId::parse(&row.id) else {
                    continue;
                };
                let view = RunView::load(&r.store, &id)?;
                // Columns in layer order, from every run seen (templates change).
                for i in view.layers.iter().flatten() {
                    if let Some(p) = view.phases.get(*i)
                        && !columns.iter().any(|c| c.phase == p.state.id)
                    {
                        columns.push(Column {
                            phase: p.state.id.clone(),
                            cards: Vec::new(),
                        });
                    }
                }
                let card = row_view(row, status, now);
                match standing(&view) {
                    Some(phase) => {
                        if let Some(c) = columns.iter_mut().find(|c| c.phase == phase) {
                            c.cards.push(card);
                        }
                    }
                    None => done.cards.push(card),
                }
            }
            columns.push(done);
            Ok(columns)
        })
        .await;
    match built {
        Ok(columns) => part(
            "board.html",
            serde_json::json!({
                "layout": repo.layout(&format!("Board: {shown_template}"), "runs"),
                "live_list": true,
                "template": shown_template,
                "columns": columns,
                "max": BOARD_MAX,
            }),
            fragment,
        ),
        Err(e) => e.into_response(),
    }
}
