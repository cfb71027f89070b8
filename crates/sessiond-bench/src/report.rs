//! The report: machine, method, every figure with its ratio to the baseline measured in
//! the same run, and the issue-13 bars, met or not and by how much (docs/benchmarks.md).

use crate::load::Sample;
use crate::targets::Kind;
use crate::{Row, ScenarioResult};
use std::fmt::Write;
use std::time::Duration;

pub struct Run<'a> {
    pub results: &'a [ScenarioResult],
    pub duration: Duration,
    pub rounds: usize,
    pub redis: bool,
    pub load_before: String,
    pub load_after: String,
    pub commit: &'a str,
    pub drafts: Option<&'a crate::drafts::Outcome>,
    pub cluster: Option<&'a crate::cluster::Outcome>,
    pub ws: &'a crate::ws_idle::WsReport,
    pub expiry: &'a crate::expiry::ExpiryReport,
}

/// `/proc/loadavg`'s three averages ("?" where it cannot be read).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let kb: u64 = s
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

fn median_f(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians over the rounds: (per second, p50 µs, p99 µs).
pub fn medians(samples: &[Sample]) -> (f64, f64, f64) {
    (
        median_f(samples.iter().map(|s| s.per_sec).collect()),
        median_f(samples.iter().map(|s| s.p50_us as f64).collect()),
        median_f(samples.iter().map(|s| s.p99_us as f64).collect()),
    )
}

pub fn rate(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.1}k/s", r / 1000.0)
    } else if r >= 1000.0 {
        format!("{:.2}k/s", r / 1000.0)
    } else {
        format!("{r:.0}/s")
    }
}

pub fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

fn throughput(results: &[ScenarioResult], scenario: &str, kind: Kind) -> Option<f64> {
    let r = results.iter().find(|r| r.scenario.name == scenario)?;
    let row = r.rows.iter().find(|row| row.kind == kind)?;
    Some(medians(&row.samples).0)
}

/// One line per target: median throughput (for the smoke run's output).
pub fn summary(results: &[ScenarioResult]) -> String {
    let mut parts = Vec::new();
    for r in results {
        for row in &r.rows {
            parts.push(format!(
                "{} / {}: {}",
                r.scenario.name,
                row.kind.label(),
                rate(medians(&row.samples).0)
            ));
        }
    }
    parts.join("; ")
}

/// A bar held against `ratio`: "met (x over)" or "not met (needs y more)".
fn verdict(ratio: f64, bar: f64) -> String {
    if ratio >= bar {
        format!("**met**, {:.2}x the bar", ratio / bar)
    } else {
        format!(
            "**not met**: {:.2}x of the bar, {:.2}x more throughput needed",
            ratio / bar,
            bar / ratio
        )
    }
}

/// A table of targets: median throughput, each round, p50, p99, errors and (with a
/// baseline) the ratio of each throughput to the baseline's.
pub fn rows_table(rows: &[Row], baseline: Option<Kind>, w: &mut String) {
    let base = baseline.and_then(|b| {
        rows.iter()
            .find(|row| row.kind == b)
            .map(|row| (b, medians(&row.samples).0))
    });
    let ratio_head = base.map_or(String::new(), |(b, _)| format!(" ratio to {} |", b.label()));
    let _ = writeln!(
        w,
        "| target | throughput (median) | each round | p50 | p99 | errors |{ratio_head}"
    );
    let _ = writeln!(
        w,
        "|---|---|---|---|---|---|{}",
        if base.is_some() { "---|" } else { "" }
    );
    for row in rows {
        let (tput, p50, p99) = medians(&row.samples);
        let rounds: Vec<String> = row.samples.iter().map(|s| rate(s.per_sec)).collect();
        let errors: u64 = row.samples.iter().map(|s| s.errors).sum();
        let ratio = match base {
            Some((_, b)) if b > 0.0 => format!(" {:.2}x |", tput / b),
            Some(_) => " — |".to_owned(),
            None => String::new(),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |{ratio}",
            row.kind.label(),
            rate(tput),
            rounds.join(", "),
            ms(p50),
            ms(p99),
            errors,
        );
    }
    let _ = writeln!(w);
}

