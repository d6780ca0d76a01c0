//! Parallel clients creating and deleting under the same parent leave a
//! consistent tree: no orphans, every acknowledged create present unless
//! an acknowledged delete took it (or an ancestor), nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use support::{Install, TestClient};

const CLIENTS: usize = 8;
const OPS_PER_CLIENT: usize = 40;

/// What the clients were told: created nodes with their parent, and the
/// ids whose delete was acknowledged.
#[derive(Default)]
struct Ledger {
    created: HashMap<String, String>,
    deleted: BTreeSet<String>,
}

async fn client_work(
    client: Arc<TestClient>,
    key: Arc<String>,
    me: usize,
    ledger: Arc<Mutex<Ledger>>,
) {
    let headers = [
        ("X-API-Key", key.as_str()),
        ("Content-Type", "application/json"),
    ];
    let mut state = (me as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for op in 0..OPS_PER_CLIENT {
        // Any node anyone created, possibly deleted meanwhile.
        let known: Vec<String> = ledger.lock().unwrap().created.keys().cloned().collect();
        let choice = next(10);
        if choice < 6 || known.is_empty() {
            let parent = if choice < 3 || known.is_empty() {
                "shared".to_owned()
            } else {
                known[next(known.len())].clone()
            };
            let id = format!("c{me}-{op}");
            let body =
                json!({"id": id, "type": "KrillApp.DataPoint", "name": id, "parent": parent});
            let answer = client
                .send("POST", "/api/nodes", &headers, body.to_string().as_bytes())
                .await;
            match answer.status {
                201 => {
                    ledger.lock().unwrap().created.insert(id, parent);
                }
                // The parent was deleted by another client first.
                400 => assert_eq!(
                    answer.json()["error"],
                    "unknown_parent",
                    "{}",
                    answer.text()
                ),
                other => panic!("create answered {other}: {}", answer.text()),
            }
        } else {
            let id = known[next(known.len())].clone();
            let answer = client
                .send("DELETE", &format!("/api/nodes/{id}"), &headers, b"")
                .await;
            match answer.status {
                204 => {
                    ledger.lock().unwrap().deleted.insert(id);
                }
                // Gone already, with its own subtree or an ancestor's.
                404 => {}
                other => panic!("delete answered {other}: {}", answer.text()),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_and_deletes_under_one_parent_leave_a_consistent_tree() {
    let install = Install::new();
    let server = install.start();
    let client = Arc::new(server.client());
    let key = Arc::new(install.key());
    let headers = [
        ("X-API-Key", key.as_str()),
        ("Content-Type", "application/json"),
    ];
    let shared = json!({"id": "shared", "type": "KrillApp.Project", "name": "shared"});
    let made = client
        .send(
            "POST",
            "/api/nodes",
            &headers,
            shared.to_string().as_bytes(),
        )
        .await;
    assert_eq!(made.status, 201);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|me| {
            tokio::spawn(client_work(
                Arc::clone(&client),
                Arc::clone(&key),
                me,
                Arc::clone(&ledger),
            ))
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let answer = client
        .send("GET", "/api/nodes?limit=1000", &headers, b"")
        .await;
    assert_eq!(answer.status, 200);
    let nodes: Vec<Value> = answer.json().as_array().unwrap().clone();
    let stored: HashMap<String, Option<String>> = nodes
        .iter()
        .map(|n| {
            let id = n["id"].as_str().unwrap().to_owned();
            (id, n["parent"].as_str().map(str::to_owned))
        })
        .collect();
    for (id, parent) in &stored {
        if let Some(parent) = parent {
            assert!(
                stored.contains_key(parent),
                "orphan: {id} under missing {parent}"
            );
        }
    }

    // A created node must be there exactly when neither it nor any
    // ancestor had an acknowledged delete. Parents never change here.
    let ledger = ledger.lock().unwrap();
    let survives = |id: &str| {
        let mut at = id.to_owned();
        loop {
            if ledger.deleted.contains(&at) {
                return false;
            }
            match ledger.created.get(&at) {
                Some(parent) => at = parent.clone(),
                None => return true, // reached "shared"
            }
        }
    };
    let mut expected: BTreeSet<String> = ledger
        .created
        .keys()
        .filter(|id| survives(id))
        .cloned()
        .collect();
    expected.insert("shared".to_owned());
    let actual: BTreeSet<String> = stored.keys().cloned().collect();
    assert_eq!(actual, expected);
    assert!(
        ledger.created.len() > CLIENTS,
        "too few creates to mean anything"
    );
    assert!(!ledger.deleted.is_empty(), "no delete was acknowledged");
}
