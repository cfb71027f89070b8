//! `ws-idle`: N idle WebSockets held through several heartbeat intervals. The server runs
//! in a child process (this binary, `ws-server`), so the RSS and CPU read from
//! `/proc/<pid>` are the server's alone; the clients, spread over loopback source
//! addresses, only answer pings. Targets: sessiond (SQLite, its heartbeat) and a bare
//! axum WebSocket handler (1 KiB read buffer, no write buffer, a ping timer per socket).

use crate::BenchError;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Loopback source addresses the client sockets are spread over (127.0.0.2 …), so the
/// ephemeral ports of one address never run out.
const SOURCE_ADDRESSES: usize = 16;
/// Handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Sessions created at once in the child (sessiond on SQLite groups their commits).
const CREATE_CONCURRENCY: usize = 128;
/// A child process left alone (the parent died) exits after this long.
const CHILD_MAX_LIFE: Duration = Duration::from_secs(1800);
/// Files the process needs besides its sockets (runtime, SQLite, pipes).
const SPARE_FILES: u64 = 256;
/// How long the server's CPU is read with no connection open. `/proc/<pid>/stat` counts
/// 10 ms clock ticks: over 2 s that read 0 or 0.5 % of a core and nothing between (half
/// the 1 % bar, and the scaled figure keeps all of it); over 10 s the step is 0.1 %.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux whatever the
/// kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// The WebSocket server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WsKind {
    Sessiond,
    BareAxum,
}

impl WsKind {
    pub fn label(self) -> &'static str {
        match self {
            WsKind::Sessiond => "sessiond (SQLite, its heartbeat timer)",
            WsKind::BareAxum => {
                "bare axum WS (1 KiB read buffer, no write buffer, a ping timer per socket)"
            }
        }
    }
}

/// The size of a run.
#[derive(Debug, Clone)]
pub struct WsPlan {
    pub conns: usize,
    pub heartbeat: Duration,
    /// Heartbeat intervals held (at least three: the server declares a connection lost
    /// after three missed ones).
    pub intervals: u32,
}

/// One target's figures.
#[derive(Debug, Clone)]
pub struct WsResult {
    pub kind: WsKind,
    pub conns: usize,
    pub connected: u64,
    pub heartbeat: Duration,
    pub hold: Duration,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// Server CPU over the hold (seconds of CPU).
    pub cpu_s: f64,
    /// Server CPU per second with no connection open (its own timers).
    pub idle_cpu_per_s: f64,
    /// Pings the clients received during the hold.
    pub pings: u64,
    /// Close frames and dropped connections the clients saw before the end: connections
    /// the server gave up on (a false "lost") or that failed.
    pub closed: u64,
    pub failed_connects: u64,
    /// `hello` messages (sessiond announces the heartbeat on connect).
    pub hellos: u64,
}

impl WsResult {
    pub fn rss_per_conn_bytes(&self) -> f64 {
        if self.connected == 0 {
            return 0.0;
        }
        (self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 * 1024.0)
            / self.connected as f64
    }
    /// Percent of one core per 10k connections at the measured interval.
    pub fn cpu_pct_per_10k(&self) -> f64 {
        if self.connected == 0 || self.hold.is_zero() {
            return 0.0;
        }
        self.cpu_s / self.hold.as_secs_f64() * 100.0 * 10_000.0 / self.connected as f64
    }
    /// The same at a 30 s heartbeat: what the server spends with no connection stays,
    /// the rest (pings and pongs) scales with the ping rate.
    pub fn cpu_pct_per_10k_at_30s(&self) -> f64 {
        if self.connected == 0 || self.hold.is_zero() {
            return 0.0;
        }
        let rate = self.cpu_s / self.hold.as_secs_f64();
        let fixed = self.idle_cpu_per_s.min(rate);
        let at_30 = fixed + (rate - fixed) * self.heartbeat.as_secs_f64() / 30.0;
        at_30 * 100.0 * 10_000.0 / self.connected as f64
    }
}

/// The soft limit on open files of this process (`/proc/self/limits`; 1024 if unread).
/// The limit cannot be raised from here (no `unsafe` in the workspace): `bench/run.sh`
/// raises it with `ulimit -n`, and the child inherits it.
pub fn file_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

/// Connections that fit one process's file limit (the server and the client each hold
/// one socket per connection, in separate processes).
pub fn max_conns() -> usize {
    file_limit().saturating_sub(SPARE_FILES) as usize
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// User + system CPU of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / USER_HZ
}

