//! The key file, `ETC_DIR/credentials/api_key`: reading it strictly,
//! replacing it atomically (overwriting the old key's bytes), and removing
//! it securely.
//!
//! Replacement keeps the old key readable under the final name until the
//! new one is complete on disk: the old inode gets a second, hidden name
//! (`.api_key.old-<uuid>`), the new key is written to a temporary and
//! renamed over `api_key`, and only then is the old inode overwritten with
//! random bytes and unlinked. A crash before the rename leaves the old key;
//! after it, the new one. A hidden `.old-` name left by a crash still holds
//! the old key, so every command that touches the key file shreds such
//! leftovers first.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{ApiKey, KeyFormatError};
use crate::fsutil::{self, Owner};

/// Mode of the key file: read-only for its owner.
pub const KEY_FILE_MODE: u32 = 0o400;
/// Mode of the directory holding it.
pub const CREDENTIALS_DIR_MODE: u32 = 0o700;

/// The most we read of a key file: a key, a byte-order mark and generous
/// whitespace fit easily; anything bigger is not a key file.
const READ_LIMIT: usize = 64 * 1024;

/// Marker of the hidden second name the old key gets during replacement.
const OLD_MARK: &str = ".old-";

/// Why the key file could not be used. Every message names the file and the
/// command that fixes it, and none repeats the file's content.
#[derive(Debug)]
pub struct KeyFileError {
    pub path: PathBuf,
    pub kind: KeyFileErrorKind,
}

