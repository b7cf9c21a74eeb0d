//! `/search?q=…`: ranked results over every run's artifacts, logs,
//! comments, tool calls and errors, with `wfe search`'s filters (run,
//! template, phase, schema, status, kind, since, limit). Each result links
//! to its phase (and log line). `/api/search` is `wfe search --json`.

use std::time::Duration;

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Repo, resolve};
use crate::index::{Kind, Search, SearchIndex};
use crate::web::render::{WebError, page};
use crate::web::state::RepoState;

/// How long a search waits for another process updating the index.
const WAIT: Duration = Duration::from_millis(500);

/// The query and its filters, as `wfe search` takes them.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct SearchQuery {
    /// The query.
    #[serde(default)]
    pub q: Option<String>,
    /// Only this run.
    #[serde(default)]
    pub run: Option<String>,
    /// Only runs of this template.
    #[serde(default)]
    pub template: Option<String>,
    /// Only this phase.
    #[serde(default)]
    pub phase: Option<String>,
    /// Only artifacts of this schema.
    #[serde(default)]
    pub schema: Option<String>,
    /// Only runs with this status.
    #[serde(default)]
    pub status: Option<String>,
    /// Only documents of this kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only what was written on or after this date.
    #[serde(default)]
    pub since: Option<String>,
    /// At most this many results (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
}

fn blank(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, as seconds since the epoch.
fn parse_since(text: &str) -> Result<i64, WebError> {
    crate::time::parse_day_or_time(text).ok_or_else(|| {
        WebError::BadRequest(format!(
            "since=`{text}` is not a date: expected YYYY-MM-DD or an RFC 3339 time"
        ))
    })
}

/// Runs the search: `None` without a query.
fn search(repo: &RepoState, q: &SearchQuery) -> Result<Option<Value>, WebError> {
    let Some(query) = blank(&q.q) else {
        return Ok(None);
    };
    let kind = match blank(&q.kind) {
        None => None,
        Some(k) => Some(Kind::parse(&k).ok_or_else(|| {
            WebError::BadRequest(format!(
                "kind=`{k}` is not a kind; expected one of {}",
                Kind::ALL.map(Kind::as_str).join(", ")
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=10_000).contains(&limit) {
        return Err(WebError::BadRequest(format!(
            "limit={limit}: expected 1 to 10000"
        )));
    }
    let search = Search {
        query,
        run: blank(&q.run).map(|r| resolve(repo, &r)).transpose()?,
        template: blank(&q.template),
        phase: blank(&q.phase),
        schema: blank(&q.schema),
        status: blank(&q.status),
        kind,
        since: blank(&q.since).map(|s| parse_since(&s)).transpose()?,
        limit: limit as usize,
    };
    let internal = |e: crate::index::IndexError| WebError::Internal(e.to_string());
    let dir = repo.store.wfe_dir().join("index");
    let (mut index, _) = SearchIndex::open(&dir).map_err(internal)?;
    let report = match index.catch_up(&repo.store, WAIT) {
        Err(e) if e.is_index_failure() => {
            index = SearchIndex::create(&dir).map_err(internal)?;
            index.catch_up(&repo.store, WAIT).map_err(internal)?
        }
        other => other.map_err(internal)?,
    };
    let hits = index.search(&repo.store, &search).map_err(|e| match e {
        crate::index::IndexError::Query(q) => WebError::BadRequest(q.message),
        other => internal(other),
    })?;
    Ok(Some(json!({
        "query": search.query,
        "stale": report.busy,
        "hits": hits.iter().map(crate::index::Hit::to_json).collect::<Vec<_>>(),
    })))
}

/// `GET /search`.
pub async fn html(repo: Repo, Query(q): Query<SearchQuery>) -> Response {
    let asked = q.clone();
    let found = repo.read(move |r| search(r, &q)).await;
    let (doc, error) = match found {
        Ok(doc) => (doc, None),
        Err(WebError::BadRequest(m)) => (None, Some(m)),
        Err(e) => return e.into_response(),
    };
    page(
        "search.html",
        json!({
            "layout": repo.layout("Search", "search"),
            "q": asked.q,
            "f": {
                "run": asked.run, "template": asked.template, "phase": asked.phase,
                "schema": asked.schema, "status": asked.status, "kind": asked.kind,
                "since": asked.since, "limit": asked.limit,
            },
            "kinds": Kind::ALL.map(Kind::as_str),
            "result": doc,
            "error": error,
        }),
    )
}

/// `GET /api/search`: `wfe search --json`.
pub async fn json(repo: Repo, Query(q): Query<SearchQuery>) -> Response {
    match repo.read(move |r| search(r, &q)).await {
        Ok(Some(doc)) => axum::Json(doc).into_response(),
        Ok(None) => WebError::BadRequest("give a query: ?q=…".into()).json(),
        Err(e) => e.json(),
    }
}
