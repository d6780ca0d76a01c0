//! `krillc nodes list|get|create|update|delete` (SPEC §7, `/api/nodes`).

use clap::Args;
use hyper::Method;
use serde_json::{Map, Value};

use crate::api::Client;
use crate::failure::Failure;
use crate::http::encode;
use crate::output;

use super::{body_json, parse_json_arg, Format};

/// The order fields are shown in.
const FIELD_ORDER: &[&str] = &["id", "type", "name", "parent", "created", "updated", "meta"];

/// The fields `create` and `update` can set.
#[derive(Debug, Default, Args)]
pub struct NodeFields {
    /// Node type, e.g. KrillApp.DataPoint.
    #[arg(long = "type", value_name = "TYPE")]
    pub node_type: Option<String>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Id of the parent node.
    #[arg(long, value_name = "ID", conflicts_with = "no_parent")]
    pub parent: Option<String>,
    /// Make it a top-level node (parent null).
    #[arg(long)]
    pub no_parent: bool,
    /// Free JSON object, e.g. '{"unit":"C"}'.
    #[arg(long, value_name = "JSON")]
    pub meta: Option<String>,
    /// The whole node as JSON instead of the flags above ("-" reads stdin).
    #[arg(long, value_name = "JSON", conflicts_with_all = ["node_type", "name", "parent", "no_parent", "meta"])]
    pub body: Option<String>,
}

impl NodeFields {
    /// Writes the given flags into `node`.
    fn apply(&self, node: &mut Map<String, Value>) -> Result<(), Failure> {
        if let Some(t) = &self.node_type {
            node.insert("type".into(), Value::String(t.clone()));
        }
        if let Some(n) = &self.name {
            node.insert("name".into(), Value::String(n.clone()));
        }
        if let Some(p) = &self.parent {
            node.insert("parent".into(), Value::String(p.clone()));
        }
        if self.no_parent {
            node.insert("parent".into(), Value::Null);
        }
        if let Some(m) = &self.meta {
            let meta = parse_json_arg("--meta", m)?;
            if !meta.is_object() {
                return Err(Failure::Usage(
                    "--meta must be a JSON object, e.g. --meta '{\"unit\":\"C\"}'".into(),
                ));
            }
            node.insert("meta".into(), meta);
        }
        Ok(())
    }

    /// The `--body` JSON, read from stdin for "-".
    fn body(&self) -> Result<Option<Map<String, Value>>, Failure> {
        let Some(text) = &self.body else {
            return Ok(None);
        };
        let text = if text == "-" {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| Failure::Local(format!("cannot read the node from stdin: {e}")))?
        } else {
            text.clone()
        };
        match parse_json_arg("--body", &text)? {
            Value::Object(map) => Ok(Some(map)),
            _ => Err(Failure::Usage(
                "--body must be a JSON object (one node)".into(),
            )),
        }
    }
}

fn node_path(id: &str) -> String {
    format!("/api/nodes/{}", encode(id))
}

/// Most pages `nodes list` follows before giving up.
pub const MAX_PAGES: usize = 1000;
/// Largest page the server gives (`limit` is 1 to 1000).
const MAX_PAGE_SIZE: usize = 1000;

