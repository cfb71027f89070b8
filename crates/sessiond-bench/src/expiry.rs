//! `expiry`: many sessions with short deadlines, bulk-loaded through the real session
//! service (`get_or_create`: store write, cache, timer) of an in-process server, then
//! left to expire. Lateness of every expiry is read back from the store (`ended_at`
//! against the deadline the session had), so no ending goes uncounted. Also measured:
//! memory per session (RSS deltas; each part runs in a fresh child process, so no step
//! reuses memory an earlier one freed), the timer structure alone, the cost of a touch.

use crate::ws_idle::rss_kib;
use crate::BenchError;
use futures::StreamExt;
use hdrhistogram::Histogram;
use sessiond_core::lifecycle::{self, ClientInfo};
use sessiond_core::store::SessionFilter;
use sessiond_core::timer::DeadlineQueue;
use sessiond_core::{Handle, Store, TokenHash};
use sessiond_server::sessions::Obtained;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Creates in flight at once (a SQLite store groups their commits).
const CREATE_CONCURRENCY: usize = 64;
/// Touches timed per run (at most): each is a cached lookup that records activity. A
/// touch moves the session's deadline to now + idle, so the sample is kept small: the
/// touched sessions' deadlines all land within the few milliseconds the touches take,
/// and a large sample would turn them into a burst of its own.
const TOUCH_SAMPLE: usize = 1000;
/// Listing page when reading the endings back.
const PAGE: usize = 1000;

/// Which store holds the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExpiryStore {
    Memory,
    Sqlite,
}

impl ExpiryStore {
    fn config(self) -> &'static str {
        match self {
            ExpiryStore::Memory => "memory",
            ExpiryStore::Sqlite => "sqlite",
        }
    }
}

/// How the sessions are loaded.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// This many, as fast as the node creates them.
    Count(usize),
    /// As many as the node creates in this long (a burst of deadlines).
    For(Duration),
}

/// One expiry run.
#[derive(Debug, Clone)]
pub struct ExpiryPlan {
    pub name: &'static str,
    pub store: ExpiryStore,
    pub load: Load,
    /// Idle timeout of the sessions (their deadline: creation + this).
    pub idle: Duration,
    /// Longest wait for the endings after the last deadline.
    pub drain: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExpiryResult {
    pub name: String,
    pub store: ExpiryStore,
    pub sessions: u64,
    pub load_s: f64,
    pub idle: Duration,
    /// RSS growth over the load, per session (store + cache + timer + token index).
    pub rss_per_session: f64,
    pub ended: u64,
    /// Sessions still active when the wait ended.
    pub not_ended: u64,
    pub late_p50_ms: u64,
    pub late_p99_ms: u64,
    pub late_max_ms: u64,
    /// Endings later than 1 s after their deadline.
    pub over_1s: u64,
    /// Endings per second from the first to the last.
    pub endings_per_s: f64,
    /// Mean cost of one touch (cached lookup recording activity), in ns.
    pub touch_ns: f64,
    pub touches: usize,
}

/// Memory measured outside the service: the timer alone and the store alone.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MemoryParts {
    pub n: usize,
    /// RSS per entry of a `DeadlineQueue<Handle>` (the scheduler's timer) of n entries.
    pub timer_bytes: f64,
    /// RSS per session of the memory store alone (record, token index, deadline
    /// index, its `created` audit event).
    pub memory_store_bytes: f64,
}

/// Where the bench's sessions are "seen from": a documentation address and a common
/// browser user agent, as a real create records them (they are part of what a cached
/// session holds). Made afresh for each create, as each request makes its own: the
/// cache must share equal agents itself, not be handed one shared copy by the bench.
fn client_info() -> ClientInfo {
    ClientInfo {
        ip: Some("203.0.113.7".to_owned()),
        user_agent: Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/126.0.0.0 Safari/537.36"
                .into(),
        ),
    }
}

fn rss_self() -> u64 {
    rss_kib(std::process::id())
}

fn per(kib_before: u64, kib_after: u64, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    kib_after.saturating_sub(kib_before) as f64 * 1024.0 / n as f64
}

