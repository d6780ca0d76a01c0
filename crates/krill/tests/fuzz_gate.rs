//! Randomized requests through the auth gate of a real server (issue 7).
//!
//! Thousands of generated requests go to one `krill serve` over TLS: raw
//! HTTP/1.1 bytes (so malformed request lines, odd header bytes and lying
//! lengths reach the server's parser) and HTTP/2 through hyper's client.
//! Methods, request targets, header sets, `X-API-Key` variants and bodies
//! are drawn from a seeded generator. The test asserts:
//!
//! * no answer is a 5xx;
//! * without exactly one right `X-API-Key`, no answer is 2xx or 3xx except
//!   to `GET`/`HEAD` on exactly `/health` or `/trust` (the public routes);
//! * the server never panics (its log holds no "panicked") and is still
//!   running at the end; its log never holds the key.
//!
//! Some requests carry the right key (random paths, methods and bodies):
//! those must not be 5xx either.
//!
//! Each case is generated from the seed and its number alone, so a failure
//! is replayed with `KRILL_FUZZ_SEED=<seed> KRILL_FUZZ_ONLY=<case>`;
//! `KRILL_FUZZ_CASES` changes the number of cases. Unkeyed requests come
//! from many addresses in 127.0.0.0/8, so failed-key throttling (which
//! would answer 429 without checking the key) does not hide the gate, and
//! keyed ones from 127.0.0.1, which sends no wrong key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use support::{assert_no_secret, Install};

/// Requests per run unless `KRILL_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: usize = 3000;
/// One case in this many is sent over HTTP/2.
const H2_ONE_IN: u64 = 4;
/// Requests in flight at once.
const WORKERS: usize = 8;
/// How long to wait for an answer's head.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// SplitMix64: small, seeded, dependency-free.
struct Rng(u64);

impl Rng {
    fn for_case(seed: u64, case: usize) -> Rng {
        let mut rng = Rng(seed ^ (case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `min` to `min + spread - 1` bytes drawn from `alphabet`.
    fn some_bytes(&mut self, min: usize, spread: usize, alphabet: &[u8]) -> Vec<u8> {
        let len = min + self.below(spread);
        self.bytes(len, alphabet)
    }

    fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }
}

const VISIBLE: &[u8] = b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
const TOKEN: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PATH_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%";

/// How the key is (mis)presented. Only `Right` carries exactly one field
/// with exactly the key; the label names the variant in failure reports,
/// which never show the key itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyVariant {
    Right,
    Missing,
    WrongRandom,
    Empty,
    Duplicated,
    RightAndWrong,
    OneCharChanged,
    ExtraSuffix,
    ExtraPrefix,
    Truncated,
    UpperCased,
    OddBytes,
    CommaJoined,
    InQueryString,
    InAuthorization,
    InCookie,
    LookalikeHeaderName,
}

const UNKEYED: &[KeyVariant] = &[
    KeyVariant::Missing,
    KeyVariant::WrongRandom,
    KeyVariant::Empty,
    KeyVariant::Duplicated,
    KeyVariant::RightAndWrong,
    KeyVariant::OneCharChanged,
    KeyVariant::ExtraSuffix,
    KeyVariant::ExtraPrefix,
    KeyVariant::Truncated,
    KeyVariant::UpperCased,
    KeyVariant::OddBytes,
    KeyVariant::CommaJoined,
    KeyVariant::InQueryString,
    KeyVariant::InAuthorization,
    KeyVariant::InCookie,
    KeyVariant::LookalikeHeaderName,
];

/// One generated request.
struct Case {
    number: usize,
    h2: bool,
    method: String,
    target: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    /// Raw HTTP/1.1 only: a `Content-Length` that does not match the body.
    lying_length: bool,
    variant: KeyVariant,
    source: Ipv4Addr,
}

impl Case {
    /// What a failure report shows: everything but the key.
    fn describe(&self, key: &str) -> String {
        let hide = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .replace(key, "<key>")
                .chars()
                .take(120)
                .collect::<String>()
        };
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let name = hide(n);
                if name.to_ascii_lowercase().contains("api")
                    || name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("cookie")
                {
                    format!("{name}: <{} bytes>", v.len())
                } else {
                    format!("{name}: {}", hide(v))
                }
            })
            .collect();
        format!(
            "case {} ({}, from {}): {} {} key={:?} headers={headers:?} body={} bytes{}",
            self.number,
            if self.h2 { "HTTP/2" } else { "HTTP/1.1" },
            self.source,
            hide(self.method.as_bytes()),
            hide(self.target.as_bytes()),
            self.variant,
            self.body.len(),
            if self.lying_length {
                " (lying Content-Length)"
            } else {
                ""
            }
        )
    }
}

