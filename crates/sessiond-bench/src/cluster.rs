//! The `cluster` scenario: two sessiond nodes (in this process, each its own
//! `ServerBuilder`) on one redis-server the tool starts. First the hot path with the load
//! split over both nodes (half the clients on each, every client on its own sessions);
//! then revocation: a session used on node B is revoked through node A's admin API while
//! a client polls `GET /v1/auth/verify` on B back to back, and the time until B refuses
//! it is recorded, once per fresh session.

use crate::load::{self, Plan, Sample};
use crate::targets::{self, RedisProcess};
use crate::{BenchError, Size};
use reqwest::header::{AUTHORIZATION, COOKIE};
use reqwest::{Method, StatusCode};
use std::fmt::Write;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// How long B may keep accepting a revoked session before the attempt counts as failed.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);

/// What the scenario measured.
pub struct Outcome {
    pub clients: usize,
    pub sessions_per_client: usize,
    /// Per node (A, B): one sample per round.
    pub nodes: [Vec<Sample>; 2],
    /// Per revocation: from A's 204 to B's first refusal (µs; 0 when B refused first).
    pub after_answer_us: Vec<u64>,
    /// Per revocation: from sending the revoke to A until B's first refusal (µs).
    pub after_send_us: Vec<u64>,
    /// Revocations B did not refuse with 401 within `REFUSAL_DEADLINE`, with what it did.
    pub failures: Vec<String>,
}

/// Runs both parts.
pub fn run(servers: &Runtime, clients: &Runtime, size: &Size) -> Result<Outcome, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("sessiond-bench-cluster-")
        .tempdir()?;
    let redis = RedisProcess::start(dir.path())?;
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let a = servers.block_on(targets::start_node(&url))?;
    let b = servers.block_on(targets::start_node(&url))?;
    let nodes = [&a, &b];

    let n = size.hot_clients.max(2);
    let spc = size.sessions_per_client.max(1);
    // Client c uses node c % 2, and its sessions were created there.
    let mut plans: [Vec<Plan>; 2] = [Vec::new(), Vec::new()];
    for (i, node) in nodes.iter().enumerate() {
        let mine = n / 2 + (n % 2) * usize::from(i == 0);
        let cookies = clients.block_on(load::new_sessions(&node.url("/v1/session"), mine * spc))?;
        plans[i] = (0..mine)
            .map(|c| Plan {
                method: Method::GET,
                url: node.url("/v1/auth/verify"),
                cookies: cookies.iter().skip(c).step_by(mine).cloned().collect(),
            })
            .collect();
    }
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for round in 0..size.rounds.max(1) {
        let (sa, sb) = clients.block_on(async {
            tokio::join!(
                load::run(plans[0].clone(), size.duration),
                load::run(plans[1].clone(), size.duration)
            )
        });
        for (i, s) in [sa?, sb?].into_iter().enumerate() {
            eprintln!(
                "cluster round {}: node {} {:>9.0}/s p50 {:>6} µs p99 {:>6} µs errors {}",
                round + 1,
                ["A", "B"][i],
                s.per_sec,
                s.p50_us,
                s.p99_us,
                s.errors
            );
            samples[i].push(s);
        }
    }

    let mut out = Outcome {
        clients: n,
        sessions_per_client: spc,
        nodes: samples,
        after_answer_us: Vec::new(),
        after_send_us: Vec::new(),
        failures: Vec::new(),
    };
    clients.block_on(revocations(&a, &b, size.revocations.max(1), &mut out))?;
    eprintln!(
        "cluster revocation: {} measured, {} failed; after the answer p50 {} µs max {} µs",
        out.after_answer_us.len(),
        out.failures.len(),
        quantile(&out.after_answer_us, 0.5),
        quantile(&out.after_answer_us, 1.0)
    );
    servers.block_on(a.stop());
    servers.block_on(b.stop());
    drop(redis);
    Ok(out)
}

/// `count` revocations, one after the other, each of a fresh session.
async fn revocations(
    a: &targets::Running,
    b: &targets::Running,
    count: usize,
    out: &mut Outcome,
) -> Result<(), BenchError> {
    let admin = load::client()?;
    let creator = load::client()?;
    for _ in 0..count {
        let r = creator.post(a.url("/v1/session")).send().await?;
        let status = r.status();
        let cookie = load::cookie_pair(&r);
        let body: serde_json::Value = r.json().await?;
        let (Some(cookie), Some(handle), true) = (
            cookie,
            body.get("handle")
                .and_then(|h| h.as_str())
                .map(str::to_owned),
            status.is_success(),
        ) else {
            return Err(BenchError::Setup(format!(
                "POST /v1/session on node A answered {status} without a cookie and handle"
            )));
        };
        // B polls on its own connection; it says when it has seen the session live once
        // (so the session is known and cached on B before the revoke).
        let (armed_tx, armed) = tokio::sync::oneshot::channel();
        let poller = tokio::spawn(poll_until_refused(
            load::client()?,
            b.url("/v1/auth/verify"),
            cookie,
            armed_tx,
        ));
        if armed.await.is_err() {
            let what = poller
                .await
                .map_err(|e| BenchError::Setup(e.to_string()))?
                .err()
                .unwrap_or_default();
            return Err(BenchError::Setup(format!(
                "node B never accepted a session created on A: {what}"
            )));
        }
        let sent = Instant::now();
        let r = admin
            .delete(a.url(&format!("/v1/admin/sessions/{handle}")))
            .header(AUTHORIZATION, format!("Bearer {}", targets::ADMIN_KEY))
            .send()
            .await?;
        let answered = Instant::now();
        if r.status() != StatusCode::NO_CONTENT {
            poller.abort();
            return Err(BenchError::Setup(format!(
                "DELETE /v1/admin/sessions on node A answered {}",
                r.status()
            )));
        }
        match poller.await.map_err(|e| BenchError::Setup(e.to_string()))? {
            Ok(refused) => {
                let us = |from: Instant| refused.saturating_duration_since(from).as_micros() as u64;
                out.after_answer_us.push(us(answered));
                out.after_send_us.push(us(sent));
            }
            Err(what) => out.failures.push(what),
        }
    }
    Ok(())
}

