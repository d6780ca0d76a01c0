//! `GET /api/openapi.json`: the OpenAPI 3 description of every route, for
//! client generators. Protected like every other `/api` route. The
//! document is `docs/openapi.json` in the repository, built into the
//! binary; a test holds it to [`super::route_list`].

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as shipped in `docs/openapi.json`.
pub const DOCUMENT: &str = include_str!("../../../../docs/openapi.json");

pub async fn get() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
