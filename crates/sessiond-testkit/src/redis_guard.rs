//! Real `redis-server` processes for tests: a standalone server or a small Cluster on
//! free loopback ports, each in its own temp directory, killed on drop.
//!
//! Never the machine's shared Redis: every guard starts its own process. A watchdog
//! shell kills the server when the test binary exits, so guards kept in statics (one
//! server shared by a whole test binary) do not outlive it either.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer PING after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a Cluster may take to agree on its slots after `--cluster create`.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERMed server may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Log bytes quoted in a failure message.
const LOG_TAIL: usize = 4000;
/// Redis Cluster talks on `port + 10000` as well.
const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// How a [`RedisServer`] persists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisOptions {
    /// `appendonly yes` with `appendfsync always` (durability tests); otherwise no
    /// persistence at all (`--save "" --appendonly no`), which is fastest.
    pub durable: bool,
}

/// One `redis-server` child process.
struct RedisProcess {
    port: u16,
    /// Extra arguments beyond port, bind, dir and logfile.
    args: Vec<String>,
    /// Config file written into `dir` before the start (Sentinel needs one it can rewrite).
    config: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
    /// Kills the server if the test binary dies without running `Drop`.
    watchdog: Option<Child>,
}

fn spawn_redis(port: u16, dir: &Path, config: Option<&Path>, args: &[String]) -> Child {
    let mut cmd = Command::new("redis-server");
    // A config file, when there is one, must be the first argument.
    if let Some(config) = config {
        cmd.arg(config);
    }
    cmd.arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("redis-server not found on PATH: install redis-server (apt-get install redis-server)")
        }
        Err(e) => panic!("cannot start redis-server: {e}"),
    }
}

