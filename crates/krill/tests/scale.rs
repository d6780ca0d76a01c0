//! A store of 100,000 nodes works over HTTPS: lookups by id, paginated
//! listing and a subtree delete. The store is built directly through the
//! store API in one transaction (fast); timings are printed, not asserted
//! (the benchmark script measures; the index use is pinned by
//! `store::nodes` tests through the query plan).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Instant;

use krill::store::nodes::{self, NodeFields};
use krill::store::Store;
use support::Install;

const LEAVES: usize = 100_000;
const GROUPS: usize = 100;

fn fields(parent: &str) -> NodeFields {
    NodeFields {
        node_type: "KrillApp.DataPoint".to_owned(),
        name: "reading".to_owned(),
        parent: Some(parent.to_owned()),
        meta: r#"{"unit":"C"}"#.to_owned(),
    }
}

#[tokio::test]
async fn a_store_of_100_000_nodes_serves_lookups_pages_and_subtree_deletes() {
    let install = Install::new();
    std::fs::create_dir_all(&install.data).unwrap();
    let started = Instant::now();
    {
        let store = Store::open(&install.data).unwrap();
        let root = NodeFields {
            parent: None,
            ..fields("")
        };
        let groups: Vec<(String, NodeFields)> = (0..GROUPS)
            .map(|g| (format!("g{g:03}"), fields("root")))
            .collect();
        let leaves: Vec<(String, NodeFields)> = (0..LEAVES)
            .map(|i| (format!("n{i:06}"), fields(&format!("g{:03}", i % GROUPS))))
            .collect();
        let batch = std::iter::once(("root", &root))
            .chain(groups.iter().map(|(id, f)| (id.as_str(), f)))
            .chain(leaves.iter().map(|(id, f)| (id.as_str(), f)));
        let made = store
            .call_blocking(|c| nodes::insert_batch(c, batch, "2026-01-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(made, 1 + GROUPS + LEAVES);
    }
    let built = started.elapsed();

    let server = install.start();
    let client = server.client();
    let key = install.key();
    let headers = [("X-API-Key", key.as_str())];

    let started = Instant::now();
    let lookups = 50;
    for i in (0..LEAVES).step_by(LEAVES / lookups) {
        let answer = client
            .send("GET", &format!("/api/nodes/n{i:06}"), &headers, b"")
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["parent"], format!("g{:03}", i % GROUPS));
    }
    let per_lookup = started.elapsed() / lookups as u32;

    // The default page is 100; the Link header walks a group's children.
    let first = client.send("GET", "/api/nodes", &headers, b"").await;
    assert_eq!(first.json().as_array().unwrap().len(), 100);
    assert!(first.header("link").is_some());
    let mut next = Some("/api/nodes?parent=g042&limit=1000".to_owned());
    let mut children = 0;
    let started = Instant::now();
    while let Some(path) = next {
        let page = client.send("GET", &path, &headers, b"").await;
        assert_eq!(page.status, 200);
        children += page.json().as_array().unwrap().len();
        next = page
            .header("link")
            .map(|link| link[1..link.find('>').unwrap()].to_owned());
    }
    let walk = started.elapsed();
    assert_eq!(children, LEAVES / GROUPS);

    let started = Instant::now();
    let gone = client
        .send("DELETE", "/api/nodes/g042", &headers, b"")
        .await;
    assert_eq!(gone.status, 204);
    let delete = started.elapsed();
    let after = client
        .send("GET", "/api/nodes?parent=g042", &headers, b"")
        .await;
    assert_eq!(after.json(), serde_json::json!([]));
    let leaf = client
        .send("GET", "/api/nodes/n000042", &headers, b"")
        .await;
    assert_eq!(leaf.status, 404);

    eprintln!(
        "100,101 nodes built in {built:?}; GET /api/nodes/{{id}} {per_lookup:?} each over a new \
         TLS connection (debug build); 1,000 children paged in {walk:?}; subtree of 1,001 \
         deleted in {delete:?}"
    );
}
