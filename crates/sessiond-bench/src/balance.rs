//! `cluster-balance`: is any Redis Cluster master a hot shard? Starts a local cluster of
//! three masters (the testkit's guard), one sessiond node on it, and drives three phases
//! through the real server: the hot path (validate-and-touch with each client's own
//! sessions), creation, and expiry (every session made so far reaching its idle
//! deadline with nobody touching it). Around each phase it reads every master's
//! `INFO commandstats` and reports the commands each master ran, their mean, and the
//! busiest master's ratio to the mean (the bar: ≤ 1.5x).
//!
//! Commands that are not the store's work are left out of the totals: `info` (this
//! tool's own reads), `cluster`, `ping`, `client`, `command`, `hello`, `readonly`,
//! `select`, `config`, `auth` (topology refreshes and connection set-up).

use crate::load::{self, Plan};
use crate::BenchError;
use reqwest::Method;
use sessiond_core::store::SessionFilter;
use sessiond_testkit::redis_guard::RedisCluster;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Commands not counted (see the module note).
const NOT_COUNTED: &[&str] = &[
    "info", "cluster", "ping", "client", "command", "hello", "readonly", "select", "config", "auth",
];
/// Longest a phase may take to settle (the expiry phase waits for the last deadline).
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Sizes of one run.
pub struct Opts {
    /// Measured time of the hot-path and create phases.
    pub duration: Duration,
    pub hot_clients: usize,
    pub sessions_per_client: usize,
    pub create_clients: usize,
}

/// One phase's per-master command counts.
pub struct Phase {
    pub name: &'static str,
    pub what: String,
    /// Per master (by port), the commands run during the phase.
    pub per_master: Vec<(u16, u64)>,
    /// Busiest per command name over all masters, for the note under the table.
    pub top: Vec<(String, u64)>,
    /// The commands the busiest master ran most beyond the other masters' mean: what
    /// makes it the busiest.
    pub excess: Vec<(String, i64)>,
    /// The expiry phase: how late its endings were (read back from the store).
    pub lateness: Option<crate::expiry::Lateness>,
    /// The expiry phase: every command from its start until no session was left on the
    /// deadline index, over the sessions ended meanwhile, with the commands behind it.
    pub per_ending: Option<PerEnding>,
}

/// Commands per ending of the expiry phase (see [`Phase::per_ending`]).
pub struct PerEnding {
    pub commands: u64,
    pub ended: u64,
    /// Per command name, all masters.
    pub by_cmd: Vec<(String, u64)>,
}

impl Phase {
    pub fn mean(&self) -> f64 {
        let n = self.per_master.len().max(1) as f64;
        self.per_master.iter().map(|(_, c)| *c as f64).sum::<f64>() / n
    }
    pub fn ratio(&self) -> f64 {
        let max = self.per_master.iter().map(|(_, c)| *c).max().unwrap_or(0) as f64;
        let mean = self.mean();
        if mean == 0.0 {
            0.0
        } else {
            max / mean
        }
    }
}

