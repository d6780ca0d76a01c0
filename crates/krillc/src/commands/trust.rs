//! `krillc trust URL`: trust on first use. Fetches `/trust` without
//! checking the certificate (there is nothing to check it against yet),
//! makes sure it is the certificate the handshake presented, shows its
//! SHA-256 fingerprint for the user to compare with `krill cert show` on
//! the server, and pins it after confirmation.

use std::io::{BufRead, Write};
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::Target;
use crate::failure::Failure;
use crate::http::{self, Call};
use crate::output;
use crate::pin;
use crate::tls::{fingerprint, PinVerifier};

use super::Format;

/// Fetches, shows, confirms (unless `yes`) and pins the certificate.
pub async fn run(
    target: &Target,
    config_dir: &Path,
    yes: bool,
    format: Format,
) -> Result<String, Failure> {
    if !target.tls {
        return Err(Failure::Usage(format!(
            "{} is plain HTTP, so there is no certificate to trust; use an https:// address",
            target.url()
        )));
    }
    let verifier = PinVerifier::bootstrap();
    let call = Call {
        method: hyper::Method::GET,
        path: "/trust".into(),
        key: None,
        body: None,
    };
    let answer = http::send(target, Some(&verifier), call).await?;
    if !answer.status.is_success() {
        return Err(Failure::Server(format!(
            "{}/trust answered {} instead of a certificate; is this a Krill server?",
            target.url(),
            answer.status
        )));
    }
    let served = CertificateDer::from_pem_slice(&answer.body).map_err(|_| {
        Failure::Server(format!(
            "{}/trust did not answer with a PEM certificate; is this a Krill server?",
            target.url()
        ))
    })?;
    let presented = verifier.presented().ok_or_else(|| {
        Failure::Trust("the server presented no certificate in the handshake".into())
    })?;
    if served.as_ref() != presented.as_ref() {
        return Err(Failure::Trust(format!(
            "{}/trust serves a certificate other than the one its TLS handshake presents; \
             not trusting it (something between you and the server may be interfering)",
            target.url()
        )));
    }

    let print = fingerprint(&presented);
    let existing = pin::load(config_dir, target)?;
    if existing
        .as_ref()
        .is_some_and(|e| e.as_ref() == presented.as_ref())
    {
        let path = pin::path(config_dir, target);
        return Ok(report(target, &presented, &path, format, "already trusted"));
    }

    let summary = describe(target, &presented, existing.is_some());
    if !yes {
        eprint!(
            "{summary}Trust this certificate for {}? [y/N] ",
            target.authority()
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if !matches!(read, Ok(n) if n > 0) || !matches!(line.trim(), "y" | "Y" | "yes" | "YES") {
            return Err(Failure::Local(format!(
                "not trusted: nothing was pinned; check the fingerprint {print} against \
                 `krill cert show` on the server, then answer y (or pass --yes)"
            )));
        }
    } else if format == Format::Human {
        eprint!("{summary}");
    }
    let path = pin::save(config_dir, target, &answer.body)?;
    Ok(report(target, &presented, &path, format, "trusted"))
}

fn describe(target: &Target, der: &[u8], replacing: bool) -> String {
    let mut text = format!("{} presents this certificate:\n", target.url());
    text.push_str(&format!("  SHA-256 fingerprint: {}\n", fingerprint(der)));
    if let Some((subject, names, not_after)) = details(der) {
        let subject = output::escape(&subject);
        let names = output::escape(&names.join(", "));
        text.push_str(&format!("  subject:             {subject}\n"));
        text.push_str(&format!("  names:               {names}\n"));
        text.push_str(&format!("  valid until:         {not_after}\n"));
    }
    text.push_str("Compare the fingerprint with `krill cert show` on the server.\n");
    if replacing {
        text.push_str(
            "WARNING: a DIFFERENT certificate is pinned for this server; trusting replaces it.\n",
        );
    }
    text
}

fn details(der: &[u8]) -> Option<(String, Vec<String>, String)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(b) => names.push(ip_text(b)),
                _ => {}
            }
        }
    }
    let not_after =
        time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    Some((cert.subject().to_string(), names, not_after))
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => "(bad IP address)".into(),
    }
}

fn report(target: &Target, der: &[u8], path: &Path, format: Format, state: &str) -> String {
    match format {
        Format::Json => output::json(&json!({
            "server": target.url(),
            "fingerprint_sha256": fingerprint(der),
            "pin_file": path.display().to_string(),
            "state": state,
        })),
        Format::Human => format!(
            "{state}: {} (SHA-256 {}), pinned in {}\n",
            target.url(),
            fingerprint(der),
            path.display()
        ),
    }
}
