//! SPEC §5 over real HTTPS: public routes, deny by default, the three 401
//! reasons, path spellings, methods, and where the key is (not) accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{assert_no_secret, Install};

#[tokio::test]
async fn the_key_opens_the_api_and_its_absence_gets_the_right_reason() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let key = install.key();

    let ok = client.get("/api/nodes", &[("X-API-Key", &key)]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json(), serde_json::json!([]));

    let missing = client.get("/api/nodes", &[]).await;
    assert_eq!(
        (missing.status, missing.reason().as_str()),
        (401, "missing_api_key")
    );
    let wrong = client
        .get("/api/nodes", &[("X-API-Key", "not-the-key")])
        .await;
    assert_eq!(
        (wrong.status, wrong.reason().as_str()),
        (401, "invalid_api_key")
    );
    let two = client
        .get("/api/nodes", &[("X-API-Key", &key), ("X-API-Key", &key)])
        .await;
    assert_eq!(
        (two.status, two.reason().as_str()),
        (401, "ambiguous_api_key")
    );
    assert_eq!(
        two.json(),
        serde_json::json!({"error": "unauthorized", "reason": "ambiguous_api_key"})
    );
}

#[tokio::test]
async fn the_same_rules_hold_over_http2() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let key = install.key();

    let ok = client
        .h2("GET", "/api/nodes", &[("x-api-key", &key)], b"")
        .await;
    assert_eq!(ok.status, 200);
    let missing = client.h2("GET", "/api/nodes", &[], b"").await;
    assert_eq!(
        (missing.status, missing.reason().as_str()),
        (401, "missing_api_key")
    );
    let wrong = client
        .h2("GET", "/api/nodes", &[("x-api-key", "nope")], b"")
        .await;
    assert_eq!(wrong.reason(), "invalid_api_key");
    let two = client
        .h2(
            "GET",
            "/api/nodes",
            &[("x-api-key", &key), ("X-Api-Key", "nope")],
            b"",
        )
        .await;
    assert_eq!(two.reason(), "ambiguous_api_key");
    let health = client.h2("GET", "/health", &[], b"").await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn header_name_is_case_insensitive() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    for name in ["x-api-key", "X-API-KEY", "x-Api-kEy"] {
        let answer = server.client().get("/api/nodes", &[(name, &key)]).await;
        assert_eq!(answer.status, 200, "{name}");
    }
}

#[tokio::test]
async fn public_routes_answer_without_a_key() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();

    let health = client.get("/health", &[]).await;
    assert_eq!(health.status, 200);
    let body = health.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_u64());

    let head = client.h1("HEAD", "/health", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let trust_head = client.h1("HEAD", "/trust", &[]).await;
    assert_eq!(trust_head.status, 200);

    // A wrong key on a public route is ignored, not punished.
    let with_wrong = client.get("/health", &[("X-API-Key", "wrong")]).await;
    assert_eq!(with_wrong.status, 200);
}

#[tokio::test]
async fn trust_serves_the_certificate_the_handshake_presents() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let presented = client.handshake_certificate().await;
    let trust = client.get("/trust", &[]).await;
    assert_eq!(trust.status, 200);
    assert_eq!(trust.body, std::fs::read(install.cert_path()).unwrap());
    let served: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&trust.body)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].as_ref(), &presented[..]);
}

use rustls::pki_types::pem::PemObject;

/// Request targets that must never reach a protected handler, or the
/// public ones, without the key.
const SPELLINGS: &[&str] = &[
    "/api/nodes",
    "//api/nodes",
    "/api//nodes",
    "/api/nodes/",
    "/./api/nodes",
    "/api/./nodes",
    "/x/../api/nodes",
    "/%61pi/nodes",
    "/api%2Fnodes",
    "/api/nodes%2F",
    "/%2e/api/nodes",
    "/API/NODES",
    "/Api/Nodes",
    "/api/nodes;x=1",
    "/api;/nodes",
    "/health/",
    "//health",
    "/HEALTH",
    "/Health",
    "/%68ealth",
    "/health%2F",
    "/health;",
    "/health;x=1",
    "/health/..",
    "/health/.",
    "/./health",
    "/health/../api/nodes",
    "/trust/../api/nodes",
    "/trust/..%2Fapi/nodes",
    "/trust%2F..%2Fapi%2Fnodes",
    "/trust/",
    "/TRUST",
    "/does-not-exist",
    "/",
    "*",
    "https://localhost/api/nodes",
    "https://localhost//api/nodes",
    "http://localhost/api/nodes",
    "https://localhost/trust/../api/nodes",
];

#[tokio::test]
async fn no_spelling_of_a_path_gets_past_the_gate_without_the_key() {
    let install = Install::new();
    let server = install.start();
    server.relax_throttle(&install.key()).await;
    let client = server.client();
    let mut bodies = std::collections::BTreeSet::new();
    for target in SPELLINGS {
        let answer = client.h1("GET", target, &[]).await;
        assert!(
            answer.status == 401 || answer.status == 400 || answer.status == 404,
            "GET {target} answered {} without the key",
            answer.status
        );
        if answer.status == 401 {
            bodies.insert(answer.body.clone());
        }
        let answer = client.h1("GET", target, &[("X-API-Key", "wrong")]).await;
        assert!(
            matches!(answer.status, 400 | 401 | 404),
            "GET {target} with a wrong key answered {}",
            answer.status
        );
    }
    // One 401 body for every path: nothing tells routes apart.
    assert_eq!(bodies.len(), 1, "401 bodies differ between paths");
}

