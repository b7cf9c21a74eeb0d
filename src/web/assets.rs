//! The embedded script and style sheet: hand-written, no build step, no
//! CDN. Served with a content type and a cache header (they change only
//! with the binary, whose version is in the URL's query).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The script: keyboard navigation, the live stream, the virtual log.
pub const APP_JS: &str = include_str!("assets/app.js");
/// The style sheet: light and dark.
pub const APP_CSS: &str = include_str!("assets/app.css");

/// The controls' script: fetch() for control forms, JSON checks in editors.
pub const CONTROLS_JS: &str = include_str!("assets/controls.js");

/// How long a browser may keep an asset without asking again.
const CACHE: &str = "public, max-age=3600";

/// `GET /assets/app.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        APP_JS,
    )
        .into_response()
}

/// `GET /assets/controls.js`.
pub async fn controls_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        CONTROLS_JS,
    )
        .into_response()
}

/// `GET /assets/app.css`.
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE),
        ],
        APP_CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget is 150 KB gzipped; no gzip is in the dependency
    /// tree, so the raw size is held under it (gzip only makes it smaller).
    #[test]
    fn assets_stay_under_150_kb() {
        let total = APP_JS.len() + APP_CSS.len() + CONTROLS_JS.len();
        assert!(total < 150 * 1024, "assets are {total} bytes");
    }
}
