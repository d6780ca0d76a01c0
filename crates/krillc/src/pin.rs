//! Pinned certificates: one PEM file per `host:port` under
//! `CONFIG_DIR/pins/`, written by `krillc trust` and the only thing later
//! calls trust.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::Target;
use crate::failure::Failure;

/// The pin file for a server: `pins/HOST_PORT.pem`, with every byte of the
/// host other than `a-z 0-9 . -` written as `%XX` (so `::1` and odd names
/// stay distinct and safe as file names).
pub fn path(config_dir: &Path, target: &Target) -> PathBuf {
    let mut name = String::new();
    for b in target.host.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    config_dir
        .join("pins")
        .join(format!("{name}_{}.pem", target.port))
}

/// The pinned certificate for `target`, or `None` when there is none.
pub fn load(
    config_dir: &Path,
    target: &Target,
) -> Result<Option<CertificateDer<'static>>, Failure> {
    let path = path(config_dir, target);
    let pem = match fs::read(&path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::Local(format!(
                "cannot read the pinned certificate {}: {e}; check its permissions or \
                 run `krillc trust {}` again",
                path.display(),
                target.url()
            )))
        }
    };
    CertificateDer::from_pem_slice(&pem).map(Some).map_err(|_| {
        Failure::Local(format!(
            "the pinned certificate {} is damaged; run `krillc trust {}` again",
            path.display(),
            target.url()
        ))
    })
}

/// Saves `pem` as the pin for `target`: a temporary file beside it,
/// flushed, then renamed, so a pin is never half-written.
pub fn save(config_dir: &Path, target: &Target, pem: &[u8]) -> Result<PathBuf, Failure> {
    let path = path(config_dir, target);
    let fail = |e: std::io::Error, what: &Path| {
        Failure::Local(format!(
            "cannot write {}: {e}; check that the configuration directory is writable \
             (or choose another with --config-dir)",
            what.display()
        ))
    };
    let dir = config_dir.join("pins");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(e, &dir))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(pem)?;
        file.sync_all()?;
        fs::rename(&temp, &path)?;
        fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temp);
        fail(e, &path)
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_are_distinct_and_safe() {
        let dir = Path::new("/c");
        let t = |s: &str| Target::parse(s).unwrap();
        assert_eq!(
            path(dir, &t("https://localhost:8442")),
            Path::new("/c/pins/localhost_8442.pem")
        );
        assert_eq!(
            path(dir, &t("https://[::1]:9")),
            Path::new("/c/pins/%3A%3A1_9.pem")
        );
        assert_ne!(path(dir, &t("https://a:1")), path(dir, &t("https://a:2")));
    }
}
