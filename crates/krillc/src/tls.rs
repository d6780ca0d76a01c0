//! TLS for `krillc`: the server is trusted because it presents exactly the
//! pinned certificate, not because any authority vouches for it.
//!
//! [`PinVerifier`] compares the end-entity certificate's DER byte for byte
//! with the pin (host names, expiry and system roots play no part: the pin
//! was checked by a person with `krillc trust`), and still verifies the
//! handshake signatures with ring's algorithms, so only the holder of the
//! pinned certificate's private key can complete the handshake. During
//! `krillc trust` there is no pin yet: the verifier then accepts any
//! certificate and records it for the user to check.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Checks the server's certificate against a pin, and records what the
/// server presented.
#[derive(Debug)]
pub struct PinVerifier {
    /// `None` only while bootstrapping trust.
    pinned: Option<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    presented: Mutex<Option<CertificateDer<'static>>>,
}

impl PinVerifier {
    /// A verifier accepting exactly `pinned`.
    pub fn pinned(pinned: CertificateDer<'static>) -> Arc<PinVerifier> {
        Arc::new(PinVerifier::new(Some(pinned)))
    }

    /// The bootstrap verifier of `krillc trust`: any certificate, recorded.
    pub fn bootstrap() -> Arc<PinVerifier> {
        Arc::new(PinVerifier::new(None))
    }

    fn new(pinned: Option<CertificateDer<'static>>) -> PinVerifier {
        PinVerifier {
            pinned,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            presented: Mutex::new(None),
        }
    }

    /// The certificate the server presented in the last handshake.
    pub fn presented(&self) -> Option<CertificateDer<'static>> {
        match self.presented.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// True when the server presented a certificate other than the pin.
    pub fn mismatched(&self) -> bool {
        match (&self.pinned, self.presented()) {
            (Some(pinned), Some(seen)) => pinned.as_ref() != seen.as_ref(),
            _ => false,
        }
    }

    /// A client configuration using this verifier (TLS 1.2 and 1.3,
    /// ALPN `http/1.1`).
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, rustls::Error> {
        let mut config = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(self) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = end_entity.clone().into_owned();
        match self.presented.lock() {
            Ok(mut guard) => *guard = Some(seen),
            Err(poisoned) => *poisoned.into_inner() = Some(seen),
        }
        match &self.pinned {
            None => Ok(ServerCertVerified::assertion()),
            Some(pinned) if pinned.as_ref() == end_entity.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// SHA-256 of `der` as browsers and `krill cert show` print it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let pairs: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_certificate_passes() {
        let pinned = CertificateDer::from(vec![1u8, 2, 3]);
        let verifier = PinVerifier::pinned(pinned.clone());
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        assert!(verifier
            .verify_server_cert(&pinned, &[], &name, &[], now)
            .is_ok());
        assert!(!verifier.mismatched());
        let other = CertificateDer::from(vec![1u8, 2, 4]);
        assert!(verifier
            .verify_server_cert(&other, &[], &name, &[], now)
            .is_err());
        assert!(verifier.mismatched());
        assert_eq!(verifier.presented().unwrap().as_ref(), &[1, 2, 4]);
    }

    #[test]
    fn fingerprint_form() {
        let f = fingerprint(b"");
        assert!(f.starts_with("E3:B0:C4:42"), "{f}");
        assert_eq!(f.len(), 95);
    }
}
