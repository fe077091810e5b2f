//! Helpers of the scheduler tests: a webhook receiver on loopback that records every JSON body,
//! the daemon as a child process with signals, the state file read back, and waiting for a
//! condition.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A local HTTP listener that answers 200 to every request and keeps the bodies.
pub struct Webhook {
    /// Its URL.
    pub url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    /// Starts listening on a free loopback port.
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let keep = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(value) = serde_json::from_slice(&body)
                {
                    keep.lock().unwrap().push(value);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Webhook { url, bodies }
    }

    /// The bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Whether a body with this `event` (and `job` or `alert` equal to `name`) arrived.
    pub fn got(&self, event: &str, name: &str) -> bool {
        self.bodies()
            .iter()
            .any(|b| b["event"] == event && (b["job"] == name || b["alert"] == name))
    }
}

/// Waits up to `secs` seconds for `what` to hold; panics naming `about` otherwise.
pub fn wait_for(secs: u64, about: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !what() {
        assert!(
            Instant::now() < deadline,
            "waited {secs}s in vain for: {about}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The scheduler's state file in `state_dir`, or null when there is none yet.
pub fn state(state_dir: &Path) -> Value {
    match std::fs::read(state_dir.join("scheduler.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The outcomes of `job`'s runs, oldest first.
pub fn outcomes(state_dir: &Path, job: &str) -> Vec<String> {
    state(state_dir)["runs"][job]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|r| r["outcome"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The daemon, its stderr going to a file that the test reads.
pub struct Daemon {
    /// The child process.
    pub child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd schedule run`, logging to `log`.
    pub fn start(mut cmd: Command, log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .args(["schedule", "run"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `secs` for it to exit; its exit code (`None`: killed by a signal).
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {secs}s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