/// `nodes list [--parent ID] [--type T] [--limit N]`: follows the
/// server's `Link: <...>; rel="next"` pages until the last one (or until
/// N nodes), at most [`MAX_PAGES`] pages.
pub async fn list(
    client: &Client,
    parent: Option<&str>,
    node_type: Option<&str>,
    limit: Option<usize>,
    format: Format,
) -> Result<String, Failure> {
    let mut query = Vec::new();
    if let Some(p) = parent {
        query.push(format!("parent={}", encode(p)));
    }
    if let Some(t) = node_type {
        query.push(format!("type={}", encode(t)));
    }
    if let Some(n) = limit {
        query.push(format!("limit={}", n.clamp(1, MAX_PAGE_SIZE)));
    }
    let mut path = "/api/nodes".to_owned();
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        let answer = client.call(Method::GET, &path, None).await?;
        let Value::Array(page) = body_json(&answer)? else {
            return Err(Failure::Server(
                "the server's node list is not a JSON array; is this a Krill server?".into(),
            ));
        };
        items.extend(page);
        if let Some(n) = limit {
            if items.len() >= n {
                items.truncate(n);
                break;
            }
        }
        let Some(next) = answer.next else { break };
        // Only a path on this server's node list is followed: krillc
        // sends its key nowhere else.
        if !next.starts_with("/api/nodes?") || next == path {
            return Err(Failure::Server(format!(
                "the server's next-page link `{next}` is not a further page of /api/nodes; \
                 is this a Krill server?"
            )));
        }
        if pages >= MAX_PAGES {
            return Err(Failure::Server(format!(
                "the node list goes on after {MAX_PAGES} pages ({} nodes so far); narrow it \
                 with --parent or --type, or take the first N with --limit N",
                items.len()
            )));
        }
        path = next;
    }
    if format == Format::Json {
        return Ok(output::json(&Value::Array(items)));
    }
    if items.is_empty() {
        return Ok("no nodes\n".into());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|n| {
            ["id", "type", "name", "parent", "updated"]
                .iter()
                .map(|f| output::cell(n.get(*f)))
                .collect()
        })
        .collect();
    Ok(output::table(
        &["ID", "TYPE", "NAME", "PARENT", "UPDATED"],
        &rows,
    ))
}

fn show(node: &Value, format: Format) -> String {
    match format {
        Format::Json => output::json(node),
        Format::Human => output::fields(node, FIELD_ORDER),
    }
}

/// `nodes get ID`.
pub async fn get(client: &Client, id: &str, format: Format) -> Result<String, Failure> {
    let answer = client.call(Method::GET, &node_path(id), None).await?;
    Ok(show(&body_json(&answer)?, format))
}

/// `nodes create [--id ID] FIELDS`: POST; the server makes an id when
/// none is given.
pub async fn create(
    client: &Client,
    id: Option<&str>,
    fields: &NodeFields,
    format: Format,
) -> Result<String, Failure> {
    let mut node = fields.body()?.unwrap_or_default();
    fields.apply(&mut node)?;
    if let Some(id) = id {
        node.insert("id".into(), Value::String(id.to_owned()));
    }
    if fields.body.is_none() && !node.contains_key("type") {
        return Err(Failure::Usage(
            "a node needs a type: pass --type, e.g. --type KrillApp.DataPoint".into(),
        ));
    }
    let answer = client
        .call(Method::POST, "/api/nodes", Some(&Value::Object(node)))
        .await?;
    Ok(show(&body_json(&answer)?, format))
}

/// `nodes update ID FIELDS`: with `--body`, PUT that node as given;
/// otherwise fetch the node, change the named fields, and PUT it back
/// (the server sets `created` and `updated` itself).
pub async fn update(
    client: &Client,
    id: &str,
    fields: &NodeFields,
    format: Format,
) -> Result<String, Failure> {
    let mut node = match fields.body()? {
        Some(node) => node,
        None => {
            let current = body_json(&client.call(Method::GET, &node_path(id), None).await?)?;
            let Value::Object(mut node) = current else {
                return Err(Failure::Server(format!(
                    "the server's node `{id}` is not a JSON object"
                )));
            };
            node.remove("created");
            node.remove("updated");
            fields.apply(&mut node)?;
            node
        }
    };
    node.insert("id".into(), Value::String(id.to_owned()));
    let answer = client
        .call(Method::PUT, &node_path(id), Some(&Value::Object(node)))
        .await?;
    Ok(show(&body_json(&answer)?, format))
}

/// `nodes delete ID`: removes the node and its whole subtree.
pub async fn delete(client: &Client, id: &str, format: Format) -> Result<String, Failure> {
    client.call(Method::DELETE, &node_path(id), None).await?;
    Ok(match format {
        Format::Json => output::json(&serde_json::json!({ "deleted": id })),
        Format::Human => format!("deleted node {id} and its subtree\n"),
    })
}
