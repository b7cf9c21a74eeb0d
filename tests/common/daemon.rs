//! `git daemon` on 127.0.0.1, for the tests (and the workers bench) that
//! share runs over `git://`.

// The bench includes this file as a private module.
#![allow(unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `git daemon` serving `base` on a free port of 127.0.0.1, ended on drop.
pub struct Daemon {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Daemon {
    /// Starts it and waits until it accepts connections.
    pub fn start(base: &Path) -> Daemon {
        // git daemon needs a fixed port: take a free one from the OS.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // `git daemon` runs `git-daemon` as its child, which a kill of
            // `git` alone would leave serving: its own group, ended whole.
            .process_group(0)
            .spawn()
            .expect("git daemon starts");
        let mut daemon = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                daemon.child.try_wait().expect("wait").is_none(),
                "git daemon exited"
            );
            assert!(Instant::now() < deadline, "git daemon never listened");
            std::thread::yield_now();
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}
