//! Runs the real `sessiond` binary for integration tests: writes a config, starts
//! `sessiond serve` on a free port, waits for its announcement, and kills it on drop.
//! Used by the CLI, durability and multi-node tests, which need real processes to
//! SIGTERM, SIGKILL and restart.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails (a cold debug build opening SQLite).
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERMed server may take to drain and flush before the test fails.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Stdout lines kept per server (announcements are short; the bound guards a chatty child).
const MAX_STDOUT_LINES: usize = 1000;
/// Log bytes quoted in a failure message.
const LOG_TAIL: usize = 8000;

/// A `sessiond serve` child process.
pub struct SpawnedServer {
    bin: PathBuf,
    config_path: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    addr: SocketAddr,
    /// `http` or `https`, as the announcement said.
    scheme: &'static str,
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    /// Holds the config, the log and (unless given) the data directory.
    _dir: tempfile::TempDir,
}

impl SpawnedServer {
    /// Starts `bin serve --config <config_toml> --listen 127.0.0.1:0 --data-dir <tmp>` plus
    /// `extra_args`, and waits for `sessiond listening on http(s)://…`. Panics on failure
    /// with the server's log.
    pub fn start(bin: &Path, config_toml: &str, extra_args: &[&str]) -> SpawnedServer {
        Self::start_in(bin, config_toml, None, extra_args)
    }

    /// Like [`SpawnedServer::start`] with a given data directory (`None`: a fresh temp dir).
    pub fn start_in(
        bin: &Path,
        config_toml: &str,
        data_dir: Option<&Path>,
        extra_args: &[&str],
    ) -> SpawnedServer {
        let dir = tempfile::Builder::new()
            .prefix("sessiond-test-")
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join("sessiond.toml");
        std::fs::write(&config_path, config_toml).expect("write config");
        let data_dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("data"));
        let mut server = SpawnedServer {
            bin: bin.to_path_buf(),
            config_path,
            data_dir,
            log_path: dir.path().join("sessiond.log"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            addr: "127.0.0.1:0".parse().expect("literal address"),
            scheme: "http",
            child: None,
            stdout: Arc::default(),
            _dir: dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log");
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<(&'static str, SocketAddr)>();
        let lines = self.stdout.clone();
        // Keeps reading after the announcement so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let announced = ["http", "https"].into_iter().find_map(|scheme| {
                    let rest = line.strip_prefix(&format!("sessiond listening on {scheme}://"))?;
                    Some((scheme, rest.trim().parse().ok()?))
                });
                if let Some(found) = announced {
                    let _ = tx.send(found);
                }
                let mut kept = lines.lock().expect("stdout lines");
                if kept.len() < MAX_STDOUT_LINES {
                    kept.push(line);
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((scheme, addr)) => {
                self.scheme = scheme;
                self.addr = addr;
            }
            Err(e) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                self.kill9();
                panic!(
                    "sessiond did not announce itself ({e:?}; exit status {status:?}); log:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` when the server serves TLS; no trailing slash).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Where the server's stderr (its logs) goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (to assert that no token was ever logged, for instance).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last few KiB of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_end(&mut bytes);
        }
        let from = bytes.len().saturating_sub(LOG_TAIL);
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// What the server printed on stdout (the announcement lines).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lines").clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL and reap: nothing is flushed, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (at most [`STOP_TIMEOUT`], then SIGKILL and panic). Returns the
    /// exit status of a graceful stop.
    pub fn terminate(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("sessiond is not running");
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "cannot send SIGTERM to {}",
            child.id()
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    // Poll interval of a bounded wait (exit or STOP_TIMEOUT).
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "sessiond did not stop within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// Starts the server again on the same data directory, config and address (so
    /// cookie jars keyed by host and port keep working). Stops it with SIGTERM first if it
    /// is still running; call [`SpawnedServer::kill9`] before to simulate a crash.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        self.stdout.lock().expect("stdout lines").clear();
        self.spawn();
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
