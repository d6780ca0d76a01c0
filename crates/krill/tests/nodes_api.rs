//! SPEC §7 over real HTTPS: the node API, the config API, refusals in our
//! JSON format, and the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{json, Value};
use support::{Answer, Install, TestClient, TestServer};

/// A client that sends the key and JSON.
struct Api {
    client: TestClient,
    key: String,
}

impl Api {
    fn new(install: &Install, server: &TestServer) -> Api {
        Api {
            client: server.client(),
            key: install.key(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        match body {
            Some(body) => {
                self.raw(
                    method,
                    path,
                    "application/json",
                    body.to_string().as_bytes(),
                )
                .await
            }
            None => {
                let headers = [("X-API-Key", self.key.as_str())];
                self.client.send(method, path, &headers, b"").await
            }
        }
    }

    async fn raw(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
        let headers = [
            ("X-API-Key", self.key.as_str()),
            ("Content-Type", content_type),
        ];
        self.client.send(method, path, &headers, body).await
    }

    async fn all_nodes(&self) -> Value {
        let answer = self.call("GET", "/api/nodes?limit=1000", None).await;
        assert_eq!(answer.status, 200);
        answer.json()
    }
}

fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() >= 20 && bytes[4] == b'-' && bytes[10] == b'T' && text.ends_with('Z')
}

#[tokio::test]
async fn nodes_are_created_read_replaced_and_deleted_with_their_subtree() {
    let install = Install::new();
    let server = install.start();
    let api = Api::new(&install, &server);

    let made = api
        .call(
            "POST",
            "/api/nodes",
            Some(&json!({"type": "KrillApp.Server", "name": "pi", "meta": {"ip": "10.0.0.2"}})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let node = made.json();
    let id = node["id"].as_str().unwrap().to_owned();
    assert!(uuid_like(&id), "server ids are UUIDs: {id}");
    assert_eq!(
        made.header("location"),
        Some(format!("/api/nodes/{id}").as_str())
    );
    assert_eq!(node["parent"], Value::Null);
    assert_eq!(node["meta"], json!({"ip": "10.0.0.2"}));
    assert!(is_rfc3339(node["created"].as_str().unwrap()), "{node}");
    assert_eq!(node["created"], node["updated"]);

    let read = api.call("GET", &format!("/api/nodes/{id}"), None).await;
    assert_eq!((read.status, read.json()), (200, node.clone()));

    // A client-chosen id under the first node, then a grandchild.
    let child = api
        .call(
            "POST",
            "/api/nodes",
            Some(&json!({"id": "pin:7", "type": "KrillApp.Server.Pin", "name": "pin 7", "parent": id})),
        )
        .await;
    assert_eq!(child.status, 201, "{}", child.text());
    assert_eq!(child.header("location"), Some("/api/nodes/pin:7"));
    let grandchild = api
        .call(
            "PUT",
            "/api/nodes/dp-1",
            Some(&json!({"type": "KrillApp.DataPoint", "name": "level", "parent": "pin:7"})),
        )
        .await;
    assert_eq!(grandchild.status, 201, "{}", grandchild.text());
    assert_eq!(grandchild.header("location"), Some("/api/nodes/dp-1"));

    // PUT of what GET returned, changed: replaced, created kept.
    let mut changed = grandchild.json();
    changed["name"] = json!("water level");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let replaced = api.call("PUT", "/api/nodes/dp-1", Some(&changed)).await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    let replaced = replaced.json();
    assert_eq!(replaced["name"], "water level");
    assert_eq!(replaced["created"], changed["created"]);
    assert_ne!(replaced["updated"], changed["updated"]);

    // A duplicate id on POST is a conflict.
    let dup = api
        .call(
            "POST",
            "/api/nodes",
            Some(&json!({"id": "dp-1", "type": "KrillApp.X", "name": "x"})),
        )
        .await;
    assert_eq!(
        (dup.status, dup.json()["error"].as_str()),
        (409, Some("id_taken"))
    );

    let other = api
        .call(
            "POST",
            "/api/nodes",
            Some(&json!({"id": "other", "type": "KrillApp.X", "name": "x"})),
        )
        .await;
    assert_eq!(other.status, 201);

    let gone = api.call("DELETE", &format!("/api/nodes/{id}"), None).await;
    assert_eq!(gone.status, 204);
    assert!(gone.body.is_empty());
    for path in [
        format!("/api/nodes/{id}"),
        "/api/nodes/pin:7".into(),
        "/api/nodes/dp-1".into(),
    ] {
        let answer = api.call("GET", &path, None).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.json()["error"], "node_not_found");
    }
    let left = api.all_nodes().await;
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], "other");
    let again = api.call("DELETE", &format!("/api/nodes/{id}"), None).await;
    assert_eq!(again.status, 404);
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.bytes().filter(|b| *b == b'-').count() == 4
}