/// One `INFO <section>` of one node, as text.
fn info(port: u16, section: &str) -> Result<String, BenchError> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("INFO {section}\r\n").as_bytes())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    // A bulk reply: `$<len>\r\n<payload>\r\n`.
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, rest)) = text.split_once("\r\n") {
            let len: usize = head
                .trim_start_matches('$')
                .parse()
                .map_err(|_| BenchError::Setup(format!("INFO on {port}: {head}")))?;
            if rest.len() >= len {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `used_memory` of one node, bytes.
fn used_memory(port: u16) -> Result<u64, BenchError> {
    Ok(info(port, "memory")?
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

fn total_memory(ports: &[u16]) -> Result<u64, BenchError> {
    ports.iter().map(|p| used_memory(*p)).sum()
}

/// `INFO commandstats` of one node as command → calls.
fn commandstats(port: u16) -> Result<BTreeMap<String, u64>, BenchError> {
    let text = info(port, "commandstats")?;
    let mut stats = BTreeMap::new();
    for line in text.lines() {
        // cmdstat_evalsha:calls=12,usec=…
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        stats.insert(name.to_owned(), calls);
    }
    Ok(stats)
}

fn snapshot(ports: &[u16]) -> Result<Vec<BTreeMap<String, u64>>, BenchError> {
    ports.iter().map(|p| commandstats(*p)).collect()
}

fn phase(
    name: &'static str,
    what: String,
    ports: &[u16],
    before: &[BTreeMap<String, u64>],
    after: &[BTreeMap<String, u64>],
) -> Phase {
    let mut per_master = Vec::new();
    let mut by_cmd: BTreeMap<String, u64> = BTreeMap::new();
    let mut each: Vec<BTreeMap<String, u64>> = Vec::new();
    for ((port, b), a) in ports.iter().zip(before).zip(after) {
        let mut total = 0;
        let mut mine = BTreeMap::new();
        for (cmd, calls) in a {
            if NOT_COUNTED
                .iter()
                .any(|n| cmd.eq_ignore_ascii_case(n) || cmd.starts_with(&format!("{n}|")))
            {
                continue;
            }
            let d = calls.saturating_sub(b.get(cmd).copied().unwrap_or(0));
            total += d;
            *by_cmd.entry(cmd.clone()).or_default() += d;
            mine.insert(cmd.clone(), d);
        }
        per_master.push((*port, total));
        each.push(mine);
    }
    let busiest = (0..per_master.len())
        .max_by_key(|&i| per_master[i].1)
        .unwrap_or(0);
    let others = (per_master.len().max(2) - 1) as i64;
    let mut excess: Vec<(String, i64)> = by_cmd
        .iter()
        .map(|(cmd, all)| {
            let mine = each
                .get(busiest)
                .and_then(|m| m.get(cmd))
                .copied()
                .unwrap_or(0) as i64;
            (cmd.clone(), mine - (*all as i64 - mine) / others)
        })
        .filter(|(_, x)| *x > 0)
        .collect();
    excess.sort_by_key(|e| std::cmp::Reverse(e.1));
    excess.truncate(4);
    let mut top: Vec<(String, u64)> = by_cmd.into_iter().filter(|(_, c)| *c > 0).collect();
    top.sort_by_key(|e| std::cmp::Reverse(e.1));
    top.truncate(6);
    Phase {
        name,
        what,
        per_master,
        top,
        excess,
        lateness: None,
        per_ending: None,
    }
}

/// Counted commands per name between two snapshots, over all masters.
fn counted(
    before: &[BTreeMap<String, u64>],
    after: &[BTreeMap<String, u64>],
) -> Vec<(String, u64)> {
    let mut by_cmd: BTreeMap<String, u64> = BTreeMap::new();
    for (b, a) in before.iter().zip(after) {
        for (cmd, calls) in a {
            if NOT_COUNTED
                .iter()
                .any(|n| cmd.eq_ignore_ascii_case(n) || cmd.starts_with(&format!("{n}|")))
            {
                continue;
            }
            let d = calls.saturating_sub(b.get(cmd).copied().unwrap_or(0));
            if d > 0 {
                *by_cmd.entry(cmd.clone()).or_default() += d;
            }
        }
    }
    let mut v: Vec<(String, u64)> = by_cmd.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// A running sessiond node: where it listens, how to stop it, and its task.
struct Node {
    addr: std::net::SocketAddr,
    /// The node's store (the cluster), to read the endings back.
    store: std::sync::Arc<dyn sessiond_core::Store>,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// A sessiond node on `url` with a short idle timeout (so the expiry phase ends soon).
async fn start_node(url: &str, idle: Duration, dir: &std::path::Path) -> Result<Node, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let idle = humantime::format_duration(idle).to_string();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nstore = {url:?}\ndev = true\n\
         api_keys = [\"bench-admin-key-0001\"]\n\
         server_secret = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n\
         [rate_limits]\nenabled = false\n\
         [http]\nmax_connections_per_ip = 4096\n\
         [roles.editor]\nidle_timeout = {idle:?}\nwarn_before = \"1s\"\n",
        dir.display().to_string()
    );
    let config = sessiond_server::config::Config::from_toml(&toml)
        .map_err(|e| BenchError::Setup(format!("sessiond config: {e}")))?;
    let server = sessiond_server::ServerBuilder::new(config)
        .build()
        .await
        .map_err(|e| BenchError::Setup(format!("sessiond: {e}")))?;
    let store = server.state().store.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = server.serve(listener, shutdown).await {
            eprintln!("sessiond stopped with an error: {e}");
        }
    });
    Ok(Node {
        addr,
        store,
        stop,
        done,
    })
}

/// Runs the three phases; returns them in order.
pub fn run(servers: &Runtime, clients: &Runtime, o: &Opts) -> Result<Vec<Phase>, BenchError> {
    let cluster = RedisCluster::start(3);
    let ports = cluster.ports();
    let dir = tempfile::Builder::new()
        .prefix("sessiond-balance-")
        .tempdir()?;
    // Longer than the create phase, so no session ends before the expiry phase.
    let idle = o.duration + Duration::from_secs(2);
    let Node {
        addr,
        store,
        stop,
        done,
    } = servers.block_on(start_node(&cluster.url(), idle, dir.path()))?;
    let url = |p: &str| format!("http://{addr}{p}");
    let mut phases = Vec::new();

    // Hot path: each client its own sessions, validate-and-touch back to back.
    let n = o.hot_clients * o.sessions_per_client.max(1);
    let cookies = clients.block_on(load::new_sessions(&url("/v1/session"), n))?;
    let plans: Vec<Plan> = (0..o.hot_clients)
        .map(|c| Plan {
            method: Method::GET,
            url: url("/v1/auth/verify"),
            cookies: cookies
                .iter()
                .skip(c)
                .step_by(o.hot_clients)
                .cloned()
                .collect(),
        })
        .collect();
    let before = snapshot(&ports)?;
    let hot = clients.block_on(load::run(plans, o.duration))?;
    let after = snapshot(&ports)?;
    phases.push(phase(
        "hot path",
        format!(
            "GET /v1/auth/verify, {} clients over {n} sessions: {:.0}/s, {} errors",
            o.hot_clients, hot.per_sec, hot.errors
        ),
        &ports,
        &before,
        &after,
    ));

    // Creation.
    let plans: Vec<Plan> = (0..o.create_clients)
        .map(|_| Plan {
            method: Method::POST,
            url: url("/v1/session"),
            cookies: Vec::new(),
        })
        .collect();
    let before = snapshot(&ports)?;
    let mem_before = total_memory(&ports)?;
    let created = clients.block_on(load::run(plans, o.duration))?;
    let mem_after = total_memory(&ports)?;
    let after = snapshot(&ports)?;
    let made = created.ok;
    phases.push(phase(
        "create",
        format!(
            "POST /v1/session, {} clients: {:.0}/s, {} errors; Redis memory {:.0} B per session created",
            o.create_clients,
            created.per_sec,
            created.errors,
            mem_after.saturating_sub(mem_before) as f64 / made.max(1) as f64
        ),
        &ports,
        &before,
        &after,
    ));

    // Expiry: nobody touches anything now; every session reaches its idle deadline.
    let before = snapshot(&ports)?;
    let start = Instant::now();
    std::thread::sleep(idle + Duration::from_secs(3));
    // Every hot-path session must be refused by now; wait (bounded) if the node lags.
    let probe = cookies.iter().take(16).cloned().collect::<Vec<_>>();
    let verify = url("/v1/auth/verify");
    loop {
        let live = clients.block_on(async {
            let c = reqwest::Client::new();
            let mut live = 0;
            for k in &probe {
                let r = c
                    .get(&verify)
                    .header(reqwest::header::COOKIE, k)
                    .send()
                    .await?;
                if r.status().is_success() {
                    live += 1;
                }
            }
            Ok::<_, BenchError>(live)
        })?;
        if live == 0 {
            break;
        }
        if start.elapsed() > SETTLE_LIMIT {
            return Err(BenchError::Setup(format!(
                "{live} sessions still live {SETTLE_LIMIT:?} into the expiry phase"
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = snapshot(&ports)?;
    let settled = start.elapsed();
    // Commands per ending: until the deadline index is empty (a ZCARD per bucket per
    // poll, a few commands against tens of thousands), with the sessions ended meanwhile.
    servers.block_on(async {
        while start.elapsed() < SETTLE_LIMIT
            && store
                .count_active_sessions()
                .await
                .map_err(|e| BenchError::Setup(format!("count: {e}")))?
                > 0
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, BenchError>(())
    })?;
    let drained = snapshot(&ports)?;
    let by_cmd = counted(&before, &drained);
    // Lateness of every ending: wait (bounded) until none is left active, then read back.
    let active = SessionFilter {
        active_only: true,
        limit: 1,
        ..Default::default()
    };
    let late = servers.block_on(async {
        while start.elapsed() < SETTLE_LIMIT
            && !store
                .list_sessions(&active)
                .await
                .map_err(|e| BenchError::Setup(format!("list: {e}")))?
                .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        crate::expiry::lateness(store.as_ref()).await
    })?;
    let mut expiry = phase(
        "expiry",
        format!(
            "{} sessions reaching a {} idle deadline untouched, over {:.1} s",
            n as u64 + made,
            humantime::format_duration(idle),
            settled.as_secs_f64()
        ),
        &ports,
        &before,
        &after,
    );
    // Every session of the run ended in the phase (the lateness read counts them).
    expiry.per_ending = Some(PerEnding {
        commands: by_cmd.iter().map(|(_, c)| c).sum(),
        ended: late.ended,
        by_cmd,
    });
    expiry.lateness = Some(late);
    phases.push(expiry);

    let _ = stop.send(());
    let _ = servers.block_on(async { tokio::time::timeout(Duration::from_secs(15), done).await });
    drop(cluster);
    Ok(phases)
}

/// The phases as a Markdown table, with the bar.
pub fn markdown(phases: &[Phase]) -> String {
    let mut s = String::from(
        "| phase | load | commands per master | mean | busiest / mean | bar ≤ 1.5x |\n|---|---|---|---|---|---|\n",
    );
    for p in phases {
        let counts: Vec<String> = p
            .per_master
            .iter()
            .map(|(port, c)| format!("{c} (:{port})"))
            .collect();
        let r = p.ratio();
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2}x | {} |\n",
            p.name,
            p.what,
            counts.join(", "),
            p.mean(),
            r,
            if r <= 1.5 { "met" } else { "not met" }
        ));
    }
    s.push('\n');
    for p in phases {
        let top: Vec<String> = p.top.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let excess: Vec<String> = p.excess.iter().map(|(c, n)| format!("{c} +{n}")).collect();
        s.push_str(&format!(
            "- {}: most run commands: {}; the busiest master ran beyond the others' mean: {}\n",
            p.name,
            top.join(", "),
            excess.join(", ")
        ));
    }
    for p in phases {
        let Some(l) = &p.lateness else { continue };
        s.push_str(&format!(
            "\nExpiry of that burst on the cluster: every session of the run read back from the store, \
             lateness = `ended_at` minus its deadline.\n\n\
             | sessions ended (still active) | lateness p50 | p99 | max | over 1 s | endings/s | every ending within 1 s | p99 ≤ 250 ms |\n\
             |---|---|---|---|---|---|---|---|\n\
             | {} ({}) | {} ms | {} ms | {} ms | {} | {:.0}/s | {} | {} |\n",
            l.ended,
            l.not_ended,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.over_1s,
            l.endings_per_s,
            if l.over_1s == 0 && l.not_ended == 0 { "met" } else { "**not met**" },
            if l.p99_ms <= 250 { "met" } else { "**not met**" },
        ));
    }
    for p in phases {
        let Some(e) = &p.per_ending else { continue };
        let cmds: Vec<String> = e.by_cmd.iter().map(|(c, n)| format!("{c} {n}")).collect();
        s.push_str(&format!(
            "\nCommands per ending (expiry phase until the deadline index was empty, all masters): \
             {} commands / {} sessions = **{:.2}**; by command: {}\n",
            e.commands,
            e.ended,
            e.commands as f64 / e.ended.max(1) as f64,
            cmds.join(", ")
        ));
    }
    s
}