/// RSS per entry of the scheduler's timer (`DeadlineQueue<Handle>`) alone, `n` entries.
pub fn timer_bytes(n: usize) -> f64 {
    let before = rss_self();
    let mut q: DeadlineQueue<Handle> = DeadlineQueue::new();
    let t0 = 1_000_000_000i64;
    for i in 0..n {
        q.schedule(Handle::generate(), t0 + (i as i64 % 60_000));
    }
    let b = per(before, rss_self(), n);
    drop(q);
    b
}

/// RSS per session of the memory store alone (record, token and deadline indexes, the
/// `created` audit event), `n` sessions.
pub async fn memory_store_bytes(n: usize) -> Result<f64, BenchError> {
    let t0 = 1_000_000_000i64;
    let store = sessiond_store_memory::MemoryStore::new();
    let policy = sessiond_core::policy::Policy::new(900, 43_200);
    let before = rss_self();
    for _ in 0..n {
        let (s, _) = lifecycle::new_session(t0, "editor", &policy, &client_info());
        let created = [sessiond_core::audit::AuditEvent::for_session(
            t0,
            sessiond_core::audit::AuditKind::Created,
            &s,
        )];
        sessiond_core::SessionStore::create_session(&store, &s, None, &created)
            .await
            .map_err(|e| BenchError::Setup(format!("memory store: {e}")))?;
    }
    Ok(per(before, rss_self(), n))
}

fn config(store: ExpiryStore, dir: &std::path::Path, idle: Duration, capacity: usize) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nstore = \"{}\"\ndev = true\n\
         api_keys = [\"bench-admin-key-0001\"]\n\
         server_secret = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n\
         [rate_limits]\nenabled = false\n\
         [hot_path]\ncache_capacity = {capacity}\n\
         [roles.editor]\nidle_timeout = \"{}\"\nwarn_before = \"0s\"\n",
        dir.display().to_string(),
        store.config(),
        humantime::format_duration(idle)
    )
}

