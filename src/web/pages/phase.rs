//! `/runs/RUN/phases/PHASE[?attempt=N]`: a phase's state and attempts,
//! its artifacts (built-in schemas as cards, the rest as JSON trees), its
//! file artifacts (images inline), rejected outputs beside why they were
//! rejected, the log (fetched as JSON and scrolled virtually by the
//! script, live while the phase runs), the agent conversation, usage and
//! cost. `/api/runs/RUN/phases/PHASE` is `wfe show RUN PHASE --json`.

use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Repo, resolve};
use crate::engine::RunSnapshot;
use crate::engine::view::{self, PhaseView};
use crate::store::RunStore;
use crate::web::artifact_view::{self, ArtifactDoc};
use crate::web::render::{WebError, duration, part};

/// The most characters of a tool call's input or output shown inline.
const MAX_CALL_CHARS: usize = 4_000;

/// Query parameters of the phase page.
#[derive(Debug, Default, Deserialize)]
pub struct PhaseQuery {
    /// The attempt shown (default: the current one).
    #[serde(default)]
    pub attempt: Option<u32>,
    /// `live`: only the part live updates replace.
    #[serde(default)]
    pub fragment: Option<String>,
}

/// A tool call as the page shows it.
#[derive(Debug, Serialize)]
struct Call {
    time: String,
    tool: String,
    attempt: u64,
    duration: String,
    input: String,
    output: String,
    error: Option<String>,
}

/// One request and its answer, as the page shows it.
#[derive(Debug, Serialize)]
struct Exchange {
    time: String,
    conversation: String,
    turn: u64,
    attempt: u64,
    model: String,
    duration: String,
    system: Option<String>,
    messages: Vec<(String, String)>,
    response: String,
}

/// Text of at most [`MAX_CALL_CHARS`] characters.
fn cut(text: String) -> String {
    if text.chars().count() <= MAX_CALL_CHARS {
        return text;
    }
    let mut short: String = text.chars().take(MAX_CALL_CHARS).collect();
    short.push_str(" …");
    short
}

/// A JSON value as readable text: strings as they are, the rest pretty.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// A message's text: its string content, or its blocks' text and calls.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match b.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None => serde_json::to_string_pretty(b).unwrap_or_default(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => text(other),
    }
}

fn jsonl(bytes: Option<Vec<u8>>) -> Vec<Value> {
    String::from_utf8_lossy(&bytes.unwrap_or_default())
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn calls(lines: Vec<Value>) -> Vec<Call> {
    lines
        .into_iter()
        .map(|c| Call {
            time: text(c.get("time")),
            tool: text(c.get("tool")),
            attempt: c.get("attempt").and_then(Value::as_u64).unwrap_or(0),
            duration: c
                .get("duration_ms")
                .and_then(Value::as_u64)
                .map(duration)
                .unwrap_or_default(),
            input: cut(text(c.get("input"))),
            output: cut(text(c.get("output"))),
            error: c.get("error").and_then(Value::as_str).map(String::from),
        })
        .collect()
}

fn exchanges(lines: Vec<Value>) -> Vec<Exchange> {
    lines
        .into_iter()
        .map(|x| Exchange {
            time: text(x.get("time")),
            conversation: text(x.get("conversation")),
            turn: x.get("turn").and_then(Value::as_u64).unwrap_or(0),
            attempt: x.get("attempt").and_then(Value::as_u64).unwrap_or(0),
            model: text(x.get("model")),
            duration: x
                .get("duration_ms")
                .and_then(Value::as_u64)
                .map(duration)
                .unwrap_or_default(),
            system: x.get("system").and_then(Value::as_str).map(String::from),
            messages: x
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|m| (text(m.get("role")), cut(message_text(m))))
                .collect(),
            response: cut(match x.get("response") {
                Some(r) if r.get("content").is_some() => message_text(r),
                other => text(other),
            }),
        })
        .collect()
}

/// Everything the page shows, read in one go off the async workers.
struct Loaded {
    view: PhaseView,
    artifacts: Vec<ArtifactDoc>,
    calls: Vec<Call>,
    exchanges: Vec<Exchange>,
    running: bool,
}

