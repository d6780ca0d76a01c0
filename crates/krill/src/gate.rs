//! The gate every request passes before routing: which client sent it, the
//! failed-key throttle, the auth rule ([`crate::auth`]), then the router;
//! and after it, the metrics and the access-log line.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use tower::ServiceExt;

use crate::access_log;
use crate::auth::{self, Denial, Verdict};
use crate::metrics::{Metrics, ROUTE_REFUSED, ROUTE_UNMATCHED};
use crate::routes::{AppState, BodyLimit};
use crate::settings::Limits;
use crate::throttle::{Admission, Transition};

/// How much of a refused request's body is read (and discarded) before
/// answering, so HTTP/2 clients see the 401 instead of a reset stream.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long that reading may take.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// What the gate decided, as logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed by the auth rule (public or with the key).
    Pass(Verdict),
    /// Refused by the auth rule.
    Denied(Denial),
    /// Refused unchecked: the address is blocked for failed keys.
    Throttled(Duration),
}

impl Outcome {
    /// The label in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass(Verdict::Public) => "public",
            Outcome::Pass(_) => "granted",
            Outcome::Denied(d) => d.label(),
            Outcome::Throttled(_) => "throttled",
        }
    }
}

/// What the gate needs from the server.
pub struct Gate {
    pub router: Router,
    pub state: AppState,
    pub limits: Limits,
}

impl Gate {
    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let client = client_ip(peer.ip(), request.headers(), &self.limits.trusted_proxies);
        let state = &self.state;

        let outcome = if auth::is_public(&method, &path) {
            Outcome::Pass(Verdict::Public)
        } else {
            match state.throttle.admit(client, started) {
                Admission::Blocked { retry_after } => Outcome::Throttled(retry_after),
                Admission::Check => {
                    let key = state.key.current();
                    match auth::check(&method, &path, request.headers(), &key) {
                        Verdict::Denied(denial) => Outcome::Denied(denial),
                        pass => Outcome::Pass(pass),
                    }
                }
            }
        };

        let response = match outcome {
            Outcome::Pass(verdict) => {
                if verdict == Verdict::Granted {
                    state.throttle.record_success(client);
                }
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(BodyLimit {
                    max_bytes: self.limits.max_body_bytes,
                    timeout: self.limits.body_read_timeout(),
                });
                match self.router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            Outcome::Denied(denial) => {
                // A request without the key counts too: it cannot guess,
                // but a client hammering without one would otherwise be
                // free to flood the log with WARN lines.
                self.count_failure(client, started);
                drain(request.into_body()).await;
                auth::unauthorized(denial)
            }
            Outcome::Throttled(retry_after) => {
                drain(request.into_body()).await;
                too_many_requests(retry_after)
            }
        };

        let status = response.status();
        let route = match response.extensions().get::<MatchedPath>() {
            Some(matched) => matched.as_str(),
            None if matches!(outcome, Outcome::Pass(_)) => ROUTE_UNMATCHED,
            None => ROUTE_REFUSED,
        };
        state
            .metrics
            .record_request(route, status.as_u16(), outcome.label());
        let forwarded = (client != peer.ip()).then_some(client);
        access_log::record(
            &method,
            &path,
            status,
            started.elapsed(),
            peer,
            forwarded,
            outcome,
        );
        response
    }

    fn count_failure(&self, client: IpAddr, now: Instant) {
        if let Some(Transition::Started { source, backoff }) =
            self.state.throttle.record_failure(client, now)
        {
            Metrics::bump(&self.state.metrics.throttle_blocks);
            tracing::warn!(
                target: access_log::TARGET,
                source = %source,
                backoff_secs = backoff.as_secs(),
                "too many wrong API keys: refusing this address unchecked for a while"
            );
        }
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy,
/// then the right-most address in `X-Forwarded-For` that is not one.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // From the right: skip our own proxies; the first other hop is the
    // client. A hop that is not an address (`unknown`, garbage) ends the
    // walk there: what lies left of it was written by someone untrusted.
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    peer
}

/// Reads and discards a bounded part of a refused request's body.
async fn drain(body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, Limited::new(body, DRAIN_LIMIT).collect()).await;
}

/// The 429 for a blocked address.
fn too_many_requests(retry_after: Duration) -> Response<Body> {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let body = format!(
        "{{\"error\":\"too_many_requests\",\"message\":\"too many wrong API keys came from \
         this address; it is refused for {seconds} more seconds\"}}"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.2"),
        );
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            client_ip(ip("192.0.2.1"), &headers, &proxies),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &proxies),
            ip("203.0.113.9")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &[]), ip("10.0.0.1"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &proxies),
            ip("10.0.0.1")
        );
    }
}
