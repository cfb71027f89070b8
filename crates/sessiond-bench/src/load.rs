//! The load generator: a fixed number of keep-alive clients, each with its own session,
//! sending requests back to back for a fixed duration; latencies in an HDR histogram.

use crate::{rawhttp, BenchError};
use hdrhistogram::Histogram;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::Method;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What one client sends: the method, the URL and, for the hot path, the cookies of the
/// sessions it cycles through (one request each in turn).
#[derive(Clone)]
pub struct Plan {
    pub method: Method,
    pub url: String,
    pub cookies: Vec<String>,
}

/// Whether the load loops use reqwest (`--reqwest`) instead of [`crate::rawhttp`]; set
/// once at start, before any load runs.
pub static GENERAL_CLIENT: AtomicBool = AtomicBool::new(false);

/// One measured run of one target.
#[derive(Debug, Clone)]
pub struct Sample {
    pub ok: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// A client holding exactly one kept-alive connection.
pub fn client() -> Result<reqwest::Client, BenchError> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// `name=value` of the first `Set-Cookie` of a response.
pub fn cookie_pair(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(SET_COOKIE)?
        .to_str()
        .ok()?
        .split(';')
        .next()
        .map(str::to_owned)
}

/// Creates `n` sessions with `POST create_url` (no cookie) and returns their cookies.
pub async fn new_sessions(create_url: &str, n: usize) -> Result<Vec<String>, BenchError> {
    let c = client()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = c.post(create_url).send().await?;
        let status = r.status();
        let pair = cookie_pair(&r);
        r.bytes().await?;
        match pair {
            Some(p) if status.is_success() => out.push(p),
            _ => {
                return Err(BenchError::Setup(format!(
                    "POST {create_url} answered {status} without a session cookie"
                )))
            }
        }
    }
    Ok(out)
}

/// Runs `plans.len()` clients for `duration` (after a short warm-up) and merges them.
pub async fn run(plans: Vec<Plan>, duration: Duration) -> Result<Sample, BenchError> {
    let warmup = (duration / 8).min(Duration::from_secs(1));
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::with_capacity(plans.len());
    let general = GENERAL_CLIENT.load(Ordering::Relaxed);
    for plan in plans {
        if general {
            let c = client()?;
            tasks.push(tokio::spawn(one_client(c, plan, start, end)));
        } else {
            tasks.push(tokio::spawn(one_raw_client(plan, start, end)));
        }
    }
    let mut hist = histogram();
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        let (h, o, e) = t.await.map_err(|e| BenchError::Setup(e.to_string()))?;
        hist.add(&h).map_err(|e| BenchError::Setup(e.to_string()))?;
        ok += o;
        errors += e;
    }
    Ok(sample(&hist, ok, errors, duration))
}

/// The figures of `ok` answers over `duration` whose latencies are in `hist`.
pub fn sample(hist: &Histogram<u64>, ok: u64, errors: u64, duration: Duration) -> Sample {
    Sample {
        ok,
        errors,
        per_sec: ok as f64 / duration.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
    }
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One client: requests back to back; only those sent in `[start, end)` are counted.
async fn one_client(
    c: reqwest::Client,
    plan: Plan,
    start: Instant,
    end: Instant,
) -> (Histogram<u64>, u64, u64) {
    let mut hist = histogram();
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut i = 0usize;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let mut req = c.request(plan.method.clone(), &plan.url);
        if !plan.cookies.is_empty() {
            req = req.header(COOKIE, &plan.cookies[i % plan.cookies.len()]);
            i += 1;
        }
        let good = match req.send().await {
            Ok(r) => {
                let s = r.status();
                r.bytes().await.is_ok() && s.is_success()
            }
            Err(_) => false,
        };
        if t0 < start {
            continue;
        }
        if good {
            ok += 1;
            let us = t0.elapsed().as_micros().max(1) as u64;
            hist.saturating_record(us);
        } else {
            errors += 1;
        }
    }
    (hist, ok, errors)
}

/// `one_client` over [`crate::rawhttp`]: the same requests, a request head built once per
/// session, a broken connection replaced (and the request counted as an error).
async fn one_raw_client(plan: Plan, start: Instant, end: Instant) -> (Histogram<u64>, u64, u64) {
    let mut hist = histogram();
    let (mut ok, mut errors) = (0u64, 0u64);
    let rest = plan.url.strip_prefix("http://").unwrap_or(&plan.url);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let heads: Vec<Vec<u8>> = if plan.cookies.is_empty() {
        vec![rawhttp::head(plan.method.as_str(), host, path, None)]
    } else {
        plan.cookies
            .iter()
            .map(|c| rawhttp::head(plan.method.as_str(), host, path, Some(c)))
            .collect()
    };
    let mut conn = None;
    let mut i = 0usize;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let head = &heads[i % heads.len()];
        i += 1;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match rawhttp::Conn::connect(host).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    if t0 >= start {
                        errors += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let good = match c.send(head).await {
            Ok(status) => (200..300).contains(&status),
            Err(_) => {
                conn = None;
                false
            }
        };
        if t0 < start {
            continue;
        }
        if good {
            ok += 1;
            hist.saturating_record(t0.elapsed().as_micros().max(1) as u64);
        } else {
            errors += 1;
        }
    }
    (hist, ok, errors)
}
