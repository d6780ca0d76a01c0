//! Shared harness for integration tests: a real `krill` process on
//! 127.0.0.1 with its own temporary etc and data directories, and a real
//! TLS client (HTTP/1.1 and HTTP/2) that trusts only that server's
//! certificate.
//!
//! The server's stdout and stderr go to a file in the temporary directory,
//! never to the test output, so a key cannot leak there by accident; tests
//! read the log with [`TestServer::logs`].

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Path of the `krill` binary under test.
pub fn krill_bin() -> &'static str {
    env!("CARGO_BIN_EXE_krill")
}

/// A temporary installation: `etc/` and `data/` under one temp dir.
pub struct Install {
    pub dir: tempfile::TempDir,
    pub etc: PathBuf,
    pub data: PathBuf,
}

impl Install {
    /// An installation made by `krill init`.
    pub fn new() -> Install {
        let install = Install::empty();
        let out = install.krill(&["init"]).output().unwrap();
        assert!(
            out.status.success(),
            "krill init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        install
    }

    /// Only the temp dir; nothing created yet.
    pub fn empty() -> Install {
        let dir = tempfile::tempdir().unwrap();
        // Traversable like /etc, so that where a `krill` user exists (after
        // the package was installed) it can reach its files here too.
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let etc = dir.path().join("etc");
        let data = dir.path().join("data");
        Install { dir, etc, data }
    }

    /// A `krill` command with this installation's directories.
    pub fn krill(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(krill_bin());
        cmd.args(args)
            .arg("--etc-dir")
            .arg(&self.etc)
            .arg("--data-dir")
            .arg(&self.data)
            .env_remove("KRILL_LISTEN")
            .env_remove("KRILL_ETC_DIR")
            .env_remove("KRILL_DATA_DIR")
            .env("KRILL_LOG", "info")
            .stdin(Stdio::null());
        cmd
    }

    /// Writes `ETC_DIR/krill.toml`.
    pub fn write_settings(&self, toml: &str) {
        fs::write(self.etc.join("krill.toml"), toml).unwrap();
    }

    /// A bare `krill` command (no directory flags) that cannot read the key
    /// file: run as `nobody` through setpriv when the tests run as root
    /// (root reads every file), with the temp dirs opened up so `nobody` can
    /// reach the file and `credentials_mode` on its directory; otherwise
    /// as the test user with the key file's mode set to 0.
    pub fn krill_unable_to_read_key(&self, credentials_mode: u32) -> Command {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::Uid::effective().is_root() {
            fs::set_permissions(self.key_path(), fs::Permissions::from_mode(0o000)).unwrap();
            return Command::new(krill_bin());
        }
        for dir in [self.dir.path(), &self.etc] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let credentials = self.etc.join("credentials");
        fs::set_permissions(credentials, fs::Permissions::from_mode(credentials_mode)).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            krill_bin(),
        ]);
        cmd
    }

    pub fn key_path(&self) -> PathBuf {
        self.etc.join("credentials/api_key")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.etc.join("certs/krill.crt")
    }

    /// The key as the server should read it (trimmed).
    pub fn key(&self) -> String {
        fs::read_to_string(self.key_path())
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Replaces the key file's bytes as an admin's shell would (no atomic
    /// rename; mode kept writable for the test).
    pub fn write_key_file(&self, bytes: &[u8]) {
        use std::os::unix::fs::MetadataExt;
        let path = self.key_path();
        // Keep the owner, as `tee` into the existing file would (it matters
        // where a `krill` user exists and `init` gave the file to it).
        let owner = fs::metadata(&path).ok().map(|m| (m.uid(), m.gid()));
        let _ = fs::remove_file(&path);
        fs::write(&path, bytes).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// Starts `krill serve` on 127.0.0.1 with a free port and waits until
    /// it listens.
    pub fn start(&self) -> TestServer {
        self.try_start()
            .unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Starts the server; `Err` holds its output when it exits instead of
    /// listening.
    pub fn try_start(&self) -> Result<TestServer, String> {
        self.try_start_with(&[])
    }

    /// As [`Install::try_start`], with extra arguments for `serve`.
    pub fn try_start_with(&self, extra: &[&str]) -> Result<TestServer, String> {
        let log_path = self.dir.path().join(format!(
            "server-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log = fs::File::create(&log_path).unwrap();
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let child = self
            .krill(&args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = TestServer {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log_path,
            cert_path: self.cert_path(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = server.logs();
            if let Some(addr) = listening_address(&logs) {
                server.addr = addr;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                return Err(format!("exited with {status}; output:\n{logs}"));
            }
            if Instant::now() > deadline {
                return Err(format!("no `listening` line within 30 s; output:\n{logs}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `krill serve` expecting it to refuse to start; returns its exit
    /// status and output.
    pub fn refused_start(&self) -> (ExitStatus, String) {
        match self.try_start() {
            Ok(mut server) => {
                let logs = server.logs();
                server.kill();
                panic!("server started but should have refused; output:\n{logs}")
            }
            Err(_) => {
                let out = self
                    .krill(&["serve", "--listen", "127.0.0.1:0"])
                    .output()
                    .unwrap();
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                (out.status, text)
            }
        }
    }
}

fn listening_address(logs: &str) -> Option<SocketAddr> {
    let line = logs.lines().find(|l| l.contains("listening"))?;
    let start = line.find("address=")? + "address=".len();
    line[start..].split_whitespace().next()?.parse().ok()
}

/// A running `krill serve`. Killed when dropped.
pub struct TestServer {
    pub child: Child,
    pub addr: SocketAddr,
    log_path: PathBuf,
    cert_path: PathBuf,
}

impl TestServer {
    /// Everything the server printed so far.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the log contains `needle` (or panics after `timeout`).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            assert!(Instant::now() < deadline, "log never showed {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// SIGTERM, then waits for exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(20))
    }

    /// Waits for the process to exit (panics after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Raises the failed-key threshold so a test that sends many wrong keys
    /// on purpose is not throttled (`PATCH /api/config`).
    pub async fn relax_throttle(&self, key: &str) {
        let body = br#"{"auth_throttle": {"max_failures": 10000}}"#;
        let answer = self
            .client()
            .h2(
                "PATCH",
                "/api/config",
                &[("x-api-key", key), ("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }

    /// A client trusting only this server's certificate.
    pub fn client(&self) -> TestClient {
        TestClient::new(self.addr, &self.cert_path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP answer as the tests see it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `reason` of a 401 body.
    pub fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A TLS client for one server.
#[derive(Clone)]
pub struct TestClient {
    pub addr: SocketAddr,
    roots: Arc<rustls::RootCertStore>,
}

impl TestClient {
    pub fn new(addr: SocketAddr, cert: &Path) -> TestClient {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(der.unwrap()).unwrap();
        }
        TestClient {
            addr,
            roots: Arc::new(roots),
        }
    }

    fn config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Opens a TLS connection offering the given ALPN protocols.
    pub async fn connect(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        self.handshake(tcp, alpn).await
    }

    /// Opens a TLS connection from another loopback address (e.g.
    /// 127.0.0.2), so the server sees a different client.
    pub async fn connect_from(
        &self,
        local: std::net::IpAddr,
        alpn: &[&[u8]],
    ) -> TlsStream<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(local, 0)).unwrap();
        let tcp = socket.connect(self.addr).await.unwrap();
        self.handshake(tcp, alpn).await
    }

    /// An HTTP/1.1 request sent from another loopback address.
    pub async fn h1_from(
        &self,
        local: std::net::IpAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut tls = self.connect_from(local, &[b"http/1.1"]).await;
        tls.write_all(request_head(method, target, headers).as_bytes())
            .await
            .unwrap();
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut bytes)).await;
        parse_http1(&bytes)
    }

    async fn handshake(&self, tcp: TcpStream, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let connector = TlsConnector::from(self.config(alpn));
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    /// One HTTP/1.1 request with a body, on a fresh connection. `None` when
    /// the connection fails or ends before a whole answer arrived (a killed
    /// server): only a complete answer counts as acknowledged.
    pub async fn try_send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Answer> {
        let tcp = TcpStream::connect(self.addr).await.ok()?;
        let connector = TlsConnector::from(self.config(&[b"http/1.1"]));
        let name = ServerName::try_from("localhost").ok()?;
        let mut tls = connector.connect(name, tcp).await.ok()?;
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        tls.write_all(request.as_bytes()).await.ok()?;
        // A server may answer (413) and close before taking the whole
        // body: a failed write still leaves its answer to read.
        let _ = tls.write_all(body).await;
        let mut bytes = Vec::new();
        // What arrived before an error or the timeout is kept in `bytes`;
        // only a whole answer counts.
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut bytes)).await;
        complete_http1(&bytes)
    }

    /// As [`TestClient::try_send`], panicking when no whole answer came.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        match self.try_send(method, target, headers, body).await {
            Some(answer) => answer,
            None => panic!("no complete answer to {method} {target}"),
        }
    }

    /// The certificate the server presented in the handshake (DER).
    pub async fn handshake_certificate(&self) -> Vec<u8> {
        let tls = self.connect(&[b"http/1.1"]).await;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates().unwrap()[0].as_ref().to_vec()
    }

    /// Sends raw HTTP/1.1 bytes and reads the answer until the server
    /// closes (send `Connection: close`).
    pub async fn raw(&self, request: &[u8]) -> Answer {
        let mut tls = self.connect(&[b"http/1.1"]).await;
        tls.write_all(request).await.unwrap();
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut bytes)).await;
        parse_http1(&bytes)
    }

    /// An HTTP/1.1 request with the exact request target `target`.
    pub async fn h1(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Answer {
        self.raw(request_head(method, target, headers).as_bytes())
            .await
    }

    /// GET over HTTP/1.1.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.h1("GET", path, headers).await
    }

    /// A request over HTTP/2 (ALPN h2).
    pub async fn h2(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let tls = self.connect(&[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("https://localhost:{}{path}", self.addr.port()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// An HTTP/1.1 request head with `Connection: close`.
pub fn request_head(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// Parses one HTTP/1.1 response (head, then a Content-Length or
/// read-to-close body).
pub fn parse_http1(bytes: &[u8]) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "incomplete or invalid HTTP answer ({other:?}): {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    let status = response.code.unwrap();
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")),
        "chunked answers are not expected here"
    );
    let rest = &bytes[head_len..];
    let body = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        Some((_, len)) => rest[..len.parse::<usize>().unwrap().min(rest.len())].to_vec(),
        None => rest.to_vec(),
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// The answer in `bytes` if it is whole: a complete head and as many body
/// bytes as its `Content-Length` says.
pub fn complete_http1(bytes: &[u8]) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
    match length {
        Some(length) if bytes.len() - head_len < length => None,
        _ => Some(parse_http1(bytes)),
    }
}

/// Asserts that `text` contains neither `key` nor any 8-byte piece of it.
pub fn assert_no_secret(text: &str, key: &str, what: &str) {
    let leaked = key
        .as_bytes()
        .windows(8.min(key.len()))
        .any(|w| text.as_bytes().windows(w.len()).any(|t| t == w));
    assert!(!leaked, "{what} contains (part of) a key");
}