/// Verifies on B back to back. The first 200 fires `armed`; then returns when the first
/// refusal arrived (a 401), or why not (another answer, or none within the deadline).
async fn poll_until_refused(
    c: reqwest::Client,
    url: String,
    cookie: String,
    armed: tokio::sync::oneshot::Sender<()>,
) -> Result<Instant, String> {
    let mut armed = Some(armed);
    let deadline = Instant::now() + REFUSAL_DEADLINE;
    while Instant::now() < deadline {
        let r = c
            .request(Method::GET, &url)
            .header(COOKIE, &cookie)
            .send()
            .await
            .map_err(|e| format!("verify on B failed: {e}"))?;
        let status = r.status();
        let _ = r.bytes().await;
        let at = Instant::now();
        match status {
            StatusCode::OK => {
                if let Some(tx) = armed.take() {
                    let _ = tx.send(());
                }
            }
            StatusCode::UNAUTHORIZED if armed.is_none() => return Ok(at),
            other => return Err(format!("verify on B answered {other}")),
        }
    }
    Err(format!(
        "B still accepted the session {} s after the revoke",
        REFUSAL_DEADLINE.as_secs()
    ))
}

/// The value at quantile `q` of `v` (nearest rank; 0 when empty).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// A latency in µs as milliseconds.
fn ms(us: u64) -> String {
    crate::report::ms(us as f64)
}

/// A one-line summary (for the smoke run's output).
pub fn summary(o: &Outcome) -> String {
    let per: Vec<String> = o
        .nodes
        .iter()
        .map(|s| crate::report::rate(crate::report::medians(s).0))
        .collect();
    format!(
        "cluster: node A {}, node B {}; revocation refused on B after {} (p50 of {})",
        per[0],
        per[1],
        ms(quantile(&o.after_answer_us, 0.5)),
        o.after_answer_us.len()
    )
}

/// The scenario's section of docs/benchmarks.md; `single` is one sessiond node on Redis
/// in the same run's `http-hot`, if it ran.
pub fn markdown(o: &Outcome, single: Option<f64>, w: &mut String) {
    use crate::report::{medians, rate};
    let _ = writeln!(
        w,
        "## `cluster`: two sessiond nodes on one Redis\n\n\
         Both nodes run in the tool's process on the server runtime (so they share its two \
         workers, as two processes would share the two cores), each built by its own \
         `ServerBuilder` on the same redis-server, so they form a cluster through it.\n\n\
         **Hot path** (`GET /v1/auth/verify`), {} clients, half on each node, each cycling \
         through its own {} sessions created on its node:\n",
        o.clients, o.sessions_per_client
    );
    let _ = writeln!(
        w,
        "| node | throughput (median) | each round | p50 | p99 | errors |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    let mut total = 0.0;
    for (name, s) in ["A", "B"].iter().zip(&o.nodes) {
        let (tput, p50, p99) = medians(s);
        total += tput;
        let rounds: Vec<String> = s.iter().map(|x| rate(x.per_sec)).collect();
        let errors: u64 = s.iter().map(|x| x.errors).sum();
        let _ = writeln!(
            w,
            "| {name} | {} | {} | {} | {} | {errors} |",
            rate(tput),
            rounds.join(", "),
            crate::report::ms(p50),
            crate::report::ms(p99)
        );
    }
    let _ = writeln!(
        w,
        "| both | {} | | | | |\n\n{}",
        rate(total),
        match single {
            Some(one) if one > 0.0 => format!(
                "Together {:.2}x one node on Redis in `http-hot` ({}); on one machine the two \
                 nodes share the same cores, so this shows what the cluster costs, not \
                 how it scales.\n",
                total / one,
                rate(one)
            ),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        w,
        "**Revocation** (`DELETE /v1/admin/sessions/{{handle}}` on A while one client \
         polls `GET /v1/auth/verify` on B back to back with that session's cookie, having \
         seen it accepted there first): time until B's first 401, {} revocations, each of \
         a fresh session{}.\n",
        o.after_answer_us.len() + o.failures.len(),
        if o.failures.is_empty() {
            String::new()
        } else {
            format!(
                "; **{} not refused** within {} s ({})",
                o.failures.len(),
                REFUSAL_DEADLINE.as_secs(),
                o.failures.first().map(String::as_str).unwrap_or("")
            )
        }
    );
    let _ = writeln!(w, "| measured from | p50 | p99 | max |");
    let _ = writeln!(w, "|---|---|---|---|");
    for (from, v) in [
        ("A's 204 answer to the revoke", &o.after_answer_us),
        ("sending the revoke to A", &o.after_send_us),
    ] {
        let _ = writeln!(
            w,
            "| {from} | {} | {} | {} |",
            ms(quantile(v, 0.5)),
            ms(quantile(v, 0.99)),
            ms(quantile(v, 1.0))
        );
    }
    let _ = writeln!(w);
}
