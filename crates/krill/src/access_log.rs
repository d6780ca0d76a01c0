//! One log line per request (SPEC §8): method, path without query, status,
//! duration, peer address and auth outcome. Rejected keys are logged at WARN
//! so `journalctl -u krill` shows unauthorized attempts. No header value and
//! no key, not even in part, is ever passed to the logger.
//!
//! Requests refused unchecked while their address is blocked for failed
//! keys are logged at DEBUG: the block's start is one WARN line and its end
//! one INFO line, so an attack does not flood the journal; they are still
//! counted in `krill_auth_total{outcome="throttled"}`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::http::{Method, StatusCode};

use crate::gate::Outcome;

/// The tracing target of request lines, so they can be filtered apart
/// (`KRILL_LOG=krill::access=warn`).
pub const TARGET: &str = "krill::access";

/// The longest path logged whole; longer ones are cut, with their length
/// noted, so a client cannot fill the journal with 30 KiB paths.
pub const MAX_LOGGED_PATH: usize = 256;

fn shortened(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= MAX_LOGGED_PATH {
        return path.into();
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} bytes)", &path[..end], path.len()).into()
}

/// Writes the line for one request. `client` is the address a trusted
/// proxy forwarded for, if any.
pub fn record(
    method: &Method,
    path: &str,
    status: StatusCode,
    elapsed: Duration,
    peer: SocketAddr,
    client: Option<IpAddr>,
    outcome: Outcome,
) {
    let path = shortened(path);
    let path = path.as_ref();
    let status = status.as_u16();
    let duration_us = elapsed.as_micros() as u64;
    let client = client.map(tracing::field::display);
    let auth = outcome.label();
    match outcome {
        Outcome::Denied(_) => tracing::warn!(
            target: TARGET,
            %method, path, status, duration_us, %peer, client, auth = %auth,
            "unauthorized request"
        ),
        Outcome::Throttled(_) => tracing::debug!(
            target: TARGET,
            %method, path, status, duration_us, %peer, client, auth = %auth,
            "refused: address throttled"
        ),
        Outcome::Pass(_) => tracing::info!(
            target: TARGET,
            %method, path, status, duration_us, %peer, client, auth = %auth,
            "request"
        ),
    }
}
