//! File-system primitives shared by the key, certificate and init code:
//! who should own our files, creating directories with exact modes, atomic
//! replacement of a file, and best-effort overwriting before removal.
//!
//! Atomic replacement follows the classic sequence: a new file in the same
//! directory, written, flushed, given its final mode and owner, renamed over
//! the old name, and the directory flushed. A crash at any instant leaves
//! either the whole old file or the whole new one under the final name; at
//! worst a stray temporary file, which [`remove_stale_temporaries`] cleans.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// The system user the service runs as.
pub const SERVICE_USER: &str = "krill";

/// An exclusive `flock` on a directory, held until dropped. Every command
/// that writes or removes files in a directory of ours takes it, so two
/// commands run at once (two `krill init`, `init` beside `key generate`)
/// take turns instead of clobbering each other's temporaries.
pub struct DirLock {
    _lock: nix::fcntl::Flock<File>,
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirLock")
    }
}

/// Waits for, then takes, the exclusive lock on directory `dir`.
pub fn lock_dir(dir: &Path) -> io::Result<DirLock> {
    let handle = File::open(dir)?;
    nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusive)
        .map(|lock| DirLock { _lock: lock })
        .map_err(|(_, errno)| io::Error::from(errno))
}

/// Prefix of temporary files written next to their final name.
pub const TEMP_MARK: &str = ".tmp-";

/// Owner to give our files: `krill:krill` when we run as root and that user
/// exists, otherwise `None` (files stay owned by whoever runs the command,
/// which is what a developer's laptop or a test wants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

impl Owner {
    /// The `krill` user and group, if that user exists on this system.
    pub fn service_account() -> Option<Owner> {
        let user = User::from_name(SERVICE_USER).ok().flatten()?;
        let gid = Group::from_name(SERVICE_USER)
            .ok()
            .flatten()
            .map_or(user.gid, |g| g.gid);
        Some(Owner { uid: user.uid, gid })
    }

    /// The owner our commands should set: the service account when running
    /// as root, otherwise nobody (leave ownership as created).
    pub fn for_service_files() -> Option<Owner> {
        if Uid::effective().is_root() {
            Owner::service_account()
        } else {
            None
        }
    }
}

/// Sets the owner of `path` (no-op for `None`).
pub fn set_owner(path: &Path, owner: Option<Owner>) -> io::Result<()> {
    if let Some(owner) = owner {
        std::os::unix::fs::chown(path, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))?;
    }
    Ok(())
}

/// Creates `path` with exactly `mode` (and `owner`) if it does not exist.
/// Returns whether it was created. An existing directory is left as it is.
pub fn ensure_dir(path: &Path, mode: u32, owner: Option<Owner>) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(false),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists but is not a directory", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)?;
    // The umask may have removed bits; set the exact mode.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    set_owner(path, owner)?;
    Ok(true)
}