fn method(rng: &mut Rng, h2: bool) -> String {
    const COMMON: &[&str] = &[
        "GET", "GET", "GET", "HEAD", "HEAD", "POST", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
        "TRACE", "CONNECT", "get", "Get", "head", "PROPFIND", "M-SEARCH",
    ];
    match rng.below(10) {
        0 => String::from_utf8(rng.some_bytes(1, 12, TOKEN)).unwrap(),
        1 if !h2 => {
            let odd: &[u8] = b"GET /\t\x01\x7f\x80\xff";
            String::from_utf8_lossy(&rng.some_bytes(1, 6, odd)).into_owned()
        }
        _ => (*rng.pick(COMMON)).to_owned(),
    }
}

fn target(rng: &mut Rng, key: &str, h2: bool) -> String {
    const BASES: &[&str] = &[
        "/health",
        "/health",
        "/trust",
        "/trust",
        "/",
        "/api",
        "/api/",
        "/api/nodes",
        "/api/nodes/root",
        "/api/config",
        "/api/metrics",
        "/openapi.json",
        "/api/openapi.json",
        "/HEALTH",
        "//health",
        "/health/",
        "/./health",
        "/%68ealth",
        "/health;x",
        "/health/..",
        "/trust/../api/nodes",
        "/api/../health",
        "/health%00",
        "/health%2F",
        "/%2e%2e/api/nodes",
    ];
    let mut t = match rng.below(12) {
        0 => {
            let len = 1 + rng.below(40);
            let mut s = String::from("/");
            s.push_str(&String::from_utf8(rng.bytes(len, PATH_CHARS)).unwrap());
            s
        }
        1 if !h2 => "*".to_owned(),
        2 if !h2 => format!("https://localhost{}", rng.pick(BASES)),
        3 => format!("/{}", "a/".repeat(1 + rng.below(3000))),
        4 if !h2 => {
            String::from_utf8_lossy(&rng.some_bytes(1, 20, b"/\x00\x7f\x80\xfe \t%h")).into_owned()
        }
        _ => (*rng.pick(BASES)).to_owned(),
    };
    match rng.below(8) {
        0 => t.push_str("?x=1"),
        1 => t.push_str(&format!("?api_key={key}")),
        2 if !h2 => t.push_str("#frag"),
        3 => t.push_str(&format!(
            "?{}",
            String::from_utf8(rng.some_bytes(0, 30, PATH_CHARS)).unwrap()
        )),
        _ => {}
    }
    t
}

/// The key with one character changed to a different visible one.
fn changed(rng: &mut Rng, key: &str) -> Vec<u8> {
    let mut bytes = key.as_bytes().to_vec();
    let i = rng.below(bytes.len());
    let mut c = *rng.pick(VISIBLE);
    while c == bytes[i] {
        c = *rng.pick(VISIBLE);
    }
    bytes[i] = c;
    bytes
}

