//! One log line per request (SPEC §8): method, path without query, status,
//! duration, peer address and auth outcome. Rejected keys are logged at WARN
//! so `journalctl -u krill` shows unauthorized attempts. No header value and
//! no key, not even in part, is ever passed to the logger.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};

use crate::auth::Verdict;

/// The tracing target of request lines, so they can be filtered apart
/// (`KRILL_LOG=krill::access=warn`).
pub const TARGET: &str = "krill::access";

/// Writes the line for one request.
pub fn record(
    method: &Method,
    path: &str,
    status: StatusCode,
    elapsed: Duration,
    peer: SocketAddr,
    verdict: Verdict,
) {
    let status = status.as_u16();
    let duration_us = elapsed.as_micros() as u64;
    match verdict {
        Verdict::Denied(denial) => tracing::warn!(
            target: TARGET,
            %method, path, status, duration_us, %peer, auth = denial.label(),
            "unauthorized request"
        ),
        _ => tracing::info!(
            target: TARGET,
            %method, path, status, duration_us, %peer, auth = %verdict,
            "request"
        ),
    }
}
