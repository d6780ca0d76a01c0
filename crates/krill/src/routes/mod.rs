//! The HTTP routes, one module per top-level path segment. Authentication
//! is not done here: `auth` runs before this router sees a request.

pub mod health;
pub mod nodes;
pub mod trust;

use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::key::ApiKey;
use crate::slot::Slot;
use crate::store::{Store, StoreError};
use crate::tls::CertSlot;

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The key every protected request is checked against.
    pub key: Arc<Slot<ApiKey>>,
    /// The TLS identity, or `None` when serving plain HTTP.
    pub certs: Option<Arc<CertSlot>>,
    pub store: Store,
    pub started: Instant,
}

/// Builds the router. Tests can drive it without a socket; the server wraps
/// it in the auth check.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::get))
        .route("/trust", get(trust::get))
        .route("/api/nodes", get(nodes::list))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A JSON error answer: `{"error": label, "message": sentence}`.
pub fn error(status: StatusCode, label: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": label, "message": message.into() });
    (status, Json(body)).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see the API documentation for the paths this server serves",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not accept that method",
    )
}

/// Store failures are the server's problem, not the client's: log the
/// detail, answer 500 with a sentence that leaks nothing.
pub fn store_failure(e: StoreError) -> Response {
    tracing::error!(error = %e, "store operation failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "storage_error",
        "the server could not read or write its store; the administrator can find \
         the cause in the server log",
    )
}
