//! `krillc` against a real `krill serve` on 127.0.0.1: trust on first use,
//! verified calls, a regenerated certificate, wrong keys, a server that is
//! down, profiles and `--json`.
//!
//! The server binary is the workspace's `target/debug/krill`, found next
//! to this test's executable; `cargo test --workspace` builds it (run
//! `cargo build -p krill` first when testing this crate alone).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn krill_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/client-HASH -> target/debug/krill
    let bin = exe.parent().unwrap().parent().unwrap().join("krill");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p krill` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// A temporary install with a running server.
struct Server {
    dir: tempfile::TempDir,
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let out = Server::krill_in(dir.path(), &["init"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let log = dir.path().join("server.log");
        let file = fs::File::create(&log).unwrap();
        let child = Server::krill_in(dir.path(), &["serve", "--listen", "127.0.0.1:0"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut server = Server {
            dir,
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logs = server.logs();
            if let Some(line) = logs.lines().find(|l| l.contains("listening")) {
                let start = line.find("address=").unwrap() + "address=".len();
                server.addr = line[start..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                return server;
            }
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "server exited: {logs}"
            );
            assert!(Instant::now() < deadline, "server did not start: {logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn krill_in(dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(krill_bin());
        cmd.args(args)
            .arg("--etc-dir")
            .arg(dir.join("etc"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env_remove("KRILL_LISTEN")
            .env("KRILL_LOG", "info")
            .stdin(Stdio::null());
        cmd
    }

    fn krill(&self, args: &[&str]) -> Output {
        let out = Server::krill_in(self.dir.path(), args).output().unwrap();
        assert!(out.status.success(), "krill {args:?}: {out:?}");
        out
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.path().join("server.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("etc/credentials/api_key")
    }

    fn key(&self) -> String {
        fs::read_to_string(self.key_file())
            .unwrap()
            .trim()
            .to_owned()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logs().contains(needle) {
            assert!(Instant::now() < deadline, "log never showed {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user of krillc with their own config dir and a clean environment.
struct User {
    home: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join(".config/krill")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_krillc"));
        cmd.args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("KRILLC_CONFIG_DIR")
            .env_remove("KRILL_SERVER")
            .env_remove("KRILL_API_KEY")
            .env_remove("KRILL_PROFILE")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn trust(&self, server: &Server) {
        let out = self.run(&["trust", &server.url(), "--yes"]);
        assert!(out.status.success(), "trust: {}", stderr(&out));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Asserts that `text` holds no 8-byte piece of `key`, without printing it.
fn assert_no_key(text: &str, key: &str, what: &str) {
    let leaked = key
        .as_bytes()
        .windows(8)
        .any(|w| text.as_bytes().windows(8).any(|t| t == w));
    assert!(!leaked, "{what} contains part of the key");
}

#[test]
fn trust_then_list_nodes_in_tables_and_json() {
    let server = Server::start();
    let user = User::new();
    let key_file = server.key_file();
    let key_file = key_file.to_str().unwrap();

    // Before trust, calls refuse and say how to trust.
    let untrusted = user.run(&["--server", &server.url(), "health"]);
    assert_eq!(status(&untrusted), 4, "{}", stderr(&untrusted));
    assert!(stderr(&untrusted).contains(&format!("krillc trust {}", server.url())));

    // The fingerprint shown is the one `krill cert show` prints.
    let shown = stdout(&server.krill(&["cert", "show"]));
    let fingerprint = shown
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint (SHA-256): "))
        .unwrap()
        .trim()
        .to_owned();
    let trusted = user.run(&["trust", &server.url(), "--yes"]);
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    assert!(
        stdout(&trusted).contains(&fingerprint),
        "{}",
        stdout(&trusted)
    );

    let health = user.run(&["health", "--server", &server.url(), "--json"]);
    assert!(health.status.success(), "{}", stderr(&health));
    let health: Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(health["status"], "ok");

    // Global options before and after the subcommand.
    for args in [
        vec![
            "--server",
            &server.url(),
            "--api-key-file",
            key_file,
            "--json",
            "nodes",
            "list",
        ],
        vec![
            "nodes",
            "list",
            "--json",
            "--api-key-file",
            key_file,
            "--server",
            &server.url(),
        ],
    ] {
        let out = user.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let nodes: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(nodes.is_array(), "{nodes}");
        assert_no_key(&stdout(&out), &server.key(), "stdout");
        assert_no_key(&stderr(&out), &server.key(), "stderr");
    }
    let table = user.run(&[
        "nodes",
        "list",
        "--server",
        &server.url(),
        "--api-key-file",
        key_file,
    ]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert_eq!(stdout(&table), "no nodes\n");

    // A path the server does not serve maps to the not-found status.
    let missing = user.run(&[
        "nodes",
        "get",
        "no-such-node",
        "--server",
        &server.url(),
        "--api-key-file",
        key_file,
    ]);
    assert!(matches!(status(&missing), 6 | 7), "{}", stderr(&missing));
}

#[test]
fn trust_asks_and_pins_nothing_unless_confirmed() {
    let server = Server::start();
    let user = User::new();
    let declined = user.run_with_stdin(&["trust", &server.url()], "n\n");
    assert_eq!(status(&declined), 1, "{}", stderr(&declined));
    assert!(
        stderr(&declined).contains("SHA-256"),
        "{}",
        stderr(&declined)
    );
    assert!(
        !user.config_dir().join("pins").exists()
            || fs::read_dir(user.config_dir().join("pins"))
                .unwrap()
                .count()
                == 0
    );
    let silent = user.run(&["trust", &server.url()]);
    assert_eq!(status(&silent), 1, "no stdin means no confirmation");

    let accepted = user.run_with_stdin(&["trust", &server.url()], "y\n");
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    let health = user.run(&["health", "--server", &server.url()]);
    assert!(health.status.success(), "{}", stderr(&health));
    assert!(stdout(&health).contains("ok"));
}

#[test]
fn regenerated_certificate_stops_calls_until_trusted_again() {
    let server = Server::start();
    let user = User::new();
    user.trust(&server);
    let key_file = server.key_file();
    let args = [
        "nodes",
        "list",
        "--server",
        &server.url(),
        "--api-key-file",
        key_file.to_str().unwrap(),
    ];
    assert!(user.run(&args).status.success());

    server.krill(&["cert", "generate", "--force"]);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_for_log("TLS certificate reloaded");

    let refused = user.run(&args);
    assert_eq!(status(&refused), 4, "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(message.contains("regenerated"), "{message}");
    assert!(message.contains("impersonating"), "{message}");
    assert!(
        message.contains(&format!("krillc trust {}", server.url())),
        "{message}"
    );
    // The message shows the new certificate's fingerprint to compare.
    let shown = stdout(&server.krill(&["cert", "show"]));
    let fingerprint = shown
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint (SHA-256): "))
        .unwrap()
        .trim()
        .to_owned();
    assert!(message.contains(&fingerprint), "{message}");

    let retrust = user.run(&["trust", &server.url(), "--yes"]);
    assert!(retrust.status.success(), "{}", stderr(&retrust));
    let again = user.run(&args);
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn wrong_or_missing_key_explains_the_401() {
    let server = Server::start();
    let user = User::new();
    user.trust(&server);
    let wrong = user.home.path().join("wrong.key");
    fs::write(&wrong, "0d9c3b8e-7a51-4f7e-9c1e-5b2f8a6d4c31\n").unwrap();
    fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let out = user.run(&[
        "nodes",
        "list",
        "--server",
        &server.url(),
        "--api-key-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(status(&out), 5, "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("invalid_api_key"), "{message}");
    assert!(message.contains(wrong.to_str().unwrap()), "{message}");
    assert!(
        message.contains("sudo cat /etc/krill/credentials/api_key"),
        "{message}"
    );
    assert!(message.contains("systemctl status krill"), "{message}");
    assert!(message.contains("journalctl -u krill"), "{message}");
    assert_no_key(
        &message,
        "0d9c3b8e-7a51-4f7e-9c1e-5b2f8a6d4c31",
        "401 message",
    );
    assert_no_key(&message, &server.key(), "401 message");

    let none = user.run(&["nodes", "list", "--server", &server.url()]);
    assert_eq!(status(&none), 5, "{}", stderr(&none));
    assert!(
        stderr(&none).contains("--api-key-file"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn server_that_is_down_gives_one_clear_sentence() {
    let mut server = Server::start();
    let user = User::new();
    user.trust(&server);
    server.stop();
    let out = user.run(&[
        "nodes",
        "list",
        "--server",
        &server.url(),
        "--api-key-file",
        server.key_file().to_str().unwrap(),
    ]);
    assert_eq!(status(&out), 3, "{}", stderr(&out));
    let message = stderr(&out);
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("cannot connect"), "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert!(message.contains(&server.url()), "{message}");
}

#[test]
fn key_sources_environment_and_profiles() {
    let server = Server::start();
    let user = User::new();
    user.trust(&server);

    // KRILL_SERVER and KRILL_API_KEY.
    let out = user
        .cmd(&["nodes", "list", "--json"])
        .env("KRILL_SERVER", server.url())
        .env("KRILL_API_KEY", server.key())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // --api-key works and warns that command lines are visible.
    let key = server.key();
    let out = user.run(&[
        "nodes",
        "list",
        "--server",
        &server.url(),
        "--api-key",
        &key,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("other users"), "{}", stderr(&out));
    assert_no_key(&stderr(&out), &key, "--api-key warning");

    // Profiles: the default one, and another chosen with --profile.
    let bad_key = user.home.path().join("bad.key");
    fs::write(&bad_key, "not-the-key-at-all-0123456789\n").unwrap();
    fs::set_permissions(
        &bad_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    fs::write(
        user.config_dir().join("profiles.toml"),
        format!(
            "default = \"pi\"\n\n[profiles.pi]\nserver = \"{}\"\napi_key_file = \"{}\"\n\n\
             [profiles.stale]\nserver = \"{}\"\napi_key_file = \"{}\"\n",
            server.url(),
            server.key_file().display(),
            server.url(),
            bad_key.display()
        ),
    )
    .unwrap();
    let out = user.run(&["nodes", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = user.run(&["nodes", "list", "--profile", "stale"]);
    assert_eq!(status(&out), 5, "{}", stderr(&out));
    let out = user.run(&["--profile", "nope", "nodes", "list"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("pi, stale"), "{}", stderr(&out));
}

#[test]
fn the_pin_file_works_as_curls_cacert() {
    let server = Server::start();
    let user = User::new();
    let localhost = format!("https://localhost:{}", server.addr.port());
    let out = user.run(&["trust", &localhost, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pin = user
        .config_dir()
        .join(format!("pins/localhost_{}.pem", server.addr.port()));
    let curl = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&pin)
        .arg(format!("{localhost}/health"))
        .output()
        .unwrap();
    assert!(curl.status.success(), "{}", stderr(&curl));
    let health: Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(health["status"], "ok");
}

#[test]
fn nodes_round_trip_against_the_real_server() {
    let server = Server::start();
    let user = User::new();
    user.trust(&server);
    let key_file = server.key_file();
    let common = [
        "--server",
        &server.url(),
        "--api-key-file",
        key_file.to_str().unwrap(),
        "--json",
    ];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&common);
        let out = user.run(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let made = run(&[
        "nodes",
        "create",
        "--type",
        "KrillApp.DataPoint",
        "--name",
        "Temp",
    ]);
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(run(&["nodes", "get", &id])["name"], "Temp");
    assert_eq!(
        run(&["nodes", "update", &id, "--name", "Outside"])["name"],
        "Outside"
    );
    let listed = run(&["nodes", "list", "--type", "KrillApp.DataPoint"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == id.as_str()));
    run(&["nodes", "delete", &id]);
    let mut args = vec!["nodes", "get", &id];
    args.extend_from_slice(&common);
    assert_eq!(status(&user.run(&args)), 6);
}

#[test]
fn a_fifo_as_key_file_fails_fast_as_not_a_regular_file() {
    let user = User::new();
    let fifo = user.home.path().join("key.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let mut child = user
        .cmd(&[
            "--server",
            "https://127.0.0.1:9",
            "--api-key-file",
            fifo.to_str().unwrap(),
            "nodes",
            "list",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("krillc hangs on a FIFO key file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not a regular file") && err.contains("key.fifo"),
        "{err}"
    );
}

#[test]
fn nodes_list_follows_the_servers_pages_and_limit_stops_early() {
    let server = Server::start();
    let user = User::new();
    user.trust(&server);
    let key_file = server.key_file();
    let url = server.url();
    let with_server = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "--server",
            &url,
            "--api-key-file",
            key_file.to_str().unwrap(),
        ]);
        let out = user.run(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    for i in 0..150 {
        let id = format!("n{i:03}");
        with_server(&[
            "nodes",
            "create",
            "--id",
            &id,
            "--type",
            "KrillApp.DataPoint",
            "--name",
            &id,
        ]);
    }
    let ids = |out: Output| -> Vec<String> {
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The server's default page is 100 nodes: all 150 need two pages.
    let all = ids(with_server(&["nodes", "list", "--json"]));
    let expected: Vec<String> = (0..150).map(|i| format!("n{i:03}")).collect();
    assert_eq!(all, expected);
    let first = ids(with_server(&["nodes", "list", "--json", "--limit", "120"]));
    assert_eq!(first, expected[..120]);
    let table = stdout(&with_server(&["nodes", "list"]));
    assert_eq!(table.lines().count(), 151, "header and 150 rows");
    let out = user.run(&["nodes", "list", "--limit", "0", "--server", &url]);
    assert_eq!(status(&out), 2, "--limit 0 is a usage error");
}

#[test]
fn config_set_and_get_take_dotted_names_and_text_values() {
    let server = Server::start();
    let user = User::new();
    user.trust(&server);
    let key_file = server.key_file();
    let url = server.url();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "--server",
            &url,
            "--api-key-file",
            key_file.to_str().unwrap(),
        ]);
        user.run(&all)
    };
    let out = run(&[
        "config",
        "set",
        "auth_throttle.max_failures=5",
        "display_name=Greenhouse",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["config", "get", "auth_throttle.max_failures"]);
    assert_eq!(stdout(&out), "5\n", "{}", stderr(&out));
    let out = run(&["config", "get", "--json"]);
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all["auth_throttle"]["max_failures"], 5);
    assert_eq!(all["auth_throttle"]["window_seconds"], 60, "others kept");
    assert_eq!(
        stdout(&run(&["config", "get", "display_name"])),
        "Greenhouse\n"
    );

    let out = run(&["config", "get", "auth_throttle.nope"]);
    assert_eq!(status(&out), 6);
    assert!(
        stderr(&out).contains("auth_throttle.max_failures"),
        "{}",
        stderr(&out)
    );

    // A number where text is expected: the server refuses its type, and
    // krillc says how to send it as text.
    let out = run(&["config", "set", "display_name=123"]);
    assert_eq!(status(&out), 7, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("quote it") && stderr(&out).contains(r#"'display_name="123"'"#),
        "{}",
        stderr(&out)
    );
    let out = run(&["config", "set", r#"display_name="123""#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&run(&["config", "get", "display_name"])), "123\n");
}

#[test]
fn tables_escape_bidi_and_zero_width_characters_but_json_keeps_them() {
    let server = Server::start();
    let user = User::new();
    user.trust(&server);
    let key_file = server.key_file();
    let url = server.url();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "--server",
            &url,
            "--api-key-file",
            key_file.to_str().unwrap(),
        ]);
        let out = user.run(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    // Shown raw, this reads "pumpexe.txt" and hides a zero-width space.
    let name = "pump\u{202E}txt.exe\u{200B}\u{FEFF}";
    run(&[
        "nodes",
        "create",
        "--id",
        "spoof",
        "--type",
        "KrillApp.DataPoint",
        "--name",
        name,
        "--meta",
        r#"{"note":"a\u2066b"}"#,
    ]);
    let table = run(&["nodes", "list"]);
    assert!(
        table.contains(r"pump\u{202E}txt.exe\u{200B}\u{FEFF}"),
        "{table}"
    );
    let shown = run(&["nodes", "get", "spoof"]);
    assert!(shown.contains(r"pump\u{202E}txt.exe"), "{shown}");
    assert!(shown.contains(r#"a\u{2066}b"#), "{shown}");
    for text in [&table, &shown] {
        assert!(
            !text.contains(['\u{202E}', '\u{200B}', '\u{FEFF}', '\u{2066}']),
            "raw format characters in {text:?}"
        );
    }
    let json: Value = serde_json::from_str(&run(&["nodes", "get", "spoof", "--json"])).unwrap();
    assert_eq!(json["name"], name, "--json keeps the server's text");
}
