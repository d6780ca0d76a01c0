//! The HTTP routes, one module per top-level path segment. Authentication
//! is not done here: `auth` runs before this router sees a request.
//!
//! Every route is registered through [`RouteTable`], which remembers the
//! method and path it added, so [`route_list`] is exactly what the router
//! serves; a test holds the OpenAPI document (`docs/openapi.json`, served
//! by [`openapi`]) to that list.
//!
//! Every answer this router makes for a bad request is JSON
//! `{"error": label, "message": sentence}` ([`error`]); axum's own
//! plain-text rejections never reach a client (see [`body`]).

pub mod body;
pub mod config;
pub mod health;
pub mod metrics;
pub mod nodes;
pub mod openapi;
pub mod trust;

use std::sync::Arc;
use std::time::Instant;

use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use serde_json::json;

use crate::config::Config;
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
    /// The runtime settings, mirroring the store; replaced on every
    /// successful `PATCH /api/config`.
    pub config: Arc<Slot<Config>>,
    /// Counters for `GET /api/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The failed-key throttle, consulted by the gate.
    pub throttle: Arc<crate::throttle::Throttle>,
    pub started: Instant,
}

/// How much request body handlers read, and how fast it must come
/// (`limits.max_body_bytes` and `limits.body_read_timeout_secs` in
/// `krill.toml`). The gate puts it in each request's extensions; without
/// it, [`body::MAX_BODY_BYTES`] and [`body::BODY_READ_TIMEOUT`] apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    pub max_bytes: usize,
    pub timeout: std::time::Duration,
}

/// Builds the router. Tests can drive it without a socket; the server wraps
/// it in the auth check.
pub fn router(state: AppState) -> Router {
    table()
        .router
        // Lets the gate count requests by route template, a bounded set.
        .route_layer(axum::middleware::from_fn(tag_matched_path))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Every `(method, path)` the router serves, in registration order. `GET`
/// routes also answer `HEAD`. Paths use the router's `{param}` syntax,
/// which is also OpenAPI's.
pub fn route_list() -> Vec<(Method, &'static str)> {
    table().routes
}

fn table() -> RouteTable {
    RouteTable::default()
        .add(Method::GET, "/health", health::get)
        .add(Method::GET, "/trust", trust::get)
        .add(Method::GET, "/api/nodes", nodes::list)
        .add(Method::POST, "/api/nodes", nodes::create)
        .add(Method::GET, "/api/nodes/{id}", nodes::get)
        .add(Method::PUT, "/api/nodes/{id}", nodes::put)
        .add(Method::DELETE, "/api/nodes/{id}", nodes::delete)
        .add(Method::GET, "/api/config", config::get)
        .add(Method::PATCH, "/api/config", config::patch)
        .add(Method::GET, "/api/openapi.json", openapi::get)
        .add(Method::GET, "/api/metrics", metrics::get)
}

/// A router that remembers what was added to it.
#[derive(Default)]
struct RouteTable {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl RouteTable {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> RouteTable
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            Method::GET => MethodFilter::GET,
            Method::POST => MethodFilter::POST,
            Method::PUT => MethodFilter::PUT,
            Method::PATCH => MethodFilter::PATCH,
            Method::DELETE => MethodFilter::DELETE,
            // The table above is fixed at compile time; a test covers it.
            _ => unreachable!("RouteTable::add supports GET, POST, PUT, PATCH and DELETE"),
        };
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push((method, path));
        self
    }
}

/// Copies the matched route template into the response's extensions.
async fn tag_matched_path(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let matched = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

/// A JSON error answer: `{"error": label, "message": sentence}`.
pub fn error(status: StatusCode, label: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": label, "message": message.into() });
    (status, Json(body)).into_response()
}

/// A refusal on its way to becoming an [`error`] answer; handlers and
/// extractors return it with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine label, e.g. `malformed_json`.
    pub label: &'static str,
    /// One sentence saying what is wrong.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, label: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            label,
            message: message.into(),
        }
    }

    /// A 400 with this label and message.
    pub fn bad_request(label: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, label, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.label, self.message)
    }
}

/// Store failures are the server's problem, not the client's: log the
/// detail, answer 500 with a sentence that leaks nothing.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "store operation failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            "the server could not read or write its store; the administrator can find \
             the cause in the server log",
        )
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see the API documentation for the paths this server serves",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not accept that method",
    )
}
