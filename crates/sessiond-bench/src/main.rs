//! `sessiond-bench`: puts sessiond and its baselines under the same load in one run,
//! interleaving rounds (A B C A B C …) and taking medians, since the machine is shared.
//! `http-hot` is the validate-and-touch path, `create` session creation, `drafts`
//! autosave writes, `cluster` two nodes on one Redis, `ws-idle` idle WebSockets,
//! `expiry` many expiring sessions; `all` runs them all and can write
//! docs/benchmarks.md; `smoke` runs them at tiny sizes and checks the tool.
//! `cluster-balance` ([`balance`]) checks that no Redis Cluster master is a hot shard.

mod balance;
mod cluster;
mod drafts;
mod expiry;
mod load;
mod rawhttp;
mod report;
mod serve;
mod targets;
mod tower_redis;
mod ws_idle;

use clap::{Parser, Subcommand};
use load::{Plan, Sample};
use reqwest::Method;
use std::path::PathBuf;
use std::time::Duration;
use targets::Kind;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Boxed: tungstenite's error is large, and every result of the tool carries it.
    #[error("websocket: {0}")]
    Ws(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("{0}")]
    Setup(String),
    #[error("smoke run failed: {0}")]
    Smoke(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for BenchError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        BenchError::Ws(Box::new(e))
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "sessiond-bench",
    about = "Load tool for sessiond and its baselines"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    size: Size,
}

