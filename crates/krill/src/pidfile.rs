//! The server's pid file, `DATA_DIR/krill.pid`, and signalling the server
//! it names (`krill key rotate` sends SIGHUP through it).
//!
//! The server writes the file (atomically, mode 0644) once it is listening
//! and removes it when it stops cleanly, if it still names this process.
//! A server killed outright leaves a *stale* file behind. Nothing trusts a
//! pid file blindly: a pid counts as a running server only when a process
//! with that pid exists and its name (`/proc/PID/comm`) is `krill`, so a
//! stale file whose pid was reused by another program never gets that
//! program signalled. A new server simply replaces a stale file; a file
//! naming another live krill server is replaced too, with a warning, since
//! the newest server is the one an admin means to reach.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::fsutil;

/// Name of the pid file inside the data directory.
pub const PID_FILE_NAME: &str = "krill.pid";

/// Mode of the pid file: anyone may read which process is the server.
const PID_FILE_MODE: u32 = 0o644;

/// Process name a running server has (`/proc/PID/comm`).
const PROCESS_NAME: &str = "krill";

/// Where the pid file of a server using `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(PID_FILE_NAME)
}

/// What the pid file says about a running server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No pid file: no server is running with this data directory (or it
    /// runs under systemd with a different one).
    NoFile,
    /// A pid file whose process is gone, or is not a krill server.
    Stale(i32),
    /// A live krill server.
    Running(i32),
    /// The pid file exists but cannot be read or does not hold a pid.
    Unreadable(String),
}

/// Looks up the server named by the pid file in `data_dir`.
pub fn lookup(data_dir: &Path) -> Lookup {
    let file = path(data_dir);
    let text = match fsutil::read_small_file(&file, 64) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::NoFile,
        Err(e) => return Lookup::Unreadable(e.to_string()),
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Lookup::Unreadable("it does not hold a process id".to_owned());
    };
    if pid > 0 && is_krill_process(pid) {
        Lookup::Running(pid)
    } else {
        Lookup::Stale(pid)
    }
}

/// True when process `pid` exists and is named `krill`.
fn is_krill_process(pid: i32) -> bool {
    let alive = match signal::kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        // The process exists but belongs to someone else.
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    };
    if !alive {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(name) => name.trim_end() == PROCESS_NAME,
        // Without /proc we cannot tell; a live pid is the best we know.
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// Sends SIGHUP (reload key and certificate) to `pid`.
pub fn signal_reload(pid: i32) -> io::Result<()> {
    signal::kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(io::Error::from)
}

/// The pid file of this process; removed when dropped if it still names
/// this process.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to `DATA_DIR/krill.pid`, replacing a stale
    /// file (and, with a warning, one naming another live server).
    pub fn create(data_dir: &Path) -> io::Result<PidFile> {
        let file = path(data_dir);
        let pid = std::process::id();
        match lookup(data_dir) {
            Lookup::Running(other) if other != pid as i32 => tracing::warn!(
                file = %file.display(),
                other_pid = other,
                "another krill server seems to use this data directory; the pid file \
                 now names this one, so `krill key rotate` signals this server"
            ),
            Lookup::Stale(old) => tracing::info!(
                file = %file.display(),
                old_pid = old,
                "replacing a stale pid file left by a server that did not stop cleanly"
            ),
            _ => {}
        }
        fsutil::write_atomically(&file, format!("{pid}\n").as_bytes(), PID_FILE_MODE, None)?;
        Ok(PidFile { path: file, pid })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = fs::read_to_string(&self.path)
            .map(|text| text.trim() == self.pid.to_string())
            .unwrap_or(false);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_garbage_and_dead_pids_are_not_running_servers() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lookup(dir.path()), Lookup::NoFile);
        fs::write(path(dir.path()), "not a pid\n").unwrap();
        assert!(matches!(lookup(dir.path()), Lookup::Unreadable(_)));
        // Our own process is alive but is a test binary, not `krill`.
        let me = std::process::id() as i32;
        fs::write(path(dir.path()), format!("{me}\n")).unwrap();
        assert_eq!(lookup(dir.path()), Lookup::Stale(me));
        // Pids above the kernel's pid_max never exist.
        fs::write(path(dir.path()), "2147483000\n").unwrap();
        assert_eq!(lookup(dir.path()), Lookup::Stale(2_147_483_000));
    }

    #[test]
    fn the_pid_file_is_removed_on_drop_only_if_still_ours() {
        let dir = tempfile::tempdir().unwrap();
        let file = PidFile::create(dir.path()).unwrap();
        let text = fs::read_to_string(path(dir.path())).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(file);
        assert!(!path(dir.path()).exists());

        let file = PidFile::create(dir.path()).unwrap();
        fs::write(path(dir.path()), "1\n").unwrap();
        drop(file);
        assert!(path(dir.path()).exists());
    }
}
