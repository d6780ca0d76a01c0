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
    /// Things the user asked for that this run did not do, and why.
    pub notes: Vec<String>,
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
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
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
            InitError::Io(path, e) if e.raw_os_error() == Some(libc::ENOSPC) => write!(
                f,
                "cannot create {}: the disk is full; free some space and run `krill init` again",
                path.display()
            ),
            InitError::Io(path, e) => write!(
                f,
                "cannot create {}: {e}; check that its parent directory exists and is \
                 writable (for /etc/krill and /var/lib/krill, run as root)",
                path.display()
            ),
            InitError::Cert(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InitError {}

/// Creates what is missing of the layout and the data directory.
pub fn run(layout: &EtcLayout, data_dir: &Path, hostnames: &[String]) -> Result<Report, InitError> {
    // Refuse bad names before creating anything.
    let names = cert::subject_names(hostnames);
    cert::validate_names(&names).map_err(InitError::Cert)?;
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
    // One init at a time: deciding "missing" and creating must not
    // interleave with another run's.
    let _lock =
        fsutil::lock_dir(&layout.root).map_err(|e| InitError::Io(layout.root.clone(), e))?;
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
    let cert_half_missing = exists(&layout.cert_file()) != exists(&layout.cert_key_file());
    let cert_created = !exists(&layout.cert_file()) || !exists(&layout.cert_key_file());
    if cert_half_missing {
        report.notes.push(format!(
            "{} or its private key was missing, so a new certificate was made: clients \
             that pinned the old one must trust this one (`krillc trust URL`)",
            layout.cert_file().display()
        ));
    }
    if cert_created {
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
    if !cert_created && !hostnames.is_empty() {
        report.notes.push(
            "the existing certificate was kept, so --hostname changed nothing; make a new \
             one with these names with `krill cert generate --force --hostname NAME`"
                .to_owned(),
        );
    }
    Ok(report)
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_half_missing_certificate_is_replaced_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path().join("etc"));
        let data = dir.path().join("data");
        run(&layout, &data, &[]).unwrap();
        std::fs::remove_file(layout.cert_key_file()).unwrap();
        let report = run(&layout, &data, &[]).unwrap().to_string();
        assert!(report.contains("must trust this one"), "{report}");
    }

    #[test]
    fn a_bad_hostname_is_refused_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let layout = EtcLayout::new(dir.path().join("etc"));
        let err = run(&layout, &dir.path().join("data"), &["bad host".into()]).unwrap_err();
        assert!(err.to_string().contains("bad host"));
        assert!(!layout.root.exists());
    }

    #[test]
    fn concurrent_runs_leave_one_valid_key_and_a_matching_certificate() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let layout = EtcLayout::new(dir.path().join("etc"));
            let data = dir.path().join("data");
            std::thread::scope(|s| {
                let runs: Vec<_> = (0..6)
                    .map(|_| s.spawn(|| run(&layout, &data, &[])))
                    .collect();
                let created = runs
                    .into_iter()
                    .map(|r| r.join().unwrap().unwrap().created_key())
                    .filter(|c| *c)
                    .count();
                assert_eq!(created, 1);
            });
            assert_eq!(std::fs::metadata(layout.key_file()).unwrap().len(), 37);
            crate::key::file::read(&layout.key_file()).unwrap();
            crate::tls::Identity::load(&layout).unwrap();
            assert_eq!(
                std::fs::read_dir(layout.credentials_dir()).unwrap().count(),
                1
            );
        }
    }

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
        let third = run(&layout, &data, &["krill.home.arpa".into()]).unwrap();
        assert!(third.to_string().contains("--hostname changed nothing"));
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