#[derive(clap::Args, Debug, Clone)]
struct Size {
    /// Measured time per target per round (after a warm-up of an eighth of it, ≤ 1 s).
    #[arg(long, global = true, default_value = "8s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Interleaved rounds; each figure is the median over them.
    #[arg(long, global = true, default_value_t = 3)]
    rounds: usize,
    /// Concurrent keep-alive clients on the hot path.
    #[arg(long, global = true, default_value_t = 64)]
    hot_clients: usize,
    /// Sessions each hot-path client cycles through (each client has its own).
    #[arg(long, global = true, default_value_t = 4)]
    sessions_per_client: usize,
    /// Concurrent clients creating sessions.
    #[arg(long, global = true, default_value_t = 32)]
    create_clients: usize,
    /// Concurrent clients writing drafts (each its own session and conversation).
    #[arg(long, global = true, default_value_t = 32)]
    drafts_clients: usize,
    /// Revocations measured in `cluster` (each of a fresh session).
    #[arg(long, global = true, default_value_t = 50)]
    revocations: usize,
    /// Leave out the sessiond-on-Redis rows (they need `redis-server` on PATH).
    #[arg(long, global = true)]
    no_redis: bool,
    /// Load with reqwest instead of the tool's minimal HTTP/1.1 client (to compare them).
    #[arg(long, global = true)]
    reqwest: bool,
    /// Write the report (Markdown) here instead of standard output.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// The commit measured, named in the report.
    #[arg(long, global = true, default_value = "")]
    commit: String,
    /// Idle WebSockets held in `ws-idle` (capped by the open-file limit).
    #[arg(long, global = true, default_value_t = 15_000)]
    ws_conns: usize,
    /// Server heartbeat interval during `ws-idle` (CPU is also reported scaled to 30 s).
    #[arg(long, global = true, default_value = "5s", value_parser = humantime::parse_duration)]
    ws_heartbeat: Duration,
    /// Heartbeat intervals `ws-idle` holds the connections through.
    #[arg(long, global = true, default_value_t = 3)]
    ws_intervals: u32,
    /// Sessions of the bulk `expiry` run (memory store).
    #[arg(long, global = true, default_value_t = 1_000_000)]
    expiry_sessions: usize,
    /// How long the `expiry` burst creates sessions (SQLite).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    expiry_burst: Duration,
    /// Idle timeout of the burst's sessions.
    #[arg(long, global = true, default_value = "20s", value_parser = humantime::parse_duration)]
    expiry_burst_idle: Duration,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Validate a cookie and record activity (`GET /v1/auth/verify`).
    HttpHot,
    /// Create a session (`POST /v1/session`, no cookie).
    Create,
    /// Autosave-like draft writes (`PUT /v1/drafts/{conversation}`), SQLite and Redis.
    Drafts,
    /// Two nodes on one Redis: hot path split over both, revocation from one to the other.
    Cluster,
    /// N idle WebSockets: server RSS per connection, CPU per 10k, no false losses.
    WsIdle,
    /// Many sessions left to expire: lateness of every expiry, memory, touch cost.
    Expiry,
    /// Every scenario.
    All,
    /// Every scenario at tiny sizes; fails unless every target answered and none erred.
    Smoke,
    /// Serve one target for an outside load generator (prints its base URL).
    Serve {
        #[arg(value_enum)]
        target: Kind,
        /// How long to serve.
        #[arg(long = "for", default_value = "30s", value_parser = humantime::parse_duration)]
        serve_for: Duration,
        /// Write the cookies of this many new sessions here, one a line.
        #[arg(long)]
        cookies: Option<PathBuf>,
        #[arg(long, default_value_t = 256)]
        sessions: usize,
    },
    /// One part of `expiry`, in a fresh child process (not for direct use): prints
    /// `result <json>`.
    #[command(hide = true)]
    ExpiryPart {
        #[arg(long, value_enum)]
        part: ExpiryPart,
        #[arg(long)]
        n: usize,
        #[arg(long, value_parser = humantime::parse_duration)]
        burst: Duration,
        #[arg(long, value_parser = humantime::parse_duration)]
        idle: Duration,
    },
    /// Weighs a sessiond connection's parts, in a fresh child process of `ws-idle` (not
    /// for direct use): prints `result <json>`.
    #[command(hide = true)]
    WsParts,
    /// The `ws-idle` server, in a child process of `ws-idle` (not for direct use).
    #[command(hide = true)]
    WsServer {
        #[arg(long, value_enum)]
        kind: ws_idle::WsKind,
        #[arg(long, value_parser = humantime::parse_duration)]
        heartbeat: Duration,
        #[arg(long)]
        sessions: usize,
    },
    /// Commands per master of a local 3-master Redis Cluster under the hot path, creation
    /// and expiry through one sessiond node (needs `redis-server` and `redis-cli`); fails
    /// if a phase's busiest master runs more than `--max-ratio` times the mean.
    ClusterBalance {
        /// The bar: busiest master / mean.
        #[arg(long, default_value_t = 1.5)]
        max_ratio: f64,
    },
}

/// The parts of `expiry`, each measured in its own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExpiryPart {
    Timer,
    MemoryStore,
    Bulk,
    Burst,
}

/// One scenario: the targets, the baseline the ratios are taken to, the request.
pub struct Scenario {
    pub name: &'static str,
    pub request: &'static str,
    pub targets: Vec<Kind>,
    pub baseline: Kind,
    pub clients: usize,
    /// Sessions per client (0: requests carry no cookie).
    pub sessions_per_client: usize,
}

