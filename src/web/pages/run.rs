//! `/runs/RUN`: a run's summary, args, base commit, auto mode, comments
//! and its DAG drawn as SVG by `engine::view::graph` (state, duration,
//! attempts, tokens, cost on each node), or with `?view=timeline` its
//! Gantt chart. `?expand=KEY` (repeatable) unfolds a folded group; the
//! drawing's links keep the groups already unfolded.
//! `/api/runs/RUN` is `wfe show RUN --json`.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use axum::extract::{Path, RawQuery};
use axum::response::{IntoResponse, Json, Response};

use super::{Repo, resolve};
use crate::engine::RunStatus;
use crate::engine::view::{
    LayoutOptions, RunDetail, layout_run, render_gantt_svg, render_svg, timeline_run,
};
use crate::web::render::{WebError, part, urlencode};
use crate::web::state::RepoState;

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

/// What the run page's query asks for.
#[derive(Debug, Default, PartialEq)]
pub struct RunQuery {
    /// `?fragment=live`.
    pub fragment: bool,
    /// `?view=timeline`.
    pub timeline: bool,
    /// Every `?expand=KEY`.
    pub expand: BTreeSet<String>,
}

/// Reads the run page's query (`expand` may repeat, which serde's
/// query reader does not allow); unknown keys are ignored.
pub fn parse_query(raw: Option<&str>) -> RunQuery {
    let mut q = RunQuery::default();
    for pair in raw.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v);
        match k {
            "fragment" => q.fragment = v == "live",
            "view" => q.timeline = v == "timeline",
            "expand" if !v.is_empty() => {
                q.expand.insert(v);
            }
            _ => {}
        }
    }
    q
}

/// Undoes percent-encoding (and `+` for a space); a broken escape stays
/// as written.
fn decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = (b == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?))
            .flatten();
        match (b, escaped) {
            (_, Some(v)) => {
                out.push(v as u8);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rewrites every `href="…"` of a drawing so links keep the page's state:
/// `&repo=N` (`?repo=N`) for another repository, and on the links that
/// unfold a group (`?expand=`) the groups already unfolded.
pub fn keep_state(svg: &str, repo_index: usize, expanded: &BTreeSet<String>) -> String {
    let mut out = String::with_capacity(svg.len() + 64);
    let mut rest = svg;
    while let Some(at) = rest.find("href=\"") {
        let start = at + 6;
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find('"').unwrap_or(rest.len());
        let href = &rest[..end];
        out.push_str(href);
        let mut sep = if href.contains('?') { "&amp;" } else { "?" };
        if href.contains("?expand=") {
            for key in expanded {
                let own = format!("expand={}", urlencode(key.clone()));
                if !href.contains(&own) {
                    out.push_str(sep);
                    out.push_str(&own);
                    sep = "&amp;";
                }
            }
        }
        if repo_index != 0 {
            out.push_str(sep);
            out.push_str(&format!("repo={repo_index}"));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `GET /runs/RUN`.
pub async fn html(repo: Repo, Path(run): Path<String>, RawQuery(raw): RawQuery) -> Response {
    let q = parse_query(raw.as_deref());
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
    let options = LayoutOptions {
        expanded: q.expand.clone(),
        ..LayoutOptions::default()
    };
    let drawing = if q.timeline {
        render_gantt_svg(&timeline_run(
            view,
            SystemTime::now(),
            &HashMap::new(),
            &options,
        ))
    } else {
        render_svg(&layout_run(view, &options))
    };
    let drawing = keep_state(&drawing, repo.index, &q.expand);
    let expand_q: String = q
        .expand
        .iter()
        .map(|k| format!("&expand={}", urlencode(k.clone())))
        .collect();
    let spend = view.spend();
    let counts = view.counts();
    let record = &view.record;
    // Where workers hold phases (or held them: a lapsed claim) and which
    // worker ran each finished one: the drawing shows states, this says where.
    let workers: Vec<serde_json::Value> = view
        .phases
        .iter()
        .filter_map(|row| match (&row.claim, &row.state.worker) {
            (Some(c), _) => Some(serde_json::json!({
                "phase": row.state.id, "claim": c,
            })),
            (None, Some(w)) => Some(serde_json::json!({
                "phase": row.state.id, "worker": w,
            })),
            (None, None) => None,
        })
        .collect();
    let ctx = serde_json::json!({
        "workers": workers,
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
        "drawing": drawing,
        "timeline": q.timeline,
        "expanded": q.expand,
        "expand_q": expand_q,
        "comments": detail.comments,
    });
    part("run.html", ctx, q.fragment)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_repeats_expand_and_decodes_keys() {
        let q = parse_query(Some(
            "expand=test&expand=a%5Bn%3D1%5D&view=timeline&fragment=live&x",
        ));
        assert!(q.fragment && q.timeline);
        assert_eq!(q.expand.into_iter().collect::<Vec<_>>(), ["a[n=1]", "test"]);
        assert_eq!(parse_query(None), RunQuery::default());
        assert_eq!(decode("a+b%2"), "a b%2");
        assert_eq!(decode("%e2%9c%93%zz"), "✓%zz");
    }

    #[test]
    fn links_keep_the_unfolded_groups_and_the_repository() {
        let svg = r#"<a href="/runs/R?expand=b"><a href="/runs/R/phases/x">"#;
        let open: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        assert_eq!(
            keep_state(svg, 0, &open),
            r#"<a href="/runs/R?expand=b&amp;expand=a"><a href="/runs/R/phases/x">"#
        );
        assert_eq!(
            keep_state(svg, 2, &BTreeSet::new()),
            r#"<a href="/runs/R?expand=b&amp;repo=2"><a href="/runs/R/phases/x?repo=2">"#
        );
    }
}
