//! Why a `krillc` command failed, and the exit status scripts can rely on.
//!
//! | status | meaning                                                        |
//! |--------|----------------------------------------------------------------|
//! | 0      | success                                                        |
//! | 1      | a local problem: settings, key or pin file; trust declined     |
//! | 2      | the command line is wrong (clap's usage errors)                |
//! | 3      | the server could not be reached                                |
//! | 4      | TLS: no pinned certificate, or the server presents another one |
//! | 5      | the server refused the API key (401), or no key was given      |
//! | 6      | not found (404)                                                |
//! | 7      | the server refused the request as invalid (other 4xx)          |
//! | 8      | the server failed (5xx) or answered something unreadable       |

use std::fmt;
use std::process::ExitCode;

/// A failed command: a category (the exit status) and the sentence(s)
/// printed on stderr.
#[derive(Debug)]
pub enum Failure {
    Local(String),
    Usage(String),
    Connect(String),
    Trust(String),
    Unauthorized(String),
    NotFound(String),
    Rejected(String),
    Server(String),
}

impl Failure {
    /// The process exit status for this failure (see the module table).
    pub fn exit_status(&self) -> u8 {
        match self {
            Failure::Local(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Connect(_) => 3,
            Failure::Trust(_) => 4,
            Failure::Unauthorized(_) => 5,
            Failure::NotFound(_) => 6,
            Failure::Rejected(_) => 7,
            Failure::Server(_) => 8,
        }
    }

    /// The exit code to return from `main`.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }

    fn text(&self) -> &str {
        match self {
            Failure::Local(t)
            | Failure::Usage(t)
            | Failure::Connect(t)
            | Failure::Trust(t)
            | Failure::Unauthorized(t)
            | Failure::NotFound(t)
            | Failure::Rejected(t)
            | Failure::Server(t) => t,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_its_own_status() {
        let all = [
            Failure::Local(String::new()),
            Failure::Usage(String::new()),
            Failure::Connect(String::new()),
            Failure::Trust(String::new()),
            Failure::Unauthorized(String::new()),
            Failure::NotFound(String::new()),
            Failure::Rejected(String::new()),
            Failure::Server(String::new()),
        ];
        let mut seen: Vec<u8> = all.iter().map(Failure::exit_status).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
