//! Running the real `abproxy` binary, for what only a process has: exit codes,
//! signals, the printed messages.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_abproxy");

/// A running `abproxy serve`, killed on drop if still running.
pub struct ProxyProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Every stderr line, as it comes.
    pub log: mpsc::Receiver<String>,
    /// The lines up to and including the "listening" line.
    pub startup_log: Vec<String>,
}

impl ProxyProcess {
    /// Start `abproxy serve --config PATH` and wait for its "listening" line.
    pub fn serve(config: &Path) -> ProxyProcess {
        ProxyProcess::serve_with(config, &[])
    }

    /// As [`ProxyProcess::serve`], with more arguments (`--threads 1`).
    pub fn serve_with(config: &Path, extra: &[&str]) -> ProxyProcess {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("abproxy binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut startup_log = Vec::new();
        let (addr, admin) = loop {
            let line = log
                .recv_timeout(Duration::from_secs(20))
                .expect("abproxy prints its listening line");
            startup_log.push(line.clone());
            if let Some(rest) = line.split("proxy listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                let admin = rest
                    .split("(admin http://")
                    .nth(1)
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                break (addr, admin);
            }
        };
        ProxyProcess {
            child,
            addr,
            admin,
            log,
            startup_log,
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we own; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Wait up to `within` for exit; the exit status.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "abproxy did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stderr lines received so far.
    pub fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `abproxy check --config PATH`: (exit code, stdout).
pub fn check(config: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("abproxy check runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
