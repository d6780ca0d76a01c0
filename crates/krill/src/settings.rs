//! Where things live and how the server is configured.
//!
//! Each setting has one definition here. Precedence, highest first:
//! command-line flag, environment variable (both resolved by clap in
//! `cli`), `ETC_DIR/krill.toml`, then the built-in default.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Limits on clients (`[limits]`).
    #[serde(default)]
    pub limits: Limits,
}

/// How much a client may take: timeouts, sizes, counts (`[limits]` in
/// `krill.toml`; read at start). The defaults suit a Raspberry Pi serving a
/// household; each has a range checked at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds a client may take to finish its TLS handshake (1-300).
    pub handshake_timeout_secs: u64,
    /// Seconds a client may take to send a request's headers, and the most
    /// a new connection may stay silent before its first request (1-300).
    pub header_read_timeout_secs: u64,
    /// Seconds an HTTP/2 connection may stay idle between requests
    /// (1-3600). HTTP/1.1 connections wait for their next request at most
    /// `header_read_timeout_secs` (hyper times the whole wait for a request
    /// head), whichever is shorter.
    pub idle_timeout_secs: u64,
    /// Connections open at once; more are closed as soon as accepted
    /// (1-1000000).
    pub max_connections: usize,
    /// Connections one client address may hold at once (IPv6: one /64),
    /// so a single host cannot take every slot; trusted proxies are exempt
    /// (1-1000000).
    pub max_connections_per_address: usize,
    /// Largest request head, request line and headers, in bytes
    /// (8192-1048576).
    pub max_header_bytes: usize,
    /// Largest request body, in bytes (1024-67108864).
    pub max_body_bytes: usize,
    /// Seconds a request body may take to arrive in full (1-3600).
    pub body_read_timeout_secs: u64,
    /// Concurrent HTTP/2 streams per connection (1-10000).
    pub h2_max_concurrent_streams: u32,
    /// Client addresses the failed-key throttle remembers at most
    /// (16-1000000).
    pub max_tracked_addresses: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed. Empty: the
    /// header is ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 1024,
            max_connections_per_address: 256,
            max_header_bytes: 32 * 1024,
            max_body_bytes: 256 * 1024,
            body_read_timeout_secs: 30,
            h2_max_concurrent_streams: 128,
            max_tracked_addresses: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Limits {
    /// Checks each value is in its range; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "limits.{name} = {value} is outside {low} to {high}"
                ))
            }
        };
        check(
            "handshake_timeout_secs",
            self.handshake_timeout_secs,
            1,
            300,
        )?;
        check(
            "header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            300,
        )?;
        check("idle_timeout_secs", self.idle_timeout_secs, 1, 3600)?;
        check("max_connections", self.max_connections as u64, 1, 1_000_000)?;
        check(
            "max_connections_per_address",
            self.max_connections_per_address as u64,
            1,
            1_000_000,
        )?;
        check(
            "max_header_bytes",
            self.max_header_bytes as u64,
            8192,
            1 << 20,
        )?;
        check("max_body_bytes", self.max_body_bytes as u64, 1024, 64 << 20)?;
        check(
            "body_read_timeout_secs",
            self.body_read_timeout_secs,
            1,
            3600,
        )?;
        check(
            "h2_max_concurrent_streams",
            u64::from(self.h2_max_concurrent_streams),
            1,
            10_000,
        )?;
        check(
            "max_tracked_addresses",
            self.max_tracked_addresses as u64,
            16,
            1_000_000,
        )
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.body_read_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
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
        file.limits.validate().map_err(error)?;
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
    fn limits_have_defaults_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path());
        std::fs::write(layout.settings_file(), "[limits]\nmax_connections = 50\n").unwrap();
        let file = SettingsFile::load(&layout).unwrap();
        assert_eq!(file.limits.max_connections, 50);
        assert_eq!(file.limits.idle_timeout_secs, 60);
        std::fs::write(layout.settings_file(), "[limits]\nmax_header_bytes = 10\n").unwrap();
        let err = SettingsFile::load(&layout).unwrap_err().to_string();
        assert!(err.contains("limits.max_header_bytes"), "{err}");
        std::fs::write(layout.settings_file(), "[limits]\nidle = 3\n").unwrap();
        assert!(SettingsFile::load(&layout).is_err());
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
