//! `sessiond-bench`: puts sessiond and its baselines under the same load in one run,
//! interleaving rounds (A B C A B C …) and taking medians, since the machine is shared.
//! `http-hot` is the validate-and-touch path, `create` session creation; `all` runs both
//! and can write docs/benchmarks.md; `smoke` runs both at tiny sizes and checks the tool.
//! `cluster-balance` ([`balance`]) checks that no Redis Cluster master is a hot shard.

mod balance;
mod load;
mod report;
mod targets;

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
    #[error("{0}")]
    Setup(String),
    #[error("smoke run failed: {0}")]
    Smoke(String),
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
    /// Leave out the sessiond-on-Redis rows (they need `redis-server` on PATH).
    #[arg(long, global = true)]
    no_redis: bool,
    /// Write the report (Markdown) here instead of standard output.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// The commit measured, named in the report.
    #[arg(long, global = true, default_value = "")]
    commit: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Validate a cookie and record activity (`GET /v1/auth/verify`).
    HttpHot,
    /// Create a session (`POST /v1/session`, no cookie).
    Create,
    /// Both scenarios.
    All,
    /// Both scenarios at tiny sizes; fails unless every target answered and none erred.
    Smoke,
    /// Commands per master of a local 3-master Redis Cluster under the hot path, creation
    /// and expiry through one sessiond node (needs `redis-server` and `redis-cli`); fails
    /// if a phase's busiest master runs more than `--max-ratio` times the mean.
    ClusterBalance {
        /// The bar: busiest master / mean.
        #[arg(long, default_value_t = 1.5)]
        max_ratio: f64,
    },
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
    ];
    if redis {
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

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("sessiond-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<(), BenchError> {
    let mut size = cli.size;
    let smoke = matches!(cli.command, Cmd::Smoke);
    if smoke {
        size.duration = Duration::from_millis(300);
        size.rounds = 1;
        size.hot_clients = 4;
        size.sessions_per_client = 2;
        size.create_clients = 4;
    }
    let redis = !size.no_redis && targets::redis_available();
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
    let load_before = report::loadavg();
    let mut results = Vec::new();
    for s in scenarios(&cli.command, &size, redis) {
        results.push(run_scenario(&servers, &clients, s, &size)?);
    }
    let load_after = report::loadavg();
    if smoke {
        for r in &results {
            for row in &r.rows {
                let (ok, errors) = row
                    .samples
                    .iter()
                    .fold((0, 0), |(o, e), s| (o + s.ok, e + s.errors));
                if ok == 0 || errors > 0 {
                    return Err(BenchError::Smoke(format!(
                        "{} on {}: {ok} answered, {errors} failed",
                        r.scenario.name,
                        row.kind.label()
                    )));
                }
            }
        }
        println!("smoke ok: {}", report::summary(&results));
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
    });
    match &size.out {
        Some(p) => std::fs::write(p, md)?,
        None => print!("{md}"),
    }
    Ok(())
}
