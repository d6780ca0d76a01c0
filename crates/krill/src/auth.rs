//! Who may call what (SPEC §5). Deny by default.
//!
//! [`PUBLIC_ROUTES`] is the whole list of requests answered without the
//! key. Every other request, whatever its method or path, including paths no
//! handler serves, must carry exactly one `X-API-Key` field whose value is
//! the key. The check runs in the connection's service *before* routing
//! (see `server`), so an unknown path without the key gets the same 401 as a
//! real one and a caller learns nothing about which routes exist.
//!
//! Public routes are matched on the exact, undecoded request path: no
//! double slash, dot segment, percent-encoding, case change, trailing slash
//! or `;` parameter turns another path into a public one. The key is read
//! only from the header, never from the query string, a cookie or the body.

use std::fmt;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::key::ApiKey;

/// The header that carries the key. Header names are case-insensitive;
/// `http` stores them lower-case.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The requests answered without a key: exact path, these methods only.
pub const PUBLIC_ROUTES: &[(&str, &[Method])] = &[
    ("/health", &[Method::GET, Method::HEAD]),
    ("/trust", &[Method::GET, Method::HEAD]),
];

/// Why a request was refused. The label is the `reason` in the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No `X-API-Key` field.
    MissingApiKey,
    /// One field, but its value is not the key.
    InvalidApiKey,
    /// More than one `X-API-Key` field.
    AmbiguousApiKey,
}

impl Denial {
    /// The machine-readable reason.
    pub fn label(self) -> &'static str {
        match self {
            Denial::MissingApiKey => "missing_api_key",
            Denial::InvalidApiKey => "invalid_api_key",
            Denial::AmbiguousApiKey => "ambiguous_api_key",
        }
    }
}

/// The outcome of the check, also written to the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A public route: no key needed (any key sent is ignored).
    Public,
    /// The request carried the key.
    Granted,
    /// Refused before routing.
    Denied(Denial),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Public => f.write_str("public"),
            Verdict::Granted => f.write_str("granted"),
            Verdict::Denied(d) => f.write_str(d.label()),
        }
    }
}

/// True when `method` and `path` name a public route.
pub fn is_public(method: &Method, path: &str) -> bool {
    PUBLIC_ROUTES
        .iter()
        .any(|(p, methods)| *p == path && methods.contains(method))
}

/// Applies the rule to a request's method, raw path and headers.
pub fn check(method: &Method, path: &str, headers: &HeaderMap, key: &ApiKey) -> Verdict {
    if is_public(method, path) {
        return Verdict::Public;
    }
    let mut values = headers.get_all(API_KEY_HEADER).iter();
    let Some(first) = values.next() else {
        return Verdict::Denied(Denial::MissingApiKey);
    };
    if values.next().is_some() {
        return Verdict::Denied(Denial::AmbiguousApiKey);
    }
    // HTTP/1.1 parsers drop whitespace around a field value; HTTP/2 sends
    // it as is. Drop it here too, so both protocols judge the same value
    // (a key never contains whitespace).
    if key.matches(trim_ows(first.as_bytes())) {
        Verdict::Granted
    } else {
        Verdict::Denied(Denial::InvalidApiKey)
    }
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The 401 answer: identical for every path, so it reveals no routes.
pub fn unauthorized(denial: Denial) -> Response<Body> {
    let body = format!(
        "{{\"error\":\"unauthorized\",\"reason\":\"{}\"}}",
        denial.label()
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey::parse(b"0d9c3b8e-7a51-4f7e-9c1e-5b2f8a6d4c31").unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("X-Api-Key", HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn public_routes_need_no_key() {
        let k = key();
        assert_eq!(
            check(&Method::GET, "/health", &headers(&[]), &k),
            Verdict::Public
        );
        assert_eq!(
            check(&Method::HEAD, "/trust", &headers(&[]), &k),
            Verdict::Public
        );
    }

    #[test]
    fn other_methods_on_public_paths_need_the_key() {
        let k = key();
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_eq!(
                check(&m, "/health", &headers(&[]), &k),
                Verdict::Denied(Denial::MissingApiKey)
            );
        }
    }

    #[test]
    fn spellings_of_public_paths_are_not_public() {
        let k = key();
        for path in [
            "/health/",
            "//health",
            "/HEALTH",
            "/%68ealth",
            "/health;x",
            "/./health",
            "/health/..",
            "/trust/../api/nodes",
            "/api/../health",
            "",
        ] {
            assert_eq!(
                check(&Method::GET, path, &headers(&[]), &k),
                Verdict::Denied(Denial::MissingApiKey),
                "{path}"
            );
        }
    }

    #[test]
    fn reasons() {
        let k = key();
        let good = k.expose().to_owned();
        let get = |h: &[&str]| check(&Method::GET, "/api/nodes", &headers(h), &k);
        assert_eq!(get(&[&good]), Verdict::Granted);
        assert_eq!(get(&[]), Verdict::Denied(Denial::MissingApiKey));
        assert_eq!(get(&["nope"]), Verdict::Denied(Denial::InvalidApiKey));
        assert_eq!(get(&[""]), Verdict::Denied(Denial::InvalidApiKey));
        // Whitespace around a field value is not part of it (HTTP/1.1
        // parsers drop it; HTTP/2 must be judged the same way).
        assert_eq!(get(&[&format!(" {good}\t")]), Verdict::Granted);
        assert_eq!(
            get(&[&format!("{} {}", &good[..3], &good[3..])]),
            Verdict::Denied(Denial::InvalidApiKey)
        );
        assert_eq!(
            get(&[&good, &good]),
            Verdict::Denied(Denial::AmbiguousApiKey)
        );
        assert_eq!(get(&[&good, "x"]), Verdict::Denied(Denial::AmbiguousApiKey));
    }
}
