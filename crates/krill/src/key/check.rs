//! `krill key check` and `krill key fix-permissions`: diagnosing the key
//! file the way the reference document's troubleshooting section does by
//! hand (`ls -la`, `stat`, `cat`), and restoring modes and owner.
//!
//! Each [`Problem`] is one line naming the path and the exact command that
//! fixes it. The owner checks apply only where the service user (`krill`)
//! exists; without it (a laptop, a test) files belong to whoever made them.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use super::file::{self as key_file, KeyFileErrorKind, CREDENTIALS_DIR_MODE, KEY_FILE_MODE};
use super::KeyFormatError;
use crate::cli::shell_quote;
use crate::fsutil::{self, Owner, SERVICE_USER};
use crate::settings::EtcLayout;

/// One thing wrong with the key file or its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, naming the path.
    pub what: String,
    /// The shell command that fixes it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {}", self.what, self.fix)
    }
}

/// Everything wrong with the key of `layout`, judged against the service
/// account `service` (normally [`Owner::service_account`]). Empty when the
/// key is healthy.
pub fn diagnose(layout: &EtcLayout, service: Option<Owner>) -> Vec<Problem> {
    let mut check = Checker {
        dir: layout.credentials_dir(),
        file: layout.key_file(),
        etc: etc_flag(layout),
        service,
        problems: Vec::new(),
    };
    // A missing or odd directory or file makes the later checks moot.
    if let Some(dir_meta) = check.entry(true) {
        check.mode_and_owner(&dir_meta, true);
        if let Some(file_meta) = check.entry(false) {
            check.mode_and_owner(&file_meta, false);
            check.content();
            check.service_access();
            check.leftovers();
        }
    }
    check.problems
}

