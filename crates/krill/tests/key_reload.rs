//! Live reload of the API key in a real server: `krill key rotate` while a
//! client keeps sending requests, the file watcher (no signal), broken
//! files that must keep the current key, the pid file, and the reference
//! document's manual procedures run as written through `sh -c`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{assert_no_secret, Install, TestServer};

const RELOADED: &str = "API key reloaded";

fn count(logs: &str, needle: &str) -> usize {
    logs.matches(needle).count()
}

/// Waits until the log shows `needle` more than `before` times; returns how
/// long that took.
fn wait_for_more(server: &TestServer, needle: &str, before: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    while count(&server.logs(), needle) <= before {
        assert!(
            started.elapsed() < timeout,
            "log never showed another {needle:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

async fn status_with(server: &TestServer, key: &str) -> u16 {
    server
        .client()
        .get("/api/nodes", &[("X-API-Key", key)])
        .await
        .status
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn krill_user_exists() -> bool {
    nix::unistd::User::from_name("krill")
        .ok()
        .flatten()
        .is_some()
}

/// One request the background client made.
struct Sent {
    at: Instant,
    key: String,
    status: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_a_client_keeps_sending_requests() {
    let install = Install::new();
    let server = install.start();
    let keys = Arc::new(Mutex::new(vec![install.key()]));
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // The client tries every key it has heard of, over and over.
    let client = server.client();
    let background = {
        let (keys, sent, stop) = (Arc::clone(&keys), Arc::clone(&sent), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let known = keys.lock().unwrap().clone();
                for key in known {
                    let at = Instant::now();
                    let status = client
                        .get("/api/nodes", &[("X-API-Key", &key)])
                        .await
                        .status;
                    sent.lock().unwrap().push(Sent { at, key, status });
                }
            }
        })
    };

    let mut reloaded_at = Vec::new();
    let mut rotated_at = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = count(&server.logs(), RELOADED);
        rotated_at.push(Instant::now());
        let out = install.krill(&["key", "rotate"]).output().unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains(&format!("pid {}", server.pid())),
            "rotate did not find the server: {stderr}"
        );
        let new_key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        keys.lock().unwrap().push(new_key.clone());
        wait_for_more(&server, RELOADED, before, Duration::from_secs(5));
        reloaded_at.push((Instant::now(), new_key));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    background.await.unwrap();

    // After the reload is seen in the log: the key it installed works and
    // every older key is refused (until the next rotation starts).
    let sent = sent.lock().unwrap();
    let mut checked = 0;
    for (i, (seen, current)) in reloaded_at.iter().enumerate() {
        let until = rotated_at.get(i + 1).copied();
        for request in sent
            .iter()
            .filter(|r| r.at > *seen && until.is_none_or(|u| r.at < u))
        {
            let expected = if &request.key == current { 200 } else { 401 };
            assert!(
                request.status == expected,
                "rotation {i}: a request started {:?} after the reload was seen got {} \
                 where {expected} was due",
                request.at - *seen,
                request.status
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} requests after reloads");
    let logs = server.logs();
    for key in keys.lock().unwrap().iter() {
        assert_no_secret(&logs, key, "server log");
    }
}

#[tokio::test]
async fn a_changed_key_file_is_picked_up_within_a_second_without_a_signal() {
    let install = Install::new();
    let server = install.start();
    let old = install.key();

    // Renamed over the old file (what `krill key generate` does).
    let before = count(&server.logs(), RELOADED);
    let out = install.krill(&["key", "generate"]).output().unwrap();
    assert!(out.status.success());
    let new = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let took = wait_for_more(&server, RELOADED, before, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "reload took {took:?}");
    assert_eq!(status_with(&server, &new).await, 200);
    assert_eq!(status_with(&server, &old).await, 401);

    // An editor's rename-over with `mv`.
    let staged = install.dir.path().join("staged");
    let moved = "Moved-over-key-0123456789-abcdefghij!";
    fs::write(&staged, format!("{moved}\n")).unwrap();
    let before = count(&server.logs(), RELOADED);
    fs::rename(&staged, install.key_path()).unwrap();
    let took = wait_for_more(&server, RELOADED, before, Duration::from_secs(5));
    assert!(took < Duration::from_secs(1), "reload took {took:?}");
    assert_eq!(status_with(&server, moved).await, 200);
    assert_eq!(status_with(&server, &new).await, 401);
    assert!(!server.logs().contains("ERROR"));
}

#[tokio::test]
async fn a_broken_key_file_keeps_the_current_key_and_logs_an_error_naming_it() {
    let install = Install::new();
    let server = install.start();
    let key = install.key();
    let path = install.key_path().display().to_string();

    type Breakage = fn(&Install);
    let breakages: [(&str, Breakage); 5] = [
        ("empty", |i| i.write_key_file(b"")),
        ("whitespace only", |i| i.write_key_file(b" \n\t\n")),
        ("random bytes", |i| {
            let mut noise = [0u8; 64];
            noise.iter_mut().enumerate().for_each(|(n, b)| *b = n as u8);
            i.write_key_file(&noise)
        }),
        ("inner space", |i| i.write_key_file(b"two words\n")),
        ("missing", |i| fs::remove_file(i.key_path()).unwrap()),
    ];
    for (what, break_it) in breakages {
        let errors = count(&server.logs(), "ERROR");
        break_it(&install);
        wait_for_more(&server, "ERROR", errors, Duration::from_secs(5));
        let logs = server.logs();
        let last_error = logs.lines().rev().find(|l| l.contains("ERROR")).unwrap();
        assert!(last_error.contains(&path), "{what}: {last_error}");
        assert!(last_error.contains("keeping the current API key"), "{what}");

        // SIGHUP with the broken file keeps the key too.
        let errors = count(&logs, "ERROR");
        server.signal(Signal::SIGHUP);
        wait_for_more(&server, "ERROR", errors, Duration::from_secs(5));

        assert_eq!(status_with(&server, &key).await, 200, "{what}");
        assert_eq!(status_with(&server, "").await, 401, "{what}");
        assert_eq!(status_with(&server, "two").await, 401, "{what}");
        let missing = server.client().get("/api/nodes", &[]).await.status;
        assert_eq!(missing, 401, "{what}");
        install.write_key_file(format!("{key}\n").as_bytes());
    }
    // A broken state that lasts is reported once, not four times a second.
    // (Renamed over the key in one step, so no transient state is seen.)
    let staged = install.dir.path().join("staged-empty");
    fs::write(&staged, b"").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    fs::rename(&staged, install.key_path()).unwrap();
    let errors = count(&server.logs(), "ERROR");
    wait_for_more(&server, "ERROR", errors, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(count(&server.logs(), "ERROR"), errors + 1);
    assert_no_secret(&server.logs(), &key, "server log");
}

#[tokio::test]
async fn the_server_writes_a_pid_file_and_removes_it_on_a_clean_stop() {
    let install = Install::new();
    let mut server = install.start();
    let pid_file = install.data.join("krill.pid");
    let text = fs::read_to_string(&pid_file).unwrap();
    assert_eq!(text.trim(), server.pid().to_string());
    assert!(server.stop().success());
    assert!(!pid_file.exists());

    // A stale pid file: rotate says no server runs, and rotates anyway.
    fs::write(&pid_file, "2147483000\n").unwrap();
    let before = install.key();
    let out = install.krill(&["key", "rotate"]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no running server"), "{stderr}");
    assert!(stderr.contains("stale"), "{stderr}");
    assert!(stderr.contains("systemctl reload krill"), "{stderr}");
    assert!(install.key() != before, "rotate did not rotate");

    // The next server replaces the stale file.
    let server = install.start();
    let text = fs::read_to_string(&pid_file).unwrap();
    assert_eq!(text.trim(), server.pid().to_string());
}

/// Runs a script from the reference document with `sh -e`, the paths
/// swapped for this installation's. Returns its stdout (kept out of the
/// test output: it may hold a key).
fn run_reference_script(install: &Install, script: &str, pid: i32) -> String {
    let dir = install.etc.join("credentials");
    let script = script
        .replace("/etc/krill/credentials", &dir.display().to_string())
        .replace("sudo systemctl restart krill", &format!("kill -HUP {pid}"))
        .replace("sudo ", "");
    let out = Command::new("sh")
        .arg("-ec")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `chown krill:krill` lines only work where that user exists.
fn chown_lines(script: &str) -> String {
    if krill_user_exists() && is_root() {
        script.to_owned()
    } else {
        script
            .lines()
            .filter(|l| !l.contains("chown krill:krill"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The reference document's `dd` writes into the 0400 file, which only
/// root may do; as another user the test first lets the owner write.
fn allow_dd(install: &Install) {
    if !is_root() {
        fs::set_permissions(install.key_path(), fs::Permissions::from_mode(0o600)).unwrap();
    }
}

const REGENERATE: &str = r#"
# Generate a new UUID
NEW_KEY=$(cat /proc/sys/kernel/random/uuid)
# Securely overwrite the old key first
sudo dd if=/dev/urandom of=/etc/krill/credentials/api_key bs=64 count=1 2>/dev/null
# Write the new key
echo "$NEW_KEY" | sudo tee /etc/krill/credentials/api_key > /dev/null
# Set correct permissions
sudo chmod 0400 /etc/krill/credentials/api_key
sudo chown krill:krill /etc/krill/credentials/api_key
# Restart the Krill server to load the new key
sudo systemctl restart krill
echo "New API key: $NEW_KEY"
"#;

const CUSTOM: &str = r#"
# Set your custom key
CUSTOM_KEY="Reference-doc-custom-key-0123456789-XYZ!"
# Securely overwrite the old key
sudo dd if=/dev/urandom of=/etc/krill/credentials/api_key bs=64 count=1 2>/dev/null
# Write the custom key
echo "$CUSTOM_KEY" | sudo tee /etc/krill/credentials/api_key > /dev/null
# Set correct permissions
sudo chmod 0400 /etc/krill/credentials/api_key
sudo chown krill:krill /etc/krill/credentials/api_key
# Restart the Krill server
sudo systemctl restart krill
"#;

const RESTORE_PERMISSIONS: &str = r#"
# Fix directory permissions
sudo chmod 0700 /etc/krill/credentials
sudo chown krill:krill /etc/krill/credentials
# Fix API key file permissions
sudo chmod 0400 /etc/krill/credentials/api_key
sudo chown krill:krill /etc/krill/credentials/api_key
# Verify permissions
ls -la /etc/krill/credentials/
"#;

const FILE_MISSING: &str = r#"
# Regenerate it manually
sudo mkdir -p /etc/krill/credentials
sudo chmod 0700 /etc/krill/credentials
sudo chown krill:krill /etc/krill/credentials
NEW_KEY=$(cat /proc/sys/kernel/random/uuid)
echo "$NEW_KEY" | sudo tee /etc/krill/credentials/api_key > /dev/null
sudo chmod 0400 /etc/krill/credentials/api_key
sudo chown krill:krill /etc/krill/credentials/api_key
sudo systemctl restart krill
echo "$NEW_KEY"
"#;

#[tokio::test]
async fn the_reference_procedures_run_as_written_leave_a_working_server() {
    let install = Install::new();
    let server = install.start();
    let check_ok = |what: &str| {
        let out = install.krill(&["key", "check"]).output().unwrap();
        assert!(
            out.status.success(),
            "{what}: krill key check: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    };

    // Regenerating with dd + tee.
    let old = install.key();
    allow_dd(&install);
    let before = count(&server.logs(), RELOADED);
    let out = run_reference_script(&install, &chown_lines(REGENERATE), server.pid());
    let new = out.trim().strip_prefix("New API key: ").unwrap().to_owned();
    wait_for_more(&server, RELOADED, before, Duration::from_secs(5));
    assert_eq!(status_with(&server, &new).await, 200, "regenerate");
    assert_eq!(status_with(&server, &old).await, 401, "regenerate");
    check_ok("regenerate");

    // A custom key with tee.
    allow_dd(&install);
    let before = count(&server.logs(), RELOADED);
    run_reference_script(&install, &chown_lines(CUSTOM), server.pid());
    wait_for_more(&server, RELOADED, before, Duration::from_secs(5));
    let custom = "Reference-doc-custom-key-0123456789-XYZ!";
    assert_eq!(status_with(&server, custom).await, 200, "custom");
    assert_eq!(status_with(&server, &new).await, 401, "custom");
    check_ok("custom");

    // Corrupted permissions, restored by hand.
    let dir = install.etc.join("credentials");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    fs::set_permissions(install.key_path(), fs::Permissions::from_mode(0o666)).unwrap();
    assert!(!install
        .krill(&["key", "check"])
        .output()
        .unwrap()
        .status
        .success());
    let listing = run_reference_script(&install, &chown_lines(RESTORE_PERMISSIONS), server.pid());
    assert!(listing.contains("drwx------"), "listing lacks the dir mode");
    assert!(
        listing.contains("-r--------"),
        "listing lacks the file mode"
    );
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o700);
    check_ok("restore permissions");
    assert_eq!(status_with(&server, custom).await, 200, "restore");

    // The key file lost, then recreated by hand.
    fs::remove_file(install.key_path()).unwrap();
    let before = count(&server.logs(), RELOADED);
    let out = run_reference_script(&install, &chown_lines(FILE_MISSING), server.pid());
    let recreated = out.trim().to_owned();
    wait_for_more(&server, RELOADED, before, Duration::from_secs(5));
    assert_eq!(status_with(&server, &recreated).await, 200, "missing");
    assert_eq!(status_with(&server, custom).await, 401, "missing");
    check_ok("missing");

    let logs = server.logs();
    for key in [&old, &new, custom, &recreated] {
        assert_no_secret(&logs, key, "server log");
    }
}

#[tokio::test]
async fn the_dd_and_tee_procedure_is_picked_up_without_any_signal() {
    let install = Install::new();
    let server = install.start();
    let old = install.key();
    allow_dd(&install);
    let script = chown_lines(REGENERATE).replace("sudo systemctl restart krill", "true");
    let before = count(&server.logs(), RELOADED);
    let out = run_reference_script(&install, &script, server.pid());
    let new = out.trim().strip_prefix("New API key: ").unwrap().to_owned();
    wait_for_more(&server, RELOADED, before, Duration::from_secs(5));
    // Give the watcher time to see the final state after any transient one.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(status_with(&server, &new).await, 200);
    assert_eq!(status_with(&server, &old).await, 401);
    assert_no_secret(&server.logs(), &new, "server log");
}