fn key_headers(rng: &mut Rng, key: &str, variant: KeyVariant) -> Vec<(Vec<u8>, Vec<u8>)> {
    let names: &[&[u8]] = &[b"X-API-Key", b"x-api-key", b"X-Api-Key", b"X-API-KEY"];
    let name = || -> Vec<u8> { names[0].to_vec() };
    let named = |value: Vec<u8>, rng: &mut Rng| (rng.pick(names).to_vec(), value);
    let k = key.as_bytes().to_vec();
    match variant {
        KeyVariant::Right => vec![named(k, rng)],
        KeyVariant::Missing => vec![],
        KeyVariant::WrongRandom => {
            let len = 1 + rng.below(80);
            vec![named(rng.bytes(len, VISIBLE), rng)]
        }
        KeyVariant::Empty => vec![(name(), Vec::new())],
        KeyVariant::Duplicated => vec![named(k.clone(), rng), named(k, rng)],
        KeyVariant::RightAndWrong => {
            let wrong = changed(rng, key);
            let mut pair = vec![named(k, rng), named(wrong, rng)];
            if rng.one_in(2) {
                pair.reverse();
            }
            pair
        }
        KeyVariant::OneCharChanged => vec![named(changed(rng, key), rng)],
        KeyVariant::ExtraSuffix => {
            let mut v = k;
            v.push(*rng.pick(VISIBLE));
            vec![named(v, rng)]
        }
        KeyVariant::ExtraPrefix => {
            let mut v = vec![*rng.pick(VISIBLE)];
            v.extend_from_slice(&k);
            vec![named(v, rng)]
        }
        KeyVariant::Truncated => {
            let len = rng.below(k.len());
            vec![named(k[..len].to_vec(), rng)]
        }
        // A key without lower-case letters has no upper-cased variant.
        KeyVariant::UpperCased if key.bytes().any(|b| b.is_ascii_lowercase()) => {
            vec![named(key.to_ascii_uppercase().into_bytes(), rng)]
        }
        KeyVariant::UpperCased => vec![],
        KeyVariant::OddBytes => {
            let mut v = k;
            let odd: &[u8] = b"\x80\xa0\xc3\xff\x01\x7f\t \x00";
            // Inside the value: HTTP drops spaces and tabs at its ends, so
            // inserted there they would make the right key.
            let at = 1 + rng.below(v.len() - 1);
            let bytes = rng.some_bytes(1, 3, odd);
            v.splice(at..at, bytes);
            vec![named(v, rng)]
        }
        KeyVariant::CommaJoined => {
            let mut v = k.clone();
            v.extend_from_slice(b", ");
            v.extend_from_slice(&k);
            vec![named(v, rng)]
        }
        KeyVariant::InQueryString => vec![], // see `generate`
        KeyVariant::InAuthorization => {
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(&k);
            vec![(b"Authorization".to_vec(), v)]
        }
        KeyVariant::InCookie => {
            let mut v = b"api_key=".to_vec();
            v.extend_from_slice(&k);
            vec![(b"Cookie".to_vec(), v)]
        }
        KeyVariant::LookalikeHeaderName => {
            let look: &[&[u8]] = &[
                b"X-API-Key2",
                b"X_API_Key",
                b"X-APIKey",
                b"Api-Key",
                b"X-API-Key-",
            ];
            vec![(rng.pick(look).to_vec(), k)]
        }
    }
}

fn other_headers(rng: &mut Rng, h2: bool, body_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut headers = Vec::new();
    let count = rng.below(6);
    for _ in 0..count {
        let header: (&[u8], Vec<u8>) = match rng.below(14) {
            0 => (b"Content-Type", b"application/json".to_vec()),
            1 => (b"Content-Type", rng.some_bytes(0, 30, VISIBLE)),
            2 => (b"Accept", b"*/*".to_vec()),
            3 => (b"X-Forwarded-For", b"203.0.113.7".to_vec()),
            4 => (b"Expect", b"100-continue".to_vec()),
            5 if !h2 => (b"Connection", b"keep-alive".to_vec()),
            6 if !h2 => (b"Upgrade", b"h2c".to_vec()),
            7 if !h2 => (b"Content-Length", format!("{body_len}").into_bytes()),
            8 if !h2 => (b"Transfer-Encoding", b"gzip".to_vec()),
            9 => (b"X-Long", vec![b'a'; 1 + rng.below(20_000)]),
            10 => {
                let name_len = 1 + rng.below(20);
                let name = rng.bytes(name_len, TOKEN);
                let value_alphabet: &[u8] = if h2 {
                    VISIBLE
                } else {
                    b"abc \t\x80\xff\x01:;=\""
                };
                let len = rng.below(60);
                headers.push((name, rng.bytes(len, value_alphabet)));
                continue;
            }
            11 => (b"Range", b"bytes=0-1".to_vec()),
            12 if !h2 => (b"Host", rng.some_bytes(0, 20, VISIBLE)),
            _ => (b"Accept-Encoding", b"gzip, br".to_vec()),
        };
        headers.push((header.0.to_vec(), header.1));
    }
    if rng.one_in(40) {
        for i in 0..(50 + rng.below(150)) {
            headers.push((format!("X-Many-{i}").into_bytes(), b"v".to_vec()));
        }
    }
    headers
}

fn body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0..=2 => Vec::new(),
        3 => br#"{"name":"fuzz","type":"KrillApp.DataPoint","parent":"root"}"#.to_vec(),
        4 => {
            let len = rng.below(300);
            rng.bytes(len, b"{}[]\":,0123456789abcnulltruefalse ")
        }
        5 if rng.one_in(20) => vec![b'x'; 1 << (16 + rng.below(6))],
        _ => {
            let len = rng.below(2000);
            (0..len).map(|_| rng.next() as u8).collect()
        }
    }
}