fn load(repo: &crate::web::state::RepoState, run: &str, phase: &str) -> Result<Loaded, WebError> {
    let id = resolve(repo, run)?;
    let view = PhaseView::load(&repo.store, &id, phase)?;
    let snap = RunSnapshot::load_tip(&repo.store, &id)?;
    let spec = snap.spec(&view.phase);
    let mut artifacts = Vec::new();
    for name in &view.state.artifacts {
        let Some(value) = snap.artifact(&repo.store, &view.key, name)? else {
            continue;
        };
        let schema = spec
            .and_then(|s| s.outputs.schemas.get(name))
            .map(String::as_str);
        artifacts.push(artifact_view::doc(name, schema, &value));
    }
    let read = |path: &Option<String>| -> Result<Vec<Value>, WebError> {
        Ok(match path {
            Some(p) => jsonl(repo.store.read(&snap.checkpoint, p)?),
            None => Vec::new(),
        })
    };
    let calls = calls(read(&view.tool_calls)?);
    let exchanges = exchanges(read(&view.exchanges)?);
    // Not final and a runner holds the run: its output may be coming now
    // (the tip may still say pending while the attempt runs).
    let running =
        !view.state.status.is_final() && repo.store.lock_holder(&id).ok().flatten().is_some();
    Ok(Loaded {
        view,
        artifacts,
        calls,
        exchanges,
        running,
    })
}

