//! `krill.service` is `Type=notify`: the server must tell systemd
//! `READY=1` once it listens and `STOPPING=1` when it shuts down, through
//! the datagram socket named by `NOTIFY_SOCKET`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::Install;

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let len = socket
        .recv(&mut buf)
        .expect("no notification from the server within the timeout");
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn server_notifies_systemd_when_ready_and_when_stopping() {
    let install = Install::new();
    let socket_path = install.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let child = install
        .krill(&["serve", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = KillOnDrop(child);
    assert_eq!(receive(&socket).trim(), "READY=1");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(receive(&socket).trim(), "STOPPING=1");
    assert!(server.0.wait().unwrap().success());
}
