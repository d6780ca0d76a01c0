//! `/api/nodes`: the node API (SPEC §7).
//!
//! This module checks what a client sends (ids, types, names, `meta`) and
//! maps the store's answers to HTTP; the tree rules themselves (parent
//! exists, no cycle, subtree deletion) are in [`crate::store::nodes`].
//! The rules are documented for users in `docs/api.md`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::body::{path_rejection, query_rejection, JsonBody};
use super::{ApiError, AppState};
use crate::store::cache::Page;
use crate::store::nodes::{self, Listing, NodeFields, ParentFilter, Refusal};
use crate::store::Node;

/// Longest client-supplied id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest type, in characters.
pub const MAX_TYPE_CHARS: usize = 128;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Deepest `meta` nesting: the object itself is level 1.
pub const MAX_META_DEPTH: usize = 32;
/// Largest `meta`, serialized compactly, in bytes.
pub const MAX_META_BYTES: usize = 64 * 1024;
/// Page size when `?limit=` is absent.
pub const DEFAULT_PAGE: usize = 100;
/// Largest `?limit=`.
pub const MAX_PAGE: usize = 1000;
/// What every node type starts with.
pub const TYPE_ROOT: &str = "KrillApp";

/// A node as a client sends it (`POST` and `PUT`). `created` and `updated`
/// are the server's: accepted, so a node read with `GET` can be sent back
/// as is, and ignored. Any other field is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub node_type: String,
    pub name: String,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub created: Option<IgnoredAny>,
    #[serde(default)]
    pub updated: Option<IgnoredAny>,
}

/// The query of `GET /api/nodes`. Unknown parameters are refused, so a
/// misspelt filter does not silently list everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub parent: Option<String>,
    #[serde(rename = "type")]
    pub node_type: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
}

/// `GET /api/nodes`: one page of nodes, ordered by id; a `Link` header
/// with `rel="next"` points at the next page when there is one.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(query_rejection)?;
    let listing = listing(&query)?;
    let key = raw.unwrap_or_default();
    let generation = state.store.generation();
    if let Some(page) = state.store.pages.get(&key, generation) {
        return Ok(page_response(page));
    }
    let page = listing.limit;
    // One more than asked says whether a next page exists.
    let mut probe = listing.clone();
    probe.limit = page + 1;
    let mut found = state.store.read(move |c| nodes::list(c, &probe)).await?;
    let more = found.len() > page;
    found.truncate(page);
    let body = serde_json::to_vec(&found).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the page could not be written as JSON: {e}"),
        )
    })?;
    let link = match (more, found.last()) {
        (true, Some(last)) => Some(next_link(&listing, &last.id)),
        _ => None,
    };
    let page = Page {
        body: body.into(),
        link,
    };
    state.store.pages.put(&key, generation, page.clone());
    Ok(page_response(page))
}

fn page_response(page: Page) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        page.body,
    )
        .into_response();
    if let Some(value) = page.link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

/// `POST /api/nodes`: creates a node; 201 with `Location`.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<NodeInput>,
) -> Result<Response, ApiError> {
    let (id, fields) = checked(input)?;
    let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let now = now();
    let node = state
        .store
        .call(move |c| nodes::insert(c, &id, &fields, &now))
        .await?
        .map_err(refused)?;
    Ok(created(&node))
}

/// `GET /api/nodes/{id}`.
pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Node>, ApiError> {
    let id = path_id(id)?;
    let found = {
        let id = id.clone();
        state.store.read(move |c| nodes::get(c, &id)).await?
    };
    found
        .map(Json)
        .ok_or_else(|| refused(Refusal::NotFound(id)))
}

/// `PUT /api/nodes/{id}`: replaces the node (200) or creates it (201).
pub async fn put(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(input): JsonBody<NodeInput>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let (body_id, fields) = checked(input)?;
    if body_id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(ApiError::bad_request(
            "id_mismatch",
            "the `id` in the body differs from the id in the path; leave it out or make them equal",
        ));
    }
    let now = now();
    let (node, was_created) = state
        .store
        .call(move |c| nodes::put(c, &id, &fields, &now))
        .await?
        .map_err(refused)?;
    Ok(if was_created {
        created(&node)
    } else {
        Json(node).into_response()
    })
}

