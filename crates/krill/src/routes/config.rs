//! `/api/config`: the server's runtime settings ([`crate::config`]).
//! Secrets are never part of them.

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::body::MergePatch;
use super::{ApiError, AppState};
use crate::config::Config;
use crate::store::config as stored;
use crate::throttle::ThrottlePolicy;

/// `GET /api/config`: the current settings, every field present.
pub async fn get(State(state): State<AppState>) -> Json<Config> {
    Json((*state.config.current()).clone())
}

/// `PATCH /api/config`: a JSON merge patch; 200 with the settings after
/// the change, or 400 naming the field at fault and changing nothing.
pub async fn patch(
    State(state): State<AppState>,
    MergePatch(patch): MergePatch<Value>,
) -> Result<Json<Config>, ApiError> {
    let slot = state.config.clone();
    let throttle = state.throttle.clone();
    let result = state
        .store
        .call(move |c| {
            stored::patch(c, &patch, |config| {
                // Takes effect at once, like the rest of the settings.
                let max_tracked = throttle.policy().max_tracked;
                throttle.set_policy(ThrottlePolicy::new(&config.auth_throttle, max_tracked));
                slot.replace(config.clone());
            })
        })
        .await?;
    match result {
        Ok(config) => Ok(Json(config)),
        Err(e) => Err(ApiError::bad_request("invalid_config", e.to_string())),
    }
}
