//! The server's self-signed certificate: which names it covers and how it is
//! made and written (SPEC §3 and §6).
//!
//! Certificates are ECDSA P-256, valid for ten years: clients pin this exact
//! certificate (`krillc trust`, `curl --cacert`), so an early expiry would
//! only lock people out; replacing it is an explicit `krill cert generate`.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair};

use crate::fsutil::{self, Owner};
use crate::settings::EtcLayout;

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

/// Writes certificate (0644) and private key (0600, owned by the service
/// user) atomically into the layout's certs directory.
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
        .map_err(|e| CertError::Write(cert_path, e))
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
    fn bad_names_are_refused() {
        assert!(matches!(
            generate(&["bad name".into()]),
            Err(CertError::BadName(_))
        ));
        assert!(generate(&["ok.example".into(), "10.0.0.1".into()]).is_ok());
    }
}