#[tokio::test]
async fn listing_filters_by_parent_and_type_and_pages_with_a_cursor() {
    let install = Install::new();
    let server = install.start();
    let api = Api::new(&install, &server);
    for (id, parent, kind) in [
        ("p", None, "KrillApp.Project"),
        ("q", None, "KrillApp.Project"),
        ("c3", Some("p"), "KrillApp.Trigger"),
        ("c1", Some("p"), "KrillApp.DataPoint"),
        ("c2", Some("p"), "KrillApp.DataPoint"),
        ("d1", Some("q"), "KrillApp.DataPoint"),
    ] {
        let body = json!({"id": id, "type": kind, "name": id, "parent": parent});
        assert_eq!(
            api.call("POST", "/api/nodes", Some(&body)).await.status,
            201
        );
    }
    let ids = |answer: &Answer| -> Vec<String> {
        assert_eq!(answer.status, 200, "{}", answer.text());
        let list = answer.json();
        list.as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = api.call("GET", "/api/nodes", None).await;
    assert_eq!(ids(&all), ["c1", "c2", "c3", "d1", "p", "q"]);
    assert_eq!(all.header("link"), None);
    let children = api.call("GET", "/api/nodes?parent=p", None).await;
    assert_eq!(ids(&children), ["c1", "c2", "c3"]);
    let roots = api.call("GET", "/api/nodes?parent=", None).await;
    assert_eq!(ids(&roots), ["p", "q"]);
    let points = api
        .call("GET", "/api/nodes?type=KrillApp.DataPoint", None)
        .await;
    assert_eq!(ids(&points), ["c1", "c2", "d1"]);
    let both = api
        .call("GET", "/api/nodes?parent=p&type=KrillApp.DataPoint", None)
        .await;
    assert_eq!(ids(&both), ["c1", "c2"]);

    // Pages of two, following the Link header to the end.
    let mut seen = Vec::new();
    let mut next = Some("/api/nodes?limit=2".to_owned());
    while let Some(path) = next {
        let page = api.call("GET", &path, None).await;
        let got = ids(&page);
        assert!(got.len() <= 2);
        seen.extend(got);
        next = page.header("link").map(|link| {
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_owned()
        });
    }
    assert_eq!(seen, ["c1", "c2", "c3", "d1", "p", "q"]);
    let after = api.call("GET", "/api/nodes?after=c3&parent=p", None).await;
    assert!(ids(&after).is_empty());

    for bad in [
        "/api/nodes?limit=0",
        "/api/nodes?limit=1001",
        "/api/nodes?limit=ten",
        "/api/nodes?type=DataPoint",
        "/api/nodes?parent=a%20b",
        "/api/nodes?parnet=p",
    ] {
        let answer = api.call("GET", bad, None).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.json()["error"], "invalid_query", "{bad}");
    }
}