/// Runs one expiry scenario on the current runtime.
pub async fn run(plan: &ExpiryPlan) -> Result<ExpiryResult, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("sessiond-bench-expiry-")
        .tempdir()?;
    let capacity = match plan.load {
        Load::Count(n) => n + n / 8 + 1024,
        Load::For(_) => 2_000_000,
    };
    let toml = config(plan.store, dir.path(), plan.idle, capacity);
    let cfg = sessiond_server::config::Config::from_toml(&toml)
        .map_err(|e| BenchError::Setup(format!("sessiond config: {e}")))?;
    let server = sessiond_server::ServerBuilder::new(cfg)
        .build()
        .await
        .map_err(|e| BenchError::Setup(format!("sessiond: {e}")))?;
    let state = server.state().clone();
    let sessions = state.sessions.clone();
    let store: Arc<dyn Store> = state.store.clone();
    let (_router, guard) = server.into_parts();

    // The touch sample's token hashes, allocated (and written) before the baseline.
    let sample = match plan.load {
        Load::Count(n) => n.min(TOUCH_SAMPLE),
        Load::For(_) => TOUCH_SAMPLE,
    };
    let mut hashes: Vec<TokenHash> = vec![TokenHash([1; 32]); sample];
    let mut kept = 0usize;
    let stride = match plan.load {
        Load::Count(n) => (n / sample.max(1)).max(1) as u64,
        Load::For(_) => 1,
    };
    let rss_before = rss_self();
    let t_load = Instant::now();
    let stop_at = match plan.load {
        Load::For(d) => Some(t_load + d),
        Load::Count(_) => None,
    };
    let total = match plan.load {
        Load::Count(n) => n,
        Load::For(_) => usize::MAX,
    };
    let mut made = futures::stream::iter(0..total)
        .take_while(|_| std::future::ready(stop_at.is_none_or(|t| Instant::now() < t)))
        .map(|_| {
            let s = sessions.clone();
            let client = client_info();
            async move { s.get_or_create(None, None, &client).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY);
    let mut created = 0u64;
    while let Some(r) = made.next().await {
        match r {
            Ok(Obtained::Created { token, .. }) => {
                // Spread over the load (every `stride`-th), not its first sessions.
                if kept < sample && created % stride == 0 {
                    hashes[kept] = token.hash();
                    kept += 1;
                }
                created += 1;
            }
            Ok(_) => {
                return Err(BenchError::Setup(
                    "create returned an existing session".into(),
                ))
            }
            Err(e) => return Err(BenchError::Setup(format!("create: {e}"))),
        }
    }
    drop(made);
    let load_s = t_load.elapsed().as_secs_f64();
    let rss_loaded = rss_self();
    let rss_per_session = per(rss_before, rss_loaded, created as usize);
    eprintln!(
        "expiry {}: {created} sessions in {load_s:.1} s ({:.0}/s), {:.0} B RSS each",
        plan.name,
        created as f64 / load_s,
        rss_per_session
    );

    // Touches: each is a validated lookup that records activity and moves the timer.
    // A session that already ended (the load outran the calibration) is not counted.
    let t_touch = Instant::now();
    let mut touched = 0usize;
    for h in &hashes[..kept] {
        match sessions.authenticate(h, true).await {
            Ok(_) => touched += 1,
            Err(sessiond_server::sessions::SessionError::Ended { .. }) => {}
            Err(e) => return Err(BenchError::Setup(format!("touch: {e}"))),
        }
    }
    let touch_ns = if touched > 0 {
        t_touch.elapsed().as_nanos() as f64 / touched as f64
    } else {
        0.0
    };

    // Wait for the timer to drain: the last deadline is the last touch + idle.
    let give_up = Instant::now() + plan.idle + plan.drain;
    while sessions.timer_len() > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last endings popped from the timer may still be being written: read back
    // until every session has ended, or the wait is over.
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = store
            .list_sessions(&SessionFilter {
                active_only: true,
                limit: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| BenchError::Setup(format!("list: {e}")))?;
        if left.is_empty() || Instant::now() >= give_up {
            break;
        }
    }

    let late = lateness(store.as_ref()).await?;
    guard.shutdown().await;
    let r = ExpiryResult {
        name: plan.name.to_owned(),
        store: plan.store,
        sessions: created,
        load_s,
        idle: plan.idle,
        rss_per_session,
        ended: late.ended,
        not_ended: late.not_ended,
        late_p50_ms: late.p50_ms,
        late_p99_ms: late.p99_ms,
        late_max_ms: late.max_ms,
        over_1s: late.over_1s,
        endings_per_s: late.endings_per_s,
        touch_ns,
        touches: touched,
    };
    eprintln!(
        "expiry {}: {} ended ({} not), lateness p50 {} ms p99 {} ms max {} ms, {} over 1 s, {:.0} endings/s, touch {:.0} ns",
        r.name, r.ended, r.not_ended, r.late_p50_ms, r.late_p99_ms, r.late_max_ms, r.over_1s, r.endings_per_s, r.touch_ns
    );
    Ok(r)
}

/// How late the endings in a store were: every session is read back, and each ended
/// one's lateness is its `ended_at` minus the deadline it had.
#[derive(Debug, Clone, Default)]
pub struct Lateness {
    pub ended: u64,
    /// Sessions still active.
    pub not_ended: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    /// Endings later than 1 s after their deadline.
    pub over_1s: u64,
    /// Endings per second from the first to the last.
    pub endings_per_s: f64,
}

/// Reads every session of `store` back (pages of [`PAGE`]) and measures [`Lateness`].
pub async fn lateness(store: &dyn Store) -> Result<Lateness, BenchError> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut l = Lateness::default();
    let (mut first_end, mut last_end) = (i64::MAX, i64::MIN);
    let mut filter = SessionFilter {
        limit: PAGE,
        ..Default::default()
    };
    loop {
        let page = store
            .list_sessions(&filter)
            .await
            .map_err(|e| BenchError::Setup(format!("list: {e}")))?;
        for s in &page {
            match s.ended_at {
                Some(at) if !s.is_active() => {
                    let late = (at - lifecycle::next_deadline(s)).max(0) as u64;
                    hist.saturating_record(late.max(1));
                    if late > 1000 {
                        l.over_1s += 1;
                    }
                    l.ended += 1;
                    first_end = first_end.min(at);
                    last_end = last_end.max(at);
                }
                _ => l.not_ended += 1,
            }
        }
        match page.last() {
            Some(s) if page.len() == PAGE => filter.after = Some(s.handle),
            _ => break,
        }
    }
    if l.ended > 0 {
        l.p50_ms = hist.value_at_quantile(0.5);
        l.p99_ms = hist.value_at_quantile(0.99);
        l.max_ms = hist.max();
    }
    if l.ended > 1 {
        l.endings_per_s = l.ended as f64 / ((last_end - first_end).max(1) as f64 / 1000.0);
    }
    Ok(l)
}

