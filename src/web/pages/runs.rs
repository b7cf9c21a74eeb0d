//! `/`: every run of the repository, filtered by status, template and
//! text; `?view=board&template=T` lays the runs of one template out as a
//! kanban board, one column per phase. The list shows [`PAGE_SIZE`] runs
//! a page (`?page=N`, filters applied over every run first); a board
//! column shows its first [`COLUMN_MAX`] cards and counts the rest.
//! `/api/runs` is `wfe list --json`.

use axum::extract::Query;
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};

use super::{Repo, age, now_secs};
use crate::engine::PhaseStatus;
use crate::engine::view::{ListFilter, RunRow, RunView, list_all};
use crate::store::RunId;
use crate::web::render::{WebError, part, urlencode};
use crate::web::state::RepoState;

/// Runs per page of the list.
pub const PAGE_SIZE: usize = 100;

/// The most cards a board column shows (it counts them all).
pub const COLUMN_MAX: usize = 50;

/// The most unfinished runs whose trees the board reads to find the phase
/// each stands at; past it a run stands at its last event's phase.
const BOARD_LOADS: usize = 300;

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
    /// The page of the list, from 1.
    #[serde(default)]
    pub page: Option<usize>,
}

impl Filters {
    /// The filters as a query (`status=…&template=…&q=…`, empty ones left
    /// out), for the paging links.
    fn query(&self) -> String {
        [
            ("status", &self.status),
            ("template", &self.template),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", urlencode(v.to_string())))
        })
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// Which rows of `total` page `asked` (from 1) shows, and the page shown
/// (a page past the end shows the last one).
pub fn page_range(total: usize, asked: usize) -> (std::ops::Range<usize>, usize, usize) {
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = asked.clamp(1, pages);
    let start = (page - 1) * PAGE_SIZE;
    (start..total.min(start + PAGE_SIZE), page, pages)
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
    let filters_q = f.query();
    let asked = f.page.unwrap_or(1);
    let listed = repo
        .read(move |r| {
            let now = now_secs();
            let all = rows(r, &f)?;
            let total = all.len();
            let (range, page, pages) = page_range(total, asked);
            let shown: Vec<Row> = all
                .into_iter()
                .skip(range.start)
                .take(range.len())
                .map(|(row, s)| row_view(row, s, now))
                .collect();
            Ok((shown, total, range, page, pages))
        })
        .await;
    let (runs, total, range, page, pages) = match listed {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let layout = repo.layout("Runs", "runs");
    let link = |n: usize| {
        let mut query: Vec<String> = Vec::new();
        if !filters_q.is_empty() {
            query.push(filters_q.clone());
        }
        if n > 1 {
            query.push(format!("page={n}"));
        }
        let q = query.join("&");
        if q.is_empty() {
            format!("/{}", layout.q)
        } else {
            format!("/?{q}{}", layout.qa)
        }
    };
    part(
        "runs.html",
        serde_json::json!({
            "layout": layout,
            "live_list": true,
            "runs": runs,
            "statuses": STATUSES,
            "templates": templates,
            "status": status,
            "template": template,
            "q": q,
            "paging": {
                "total": total,
                "first": range.start + 1,
                "last": range.end,
                "page": page,
                "pages": pages,
                "prev": (page > 1).then(|| link(page - 1)),
                "next": (page < pages).then(|| link(page + 1)),
            },
        }),
        fragment,
    )
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
    /// Its first [`COLUMN_MAX`] cards.
    cards: Vec<Row>,
    /// How many runs stand there.
    count: usize,
}

impl Column {
    fn new(phase: &str) -> Self {
        Column {
            phase: phase.to_string(),
            cards: Vec::new(),
            count: 0,
        }
    }

    fn add(&mut self, card: impl FnOnce() -> Row) {
        self.count += 1;
        if self.cards.len() < COLUMN_MAX {
            self.cards.push(card());
        }
    }
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
            let mut done = Column::new("done");
            let mut loads = 0;
            let add_columns = |columns: &mut Vec<Column>, view: &RunView| {
                // Columns in layer order, from every run read (templates change).
                for i in view.layers.iter().flatten() {
                    if let Some(p) = view.phases.get(*i)
                        && !columns.iter().any(|c| c.phase == p.state.id)
                    {
                        columns.push(Column::new(&p.state.id));
                    }
                }
            };
            for (row, status) in rows(r, &f)? {
                let Some(id) = RunId::parse(&row.id) else {
                    continue;
                };
                // A run that completed with every phase done stands in
                // `done`: its tree is read only for the columns, once.
                let finished = status == "completed" && row.failed_phases.is_empty();
                let at = if finished && !columns.is_empty() {
                    None
                } else if loads < BOARD_LOADS {
                    loads += 1;
                    let view = RunView::load(&r.store, &id)?;
                    add_columns(&mut columns, &view);
                    standing(&view)
                } else if finished {
                    None
                } else {
                    row.phase.clone()
                };
                let card = || row_view(row, status, now);
                match at.and_then(|phase| columns.iter_mut().find(|c| c.phase == phase)) {
                    Some(c) => c.add(card),
                    None => done.add(card),
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
                "max": COLUMN_MAX,
            }),
            fragment,
        ),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_split_the_rows_and_clamp() {
        assert_eq!(page_range(0, 1), (0..0, 1, 1));
        assert_eq!(page_range(205, 1), (0..100, 1, 3));
        assert_eq!(page_range(205, 3), (200..205, 3, 3));
        assert_eq!(page_range(205, 9), (200..205, 3, 3));
        assert_eq!(page_range(200, 0), (0..100, 1, 2));
    }
}