/// `DELETE /api/nodes/{id}`: the node and its whole subtree; 204.
pub async fn delete(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    state
        .store
        .call(move |c| nodes::delete_subtree(c, &id))
        .await?
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// True when `id` is 1 to 128 characters of `[A-Za-z0-9._:-]`, and not
/// `.` or `..` (which URL handling would eat).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// True when `node_type` is `KrillApp` followed by one or more segments
/// `.Name`, each a letter then letters, digits or `_`; at most 128
/// characters. `KrillApp.DataPoint` and `KrillApp.Server.Pin` are types;
/// `KrillApp`, `KrillApp.`, `krillapp.X` and `KrillApp.9x` are not.
pub fn valid_type(node_type: &str) -> bool {
    if node_type.len() > MAX_TYPE_CHARS {
        return false;
    }
    let mut segments = node_type.split('.');
    if segments.next() != Some(TYPE_ROOT) {
        return false;
    }
    let mut count = 0;
    for segment in segments {
        let mut bytes = segment.bytes();
        let starts_with_letter = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
        if !starts_with_letter || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return false;
        }
        count += 1;
    }
    count > 0
}

/// Validates a node from a client: its id if it has one, and the fields
/// to store.
fn checked(input: NodeInput) -> Result<(Option<String>, NodeFields), ApiError> {
    let bad = |label: &'static str, message: String| Err(ApiError::bad_request(label, message));
    if let Some(id) = &input.id {
        if !valid_id(id) {
            return bad("invalid_id", id_rule("`id`"));
        }
    }
    if !valid_type(&input.node_type) {
        return bad(
            "invalid_type",
            format!(
                "field `type`: must be `{TYPE_ROOT}` followed by one or more `.Name` segments \
                 (a letter, then letters, digits or `_`), at most {MAX_TYPE_CHARS} characters, \
                 e.g. `KrillApp.DataPoint`"
            ),
        );
    }
    let name_chars = input.name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS || input.name.chars().any(char::is_control) {
        return bad(
            "invalid_name",
            format!(
                "field `name`: must be 1 to {MAX_NAME_CHARS} characters without control characters"
            ),
        );
    }
    if let Some(parent) = &input.parent {
        if !valid_id(parent) {
            return bad("invalid_parent", id_rule("`parent`"));
        }
    }
    let meta = checked_meta(input.meta)?;
    Ok((
        input.id,
        NodeFields {
            node_type: input.node_type,
            name: input.name,
            parent: input.parent,
            meta,
        },
    ))
}

/// `meta` must be a JSON object (absent or null means `{}`), at most
/// [`MAX_META_DEPTH`] levels deep and [`MAX_META_BYTES`] serialized.
fn checked_meta(meta: Option<Value>) -> Result<String, ApiError> {
    let meta = match meta {
        None => return Ok("{}".to_owned()),
        Some(meta @ Value::Object(_)) => meta,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_meta",
                "field `meta`: must be a JSON object",
            ))
        }
    };
    if depth(&meta) > MAX_META_DEPTH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "meta_too_deep",
            format!(
                "field `meta`: nests deeper than {MAX_META_DEPTH} levels of objects and arrays"
            ),
        ));
    }
    let serialized = meta.to_string();
    if serialized.len() > MAX_META_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "meta_too_large",
            format!("field `meta`: is larger than {MAX_META_BYTES} bytes as compact JSON"),
        ));
    }
    Ok(serialized)
}

/// Nesting depth of objects and arrays; a scalar is 0. serde_json refuses
/// input nested beyond 128 levels, which bounds this recursion.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn id_rule(what: &str) -> String {
    format!(
        "{what} must be 1 to {MAX_ID_CHARS} characters of letters, digits, `.`, `_`, `:` and \
         `-` (and not `.` or `..`)"
    )
}

fn path_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id.map_err(path_rejection)?;
    if valid_id(&id) {
        Ok(id)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            id_rule("the id in the path"),
        ))
    }
}