/// The ways a key file can be unusable.
#[derive(Debug)]
pub enum KeyFileErrorKind {
    /// No file at that path.
    Missing,
    /// The file (or a directory on its path) may not be read by us.
    PermissionDenied,
    /// A directory, FIFO, device or other non-regular file.
    NotRegularFile,
    /// Far larger than any key.
    TooLarge,
    /// The content breaks the key rules.
    Invalid(KeyFormatError),
    /// Any other I/O failure.
    Io(io::Error),
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            KeyFileErrorKind::Missing => write!(
                f,
                "the API key file {path} does not exist; create it with `krill init` \
                 (or `krill key generate`)"
            ),
            KeyFileErrorKind::PermissionDenied => write!(
                f,
                "cannot read the API key file {path}: permission denied; run as the \
                 file's owner (the krill user) or restore its owner and modes with \
                 `sudo krill key fix-permissions`"
            ),
            KeyFileErrorKind::NotRegularFile => write!(
                f,
                "the API key file {path} is not a regular file (a symbolic link, \
                 directory, FIFO or device); remove it and run `krill key generate`"
            ),
            KeyFileErrorKind::TooLarge => write!(
                f,
                "the API key file {path} is larger than {READ_LIMIT} bytes, so it is not \
                 a key file; replace it with `krill key generate`"
            ),
            KeyFileErrorKind::Invalid(e) => write!(
                f,
                "the API key in {path} {e}; write a new one with `krill key generate` \
                 or `krill key set -`"
            ),
            KeyFileErrorKind::Io(e) => write!(
                f,
                "cannot read the API key file {path}: {e}; check the disk and run \
                 `krill key check`"
            ),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Reads and validates the key file at `path`.
pub fn read(path: &Path) -> Result<ApiKey, KeyFileError> {
    let raw = read_raw(path)?;
    parse(path, &raw)
}

/// Reads the key file's bytes without judging them (at most 64 KiB, regular
/// files only). The bytes are wiped from memory when dropped.
pub fn read_raw(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyFileError> {
    let raw = fsutil::read_small_file_no_link(path, READ_LIMIT).map_err(|e| KeyFileError {
        path: path.to_owned(),
        kind: match e.kind() {
            io::ErrorKind::NotFound => KeyFileErrorKind::Missing,
            io::ErrorKind::PermissionDenied => KeyFileErrorKind::PermissionDenied,
            io::ErrorKind::InvalidInput => KeyFileErrorKind::NotRegularFile,
            io::ErrorKind::InvalidData => KeyFileErrorKind::TooLarge,
            _ => KeyFileErrorKind::Io(e),
        },
    })?;
    Ok(zeroize::Zeroizing::new(raw))
}

/// Validates bytes read from the key file at `path`.
pub fn parse(path: &Path, raw: &[u8]) -> Result<ApiKey, KeyFileError> {
    ApiKey::parse(raw).map_err(|e| KeyFileError {
        path: path.to_owned(),
        kind: KeyFileErrorKind::Invalid(e),
    })
}

/// Writes `key` to `path` atomically with mode 0400 and the service owner.
/// If a key file was there, its bytes are overwritten with random data once
/// the new key is safely in place.
pub fn replace(path: &Path, key: &ApiKey, owner: Option<Owner>) -> io::Result<()> {
    let _lock = fsutil::lock_dir(parent_of(path))?;
    shred_leftovers_locked(path)?;
    let old = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => {
            let old = fsutil::sibling(path, OLD_MARK);
            fs::hard_link(path, &old)?;
            fsutil::crash::point("old-linked");
            Some(old)
        }
        _ => None,
    };
    if let Err(e) = fsutil::write_atomically(path, &key.file_contents(), KEY_FILE_MODE, owner) {
        // The old key is still live under `path`: drop only the extra name.
        if let Some(old) = &old {
            let _ = fs::remove_file(old);
        }
        return Err(e);
    }
    fsutil::crash::point("new-in-place");
    let Some(old) = old else {
        return Ok(());
    };
    fsutil::shred(&old).map_err(|e| {
        // At least drop the hidden name; the next key command retries.
        let _ = fs::remove_file(&old);
        io::Error::new(
            e.kind(),
            format!("the new key is in place, but overwriting the old key's bytes failed: {e}"),
        )
    })
}

/// Overwrites the key file with random bytes and removes it.
pub fn shred(path: &Path) -> io::Result<()> {
    let _lock = fsutil::lock_dir(parent_of(path))?;
    shred_leftovers_locked(path)?;
    fsutil::shred(path)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Names beside `path` that an interrupted [`replace`] or write left behind
/// (hidden old-key names and temporaries). They may hold an old key.
pub fn leftovers(path: &Path) -> io::Result<Vec<PathBuf>> {
    let dir_exists = path.parent().is_some_and(Path::exists);
    if !dir_exists {
        return Ok(Vec::new());
    }
    let mut found = fsutil::stale_siblings(path, OLD_MARK)?;
    found.extend(fsutil::stale_siblings(path, fsutil::TEMP_MARK)?);
    Ok(found)
}

/// Shreds what an interrupted [`replace`] may have left beside `path`: old
/// keys under their hidden second name and unfinished temporaries. Takes
/// the directory's lock, so no other writer's temporary is live meanwhile.
pub fn shred_leftovers(path: &Path) -> io::Result<usize> {
    let dir_exists = path.parent().is_some_and(Path::exists);
    if !dir_exists {
        return Ok(0);
    }
    let _lock = fsutil::lock_dir(parent_of(path))?;
    shred_leftovers_locked(path)
}

/// [`shred_leftovers`] for callers already holding the directory's lock.
fn shred_leftovers_locked(path: &Path) -> io::Result<usize> {
    let dir_exists = path.parent().is_some_and(Path::exists);
    if !dir_exists {
        return Ok(0);
    }
    let mut count = fsutil::remove_stale_temporaries(path)?;
    let live = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    for old in fsutil::stale_siblings(path, OLD_MARK)? {
        // A crash between linking the old key to its hidden name and the
        // rename leaves that name on the *live* inode: overwriting it would
        // destroy the current key, so only the extra name goes.
        let same_inode = fs::symlink_metadata(&old)
            .ok()
            .is_some_and(|m| Some((m.dev(), m.ino())) == live);
        if same_inode {
            fs::remove_file(&old)?;
            fsutil::sync_parent(&old)?;
        } else {
            fsutil::shred(&old)?;
        }
        count += 1;
    }
    Ok(count)
}

/// A warning when the key in the file at `path` is weak (short, or
/// missing letters, digits or other characters): the server accepts it,
/// as an admin may have set it on purpose, but says so at every load.
pub fn weakness_warning(key: &ApiKey, path: &Path) -> Option<String> {
    let weaknesses = key.weaknesses();
    (!weaknesses.is_empty()).then(|| {
        format!(
            "the API key in {} is weak ({}); replace it with a random one with \
             `krill key rotate`",
            path.display(),
            weaknesses.join("; ")
        )
    })
}

/// Warnings about who else can read the key: the file or its directory
/// readable (or writable) by group or others. Empty when all is tight.
pub fn exposure_warnings(path: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    let dir = path.parent().unwrap_or(Path::new("."));
    for (what, p, wanted) in [
        ("directory", dir, CREDENTIALS_DIR_MODE),
        ("file", path, KEY_FILE_MODE),
    ] {
        if let Ok(meta) = fs::metadata(p) {
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                warnings.push(format!(
                    "the API key {what} {} has mode {mode:04o}, so other users can reach \
                     it; restore {wanted:04o} with `sudo krill key fix-permissions`",
                    p.display()
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_key_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api_key");
        (dir, path)
    }

    #[test]
    fn replace_writes_37_bytes_with_mode_0400() {
        let (_dir, path) = temp_key_path();
        let key = ApiKey::generate();
        replace(&path, &key, None).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 37);
        assert_eq!(meta.mode() & 0o777, 0o400);
        assert!(read(&path).unwrap().matches(key.expose().as_bytes()));
    }

    #[test]
    fn replace_overwrites_the_old_key_bytes() {
        let (dir, path) = temp_key_path();
        let old = ApiKey::parse(b"the-old-key-material-0123456789").unwrap();
        replace(&path, &old, None).unwrap();
        let witness = dir.path().join("witness");
        fs::hard_link(&path, &witness).unwrap();
        replace(&path, &ApiKey::generate(), None).unwrap();
        let after = fs::read(&witness).unwrap();
        assert!(!after.windows(7).any(|w| w == b"old-key"));
        // Only the key and our witness remain: no leftovers.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn leftovers_of_an_interrupted_replacement_are_shredded() {
        let (dir, path) = temp_key_path();
        replace(&path, &ApiKey::generate(), None).unwrap();
        let stale = dir.path().join(".api_key.old-deadbeef");
        fs::write(&stale, b"old").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o400)).unwrap();
        replace(&path, &ApiKey::generate(), None).unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn a_hidden_name_left_on_the_live_key_is_unlinked_not_shredded() {
        // A crash after `replace` linked the old key to its hidden name but
        // before the rename leaves both names on the current key.
        let (dir, path) = temp_key_path();
        let key = ApiKey::generate();
        replace(&path, &key, None).unwrap();
        fs::hard_link(&path, dir.path().join(".api_key.old-feedface")).unwrap();
        assert_eq!(shred_leftovers(&path).unwrap(), 1);
        assert!(read(&path).unwrap().matches(key.expose().as_bytes()));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Every step of a replacement, in order; the rename is where the new
    /// key takes over.
    const CRASH_POINTS: [(&str, bool); 8] = [
        ("old-linked", false),
        ("temp-created", false),
        ("temp-written", false),
        ("temp-synced", false),
        ("temp-final-mode", false),
        ("renamed", true),
        ("new-in-place", true),
        ("overwritten", true),
    ];

    #[test]
    fn a_crash_at_any_step_of_replace_leaves_the_whole_old_or_new_key() {
        for (point, new_expected) in CRASH_POINTS {
            let (dir, path) = temp_key_path();
            let old = ApiKey::generate();
            replace(&path, &old, None).unwrap();
            let new = ApiKey::generate();

            crate::fsutil::crash::arm(Some(point));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                replace(&path, &new, None)
            }));
            crate::fsutil::crash::arm(None);
            assert!(outcome.is_err(), "{point} was never reached");

            let now = read(&path).unwrap();
            let (is_old, is_new) = (
                now.matches(old.expose().as_bytes()),
                now.matches(new.expose().as_bytes()),
            );
            assert!(is_new == new_expected && is_old != new_expected, "{point}");
            assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o400);

            // The next replacement cleans up whatever the crash left.
            let third = ApiKey::generate();
            replace(&path, &third, None).unwrap();
            assert!(read(&path).unwrap().matches(third.expose().as_bytes()));
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "{point}");
        }
    }

    #[test]
    fn a_symbolic_link_at_the_key_path_is_refused() {
        let (dir, path) = temp_key_path();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"vm\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            matches!(err.kind, KeyFileErrorKind::NotRegularFile),
            "{err}"
        );
        assert!(err.to_string().contains("symbolic link"));
    }

    #[test]
    fn read_errors_name_the_file_and_the_fix() {
        let (_dir, path) = temp_key_path();
        let err = read(&path).unwrap_err();
        assert!(matches!(err.kind, KeyFileErrorKind::Missing));
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()));
        assert!(text.contains("krill init"));

        fs::write(&path, b"two words\n").unwrap();
        let text = read(&path).unwrap_err().to_string();
        assert!(text.contains("krill key generate"));
        assert!(!text.contains("words"));
    }

    #[test]
    fn exposure_is_reported() {
        let (dir, path) = temp_key_path();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        replace(&path, &ApiKey::generate(), None).unwrap();
        assert!(exposure_warnings(&path).is_empty());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(exposure_warnings(&path).len(), 1);
    }
}