/// Seconds an idle timeout needs so that no session expires before the load ends:
/// measured on a throwaway server with `probe` creates.
pub async fn calibrate(store: ExpiryStore, n: usize, probe: usize) -> Result<Duration, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("sessiond-bench-expiry-")
        .tempdir()?;
    let toml = config(store, dir.path(), Duration::from_secs(3600), probe + 1024);
    let cfg = sessiond_server::config::Config::from_toml(&toml)
        .map_err(|e| BenchError::Setup(format!("sessiond config: {e}")))?;
    let server = sessiond_server::ServerBuilder::new(cfg)
        .build()
        .await
        .map_err(|e| BenchError::Setup(format!("sessiond: {e}")))?;
    let sessions = server.state().sessions.clone();
    let (_router, guard) = server.into_parts();
    let t = Instant::now();
    let mut made = futures::stream::iter(0..probe)
        .map(|_| {
            let s = sessions.clone();
            let client = client_info();
            async move { s.get_or_create(None, None, &client).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY);
    while let Some(r) = made.next().await {
        r.map_err(|e| BenchError::Setup(format!("create: {e}")))?;
    }
    drop(made);
    let per_s = probe as f64 / t.elapsed().as_secs_f64().max(1e-3);
    guard.shutdown().await;
    // Three times the estimate (a larger store is slower to fill, the machine is
    // shared), plus 10 s.
    let est = n as f64 / per_s.max(1.0);
    Ok(Duration::from_secs((3.0 * est + 10.0).ceil() as u64))
}

/// Everything the `expiry` scenario measured.
#[derive(Debug, Clone, Default)]
pub struct ExpiryReport {
    pub parts: Option<MemoryParts>,
    pub runs: Vec<ExpiryResult>,
}

impl ExpiryReport {
    fn bulk(&self) -> Option<&ExpiryResult> {
        self.runs.iter().find(|r| r.store == ExpiryStore::Memory)
    }
    /// RSS of one idle cached session: the service's growth per session on the memory
    /// store, less the memory store's own copy and the timer entry (each measured alone).
    pub fn cached_session_bytes(&self) -> Option<f64> {
        let p = self.parts.as_ref()?;
        let b = self.bulk()?;
        Some(b.rss_per_session - p.memory_store_bytes - p.timer_bytes)
    }
}

fn store_label(s: ExpiryStore) -> &'static str {
    match s {
        ExpiryStore::Memory => "memory",
        ExpiryStore::Sqlite => "SQLite",
    }
}

