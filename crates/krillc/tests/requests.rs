//! What `krillc` sends for each node and config command, checked against a
//! small scripted HTTP server on 127.0.0.1 that answers as SPEC §7 says
//! the real one does. (The real server's write routes are tested with
//! `krillc` in `client.rs` once they exist.) Plain `http://` keeps the
//! script short; TLS is covered by `client.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;

use serde_json::{json, Value};

const KEY: &str = "k3y-for-the-scripted-server-0123456789";

/// One request as the scripted server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    key: Option<String>,
    content_type: Option<String>,
    body: Option<Value>,
}

/// Serves one canned answer per request, in order, and reports each
/// request it received.
fn scripted(answers: Vec<(u16, Value)>) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (status, canned) in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap().to_owned();
            let target = parts.next().unwrap().to_owned();
            let (mut key, mut content_type, mut length) = (None, None, 0usize);
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                let value = value.trim().to_owned();
                match name.to_ascii_lowercase().as_str() {
                    "x-api-key" => key = Some(value),
                    "content-type" => content_type = Some(value),
                    "content-length" => length = value.parse().unwrap(),
                    _ => {}
                }
            }
            let mut raw = vec![0u8; length];
            reader.read_exact(&mut raw).unwrap();
            let body = (length > 0).then(|| serde_json::from_slice(&raw).unwrap());
            tx.send(Seen {
                method,
                target,
                key,
                content_type,
                body,
            })
            .unwrap();
            let text = if status == 204 {
                String::new()
            } else {
                body_text(&canned)
            };
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{text}",
                text.len()
            );
            let mut stream = reader.into_inner();
            stream.write_all(answer.as_bytes()).unwrap();
        }
    });
    (addr, rx)
}

fn body_text(body: &Value) -> String {
    body.to_string()
}

fn krillc(addr: SocketAddr, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_krillc"))
        .args(args)
        .arg("--server")
        .arg(format!("http://{addr}"))
        .env("HOME", home.path())
        .env("KRILL_API_KEY", KEY)
        .env_remove("KRILL_SERVER")
        .env_remove("KRILL_PROFILE")
        .env_remove("KRILLC_CONFIG_DIR")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn node(id: &str, name: &str) -> Value {
    json!({
        "id": id, "type": "KrillApp.DataPoint", "name": name, "parent": null,
        "meta": {"unit": "C"}, "created": "2026-01-01T00:00:00Z",
        "updated": "2026-01-02T00:00:00Z"
    })
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn sent_key(seen: &Seen) -> bool {
    seen.key.as_deref() == Some(KEY)
}

#[test]
fn list_sends_filters_and_prints_a_table() {
    let (addr, seen) = scripted(vec![(200, json!([node("n1", "Temp"), node("n2", "Hum")]))]);
    let out = ok(&krillc(
        addr,
        &[
            "nodes",
            "list",
            "--parent",
            "p/1",
            "--type",
            "KrillApp.DataPoint",
        ],
    ));
    let request = seen.recv().unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.target,
        "/api/nodes?parent=p%2F1&type=KrillApp.DataPoint"
    );
    assert!(sent_key(&request), "the key header was not sent as given");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        lines[1].starts_with("n1") && lines[1].contains("Temp"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
}

#[test]
fn create_posts_the_fields_and_json_output_parses() {
    let (addr, seen) = scripted(vec![(201, node("n9", "Temp"))]);
    let out = ok(&krillc(
        addr,
        &[
            "nodes",
            "create",
            "--type",
            "KrillApp.DataPoint",
            "--name",
            "Temp",
            "--meta",
            r#"{"unit":"C"}"#,
            "--parent",
            "root",
            "--json",
        ],
    ));
    let request = seen.recv().unwrap();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/api/nodes")
    );
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert!(sent_key(&request));
    assert_eq!(
        request.body.unwrap(),
        json!({"type": "KrillApp.DataPoint", "name": "Temp", "parent": "root", "meta": {"unit": "C"}})
    );
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["id"], "n9");
}