/// The samples of one target over the rounds.
pub struct Row {
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

pub struct ScenarioResult {
    pub scenario: Scenario,
    pub rows: Vec<Row>,
}

fn scenarios(which: &Cmd, size: &Size, redis: bool) -> Vec<Scenario> {
    let mut hot = vec![Kind::BareAxum, Kind::TowerMemory, Kind::SessiondSqlite];
    let mut create = vec![
        // The ceiling: what any handler can answer on this machine and client.
        Kind::BareAxum,
        Kind::NaiveInsert,
        Kind::SessiondSqliteSolo,
        Kind::SessiondSqlite,
        // sessiond's own work per create, with a store that does almost nothing.
        Kind::SessiondMemory,
    ];
    if redis {
        hot.push(Kind::TowerRedis);
        hot.push(Kind::SessiondRedis);
        create.push(Kind::SessiondRedis);
    }
    let mut out = Vec::new();
    if matches!(which, Cmd::HttpHot | Cmd::All | Cmd::Smoke) {
        out.push(Scenario {
            name: "http-hot",
            request: "GET /v1/auth/verify with the client's session cookie",
            targets: hot,
            baseline: Kind::BareAxum,
            clients: size.hot_clients,
            sessions_per_client: size.sessions_per_client.max(1),
        });
    }
    if matches!(which, Cmd::Create | Cmd::All | Cmd::Smoke) {
        out.push(Scenario {
            name: "create",
            request: "POST /v1/session without a cookie",
            targets: create,
            baseline: Kind::NaiveInsert,
            clients: size.create_clients,
            sessions_per_client: 0,
        });
    }
    out
}

fn run_scenario(
    servers: &tokio::runtime::Runtime,
    clients: &tokio::runtime::Runtime,
    scenario: Scenario,
    size: &Size,
) -> Result<ScenarioResult, BenchError> {
    let path = if scenario.sessions_per_client > 0 {
        "/v1/auth/verify"
    } else {
        "/v1/session"
    };
    let method = if scenario.sessions_per_client > 0 {
        Method::GET
    } else {
        Method::POST
    };
    let mut running = Vec::new();
    let mut plans = Vec::new();
    for &kind in &scenario.targets {
        let r = servers.block_on(targets::start(kind))?;
        let cookies = clients.block_on(load::new_sessions(
            &r.url("/v1/session"),
            scenario.clients * scenario.sessions_per_client,
        ))?;
        let per_client: Vec<Plan> = (0..scenario.clients)
            .map(|c| Plan {
                method: method.clone(),
                url: r.url(path),
                cookies: cookies
                    .iter()
                    .skip(c)
                    .step_by(scenario.clients)
                    .cloned()
                    .collect(),
            })
            .collect();
        plans.push(per_client);
        running.push(r);
    }
    let mut rows: Vec<Row> = scenario
        .targets
        .iter()
        .map(|&kind| Row {
            kind,
            samples: Vec::new(),
        })
        .collect();
    for round in 0..size.rounds.max(1) {
        for (row, plan) in rows.iter_mut().zip(&plans) {
            let s = clients.block_on(load::run(plan.clone(), size.duration))?;
            eprintln!(
                "{} round {}: {:<64} {:>9.0}/s p50 {:>6} µs p99 {:>6} µs errors {}",
                scenario.name,
                round + 1,
                row.kind.label(),
                s.per_sec,
                s.p50_us,
                s.p99_us,
                s.errors
            );
            row.samples.push(s);
        }
    }
    for r in running {
        servers.block_on(r.stop());
    }
    Ok(ScenarioResult { scenario, rows })
}

/// Fails unless every row answered at least once and nothing failed.
fn smoke_check(scenario: &str, rows: &[Row]) -> Result<(), BenchError> {
    for row in rows {
        let (ok, errors) = row
            .samples
            .iter()
            .fold((0, 0), |(o, e), s| (o + s.ok, e + s.errors));
        if ok == 0 || errors > 0 {
            return Err(BenchError::Smoke(format!(
                "{scenario} on {}: {ok} answered, {errors} failed",
                row.kind.label()
            )));
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("sessiond-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<(), BenchError> {
    if let Cmd::WsServer {
        kind,
        heartbeat,
        sessions,
    } = cli.command
    {
        return ws_idle::serve_child(kind, heartbeat, sessions);
    }
    if let Cmd::WsParts = cli.command {
        let p = ws_idle::measure_parts()?;
        println!(
            "result {}",
            serde_json::to_string(&p).map_err(|e| BenchError::Setup(e.to_string()))?
        );
        return Ok(());
    }
    if let Cmd::ExpiryPart {
        part,
        n,
        burst,
        idle,
    } = cli.command
    {
        return expiry_part(part, n, burst, idle);
    }
    let mut size = cli.size;
    let smoke = matches!(cli.command, Cmd::Smoke);
    if smoke {
        size.duration = Duration::from_millis(300);
        size.rounds = 1;
        size.hot_clients = 4;
        size.sessions_per_client = 2;
        size.create_clients = 4;
        size.drafts_clients = 4;
        size.revocations = 3;
        size.ws_conns = 20;
        size.ws_heartbeat = Duration::from_secs(1);
        size.ws_intervals = 3;
        size.expiry_sessions = 2000;
        size.expiry_burst = Duration::from_secs(1);
        size.expiry_burst_idle = Duration::from_secs(2);
    }
    let redis = !size.no_redis && targets::redis_available();
    load::GENERAL_CLIENT.store(size.reqwest, std::sync::atomic::Ordering::Relaxed);
    // The servers and the clients on separate runtimes, like a load tool outside the
    // process: two server workers (the machine's cores), one client worker (wrk -t1).
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    if let Cmd::ClusterBalance { max_ratio } = &cli.command {
        let max_ratio = *max_ratio;
        let phases = balance::run(
            &servers,
            &clients,
            &balance::Opts {
                duration: size.duration,
                hot_clients: size.hot_clients,
                sessions_per_client: size.sessions_per_client,
                create_clients: size.create_clients,
            },
        )?;
        let md = balance::markdown(&phases);
        match &size.out {
            Some(p) => std::fs::write(p, &md)?,
            None => print!("{md}"),
        }
        if let Some(p) = phases.iter().find(|p| p.ratio() > max_ratio) {
            return Err(BenchError::Setup(format!(
                "{}: busiest master {:.2}x the mean (bar {max_ratio}x)",
                p.name,
                p.ratio()
            )));
        }
        return Ok(());
    }
    if let Cmd::Serve {
        target,
        serve_for,
        cookies,
        sessions,
    } = &cli.command
    {
        return serve::run(
            &servers,
            &clients,
            *target,
            *sessions,
            cookies.as_deref(),
            *serve_for,
        );
    }
    let load_before = report::loadavg();
    let mut results = Vec::new();
    for s in scenarios(&cli.command, &size, redis) {
        results.push(run_scenario(&servers, &clients, s, &size)?);
    }
    let every = matches!(cli.command, Cmd::All | Cmd::Smoke);
    let drafts = if every || matches!(cli.command, Cmd::Drafts) {
        Some(drafts::run(&servers, &clients, &size, redis)?)
    } else {
        None
    };
    let cluster = if redis && (every || matches!(cli.command, Cmd::Cluster)) {
        Some(cluster::run(&servers, &clients, &size)?)
    } else if matches!(cli.command, Cmd::Cluster) {
        return Err(BenchError::Setup(
            "cluster needs redis-server on PATH (and no --no-redis)".to_owned(),
        ));
    } else {
        None
    };
    let ws = if every || matches!(cli.command, Cmd::WsIdle) {
        run_ws_idle(&clients, &size)?
    } else {
        ws_idle::WsReport::default()
    };
    let expiry = if every || matches!(cli.command, Cmd::Expiry) {
        run_expiry(&size)?
    } else {
        expiry::ExpiryReport::default()
    };
    let load_after = report::loadavg();
    if smoke {
        if let Some(d) = &drafts {
            smoke_check("drafts", &d.rows)?;
        }
        if let Some(c) = &cluster {
            let rows: Vec<Row> = c
                .nodes
                .iter()
                .map(|s| Row {
                    kind: Kind::SessiondRedis,
                    samples: s.clone(),
                })
                .collect();
            smoke_check("cluster", &rows)?;
            if !c.failures.is_empty() || c.after_answer_us.len() != size.revocations {
                return Err(BenchError::Smoke(format!(
                    "cluster: {} of {} revocations refused on node B ({:?})",
                    c.after_answer_us.len(),
                    size.revocations,
                    c.failures
                )));
            }
        }
        smoke_checks(&ws, &expiry)?;
        for r in &results {
            smoke_check(r.scenario.name, &r.rows)?;
        }
        let mut summary = report::summary(&results);
        if let Some(d) = &drafts {
            for row in &d.rows {
                summary.push_str(&format!(
                    "; drafts / {}: {}",
                    row.kind.label(),
                    report::rate(report::medians(&row.samples).0)
                ));
            }
        }
        if let Some(c) = &cluster {
            summary.push_str("; ");
            summary.push_str(&cluster::summary(c));
        }
        println!(
            "smoke ok: {summary}; ws-idle: {}; expiry: {}",
            ws.results
                .iter()
                .map(|r| format!("{} {} connected", r.kind.label(), r.connected))
                .collect::<Vec<_>>()
                .join(", "),
            expiry
                .runs
                .iter()
                .map(|r| format!("{} {} ended", r.name, r.ended))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let md = report::markdown(&report::Run {
        results: &results,
        duration: size.duration,
        rounds: size.rounds.max(1),
        redis,
        load_before,
        load_after,
        commit: &size.commit,
        drafts: drafts.as_ref(),
        cluster: cluster.as_ref(),
        ws: &ws,
        expiry: &expiry,
    });
    match &size.out {
        Some(p) => std::fs::write(p, md)?,
        None => print!("{md}"),
    }
    Ok(())
}

/// `ws-idle`: the bare axum reference, then sessiond, with the same clients.
fn run_ws_idle(
    clients: &tokio::runtime::Runtime,
    size: &Size,
) -> Result<ws_idle::WsReport, BenchError> {
    let cap = ws_idle::max_conns();
    let conns = size.ws_conns.min(cap);
    if conns < size.ws_conns {
        eprintln!(
            "ws-idle: {} connections asked, {conns} fit the open-file limit",
            size.ws_conns
        );
    }
    let plan = ws_idle::WsPlan {
        conns,
        heartbeat: size.ws_heartbeat,
        intervals: size.ws_intervals.max(3),
    };
    let mut results = Vec::new();
    for kind in [ws_idle::WsKind::BareAxum, ws_idle::WsKind::Sessiond] {
        results.push(ws_idle::run(clients, kind, &plan)?);
    }
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("ws-parts")
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let parts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .and_then(|j| serde_json::from_str::<ws_idle::WsParts>(j).ok());
    if let Some(p) = &parts {
        eprintln!(
            "ws-idle parts: task future {} B, shared state and outbound queue {:.0} B",
            p.task_future_bytes, p.queue_bytes
        );
    }
    Ok(ws_idle::WsReport { results, parts })
}

/// `expiry`: the timer and the store alone, the bulk run (memory), the burst (SQLite),
/// each in a fresh child process so each RSS delta counts its own memory only.
fn run_expiry(size: &Size) -> Result<expiry::ExpiryReport, BenchError> {
    let n = size.expiry_sessions.max(1);
    let burst_idle = size
        .expiry_burst_idle
        .max(size.expiry_burst + Duration::from_secs(1));
    let child = |part: &str| -> Result<String, BenchError> {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["expiry-part", "--part", part, "--n", &n.to_string()])
            .arg("--burst")
            .arg(humantime::format_duration(size.expiry_burst).to_string())
            .arg("--idle")
            .arg(humantime::format_duration(burst_idle).to_string())
            .stderr(std::process::Stdio::inherit())
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("result ")) {
            Some(r) if out.status.success() => Ok(r.to_owned()),
            _ => Err(BenchError::Setup(format!(
                "expiry part {part} failed ({}): {stdout}",
                out.status
            ))),
        }
    };
    let parse = |s: String| -> Result<serde_json::Value, BenchError> {
        serde_json::from_str(&s).map_err(|e| BenchError::Setup(format!("expiry part: {e}")))
    };
    let timer_bytes = parse(child("timer")?)?.as_f64().unwrap_or(0.0);
    let memory_store_bytes = parse(child("memory-store")?)?.as_f64().unwrap_or(0.0);
    eprintln!(
        "expiry: timer {timer_bytes:.0} B/entry, memory store {memory_store_bytes:.0} B/session"
    );
    let mut runs = Vec::new();
    for part in ["bulk", "burst"] {
        let r: expiry::ExpiryResult = serde_json::from_str(&child(part)?)
            .map_err(|e| BenchError::Setup(format!("expiry part: {e}")))?;
        runs.push(r);
    }
    Ok(expiry::ExpiryReport {
        parts: Some(expiry::MemoryParts {
            n,
            timer_bytes,
            memory_store_bytes,
        }),
        runs,
    })
}

/// The child of [`run_expiry`]: measures one part and prints `result <json>`.
fn expiry_part(
    part: ExpiryPart,
    n: usize,
    burst: Duration,
    idle: Duration,
) -> Result<(), BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-expiry")
        .enable_all()
        .build()?;
    let json = rt.block_on(async {
        let v = match part {
            ExpiryPart::Timer => serde_json::json!(expiry::timer_bytes(n)),
            ExpiryPart::MemoryStore => serde_json::json!(expiry::memory_store_bytes(n).await?),
            ExpiryPart::Bulk => {
                let idle =
                    expiry::calibrate(expiry::ExpiryStore::Memory, n, (n / 50).clamp(100, 20_000))
                        .await?;
                let r = expiry::run(&expiry::ExpiryPlan {
                    name: "bulk",
                    store: expiry::ExpiryStore::Memory,
                    load: expiry::Load::Count(n),
                    idle,
                    drain: Duration::from_secs(60),
                })
                .await?;
                serde_json::to_value(r).map_err(|e| BenchError::Setup(e.to_string()))?
            }
            ExpiryPart::Burst => {
                let r = expiry::run(&expiry::ExpiryPlan {
                    name: "burst",
                    store: expiry::ExpiryStore::Sqlite,
                    load: expiry::Load::For(burst),
                    idle,
                    drain: Duration::from_secs(120),
                })
                .await?;
                serde_json::to_value(r).map_err(|e| BenchError::Setup(e.to_string()))?
            }
        };
        Ok::<_, BenchError>(v)
    })?;
    println!("result {json}");
    Ok(())
}

/// What the smoke run holds the two scenarios to: every connection made, held and
/// pinged without a close; every session ended.
fn smoke_checks(ws: &ws_idle::WsReport, ex: &expiry::ExpiryReport) -> Result<(), BenchError> {
    if ws.parts.as_ref().is_none_or(|p| p.task_future_bytes == 0) {
        return Err(BenchError::Smoke(
            "ws-idle: the connection parts were not weighed".into(),
        ));
    }
    for r in &ws.results {
        if r.connected as usize != r.conns || r.closed > 0 || r.pings == 0 {
            return Err(BenchError::Smoke(format!(
                "ws-idle on {}: {} of {} connected ({} failed), {} closed, {} pings",
                r.kind.label(),
                r.connected,
                r.conns,
                r.failed_connects,
                r.closed,
                r.pings
            )));
        }
        if r.kind == ws_idle::WsKind::Sessiond && r.hellos != r.connected {
            return Err(BenchError::Smoke(format!(
                "ws-idle on sessiond: {} hellos for {} connections",
                r.hellos, r.connected
            )));
        }
    }
    for r in &ex.runs {
        if r.sessions == 0 || r.ended != r.sessions || r.not_ended > 0 {
            return Err(BenchError::Smoke(format!(
                "expiry {}: {} sessions, {} ended, {} not",
                r.name, r.sessions, r.ended, r.not_ended
            )));
        }
    }
    Ok(())
}