/// The child: the server and what the parent needs to drive it.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    tokens: Vec<String>,
}

impl ServerProcess {
    fn start(kind: WsKind, plan: &WsPlan) -> Result<ServerProcess, BenchError> {
        let exe = std::env::current_exe()?;
        let kind_arg = match kind {
            WsKind::Sessiond => "sessiond",
            WsKind::BareAxum => "bare-axum",
        };
        let mut child = Command::new(exe)
            .args(["ws-server", "--kind", kind_arg])
            .arg("--heartbeat")
            .arg(humantime::format_duration(plan.heartbeat).to_string())
            .arg("--sessions")
            .arg(plan.conns.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup("ws-server without stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || -> Result<String, BenchError> {
            lines
                .next()
                .ok_or_else(|| BenchError::Setup("ws-server ended before it was ready".into()))?
                .map_err(BenchError::from)
        };
        let addr: SocketAddr = next()?
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| BenchError::Setup("ws-server did not name its address".into()))?;
        let mut tokens = Vec::new();
        loop {
            let l = next()?;
            if l == "ready" {
                break;
            }
            tokens.push(l);
        }
        Ok(ServerProcess {
            child,
            stdin,
            addr,
            tokens,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin asks it to exit; the kill covers a child that does not.
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"stop\n");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    failed: AtomicU64,
    hellos: AtomicU64,
    pings: AtomicU64,
    closed: AtomicU64,
}

/// Runs one target: start it, open the connections, hold, read its RSS and CPU.
pub fn run(
    clients: &tokio::runtime::Runtime,
    kind: WsKind,
    plan: &WsPlan,
) -> Result<WsResult, BenchError> {
    let server = ServerProcess::start(kind, plan)?;
    let pid = server.pid();
    if kind == WsKind::Sessiond && server.tokens.len() != plan.conns {
        return Err(BenchError::Setup(format!(
            "ws-server made {} sessions, {} wanted",
            server.tokens.len(),
            plan.conns
        )));
    }
    // Let the sessions' writes settle before the baseline is read; then the server's
    // CPU with no connection (its own timers), which does not shrink with the pings.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(pid);
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(IDLE_WINDOW);
    let idle_cpu_per_s = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let url = format!("ws://{}/v1/ws", server.addr);
    let connect_start = Instant::now();
    let tasks = clients.block_on(open_all(
        server.addr,
        &url,
        &server.tokens,
        plan.conns,
        counters.clone(),
        stop_rx,
    ));
    let connected = counters.connected.load(Ordering::Relaxed);
    eprintln!(
        "ws-idle {}: {connected} of {} connected in {:.1} s",
        kind.label(),
        plan.conns,
        connect_start.elapsed().as_secs_f64()
    );
    // The hold: the pings of every connection come round `intervals` times.
    let hold = plan.heartbeat * plan.intervals.max(1);
    std::thread::sleep(Duration::from_millis(500));
    let pings_before = counters.pings.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut rss_peak = rss_kib(pid);
    while t0.elapsed() < hold {
        std::thread::sleep(Duration::from_millis(250).min(hold));
        rss_peak = rss_peak.max(rss_kib(pid));
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    let held = t0.elapsed();
    let result = WsResult {
        kind,
        conns: plan.conns,
        connected,
        heartbeat: plan.heartbeat,
        hold: held,
        rss_before_kib: rss_before,
        rss_after_kib: rss_peak,
        cpu_s: cpu,
        idle_cpu_per_s,
        pings: counters.pings.load(Ordering::Relaxed) - pings_before,
        closed: counters.closed.load(Ordering::Relaxed),
        failed_connects: counters.failed.load(Ordering::Relaxed),
        hellos: counters.hellos.load(Ordering::Relaxed),
    };
    // Stop counting before the server goes away (its going-away closes are expected).
    let _ = stop_tx.send(true);
    drop(server);
    clients.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    });
    eprintln!(
        "ws-idle {}: {:.0} B/conn, {:.2} % of a core per 10k at {} ({:.2} % at 30 s), {} pings, {} closed",
        kind.label(),
        result.rss_per_conn_bytes(),
        result.cpu_pct_per_10k(),
        humantime::format_duration(plan.heartbeat),
        result.cpu_pct_per_10k_at_30s(),
        result.pings,
        result.closed
    );
    Ok(result)
}

async fn open_all(
    server: SocketAddr,
    url: &str,
    tokens: &[String],
    n: usize,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let token = tokens.get(i).cloned();
        let url = url.to_owned();
        let counters = counters.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            one_conn(i, server, url, token, counters, stop, permit).await;
        }));
    }
    // Every handshake done (or failed): all permits are back.
    let _ = gate.acquire_many(CONNECT_CONCURRENCY as u32).await;
    tasks
}

