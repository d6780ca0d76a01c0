//! Certificate management: `krill cert generate` and `show`, the PKCS#12
//! bundle opened by the real `openssl` command, and a live certificate
//! swap on SIGHUP that keeps established connections working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use support::{Install, TestClient};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn der_of(pem_path: &std::path::Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem_path).unwrap().to_vec()
}

#[test]
fn init_writes_a_pfx_that_openssl_opens_with_the_stored_password() {
    let install = Install::new();
    let pfx = install.etc.join("certs/krill.pfx");
    let password = install.etc.join("certs/.pfx_password");
    assert_eq!(mode(&pfx), 0o644);
    assert_eq!(mode(&password), 0o600);

    let info = Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-in"])
        .arg(&pfx)
        .arg("-passin")
        .arg(format!("file:{}", password.display()))
        .output()
        .unwrap();
    assert!(info.status.success(), "{info:?}");
    let details = String::from_utf8_lossy(&info.stderr);
    assert!(details.contains("AES-256-CBC"), "{details}");
    assert!(details.contains("MAC: sha256"), "{details}");

    // The bundle's certificate is krill.crt, and its key signs for it.
    let certs = run_ok(
        Command::new("openssl")
            .args(["pkcs12", "-nokeys", "-in"])
            .arg(&pfx)
            .arg("-passin")
            .arg(format!("file:{}", password.display())),
    );
    let from_bundle = CertificateDer::from_pem_slice(certs.as_bytes()).unwrap();
    assert_eq!(
        from_bundle.as_ref(),
        der_of(&install.cert_path()).as_slice()
    );
    let keys = run_ok(
        Command::new("openssl")
            .args(["pkcs12", "-nocerts", "-nodes", "-in"])
            .arg(&pfx)
            .arg("-passin")
            .arg(format!("file:{}", password.display())),
    );
    assert!(keys.contains("BEGIN PRIVATE KEY"));

    let wrong = Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-in"])
        .arg(&pfx)
        .args(["-passin", "pass:wrong"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
}

#[test]
fn generate_refuses_to_overwrite_without_force_and_covers_extra_names() {
    let install = Install::new();
    let before = fs::read(install.cert_path()).unwrap();
    let refused = install.krill(&["cert", "generate"]).output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("krill.crt"), "{message}");
    assert!(message.contains("--force"), "{message}");
    assert_eq!(fs::read(install.cert_path()).unwrap(), before);

    run_ok(&mut install.krill(&[
        "cert",
        "generate",
        "--force",
        "--hostname",
        "krill.home.arpa",
        "--hostname",
        "192.168.7.9",
    ]));
    assert_ne!(fs::read(install.cert_path()).unwrap(), before);
    let shown = run_ok(&mut install.krill(&["cert", "show"]));
    for name in [
        "krill.home.arpa",
        "192.168.7.9",
        "localhost",
        "127.0.0.1",
        "::1",
    ] {
        assert!(shown.contains(name), "{name} missing from:\n{shown}");
    }
    assert!(shown.contains("krill.crt"), "{shown}");
    assert!(shown.contains("not after"), "{shown}");

    // The fingerprint is the one openssl computes, in the same form.
    let openssl = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(install.cert_path()),
    );
    let fingerprint = openssl.trim().rsplit('=').next().unwrap();
    assert_eq!(fingerprint.len(), 95);
    assert!(shown.contains(fingerprint), "{shown}\nvs {openssl}");

    // The new bundle matches the new certificate.
    let certs = run_ok(
        Command::new("openssl")
            .args(["pkcs12", "-nokeys", "-in"])
            .arg(install.etc.join("certs/krill.pfx"))
            .arg("-passin")
            .arg(format!(
                "file:{}",
                install.etc.join("certs/.pfx_password").display()
            )),
    );
    let from_bundle = CertificateDer::from_pem_slice(certs.as_bytes()).unwrap();
    assert_eq!(
        from_bundle.as_ref(),
        der_of(&install.cert_path()).as_slice()
    );
}

#[test]
fn show_without_a_certificate_names_the_file_and_the_fix() {
    let install = Install::empty();
    let out = install.krill(&["cert", "show"]).output().unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("krill.crt"), "{message}");
    assert!(message.contains("krill cert generate"), "{message}");
}

#[tokio::test]
async fn sighup_presents_the_new_certificate_and_keeps_open_connections() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    let old_der = der_of(&install.cert_path());

    // A keep-alive HTTP/1.1 connection made with the old certificate.
    let old_client = server.client();
    let tls = old_client.connect(&[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get_nodes = |key: &str| {
        hyper::Request::get("/api/nodes")
            .header("host", "localhost")
            .header("x-api-key", key)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let first = sender.send_request(get_nodes(&key)).await.unwrap();
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.unwrap();

    run_ok(&mut install.krill(&["cert", "generate", "--force"]));
    let new_der = der_of(&install.cert_path());
    assert_ne!(new_der, old_der);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_log("TLS certificate reloaded", Duration::from_secs(10));

    // New handshakes present the new certificate, and /trust serves it.
    let new_client = TestClient::new(server.addr, &install.cert_path());
    assert_eq!(new_client.handshake_certificate().await, new_der);
    let trust = new_client.get("/trust", &[]).await;
    assert_eq!(trust.status, 200);
    assert_eq!(trust.body, fs::read(install.cert_path()).unwrap());

    // The connection made before the swap still answers.
    let again = sender.send_request(get_nodes(&key)).await.unwrap();
    assert_eq!(again.status(), 200);
}
