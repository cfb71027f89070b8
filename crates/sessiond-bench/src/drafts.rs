//! The `drafts` scenario: autosave-like writes through the real draft API. Every client
//! has its own session and conversation and sends `PUT /v1/drafts/{conversation}` back to
//! back, each naming the seq its last write got (a small text that changes each time),
//! on sessiond with SQLite and with Redis, in interleaved rounds.

use crate::load::{self, Sample};
use crate::targets::{self, Kind};
use crate::{BenchError, Row, Size};
use hdrhistogram::Histogram;
use reqwest::header::{CONTENT_TYPE, COOKIE};
use std::fmt::Write;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// One client's draft: its session cookie, its conversation's URL and the seq to name next.
struct Writer {
    cookie: String,
    url: String,
    seq: u64,
}

/// What the scenario measured: one row per store.
pub struct Outcome {
    pub clients: usize,
    pub rows: Vec<Row>,
}

/// A text like an autosave sends: a sentence or two that grows and changes per write
/// (about 100–200 bytes; JSON-safe as written).
fn text(client: usize, seq: u64) -> String {
    let words = 12 + (seq % 16) as usize;
    let mut t = format!("Client {client}, revision {seq}:");
    for i in 0..words {
        let _ = write!(t, " word{}", (seq as usize + i) % 97);
    }
    t
}

/// Runs the scenario on SQLite and, when `redis`, on Redis.
pub fn run(
    servers: &Runtime,
    clients: &Runtime,
    size: &Size,
    redis: bool,
) -> Result<Outcome, BenchError> {
    let mut kinds = vec![Kind::SessiondSqlite];
    if redis {
        kinds.push(Kind::SessiondRedis);
    }
    let n = size.drafts_clients.max(1);
    let mut running = Vec::new();
    let mut writers = Vec::new();
    for &kind in &kinds {
        let r = servers.block_on(targets::start(kind))?;
        let cookies = clients.block_on(load::new_sessions(&r.url("/v1/session"), n))?;
        writers.push(
            cookies
                .into_iter()
                .enumerate()
                .map(|(i, cookie)| Writer {
                    cookie,
                    url: r.url(&format!("/v1/drafts/bench-{i}")),
                    seq: 0,
                })
                .collect::<Vec<_>>(),
        );
        running.push(r);
    }
    let mut rows: Vec<Row> = kinds
        .iter()
        .map(|&kind| Row {
            kind,
            samples: Vec::new(),
        })
        .collect();
    for round in 0..size.rounds.max(1) {
        for (row, w) in rows.iter_mut().zip(writers.iter_mut()) {
            let (s, back) = clients.block_on(run_round(std::mem::take(w), size.duration))?;
            *w = back;
            eprintln!(
                "drafts round {}: {:<64} {:>9.0}/s p50 {:>6} µs p99 {:>6} µs errors {}",
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
    Ok(Outcome { clients: n, rows })
}

/// One measured round: every writer for `duration` after a warm-up; the writers come
/// back with their seqs so the next round goes on from them.
async fn run_round(
    writers: Vec<Writer>,
    duration: Duration,
) -> Result<(Sample, Vec<Writer>), BenchError> {
    let warmup = (duration / 8).min(Duration::from_secs(1));
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::with_capacity(writers.len());
    for (i, w) in writers.into_iter().enumerate() {
        let c = load::client()?;
        tasks.push(tokio::spawn(one_writer(c, i, w, start, end)));
    }
    let mut hist = load::histogram();
    let (mut ok, mut errors) = (0, 0);
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (h, o, e, w) = t.await.map_err(|e| BenchError::Setup(e.to_string()))?;
        hist.add(&h).map_err(|e| BenchError::Setup(e.to_string()))?;
        ok += o;
        errors += e;
        back.push(w);
    }
    Ok((load::sample(&hist, ok, errors, duration), back))
}

/// One client's writes; a refused write (counted as an error) resynchronizes the seq from
/// the 409's `current`, so one failure does not turn every later write into a conflict.
async fn one_writer(
    c: reqwest::Client,
    client: usize,
    mut w: Writer,
    start: Instant,
    end: Instant,
) -> (Histogram<u64>, u64, u64, Writer) {
    let mut hist = load::histogram();
    let (mut ok, mut errors) = (0u64, 0u64);
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let body = format!(
            "{{\"text\":\"{}\",\"seq\":{}}}",
            text(client, w.seq + 1),
            w.seq
        );
        let sent = c
            .put(&w.url)
            .header(COOKIE, &w.cookie)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let good = match sent {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            Ok(r) => {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    if let Some(s) = v.pointer("/current/seq").and_then(|s| s.as_u64()) {
                        w.seq = s;
                    }
                }
                false
            }
            Err(_) => false,
        };
        if good {
            w.seq += 1;
        }
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
    (hist, ok, errors, w)
}

/// The scenario's section of docs/benchmarks.md.
pub fn markdown(o: &Outcome, w: &mut String) {
    let _ = writeln!(
        w,
        "## `drafts`: PUT /v1/drafts/{{conversation}} (autosave: 100–200 bytes of text, \
         successive seqs), {} clients, each with its own session and conversation\n",
        o.clients
    );
    crate::report::rows_table(&o.rows, None, w);
}