async fn one_conn(
    i: usize,
    server: SocketAddr,
    url: String,
    token: Option<String>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let source = Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCE_ADDRESSES) as u8);
    let ws = async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        let tcp = sock.connect(server).await?;
        let mut req = url.as_str().into_client_request()?;
        let h = req.headers_mut();
        h.insert(
            "sec-websocket-protocol",
            "sessiond.v1"
                .parse()
                .map_err(|_| BenchError::Setup("header".into()))?,
        );
        if let Some(t) = &token {
            h.insert(
                "authorization",
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| BenchError::Setup("header".into()))?,
            );
        }
        let cfg = WebSocketConfig {
            write_buffer_size: 0,
            ..Default::default()
        };
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(cfg)).await?;
        Ok::<_, BenchError>(ws)
    }
    .await;
    // Counted before the permit goes back: once every permit is back, every
    // connection is counted.
    let mut ws = match ws {
        Ok(ws) => {
            counters.connected.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            ws
        }
        Err(e) => {
            if counters.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("ws-idle: a connection failed: {e}");
            }
            return;
        }
    };
    use tokio_tungstenite::tungstenite::Message as M;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => match m {
                // Reading answers pings (tungstenite queues the pong and flushes it on
                // the next read), as a browser does.
                Some(Ok(M::Ping(_))) => { counters.pings.fetch_add(1, Ordering::Relaxed); }
                Some(Ok(M::Text(_))) => { counters.hellos.fetch_add(1, Ordering::Relaxed); }
                Some(Ok(M::Close(_))) | None | Some(Err(_)) => {
                    if !*stop.borrow() {
                        counters.closed.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    let _ = ws.close(None).await;
}

/// The child process (`ws-server`): starts `kind` on 127.0.0.1:0 with `heartbeat`,
/// creates `sessions` sessions (sessiond), prints `addr <a>`, one token per line and
/// `ready`, then serves until its standard input closes.
pub fn serve_child(kind: WsKind, heartbeat: Duration, sessions: usize) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ws-server")
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new()
        .prefix("sessiond-bench-ws-")
        .tempdir()?;
    let out = std::io::stdout();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        let mut tokens = Vec::new();
        match kind {
            WsKind::Sessiond => {
                let toml = format!(
                    "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nstore = \"sqlite\"\ndev = true\n\
                     api_keys = [\"bench-admin-key-0001\"]\n\
                     server_secret = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n\
                     [rate_limits]\nenabled = false\n\
                     [http]\nmax_connections = 1000000\nmax_connections_per_ip = 1000000\n\
                     [roles.editor]\nheartbeat_interval = \"{}\"\n",
                    dir.path().display().to_string(),
                    humantime::format_duration(heartbeat)
                );
                let config = sessiond_server::config::Config::from_toml(&toml)
                    .map_err(|e| BenchError::Setup(format!("sessiond config: {e}")))?;
                let server = sessiond_server::ServerBuilder::new(config)
                    .build()
                    .await
                    .map_err(|e| BenchError::Setup(format!("sessiond: {e}")))?;
                tokens = create_sessions(server.state(), sessions).await?;
                tokio::spawn(async move {
                    if let Err(e) = server.serve(listener, shutdown).await {
                        eprintln!("sessiond stopped with an error: {e}");
                    }
                });
            }
            WsKind::BareAxum => {
                let app = bare_ws(heartbeat);
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await;
                });
            }
        }
        let mut w = out.lock();
        writeln!(w, "addr {addr}")?;
        for t in &tokens {
            writeln!(w, "{t}")?;
        }
        writeln!(w, "ready")?;
        w.flush()?;
        drop(w);
        // Until the parent closes our stdin (or goes away), bounded in any case.
        let waiting = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        });
        let _ = tokio::time::timeout(CHILD_MAX_LIFE, waiting).await;
        let _ = stop_tx.send(());
        Ok::<_, BenchError>(())
    })?;
    // Open sockets are not closed one by one: the process ends.
    std::process::exit(0)
}

