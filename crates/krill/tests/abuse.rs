//! Holding up against clients that try: silent and idle connections, the
//! connection cap, slow clients, failed-key throttling, trusted proxies,
//! the body limit, and the metrics that make all of it visible.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use support::{assert_no_secret, Install, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OTHER_CLIENT: &str = "127.0.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn patch_config(server: &TestServer, key: &str, body: &str) {
    let answer = server
        .client()
        .h2(
            "PATCH",
            "/api/config",
            &[("x-api-key", key), ("content-type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}

async fn metrics(server: &TestServer, key: &str) -> String {
    let answer = server
        .client()
        .get("/api/metrics", &[("X-API-Key", key)])
        .await;
    assert_eq!(answer.status, 200);
    answer.text()
}

fn metric(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no sample {sample} in metrics"))
}

/// Reads until the server closes; returns how long that took.
async fn time_until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let mut sink = Vec::new();
    // An error (reset) or a clean end both mean the server closed it.
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut sink))
        .await
        .expect("the server left the connection open");
    started.elapsed()
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed() {
    let install = Install::new();
    install.write_settings("[limits]\nheader_read_timeout_secs = 2\n");
    let server = install.start();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut tls = server.client().connect(&[alpn]).await;
        let took = time_until_closed(&mut tls, Duration::from_secs(15)).await;
        assert!(
            took >= Duration::from_millis(1500),
            "closed too early: {took:?}"
        );
    }
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_after_the_header_read_timeout() {
    // hyper times the whole wait for the next request head, so an idle
    // HTTP/1.1 connection goes after header_read_timeout, even though
    // idle_timeout is longer.
    let install = Install::new();
    install.write_settings("[limits]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 60\n");
    let server = install.start();
    let mut tls = server.client().connect(&[b"http/1.1"]).await;
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    tls.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let took = time_until_closed(&mut tls, Duration::from_secs(15)).await;
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let install = Install::new();
    install.write_settings("[limits]\nheader_read_timeout_secs = 30\nidle_timeout_secs = 2\n");
    let server = install.start();
    let tls = server.client().connect(&[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(conn);
    let request = hyper::Request::get(format!("https://localhost:{}/health", server.addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    let started = Instant::now();
    // The client's connection task ends when the server closes.
    tokio::time::timeout(Duration::from_secs(15), connection)
        .await
        .expect("the idle HTTP/2 connection was left open")
        .unwrap()
        .ok();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "closed after {took:?}");
    drop(sender);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_is_prompt_with_an_idle_http2_connection_open() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let install = Install::new();
    let mut server = install.start();
    let tls = server.client().connect(&[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(format!("https://localhost:{}/health", server.addr.port()))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);

    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.stop();
        (status, server.logs())
    })
    .await
    .unwrap();
    assert!(status.0.success());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(!status.1.contains("still open"), "{}", status.1);
    drop(sender);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_keys_get_an_address_throttled_unchecked_while_others_go_on() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    patch_config(
        &server,
        &key,
        r#"{"auth_throttle": {"max_failures": 3, "window_seconds": 60, "backoff_seconds": 2}}"#,
    )
    .await;
    let client = server.client();
    for _ in 0..3 {
        let answer = client.get("/api/nodes", &[("X-API-Key", "guess")]).await;
        assert_eq!(answer.reason(), "invalid_api_key");
    }
    // Now even the right key is not looked at.
    let blocked = client.get("/api/nodes", &[("X-API-Key", &key)]).await;
    assert_eq!(blocked.status, 429);
    assert_eq!(blocked.json()["error"], "too_many_requests");
    let retry: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let blocked = client.get("/api/nodes", &[]).await;
    assert_eq!(blocked.status, 429);

    // Public routes and other addresses are unaffected.
    assert_eq!(client.get("/health", &[]).await.status, 200);
    let other = client
        .h1_from(
            ip(OTHER_CLIENT),
            "GET",
            "/api/nodes",
            &[("X-API-Key", &key)],
        )
        .await;
    assert_eq!(other.status, 200);

    // One log line for the block, none per refused request.
    let logs = server.logs();
    assert_eq!(logs.matches("too many wrong API keys").count(), 1, "{logs}");
    let noisy = logs
        .lines()
        .filter(|l| l.contains("status=429") && (l.contains("WARN") || l.contains("INFO")))
        .count();
    assert_eq!(noisy, 0, "{logs}");

    server.wait_for_log("throttle block ended", Duration::from_secs(10));
    let again = client.get("/api/nodes", &[("X-API-Key", &key)]).await;
    assert_eq!(again.status, 200);

    let text = metrics(&server, &key).await;
    assert_eq!(metric(&text, "krill_auth_total{outcome=\"throttled\"}"), 2);
    assert_eq!(metric(&text, "krill_throttle_blocks_total"), 1);
    assert_no_secret(&server.logs(), &key, "server log");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_block_grows_when_an_address_keeps_guessing() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    patch_config(
        &server,
        &key,
        r#"{"auth_throttle": {"max_failures": 1, "backoff_seconds": 1, "max_backoff_seconds": 8}}"#,
    )
    .await;
    let client = server.client();
    let mut retries = Vec::new();
    for round in 0..3 {
        let answer = client.get("/api/nodes", &[("X-API-Key", "guess")]).await;
        assert_eq!(answer.status, 401, "round {round}");
        let blocked = client.get("/api/nodes", &[]).await;
        assert_eq!(blocked.status, 429, "round {round}");
        let retry: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
        retries.push(retry);
        tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(300)).await;
    }
    assert_eq!(retries, vec![1, 2, 4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let install = Install::new();
    install.write_settings("[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let server = install.start();
    let key = install.key();
    patch_config(&server, &key, r#"{"auth_throttle": {"max_failures": 2}}"#).await;
    let client = server.client();
    let behind = |ip: &'static str| [("X-Forwarded-For", ip)];
    for _ in 0..2 {
        let h = [("X-API-Key", "guess"), behind("198.51.100.7")[0]];
        assert_eq!(client.get("/api/nodes", &h).await.status, 401);
    }
    let h = [("X-API-Key", key.as_str()), behind("198.51.100.7")[0]];
    assert_eq!(client.get("/api/nodes", &h).await.status, 429);
    let h = [("X-API-Key", key.as_str()), behind("198.51.100.8")[0]];
    assert_eq!(client.get("/api/nodes", &h).await.status, 200);
    // An untrusted peer's header is ignored: it cannot borrow a block or
    // dodge its own.
    let h = [("X-API-Key", key.as_str()), behind("198.51.100.7")[0]];
    let other = client
        .h1_from(ip(OTHER_CLIENT), "GET", "/api/nodes", &h)
        .await;
    assert_eq!(other.status, 200);
    assert!(server.logs().contains("client=198.51.100.7"));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_key_and_count_routes_and_outcomes() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    let client = server.client();
    assert_eq!(client.get("/api/metrics", &[]).await.status, 401);
    for _ in 0..3 {
        client.get("/api/nodes", &[("X-API-Key", &key)]).await;
    }
    client.get("/api/nodes/n1", &[("X-API-Key", &key)]).await;
    client.get("/no/such/route", &[("X-API-Key", &key)]).await;
    client.get("/api/nodes", &[("X-API-Key", "guess")]).await;
    let answer = client.get("/api/metrics", &[("X-API-Key", &key)]).await;
    assert!(answer
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = answer.text();
    assert_eq!(
        metric(
            &text,
            "krill_requests_total{route=\"/api/nodes\",status=\"200\"}"
        ),
        3
    );
    assert_eq!(
        metric(
            &text,
            "krill_requests_total{route=\"/api/nodes/{id}\",status=\"404\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            "krill_requests_total{route=\"(unmatched)\",status=\"404\"}"
        ),
        1
    );
    assert!(
        metric(
            &text,
            "krill_requests_total{route=\"(refused)\",status=\"401\"}"
        ) >= 2
    );
    assert_eq!(
        metric(&text, "krill_auth_total{outcome=\"invalid_api_key\"}"),
        1
    );
    assert!(metric(&text, "krill_connections_open") >= 1);
    assert!(text.contains("krill_build_info{version=\""));
    assert!(
        !text.contains("/no/such/route"),
        "client-chosen paths must not become labels"
    );
    assert_no_secret(&text, &key, "metrics");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_limit_closes_extra_connections_at_once() {
    let install = Install::new();
    install.write_settings("[limits]\nmax_connections = 4\n");
    let server = install.start();
    let key = install.key();
    let client = server.client();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(client.connect(&[b"http/1.1"]).await);
    }
    // The fifth is accepted by the kernel and closed at once by the server.
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    ));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "the fifth connection was served"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        // The server frees the slot when it notices the close; until then a
        // new connection is refused, which try_send reports as None.
        let answer = client
            .try_send("GET", "/api/metrics", &[("X-API-Key", &key)], b"")
            .await;
        if let Some(answer) = answer.filter(|a| a.status == 200) {
            break answer.text();
        }
        assert!(Instant::now() < deadline, "no slot came free");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metric(&text, "krill_connections_refused_total") >= 1);
    assert!(server.logs().contains("connection limit reached"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_slow_clients_do_not_starve_a_legitimate_one() {
    let install = Install::new();
    // Everything here comes from 127.0.0.1: lift the per-address cap so the
    // test is about slow clients, not that cap (tested on its own below).
    install.write_settings("[limits]\nmax_connections_per_address = 1000\n");
    let server = install.start();
    let key = install.key();
    let client = server.client();
    let mut slow = Vec::new();
    // 100 that connect and say nothing, 100 that start a TLS handshake and
    // stall, 100 that finish it and drip half a request head.
    for _ in 0..100 {
        slow.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        stalled.push(tcp);
    }
    let mut dripping = Vec::new();
    for _ in 0..100 {
        let mut tls = client.connect(&[b"http/1.1"]).await;
        tls.write_all(b"GET /api/nodes HTTP/1.1\r\nHost: loc")
            .await
            .unwrap();
        dripping.push(tls);
    }
    for i in 0..20 {
        let started = Instant::now();
        let answer = client.get("/api/nodes", &[("X-API-Key", &key)]).await;
        assert_eq!(answer.status, 200, "request {i}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "request {i} took {:?} among 300 slow clients",
            started.elapsed()
        );
    }
    assert_eq!(slow.len() + stalled.len() + dripping.len(), 300);
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let install = Install::new();
    install.write_settings("[limits]\nmax_body_bytes = 2048\n");
    let server = install.start();
    let key = install.key();
    let node = |meta_len: usize| {
        format!(
            r#"{{"type":"KrillApp.DataPoint","name":"n","meta":{{"pad":"{}"}}}}"#,
            "x".repeat(meta_len)
        )
    };
    let headers = [
        ("x-api-key", key.as_str()),
        ("content-type", "application/json"),
    ];
    let small = server
        .client()
        .h2("POST", "/api/nodes", &headers, node(1000).as_bytes())
        .await;
    assert_eq!(small.status, 201, "{}", small.text());
    let big = server
        .client()
        .h2("POST", "/api/nodes", &headers, node(3000).as_bytes())
        .await;
    assert_eq!(big.status, 413, "{}", big.text());
    assert!(big.json()["message"].as_str().unwrap().contains("2048"));
}

#[test]
fn limits_out_of_range_stop_the_server_naming_the_setting() {
    let install = Install::new();
    install.write_settings("[limits]\nmax_connections = 0\n");
    let (status, output) = install.refused_start();
    assert!(!status.success());
    assert!(output.contains("limits.max_connections"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_floods_are_throttled_and_long_paths_are_cut_in_the_log() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    patch_config(&server, &key, r#"{"auth_throttle": {"max_failures": 3}}"#).await;
    let client = server.client();
    let long = "/x".repeat(5000);
    for _ in 0..3 {
        assert_eq!(client.get(&long, &[]).await.reason(), "missing_api_key");
    }
    assert_eq!(client.get("/api/nodes", &[]).await.status, 429);
    let logs = server.logs();
    assert!(logs.contains("...(10000 bytes)"), "{logs}");
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1024, "a log line of {longest} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_take_every_connection() {
    let install = Install::new();
    install.write_settings("[limits]\nmax_connections = 20\nmax_connections_per_address = 5\n");
    let server = install.start();
    let key = install.key();
    let client = server.client();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(client.connect_from(ip(OTHER_CLIENT), &[b"http/1.1"]).await);
    }
    // A sixth from the same address is closed at once...
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(ip(OTHER_CLIENT), 0))
        .unwrap();
    let mut sixth = socket.connect(server.addr).await.unwrap();
    let took = time_until_closed(&mut sixth, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3));
    // ...while another address is served.
    let answer = client.get("/api/nodes", &[("X-API-Key", &key)]).await;
    assert_eq!(answer.status, 200);
    let text = metrics(&server, &key).await;
    assert!(metric(&text, "krill_connections_refused_total") >= 1);
    drop(held);
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off() {
    let install = Install::new();
    install.write_settings("[limits]\nbody_read_timeout_secs = 1\n");
    let server = install.start();
    let key = install.key();
    let mut tls = server.client().connect(&[b"http/1.1"]).await;
    let head = format!(
        "POST /api/nodes HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"type\""
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let answer = support::parse_http1(&answer);
    assert_eq!(answer.status, 408, "{}", answer.text());
    assert_eq!(answer.json()["error"], "body_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}
