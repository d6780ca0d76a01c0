//! The node store: one SQLite database, `DATA_DIR/krill.db`.
//!
//! SQLite (bundled, so nothing to install) in WAL mode with
//! `synchronous = FULL`: a transaction is on disk when `COMMIT` returns, so a
//! 2xx answer to a write survives a crash of the process or the machine.
//! All access goes through one connection behind a mutex; callers on the
//! async runtime use [`Store::call`], which runs the work on the blocking
//! pool.
//!
//! [`nodes`] holds the node queries and the tree rules (parents exist, no
//! cycles, subtree deletion); [`config`] holds the server's runtime
//! settings (`GET`/`PATCH /api/config`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::slot::lock;

pub mod cache;
pub mod config;
pub mod nodes;

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "krill.db";

/// The schema, applied in order; `PRAGMA user_version` records how many
/// steps a database has seen.
const MIGRATIONS: &[&str] = &["CREATE TABLE nodes (
        id      TEXT PRIMARY KEY NOT NULL,
        type    TEXT NOT NULL,
        name    TEXT NOT NULL,
        parent  TEXT REFERENCES nodes(id),
        meta    TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX nodes_parent ON nodes(parent, id);
    CREATE INDEX nodes_type ON nodes(type, id);
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );"];

/// Everything a client stores is a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub name: String,
    pub parent: Option<String>,
    pub meta: serde_json::Value,
    pub created: String,
    pub updated: String,
}

/// A store operation failed.
#[derive(Debug)]
pub struct StoreError {
    pub path: PathBuf,
    /// `None` when the worker thread running the operation panicked.
    pub source: Option<rusqlite::Error>,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let detail = match &self.source {
            Some(e) => e.to_string(),
            None => "the worker thread stopped unexpectedly".to_owned(),
        };
        let dir_missing = self.path.parent().is_some_and(|dir| !dir.exists());
        let code = match &self.source {
            Some(rusqlite::Error::SqliteFailure(e, _)) => Some(e.code),
            _ => None,
        };
        if dir_missing {
            write!(
                f,
                "the node store {path} cannot be opened: its data directory does not \
                 exist; create it with `krill init` (or point --data-dir at the right one)"
            )
        } else if matches!(
            code,
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        ) {
            write!(
                f,
                "the node store {path} is damaged or not a Krill database ({detail}); \
                 restore it from a backup, or move it away to start with an empty store"
            )
        } else {
            write!(
                f,
                "the node store {path} failed: {detail}; check that the data directory is \
                 writable by the krill user and the disk is not full"
            )
        }
    }
}

impl std::error::Error for StoreError {}

/// A handle to the store, cheap to clone.
///
/// One connection writes; a few read-only connections read, in parallel
/// with each other and with a write (WAL lets readers see the last commit
/// while a transaction is open). Callers wait for a free connection on an
/// async semaphore *before* taking a blocking thread, so a burst of
/// requests queues as cheap tasks instead of piling threads onto a lock.
#[derive(Clone)]
pub struct Store {
    path: Arc<PathBuf>,
    writer: Arc<Mutex<Connection>>,
    writer_turn: Arc<Semaphore>,
    readers: Arc<Vec<Mutex<Connection>>>,
    reader_turns: Arc<Semaphore>,
    /// Bumped after every use of the writing connection (see
    /// [`cache`]).
    generation: Arc<AtomicU64>,
    /// Serialized listing pages, valid for one generation.
    pub pages: Arc<cache::PageCache>,
}

/// Read-only connections kept open.
const READERS: usize = 2;

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_FILE);
        let error = |source| StoreError {
            path: path.clone(),
            source: Some(source),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(error)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(error)?;
        migrate(&mut conn).map_err(error)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(error)?;
            reader
                .execute_batch("PRAGMA busy_timeout = 5000;")
                .map_err(error)?;
            readers.push(Mutex::new(reader));
        }
        Ok(Store {
            path: Arc::new(path),
            writer: Arc::new(Mutex::new(conn)),
            writer_turn: Arc::new(Semaphore::new(1)),
            readers: Arc::new(readers),
            reader_turns: Arc::new(Semaphore::new(READERS)),
            generation: Arc::new(AtomicU64::new(0)),
            pages: Arc::new(cache::PageCache::default()),
        })
    }

    /// Runs a read-only `work` on one of the read connections, on the
    /// blocking thread pool. Sees every write acknowledged before it began.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let Ok(_turn) = self.reader_turns.acquire().await else {
            return Err(self.failed(None));
        };
        let store = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // A permit guarantees a free reader; find it.
            let conn = store
                .readers
                .iter()
                .find_map(|r| r.try_lock().ok())
                .unwrap_or_else(|| lock(&store.readers[0]));
            work(&conn).map_err(|e| store.failed(Some(e)))
        })
        .await;
        joined.unwrap_or_else(|_| Err(self.failed(None)))
    }

    fn failed(&self, source: Option<rusqlite::Error>) -> StoreError {
        StoreError {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Runs `work` with the writing connection on the blocking thread pool.
    pub async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let Ok(_turn) = self.writer_turn.acquire().await else {
            return Err(self.failed(None));
        };
        let store = self.clone();
        let joined = tokio::task::spawn_blocking(move || store.call_blocking(work)).await;
        joined.unwrap_or_else(|_| Err(self.failed(None)))
    }

    /// Runs `work` with the writing connection on the current thread.
    pub fn call_blocking<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        let result = work(&mut conn).map_err(|source| self.failed(Some(source)));
        // Whatever it did is committed (or rolled back) by now: pages read
        // before this point are stale.
        self.generation.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// The current generation: read it *before* a query whose result is
    /// cached.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// Builds a [`Node`] from a row selected as
/// `id, type, name, parent, meta, created, updated`.
pub fn node_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    let meta: String = row.get(4)?;
    let meta = serde_json::from_str(&meta).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Node {
        id: row.get(0)?,
        node_type: row.get(1)?,
        name: row.get(2)?,
        parent: row.get(3)?,
        meta,
        created: row.get(5)?,
        updated: row.get(6)?,
    })
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (step, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", step + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_store_is_empty_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let all = nodes::Listing::default();
        let list = move |s: &Store| {
            let all = all.clone();
            s.call_blocking(move |c| nodes::list(c, &all)).unwrap()
        };
        assert!(list(&store).is_empty());
        store
            .call(|c| {
                c.execute(
                    "INSERT INTO nodes VALUES ('a','KrillApp.Server','n',NULL,'{}','t','t')",
                    [],
                )
            })
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let nodes = list(&store);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].node_type, "KrillApp.Server");
    }
}
