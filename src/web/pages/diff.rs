//! Page `diff` (filled in after the skeleton).

use axum::response::{IntoResponse, Response};

use crate::web::render::WebError;

/// The page.
pub async fn html() -> Response {
    WebError::NotFound("not built yet".into()).into_response()
}

/// The page as JSON.
pub async fn json() -> Response {
    WebError::NotFound("not built yet".into()).json()
}