/// One bad request: method, path, content type, body, status, error label.
type BadRequest = (
    &'static str,
    String,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

fn bad_requests() -> Vec<BadRequest> {
    let node = |v: Value| v.to_string().into_bytes();
    let deep = {
        let mut meta = json!(1);
        for _ in 0..40 {
            meta = json!({ "x": meta });
        }
        meta
    };
    let huge = json!({"blob": "x".repeat(70 * 1024)});
    let json = "application/json";
    vec![
        (
            "POST",
            "/api/nodes".into(),
            json,
            b"{\"type\": ".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            b"".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            b"{} {}".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            b"[1,2]".to_vec(),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": 7, "name": "n"})),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X"})),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "colour": 1})),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "parent": 5})),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "Thing", "name": "n"})),
            400,
            "invalid_type",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": ""})),
            400,
            "invalid_name",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"id": "a/b", "type": "KrillApp.X", "name": "n"})),
            400,
            "invalid_id",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"id": "x".repeat(129), "type": "KrillApp.X", "name": "n"})),
            400,
            "invalid_id",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "parent": "nobody"})),
            400,
            "unknown_parent",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "meta": [1]})),
            400,
            "invalid_meta",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "meta": deep})),
            400,
            "meta_too_deep",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "meta": huge})),
            413,
            "meta_too_large",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            vec![b' '; 300 * 1024],
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/api/nodes".into(),
            "text/plain",
            node(json!({"type": "KrillApp.X", "name": "n"})),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/nodes".into(),
            "application/json; charset=latin1",
            node(json!({"type": "KrillApp.X", "name": "n"})),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/nodes".into(),
            json,
            b"{\"type\":\"KrillApp.X\",\"name\":\"\xff\"}".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "PUT",
            "/api/nodes/root".into(),
            json,
            node(json!({"id": "other", "type": "KrillApp.X", "name": "n"})),
            400,
            "id_mismatch",
        ),
        (
            "PUT",
            "/api/nodes/root".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "parent": "root"})),
            400,
            "parent_cycle",
        ),
        (
            "PUT",
            "/api/nodes/root".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "parent": "leaf"})),
            400,
            "parent_cycle",
        ),
        (
            "PUT",
            "/api/nodes/new".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n", "parent": "new"})),
            400,
            "parent_cycle",
        ),
        (
            "PUT",
            "/api/nodes/a%2Fb".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n"})),
            400,
            "invalid_id",
        ),
        (
            "PUT",
            "/api/nodes/%FF".into(),
            json,
            node(json!({"type": "KrillApp.X", "name": "n"})),
            400,
            "invalid_path",
        ),
        (
            "GET",
            "/api/nodes/missing".into(),
            json,
            vec![],
            404,
            "node_not_found",
        ),
        (
            "DELETE",
            "/api/nodes/missing".into(),
            json,
            vec![],
            404,
            "node_not_found",
        ),
        (
            "POST",
            "/api/nodes/root".into(),
            json,
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            "PATCH",
            "/api/nodes".into(),
            json,
            vec![],
            405,
            "method_not_allowed",
        ),
        ("GET", "/api/nothing".into(), json, vec![], 404, "not_found"),
        (
            "PATCH",
            "/api/config".into(),
            json,
            node(json!({"colour": "red"})),
            400,
            "invalid_config",
        ),
        (
            "PATCH",
            "/api/config".into(),
            json,
            node(json!({"auth_throttle": {"max_failures": "x"}})),
            400,
            "invalid_config",
        ),
        (
            "PATCH",
            "/api/config".into(),
            json,
            node(json!({"auth_throttle": {"window_seconds": 0}})),
            400,
            "invalid_config",
        ),
        (
            "PATCH",
            "/api/config".into(),
            json,
            node(json!({"display_name": 5})),
            400,
            "invalid_config",
        ),
        (
            "PATCH",
            "/api/config".into(),
            json,
            b"{".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "PATCH",
            "/api/config".into(),
            "text/plain",
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
    ]
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_that_says_what_is_wrong_and_changes_nothing() {
    let install = Install::new();
    let server = install.start();
    let api = Api::new(&install, &server);
    let root = json!({"id": "root", "type": "KrillApp.Project", "name": "root"});
    assert_eq!(
        api.call("POST", "/api/nodes", Some(&root)).await.status,
        201
    );
    let leaf = json!({"id": "leaf", "type": "KrillApp.Project", "name": "leaf", "parent": "root"});
    assert_eq!(
        api.call("POST", "/api/nodes", Some(&leaf)).await.status,
        201
    );
    let nodes_before = api.all_nodes().await;
    let config_before = api.call("GET", "/api/config", None).await.json();

    for (method, path, content_type, body, status, label) in bad_requests() {
        let answer = api.raw(method, &path, content_type, &body).await;
        let what = format!("{method} {path} ({} body bytes)", body.len());
        assert_eq!(answer.status, status, "{what}: {}", answer.text());
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        let error = answer.json();
        assert_eq!(error["error"], label, "{what}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.len() > 10, "{what}: {error}");
    }

    assert_eq!(api.all_nodes().await, nodes_before);
    assert_eq!(
        api.call("GET", "/api/config", None).await.json(),
        config_before
    );
}

#[tokio::test]
async fn field_errors_name_the_field() {
    let install = Install::new();
    let server = install.start();
    let api = Api::new(&install, &server);
    let cases = [
        (
            "POST",
            "/api/nodes",
            json!({"type": "KrillApp.X", "name": "n", "colour": 1}),
            "colour",
        ),
        (
            "POST",
            "/api/nodes",
            json!({"type": "KrillApp.X", "name": 5}),
            "name",
        ),
        (
            "POST",
            "/api/nodes",
            json!({"type": "KrillApp.X", "name": "n", "parent": "ghost"}),
            "parent",
        ),
        (
            "PATCH",
            "/api/config",
            json!({"auth_throttle": {"burst": 1}}),
            "burst",
        ),
        (
            "PATCH",
            "/api/config",
            json!({"auth_throttle": {"max_failures": -1}}),
            "auth_throttle.max_failures",
        ),
        (
            "PATCH",
            "/api/config",
            json!({"display_name": ["x"]}),
            "display_name",
        ),
    ];
    for (method, path, body, field) in cases {
        let answer = api.call(method, path, Some(&body)).await;
        assert_eq!(answer.status, 400, "{body}");
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field), "{body}: {message}");
    }
}

