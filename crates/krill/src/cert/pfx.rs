//! `krill.pfx`: the certificate and its private key as one PKCS#12 bundle,
//! for JVM-based clients of the original system, with its random password
//! in `.pfx_password` (SPEC §3).
//!
//! The bundle is written with `p12-keystore`, a pure-Rust PKCS#12 writer
//! built on the RustCrypto crates, so the tree stays free of OpenSSL and
//! aws-lc. It uses the modern scheme OpenSSL 3 and Java 11+ both read:
//! PBES2 with AES-256-CBC and PBKDF2-HMAC-SHA256 for the bags, and an
//! HMAC-SHA256 integrity MAC (OpenSSL 1.x and Java 8 cannot open it; they
//! are past their end of life).

use std::io;
use std::path::PathBuf;

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::fsutil::{self, Owner};
use crate::settings::EtcLayout;

/// Mode of the bundle: its contents are encrypted, as SPEC §3 asks.
pub const PFX_MODE: u32 = 0o644;
/// Mode of the file holding the bundle's password.
pub const PFX_PASSWORD_MODE: u32 = 0o600;
/// The alias JVM tools show for the key entry.
pub const ALIAS: &str = "krill";

/// Random bytes in a password (written as hex: 64 characters).
const PASSWORD_BYTES: usize = 32;
/// PBKDF2 and MAC iteration counts; OpenSSL 3 uses 2048, Java 10000.
const ITERATIONS: u32 = 10_000;

/// Why the bundle could not be made or written.
#[derive(Debug)]
pub enum PfxError {
    /// The certificate or key PEM could not be decoded.
    BadInput(&'static str),
    /// The PKCS#12 encoder failed.
    Encode(String),
    /// The random source failed.
    Random(io::Error),
    /// A file could not be written.
    Write(PathBuf, io::Error),
}

impl std::fmt::Display for PfxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PfxError::BadInput(what) => write!(
                f,
                "cannot build krill.pfx: the {what} is not usable PEM; regenerate the pair \
                 with `krill cert generate --force`"
            ),
            PfxError::Encode(e) => write!(f, "cannot build krill.pfx: {e}"),
            PfxError::Random(e) => write!(f, "cannot make the krill.pfx password: {e}"),
            PfxError::Write(path, e) => write!(
                f,
                "cannot write {}: {e}; check that the directory exists and is writable \
                 (run as root for /etc/krill)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PfxError {}

/// A new random password: 64 hex characters.
pub fn random_password() -> Result<Zeroizing<String>, PfxError> {
    let mut bytes = Zeroizing::new([0u8; PASSWORD_BYTES]);
    fsutil::fill_random(&mut bytes[..]).map_err(PfxError::Random)?;
    let mut text = Zeroizing::new(String::with_capacity(PASSWORD_BYTES * 2));
    for b in bytes.iter() {
        text.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        text.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    Ok(text)
}

/// Encodes certificate and PKCS#8 key (both PEM) as a PKCS#12 bundle.
pub fn encode(cert_pem: &[u8], key_pem: &[u8], password: &str) -> Result<Vec<u8>, PfxError> {
    let cert_der =
        CertificateDer::from_pem_slice(cert_pem).map_err(|_| PfxError::BadInput("certificate"))?;
    let key_der = Zeroizing::new(
        PrivatePkcs8KeyDer::from_pem_slice(key_pem)
            .map_err(|_| PfxError::BadInput("private key"))?
            .secret_pkcs8_der()
            .to_vec(),
    );
    let cert = Certificate::from_der(&cert_der).map_err(|e| PfxError::Encode(e.to_string()))?;
    let key = PrivateKey::from_der(&key_der).map_err(|e| PfxError::Encode(e.to_string()))?;
    // The local key id ties the key bag to its certificate bag; any stable
    // bytes do, and a digest of the certificate is what tools usually use.
    let key_id = ring::digest::digest(&ring::digest::SHA256, &cert_der);
    let chain = PrivateKeyChain::new(&key_id.as_ref()[..20], key, [cert]);
    let mut store = KeyStore::new();
    store.add_entry(ALIAS, KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(|e| PfxError::Encode(e.to_string()))
}

/// Writes `.pfx_password` (0600, owned by the service user) and then
/// `krill.pfx` (0644) from the given PEM pair, each atomically, with a new
/// random password.
pub fn write(
    layout: &EtcLayout,
    cert_pem: &[u8],
    key_pem: &[u8],
    owner: Option<Owner>,
) -> Result<(), PfxError> {
    let password = random_password()?;
    let bundle = encode(cert_pem, key_pem, &password)?;
    let password_path = layout.pfx_password_file();
    let mut line = Zeroizing::new(password.as_bytes().to_vec());
    line.push(b'\n');
    fsutil::write_atomically(&password_path, &line, PFX_PASSWORD_MODE, owner)
        .map_err(|e| PfxError::Write(password_path, e))?;
    let pfx_path = layout.pfx_file();
    fsutil::write_atomically(&pfx_path, &bundle, PFX_MODE, None)
        .map_err(|e| PfxError::Write(pfx_path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_holds_the_certificate_and_key_under_the_password() {
        let generated = super::super::generate(&["localhost".into()]).unwrap();
        let password = random_password().unwrap();
        assert_eq!(password.len(), 64);
        let bundle = encode(
            generated.cert_pem.as_bytes(),
            generated.key_pem.as_bytes(),
            &password,
        )
        .unwrap();
        let store = KeyStore::from_pkcs12(&bundle, &password, Default::default()).unwrap();
        let (alias, chain) = store.private_key_chain().unwrap();
        assert_eq!(alias, ALIAS);
        let cert_der = CertificateDer::from_pem_slice(generated.cert_pem.as_bytes()).unwrap();
        assert_eq!(chain.certs()[0].as_der(), cert_der.as_ref());
        assert!(KeyStore::from_pkcs12(&bundle, "wrong", Default::default()).is_err());
    }
}
