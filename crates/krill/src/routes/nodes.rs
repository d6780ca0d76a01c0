//! `/api/nodes`: the node API (SPEC §7).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::AppState;

/// `GET /api/nodes`: every node, ordered by id.
pub async fn list(State(state): State<AppState>) -> Response {
    match state.store.list_nodes().await {
        Ok(nodes) => Json(nodes).into_response(),
        Err(e) => super::store_failure(e),
    }
}
