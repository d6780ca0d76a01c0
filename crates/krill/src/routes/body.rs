//! Reading request bodies, paths and queries, with every refusal in our
//! JSON error format instead of axum's plain-text rejections.
//!
//! A JSON body must:
//! - be sent with `Content-Type: application/json` (a `charset` parameter,
//!   if any, must be `utf-8`), else 415 `unsupported_media_type`;
//! - be at most the body limit (`limits.max_body_bytes`, default
//!   [`MAX_BODY_BYTES`]), else 413 `payload_too_large` (checked on
//!   `Content-Length` first, then while reading, so a lying or absent length
//!   does not help);
//! - be one well-formed JSON value, else 400 `malformed_json`;
//! - fit the shape the route expects, else 400 `invalid_field`, naming the
//!   field (`meta.x`, `auth_throttle.max_failures`) and what was wrong.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::ApiError;

/// Largest request body accepted: 256 KiB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long a whole request body may take to arrive, by default.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A JSON request body sent as `application/json`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        read_json(request, &["application/json"])
            .await
            .map(JsonBody)
    }
}

/// A JSON merge patch body, sent as `application/merge-patch+json` or
/// `application/json`.
#[derive(Debug)]
pub struct MergePatch<T>(pub T);

impl<S, T> FromRequest<S> for MergePatch<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        read_json(
            request,
            &["application/json", "application/merge-patch+json"],
        )
        .await
        .map(MergePatch)
    }
}

/// Checks the content type and size, then parses the body as `T`.
pub async fn read_json<T: DeserializeOwned>(
    request: Request,
    accepted: &[&str],
) -> Result<T, ApiError> {
    check_content_type(request.headers(), accepted)?;
    let (limit, timeout) = request
        .extensions()
        .get::<super::BodyLimit>()
        .map_or((MAX_BODY_BYTES, BODY_READ_TIMEOUT), |l| {
            (l.max_bytes, l.timeout)
        });
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let reading = read_limited(request.into_body(), limit);
    let bytes = tokio::time::timeout(timeout, reading).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} seconds; send it at once",
                timeout.as_secs()
            ),
        )
    })??;
    parse_json(&bytes)
}

/// Parses `bytes` as `T`: first as JSON (else `malformed_json`), then as
/// the shape `T` wants (else `invalid_field`, naming the field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not well-formed JSON: {e}"),
        )
    })?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            format!("the body does not have the expected shape: {inner}")
        } else {
            format!("field `{path}`: {inner}")
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message)
    })
}

fn check_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let wanted = accepted.join(" or ");
    let refuse = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("{what}; send the body as JSON with `Content-Type: {wanted}`"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(refuse("the request has no Content-Type"));
    };
    let Ok(value) = value.to_str() else {
        return Err(refuse("the Content-Type is not readable text"));
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !accepted.iter().any(|a| a.eq_ignore_ascii_case(essence)) {
        return Err(refuse("the Content-Type is not JSON"));
    }
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
            return Err(refuse("the body must be UTF-8"));
        }
    }
    Ok(())
}

async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            "the request body could not be read to its end",
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

/// Maps a path extraction failure (e.g. invalid percent-encoding) to JSON.
pub fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        format!("the path could not be read: {}", rejection.body_text()),
    )
}

/// Maps a query-string failure (unknown or repeated parameter) to JSON.
pub fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!(
            "the query string could not be read: {}",
            rejection.body_text()
        ),
    )
}
