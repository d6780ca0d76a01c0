//! Where `krillc` keeps its files, which server it talks to and which key
//! it sends.
//!
//! The configuration directory is `--config-dir`, else `KRILLC_CONFIG_DIR`,
//! else `$XDG_CONFIG_HOME/krill`, else `~/.config/krill`. It holds
//! `profiles.toml` and the pinned certificates under `pins/`.
//!
//! Precedence for the server and the key, highest first: command-line
//! flags; the profile named with `--profile` (or `KRILL_PROFILE`); the
//! environment (`KRILL_SERVER`, `KRILL_API_KEY`); the profile named by
//! `default` in `profiles.toml`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::failure::Failure;

/// The port a Krill server listens on when the URL names none.
pub const DEFAULT_PORT: u16 = 8442;
/// Largest key file read (keys are at most 512 characters).
const KEY_FILE_LIMIT: u64 = 4096;
/// Longest key accepted (SPEC §4).
const KEY_MAX_LEN: usize = 512;

/// The configuration directory.
pub fn config_dir(flag: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("KRILLC_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("krill"));
    }
    if let Some(home) = env("HOME") {
        return Ok(PathBuf::from(home).join(".config/krill"));
    }
    Err(Failure::Local(
        "cannot find a configuration directory: HOME is not set; pass --config-dir DIR \
         or set KRILLC_CONFIG_DIR"
            .into(),
    ))
}

/// One server in `profiles.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `https://HOST:PORT` of the server.
    pub server: Option<String>,
    /// File holding the server's API key (`~/` and paths relative to the
    /// configuration directory are allowed).
    pub api_key_file: Option<PathBuf>,
}

/// The contents of `profiles.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesFile {
    /// The profile used when none is named.
    pub default: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

impl ProfilesFile {
    /// The path of the profiles file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("profiles.toml")
    }

    /// Reads the profiles file; a missing file means no profiles.
    pub fn load(dir: &Path) -> Result<ProfilesFile, Failure> {
        let path = ProfilesFile::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProfilesFile::default())
            }
            Err(e) => {
                return Err(Failure::Local(format!(
                    "cannot read {}: {e}; check its permissions",
                    path.display()
                )))
            }
        };
        toml::from_str(&text).map_err(|e| {
            Failure::Local(format!(
                "the profiles file {} is not usable: {}; fix it (see docs/client.md for \
                 its format)",
                path.display(),
                e.message()
            ))
        })
    }
}

/// The command-line values that select server and key.
#[derive(Debug)]
pub struct Selection<'a> {
    pub server: Option<&'a str>,
    pub api_key_file: Option<&'a Path>,
    pub api_key: Option<&'a str>,
    pub profile: Option<&'a str>,
    /// False for commands that send no key (`trust`, `health`): the key
    /// is then not looked up at all.
    pub want_key: bool,
}

/// Where the key came from, for messages (never the key itself).
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Flag,
    Env,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "the file {}", path.display()),
            KeySource::Flag => f.write_str("--api-key"),
            KeySource::Env => f.write_str("the KRILL_API_KEY environment variable"),
        }
    }
}

/// An API key read for sending. Never printed.
pub struct ApiKey {
    value: Zeroizing<String>,
    pub source: KeySource,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// The key's text, for the `X-API-Key` header only.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

/// What a command talks to and with which key.
#[derive(Debug)]
pub struct Resolved {
    pub server: Option<String>,
    pub key: Option<ApiKey>,
    pub config_dir: PathBuf,
}

/// Applies the precedence rules of this module.
pub fn resolve(selection: &Selection<'_>, config_dir: PathBuf) -> Result<Resolved, Failure> {
    let file = ProfilesFile::load(&config_dir)?;
    let env_profile = std::env::var("KRILL_PROFILE")
        .ok()
        .filter(|p| !p.is_empty());
    let explicit_name = selection.profile.map(str::to_owned).or(env_profile);
    let explicit = match &explicit_name {
        Some(name) => Some(file.profiles.get(name).cloned().ok_or_else(|| {
            Failure::Local(format!(
                "there is no profile `{name}` in {}; add a [profiles.{name}] section or \
                 pick one of: {}",
                ProfilesFile::path(&config_dir).display(),
                names(&file)
            ))
        })?),
        None => None,
    };
    let fallback = match (&explicit_name, &file.default) {
        (None, Some(name)) => Some(file.profiles.get(name).cloned().ok_or_else(|| {
            Failure::Local(format!(
                "{} names `{name}` as its default profile, but has no [profiles.{name}] \
                 section; add it or fix `default`",
                ProfilesFile::path(&config_dir).display()
            ))
        })?),
        _ => None,
    };
    let env_server = std::env::var("KRILL_SERVER").ok().filter(|s| !s.is_empty());

    let server = selection
        .server
        .map(str::to_owned)
        .or_else(|| explicit.as_ref().and_then(|p| p.server.clone()))
        .or(env_server)
        .or_else(|| fallback.as_ref().and_then(|p| p.server.clone()));

    let profile_key = |p: &Option<Profile>| {
        p.as_ref()
            .and_then(|p| p.api_key_file.as_deref())
            .map(|f| expand(f, &config_dir))
    };
    let key = if !selection.want_key {
        None
    } else if selection.api_key_file.is_some() && selection.api_key.is_some() {
        return Err(Failure::Usage(
            "--api-key-file and --api-key both give a key; pass only one".into(),
        ));
    } else if let Some(path) = selection.api_key_file {
        Some(read_key_file(path)?)
    } else if let Some(value) = selection.api_key {
        eprintln!(
            "krillc: warning: --api-key puts the key on the command line, where other users \
             can see it (ps, /proc) and shell history keeps it; prefer --api-key-file or \
             KRILL_API_KEY"
        );
        Some(parse_key(value.as_bytes(), KeySource::Flag)?)
    } else if let Some(path) = profile_key(&explicit) {
        Some(read_key_file(&path)?)
    } else if let Some(value) = std::env::var_os("KRILL_API_KEY").filter(|v| !v.is_empty()) {
        use std::os::unix::ffi::OsStrExt;
        Some(parse_key(value.as_bytes(), KeySource::Env)?)
    } else if let Some(path) = profile_key(&fallback) {
        Some(read_key_file(&path)?)
    } else {
        None
    };
    Ok(Resolved {
        server,
        key,
        config_dir,
    })
}

fn names(file: &ProfilesFile) -> String {
    if file.profiles.is_empty() {
        return "(none defined)".into();
    }
    file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Expands `~/` and makes a relative path relative to the config dir.
fn expand(path: &Path, config_dir: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    if path.is_relative() {
        config_dir.join(path)
    } else {
        path.to_owned()
    }
}

/// Reads a key file with the server's rules, warning when others can read
/// it. Errors name the file and the rule, never the content.
pub fn read_key_file(path: &Path) -> Result<ApiKey, Failure> {
    let fail =
        |why: String| Failure::Local(format!("cannot use the key file {}: {why}", path.display()));
    // O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
    // such a file is refused just below. Reads of a regular file ignore it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(
            "it is not a regular file (a FIFO, device or directory); save the key in a \
             plain file"
                .into(),
        ));
    }
    if meta.mode() & 0o044 != 0 {
        eprintln!(
            "krillc: warning: the key file {} can be read by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(KEY_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > KEY_FILE_LIMIT {
        return Err(fail(format!(
            "it is larger than {KEY_FILE_LIMIT} bytes, so it is not a key file"
        )));
    }
    parse_key(&bytes, KeySource::File(path.to_owned()))
}