#[test]
fn update_changes_only_the_named_fields_with_put() {
    let (addr, seen) = scripted(vec![(200, node("a b", "Old")), (200, node("a b", "New"))]);
    let out = ok(&krillc(addr, &["nodes", "update", "a b", "--name", "New"]));
    let get = seen.recv().unwrap();
    assert_eq!(
        (get.method.as_str(), get.target.as_str()),
        ("GET", "/api/nodes/a%20b")
    );
    let put = seen.recv().unwrap();
    assert_eq!(
        (put.method.as_str(), put.target.as_str()),
        ("PUT", "/api/nodes/a%20b")
    );
    assert_eq!(
        put.body.unwrap(),
        json!({"id": "a b", "type": "KrillApp.DataPoint", "name": "New", "parent": null, "meta": {"unit": "C"}})
    );
    assert!(out.contains("New"), "{out}");
}

#[test]
fn delete_and_config_commands() {
    let (addr, seen) = scripted(vec![
        (204, Value::Null),
        (
            200,
            json!({"display_name": "Krill", "auth_throttle": {"max_failures": 10}}),
        ),
        (
            200,
            json!({"display_name": "Greenhouse", "auth_throttle": {"max_failures": 5}}),
        ),
    ]);
    let out = ok(&krillc(addr, &["nodes", "delete", "n1", "--json"]));
    let delete = seen.recv().unwrap();
    assert_eq!(
        (delete.method.as_str(), delete.target.as_str()),
        ("DELETE", "/api/nodes/n1")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"deleted": "n1"})
    );

    let out = ok(&krillc(addr, &["config", "get", "display_name"]));
    assert_eq!(seen.recv().unwrap().target, "/api/config");
    assert_eq!(out, "Krill\n");

    let out = ok(&krillc(
        addr,
        &[
            "config",
            "set",
            "display_name=Greenhouse",
            "auth_throttle.max_failures=5",
        ],
    ));
    let patch = seen.recv().unwrap();
    assert_eq!(patch.method, "PATCH");
    assert_eq!(
        patch.body.unwrap(),
        json!({"display_name": "Greenhouse", "auth_throttle": {"max_failures": 5}})
    );
    assert!(
        out.contains("auth_throttle") && out.contains("Greenhouse"),
        "{out}"
    );
}

#[test]
fn server_errors_map_to_exit_statuses_with_the_servers_message() {
    let (addr, _seen) = scripted(vec![
        (404, json!({"error": "not_found", "message": "no node n7"})),
        (
            400,
            json!({"error": "bad_request", "message": "unknown parent p"}),
        ),
        (500, json!({"error": "storage_error", "message": "disk"})),
    ]);
    let cases = [
        (vec!["nodes", "get", "n7"], 6, "no node n7"),
        (
            vec!["nodes", "create", "--type", "T", "--parent", "p"],
            7,
            "unknown parent p",
        ),
        (vec!["nodes", "list"], 8, "journalctl"),
    ];
    for (args, status, text) in cases {
        let out = krillc(addr, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(text), "{args:?}: {stderr}");
        assert!(!stderr.contains(KEY), "{args:?}: the key was printed");
    }
}

/// Answers every request with one node and a `Link` header made by
/// `next(page)`, counting the requests.
fn endless(
    next: fn(usize) -> String,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let page = seen.fetch_add(1, Ordering::SeqCst);
            let text = json!([node(&format!("n{page:05}"), "x")]).to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Link: <{}>; rel=\"next\"\r\nConnection: close\r\n\r\n{text}",
                text.len(),
                next(page)
            );
            let _ = reader.into_inner().write_all(answer.as_bytes());
        }
    });
    (addr, count)
}

#[test]
fn list_stops_with_an_error_after_1000_pages() {
    let (addr, count) = endless(|page| format!("/api/nodes?after=n{page:05}"));
    let out = krillc(addr, &["nodes", "list", "--json"]);
    assert_eq!(out.status.code(), Some(8));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1000 pages") && err.contains("--limit"),
        "{err}"
    );
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1000);
    assert!(out.stdout.is_empty());
}

#[test]
fn list_follows_no_link_away_from_the_node_list() {
    let (addr, count) = endless(|_| "https://elsewhere.invalid/api/nodes?after=x".into());
    let out = krillc(addr, &["nodes", "list"]);
    assert_eq!(out.status.code(), Some(8));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("elsewhere.invalid"), "{err}");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
}
