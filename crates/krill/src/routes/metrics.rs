//! `GET /api/metrics`: the server's counters in the Prometheus text format
//! (protected, like every `/api` route).

use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::metrics::Gauges;

pub async fn get(State(state): State<AppState>) -> Response {
    let now = Instant::now();
    let gauges = Gauges {
        throttled_addresses: state.throttle.blocked_count(now),
        tracked_addresses: state.throttle.tracked_count(),
        uptime_seconds: state.started.elapsed().as_secs(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(gauges),
    )
        .into_response()
}