/// The state of one `diagnose` run.
struct Checker {
    dir: PathBuf,
    file: PathBuf,
    /// ` --etc-dir DIR` for printed commands, or nothing for the default.
    etc: String,
    service: Option<Owner>,
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, what: String, fix: String) {
        self.problems.push(Problem { what, fix });
    }

    fn path(&self, is_dir: bool) -> &Path {
        if is_dir {
            &self.dir
        } else {
            &self.file
        }
    }

    /// The directory's or file's metadata, or `None` after recording why
    /// it is missing or not what it should be.
    fn entry(&mut self, is_dir: bool) -> Option<fs::Metadata> {
        let path = self.path(is_dir).to_owned();
        let etc = self.etc.clone();
        let generate = format!("sudo krill key generate{etc}");
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() == is_dir && (is_dir || meta.is_file()) => Some(meta),
            Ok(_) => {
                let kind = if is_dir {
                    "a directory"
                } else {
                    "a regular file"
                };
                self.problem(
                    format!("{} is not {kind}", path.display()),
                    format!("sudo rm -r {} && {generate}", shell_quote(&path)),
                );
                None
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let what = if is_dir {
                    format!(
                        "the credentials directory {} is missing, and with it the key file",
                        path.display()
                    )
                } else {
                    format!("the API key file {} is missing", path.display())
                };
                self.problem(what, generate);
                None
            }
            Err(e) => {
                self.problem(
                    format!("cannot inspect {}: {e}", path.display()),
                    format!("sudo krill key check{etc}"),
                );
                None
            }
        }
    }

    /// Exact mode, and owner where the service account exists.
    fn mode_and_owner(&mut self, meta: &fs::Metadata, is_dir: bool) {
        let path = self.path(is_dir).to_owned();
        let quoted = shell_quote(&path);
        let (what, wanted) = if is_dir {
            ("the directory", CREDENTIALS_DIR_MODE)
        } else {
            ("the API key file", KEY_FILE_MODE)
        };
        let mode = meta.mode() & 0o7777;
        if mode != wanted {
            self.problem(
                format!(
                    "{what} {} has mode {mode:04o}, expected {wanted:04o}",
                    path.display()
                ),
                format!("sudo chmod {wanted:04o} {quoted}"),
            );
        }
        if let Some(owner) = self.service {
            if !owned_by(meta, owner) {
                self.problem(
                    format!(
                        "{what} {} is owned by {}, expected {SERVICE_USER}:{SERVICE_USER}",
                        path.display(),
                        owner_name(meta)
                    ),
                    format!("sudo chown {SERVICE_USER}:{SERVICE_USER} {quoted}"),
                );
            }
        }
    }

    /// The key itself: empty, oversized or breaking the format rules.
    fn content(&mut self) {
        let Err(e) = key_file::read(&self.file) else {
            return;
        };
        let (file, etc) = (self.file.display().to_string(), self.etc.clone());
        let generate = format!("sudo krill key generate{etc}");
        match e.kind {
            KeyFileErrorKind::Invalid(KeyFormatError::Empty) => self.problem(
                format!("the API key file {file} is empty (or holds only whitespace)"),
                generate,
            ),
            KeyFileErrorKind::Invalid(format) => self.problem(
                format!(
                    "the API key file {file} does not hold a valid key: it {format} (to \
                     keep a custom key instead, pipe it into `sudo krill key set{etc} -`)"
                ),
                generate,
            ),
            KeyFileErrorKind::TooLarge => self.problem(
                format!("the API key file {file} is far too large to be a key"),
                generate,
            ),
            KeyFileErrorKind::PermissionDenied => self.problem(
                format!(
                    "cannot read {file} as user {}: permission denied, so the key could \
                     not be checked",
                    Uid::effective()
                ),
                format!("sudo krill key check{etc}"),
            ),
            _ => self.problem(e.to_string(), format!("sudo krill key check{etc}")),
        }
    }

    /// Whether the service user can reach and read the file.
    fn service_access(&mut self) {
        let Some(owner) = self.service else {
            return;
        };
        let Some(blocker) = unreadable_for(owner, &self.file) else {
            return;
        };
        let fix = if blocker == self.file || blocker == self.dir {
            format!("sudo krill key fix-permissions{}", self.etc)
        } else {
            format!("sudo chmod o+x {}", shell_quote(&blocker))
        };
        let why = if blocker == self.file {
            "its mode and owner do not allow it".to_owned()
        } else {
            format!("it may not enter {}", blocker.display())
        };
        self.problem(
            format!(
                "the {SERVICE_USER} user cannot read {} ({why}), so the server will not \
                 start",
                self.file.display(),
            ),
            fix,
        );
    }

    /// Leftovers of an interrupted replacement, which may hold an old key.
    fn leftovers(&mut self) {
        let count = key_file::leftovers(&self.file).map_or(0, |found| found.len());
        if count > 0 {
            self.problem(
                format!(
                    "{count} leftover file(s) from an interrupted key change in {} may \
                     hold an old key",
                    self.dir.display()
                ),
                format!("sudo krill key fix-permissions{}", self.etc),
            );
        }
    }
}

/// What [`fix_permissions`] changed, one line each.
pub type Changes = Vec<String>;

/// Why permissions could not be restored.
#[derive(Debug)]
pub struct FixError {
    pub path: PathBuf,
    pub detail: String,
}

impl fmt::Display for FixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot fix {}: {}", self.path.display(), self.detail)
    }
}

impl std::error::Error for FixError {}

