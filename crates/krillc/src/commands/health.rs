//! `krillc health`: the public health check, over the pinned connection.

use crate::api::Client;
use crate::failure::Failure;
use crate::output;

use super::{body_json, Format};

/// Fetches `/health`.
pub async fn run(client: &Client, format: Format) -> Result<String, Failure> {
    let answer = client.public("/health").await?;
    let body = body_json(&answer)?;
    Ok(match format {
        Format::Json => output::json(&body),
        Format::Human => format!(
            "server  {}\n{}",
            client.target.url(),
            output::fields(&body, &["status", "version", "uptime_seconds"])
        ),
    })
}