/// Atomically replaces (or creates) `path` with `contents`, mode `mode`.
pub fn write_atomically(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> io::Result<()> {
    let temp = temp_path(path);
    let result = write_then_rename(&temp, path, contents, mode, owner);
    if result.is_err() {
        // Best effort: the temporary never held anything the final name
        // depends on, so removing it loses nothing.
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_then_rename(
    temp: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(temp)?;
    crash::point("temp-created");
    file.write_all(contents)?;
    crash::point("temp-written");
    file.sync_all()?;
    crash::point("temp-synced");
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    if let Some(owner) = owner {
        std::os::unix::fs::fchown(&file, Some(owner.uid.as_raw()), Some(owner.gid.as_raw()))?;
    }
    crash::point("temp-final-mode");
    drop(file);
    fs::rename(temp, path)?;
    crash::point("renamed");
    sync_parent(path)
}

/// Simulated crashes for unit tests: `crash::point(NAME)` panics when a
/// test armed NAME on this thread. Unwinding skips every cleanup step, as a
/// killed process would. Outside `cfg(test)` the points compile to nothing.
#[cfg(test)]
pub(crate) mod crash {
    use std::cell::Cell;

    thread_local! {
        static ARMED: Cell<Option<&'static str>> = const { Cell::new(None) };
    }

    /// Arms one point (or none) for this thread.
    pub(crate) fn arm(point: Option<&'static str>) {
        ARMED.with(|armed| armed.set(point));
    }

    pub(crate) fn point(name: &'static str) {
        if ARMED.with(Cell::get) == Some(name) {
            panic!("simulated crash at {name}");
        }
    }
}

#[cfg(not(test))]
pub(crate) mod crash {
    #[inline(always)]
    pub(crate) fn point(_name: &'static str) {}
}

/// Flushes the directory holding `path`, so a rename or unlink in it is on
/// disk.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = parent_of(path);
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A fresh name for a temporary file beside `path`:
/// `.NAME.tmp-<uuid>`.
pub fn temp_path(path: &Path) -> PathBuf {
    sibling(path, TEMP_MARK)
}

/// A fresh hidden name beside `path` with the given marker:
/// `.NAME<mark><uuid>`.
pub fn sibling(path: &Path, mark: &str) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(mark);
    name.push(uuid::Uuid::new_v4().simple().to_string());
    parent_of(path).join(name)
}

/// Names in `path`'s directory that an interrupted write or replacement of
/// `path` left behind (`.NAME<mark>*`).
pub fn stale_siblings(path: &Path, mark: &str) -> io::Result<Vec<PathBuf>> {
    let mut prefix = OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(mark);
    let prefix = prefix.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs::read_dir(parent_of(path))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Overwrites and removes the temporaries an interrupted
/// [`write_atomically`] of `path` may have left. Returns how many.
pub fn remove_stale_temporaries(path: &Path) -> io::Result<usize> {
    let stale = stale_siblings(path, TEMP_MARK)?;
    for temp in &stale {
        shred(temp)?;
    }
    Ok(stale.len())
}

/// Overwrites the file at `path` with random bytes covering at least its
/// length (rounded up to whole file-system blocks), flushes, then removes it
/// and flushes the directory.
///
/// This is best effort: on journaling file systems (ext4 `data=journal`),
/// copy-on-write file systems (btrfs, ZFS), and flash storage with wear
/// levelling (SD cards, SSDs), the old bytes can survive in blocks the file
/// no longer points to. See "Secure deletion" in `docs/keys.md`.
pub fn shred(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    // The file may be read-only (0400); as its owner we may lift that, and
    // root needs no write bit. It is about to disappear either way.
    if meta.mode() & 0o200 == 0 && !Uid::effective().is_root() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let block = meta.blksize().max(512);
    let len = meta.len().max(1).div_ceil(block) * block;
    let mut noise = vec![0u8; 4096];
    let mut written = 0u64;
    while written < len {
        let chunk = (len - written).min(noise.len() as u64) as usize;
        fill_random(&mut noise[..chunk])?;
        file.write_all(&noise[..chunk])?;
        written += chunk as u64;
    }
    file.sync_all()?;
    crash::point("overwritten");
    drop(file);
    fs::remove_file(path)?;
    sync_parent(path)
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| io::Error::other("the operating system's random source failed"))
}

/// Reads at most `limit` bytes of a regular file without following a FIFO
/// or device into a block: the file is opened non-blocking and checked to
/// be regular before reading. Returns `Err(InvalidData)` when the file is
/// larger than `limit`.
pub fn read_small_file(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    read_small(path, limit, 0)
}

/// [`read_small_file`] that also refuses a symbolic link at `path` (for
/// the key file, whose owner and mode are what protect it: a link would
/// make another file, with other modes, the key).
pub fn read_small_file_no_link(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    read_small(path, limit, libc::O_NOFOLLOW).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(io::ErrorKind::InvalidInput, "a symbolic link")
        } else {
            e
        }
    })
}

fn read_small(path: &Path, limit: usize, extra_flags: i32) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY | extra_flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut contents = Vec::with_capacity(meta.len().min(limit as u64) as usize);
    file.take(limit as u64 + 1).read_to_end(&mut contents)?;
    if contents.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomically(&path, b"one", 0o400, None).unwrap();
        write_atomically(&path, b"two", 0o400, None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o400);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn shred_overwrites_the_inode_before_unlinking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, b"0123456789-secret").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        // Keep a second name for the inode to look at its bytes afterwards.
        let witness = dir.path().join("witness");
        fs::hard_link(&path, &witness).unwrap();
        shred(&path).unwrap();
        assert!(!path.exists());
        let after = fs::read(&witness).unwrap();
        assert!(after.len() >= 17);
        assert!(!after.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn ensure_dir_sets_exact_mode_despite_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b");
        assert!(ensure_dir(&path, 0o700, None).unwrap());
        assert!(!ensure_dir(&path, 0o700, None).unwrap());
        let mode = fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn read_small_file_refuses_fifos_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_small_file(&fifo, 10).is_err());
        let big = dir.path().join("big");
        fs::write(&big, [b'a'; 11]).unwrap();
        assert_eq!(
            read_small_file(&big, 10).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