async fn create_sessions(
    state: &sessiond_server::state::AppState,
    n: usize,
) -> Result<Vec<String>, BenchError> {
    let client = sessiond_core::lifecycle::ClientInfo::default();
    let mut out = Vec::with_capacity(n);
    let mut made = futures::stream::iter(0..n)
        .map(|_| {
            let s = state.sessions.clone();
            let client = client.clone();
            async move { s.get_or_create(None, None, &client).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY);
    while let Some(r) = made.next().await {
        match r {
            Ok(sessiond_server::sessions::Obtained::Created { token, .. }) => {
                out.push(token.as_str().to_owned());
            }
            Ok(_) => {
                return Err(BenchError::Setup(
                    "create returned an existing session".into(),
                ))
            }
            Err(e) => return Err(BenchError::Setup(format!("create: {e}"))),
        }
    }
    Ok(out)
}

/// The reference: a bare axum WebSocket handler that pings on its own timer and reads.
fn bare_ws(heartbeat: Duration) -> Router {
    async fn upgrade(ws: WebSocketUpgrade, hb: Duration) -> Response {
        // The same subprotocol as sessiond, so the clients are driven the same way.
        ws.protocols(["sessiond.v1"])
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .on_upgrade(move |socket| conn(socket, hb))
    }
    async fn conn(mut socket: WebSocket, hb: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + hb, hb);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if socket.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                        break;
                    }
                }
                m = socket.recv() => match m {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    Router::new().route(
        "/v1/ws",
        get(move |ws: WebSocketUpgrade| upgrade(ws, heartbeat)),
    )
}

pub fn verdict_at_most(measured: f64, bar: f64, unit: &str) -> String {
    if measured <= bar {
        format!("**met**, {:.2}x under the bar", bar / measured.max(1e-9))
    } else {
        format!(
            "**not met**: {:.2}x the bar ({:.2} {unit} over)",
            measured / bar,
            measured - bar
        )
    }
}

/// Everything `ws-idle` measured.
#[derive(Debug, Clone, Default)]
pub struct WsReport {
    pub results: Vec<WsResult>,
    pub parts: Option<WsParts>,
}

/// The `ws-idle` section of docs/benchmarks.md.
pub fn markdown(report: &WsReport) -> String {
    use std::fmt::Write;
    let results = &report.results;
    let mut s = String::new();
    let Some(first) = results.first() else {
        return s;
    };
    let _ = writeln!(
        s,
        "## `ws-idle`: {} idle WebSockets, server heartbeat {}, held {:.0} s\n",
        first.conns,
        humantime::format_duration(first.heartbeat),
        first.hold.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "Each target runs alone in a child process (`sessiond-bench ws-server`, two tokio \
         workers), so RSS and CPU read from `/proc/<pid>` are the server's only. The \
         clients (one tokio worker in the tool's process) connect from {SOURCE_ADDRESSES} \
         loopback source addresses (127.0.0.2 …), then only read, answering each ping \
         with a pong as a browser does. RSS per connection is the server's RSS growth \
         from before the first connection to its peak during the hold, divided by the \
         connections; CPU is the server's user + system time over the hold \
         (`/proc/<pid>/stat`), per 10k connections. Idle connections cost CPU only per \
         ping, so the figure at a 30 s heartbeat keeps what the server spends with no \
         connection (read over 10 s before the first one) and scales the rest by \
         interval / 30 s; `--ws-heartbeat 30s` measures it directly (a longer run). A \
         connection closed by the server before the end would be a false \"lost\"; the \
         sessiond sessions are created (SQLite) before the baseline RSS is read.\n"
    );
    let base = results
        .iter()
        .find(|r| r.kind == WsKind::BareAxum)
        .map(WsResult::rss_per_conn_bytes);
    let _ = writeln!(
        s,
        "| target | connected | RSS per connection | ratio to bare axum | CPU per 10k at {} (measured) | CPU per 10k at 30 s (scaled) | pings answered | closed by the server |",
        humantime::format_duration(first.heartbeat)
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for r in results {
        let ratio = match base {
            Some(b) if b > 0.0 => format!("{:.2}x", r.rss_per_conn_bytes() / b),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {} | {} of {} | {:.2} KiB | {} | {:.2} % | {:.2} % | {} | {} |",
            r.kind.label(),
            r.connected,
            r.conns,
            r.rss_per_conn_bytes() / 1024.0,
            ratio,
            r.cpu_pct_per_10k(),
            r.cpu_pct_per_10k_at_30s(),
            r.pings,
            r.closed
        );
    }
    let _ = writeln!(s);
    if let Some(p) = &report.parts {
        let _ = writeln!(
            s,
            "Parts of one sessiond connection, weighed apart in a fresh process: the \
             whole task's future (`ws::task_future_bytes`, `size_of_val` before it runs, \
             the WebSocket stream included; its opening, the making of the stream and each \
             write run in boxed futures of their own, freed when done) {} B; its shared state with the outbound queue \
             (`ws::hub::ConnShared`: a bounded `VecDeque` of `Outbound`, {} B each, \
             behind a mutex, which holds no buffer while empty) {:.0} B of RSS.\n",
            p.task_future_bytes, p.outbound_bytes, p.queue_bytes
        );
    }
    s
}

/// The rows of the bars table for `ws-idle`.
pub fn bar_rows(report: &WsReport) -> Vec<String> {
    let Some(r) = report.results.iter().find(|r| r.kind == WsKind::Sessiond) else {
        return vec![
            "| idle WebSockets: ≤ 4 KiB and ≤ 1 % of a core per 10k connections (`ws-idle`) | not run | — |"
                .to_owned(),
        ];
    };
    let kib = r.rss_per_conn_bytes() / 1024.0;
    let cpu = r.cpu_pct_per_10k_at_30s();
    vec![
        format!(
            "| idle WebSockets: ≤ 4 KiB per connection (`ws-idle`, {} connections) | {kib:.2} KiB | {} |",
            r.connected,
            verdict_at_most(kib, 4.0, "KiB")
        ),
        format!(
            "| idle WebSockets: ≤ 1 % of a core per 10k connections at a 30 s heartbeat | {cpu:.2} % (scaled from {:.2} % at {}) | {} |",
            r.cpu_pct_per_10k(),
            humantime::format_duration(r.heartbeat),
            verdict_at_most(cpu, 1.0, "%")
        ),
        format!(
            "| idle WebSockets: no connection falsely declared lost | {} closed by the server of {}, {} pings answered | {} |",
            r.closed,
            r.connected,
            r.pings,
            if r.closed == 0 && r.connected as usize == r.conns { "**met**" } else { "**not met**" }
        ),
    ]
}

/// What one sessiond connection is made of, measured apart (`ws-parts`, in a fresh
/// process): the connection task's future, and its shared state with the outbound queue.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WsParts {
    /// `size_of_val` of the connection task's future (`ws::task_future_bytes`), before it runs.
    pub task_future_bytes: usize,
    /// RSS per connection's shared state and outbound queue (`Arc<ConnShared>`, empty, as
    /// an idle connection holds it).
    pub queue_bytes: f64,
    pub outbound_bytes: usize,
}

/// Measures [`WsParts`] (run in a fresh process: `sessiond-bench ws-parts`).
pub fn measure_parts() -> Result<WsParts, BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let toml = "listen = \"127.0.0.1:0\"\nstore = \"memory\"\ndev = true\n\
                    api_keys = [\"bench-admin-key-0001\"]\n\
                    server_secret = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n";
        let config = sessiond_server::config::Config::from_toml(toml)
            .map_err(|e| BenchError::Setup(format!("sessiond config: {e}")))?;
        let server = sessiond_server::ServerBuilder::new(config)
            .build()
            .await
            .map_err(|e| BenchError::Setup(format!("sessiond: {e}")))?;
        let state = server.state().clone();
        let client = sessiond_core::lifecycle::ClientInfo::default();
        let session = match state.sessions.get_or_create(None, None, &client).await {
            Ok(sessiond_server::sessions::Obtained::Created { session, .. }) => session,
            _ => return Err(BenchError::Setup("could not create a session".into())),
        };
        let task_future_bytes = sessiond_server::ws::task_future_bytes(&state, session);
        let k = 100_000;
        let before = rss_kib(std::process::id());
        let ws = &state.config.ws;
        let queues: Vec<_> = (0..k)
            .map(|_| {
                Arc::new(
                    sessiond_server::ws::hub::ConnShared::new(0, ws.outbound_queue)
                        .with_byte_limit(ws.max_outbound_bytes),
                )
            })
            .collect();
        let after = rss_kib(std::process::id());
        drop(queues);
        Ok(WsParts {
            task_future_bytes,
            queue_bytes: after.saturating_sub(before) as f64 * 1024.0 / k as f64,
            outbound_bytes: std::mem::size_of::<sessiond_server::ws::hub::Outbound>(),
        })
    })
}
