//! HTTPS: loading the certificate and private key, and the rustls server
//! configuration (TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, ring as
//! the crypto provider).
//!
//! The certificate lives in a [`CertSlot`] so SIGHUP can swap it without
//! a restart; `/trust` reads the same slot, so it always serves the PEM that
//! new handshakes present.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::fsutil;
use crate::settings::EtcLayout;
use crate::slot::Slot;

const PEM_READ_LIMIT: usize = 1024 * 1024;

/// A certificate chain with its signing key, and the PEM text it came from.
pub struct Identity {
    pub certified: Arc<CertifiedKey>,
    /// The certificate file's bytes exactly as read, served by `/trust`.
    pub pem: Arc<[u8]>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// Why the certificate or its key could not be loaded.
#[derive(Debug)]
pub enum TlsError {
    /// A file is missing.
    Missing(PathBuf),
    /// A file could not be read.
    Read(PathBuf, io::Error),
    /// A file holds no usable PEM item of the expected kind.
    BadPem(PathBuf, &'static str),
    /// The private key does not belong to the certificate, or rustls
    /// refused it.
    Mismatch(PathBuf, String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Missing(path) => write!(
                f,
                "the TLS file {} does not exist; create certificate and key with \
                 `krill init` (or `krill cert generate`)",
                path.display()
            ),
            TlsError::Read(path, e) => write!(
                f,
                "cannot read the TLS file {}: {e}; check its owner and mode (the key \
                 must be readable by the krill user)",
                path.display()
            ),
            TlsError::BadPem(path, what) => write!(
                f,
                "the TLS file {} holds no {what}; regenerate it with \
                 `krill cert generate --force`",
                path.display()
            ),
            TlsError::Mismatch(path, detail) => write!(
                f,
                "the private key {} cannot serve the certificate ({detail}); \
                 regenerate both with `krill cert generate --force`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    fsutil::read_small_file(path, PEM_READ_LIMIT).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => TlsError::Missing(path.to_owned()),
        _ => TlsError::Read(path.to_owned(), e),
    })
}

/// The crypto provider used everywhere: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Identity {
    /// Loads `krill.crt` and `krill.key` from the layout.
    pub fn load(layout: &EtcLayout) -> Result<Identity, TlsError> {
        let cert_path = layout.cert_file();
        let key_path = layout.cert_key_file();
        let pem = read_pem(&cert_path)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::BadPem(cert_path.clone(), "PEM certificate"))?;
        if chain.is_empty() {
            return Err(TlsError::BadPem(cert_path, "PEM certificate"));
        }
        let key_pem = zeroize::Zeroizing::new(read_pem(&key_path)?);
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsError::BadPem(key_path.clone(), "PEM private key"))?;
        let certified = CertifiedKey::from_der(chain, key, &provider())
            .map_err(|e| TlsError::Mismatch(key_path, e.to_string()))?;
        Ok(Identity {
            certified: Arc::new(certified),
            pem: pem.into(),
        })
    }
}

/// The identity currently served; swapped whole on reload.
pub type CertSlot = Slot<Identity>;

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current().certified))
    }
}

/// The rustls configuration for the server.
pub fn server_config(slot: Arc<CertSlot>) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server picks the cipher suite by its own order (the provider's:
    // AES-256-GCM, AES-128-GCM, then ChaCha20-Poly1305, all AEAD with
    // forward secrecy) rather than the client's, so an old or tampered
    // client preference cannot steer the choice. testssl.sh rates a
    // missing server order HIGH (docs/security.md, "TLS audit").
    config.ignore_client_order = true;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_certificate_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = Identity::load(&EtcLayout::new(dir.path())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("krill.crt"), "{text}");
        assert!(text.contains("krill init"), "{text}");
    }

    #[test]
    fn generated_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path());
        std::fs::create_dir_all(layout.certs_dir()).unwrap();
        let generated = crate::cert::generate(&["localhost".into()]).unwrap();
        crate::cert::write(&layout, &generated, None).unwrap();
        let identity = Identity::load(&layout).unwrap();
        assert_eq!(&identity.pem[..], generated.cert_pem.as_bytes());
    }
}