/// Restores the credentials directory to 0700 and the key file to 0400,
/// both owned by `owner` when given, and shreds leftovers of interrupted
/// key changes. Returns what changed.
pub fn fix_permissions(layout: &EtcLayout, owner: Option<Owner>) -> Result<Changes, FixError> {
    let dir = layout.credentials_dir();
    let file = layout.key_file();
    let etc = etc_flag(layout);
    let mut changes = Vec::new();
    for (path, is_dir, mode) in [
        (&dir, true, CREDENTIALS_DIR_MODE),
        (&file, false, KEY_FILE_MODE),
    ] {
        let error = |detail: String| FixError {
            path: path.clone(),
            detail,
        };
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(error(format!(
                    "it does not exist; create the key with `sudo krill key generate{etc}`"
                )))
            }
            Err(e) => return Err(error(format!("{e}; run as root (sudo)"))),
        };
        // chmod and chown follow symbolic links: touch only the real thing.
        let right_kind = if is_dir {
            meta.is_dir()
        } else {
            meta.is_file()
        };
        if !right_kind {
            let kind = if is_dir {
                "a directory"
            } else {
                "a regular file"
            };
            return Err(error(format!(
                "it is not {kind}; remove it and run `sudo krill key generate{etc}`"
            )));
        }
        let current = meta.mode() & 0o7777;
        if current != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| error(format!("{e}; run as root (sudo)")))?;
            changes.push(format!(
                "mode of {} {current:04o} -> {mode:04o}",
                path.display()
            ));
        }
        if let Some(owner) = owner {
            if !owned_by(&meta, owner) {
                fsutil::set_owner(path, Some(owner))
                    .map_err(|e| error(format!("{e}; run as root (sudo)")))?;
                changes.push(format!(
                    "owner of {} {} -> {SERVICE_USER}:{SERVICE_USER}",
                    path.display(),
                    owner_name(&meta)
                ));
            }
        }
    }
    let removed = key_file::shred_leftovers(&file).map_err(|e| FixError {
        path: dir.clone(),
        detail: format!("cannot shred leftover files: {e}; run as root (sudo)"),
    })?;
    if removed > 0 {
        changes.push(format!(
            "shredded {removed} leftover file(s) of an interrupted key change in {}",
            dir.display()
        ));
    }
    Ok(changes)
}

/// ` --etc-dir DIR` when the layout is not the default, so printed commands
/// work as given.
fn etc_flag(layout: &EtcLayout) -> String {
    if layout.root == Path::new(crate::settings::DEFAULT_ETC_DIR) {
        String::new()
    } else {
        format!(" --etc-dir {}", shell_quote(&layout.root))
    }
}

fn owned_by(meta: &fs::Metadata, owner: Owner) -> bool {
    meta.uid() == owner.uid.as_raw() && meta.gid() == owner.gid.as_raw()
}

