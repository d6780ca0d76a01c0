//! The server's self-signed certificate: which names it covers and how it is
//! made and written (SPEC §3 and §6).
//!
//! Certificates are ECDSA P-256, valid for ten years: clients pin this exact
//! certificate (`krillc trust`, `curl --cacert`), so an early expiry would
//! only lock people out; replacing it is an explicit `krill cert generate`.
//!
//! Every new pair is also written as `krill.pfx` ([`pfx`]); [`info`] reads
//! a certificate back for `krill cert show`.

pub mod info;
pub mod pfx;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};

use crate::fsutil::{self, Owner};
use crate::settings::EtcLayout;
use info::CertInfo;
use pfx::PfxError;

/// Mode of the public certificate.
pub const CERT_MODE: u32 = 0o644;
/// Mode of its private key.
pub const CERT_KEY_MODE: u32 = 0o600;
/// Mode of the certificates directory.
pub const CERTS_DIR_MODE: u32 = 0o755;

const VALIDITY_DAYS: i64 = 3650;

/// Could not make or write the certificate.
#[derive(Debug)]
pub enum CertError {
    /// A name given with `--hostname` is not a DNS name or IP address.
    BadName(String),
    /// Key generation or signing failed.
    Generate(rcgen::Error),
    /// Writing a file failed.
    Write(PathBuf, io::Error),
    /// Writing the PKCS#12 bundle failed.
    Pfx(PfxError),
    /// `cert generate` without `--force` found a certificate or key.
    Exists(PathBuf),
    /// `cert show` found no certificate.
    Missing(PathBuf),
    /// Reading a file failed.
    Read(PathBuf, io::Error),
    /// The file holds no certificate that can be parsed.
    Unreadable(PathBuf, String),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::BadName(name) => write!(
                f,
                "`{name}` is neither a DNS name nor an IP address; pass names like \
                 `--hostname krill.home.arpa` or `--hostname 192.168.1.20`"
            ),
            CertError::Generate(e) => write!(f, "cannot generate the TLS certificate: {e}"),
            CertError::Write(path, e) => write!(
                f,
                "cannot write {}: {e}; check that the directory exists and is writable \
                 (run as root for /etc/krill)",
                path.display()
            ),
            CertError::Pfx(e) => e.fmt(f),
            CertError::Exists(path) => write!(
                f,
                "{} already exists; clients that trusted it would have to trust the new \
                 one, so pass --force to replace it: `krill cert generate --force`",
                path.display()
            ),
            CertError::Missing(path) => write!(
                f,
                "there is no certificate at {}; create one with `krill init` or \
                 `krill cert generate`",
                path.display()
            ),
            CertError::Read(path, e) => write!(
                f,
                "cannot read {}: {e}; check its owner and mode (0644 for krill.crt)",
                path.display()
            ),
            CertError::Unreadable(path, detail) => write!(
                f,
                "{} holds no usable PEM certificate ({detail}); replace it with \
                 `krill cert generate --force`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CertError {}

/// The names a new certificate covers: this host's name, `localhost`, the
/// loopback addresses, then every extra name, without duplicates.
pub fn subject_names(extra: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(host) = nix::unistd::gethostname() {
        if let Some(host) = host.to_str().filter(|h| !h.is_empty()) {
            names.push(host.to_owned());
        }
    }
    names.push("localhost".to_owned());
    names.push(Ipv4Addr::LOCALHOST.to_string());
    names.push(Ipv6Addr::LOCALHOST.to_string());
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// A freshly made certificate and private key, PEM-encoded.
pub struct GeneratedCert {
    pub cert_pem: String,
    pub key_pem: zeroize::Zeroizing<String>,
}

/// Makes a self-signed certificate covering `names`.
pub fn generate(names: &[String]) -> Result<GeneratedCert, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(CertError::Generate)?;
    for name in names {
        params.subject_alt_names.push(san(name)?);
    }
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map_or("krill", String::as_str),
    );
    dn.push(DnType::OrganizationName, "Krill self-signed");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);

    let key_pair = KeyPair::generate().map_err(CertError::Generate)?;
    let cert = params.self_signed(&key_pair).map_err(CertError::Generate)?;
    Ok(GeneratedCert {
        cert_pem: cert.pem(),
        key_pem: zeroize::Zeroizing::new(key_pair.serialize_pem()),
    })
}

/// Checks every name before anything is written.
pub fn validate_names(names: &[String]) -> Result<(), CertError> {
    names.iter().try_for_each(|n| san(n).map(drop))
}

fn san(name: &str) -> Result<rcgen::SanType, CertError> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(rcgen::SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    if !valid {
        return Err(CertError::BadName(name.to_owned()));
    }
    name.to_owned()
        .try_into()
        .map(rcgen::SanType::DnsName)
        .map_err(|_| CertError::BadName(name.to_owned()))
}