#[tokio::test]
async fn config_has_defaults_changes_by_patch_and_survives_a_restart() {
    let install = Install::new();
    let mut server = install.start();
    let api = Api::new(&install, &server);
    let config = api.call("GET", "/api/config", None).await;
    assert_eq!(config.status, 200);
    assert_eq!(
        config.json(),
        json!({
            "display_name": "Krill",
            "auth_throttle": {"max_failures": 10, "window_seconds": 60, "backoff_seconds": 300, "max_backoff_seconds": 3600}
        })
    );
    support::assert_no_secret(&config.text(), &install.key(), "GET /api/config");

    let patch = json!({"display_name": "Greenhouse", "auth_throttle": {"max_failures": 5}});
    let changed = api.call("PATCH", "/api/config", Some(&patch)).await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    let expected = json!({
        "display_name": "Greenhouse",
        "auth_throttle": {"max_failures": 5, "window_seconds": 60, "backoff_seconds": 300, "max_backoff_seconds": 3600}
    });
    assert_eq!(changed.json(), expected);
    let merge_patch = api
        .raw(
            "PATCH",
            "/api/config",
            "application/merge-patch+json",
            br#"{"auth_throttle": {"window_seconds": null}}"#,
        )
        .await;
    assert_eq!(merge_patch.status, 200);

    server.stop();
    let server = install.start();
    let api = Api::new(&install, &server);
    assert_eq!(api.call("GET", "/api/config", None).await.json(), expected);
}