fn generate(seed: u64, number: usize, key: &str) -> Case {
    let mut rng = Rng::for_case(seed, number);
    let h2 = rng.one_in(H2_ONE_IN);
    let keyed = rng.one_in(5);
    let variant = if keyed {
        KeyVariant::Right
    } else {
        *rng.pick(UNKEYED)
    };
    let method = method(&mut rng, h2);
    let mut target = target(&mut rng, key, h2);
    if variant == KeyVariant::InQueryString {
        target.push_str(if target.contains('?') { "&" } else { "?" });
        target.push_str(&format!("key={key}&X-API-Key={key}"));
    }
    let body = body(&mut rng);
    let mut headers = key_headers(&mut rng, key, variant);
    let others = other_headers(&mut rng, h2, body.len());
    for header in others {
        let at = rng.below(headers.len() + 1);
        headers.insert(at, header);
    }
    let lying_length = !h2 && rng.one_in(30);
    // Keyed requests from 127.0.0.1, which sends no wrong key; the others
    // from 127.1.x.y, spread so that throttling does not hide the gate.
    let source = if keyed {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::new(127, 1, rng.below(256) as u8, 1 + rng.below(254) as u8)
    };
    Case {
        number,
        h2,
        method,
        target,
        headers,
        body,
        lying_length,
        variant,
        source,
    }
}

/// True when the gate may answer `case` with 2xx/3xx without the key.
fn public(case: &Case) -> bool {
    if case.method != "GET" && case.method != "HEAD" {
        return false;
    }
    match case.target.parse::<hyper::Uri>() {
        Ok(uri) => uri.path() == "/health" || uri.path() == "/trust",
        Err(_) => false,
    }
}

/// What came back.
#[derive(Debug)]
enum Outcome {
    Status(u16),
    /// Closed or reset without an answer, or the client refused the request
    /// (HTTP/2 headers hyper will not send): nothing granted.
    NoAnswer(String),
}

struct Client {
    server: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    h2_tls: Arc<rustls::ClientConfig>,
}

impl Client {
    fn new(server: SocketAddr, cert: &std::path::Path) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(der.unwrap()).unwrap();
        }
        let config = |alpn: &[u8]| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(c)
        };
        Client {
            server,
            tls: config(b"http/1.1"),
            h2_tls: config(b"h2"),
        }
    }

    async fn connect(
        &self,
        source: Ipv4Addr,
        config: &Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        let tcp = socket.connect(self.server).await?;
        let name = ServerName::try_from("localhost").unwrap();
        TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
    }

    async fn send(&self, case: &Case) -> Outcome {
        let attempt = async {
            if case.h2 {
                self.send_h2(case).await
            } else {
                self.send_h1(case).await
            }
        };
        match tokio::time::timeout(ANSWER_TIMEOUT, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::NoAnswer("timed out".into()),
        }
    }

    async fn send_h1(&self, case: &Case) -> Outcome {
        let mut tls = match self.connect(case.source, &self.tls).await {
            Ok(tls) => tls,
            Err(e) => return Outcome::NoAnswer(format!("connect: {e}")),
        };
        let mut request = Vec::new();
        request.extend_from_slice(case.method.as_bytes());
        request.push(b' ');
        request.extend_from_slice(case.target.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in &case.headers {
            request.extend_from_slice(name);
            request.extend_from_slice(b": ");
            request.extend_from_slice(value);
            request.extend_from_slice(b"\r\n");
        }
        let declared = if case.lying_length {
            case.body.len() + 1 + (case.number % 100)
        } else {
            case.body.len()
        };
        request.extend_from_slice(format!("Content-Length: {declared}\r\n\r\n").as_bytes());
        request.extend_from_slice(&case.body);
        // The server may answer and close before taking the whole body.
        let _ = tls.write_all(&request).await;
        let _ = tls.flush().await;

        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => return Outcome::NoAnswer("closed".into()),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) => return Outcome::NoAnswer(format!("read: {e}")),
            }
            if let Some(status) = final_status(&bytes) {
                return Outcome::Status(status);
            }
        }
    }

    async fn send_h2(&self, case: &Case) -> Outcome {
        let mut request = hyper::Request::builder()
            .method(case.method.as_str())
            .uri(format!(
                "https://localhost:{}{}",
                self.server.port(),
                case.target
            ));
        for (name, value) in &case.headers {
            request = request.header(name.as_slice(), value.as_slice());
        }
        let request = match request.body(Full::new(Bytes::copy_from_slice(&case.body))) {
            Ok(r) => r,
            Err(e) => return Outcome::NoAnswer(format!("client refused to build: {e}")),
        };
        let tls = match self.connect(case.source, &self.h2_tls).await {
            Ok(tls) => tls,
            Err(e) => return Outcome::NoAnswer(format!("connect: {e}")),
        };
        let (mut sender, conn) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
            {
                Ok(pair) => pair,
                Err(e) => return Outcome::NoAnswer(format!("h2 handshake: {e}")),
            };
        tokio::spawn(conn);
        match sender.send_request(request).await {
            Ok(response) => Outcome::Status(response.status().as_u16()),
            Err(e) => Outcome::NoAnswer(format!("h2: {e}")),
        }
    }
}

