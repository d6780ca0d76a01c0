//! Where things live and how the server is configured.
//!
//! Each setting has one definition here. Precedence, highest first:
//! command-line flag, environment variable (both resolved by clap in
//! `cli`), `ETC_DIR/krill.toml`, then the built-in default.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default configuration directory.
pub const DEFAULT_ETC_DIR: &str = "/etc/krill";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/krill";
/// Default listen address: every IPv6 and (dual-stack) IPv4 address.
pub const DEFAULT_LISTEN: &str = "[::]:8442";

/// The most we read of `krill.toml`.
const SETTINGS_READ_LIMIT: usize = 1024 * 1024;

/// The file layout under the configuration directory (SPEC §3).
#[derive(Debug, Clone)]
pub struct EtcLayout {
    pub root: PathBuf,
}

impl EtcLayout {
    pub fn new(root: impl Into<PathBuf>) -> EtcLayout {
        EtcLayout { root: root.into() }
    }

    pub fn settings_file(&self) -> PathBuf {
        self.root.join("krill.toml")
    }

    pub fn credentials_dir(&self) -> PathBuf {
        self.root.join("credentials")
    }

    pub fn key_file(&self) -> PathBuf {
        self.credentials_dir().join("api_key")
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.root.join("certs")
    }

    pub fn cert_file(&self) -> PathBuf {
        self.certs_dir().join("krill.crt")
    }

    pub fn cert_key_file(&self) -> PathBuf {
        self.certs_dir().join("krill.key")
    }

    pub fn pfx_file(&self) -> PathBuf {
        self.certs_dir().join("krill.pfx")
    }

    pub fn pfx_password_file(&self) -> PathBuf {
        self.certs_dir().join(".pfx_password")
    }
}

/// The contents of `krill.toml`. Every field is optional; unknown fields are
/// refused so a typo is reported rather than silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    /// Address and port to listen on.
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS (default). `false` serves plain HTTP and warns at start.
    pub tls: Option<bool>,
    /// Where the node store lives.
    pub data_dir: Option<PathBuf>,
}

/// A `krill.toml` that exists but cannot be used.
#[derive(Debug)]
pub struct SettingsError {
    pub path: PathBuf,
    pub detail: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the settings file {} is not usable: {}; fix or remove it (every setting \
             has a default)",
            self.path.display(),
            self.detail
        )
    }
}

impl std::error::Error for SettingsError {}

impl SettingsFile {
    /// Reads `krill.toml` from the layout; a missing file means defaults.
    pub fn load(layout: &EtcLayout) -> Result<SettingsFile, SettingsError> {
        let path = layout.settings_file();
        let error = |detail: String| SettingsError {
            path: path.clone(),
            detail,
        };
        // Read like the key file: a FIFO or device here must not block.
        let bytes = match crate::fsutil::read_small_file(&path, SETTINGS_READ_LIMIT) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SettingsFile::default()),
            Err(e) => return Err(error(e.to_string())),
        };
        let text = String::from_utf8(bytes).map_err(|_| error("it is not UTF-8 text".into()))?;
        let file: SettingsFile = toml::from_str(&text)
            .map_err(|e| error(e.to_string().trim_end().replace('\n', " ")))?;
        if let Some(dir) = &file.data_dir {
            if !dir.is_absolute() {
                return Err(error(format!(
                    "data_dir = {dir:?} is not an absolute path (write it as /var/lib/krill, \
                     not relative to wherever the server happens to start)"
                )));
            }
        }
        Ok(file)
    }
}

/// Picks the first of flag/env (already merged by clap), file, default.
pub fn resolve_data_dir(cli: Option<&Path>, file: &SettingsFile) -> PathBuf {
    cli.map(Path::to_owned)
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_settings_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path());
        std::fs::write(layout.settings_file(), "lisen = \"[::]:1\"\n").unwrap();
        let err = SettingsFile::load(&layout).unwrap_err().to_string();
        assert!(err.contains("krill.toml"), "{err}");
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn data_dir_in_the_file_must_be_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path());
        for value in ["\"\"", "\"data\""] {
            std::fs::write(layout.settings_file(), format!("data_dir = {value}\n")).unwrap();
            let err = SettingsFile::load(&layout).unwrap_err().to_string();
            assert!(err.contains("absolute"), "{err}");
        }
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path());
        std::fs::write(layout.settings_file(), "tls = true\nlisten = [\n").unwrap();
        let err = SettingsFile::load(&layout).unwrap_err().to_string();
        assert!(err.contains("line 2") || err.contains("2:"), "{err}");
    }

    #[test]
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = SettingsFile::load(&EtcLayout::new(dir.path())).unwrap();
        assert!(file.listen.is_none());
        assert_eq!(
            resolve_data_dir(None, &file),
            PathBuf::from(DEFAULT_DATA_DIR)
        );
    }
}
