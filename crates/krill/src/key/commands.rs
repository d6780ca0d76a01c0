//! The `krill key` commands (SPEC §2): generate, show, rotate, set, check,
//! fix-permissions and shred.
//!
//! Only `generate`, `rotate` and `show` write the key, once, to standard
//! output; everything else they say goes to standard error, so
//! `KEY=$(krill key rotate)` captures the key and nothing more. No other
//! command prints the key, and no message quotes it.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;

use zeroize::Zeroizing;

use super::check;
use super::file::{self as key_file, CREDENTIALS_DIR_MODE};
use super::ApiKey;
use crate::cli::shell_quote;
use crate::fsutil::{self, Owner};
use crate::init::ETC_DIR_MODE;
use crate::pidfile::{self, Lookup};
use crate::settings::EtcLayout;

/// The most read from standard input by `krill key set -`.
const STDIN_LIMIT: u64 = 64 * 1024;

/// A `krill key` command failed; the message names the file and the fix.
#[derive(Debug)]
pub struct KeyCommandError(String);

impl fmt::Display for KeyCommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyCommandError {}

impl From<key_file::KeyFileError> for KeyCommandError {
    fn from(e: key_file::KeyFileError) -> KeyCommandError {
        KeyCommandError(e.to_string())
    }
}

type Result<T> = std::result::Result<T, KeyCommandError>;

/// Where `krill key set` takes the key from.
#[derive(Debug)]
pub enum KeySource {
    /// Standard input (`-`, or no argument).
    Stdin,
    /// A command-line argument (visible to other users).
    Argument(Zeroizing<String>),
}

/// `krill key generate`: a new random key replaces the old one (whose bytes
/// are overwritten). Prints the key once to stdout.
pub fn generate(layout: &EtcLayout) -> Result<()> {
    write_new_key(layout)?;
    eprintln!("{}", RUNNING_SERVER_NOTE);
    Ok(())
}

/// Makes, installs and prints a new random key (the common part of
/// `generate` and `rotate`).
fn write_new_key(layout: &EtcLayout) -> Result<()> {
    let key = ApiKey::generate();
    install(layout, &key)?;
    print_key(&key)?;
    eprintln!(
        "krill: wrote a new API key to {} (the old key's bytes were overwritten)",
        layout.key_file().display()
    );
    Ok(())
}

/// `krill key rotate`: generate, then tell the running server to reload.
pub fn rotate(layout: &EtcLayout, data_dir: &Path) -> Result<()> {
    write_new_key(layout)?;
    eprintln!("krill: {}", notify_server(data_dir));
    Ok(())
}

/// `krill key show`: prints the key.
pub fn show(layout: &EtcLayout) -> Result<()> {
    let key = key_file::read(&layout.key_file())?;
    print_key(&key)
}

/// `krill key set`: installs a custom key after checking it.
pub fn set(layout: &EtcLayout, source: KeySource, force: bool) -> Result<()> {
    let raw = match source {
        KeySource::Argument(text) => {
            eprintln!(
                "krill: warning: a key given as an argument can be seen by other users of \
                 this machine (ps, /proc) and may stay in your shell history; prefer \
                 `krill key set -` and type or pipe the key"
            );
            Zeroizing::new(text.as_bytes().to_vec())
        }
        KeySource::Stdin => read_stdin()?,
    };
    let key = ApiKey::parse(&raw).map_err(|e| {
        KeyCommandError(format!(
            "the key given to `krill key set` {e}; nothing was changed in {}",
            layout.key_file().display()
        ))
    })?;
    let weaknesses = key.weaknesses();
    if !weaknesses.is_empty() {
        let why = weaknesses.join("; ");
        if !force {
            return Err(KeyCommandError(format!(
                "refusing a weak key ({why}); use at least 32 characters mixing letters, \
                 digits and other characters, or `krill key generate` for a random one \
                 (`--force` accepts it anyway); nothing was changed in {}",
                layout.key_file().display()
            )));
        }
        eprintln!("krill: warning: installing a weak key because of --force ({why})");
    }
    install(layout, &key)?;
    eprintln!(
        "krill: wrote the new API key to {} (the old key's bytes were overwritten)",
        layout.key_file().display()
    );
    eprintln!("{}", RUNNING_SERVER_NOTE);
    Ok(())
}

/// `krill key check`: one line per problem on stdout; an error (non-zero
/// exit) when there is any.
pub fn check(layout: &EtcLayout) -> Result<()> {
    let problems = check::diagnose(layout, Owner::service_account());
    if problems.is_empty() {
        println!(
            "ok: {} holds a valid key; file mode 0400, directory mode 0700{}",
            layout.key_file().display(),
            if Owner::service_account().is_some() {
                ", both owned by krill:krill"
            } else {
                " (no krill user here, so ownership is not checked)"
            }
        );
        return Ok(());
    }
    for problem in &problems {
        println!("problem: {problem}");
    }
    Err(KeyCommandError(format!(
        "{} problem(s) with the API key in {}; run the commands shown above",
        problems.len(),
        layout.credentials_dir().display()
    )))
}