pub fn markdown(run: &Run) -> String {
    let mut s = String::new();
    let w = &mut s;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Generated by `bench/run.sh` (the `sessiond-bench` tool in `crates/sessiond-bench`, \
         release build) on {now}{}. Do not edit by hand: run `bench/run.sh` again. \
         Issue 13 holds the bars; this run measures the scenarios built so far (the \
         bars table says which are not).\n",
        if run.commit.is_empty() {
            String::new()
        } else {
            format!(", commit `{}`", run.commit)
        }
    );
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(
        w,
        "- CPU: {} ({cores} logical cores), memory {}, Linux {}",
        cpu_model(),
        mem_total(),
        kernel()
    );
    let _ = writeln!(
        w,
        "- Load average (1, 5, 15 min) before the run: {}; after: {}. The machine is \
         shared (other builds run beside it), so absolute figures are noisy; the ratios, \
         taken within one run from interleaved rounds, are what the bars are held to.\n",
        run.load_before, run.load_after
    );
    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "- Every target runs in the tool's process on `127.0.0.1:0`, on its own tokio \
         runtime with two worker threads; the load comes from a second runtime with one \
         worker (like `wrk -t1`), over HTTP/1.1 keep-alive, one connection per client, \
         each client sending its next request when the last is answered. The hot-path, \
         create and cluster loads use the tool's minimal HTTP/1.1 client \
         (`src/rawhttp.rs`: request heads built once, answers read by `Content-Length`), \
         which costs about what `wrk` does; with reqwest (`--reqwest`) the client took so \
         much of the two cores that bare axum measured 0.6x of its `wrk` figure and every \
         ratio to it was flattered. Draft writes use reqwest.\n\
         - {} interleaved rounds (A B C, A B C, …) of {} measured per target (after a \
         warm-up of an eighth of that, at most 1 s); each figure is the median over the \
         rounds (throughput, p50 and p99 separately). Latency is recorded per request in \
         an HDR histogram (`hdrhistogram`, µs, 3 significant digits). Only 2xx answers \
         count; others are listed as errors.\n\
         - sessiond is built with `ServerBuilder` from a configuration in dev mode with \
         rate limits off; SQLite in a temp directory (the embedded store: WAL, each \
         acknowledged write durable){}.\n\
         - Baselines: a bare axum handler answering 200; axum with tower-sessions 0.15 \
         and its `MemoryStore`, the verify handler reading the session and writing a \
         counter into it (so the session is saved back on every request: a read and a \
         write, as sessiond validates and records activity); the same handlers on \
         tower-sessions' Redis store (on its own redis-server, as sessiond's): the \
         `tower-sessions-redis-store` crate implements tower-sessions-core 0.14 only, so \
         the tool carries its `RedisStore` ported command for command onto redis-rs \
         (`crates/sessiond-bench/src/tower_redis.rs`: one MessagePack value per session, \
         `SET … EXAT … NX/XX`, `GET`, over a pool of 6 multiplexed connections, the \
         size of the crate's own example); a naive axum handler that \
         inserts one row per request into SQLite (WAL, `synchronous=FULL`, one \
         connection, autocommit: one fsync per answer).\n\
         - `create` also runs sessiond on SQLite with group commit off \
         (`SqliteOptions::max_group = 1`: a transaction and an fsync per write, as before \
         group commit), so the gain of group commit is read within the same run. With it \
         on, writes that queue while a commit is being fsynced share the next \
         transaction; every create is still answered only after its commit is on disk. \
         The bare axum handler (a cookie, no storage) is the ceiling of any create on \
         this machine and client; sessiond on its memory store (nothing durable, the \
         same server otherwise) is the ceiling of sessiond's create with any store: \
         what is left between it and the bare handler is sessiond's own work per \
         create, between it and SQLite the durable store's.\n",
        run.rounds,
        humantime::format_duration(run.duration),
        if run.redis {
            "; Redis on a `redis-server` the tool starts on a free port (no persistence)"
        } else {
            ""
        }
    );
    for r in run.results {
        let _ = writeln!(
            w,
            "## `{}`: {}, {} clients{}\n",
            r.scenario.name,
            r.scenario.request,
            r.scenario.clients,
            if r.scenario.sessions_per_client > 0 {
                format!(
                    ", each cycling through its own {} sessions ({} sessions in all)",
                    r.scenario.sessions_per_client,
                    r.scenario.clients * r.scenario.sessions_per_client
                )
            } else {
                String::new()
            }
        );
        rows_table(&r.rows, Some(r.scenario.baseline), w);
    }
    if let Some(d) = run.drafts {
        crate::drafts::markdown(d, w);
    }
    if let Some(c) = run.cluster {
        let single = throughput(run.results, "http-hot", Kind::SessiondRedis);
        crate::cluster::markdown(c, single, w);
    }
    w.push_str(&crate::ws_idle::markdown(run.ws));
    w.push_str(&crate::expiry::markdown(run.expiry));
    let _ = writeln!(w, "## The bars (issue 13)\n");
    let _ = writeln!(w, "| bar | measured in this run | verdict |");
    let _ = writeln!(w, "|---|---|---|");
    let res = run.results;
    match (
        throughput(res, "http-hot", Kind::SessiondSqlite),
        throughput(res, "http-hot", Kind::BareAxum),
    ) {
        (Some(a), Some(b)) if b > 0.0 => {
            let _ = writeln!(
                w,
                "| hot path, embedded: sessiond ≥ 0.9x bare axum | {} vs {}: {:.2}x | {} |",
                rate(a),
                rate(b),
                a / b,
                verdict(a / b, 0.9)
            );
        }
        _ => {
            let _ = writeln!(
                w,
                "| hot path, embedded: sessiond ≥ 0.9x bare axum | not run | — |"
            );
        }
    }
    match (
        throughput(res, "http-hot", Kind::SessiondRedis),
        throughput(res, "http-hot", Kind::TowerRedis),
    ) {
        (Some(a), Some(b)) if b > 0.0 => {
            let _ = writeln!(
                w,
                "| hot path on Redis: sessiond ≥ 2.5x tower-sessions' Redis store | {} vs {}: {:.2}x | {} |",
                rate(a),
                rate(b),
                a / b,
                verdict(a / b, 2.5)
            );
        }
        _ => {
            let _ = writeln!(
                w,
                "| hot path on Redis: sessiond ≥ 2.5x tower-sessions' Redis store | not run (no redis-server) | — |"
            );
        }
    }
    match (
        throughput(res, "create", Kind::SessiondSqlite),
        throughput(res, "create", Kind::NaiveInsert),
    ) {
        (Some(a), Some(b)) if b > 0.0 => {
            let solo = throughput(res, "create", Kind::SessiondSqliteSolo)
                .map(|c| format!(" (group commit off: {}, {:.2}x)", rate(c), c / b))
                .unwrap_or_default();
            // Not a bar: how far any store could take it on this machine.
            let ceiling = throughput(res, "create", Kind::SessiondMemory)
                .map(|c| {
                    format!(
                        "; on the memory store, nothing durable: {}, {:.2}x",
                        rate(c),
                        c / b
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                w,
                "| creation, durable: sessiond on SQLite ≥ 10x the naive insert | {} vs {}: {:.2}x{solo}{ceiling} | {} |",
                rate(a),
                rate(b),
                a / b,
                verdict(a / b, 10.0)
            );
        }
        _ => {
            let _ = writeln!(
                w,
                "| creation, durable: sessiond on SQLite ≥ 10x the naive insert | not run | — |"
            );
        }
    }
    for row in crate::ws_idle::bar_rows(run.ws)
        .into_iter()
        .chain(crate::expiry::bar_rows(run.expiry))
    {
        let _ = writeln!(w, "{row}");
    }
    let _ = writeln!(
        w,
        "| Redis Cluster: per-master command counts within 1.5x of their mean (`cluster-balance`) | measured on a 3-master cluster the tool starts; bench/run.sh appends it as the last section | the last section's verdict column, phase by phase |"
    );
    s
}
