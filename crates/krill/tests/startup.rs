//! Starting and stopping the server: key file formats, refusals with a
//! clear sentence, permission warnings, transport limits, plain HTTP on the
//! TLS port, SIGTERM, and the README's quick start with real curl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{assert_no_secret, Install};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "Z7x!q2-custom-key-for-format-tests-0123";

#[tokio::test]
async fn what_shell_tools_write_around_the_key_is_accepted() {
    let forms: [(&str, Vec<u8>); 5] = [
        ("echo | tee (LF)", format!("{KEY}\n").into_bytes()),
        ("CRLF", format!("{KEY}\r\n").into_bytes()),
        (
            "byte-order mark",
            [&b"\xEF\xBB\xBF"[..], KEY.as_bytes(), b"\n"].concat(),
        ),
        (
            "spaces and tabs around",
            format!("  \t{KEY} \t\n\n").into_bytes(),
        ),
        ("no newline", KEY.as_bytes().to_vec()),
    ];
    for (what, bytes) in forms {
        let install = Install::new();
        install.write_key_file(&bytes);
        let server = install
            .try_start()
            .unwrap_or_else(|e| panic!("{what}: refused to start: {e}"));
        let answer = server
            .client()
            .get("/api/nodes", &[("X-API-Key", KEY)])
            .await;
        assert_eq!(answer.status, 200, "{what}");
        assert_no_secret(&server.logs(), KEY, "server log");
    }
}

#[test]
fn a_bad_key_file_stops_the_server_with_a_sentence_naming_file_and_fix() {
    let long = "a".repeat(513);
    let cases: [(&str, Option<Vec<u8>>, &str); 7] = [
        (
            "inner space",
            Some(b"abc def-0123456789\n".to_vec()),
            "krill key generate",
        ),
        (
            "control character",
            Some(b"abc\x07def\n".to_vec()),
            "krill key generate",
        ),
        (
            "non-ASCII",
            Some("cl\u{e9}-0123456789\n".as_bytes().to_vec()),
            "krill key generate",
        ),
        (
            "513 characters",
            Some(long.into_bytes()),
            "krill key generate",
        ),
        ("empty", Some(Vec::new()), "krill key generate"),
        (
            "only whitespace",
            Some(b" \r\n\t\n".to_vec()),
            "krill key generate",
        ),
        ("missing", None, "krill init"),
    ];
    for (what, bytes, fix) in cases {
        let install = Install::new();
        match &bytes {
            Some(bytes) => install.write_key_file(bytes),
            None => fs::remove_file(install.key_path()).unwrap(),
        }
        let (status, output) = install.refused_start();
        assert!(!status.success(), "{what}");
        let line = output
            .lines()
            .find(|l| l.starts_with("krill: "))
            .unwrap_or_else(|| panic!("{what}: no error sentence in {output:?}"));
        assert!(
            line.contains(&install.key_path().display().to_string()),
            "{what}: {line}"
        );
        assert!(line.contains(fix), "{what}: {line}");
        assert!(
            !line.contains("def") && !line.contains("aaaa"),
            "{what}: echoes the content"
        );
    }
}

