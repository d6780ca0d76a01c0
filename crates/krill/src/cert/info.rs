//! What `krill cert show` prints about a certificate: its SHA-256
//! fingerprint, subject, names and validity, read with `x509-parser`.

use std::fmt;
use std::net::IpAddr;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The facts about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the DER, as browsers show it (`AB:CD:...`).
    pub fingerprint: String,
    pub subject: String,
    /// DNS names and IP addresses from the subject alternative names.
    pub names: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// The DER could not be read as an X.509 certificate.
#[derive(Debug)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// SHA-256 of `der` in upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let pairs: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

impl CertInfo {
    /// Reads the facts from a DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, ParseError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| ParseError(format!("not X.509: {e}")))?;
        let mut names = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| ParseError(format!("bad subject alternative names: {e}")))?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => names.push(ip_text(bytes)),
                _ => {}
            }
        }
        let time = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map_err(|e| ParseError(format!("bad validity date: {e}")))
        };
        Ok(CertInfo {
            fingerprint: fingerprint(der),
            subject: cert.subject().to_string(),
            names,
            not_before: time(cert.validity().not_before.timestamp())?,
            not_after: time(cert.validity().not_after.timestamp())?,
        })
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => format!("(IP address of {} bytes)", bytes.len()),
    }
}

/// RFC 3339, falling back to the debug form if formatting ever fails.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| format!("{t:?}"))
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = OffsetDateTime::now_utc();
        writeln!(f, "fingerprint (SHA-256): {}", self.fingerprint)?;
        writeln!(f, "subject:               {}", self.subject)?;
        writeln!(f, "names:                 {}", self.names.join(", "))?;
        writeln!(f, "not before:            {}", rfc3339(self.not_before))?;
        let left = (self.not_after - now).whole_days();
        let state = if self.not_after < now {
            "EXPIRED: run `krill cert generate --force`".to_owned()
        } else {
            format!("{left} days left")
        };
        writeln!(
            f,
            "not after:             {} ({state})",
            rfc3339(self.not_after)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn reads_names_validity_and_fingerprint() {
        let generated =
            super::super::generate(&["localhost".into(), "::1".into(), "10.1.2.3".into()]).unwrap();
        let der = CertificateDer::from_pem_slice(generated.cert_pem.as_bytes()).unwrap();
        let info = CertInfo::from_der(&der).unwrap();
        assert_eq!(info.names, ["localhost", "::1", "10.1.2.3"]);
        assert!(info.not_after - info.not_before > time::Duration::days(3000));
        assert_eq!(info.fingerprint.len(), 32 * 3 - 1);
        assert!(info.fingerprint.split(':').all(|p| p.len() == 2
            && p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));
        assert!(info.subject.contains("localhost"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(CertInfo::from_der(b"not a certificate").is_err());
    }
}
