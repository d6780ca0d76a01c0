//! Crash safety of key writes: `krill key set` and `krill key generate` are
//! killed with SIGKILL at random moments across their whole run, hundreds of
//! times, and after every kill the key file must hold exactly the old key
//! or exactly the new one, with mode 0400; never nothing, never a mix.
//! The leftovers a kill can leave (a hidden second name of the old key, an
//! unfinished temporary) are shredded by the next key command.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::Install;

const ROUNDS: usize = 300;

/// A random fraction in [0, 1) from the operating system's generator.
fn random_fraction() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    f64::from(n) / (f64::from(u32::MAX) + 1.0)
}

fn spawn_set(install: &Install, key: &str) -> Child {
    let mut child = install
        .krill(&["key", "set", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{key}\n").as_bytes()).unwrap();
    drop(stdin);
    child
}

fn spawn_generate(install: &Install) -> Child {
    install
        .krill(&["key", "generate"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// How long one uninterrupted run takes (the slowest of a few).
fn calibrate(mut run: impl FnMut() -> Child) -> Duration {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            assert!(run().wait().unwrap().success());
            started.elapsed()
        })
        .max()
        .unwrap()
}

/// Kills `child` after a random share of `span`.
fn kill_at_random(mut child: Child, span: Duration) {
    std::thread::sleep(span.mul_f64(random_fraction()));
    let _ = child.kill();
    let _ = child.wait();
}

fn key_file_mode(install: &Install) -> u32 {
    fs::metadata(install.key_path()).unwrap().mode() & 0o7777
}

#[test]
fn a_killed_key_set_leaves_exactly_the_old_or_exactly_the_new_key() {
    let install = Install::new();
    let span = calibrate(|| spawn_set(&install, "Calibration-key-0123456789-abcdefgh!")) * 13 / 10;
    let (mut kept_old, mut got_new) = (0, 0);
    for round in 0..ROUNDS {
        let old = fs::read(install.key_path()).unwrap();
        let new = format!("Crash-{}-{round}!", uuid::Uuid::new_v4().simple());
        kill_at_random(spawn_set(&install, &new), span);

        let now = fs::read(install.key_path()).unwrap();
        if now == old {
            kept_old += 1;
        } else {
            assert!(
                now == format!("{new}\n").into_bytes(),
                "round {round}: the key file holds neither the old nor the new key"
            );
            got_new += 1;
        }
        assert_eq!(key_file_mode(&install), 0o400, "round {round}");
    }
    // The kills landed both before and after the rename, so the window in
    // between was exercised too.
    assert!(
        kept_old >= 10 && got_new >= 10,
        "kills not spread out: {kept_old} old, {got_new} new"
    );
    assert_leftovers_are_cleaned(&install);
}

#[test]
fn a_killed_key_generate_leaves_a_whole_key() {
    let install = Install::new();
    let span = calibrate(|| spawn_generate(&install)) * 13 / 10;
    let (mut kept_old, mut got_new) = (0, 0);
    for round in 0..ROUNDS {
        let old = fs::read(install.key_path()).unwrap();
        kill_at_random(spawn_generate(&install), span);

        let now = fs::read(install.key_path()).unwrap();
        if now == old {
            kept_old += 1;
            continue;
        }
        // A new key we cannot know in advance: it must be a whole one, a
        // version-4 UUID and a newline, 37 bytes.
        let whole = now.len() == 37
            && now[36] == b'\n'
            && std::str::from_utf8(&now[..36])
                .ok()
                .and_then(|t| uuid::Uuid::parse_str(t).ok())
                .is_some_and(|u| u.get_version_num() == 4);
        assert!(whole, "round {round}: the key file holds a partial key");
        got_new += 1;
        assert_eq!(key_file_mode(&install), 0o400, "round {round}");
    }
    assert!(
        kept_old >= 10 && got_new >= 10,
        "kills not spread out: {kept_old} old, {got_new} new"
    );
    assert_leftovers_are_cleaned(&install);
}

/// After the kills, the next key command shreds whatever they left and
/// `krill key check` is happy.
fn assert_leftovers_are_cleaned(install: &Install) {
    let mut child = spawn_set(install, "Final-key-after-crashes-0123456789-xyz!");
    assert!(child.wait().unwrap().success());
    let names: Vec<_> = fs::read_dir(install.etc.join("credentials"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["api_key"]);
    let check = install.krill(&["key", "check"]).output().unwrap();
    assert!(check.status.success());
}