/// The `expiry` section of docs/benchmarks.md.
pub fn markdown(r: &ExpiryReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if r.runs.is_empty() && r.parts.is_none() {
        return s;
    }
    let _ = writeln!(s, "## `expiry`: sessions left to expire\n");
    let _ = writeln!(
        s,
        "sessiond runs in the tool's process (`ServerBuilder`, its scheduler taking each \
         due session from the timer as soon as one of its 256 slots is free); sessions are created through the session service (`get_or_create`: the \
         store write with its audit event, the cache, the timer), {CREATE_CONCURRENCY} at \
         a time, as fast as the node creates them, so their deadlines (creation + the \
         role's idle timeout, `warn_before` 0) come as densely as creation allows. After \
         the load, up to {TOUCH_SAMPLE} of them are touched once (a validated lookup \
         recording activity, which moves the timer), timed. When the timer is empty \
         every session is read back from the store: lateness is `ended_at` minus the \
         deadline the session had, for every ending. RSS figures are the process's RSS \
         growth over the load, per session; each part (the timer alone, the memory store \
         alone, the bulk run, the burst) runs in a fresh child process \
         (`sessiond-bench expiry-part`), so no step reuses memory another freed. The bulk run uses the \
         memory store (1,000,000 sessions on SQLite would not fit the run's time); the \
         burst runs on SQLite (every creation and ending a durable commit).\n"
    );
    let _ = writeln!(
        s,
        "| run | store | sessions | created in | idle timeout | ended (not ended) | lateness p50 | p99 | max | over 1 s | endings/s | RSS per session | touch |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for x in &r.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} s ({:.0}/s) | {} | {} ({}) | {} ms | {} ms | {} ms | {} | {:.0}/s | {:.0} B | {:.2} µs ({} touches) |",
            x.name,
            store_label(x.store),
            x.sessions,
            x.load_s,
            x.sessions as f64 / x.load_s.max(1e-3),
            humantime::format_duration(x.idle),
            x.ended,
            x.not_ended,
            x.late_p50_ms,
            x.late_p99_ms,
            x.late_max_ms,
            x.over_1s,
            x.endings_per_s,
            x.rss_per_session,
            x.touch_ns / 1000.0,
            x.touches
        );
    }
    let _ = writeln!(s);
    if let Some(p) = &r.parts {
        let _ = writeln!(
            s,
            "Memory by part ({} entries each, measured alone): the timer (`DeadlineQueue<Handle>`, \
             the scheduler's structure) {:.0} B per entry; the memory store {:.0} B per \
             session (record, token and deadline indexes, its `created` audit event). An \
             idle cached session (the service's growth less these two) is {}.\n",
            p.n,
            p.timer_bytes,
            p.memory_store_bytes,
            r.cached_session_bytes()
                .map_or("not measured".to_owned(), |b| format!("{b:.0} B"))
        );
    }
    s
}

/// The rows of the bars table for `expiry`.
pub fn bar_rows(r: &ExpiryReport) -> Vec<String> {
    use crate::ws_idle::verdict_at_most as at_most;
    let mut rows = Vec::new();
    if r.runs.is_empty() {
        rows.push("| expiry: every expiry within 1 s of its deadline, p99 ≤ 250 ms (`expiry`) | not run | — |".to_owned());
    }
    for x in &r.runs {
        rows.push(format!(
            "| expiry ({}, {} sessions, {}): every ending within 1 s of its deadline | max {} ms, {} over 1 s{} | {} |",
            x.name,
            x.sessions,
            store_label(x.store),
            x.late_max_ms,
            x.over_1s,
            if x.not_ended > 0 { format!(", {} not ended by the end of the wait", x.not_ended) } else { String::new() },
            if x.over_1s == 0 && x.not_ended == 0 { at_most(x.late_max_ms as f64, 1000.0, "ms") } else { "**not met**".to_owned() }
        ));
        rows.push(format!(
            "| expiry ({}): p99 lateness ≤ 250 ms | {} ms | {} |",
            x.name,
            x.late_p99_ms,
            at_most(x.late_p99_ms as f64, 250.0, "ms")
        ));
    }
    match &r.parts {
        Some(p) => rows.push(format!(
            "| timer structure ≤ 100 B per session | {:.0} B | {} |",
            p.timer_bytes,
            at_most(p.timer_bytes, 100.0, "B")
        )),
        None => rows.push("| timer structure ≤ 100 B per session | not run | — |".to_owned()),
    }
    match r.cached_session_bytes() {
        Some(b) => rows.push(format!(
            "| an idle cached session ≤ 600 B of RSS | {b:.0} B | {} |",
            at_most(b, 600.0, "B")
        )),
        None => rows.push("| an idle cached session ≤ 600 B of RSS | not run | — |".to_owned()),
    }
    rows
}