/// The status of the first non-1xx answer in `bytes`, once its head is
/// complete.
fn final_status(mut bytes: &[u8]) -> Option<u16> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => {
                let code = response.code?;
                if (100..200).contains(&code) {
                    bytes = &bytes[len..];
                    continue;
                }
                return Some(code);
            }
            Ok(httparse::Status::Partial) => return None,
            // Not HTTP at all: report it as a status no rule allows.
            Err(_) => return Some(999),
        }
    }
}

fn setting<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_get_no_5xx_and_nothing_protected_without_the_key() {
    let seed: u64 = setting("KRILL_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let only: Option<usize> = setting("KRILL_FUZZ_ONLY");
    let cases: usize = setting("KRILL_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let numbers: Vec<usize> = match only {
        Some(n) => vec![n],
        None => (0..cases).collect(),
    };
    let replay = format!("replay with KRILL_FUZZ_SEED={seed} (cases={cases})");

    let install = Install::new();
    let mut server = install.start();
    let key = install.key();
    let client = Arc::new(Client::new(server.addr, &install.cert_path()));
    let key = Arc::new(key);
    let numbers = Arc::new(numbers);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let tally = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let started = Instant::now();

    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, key, numbers, next, failures, tally) = (
            Arc::clone(&client),
            Arc::clone(&key),
            Arc::clone(&numbers),
            Arc::clone(&next),
            Arc::clone(&failures),
            Arc::clone(&tally),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&number) = numbers.get(i) else { break };
                let case = generate(seed, number, &key);
                let outcome = client.send(&case).await;
                let keyed = case.variant == KeyVariant::Right;
                let label = match &outcome {
                    Outcome::Status(s) => {
                        format!("{} {s}", if keyed { "keyed" } else { "unkeyed" })
                    }
                    Outcome::NoAnswer(why) => format!(
                        "{} no answer ({})",
                        if keyed { "keyed" } else { "unkeyed" },
                        why.split(':').next().unwrap_or_default()
                    ),
                };
                *tally.lock().unwrap().entry(label).or_default() += 1;
                let problem = match outcome {
                    Outcome::Status(s) if s >= 500 => Some(format!("answered {s}")),
                    Outcome::Status(s) if (200..400).contains(&s) && !keyed && !public(&case) => {
                        Some(format!("answered {s} without the key"))
                    }
                    _ => None,
                };
                if let Some(problem) = problem {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{problem}: {}", case.describe(&key)));
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let tally = tally.lock().unwrap().clone();
    println!(
        "{} requests in {elapsed:?}, seed {seed}: {tally:?}",
        numbers.len()
    );

    let logs = server.logs();
    let alive = server.child.try_wait().unwrap().is_none();
    assert_no_secret(&logs, &key, "the server log");
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests broke the rules ({replay}, KRILL_FUZZ_ONLY=<case> for one):\n{}",
        failures.len(),
        numbers.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !logs.contains("panicked"),
        "the server panicked ({replay}):\n{logs}"
    );
    assert!(alive, "the server died ({replay}):\n{logs}");
    // Keyed requests must have been served at all, or the test saw nothing.
    let keyed_answers: usize = tally
        .iter()
        .filter(|(label, _)| label.starts_with("keyed") && !label.contains("no answer"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        only.is_some() || keyed_answers > numbers.len() / 10,
        "too few keyed requests were answered ({keyed_answers}; {replay}): {tally:?}"
    );
    server.stop();
}