#[test]
fn a_key_path_that_is_not_a_regular_file_is_refused() {
    let install = Install::new();
    fs::remove_file(install.key_path()).unwrap();
    fs::create_dir(install.key_path()).unwrap();
    let (status, output) = install.refused_start();
    assert!(!status.success());
    assert!(output.contains("not a regular file"), "{output}");

    // A FIFO must not block the server forever.
    fs::remove_dir(install.key_path()).unwrap();
    nix::unistd::mkfifo(&install.key_path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let started = Instant::now();
    let (status, _) = install.refused_start();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_missing_certificate_stops_the_server() {
    let install = Install::new();
    fs::remove_file(install.cert_path()).unwrap();
    let (status, output) = install.refused_start();
    assert!(!status.success());
    assert!(output.contains("krill.crt"), "{output}");
    assert!(output.contains("krill init"), "{output}");
}

#[test]
fn a_key_file_the_server_user_cannot_read_is_refused() {
    // Root reads every file, so the server runs as `nobody` here (through
    // setpriv) when the tests run as root, and as the test user otherwise.
    let install = Install::new();
    let mut cmd = install.krill_unable_to_read_key(0o755);
    let out = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--etc-dir"])
        .arg(&install.etc)
        .arg("--data-dir")
        .arg(&install.data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        err.contains(&install.key_path().display().to_string()),
        "{err}"
    );
    assert!(err.contains("krill key fix-permissions"), "{err}");
}

#[test]
fn a_key_readable_by_others_starts_with_a_warning() {
    let install = Install::new();
    fs::set_permissions(install.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(
        install.etc.join("credentials"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let server = install.start();
    let logs = server.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("fix-permissions"))
        .collect();
    assert_eq!(warnings.len(), 2, "{logs}");
    assert!(warnings.iter().any(|l| l.contains("0644")));
    assert!(warnings.iter().any(|l| l.contains("0755")));
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_short_answer_not_a_hang() {
    let install = Install::new();
    let server = install.start();
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("connection was left hanging")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("https://"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    let big = "a".repeat(64 * 1024);
    let mut tls = server.client().connect(&[b"http/1.1"]).await;
    let request = format!(
        "GET /api/nodes HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {key}\r\nX-Big: {big}\r\n\r\n"
    );
    let _ = tls.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "a 64 KiB header was served"
    );
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_disconnected() {
    let install = Install::new();
    let server = install.start();
    // A TLS connection that never sends a request: dropped after the header
    // read timeout (10 s), well before the test's 30 s limit.
    let mut tls = server.client().connect(&[b"http/1.1"]).await;
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the slow client was never disconnected");
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[test]
fn sigterm_stops_the_server_with_status_zero() {
    let install = Install::new();
    let mut server = install.start();
    let status = server.stop();
    assert!(status.success(), "{status}");
    assert!(server.logs().contains("stopped"));
}

#[test]
fn init_is_idempotent_and_says_so() {
    let install = Install::empty();
    let first = install.krill(&["init"]).output().unwrap();
    assert!(first.status.success());
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("created API key"), "{text}");
    let key_before = fs::read(install.key_path()).unwrap();
    assert_no_secret(
        &text,
        std::str::from_utf8(&key_before).unwrap().trim(),
        "init output",
    );

    let second = install.krill(&["init"]).output().unwrap();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing to do"));
    assert_eq!(fs::read(install.key_path()).unwrap(), key_before);
}

#[test]
fn settings_file_typos_are_reported_with_the_file_name() {
    let install = Install::new();
    fs::write(install.etc.join("krill.toml"), "lsten = \"127.0.0.1:1\"\n").unwrap();
    let out = install.krill(&["serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("krill.toml") && err.contains("lsten"), "{err}");
}

#[test]
fn quick_start_prints_a_curl_line_that_works_as_printed() {
    let install = Install::empty();
    let server = install.try_start_with(&["--init"]).unwrap();
    let logs = server.logs();
    assert!(logs.contains("API key file: "), "{logs}");
    let line = logs
        .lines()
        .find(|l| l.starts_with("Try: curl "))
        .expect("no curl line");
    let command = line.trim_start_matches("Try: ");
    assert!(
        command.contains("$(cat "),
        "the key must be read from its file"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} -sS --fail"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]");
    assert_no_secret(&logs, &install.key(), "quick start output");
}

#[test]
fn the_reference_documents_curl_line_works() {
    let install = Install::new();
    let server = install.start();
    let key = install.key_path().display().to_string();
    let url = format!("https://localhost:{}/api/nodes", server.addr.port());
    let cert = install.cert_path().display().to_string();
    let script = format!(
        "curl -sS --fail --cacert '{cert}' -H \"X-API-Key: $(cat '{key}')\" {url} && \
         curl -sS -o /dev/null -w '%{{http_code}}' --cacert '{cert}' -H 'X-API-Key: your-api-key-here' {url}"
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]401");
}

#[tokio::test]
async fn a_weak_key_in_the_file_works_but_is_warned_about() {
    let install = Install::new();
    install.write_key_file(b"shortkey\n");
    let server = install.start();
    let answer = server
        .client()
        .get("/api/nodes", &[("X-API-Key", "shortkey")])
        .await;
    assert_eq!(answer.status, 200);
    let logs = server.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("is weak"))
        .unwrap_or_else(|| panic!("no weak-key warning in {logs}"));
    assert!(warning.contains("krill key rotate"));
    assert!(!warning.contains("shortkey"));
}

#[test]
fn store_problems_say_what_is_wrong() {
    let install = Install::new();
    fs::remove_dir_all(&install.data).unwrap();
    let (status, output) = install.refused_start();
    assert!(!status.success());
    assert!(
        output.contains("does not exist") && output.contains("krill init"),
        "{output}"
    );

    let install = Install::new();
    fs::create_dir_all(&install.data).unwrap();
    fs::write(install.data.join("krill.db"), vec![b'x'; 8192]).unwrap();
    let (status, output) = install.refused_start();
    assert!(!status.success());
    assert!(
        output.contains("damaged or not a Krill database"),
        "{output}"
    );
}
