//! The guard in front of every route: DNS rebinding, the token and the
//! origin of anything that changes state.
//!
//! - The Host header must be `127.0.0.1:PORT` or `localhost:PORT`: a page
//!   of another site whose name was re-pointed at 127.0.0.1 sends its own
//!   name, and is refused (403).
//! - Every request other than GET/HEAD needs the token (the `X-Wfe-Token`
//!   header or the cookie) and an Origin header naming this server; a
//!   missing Origin is refused too.
//! - GET/HEAD need the token as well, unless `--public-read`.
//! - `?token=…` on any GET sets the cookie (`HttpOnly; SameSite=Strict`)
//!   and redirects to the same URL without it, so the token does not stay
//!   in the address bar or history.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::AppState;

/// The header a script sends the token in.
pub const TOKEN_HEADER: &str = "x-wfe-token";

/// The middleware: refuses or passes `req` on.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let Some(host) = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| host_allowed(h, state.port))
    else {
        return refuse(
            StatusCode::FORBIDDEN,
            "this server answers only to 127.0.0.1 and localhost",
        );
    };
    let host = host.to_string();
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    if safe && let Some(asked) = query_token(req.uri().query()) {
        if !same_secret(&asked, &state.token) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the token in the URL is not this server's",
            );
        }
        return set_cookie_and_redirect(&state, req.uri());
    }
    let has_token = presented_token(headers, &state.cookie_name())
        .is_some_and(|t| same_secret(&t, &state.token));
    if safe {
        if !has_token && !state.public_read {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "open the URL `wfe serve` printed (it carries the token)",
            );
        }
    } else {
        if !has_token {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "a change needs the server's token",
            );
        }
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if origin != Some(format!("http://{host}").as_str()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "a change needs an Origin header naming this server",
            );
        }
    }
    next.run(req).await
}

/// Whether `host` (a Host header) names this server.
pub fn host_allowed(host: &str, port: u16) -> bool {
    host == format!("127.0.0.1:{port}") || host == format!("localhost:{port}")
}

/// The `token` query parameter, if any.
fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
}

/// The token from the header, else from the cookie.
fn presented_token(headers: &HeaderMap, cookie: &str) -> Option<String> {
    if let Some(t) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(t.to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == cookie)
        .map(|(_, v)| v.to_string())
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// 303 to `uri` without its `token` parameter, setting the cookie.
fn set_cookie_and_redirect(state: &AppState, uri: &axum::http::Uri) -> Response {
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("token="))
        .collect();
    let mut to = uri.path().to_string();
    if !rest.is_empty() {
        to.push('?');
        to.push_str(&rest.join("&"));
    }
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        state.cookie_name(),
        state.token
    );
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, to), (header::SET_COOKIE, cookie)],
    )
        .into_response()
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}: {why}\n", status.as_u16()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_the_loopback_names_with_the_port() {
        assert!(host_allowed("127.0.0.1:7420", 7420));
        assert!(host_allowed("localhost:7420", 7420));
        assert!(!host_allowed("localhost:7421", 7420));
        assert!(!host_allowed("evil.example:7420", 7420));
        assert!(!host_allowed("127.0.0.1", 7420));
        assert!(!host_allowed("[::1]:7420", 7420));
    }

    #[test]
    fn tokens_come_from_the_header_then_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; wfe_token_9=abc".parse().unwrap());
        assert_eq!(presented_token(&h, "wfe_token_9").as_deref(), Some("abc"));
        assert_eq!(presented_token(&h, "wfe_token_8"), None);
        h.insert(TOKEN_HEADER, "xyz".parse().unwrap());
        assert_eq!(presented_token(&h, "wfe_token_9").as_deref(), Some("xyz"));
        assert_eq!(query_token(Some("a=1&token=t")).as_deref(), Some("t"));
        assert_eq!(query_token(Some("tokens=t")), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
