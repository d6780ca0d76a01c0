//! Every acknowledged write survives SIGKILL, and no write is half-applied
//! (SPEC §7: "A 2xx answer to a write means the change is on disk").
//!
//! Each round starts the server on the same data directory, checks the
//! store against what the clients know, lets three writers stream
//! creates, replaces and subtree deletes, and kills the server with
//! SIGKILL at a random moment. After the restart, each writer's part of
//! the tree must equal its model exactly, except that the one request it
//! had in flight may have been applied wholly or not at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Install, TestClient};

const ROUNDS: u64 = 15;
const WRITERS: usize = 3;

/// A writer's view: id → (name, parent).
type Model = BTreeMap<String, (String, Option<String>)>;

#[derive(Debug, Clone)]
enum Op {
    Create { id: String, parent: Option<String> },
    Rename { id: String, name: String },
    Delete { id: String },
}

impl Op {
    fn apply(&self, model: &mut Model) {
        match self {
            Op::Create { id, parent } => {
                model.insert(id.clone(), ("v0".into(), parent.clone()));
            }
            Op::Rename { id, name } => {
                if let Some(entry) = model.get_mut(id) {
                    entry.0 = name.clone();
                }
            }
            Op::Delete { id } => {
                let mut doomed = vec![id.clone()];
                let mut i = 0;
                while i < doomed.len() {
                    let parent = doomed[i].clone();
                    doomed.extend(
                        model
                            .iter()
                            .filter(|(_, (_, p))| p.as_deref() == Some(parent.as_str()))
                            .map(|(id, _)| id.clone()),
                    );
                    i += 1;
                }
                for id in doomed {
                    model.remove(&id);
                }
            }
        }
    }
}

/// xorshift64: enough randomness for op choice and kill timing, no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Streams writes until one gets no whole answer. Returns the model of
/// acknowledged writes and the op left in flight, if any.
async fn write_until_killed(
    client: Arc<TestClient>,
    key: Arc<String>,
    writer: usize,
    round: u64,
    mut model: Model,
    mut rng: Rng,
) -> (Model, Option<Op>, usize) {
    let headers = [
        ("X-API-Key", key.as_str()),
        ("Content-Type", "application/json"),
    ];
    let mut acknowledged = 0;
    for seq in 0u64.. {
        let ids: Vec<&String> = model.keys().collect();
        let pick = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize].clone();
        let op = match rng.below(10) {
            _ if ids.is_empty() => Op::Create {
                id: format!("w{writer}-{round}-{seq}"),
                parent: None,
            },
            0..=5 => {
                let parent = (rng.below(4) != 0).then(|| pick(&mut rng));
                Op::Create {
                    id: format!("w{writer}-{round}-{seq}"),
                    parent,
                }
            }
            6..=8 => Op::Rename {
                id: pick(&mut rng),
                name: format!("v{round}.{seq}"),
            },
            _ => Op::Delete { id: pick(&mut rng) },
        };
        let (method, path, body) = match &op {
            Op::Create { id, parent } => (
                "POST",
                "/api/nodes".to_owned(),
                json!({"id": id, "type": "KrillApp.DataPoint", "name": "v0", "parent": parent,
                       "meta": {"writer": writer, "round": round, "seq": seq}}),
            ),
            Op::Rename { id, name } => (
                "PUT",
                format!("/api/nodes/{id}"),
                json!({"type": "KrillApp.DataPoint", "name": name, "parent": model[id].1,
                       "meta": {"writer": writer, "round": round, "seq": seq}}),
            ),
            Op::Delete { id } => ("DELETE", format!("/api/nodes/{id}"), Value::Null),
        };
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        match client.try_send(method, &path, &headers, &body).await {
            Some(answer) => {
                assert!(
                    (200..300).contains(&answer.status),
                    "{op:?} answered {}: {}",
                    answer.status,
                    answer.text()
                );
                op.apply(&mut model);
                acknowledged += 1;
            }
            None => return (model, Some(op), acknowledged),
        }
    }
    unreachable!("the writer stops when the server is killed")
}

/// Every node, following the `Link` header page by page.
async fn all_nodes(client: &TestClient, key: &str) -> Vec<Value> {
    let mut nodes = Vec::new();
    let mut next = Some("/api/nodes?limit=1000".to_owned());
    while let Some(path) = next {
        let page = client.send("GET", &path, &[("X-API-Key", key)], b"").await;
        assert_eq!(page.status, 200, "{}", page.text());
        nodes.extend(page.json().as_array().unwrap().iter().cloned());
        next = page
            .header("link")
            .map(|link| link[1..link.find('>').unwrap()].to_owned());
    }
    nodes
}

fn stored_model(nodes: &[Value], writer: usize) -> Model {
    let prefix = format!("w{writer}-");
    nodes
        .iter()
        .filter(|n| n["id"].as_str().unwrap().starts_with(&prefix))
        .map(|n| {
            let parent = n["parent"].as_str().map(str::to_owned);
            (
                n["id"].as_str().unwrap().to_owned(),
                (n["name"].as_str().unwrap().to_owned(), parent),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_sigkill_and_none_is_half_applied() {
    let install = Install::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let mut models: Vec<Model> = vec![Model::new(); WRITERS];
    let mut in_flight: Vec<Option<Op>> = vec![None; WRITERS];
    let mut acknowledged = 0usize;
    let started = Instant::now();

    for round in 0..=ROUNDS {
        let mut server = install.start();
        let client = Arc::new(server.client());
        let key = Arc::new(install.key());

        // What survived the last kill: acknowledged writes all there, the
        // request in flight wholly applied or not at all.
        let nodes = all_nodes(&client, &key).await;
        let ids: std::collections::HashSet<&str> =
            nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
        for node in &nodes {
            if let Some(parent) = node["parent"].as_str() {
                assert!(ids.contains(parent), "seed {seed}: orphan {node}");
            }
        }
        for writer in 0..WRITERS {
            let stored = stored_model(&nodes, writer);
            let mut applied = models[writer].clone();
            if let Some(op) = &in_flight[writer] {
                op.apply(&mut applied);
            }
            assert!(
                stored == models[writer] || stored == applied,
                "seed {seed}, round {round}, writer {writer}: the store differs from the \
                 acknowledged writes (in flight: {:?})\nstored:   {stored:?}\nexpected: {:?}",
                in_flight[writer],
                models[writer]
            );
            models[writer] = stored;
        }
        if round == ROUNDS {
            break;
        }

        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let rng = Rng(rng.below(u64::MAX) | 1);
                tokio::spawn(write_until_killed(
                    Arc::clone(&client),
                    Arc::clone(&key),
                    writer,
                    round,
                    models[writer].clone(),
                    rng,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20 + rng.below(600))).await;
        server.kill();
        for (writer, task) in tasks.into_iter().enumerate() {
            let (model, op, count) = task.await.unwrap();
            acknowledged += count;
            models[writer] = model;
            in_flight[writer] = op;
        }
    }
    assert!(acknowledged > 0, "no write was acknowledged at all");
    eprintln!(
        "{ROUNDS} SIGKILL rounds, {acknowledged} acknowledged writes, in {:?} (seed {seed})",
        started.elapsed()
    );
}