/// The server's rules (SPEC §4): a leading byte-order mark and surrounding
/// whitespace are dropped; the rest must be 1 to 512 visible ASCII
/// characters.
pub fn parse_key(raw: &[u8], source: KeySource) -> Result<ApiKey, Failure> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = raw.iter().position(|b| !is_space(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    let key = &raw[start..end.max(start)];
    let rule = if key.is_empty() {
        Some("it is empty")
    } else if key.len() > KEY_MAX_LEN {
        Some("it is longer than 512 characters")
    } else if !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        Some("a key is visible ASCII only, without inner spaces or control characters")
    } else {
        None
    };
    if let Some(rule) = rule {
        return Err(Failure::Local(format!(
            "the API key from {source} is not usable: {rule}; copy it again from the \
             server (`sudo cat /etc/krill/credentials/api_key`)"
        )));
    }
    let value = Zeroizing::new(String::from_utf8_lossy(key).into_owned());
    Ok(ApiKey { value, source })
}

/// A server address: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses `https://HOST[:PORT]` (or `http://` for a server with
    /// `tls = false`); a bare `HOST[:PORT]` means https. The port defaults
    /// to 8442. A path other than `/` is refused.
    pub fn parse(text: &str) -> Result<Target, Failure> {
        let bad = |why: &str| {
            Failure::Usage(format!(
                "`{text}` is not a server address ({why}); write it like \
                 https://krill.local:8442"
            ))
        };
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("https://{text}")
        };
        let uri: hyper::Uri = with_scheme.parse().map_err(|_| bad("cannot parse it"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be https")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give only scheme, host and port"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Target {
            tls,
            host: host.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(DEFAULT_PORT),
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL as krillc shows it.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let t = Target::parse("https://Krill.local:9000").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port),
            (true, "krill.local", 9000)
        );
        let t = Target::parse("pi.home.arpa").unwrap();
        assert_eq!(t.url(), "https://pi.home.arpa:8442");
        let t = Target::parse("https://[::1]:8443/").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.authority(), "[::1]:8443");
        assert!(!Target::parse("http://127.0.0.1:1").unwrap().tls);
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("https://x/api/nodes").is_err());
    }

    #[test]
    fn keys_follow_the_server_rules_and_errors_do_not_echo_them() {
        let key = parse_key(b"\xEF\xBB\xBF  abc-123\r\n", KeySource::Env).unwrap();
        assert!(key.expose() == "abc-123");
        for bad in [&b" \n"[..], b"has space", b"tab\tinside", "é".as_bytes()] {
            let err = parse_key(bad, KeySource::Env).unwrap_err().to_string();
            assert!(!err.contains("space") || !err.contains("has space"));
            assert!(err.contains("KRILL_API_KEY"), "{err}");
        }
        assert!(parse_key(&[b'a'; 513], KeySource::Env).is_err());
        assert!(format!("{key:?}").find("abc").is_none());
    }

    #[test]
    fn profiles_file_format() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            ProfilesFile::path(dir.path()),
            "default = \"home\"\n[profiles.home]\nserver = \"https://a:1\"\n\
             api_key_file = \"home.key\"\n[profiles.barn]\nserver = \"https://b:2\"\n",
        )
        .unwrap();
        let file = ProfilesFile::load(dir.path()).unwrap();
        assert_eq!(file.default.as_deref(), Some("home"));
        assert_eq!(file.profiles.len(), 2);
        let home = &file.profiles["home"];
        assert_eq!(
            expand(home.api_key_file.as_deref().unwrap(), dir.path()),
            dir.path().join("home.key")
        );
        std::fs::write(ProfilesFile::path(dir.path()), "[profiles.x]\nsrever = 1\n").unwrap();
        let err = ProfilesFile::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("profiles.toml") && err.contains("srever"),
            "{err}"
        );
    }
}