/// Writes certificate (0644), private key (0600, owned by the service
/// user) and the PKCS#12 bundle with its password, each atomically, into
/// the layout's certs directory.
pub fn write(
    layout: &EtcLayout,
    generated: &GeneratedCert,
    owner: Option<Owner>,
) -> Result<(), CertError> {
    let certs_dir = layout.certs_dir();
    let _lock = fsutil::lock_dir(&certs_dir).map_err(|e| CertError::Write(certs_dir.clone(), e))?;
    let key_path = layout.cert_key_file();
    fsutil::write_atomically(
        &key_path,
        generated.key_pem.as_bytes(),
        CERT_KEY_MODE,
        owner,
    )
    .map_err(|e| CertError::Write(key_path, e))?;
    let cert_path = layout.cert_file();
    fsutil::write_atomically(&cert_path, generated.cert_pem.as_bytes(), CERT_MODE, None)
        .map_err(|e| CertError::Write(cert_path, e))?;
    pfx::write(
        layout,
        generated.cert_pem.as_bytes(),
        generated.key_pem.as_bytes(),
        owner,
    )
    .map_err(CertError::Pfx)
}

/// Writes `krill.pfx` and its password from the certificate and key
/// already on disk (for `init` on a host whose bundle is missing).
pub fn write_pfx_from_files(layout: &EtcLayout, owner: Option<Owner>) -> Result<(), CertError> {
    let read = |path: PathBuf| {
        fsutil::read_small_file(&path, 1024 * 1024)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| CertError::Read(path, e))
    };
    let cert_pem = read(layout.cert_file())?;
    let key_pem = read(layout.cert_key_file())?;
    pfx::write(layout, &cert_pem, &key_pem, owner).map_err(CertError::Pfx)
}

/// What `krill cert generate` made.
#[derive(Debug)]
pub struct Generated {
    pub cert_path: PathBuf,
    pub info: CertInfo,
}

/// `krill cert generate`: a new pair and bundle covering this host's names
/// and `extra`; refuses to replace an existing pair unless `force`.
pub fn generate_files(
    layout: &EtcLayout,
    extra: &[String],
    force: bool,
) -> Result<Generated, CertError> {
    if !force {
        for path in [layout.cert_file(), layout.cert_key_file()] {
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(CertError::Exists(path));
            }
        }
    }
    let owner = Owner::for_service_files();
    let dir = layout.certs_dir();
    fsutil::ensure_dir(&dir, CERTS_DIR_MODE, None).map_err(|e| CertError::Write(dir, e))?;
    let generated = generate(&subject_names(extra))?;
    write(layout, &generated, owner)?;
    let cert_path = layout.cert_file();
    let info = parse_pem(&cert_path, generated.cert_pem.as_bytes())?;
    Ok(Generated { cert_path, info })
}

/// `krill cert show`: reads the certificate the server presents.
pub fn show(layout: &EtcLayout) -> Result<CertInfo, CertError> {
    let path = layout.cert_file();
    let pem = fsutil::read_small_file(&path, 1024 * 1024).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => CertError::Missing(path.clone()),
        _ => CertError::Read(path.clone(), e),
    })?;
    parse_pem(&path, &pem)
}

fn parse_pem(path: &Path, pem: &[u8]) -> Result<CertInfo, CertError> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .map_err(|e| CertError::Unreadable(path.to_owned(), e.to_string()))?;
    CertInfo::from_der(&der).map_err(|e| CertError::Unreadable(path.to_owned(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_localhost_and_loopback_and_extras() {
        let names = subject_names(&["krill.home.arpa".into(), "localhost".into()]);
        for wanted in ["localhost", "127.0.0.1", "::1", "krill.home.arpa"] {
            assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
        }
        assert_eq!(names.iter().filter(|n| *n == "localhost").count(), 1);
    }

    #[test]
    fn generate_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path());
        let first = generate_files(&layout, &["krill.test".into()], false).unwrap();
        assert!(first.info.names.iter().any(|n| n == "krill.test"));
        let before = std::fs::read(layout.cert_file()).unwrap();
        let err = generate_files(&layout, &[], false).unwrap_err();
        assert!(matches!(err, CertError::Exists(_)), "{err}");
        assert!(err.to_string().contains("--force"));
        assert_eq!(std::fs::read(layout.cert_file()).unwrap(), before);
        let second = generate_files(&layout, &[], true).unwrap();
        assert_ne!(second.info.fingerprint, first.info.fingerprint);
        assert_eq!(show(&layout).unwrap(), second.info);
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(matches!(
            generate(&["bad name".into()]),
            Err(CertError::BadName(_))
        ));
        assert!(generate(&["ok.example".into(), "10.0.0.1".into()]).is_ok());
    }
}
