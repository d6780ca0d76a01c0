//! What each `krillc` subcommand does, given a trusted [`Client`]; one
//! module per command group. Each returns the text to print on stdout.

pub mod config;
pub mod health;
pub mod nodes;
pub mod trust;

use serde_json::Value;

use crate::failure::Failure;
use crate::http::Answer;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned tables and `name value` lines.
    Human,
    /// The server's JSON, pretty-printed.
    Json,
}

/// The answer's body as JSON, or a failure naming the server.
pub fn body_json(answer: &Answer) -> Result<Value, Failure> {
    serde_json::from_slice(&answer.body).map_err(|e| {
        Failure::Server(format!(
            "the server's answer ({}) is not JSON ({e}); is this a Krill server?",
            answer.status
        ))
    })
}

/// Parses a JSON argument (`--meta`, `--body`, a `config set` value).
pub fn parse_json_arg(flag: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        Failure::Usage(format!(
            "{flag} is not valid JSON ({e}); quote it for the shell, e.g. {flag} '{{\"unit\":\"C\"}}'"
        ))
    })
}