/// `krill key fix-permissions`: restore modes (and owner, as root where the
/// krill user exists) and report what changed.
pub fn fix_permissions(layout: &EtcLayout) -> Result<()> {
    let service = Owner::service_account();
    let owner = Owner::for_service_files();
    if service.is_some() && owner.is_none() {
        eprintln!(
            "krill: note: not running as root, so owners are left as they are; run \
             `sudo krill key fix-permissions` to give the files to krill:krill"
        );
    }
    let changes =
        check::fix_permissions(layout, owner).map_err(|e| KeyCommandError(e.to_string()))?;
    if changes.is_empty() {
        println!(
            "nothing to change in {}",
            layout.credentials_dir().display()
        );
    }
    for change in &changes {
        println!("changed {change}");
    }
    Ok(())
}

/// `krill key shred`: overwrite the key file with random bytes, remove it.
pub fn shred(layout: &EtcLayout) -> Result<()> {
    let path = layout.key_file();
    let leftovers = key_file::shred_leftovers(&path).map_err(|e| write_error(&path, &e))?;
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            println!("no key file at {}; nothing to shred", path.display());
        }
        _ => {
            key_file::shred(&path).map_err(|e| write_error(&path, &e))?;
            println!(
                "overwrote {} with random bytes and removed it",
                path.display()
            );
        }
    }
    if leftovers > 0 {
        println!("also shredded {leftovers} leftover file(s) of an interrupted key change");
    }
    eprintln!(
        "krill: a running server keeps the key it has loaded until it stops \
         (`sudo systemctl stop krill`); it starts again only after `krill key generate`. \
         Overwriting is best effort on journaling and copy-on-write file systems and on \
         flash storage; see docs/keys.md"
    );
    Ok(())
}

const RUNNING_SERVER_NOTE: &str = "krill: a running server picks up the new key by itself \
     within a second (or at once with `sudo systemctl reload krill`)";

/// Writes `key` atomically, creating the directories it needs.
fn install(layout: &EtcLayout, key: &ApiKey) -> Result<()> {
    let owner = Owner::for_service_files();
    let dir = layout.credentials_dir();
    fsutil::ensure_dir(&layout.root, ETC_DIR_MODE, None)
        .and_then(|_| fsutil::ensure_dir(&dir, CREDENTIALS_DIR_MODE, owner))
        .map_err(|e| write_error(&dir, &e))?;
    let path = layout.key_file();
    key_file::replace(&path, key, owner).map_err(|e| write_error(&path, &e))?;
    for warning in key_file::exposure_warnings(&path) {
        eprintln!("krill: warning: {warning}");
    }
    Ok(())
}

fn write_error(path: &Path, e: &io::Error) -> KeyCommandError {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        "run the command as root (sudo) or as the owner of the credentials directory"
    } else {
        "check the disk, then run `krill key check`"
    };
    KeyCommandError(format!(
        "cannot change {}: {e}; no file was left half-written; {hint}",
        shell_quote(path)
    ))
}

fn print_key(key: &ApiKey) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", key.expose())
        .and_then(|()| out.flush())
        .map_err(|e| KeyCommandError(format!("cannot write the key to standard output: {e}")))
}

/// Reads a key from standard input: one line from a terminal, everything
/// (up to a limit) from a pipe or file.
fn read_stdin() -> Result<Zeroizing<Vec<u8>>> {
    let stdin = io::stdin();
    let mut raw = Zeroizing::new(Vec::new());
    let result = if stdin.is_terminal() {
        let mut line = Zeroizing::new(String::new());
        let read = without_echo(|| {
            // Prompt only once echo is off.
            eprint!("Type the new API key (not shown), then Enter: ");
            stdin.lock().read_line(&mut line)
        });
        eprintln!();
        raw.extend_from_slice(line.as_bytes());
        read.map(|_| ())
    } else {
        stdin
            .lock()
            .take(STDIN_LIMIT + 1)
            .read_to_end(&mut raw)
            .map(|_| ())
    };
    result.map_err(|e| KeyCommandError(format!("cannot read the key from standard input: {e}")))?;
    if raw.len() as u64 > STDIN_LIMIT {
        return Err(KeyCommandError(
            "standard input holds more than 64 KiB, which is not a key; pipe just the key \
             into `krill key set -`"
                .to_owned(),
        ));
    }
    Ok(raw)
}

/// Runs `read` with the terminal's echo off, so a typed key is not shown,
/// and restores the terminal afterwards. If echo cannot be turned off (not
/// a real terminal), reads anyway.
fn without_echo<T>(read: impl FnOnce() -> T) -> T {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    let stdin = io::stdin();
    let Ok(saved) = termios::tcgetattr(&stdin) else {
        return read();
    };
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    let result = read();
    let _ = termios::tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    result
}

/// Asks the server named by the pid file to reload, and says what happened.
fn notify_server(data_dir: &Path) -> String {
    let file = pidfile::path(data_dir);
    let fallback = "a server running under systemd reloads with `sudo systemctl reload krill`, \
                    and any running server picks up the new key by itself within a second";
    match pidfile::lookup(data_dir) {
        Lookup::Running(pid) => match pidfile::signal_reload(pid) {
            Ok(()) => format!("asked the running server (pid {pid}) to reload the key"),
            Err(e) => format!(
                "could not signal the server (pid {pid} in {}): {e}; {fallback}",
                file.display()
            ),
        },
        Lookup::NoFile => format!(
            "no running server found (no pid file {}); {fallback}",
            file.display()
        ),
        Lookup::Stale(pid) => format!(
            "no running server found ({} names pid {pid}, which is not a krill server: \
             a stale file from a server that did not stop cleanly); {fallback}",
            file.display()
        ),
        Lookup::Unreadable(e) => format!(
            "cannot read the pid file {}: {e}; {fallback}",
            file.display()
        ),
    }
}