/// Kills the server and removes its directory once the test binary is gone (statics
/// are never dropped, so their `Drop` cannot do it).
fn spawn_watchdog(server_pid: u32, dir: &Path) -> Option<Child> {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -9 {server_pid} 2>/dev/null; rm -rf -- \"$0\"",
        parent = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Sends one inline command and returns the raw reply (enough for PING and CLUSTER INFO).
fn inline_command(port: u16, command: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 8192];
    let mut out = Vec::new();
    // Replies here are short; read until the server pauses.
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.ends_with(b"\r\n")
                    && (out.starts_with(b"+") || out.starts_with(b"-") || complete_bulk(&out))
                {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a `$<len>\r\n<payload>\r\n` reply has arrived whole.
fn complete_bulk(out: &[u8]) -> bool {
    let Some(text) = std::str::from_utf8(out).ok() else {
        return false;
    };
    let Some(rest) = text.strip_prefix('$') else {
        return false;
    };
    let Some((len, body)) = rest.split_once("\r\n") else {
        return false;
    };
    len.parse::<usize>().is_ok_and(|n| body.len() >= n + 2)
}

fn pings(port: u16) -> bool {
    inline_command(port, "PING").is_some_and(|r| r.starts_with("+PONG"))
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let start = log.len().saturating_sub(LOG_TAIL);
    log.get(start..).unwrap_or(&log).to_owned()
}

/// A loopback port that is free now (and, for Cluster nodes, whose bus port is too).
fn free_port(cluster_bus: bool) -> u16 {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local addr").port();
        if !cluster_bus {
            return port;
        }
        let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

impl RedisProcess {
    /// Starts on a fresh free port, retrying on another port if the first is taken.
    fn start(args: Vec<String>, cluster_bus: bool) -> RedisProcess {
        Self::start_with_config(args, None, cluster_bus)
    }

    fn start_with_config(
        args: Vec<String>,
        config: Option<String>,
        cluster_bus: bool,
    ) -> RedisProcess {
        let mut last_err = String::new();
        for _ in 0..3 {
            // Dropping a failed attempt removes its directory, so each attempt gets its own.
            let dir = tempfile::Builder::new()
                .prefix("sessiond-redis-")
                .tempdir()
                .expect("temp dir")
                .keep();
            let mut p = RedisProcess {
                port: free_port(cluster_bus),
                args: args.clone(),
                config: config.clone(),
                dir,
                child: None,
                watchdog: None,
            };
            match p.launch() {
                Ok(()) => return p,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    fn launch(&mut self) -> Result<(), String> {
        let config_path = self.dir.join("redis.conf");
        if let Some(config) = &self.config {
            std::fs::write(&config_path, config)
                .map_err(|e| format!("cannot write config: {e}"))?;
        }
        let mut child = spawn_redis(
            self.port,
            &self.dir,
            self.config.as_ref().map(|_| config_path.as_path()),
            &self.args,
        );
        self.watchdog = spawn_watchdog(child.id(), &self.dir);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if pings(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.kill_watchdog();
                return Err(format!(
                    "exited with {status} on port {}:\n{}",
                    self.port,
                    log_tail(&self.dir)
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.kill_watchdog();
                return Err(format!(
                    "no PONG within {START_TIMEOUT:?} on port {}:\n{}",
                    self.port,
                    log_tail(&self.dir)
                ));
            }
            // Poll interval of a bounded wait (PING until PONG or START_TIMEOUT).
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_watchdog(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                // Poll interval of a bounded wait (exit or STOP_TIMEOUT).
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_watchdog();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_watchdog();
    }

    fn restart(&mut self) {
        self.stop();
        let mut last_err = String::new();
        // The old socket may linger for a moment after the process exits.
        for _ in 0..20 {
            match self.launch() {
                Ok(()) => return,
                Err(e) => last_err = e,
            }
            // Real time: the old socket's port is freed by the kernel, which signals nothing.
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {}: {last_err}",
            self.port
        );
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A standalone `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    proc: RedisProcess,
}

impl RedisServer {
    /// Starts a server without persistence. Panics (with its log) if it does not answer.
    pub fn start() -> RedisServer {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server with `appendonly yes` and `appendfsync always`.
    pub fn start_durable() -> RedisServer {
        Self::start_with(RedisOptions { durable: true })
    }

    /// Starts a replica of the server on `127.0.0.1:<master_port>` (Sentinel failover tests).
    pub fn start_replica_of(master_port: u16) -> RedisServer {
        let args = [
            "--save",
            "",
            "--appendonly",
            "no",
            "--replicaof",
            "127.0.0.1",
        ]
        .map(String::from);
        let mut args = args.to_vec();
        args.push(master_port.to_string());
        RedisServer {
            proc: RedisProcess::start(args, false),
        }
    }

    pub fn start_with(opts: RedisOptions) -> RedisServer {
        let mut args: Vec<String> = vec!["--save".into(), String::new()];
        if opts.durable {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        RedisServer {
            proc: RedisProcess::start(args, false),
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.proc.port)
    }

    pub fn port(&self) -> u16 {
        self.proc.port
    }

    /// The server's working directory (the append-only file lives here).
    pub fn dir(&self) -> &Path {
        &self.proc.dir
    }

    pub fn is_running(&self) -> bool {
        self.proc.child.is_some()
    }

    /// SIGTERM (SIGKILL after a grace period): the fault tests' outage.
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// SIGKILL at once: a crash.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Stops the server if it runs and starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.proc.restart();
    }

    /// For a replica ([`RedisServer::start_replica_of`]): waits until its link to the
    /// master is up and the initial sync is done, so it acknowledges writes (`WAIT`).
    pub fn wait_synced(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !inline_command(self.proc.port, "INFO replication").is_some_and(|info| {
            info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0")
        }) {
            assert!(
                Instant::now() < deadline,
                "replica on port {} did not sync within {START_TIMEOUT:?}:\n{}",
                self.proc.port,
                log_tail(&self.proc.dir)
            );
            // Poll interval of a bounded wait (link up or START_TIMEOUT).
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP: the process stays connected but answers nothing (a stalled replica, a
    /// network partition without resets). [`RedisServer::resume`] undoes it; drop
    /// kills it either way.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let child = self.proc.child.as_ref().expect("server is running");
        let ok = Command::new("kill")
            .arg(sig)
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {}", child.id());
    }
}

/// A Redis Cluster of `n` masters without replicas, on free loopback ports, killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisProcess>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3, as Redis Cluster requires), joins them with
    /// `redis-cli --cluster create`, and waits until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let args: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from)
        .to_vec();
        let nodes: Vec<RedisProcess> = (0..masters)
            .map(|_| RedisProcess::start(args.clone(), true))
            .collect();
        let cluster = RedisCluster { nodes };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in cluster.ports() {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = match create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-cli not found on PATH: install redis-server (apt-get install redis-server)")
            }
            Err(e) => panic!("cannot run redis-cli: {e}"),
        };
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        while !cluster.ports().into_iter().all(|p| {
            inline_command(p, "CLUSTER INFO").is_some_and(|info| info.contains("cluster_state:ok"))
        }) {
            assert!(
                Instant::now() < deadline,
                "cluster did not reach cluster_state:ok within {CLUSTER_TIMEOUT:?}"
            );
            // Poll interval of a bounded wait (cluster_state:ok or CLUSTER_TIMEOUT).
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn node_urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,…`, the form sessiond's config takes.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports()
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

/// A Redis Sentinel watching one master, on a free loopback port, killed on drop.
pub struct RedisSentinel {
    proc: RedisProcess,
    master_name: String,
}

impl RedisSentinel {
    /// Starts a sentinel monitoring the master at `127.0.0.1:<master_port>` under
    /// `master_name`, with a quorum of 1 (enough for a test).
    pub fn start(master_port: u16, master_name: &str) -> RedisSentinel {
        let config = format!(
            "sentinel monitor {master_name} 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds {master_name} 1000\n\
             sentinel failover-timeout {master_name} 5000\n"
        );
        let proc = RedisProcess::start_with_config(vec!["--sentinel".into()], Some(config), false);
        RedisSentinel {
            proc,
            master_name: master_name.to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.proc.port
    }

    /// `redis+sentinel://127.0.0.1:<port>/<master>`, the form sessiond's config takes.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}",
            self.proc.port, self.master_name
        )
    }
}
