//! `krill init`: create the directories, key and certificate a server needs,
//! where they are missing. Running it again changes nothing.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::cert::{self, CertError, CERTS_DIR_MODE};
use crate::fsutil::{self, Owner};
use crate::key::file::{self as key_file, CREDENTIALS_DIR_MODE};
use crate::key::ApiKey;
use crate::settings::EtcLayout;

/// Mode of the configuration directory itself.
pub const ETC_DIR_MODE: u32 = 0o755;
/// Mode of the data directory.
pub const DATA_DIR_MODE: u32 = 0o750;

/// One thing `init` looked at, and whether it made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub path: PathBuf,
    pub what: &'static str,
    pub created: bool,
}

/// What an `init` run did.
#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    /// True when a new API key was written.
    pub fn created_key(&self) -> bool {
        self.steps.iter().any(|s| s.created && s.what == "API key")
    }

    /// True when nothing was created.
    pub fn unchanged(&self) -> bool {
        self.steps.iter().all(|s| !s.created)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            let verb = if step.created { "created" } else { "kept   " };
            writeln!(f, "{verb} {:<22} {}", step.what, step.path.display())?;
        }
        if self.unchanged() {
            writeln!(f, "nothing to do: everything was already in place")?;
        }
        Ok(())
    }
}

/// `init` could not finish; what it created so far stays.
#[derive(Debug)]
pub enum InitError {
    Io(PathBuf, io::Error),
    Cert(CertError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Io(path, e) => write!(
                f,
                "cannot create {}: {e}; check the parent directory's permissions (for \
                 /etc/krill and /var/lib/krill, run as root)",
                path.display()
            ),
            InitError::Cert(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InitError {}

/// Creates what is missing of the layout and the data directory.
pub fn run(layout: &EtcLayout, data_dir: &Path, hostnames: &[String]) -> Result<Report, InitError> {
    let owner = Owner::for_service_files();
    let mut report = Report::default();
    let mut dir = |path: &Path, mode: u32, owner: Option<Owner>, what: &'static str| {
        let created =
            fsutil::ensure_dir(path, mode, owner).map_err(|e| InitError::Io(path.into(), e))?;
        report.steps.push(Step {
            path: path.into(),
            what,
            created,
        });
        Ok::<(), InitError>(())
    };
    dir(&layout.root, ETC_DIR_MODE, None, "configuration dir")?;
    dir(
        &layout.credentials_dir(),
        CREDENTIALS_DIR_MODE,
        owner,
        "credentials dir",
    )?;
    dir(
        &layout.certs_dir(),
        CERTS_DIR_MODE,
        None,
        "certificates dir",
    )?;
    dir(data_dir, DATA_DIR_MODE, owner, "data dir")?;

    let key_path = layout.key_file();
    let key_created = !exists(&key_path);
    if key_created {
        key_file::replace(&key_path, &ApiKey::generate(), owner)
            .map_err(|e| InitError::Io(key_path.clone(), e))?;
    }
    report.steps.push(Step {
        path: key_path,
        what: "API key",
        created: key_created,
    });

    // The certificate and its key are made together or not at all: a
    // missing half means a new pair.
    let cert_created = !exists(&layout.cert_file()) || !exists(&layout.cert_key_file());
    if cert_created {
        let names = cert::subject_names(hostnames);
        let generated = cert::generate(&names).map_err(InitError::Cert)?;
        cert::write(layout, &generated, owner).map_err(InitError::Cert)?;
    }
    report.steps.push(Step {
        path: layout.cert_file(),
        what: "TLS certificate",
        created: cert_created,
    });

    // A new pair came with its bundle; an older pair may lack one.
    let pfx_missing = !exists(&layout.pfx_file()) || !exists(&layout.pfx_password_file());
    if !cert_created && pfx_missing {
        cert::write_pfx_from_files(layout, owner).map_err(InitError::Cert)?;
    }
    report.steps.push(Step {
        path: layout.pfx_file(),
        what: "PKCS#12 bundle",
        created: cert_created || pfx_missing,
    });
    Ok(report)
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_the_layout_with_exact_modes_then_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path().join("etc"));
        let data = dir.path().join("data");
        let first = run(&layout, &data, &[]).unwrap();
        assert!(first.created_key());
        assert_eq!(mode(&layout.credentials_dir()), 0o700);
        assert_eq!(mode(&layout.key_file()), 0o400);
        assert_eq!(mode(&layout.cert_file()), 0o644);
        assert_eq!(mode(&layout.cert_key_file()), 0o600);
        assert_eq!(mode(&layout.pfx_file()), 0o644);
        assert_eq!(mode(&layout.pfx_password_file()), 0o600);
        assert_eq!(mode(&data), 0o750);
        assert_eq!(std::fs::metadata(layout.key_file()).unwrap().len(), 37);

        let key_before = std::fs::read(layout.key_file()).unwrap();
        let cert_before = std::fs::read(layout.cert_file()).unwrap();
        let second = run(&layout, &data, &[]).unwrap();
        assert!(second.unchanged());
        assert!(second.to_string().contains("nothing to do"));
        assert_eq!(std::fs::read(layout.key_file()).unwrap(), key_before);
        assert_eq!(std::fs::read(layout.cert_file()).unwrap(), cert_before);

        // A host from before the bundle existed gets one from its pair.
        std::fs::remove_file(layout.pfx_file()).unwrap();
        let third = run(&layout, &data, &[]).unwrap();
        assert!(!third.unchanged());
        assert!(layout.pfx_file().exists());
        assert_eq!(std::fs::read(layout.cert_file()).unwrap(), cert_before);
    }
}
