//! The `krill key` commands on real files: what each prints (the key only
//! where that is the command's job, and only on stdout), `set`'s rules,
//! every `check` diagnosis together with the fix it prints (run as printed),
//! `fix-permissions`, and `shred` overwriting the bytes it removes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::{assert_no_secret, Install};

const STRONG: &str = "Integration-key-with-42-chars!-0123456789";

fn run(install: &Install, args: &[&str]) -> Output {
    install.krill(args).output().unwrap()
}

fn run_with_stdin(install: &Install, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = install
        .krill(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

/// Sets the key file's content as an admin with a shell would, keeping
/// mode 0400.
fn overwrite_key_file(install: &Install, bytes: &[u8]) {
    install.write_key_file(bytes);
    fs::set_permissions(install.key_path(), fs::Permissions::from_mode(0o400)).unwrap();
}

#[test]
fn generate_and_rotate_print_the_new_key_once_on_stdout_and_nothing_else() {
    let install = Install::new();
    for command in ["generate", "rotate"] {
        let before = install.key();
        let out = run(&install, &["key", command]);
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        let after = install.key();
        assert!(before != after, "{command} did not change the key");
        assert!(
            out.stdout == format!("{after}\n").into_bytes(),
            "{command}: stdout is not exactly the new key and a newline"
        );
        assert_no_secret(&text(&out.stderr), &after, "stderr");
        assert_no_secret(&text(&out.stderr), &before, "stderr");
        assert_eq!(fs::metadata(install.key_path()).unwrap().len(), 37);
        assert_eq!(mode(&install.key_path()), 0o400);
    }
}

#[test]
fn show_prints_the_key_and_no_other_command_does() {
    let install = Install::new();
    let key = install.key();
    let out = run(&install, &["key", "show"]);
    assert!(out.status.success());
    assert!(out.stdout == format!("{key}\n").into_bytes(), "show");

    for args in [
        &["key", "check"][..],
        &["key", "fix-permissions"],
        &["init"],
    ] {
        let out = run(&install, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_no_secret(&text(&out.stdout), &key, "stdout");
        assert_no_secret(&text(&out.stderr), &key, "stderr");
    }
    let out = run_with_stdin(&install, &["key", "set", "-"], STRONG.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_no_secret(&text(&out.stdout), STRONG, "set stdout");
    assert_no_secret(&text(&out.stderr), STRONG, "set stderr");
    assert_no_secret(&text(&out.stderr), &key, "set stderr");

    let out = run(&install, &["key", "shred"]);
    assert!(out.status.success());
    assert_no_secret(&text(&out.stdout), STRONG, "shred stdout");
    assert_no_secret(&text(&out.stderr), STRONG, "shred stderr");
}

#[test]
fn set_reads_the_key_from_stdin_and_installs_it_atomically() {
    let install = Install::new();
    let out = run_with_stdin(
        &install,
        &["key", "set", "-"],
        format!("{STRONG}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        install.key() == STRONG,
        "the key file does not hold the new key"
    );
    assert_eq!(mode(&install.key_path()), 0o400);
    assert!(out.stdout.is_empty());
    // Without an argument, stdin is the default too.
    let other = format!("{STRONG}-b");
    let out = run_with_stdin(&install, &["key", "set"], other.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        install.key() == other,
        "the key file does not hold the new key"
    );
}

#[test]
fn a_key_given_as_an_argument_works_but_warns_that_others_can_see_it() {
    let install = Install::new();
    let out = run(&install, &["key", "set", STRONG]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        install.key() == STRONG,
        "the key file does not hold the new key"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("other users"), "{stderr}");
    assert!(stderr.contains("krill key set -"), "{stderr}");
}

#[test]
fn weak_keys_are_refused_unless_forced_and_forcing_still_warns() {
    let install = Install::new();
    let before = install.key();
    for weak in [
        "short-1!",
        "no-digits-here-but-long-enough-to-pass-the-length",
        "NoOtherSymbols0123456789abcdefghijklmnopq",
        "0123456789-0123456789-0123456789-0123456789",
    ] {
        let out = run_with_stdin(&install, &["key", "set", "-"], weak.as_bytes());
        assert!(!out.status.success(), "a weak key was accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("weak"), "{stderr}");
        assert!(stderr.contains("--force"), "{stderr}");
        assert_no_secret(&stderr, weak, "refusal");
        assert!(install.key() == before, "a refused key changed the file");
    }
    let out = run_with_stdin(&install, &["key", "set", "--force", "-"], b"short-1!");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning"));
    assert!(
        install.key() == "short-1!",
        "--force did not install the key"
    );
}

#[test]
fn invalid_keys_are_refused_without_echoing_them_and_nothing_changes() {
    let install = Install::new();
    let before = install.key();
    let long = "x".repeat(513);
    for (what, bad) in [
        (
            "inner space",
            "has a-space 0123456789-0123456789-ABC".as_bytes(),
        ),
        ("empty", b"\n".as_slice()),
        ("non-ASCII", "clé-secrète-0123456789-0123456789".as_bytes()),
        ("two lines", b"line-one-0123456789-0123456789-X\nline-two"),
        ("too long", long.as_bytes()),
    ] {
        let out = run_with_stdin(&install, &["key", "set", "--force", "-"], bad);
        assert!(!out.status.success(), "{what} was accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("nothing was changed"), "{what}: {stderr}");
        assert!(
            !stderr.contains("0123456789"),
            "{what}: refusal echoes the key"
        );
        assert!(install.key() == before, "{what}: the file changed");
    }
}

/// Runs `fix` as printed by `krill key check` (minus `sudo`, with this
/// build's `krill` first on PATH).
fn run_fix(fix: &str) {
    let command = fix.replace("sudo ", "");
    let bin_dir = Path::new(support::krill_bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fix `{command}` failed: {}",
        text(&out.stderr)
    );
}

/// `krill key check` output lines: (problem text, fix command).
fn check(install: &Install) -> (bool, Vec<(String, String)>) {
    let out = run(install, &["key", "check"]);
    let problems = text(&out.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("problem: "))
        .map(|line| {
            let (what, fix) = line.rsplit_once("; fix: ").unwrap();
            (what.to_owned(), fix.to_owned())
        })
        .collect();
    (out.status.success(), problems)
}

#[test]
fn check_diagnoses_each_problem_on_one_line_and_its_printed_fix_works() {
    type Breakage = fn(&Install);
    let cases: [(&str, Breakage, &str); 7] = [
        (
            "missing file",
            |i| fs::remove_file(i.key_path()).unwrap(),
            "is missing",
        ),
        (
            "missing directory",
            |i| fs::remove_dir_all(i.etc.join("credentials")).unwrap(),
            "credentials directory",
        ),
        ("empty file", |i| overwrite_key_file(i, b""), "is empty"),
        (
            "invalid key",
            |i| overwrite_key_file(i, b"two words\n"),
            "not hold a valid key",
        ),
        (
            "file mode",
            |i| fs::set_permissions(i.key_path(), fs::Permissions::from_mode(0o644)).unwrap(),
            "has mode 0644, expected 0400",
        ),
        (
            "directory mode",
            |i| {
                let dir = i.etc.join("credentials");
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
            },
            "has mode 0755, expected 0700",
        ),
        (
            "not a regular file",
            |i| {
                fs::remove_file(i.key_path()).unwrap();
                fs::create_dir(i.key_path()).unwrap();
            },
            "not a regular file",
        ),
    ];
    for (what, break_it, expected) in cases {
        let install = Install::new();
        let (healthy, problems) = check(&install);
        assert!(
            healthy && problems.is_empty(),
            "{what}: fresh install unhealthy"
        );

        break_it(&install);
        let (healthy, problems) = check(&install);
        assert!(!healthy, "{what}: check exited 0");
        assert_eq!(problems.len(), 1, "{what}: {problems:?}");
        assert!(problems[0].0.contains(expected), "{what}: {problems:?}");

        run_fix(&problems[0].1);
        let (healthy, problems) = check(&install);
        assert!(
            healthy,
            "{what}: still unhealthy after the fix: {problems:?}"
        );
    }
}

#[test]
fn check_reports_several_problems_at_once() {
    let install = Install::new();
    fs::set_permissions(install.key_path(), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(
        install.etc.join("credentials"),
        fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let (healthy, problems) = check(&install);
    assert!(!healthy);
    assert_eq!(problems.len(), 2, "{problems:?}");
    for (_, fix) in &problems {
        run_fix(fix);
    }
    assert!(check(&install).0);
}

#[test]
fn fix_permissions_restores_modes_and_says_what_changed() {
    let install = Install::new();
    let dir = install.etc.join("credentials");
    fs::set_permissions(install.key_path(), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(&install, &["key", "fix-permissions"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("0777 -> 0700"), "{stdout}");
    assert!(stdout.contains("0666 -> 0400"), "{stdout}");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&install.key_path()), 0o400);

    let out = run(&install, &["key", "fix-permissions"]);
    assert!(text(&out.stdout).contains("nothing to change"));
}

#[test]
fn shred_overwrites_the_key_bytes_before_removing_the_file() {
    let install = Install::new();
    let key = install.key();
    // A second name for the inode lets us look at its bytes afterwards.
    let witness = install.dir.path().join("witness");
    fs::hard_link(install.key_path(), &witness).unwrap();
    let out = run(&install, &["key", "shred"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!install.key_path().exists());
    let after = fs::read(&witness).unwrap();
    assert!(after.len() >= 37);
    assert_no_secret(&String::from_utf8_lossy(&after), &key, "shredded inode");
    // Shredding again is not an error.
    let out = run(&install, &["key", "shred"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("nothing to shred"));
}

#[test]
fn generate_overwrites_the_old_key_bytes_and_leaves_no_leftovers() {
    let install = Install::new();
    let old = install.key();
    let witness = install.dir.path().join("witness");
    fs::hard_link(install.key_path(), &witness).unwrap();
    let out = run(&install, &["key", "generate"]);
    assert!(out.status.success());
    let after = fs::read(&witness).unwrap();
    assert_no_secret(&String::from_utf8_lossy(&after), &old, "old inode");
    let names: Vec<_> = fs::read_dir(install.etc.join("credentials"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["api_key"]);
}

#[test]
fn generate_creates_the_directory_on_a_fresh_host() {
    let install = Install::empty();
    let out = run(&install, &["key", "generate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&install.etc.join("credentials")), 0o700);
    assert!(install.key().len() == 36);
}

#[test]
fn a_key_typed_on_a_terminal_is_not_echoed() {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    let install = Install::new();
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut child = install
        .krill(&["key", "set"])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(pty.slave);

    // The prompt comes once echo is off; then type the key.
    let mut stderr = child.stderr.take().unwrap();
    let mut prompt = Vec::new();
    let mut byte = [0u8; 1];
    while !prompt.ends_with(b"Enter: ") {
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "no prompt");
        prompt.push(byte[0]);
    }
    let mut master = fs::File::from(pty.master);
    master.write_all(format!("{STRONG}\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(install.key() == STRONG, "the typed key was not installed");

    // Whatever the terminal showed: nothing of the key.
    let fd = master.as_raw_fd();
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut shown = Vec::new();
    let _ = master.read_to_end(&mut shown);
    assert_no_secret(&String::from_utf8_lossy(&shown), STRONG, "terminal");
}

#[test]
fn check_run_by_a_user_who_cannot_read_the_key_says_so_and_asks_for_sudo() {
    // Root reads every file, so as root the check runs as `nobody`
    // (through setpriv); as another user, the file is made unreadable.
    let install = Install::new();
    let mut cmd = install.krill_unable_to_read_key(0o711);
    let out = cmd
        .args(["key", "check", "--etc-dir"])
        .arg(&install.etc)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("permission denied"))
        .unwrap_or_else(|| panic!("no permission line in: {stdout}"));
    assert!(line.contains(&install.key_path().display().to_string()));
    assert!(
        line.contains("fix: sudo krill key check --etc-dir "),
        "{line}"
    );
}