#[tokio::test]
async fn path_spellings_over_http2_are_refused_too() {
    let install = Install::new();
    let server = install.start();
    // Many requests without the key on purpose: keep the throttle out of it.
    server.relax_throttle(&install.key()).await;
    let client = server.client();
    for target in SPELLINGS.iter().filter(|t| t.starts_with('/')) {
        let answer = client.h2("GET", target, &[], b"").await;
        assert!(
            matches!(answer.status, 400 | 401 | 404),
            "h2 GET {target} answered {} without the key",
            answer.status
        );
    }
}

#[tokio::test]
async fn every_method_needs_the_key_except_get_and_head_on_public_paths() {
    let install = Install::new();
    let server = install.start();
    // Many requests without the key on purpose: keep the throttle out of it.
    server.relax_throttle(&install.key()).await;
    let client = server.client();
    for method in [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "FOO",
    ] {
        let answer = client.h1(method, "/api/nodes", &[]).await;
        assert_eq!(answer.status, 401, "{method} /api/nodes");
        let answer = client.h1(method, "/unknown/path", &[]).await;
        assert_eq!(answer.status, 401, "{method} /unknown/path");
    }
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO"] {
        for path in ["/health", "/trust"] {
            let answer = client.h1(method, path, &[]).await;
            assert_eq!(answer.status, 401, "{method} {path}");
        }
    }
    let connect = client.h1("CONNECT", "localhost:443", &[]).await;
    assert_ne!(connect.status / 100, 2);
}

#[tokio::test]
async fn with_the_key_unknown_paths_are_404_and_wrong_methods_405() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let key = install.key();
    let unknown = client.get("/nope", &[("X-API-Key", &key)]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "not_found");
    let post_health = client
        .h1(
            "POST",
            "/health",
            &[("X-API-Key", &key), ("Content-Length", "0")],
        )
        .await;
    assert_eq!(post_health.status, 405);
}

#[tokio::test]
async fn the_key_is_accepted_only_from_the_header() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let key = install.key();
    for (target, headers) in [
        (format!("/api/nodes?api_key={key}"), vec![]),
        (format!("/api/nodes?X-API-Key={key}"), vec![]),
        (
            "/api/nodes".to_owned(),
            vec![("Cookie".to_owned(), format!("X-API-Key={key}"))],
        ),
        (
            "/api/nodes".to_owned(),
            vec![("Authorization".to_owned(), format!("Bearer {key}"))],
        ),
        (
            "/api/nodes".to_owned(),
            vec![("X-API-Key-".to_owned(), key.clone())],
        ),
        (
            "/api/nodes".to_owned(),
            vec![("API-Key".to_owned(), key.clone())],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let answer = client.get(&target, &headers).await;
        assert_eq!(answer.reason(), "missing_api_key");
    }
    let body = format!("{{\"api_key\":\"{key}\"}}");
    let answer = client
        .h2(
            "POST",
            "/api/nodes",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(answer.reason(), "missing_api_key");

    let logs = server.logs();
    assert_no_secret(&logs, &key, "server log");
}

#[tokio::test]
async fn near_misses_of_the_key_are_invalid() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let key = install.key();
    let mut variants = vec![
        key.to_uppercase(),
        key[..key.len() - 1].to_owned(),
        format!("{key}x"),
        format!("{key},{key}"),
        // Trailing whitespace is not part of an HTTP field value (RFC 9110),
        // so only inner whitespace makes a different value.
        format!("{} {}", &key[..4], &key[4..]),
    ];
    let mut flipped = key.clone().into_bytes();
    flipped[0] = if flipped[0] == b'a' { b'b' } else { b'a' };
    variants.push(String::from_utf8(flipped).unwrap());
    for (i, variant) in variants.iter().enumerate() {
        if variant == &key {
            continue;
        }
        let answer = client.get("/api/nodes", &[("X-API-Key", variant)]).await;
        assert_eq!(answer.status, 401, "variant {i} was accepted");
    }
}

#[tokio::test]
async fn the_log_names_outcomes_and_never_a_key() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let key = install.key();
    let wrong = "wrong-key-abcdefghijklmnop";
    client.get("/api/nodes", &[("X-API-Key", &key)]).await;
    client
        .get("/api/nodes?q=secret-query", &[("X-API-Key", wrong)])
        .await;
    client.get("/api/nodes", &[]).await;
    client
        .h2(
            "GET",
            "/api/nodes",
            &[("x-api-key", &key), ("x-api-key", wrong)],
            b"",
        )
        .await;

    let logs = server.logs();
    assert_no_secret(&logs, &key, "server log");
    assert_no_secret(&logs, wrong, "server log");
    assert!(
        !logs.contains("secret-query"),
        "the query string was logged"
    );
    let warn_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("unauthorized"))
        .collect();
    assert_eq!(warn_lines.len(), 3, "{logs}");
    for reason in ["invalid_api_key", "missing_api_key", "ambiguous_api_key"] {
        let line = warn_lines
            .iter()
            .find(|l| l.contains(reason))
            .unwrap_or_else(|| panic!("no WARN for {reason}"));
        assert!(line.contains("peer=127.0.0.1:"), "{line}");
        assert!(line.contains("path=\"/api/nodes\""), "{line}");
        assert!(line.contains("status=401"), "{line}");
    }
    assert!(logs
        .lines()
        .any(|l| l.contains("INFO") && l.contains("auth=granted") && l.contains("status=200")));
}
