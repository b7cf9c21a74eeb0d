//! Server-side rendering: the minijinja environment with every template
//! embedded, and the error page. Templates auto-escape HTML (their names
//! end in `.html`), so text from runs is never markup.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use minijinja::Environment;
use serde::Serialize;

/// Every template, by name, embedded in the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("board.html", include_str!("templates/board.html")),
    ("run.html", include_str!("templates/run.html")),
    ("run_phases.html", include_str!("templates/run_phases.html")),
    ("phase.html", include_str!("templates/phase.html")),
    ("artifact.html", include_str!("templates/artifact.html")),
    ("diff.html", include_str!("templates/diff.html")),
    ("search.html", include_str!("templates/search.html")),
    // The controls, templates and providers pages.
    ("controls.html", include_str!("templates/controls.html")),
    ("fields.html", include_str!("templates/fields.html")),
    ("new_run.html", include_str!("templates/new_run.html")),
    ("templates.html", include_str!("templates/templates.html")),
    ("template.html", include_str!("templates/template.html")),
    (
        "template_edit.html",
        include_str!("templates/template_edit.html"),
    ),
    ("providers.html", include_str!("templates/providers.html")),
];

/// The environment, built once.
pub fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // A template that does not parse is a bug caught by the test below.
            let _ = env.add_template(name, source);
        }
        env.add_filter("duration", duration);
        env.add_filter("short", |s: String| s.chars().take(10).collect::<String>());
        env.add_filter("urlencode", urlencode);
        env
    })
}

/// Percent-encodes everything but unreserved characters (RFC 3986), so
/// a value is safe in a path segment or a query parameter.
pub fn urlencode(text: String) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `1234` (ms) → `1.2s`, `75000` → `1m15s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Renders template `name` with `ctx` as an HTML page.
pub fn page(name: &str, ctx: impl Serialize) -> Response {
    part(name, ctx, false)
}

/// Renders template `name` whole, or (`fragment`) only its `live` block:
/// what a page re-fetches (`?fragment=live`) when the event stream says
/// the run moved.
pub fn part(name: &str, ctx: impl Serialize, fragment: bool) -> Response {
    let ctx = minijinja::Value::from(minijinja::value::Serde(ctx));
    let rendered = env().get_template(name).and_then(|t| {
        if fragment {
            t.render_captured(ctx)?
                .with_state_mut(|state| state.render_block("live"))
        } else {
            t.render(ctx)
        }
    });
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(e) => WebError::Internal(format!("template {name}: {e:#}")).into_response(),
    }
}

/// Why a request failed, and how it answers.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Something asked for is not there (404).
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The server failed (500).
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The same error answered as JSON (`/api/…`).
    pub fn json(self) -> Response {
        let status = self.status();
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, Html(error_page(status, &self.to_string()))).into_response()
    }
}

/// The error page: the layout without a repository, and the message.
fn error_page(status: StatusCode, message: &str) -> String {
    let title = status.canonical_reason().unwrap_or("error");
    env()
        .get_template("error.html")
        .and_then(|t| {
            t.render(minijinja::context! {
                layout => minijinja::context! {
                    title => title,
                    nav => "",
                    repo => 0,
                    repo_name => "",
                    repos => Vec::<String>::new(),
                    q => "",
                    qa => "",
                    version => env!("CARGO_PKG_VERSION"),
                },
                title => title,
                status => status.as_u16(),
                message => message,
            })
        })
        .unwrap_or_else(|_| message.to_string())
}

impl From<crate::store::StoreError> for WebError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as S;
        match e {
            S::NoSuchRun { .. } | S::NoSuchCheckpoint { .. } => WebError::NotFound(e.to_string()),
            S::AmbiguousRun { .. } => WebError::BadRequest(e.to_string()),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<crate::engine::EngineError> for WebError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match e {
            E::Store(s) => s.into(),
            E::NoSuchPhase { .. } | E::NoSuchArtifact { .. } | E::NotInRun { .. } => {
                WebError::NotFound(e.to_string())
            }
            E::BadTarget { .. } => WebError::BadRequest(e.to_string()),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<crate::engine::view::ViewError> for WebError {
    fn from(e: crate::engine::view::ViewError) -> Self {
        use crate::engine::view::ViewError as V;
        match e {
            V::Engine(inner) => inner.into(),
            V::BadIteration { .. } | V::NotInLoop { .. } => WebError::BadRequest(e.to_string()),
            other => WebError::NotFound(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e:#}"));
        }
    }

    #[test]
    fn text_is_escaped() {
        let html = error_page(StatusCode::NOT_FOUND, "<script>x</script>");
        assert!(html.contains("<h1>404 Not Found</h1>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>x"), "{html}");
    }

    #[test]
    fn urls_are_encoded() {
        assert_eq!(
            urlencode("a b/c#1&x=é".into()),
            "a%20b%2Fc%231%26x%3D%C3%A9"
        );
        assert_eq!(urlencode("run-1.2_~".into()), "run-1.2_~");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(duration(12), "12ms");
        assert_eq!(duration(1234), "1.2s");
        assert_eq!(duration(75_000), "1m15s");
        assert_eq!(duration(3_720_000), "1h02m");
    }
}
