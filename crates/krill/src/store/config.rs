//! The runtime settings ([`Config`]) in the store: one row of the
//! `settings` table, named `config`, holding the whole document as JSON.
//! No row means every default.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use crate::config::{Config, ConfigError};

const ROW: &str = "config";

/// The stored settings, or the defaults when none were ever changed.
///
/// A stored document that no longer reads (a newer version wrote it) is an
/// error, reported as a conversion failure naming the field.
pub fn load(conn: &Connection) -> rusqlite::Result<Config> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT value FROM settings WHERE name = ?1")?
        .query_row([ROW], |r| r.get(0))
        .optional()?;
    let Some(stored) = stored else {
        return Ok(Config::default());
    };
    let invalid = |e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e)
    };
    let value: Value = serde_json::from_str(&stored).map_err(|e| invalid(Box::new(e)))?;
    Config::from_value(value).map_err(|e| invalid(Box::new(e)))
}

/// Applies a merge patch and stores the result, in one transaction.
/// `on_commit` runs after the commit, still under the store's lock, so
/// whoever mirrors the settings sees changes in commit order.
pub fn patch(
    conn: &mut Connection,
    patch: &Value,
    on_commit: impl FnOnce(&Config),
) -> rusqlite::Result<Result<Config, ConfigError>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = load(&tx)?;
    let config = match current.patched(patch) {
        Ok(config) => config,
        Err(e) => return Ok(Err(e)),
    };
    let json = serde_json::to_string(&config)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(
        "INSERT INTO settings (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    )?
    .execute([ROW, json.as_str()])?;
    tx.commit()?;
    on_commit(&config);
    Ok(Ok(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use serde_json::json;

    #[test]
    fn settings_survive_a_reopen_and_refused_patches_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.call_blocking(|c| load(c)).unwrap(), Config::default());
        let changed = store
            .call_blocking(|c| patch(c, &json!({"display_name": "Barn"}), |_| {}))
            .unwrap()
            .unwrap();
        assert_eq!(changed.display_name, "Barn");
        let refused = store
            .call_blocking(|c| patch(c, &json!({"display_name": "X", "nope": 1}), |_| {}))
            .unwrap();
        assert!(refused.is_err());
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.call_blocking(|c| load(c)).unwrap().display_name,
            "Barn"
        );
    }
}
