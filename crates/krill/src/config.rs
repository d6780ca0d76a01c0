//! The server's runtime settings: what `GET /api/config` shows and
//! `PATCH /api/config` changes, kept in the store (`store::config`).
//!
//! These are the settings a client may change over the API. Settings that
//! decide how the server starts (listen address, TLS, directories) live in
//! `krill.toml` ([`crate::settings`]) instead, and secrets are in neither.
//!
//! Each field is defined once here, with its default and its valid range.
//! A change is a JSON merge patch (RFC 7386): the fields given replace the
//! current ones, nested objects merge, and `null` puts a field back to its
//! default. The result must be a whole, valid [`Config`] or nothing
//! changes.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;

/// The runtime settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The server's name as clients show it: 1 to 128 characters, no
    /// control characters.
    pub display_name: String,
    /// How failed API-key attempts are throttled.
    pub auth_throttle: AuthThrottle,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            display_name: "Krill".to_owned(),
            auth_throttle: AuthThrottle::default(),
        }
    }
}

/// Failed-authentication throttling: after `max_failures` rejected keys
/// from one peer address within `window_seconds`, that address is refused
/// for `backoff_seconds`; each further block of the same address doubles
/// that, up to `max_backoff_seconds` (see `crate::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthThrottle {
    /// 1 to 1,000,000,000 (a huge value turns throttling off in
    /// practice, e.g. behind a proxy that limits on its own); default 10.
    pub max_failures: u32,
    /// 1 to 86,400; default 60.
    pub window_seconds: u32,
    /// 1 to 86,400; default 300.
    pub backoff_seconds: u32,
    /// `backoff_seconds` to 604,800 (a week); default 3,600.
    pub max_backoff_seconds: u32,
}

impl Default for AuthThrottle {
    fn default() -> AuthThrottle {
        AuthThrottle {
            max_failures: 10,
            window_seconds: 60,
            backoff_seconds: 300,
            max_backoff_seconds: 3600,
        }
    }
}

/// Why a patch was refused; names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `auth_throttle.max_failures`; empty
    /// for the document itself.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The settings after applying the merge patch `patch` to `self`.
    pub fn patched(&self, patch: &Value) -> Result<Config, ConfigError> {
        let Value::Object(patch) = patch else {
            return Err(ConfigError {
                field: String::new(),
                message: "the body must be a JSON object of the settings to change".to_owned(),
            });
        };
        let mut current = serde_json::to_value(self).map_err(|e| ConfigError {
            field: String::new(),
            message: e.to_string(),
        })?;
        merge(&mut current, patch);
        let config = Config::from_value(current)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads settings from JSON, naming the field at fault on error.
    pub fn from_value(value: Value) -> Result<Config, ConfigError> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            ConfigError {
                field: if field == "." { String::new() } else { field },
                message: e.into_inner().to_string(),
            }
        })
    }

    /// Checks every value is in its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.display_name;
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_DISPLAY_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ConfigError {
                field: "display_name".to_owned(),
                message: format!(
                    "must be 1 to {MAX_DISPLAY_NAME_CHARS} characters without control characters"
                ),
            });
        }
        let t = &self.auth_throttle;
        in_range(
            "auth_throttle.max_failures",
            t.max_failures,
            1,
            1_000_000_000,
        )?;
        in_range("auth_throttle.window_seconds", t.window_seconds, 1, 86_400)?;
        in_range(
            "auth_throttle.backoff_seconds",
            t.backoff_seconds,
            1,
            86_400,
        )?;
        in_range(
            "auth_throttle.max_backoff_seconds",
            t.max_backoff_seconds,
            t.backoff_seconds,
            604_800,
        )
    }
}

fn in_range(field: &str, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError {
            field: field.to_owned(),
            message: format!("must be between {min} and {max}, got {value}"),
        })
    }
}

/// RFC 7386 merge, except that `null` removes the member so the default
/// fills it again.
fn merge(target: &mut Value, patch: &Map<String, Value>) {
    let Value::Object(target) = target else {
        *target = Value::Object(patch.clone());
        return;
    };
    for (name, value) in patch {
        match value {
            Value::Null => {
                target.remove(name);
            }
            Value::Object(inner) => match target.get_mut(name) {
                Some(existing @ Value::Object(_)) => merge(existing, inner),
                _ => {
                    target.insert(name.clone(), value.clone());
                }
            },
            other => {
                target.insert(name.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn a_patch_changes_only_the_fields_given() {
        let c = Config::default()
            .patched(&json!({"auth_throttle": {"max_failures": 3}}))
            .unwrap();
        assert_eq!(c.auth_throttle.max_failures, 3);
        assert_eq!(c.auth_throttle.window_seconds, 60);
        assert_eq!(c.display_name, "Krill");
    }

    #[test]
    fn null_restores_the_default() {
        let c = Config::default()
            .patched(&json!({"display_name": "Shed", "auth_throttle": {"window_seconds": 5}}))
            .unwrap();
        let c = c
            .patched(&json!({"display_name": null, "auth_throttle": {"window_seconds": null}}))
            .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let base = Config::default();
        let e = base.patched(&json!({"colour": 1})).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = base
            .patched(&json!({"auth_throttle": {"burst": 1}}))
            .unwrap_err();
        assert!(e.to_string().contains("burst"), "{e}");
        let e = base
            .patched(&json!({"auth_throttle": {"max_failures": "ten"}}))
            .unwrap_err();
        assert_eq!(e.field, "auth_throttle.max_failures");
        let e = base.patched(&json!({"auth_throttle": 5})).unwrap_err();
        assert_eq!(e.field, "auth_throttle");
        let e = base.patched(&json!({"display_name": ""})).unwrap_err();
        assert_eq!(e.field, "display_name");
        let e = base
            .patched(&json!({"auth_throttle": {"backoff_seconds": 0}}))
            .unwrap_err();
        assert_eq!(e.field, "auth_throttle.backoff_seconds");
        assert!(base.patched(&json!([1])).is_err());
    }
}