fn listing(query: &ListQuery) -> Result<Listing, ApiError> {
    let bad = |message: String| Err(ApiError::bad_request("invalid_query", message));
    let parent = match query.parent.as_deref() {
        None => None,
        Some("") => Some(ParentFilter::Root),
        Some(parent) if valid_id(parent) => Some(ParentFilter::Of(parent.to_owned())),
        Some(_) => return bad(id_rule("`parent`")),
    };
    if let Some(node_type) = &query.node_type {
        if !valid_type(node_type) {
            return bad("`type` must be a node type such as `KrillApp.DataPoint`".to_owned());
        }
    }
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(limit) => match limit.parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            _ => {
                return bad(format!(
                    "`limit` must be a whole number from 1 to {MAX_PAGE}"
                ))
            }
        },
    };
    if query.after.as_ref().is_some_and(|after| !valid_id(after)) {
        return bad(id_rule("`after` (the last id of the previous page)"));
    }
    Ok(Listing {
        parent,
        node_type: query.node_type.clone(),
        after: query.after.clone(),
        limit,
    })
}

/// The next page's URL. Ids and types are made of characters that need
/// no escaping in a query string.
fn next_link(listing: &Listing, last_id: &str) -> String {
    let mut url = format!("/api/nodes?limit={}&after={last_id}", listing.limit);
    match &listing.parent {
        Some(ParentFilter::Root) => url.push_str("&parent="),
        Some(ParentFilter::Of(parent)) => url.push_str(&format!("&parent={parent}")),
        None => {}
    }
    if let Some(node_type) = &listing.node_type {
        url.push_str(&format!("&type={node_type}"));
    }
    format!("<{url}>; rel=\"next\"")
}

fn created(node: &Node) -> Response {
    let location = format!("/api/nodes/{}", node.id);
    let mut response = (StatusCode::CREATED, Json(node)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::UnknownParent(parent) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_parent",
            format!("field `parent`: no node has the id `{parent}`; create the parent first"),
        ),
        Refusal::Cycle { id, parent } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "parent_cycle",
            format!(
                "field `parent`: `{parent}` is `{id}` itself or one of its descendants, \
                 which would make a cycle"
            ),
        ),
        Refusal::IdTaken(id) => ApiError::new(
            StatusCode::CONFLICT,
            "id_taken",
            format!("a node with the id `{id}` exists; use PUT /api/nodes/{id} to replace it"),
        ),
        Refusal::NotFound(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "node_not_found",
            format!("no node has the id `{id}`"),
        ),
    }
}

/// The current time, RFC 3339 in UTC with exactly three decimals
/// (`2026-12-04T17:30:00.120Z`), so timestamps sort as strings.
fn now() -> String {
    rfc3339_millis(time::OffsetDateTime::now_utc())
}

fn rfc3339_millis(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_exactly_three_decimals() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_764_869_400_120_000_000).unwrap();
        assert_eq!(rfc3339_millis(t), "2025-12-04T17:30:00.120Z");
        let t = time::OffsetDateTime::from_unix_timestamp(1_764_869_400).unwrap();
        assert_eq!(rfc3339_millis(t), "2025-12-04T17:30:00.000Z");
        assert_eq!(now().len(), 24);
    }

    #[test]
    fn id_rule() {
        for good in ["a", "A-9", "x.y:z_w", &"a".repeat(128), "...", "a..b"] {
            assert!(valid_id(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            &"a".repeat(129),
            "a/b",
            "a b",
            "é",
            "a%2F",
            "a?b",
            "a#",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn type_rule() {
        for good in [
            "KrillApp.DataPoint",
            "KrillApp.Server.Pin",
            "KrillApp.a_1.B2",
        ] {
            assert!(valid_type(good), "{good}");
        }
        let long = format!("KrillApp.{}", "a".repeat(120));
        for bad in [
            "KrillApp",
            "KrillApp.",
            "krillapp.X",
            "KrillApp.9x",
            "KrillApp..X",
            "KrillApp.X.",
            "Other.X",
            "KrillApp.X-Y",
            "KrillApp.X Y",
            "",
            long.as_str(),
        ] {
            assert!(!valid_type(bad), "{bad}");
        }
    }

    #[test]
    fn meta_depth_counts_objects_and_arrays() {
        assert_eq!(depth(&serde_json::json!({})), 1);
        assert_eq!(depth(&serde_json::json!({"a": [1, {"b": 2}]})), 3);
    }
}