#[tokio::test]
async fn the_api_answers_over_http2_too() {
    let install = Install::new();
    let server = install.start();
    let client = server.client();
    let key = install.key();
    let headers = [
        ("X-API-Key", key.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = json!({"id": "h2", "type": "KrillApp.X", "name": "over h2"}).to_string();
    let made = client
        .h2("POST", "/api/nodes", &headers, body.as_bytes())
        .await;
    assert_eq!(made.status, 201);
    let bad = client.h2("POST", "/api/nodes", &headers, b"{").await;
    assert_eq!(
        (bad.status, bad.json()["error"].clone()),
        (400, json!("malformed_json"))
    );
    let read = client.h2("GET", "/api/nodes/h2", &headers, b"").await;
    assert_eq!(read.json()["name"], "over h2");
}

#[tokio::test]
async fn the_served_openapi_document_parses_and_lists_every_route_the_router_has() {
    let install = Install::new();
    let server = install.start();
    let api = Api::new(&install, &server);
    let served = api.call("GET", "/api/openapi.json", None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("application/json"));
    let doc = served.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "not OpenAPI 3"
    );

    let shipped = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .unwrap();
    assert_eq!(
        served.body, shipped,
        "the served document is docs/openapi.json"
    );

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut routed: Vec<(String, String)> = krill::routes::route_list()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);

    // Protected routes say so; public ones need no key.
    for (method, path) in &routed {
        let op = &doc["paths"][path][method.to_lowercase()];
        let public = krill::auth::is_public(&method.parse().unwrap(), path);
        let security = op.get("security");
        if public {
            assert_eq!(security, Some(&json!([])), "{method} {path} is public");
        } else {
            assert!(
                security.is_none(),
                "{method} {path} uses the global key requirement"
            );
        }
        assert!(op["responses"].is_object(), "{method} {path} has responses");
    }
    assert_eq!(doc["security"], json!([{"ApiKey": []}]));
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_with_413_while_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    let mut tls = server.client().connect(&[b"http/1.1"]).await;
    let head = format!(
        "POST /api/nodes HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         X-API-Key: {key}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let mut request = head.into_bytes();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..5 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before taking it all.
    let _ = tls.write_all(&request).await;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tls.read_to_end(&mut bytes),
    )
    .await;
    let answer = support::complete_http1(&bytes).expect("a whole answer");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"], "payload_too_large");
}

/// Mangled versions of good requests: whatever a client sends, the answer
/// is a JSON 4xx or a success, never a 500 or plain text.
#[tokio::test]
async fn mangled_requests_never_get_a_500_or_plain_text() {
    let install = Install::new();
    let server = install.start();
    let api = Api::new(&install, &server);
    let seed = json!({"id": "base", "type": "KrillApp.X", "name": "n", "parent": null,
                      "meta": {"a": [1, 2, {"b": "c"}], "d": null}});
    assert_eq!(
        api.call("POST", "/api/nodes", Some(&seed)).await.status,
        201
    );
    let good = json!({"type": "KrillApp.X", "name": "n", "parent": "base", "meta": {"k": "v"}})
        .to_string()
        .into_bytes();
    let config = br#"{"display_name": "x", "auth_throttle": {"max_failures": 3}}"#.to_vec();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let targets = [
        ("POST", "/api/nodes"),
        ("PUT", "/api/nodes/fuzz"),
        ("PATCH", "/api/config"),
    ];
    let noise = b"{}[]\",:0123456789.eE+-nulltruefalse \\\x00\xff\xc3";
    for round in 0..150 {
        let (method, path) = targets[round % targets.len()];
        let mut body = if method == "PATCH" {
            config.clone()
        } else {
            good.clone()
        };
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % body.len().max(1);
            match next() % 3 {
                0 if !body.is_empty() => {
                    body.remove(at);
                }
                1 => body.insert(at, noise[(next() as usize) % noise.len()]),
                _ => body.truncate(at),
            }
        }
        let answer = api.raw(method, path, "application/json", &body).await;
        let what = format!("{method} {path} {:?}", String::from_utf8_lossy(&body));
        assert!(
            answer.status < 500,
            "{what}: {} {}",
            answer.status,
            answer.text()
        );
        if answer.status >= 400 {
            assert_eq!(
                answer.header("content-type"),
                Some("application/json"),
                "{what}"
            );
            assert!(answer.json()["error"].is_string(), "{what}");
        }
    }
    for path in [
        "/api/nodes/%00",
        "/api/nodes/%C0%AF",
        "/api/nodes?limit=-1",
        "/api/nodes?limit=99999999999999999999999",
        "/api/nodes?after=%FF",
        "/api/nodes?type=a&type=b",
        "/api/nodes?%zz",
    ] {
        let answer = api.call("GET", path, None).await;
        assert!(
            (400..500).contains(&answer.status),
            "{path}: {}",
            answer.status
        );
        assert!(answer.json()["error"].is_string(), "{path}");
    }
}