fn owner_name(meta: &fs::Metadata) -> String {
    let user = nix::unistd::User::from_uid(Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    let group = nix::unistd::Group::from_gid(Gid::from_raw(meta.gid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    format!("{user}:{group}")
}

/// The first path that keeps `who` from reading `file`: a directory on the
/// way it may not search, or the file it may not read. `None` when it can.
/// Judged from modes and owners (the kernel's rule for a non-root user);
/// ACLs are not consulted.
fn unreadable_for(who: Owner, file: &Path) -> Option<PathBuf> {
    let groups = groups_of(who);
    let allows = |meta: &fs::Metadata, bit: u32| {
        let mode = meta.mode();
        if meta.uid() == who.uid.as_raw() {
            mode & (bit << 6) != 0
        } else if groups.contains(&meta.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    };
    let absolute = std::path::absolute(file).ok()?;
    for dir in absolute
        .ancestors()
        .skip(1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let meta = fs::metadata(dir).ok()?;
        if !allows(&meta, 0o1) {
            return Some(dir.to_owned());
        }
    }
    let meta = fs::metadata(&absolute).ok()?;
    (!allows(&meta, 0o4)).then(|| absolute.clone())
}

fn groups_of(who: Owner) -> Vec<u32> {
    let mut groups = vec![who.gid.as_raw()];
    if let Ok(Some(user)) = nix::unistd::User::from_uid(who.uid) {
        if let Ok(name) = std::ffi::CString::new(user.name) {
            if let Ok(list) = nix::unistd::getgrouplist(&name, who.gid) {
                groups.extend(list.iter().map(|g| g.as_raw()));
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ApiKey;

    /// The unprivileged `nobody` account stands in for `krill` here.
    const NOBODY: u32 = 65534;

    fn nobody() -> Owner {
        Owner {
            uid: Uid::from_raw(NOBODY),
            gid: Gid::from_raw(NOBODY),
        }
    }

    fn healthy(owner: Option<Owner>) -> (tempfile::TempDir, EtcLayout) {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let layout = EtcLayout::new(dir.path().join("etc"));
        fsutil::ensure_dir(&layout.root, 0o755, None).unwrap();
        fsutil::ensure_dir(&layout.credentials_dir(), 0o700, owner).unwrap();
        key_file::replace(&layout.key_file(), &ApiKey::generate(), owner).unwrap();
        (dir, layout)
    }

    fn lines(problems: &[Problem]) -> String {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_healthy_key_has_no_problems() {
        let (_dir, layout) = healthy(None);
        assert!(diagnose(&layout, None).is_empty());
    }

    #[test]
    fn modes_are_diagnosed_with_the_chmod_that_fixes_them() {
        let (_dir, layout) = healthy(None);
        fs::set_permissions(layout.key_file(), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(layout.credentials_dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let problems = diagnose(&layout, None);
        assert_eq!(problems.len(), 2, "{}", lines(&problems));
        assert!(problems[0].fix.starts_with("sudo chmod 0700 "));
        assert!(problems[1].fix.starts_with("sudo chmod 0400 "));
        let changes = fix_permissions(&layout, None).unwrap();
        assert_eq!(changes.len(), 2);
        assert!(diagnose(&layout, None).is_empty());
        assert!(fix_permissions(&layout, None).unwrap().is_empty());
    }

    // Changing owners needs root; as another user this test checks nothing
    // it cannot set up, so it returns early.
    #[test]
    fn wrong_owner_and_unreadable_for_the_service_user_are_diagnosed_then_fixed() {
        if !Uid::effective().is_root() {
            return;
        }
        let (_dir, layout) = healthy(None);
        let problems = diagnose(&layout, Some(nobody()));
        let text = lines(&problems);
        // Directory owner, file owner, and the service user locked out.
        assert_eq!(problems.len(), 3, "{text}");
        assert!(
            problems[0].fix.starts_with("sudo chown krill:krill "),
            "{text}"
        );
        assert!(
            problems[1].fix.starts_with("sudo chown krill:krill "),
            "{text}"
        );
        assert!(problems[2].what.contains("cannot read"), "{text}");
        assert!(problems[2]
            .fix
            .starts_with("sudo krill key fix-permissions"));

        let changes = fix_permissions(&layout, Some(nobody())).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(diagnose(&layout, Some(nobody())).is_empty());
    }

    #[test]
    fn a_service_user_blocked_by_a_parent_directory_is_diagnosed() {
        if !Uid::effective().is_root() {
            return;
        }
        let (_dir, layout) = healthy(Some(nobody()));
        assert!(diagnose(&layout, Some(nobody())).is_empty());
        fs::set_permissions(&layout.root, fs::Permissions::from_mode(0o700)).unwrap();
        let problems = diagnose(&layout, Some(nobody()));
        assert_eq!(problems.len(), 1, "{}", lines(&problems));
        assert!(problems[0].fix.starts_with("sudo chmod o+x "));
    }

    #[test]
    fn missing_empty_and_invalid_files_are_diagnosed() {
        let (_dir, layout) = healthy(None);
        let file = layout.key_file();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&file, b"").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
        let problems = diagnose(&layout, None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("is empty"));
        assert!(problems[0].fix.contains("krill key generate --etc-dir "));

        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&file, b"two words\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
        let problems = diagnose(&layout, None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("not hold a valid key"));
        assert!(!problems[0].what.contains("words"));

        fs::remove_file(&file).unwrap();
        let problems = diagnose(&layout, None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("is missing"));

        fs::remove_dir(layout.credentials_dir()).unwrap();
        let problems = diagnose(&layout, None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("credentials directory"));
    }

    #[test]
    fn leftovers_are_diagnosed_and_shredded_by_fix_permissions() {
        let (_dir, layout) = healthy(None);
        let stale = layout.credentials_dir().join(".api_key.old-0123");
        fs::write(&stale, b"old-key\n").unwrap();
        let problems = diagnose(&layout, None);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("leftover"));
        let changes = fix_permissions(&layout, None).unwrap();
        assert_eq!(changes.len(), 1);
        assert!(!stale.exists());
    }
}
