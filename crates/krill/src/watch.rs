//! Watching the key file: a running server picks up a changed key without a
//! signal, typically within [`POLL_INTERVAL`] (a quarter second).
//!
//! This polls instead of using inotify. Every interval it takes the file's
//! status (device, inode, size, mode, owner, change and modification times
//! to the nanosecond) and a SHA-256 digest of its bytes, and acts when
//! either differs from the last look. Polling needs no extra dependency,
//! works on every file system (inotify misses changes on network and some
//! FUSE file systems), sees a file renamed over the old one as well as one
//! rewritten in place, and a digest catches a rewrite that keeps size and
//! time stamps. The cost is one `stat` and one read of a 37-byte file four
//! times a second.
//!
//! What a changed file leads to:
//! - a valid key different from the current one: the key is replaced and
//!   `API key reloaded` is logged at INFO;
//! - a valid key equal to the current one (a `chmod`, a rewrite with the
//!   same key): nothing but exposure warnings, if any;
//! - missing, unreadable or invalid (as in the middle of the reference
//!   document's `dd` + `tee` procedure, which leaves random bytes and then
//!   an empty file for an instant): the current key stays and an ERROR
//!   naming the file is logged, once per distinct state. The server never
//!   falls back to accepting anything or nothing.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::key::file::{self as key_file, KeyFileError};
use crate::routes::AppState;

/// How often the key file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// What one look at the key file saw. Two looks that compare equal mean
/// nothing changed worth acting on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Look {
    status: Option<Status>,
    /// SHA-256 of the bytes, or a description of why they could not be read.
    content: Result<[u8; 32], String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Status {
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// A look plus what the key file held at that moment.
struct Observation {
    look: Look,
    key: Result<crate::key::ApiKey, KeyFileError>,
}

fn observe(path: &Path) -> Observation {
    // Status first: if the file changes between the two, the next status
    // differs from this one and the file is looked at again.
    let status = fs::metadata(path).ok().map(|m| Status {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    });
    let (content, key) = match key_file::read_raw(path) {
        Ok(raw) => {
            let digest = ring::digest::digest(&ring::digest::SHA256, &raw);
            let mut out = [0u8; 32];
            out.copy_from_slice(digest.as_ref());
            (Ok(out), key_file::parse(path, &raw))
        }
        Err(e) => (Err(format!("{:?}", e.kind)), Err(e)),
    };
    Observation {
        look: Look { status, content },
        key,
    }
}

/// Starts watching the key file of `state`'s server. The task runs until
/// aborted (the server aborts it when it stops).
pub fn spawn(state: AppState, path: PathBuf) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<Look> = None;
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let watched = path.clone();
            let Ok(seen) = tokio::task::spawn_blocking(move || observe(&watched)).await else {
                continue;
            };
            if last.as_ref() == Some(&seen.look) {
                continue;
            }
            // The first look only establishes the baseline, unless the file
            // already holds another key than the one loaded at start.
            let first = last.is_none();
            last = Some(seen.look);
            apply(&state, &path, seen.key, first);
        }
    })
}

fn apply(
    state: &AppState,
    path: &Path,
    key: Result<crate::key::ApiKey, KeyFileError>,
    first: bool,
) {
    match key {
        Ok(key) if state.key.current().matches(key.expose().as_bytes()) => {
            if !first {
                tracing::debug!(file = %path.display(), "key file changed; the key is the same");
                for warning in key_file::exposure_warnings(path) {
                    tracing::warn!("{warning}");
                }
            }
        }
        Ok(key) => crate::reload::install_key(state, path, key, "file change"),
        Err(e) if first => {
            tracing::error!("keeping the current API key: {e}");
        }
        Err(e) => {
            crate::metrics::Metrics::bump(&state.metrics.key_reload_failures);
            tracing::error!(
                "the key file changed but cannot be used; keeping the current API key: {e}"
            );
        }
    }
}