/// `GET /runs/RUN/phases/PHASE`.
pub async fn html(
    repo: Repo,
    Path((run, phase)): Path<(String, String)>,
    Query(q): Query<PhaseQuery>,
) -> Response {
    let loaded = {
        let (run, phase) = (run.clone(), phase.clone());
        repo.read(move |r| load(r, &run, &phase)).await
    };
    let Loaded {
        view,
        artifacts,
        calls,
        exchanges,
        running,
    } = match loaded {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let current = view.state.attempt;
    let shown = q.attempt.unwrap_or(current);
    let mut numbers: Vec<u32> = view
        .attempts
        .iter()
        .filter_map(|a| a.number.parse().ok())
        .collect();
    if current > 0 && !numbers.contains(&current) {
        numbers.push(current);
    }
    numbers.sort_unstable();
    if shown != current && !numbers.contains(&shown) {
        return WebError::NotFound(format!(
            "phase `{}` has no attempt {shown}; it has {}",
            view.address,
            numbers
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into_response();
    }
    let earlier = view.attempts.iter().find(|a| a.number == shown.to_string());
    let error = match earlier {
        Some(a) if shown != current => a.error.as_ref().map(|e| e.to_string()),
        _ => view.state.error.as_ref().map(|e| e.to_string()),
    };
    let rejected: Vec<Value> = view
        .attempts
        .iter()
        .filter(|a| a.number == shown.to_string())
        .flat_map(|a| {
            a.rejected.iter().map(|r| {
                let name = r.file.trim_end_matches(".json");
                serde_json::json!({
                    "file": r.file,
                    "text": r.text,
                    "why": a.error.as_ref().map(|e| e.to_string()),
                    "schema": view.expected_schemas.get(name)
                        .map(|s| serde_json::to_string_pretty(s).unwrap_or_default()),
                })
            })
        })
        .collect();
    let images: Vec<&str> = view
        .files
        .iter()
        .filter(|f| image_type(&f.path).is_some())
        .map(|f| f.path.as_str())
        .collect();
    let s = &view.state;
    let usage = s.usage.as_ref().map(|u| {
        serde_json::json!({
            "provider": u.provider, "model": u.model, "requests": u.requests,
            "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "tool_calls": u.tool_calls,
            "cost": u.cost_usd.map(|c| format!("${c:.4}")),
        })
    });
    let ctx = serde_json::json!({
        "layout": repo.layout(&format!("{} · {}", view.address, &view.run), "runs"),
        "live_run": view.run,
        "live_phase": if running { Some(view.key.clone()) } else { None },
        "run": view.run,
        "phase": view.phase,
        "address": view.address,
        "within": view.within,
        "key": view.key,
        "status": s.status.as_str(),
        "running": running,
        "current": current,
        "shown": shown,
        "attempts": numbers,
        "duration": s.duration_ms.map(duration),
        "exit_code": s.exit_code,
        "provider": s.provider,
        "model": s.model,
        "error": error,
        "skip_reason": s.skip_reason,
        "forced": s.forced,
        "usage": usage,
        "spend": s.spend.as_ref().map(|sp| sp.summary()),
        "artifacts": if shown == current { artifacts } else { Vec::new() },
        "files": view.files,
        "images": images,
        "rejected": rejected,
        "calls": calls.into_iter().filter(|c| c.attempt == u64::from(shown)).collect::<Vec<_>>(),
        "exchanges": exchanges.into_iter().filter(|x| x.attempt == u64::from(shown)).collect::<Vec<_>>(),
        "comments": view.comments,
        "iterations": view.iterations.iter().map(|children| children.iter()
            .map(|c| (c.id.clone(), c.status.as_str())).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "log_lines": view.log.iter().filter(|l| l.attempt == shown).count(),
    });
    part("phase.html", ctx, q.fragment.as_deref() == Some("live"))
}

/// `GET /api/runs/RUN/phases/PHASE`: `wfe show RUN PHASE --json`.
pub async fn json(repo: Repo, Path((run, phase)): Path<(String, String)>) -> Response {
    let built = repo
        .read(move |r| {
            let id = resolve(r, &run)?;
            let view = PhaseView::load(&r.store, &id, &phase)?;
            serde_json::to_value(&view)
                .map_err(|e| WebError::Internal(format!("cannot write the JSON document: {e}")))
        })
        .await;
    match built {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => e.json(),
    }
}

/// Query of the log route.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    /// Only this attempt's lines (default: every attempt).
    #[serde(default)]
    pub attempt: Option<u32>,
}

/// `GET /api/runs/RUN/phases/PHASE/log`: the committed log as a JSON
/// array of lines (`n`: the line's place in the phase's whole log, from 0,
/// which permalinks `#L<n+1>` and search results use; then `time`,
/// `attempt`, `stream`, `line`), for the script's virtual scroller.
pub async fn log(
    repo: Repo,
    Path((run, phase)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let built = repo
        .read(move |r| {
            let id = resolve(r, &run)?;
            let view = PhaseView::load(&r.store, &id, &phase)?;
            Ok(view
                .log
                .into_iter()
                .enumerate()
                .filter(|(_, l)| q.attempt.is_none_or(|a| a == l.attempt))
                .map(|(n, l)| {
                    let mut v = serde_json::to_value(&l).unwrap_or_default();
                    if let Some(map) = v.as_object_mut() {
                        map.insert("n".into(), n.into());
                    }
                    v
                })
                .collect::<Vec<_>>())
        })
        .await;
    match built {
        Ok(lines) => Json(lines).into_response(),
        Err(e) => e.json(),
    }
}

/// The content type an image file artifact is served with; `None` for
/// anything that is not a raster image (SVG can carry script).
fn image_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit('.').next()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        _ => return None,
    })
}

/// `GET /runs/RUN/phases/PHASE/files/NAME`: a file artifact's bytes.
/// Raster images are shown inline; text is served as plain text; anything
/// else is a download. Nothing is ever served as HTML or script.
pub async fn file(
    repo: Repo,
    Path((run, phase, name)): Path<(String, String, String)>,
) -> Response {
    let kind = image_type(&name);
    let shown = name.clone();
    let built = repo
        .read(move |r| {
            let id = resolve(r, &run)?;
            Ok(view::phase_file(&r.store, &id, &phase, &name)?)
        })
        .await;
    let bytes = match built {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let (content_type, disposition) = match kind {
        Some(t) => (t, "inline".to_string()),
        None if crate::attempt::is_text(&bytes) => ("text/plain; charset=utf-8", "inline".into()),
        None => {
            let file = shown.rsplit('/').next().unwrap_or("file").replace('"', "");
            (
                "application/octet-stream",
                format!("attachment; filename=\"{file}\""),
            )
        }
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".into(),
            ),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_images_are_images() {
        assert_eq!(image_type("shot.PNG"), Some("image/png"));
        assert_eq!(image_type("a/b.jpeg"), Some("image/jpeg"));
        assert_eq!(image_type("x.svg"), None);
        assert_eq!(image_type("x.html"), None);
        assert_eq!(image_type("noext"), None);
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(cut("abc".into()), "abc");
        let long = "x".repeat(MAX_CALL_CHARS + 10);
        assert_eq!(cut(long).chars().count(), MAX_CALL_CHARS + 2);
    }
}
