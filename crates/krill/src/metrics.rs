//! Counters for `GET /api/metrics`, in the Prometheus text format.
//!
//! Labels come only from bounded sets (route templates, status codes, auth
//! outcomes), never from what a client sends, so a caller cannot grow the
//! registry: an unknown path is counted under `route="(unmatched)"`, a
//! refused request under `route="(refused)"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Route label for requests refused before routing (401, 429).
pub const ROUTE_REFUSED: &str = "(refused)";
/// Route label for requests no route matched.
pub const ROUTE_UNMATCHED: &str = "(unmatched)";

/// Auth outcomes counted, in the order they are printed.
pub const AUTH_OUTCOMES: [&str; 6] = [
    "public",
    "granted",
    "missing_api_key",
    "invalid_api_key",
    "ambiguous_api_key",
    "throttled",
];

/// The process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    auth: [AtomicU64; AUTH_OUTCOMES.len()],
    pub throttle_blocks: AtomicU64,
    pub key_reloads: AtomicU64,
    pub key_reload_failures: AtomicU64,
    pub cert_reloads: AtomicU64,
    pub cert_reload_failures: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub plain_http_refused: AtomicU64,
    pub connections_refused: AtomicU64,
    pub open_connections: AtomicU64,
}

/// Gauges read at render time from elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub throttled_addresses: usize,
    pub tracked_addresses: usize,
    pub uptime_seconds: u64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record_request(&self, route: &str, status: u16, auth_outcome: &str) {
        {
            let mut requests = crate::slot::lock(&self.requests);
            // Allocates only the first time a route is seen.
            let by_status = match requests.get_mut(route) {
                Some(by_status) => by_status,
                None => requests.entry(route.to_owned()).or_default(),
            };
            *by_status.entry(status).or_insert(0) += 1;
        }
        if let Some(i) = AUTH_OUTCOMES.iter().position(|o| *o == auth_outcome) {
            self.auth[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole registry in the Prometheus text exposition format.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        header(
            &mut out,
            "krill_build_info",
            "gauge",
            "Version of the running server.",
        );
        let _ = writeln!(
            out,
            "krill_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        header(
            &mut out,
            "krill_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
        );
        let _ = writeln!(out, "krill_uptime_seconds {}", gauges.uptime_seconds);

        header(
            &mut out,
            "krill_requests_total",
            "counter",
            "Requests answered, by route template and status.",
        );
        {
            let requests = crate::slot::lock(&self.requests);
            for (route, by_status) in requests.iter() {
                for (status, count) in by_status {
                    let _ = writeln!(
                        out,
                        "krill_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                        escape(route)
                    );
                }
            }
        }

        header(
            &mut out,
            "krill_auth_total",
            "counter",
            "Auth outcomes of requests.",
        );
        for (name, counter) in AUTH_OUTCOMES.iter().zip(&self.auth) {
            let _ = writeln!(
                out,
                "krill_auth_total{{outcome=\"{name}\"}} {}",
                load(counter)
            );
        }

        let simple: [(&str, &str, &str, u64); 10] = [
            (
                "krill_throttled_addresses",
                "gauge",
                "Client addresses blocked for failed keys right now.",
                gauges.throttled_addresses as u64,
            ),
            (
                "krill_throttle_tracked_addresses",
                "gauge",
                "Client addresses with recent failed keys remembered.",
                gauges.tracked_addresses as u64,
            ),
            (
                "krill_throttle_blocks_total",
                "counter",
                "Times an address was blocked for failed keys.",
                load(&self.throttle_blocks),
            ),
            (
                "krill_key_reloads_total",
                "counter",
                "Successful reloads of the API key file.",
                load(&self.key_reloads),
            ),
            (
                "krill_key_reload_failures_total",
                "counter",
                "Reloads of the API key file that kept the old key.",
                load(&self.key_reload_failures),
            ),
            (
                "krill_cert_reloads_total",
                "counter",
                "Successful reloads of the TLS certificate.",
                load(&self.cert_reloads),
            ),
            (
                "krill_cert_reload_failures_total",
                "counter",
                "Reloads of the TLS certificate that kept the old one.",
                load(&self.cert_reload_failures),
            ),
            (
                "krill_tls_handshake_failures_total",
                "counter",
                "TLS handshakes that failed or timed out.",
                load(&self.tls_handshake_failures),
            ),
            (
                "krill_plain_http_refused_total",
                "counter",
                "Plain-HTTP requests refused on the TLS port.",
                load(&self.plain_http_refused),
            ),
            (
                "krill_connections_open",
                "gauge",
                "Client connections open right now.",
                load(&self.open_connections),
            ),
        ];
        for (name, kind, help, value) in simple {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "krill_connections_refused_total",
            "counter",
            "Connections closed at once because the connection limit was reached.",
        );
        let _ = writeln!(
            out,
            "krill_connections_refused_total {}",
            load(&self.connections_refused)
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_bounded_labels() {
        let m = Metrics::default();
        m.record_request("/api/nodes/{id}", 200, "granted");
        m.record_request("/api/nodes/{id}", 200, "granted");
        m.record_request(ROUTE_REFUSED, 401, "invalid_api_key");
        Metrics::bump(&m.key_reloads);
        let text = m.render(Gauges::default());
        assert!(text.contains("krill_requests_total{route=\"/api/nodes/{id}\",status=\"200\"} 2"));
        assert!(text.contains("krill_requests_total{route=\"(refused)\",status=\"401\"} 1"));
        assert!(text.contains("krill_auth_total{outcome=\"invalid_api_key\"} 1"));
        assert!(text.contains("krill_key_reloads_total 1"));
        assert!(text.contains("krill_build_info{version="));
        // Every sample line belongs to a declared metric.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
