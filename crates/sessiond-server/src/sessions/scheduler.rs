//! The expiry scheduler: a deadline queue holding each session's next event (its
//! warning time, then its deadline), fired by [`SessionService::run_scheduler`] (or a
//! pass of [`SessionService::tick`]), plus the start-up
//! load and the store poll that catch deadlines this node's queue does not hold.

use super::{SessionResult, SessionService};
use crate::bus::Event;
use futures::StreamExt;
use sessiond_core::store::Expiry;
use sessiond_core::{lifecycle, EndReason, Handle, Session, Timestamp};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Delay before a check that could not reach the store is tried again.
const RETRY_MS: i64 = 500;
/// Due sessions handled at once by one scheduler pass, over all its tasks (see
/// [`SessionService::tick`]).
pub(super) const FIRE_CONCURRENCY: usize = 256;
/// Fewest due sessions worth a task of their own: below it a batch is fired in the
/// scheduler's task (spawning would cost more than it spreads).
const MIN_CHUNK: usize = 64;
/// Due sessions taken from the timer at once (one lock).
const BATCH: usize = 10_000;
/// Longest one pass keeps firing batches before it returns (ms).
const MAX_PASS_MS: Timestamp = 1000;
/// Longest the running scheduler sleeps between looks at its timer: a session scheduled
/// meanwhile with an earlier deadline than the one it sleeps towards waits at most this.
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// Shortest such sleep, so a deadline within the millisecond does not spin the loop.
const LOOK_AT_LEAST: Duration = Duration::from_millis(2);
/// Due sessions one of the running scheduler's tasks takes from the timer at once (one
/// lock; each waits in that task for a free slot, so few).
const TAKE: usize = 16;

/// A firing task's end: a panic goes on in the scheduler, as if it had fired the session
/// itself. (Only a runtime shutting down cancels one; the store still holds that
/// session's deadline, which the poll and the next warm start find.)
fn settled<T>(r: Result<T, tokio::task::JoinError>) {
    if let Err(e) = r {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// What the scheduler does with a session whose timer fired.
enum Due {
    Warn(Box<Session>),
    /// Ends by timeout; the deadline it passed, for the lateness histogram; in cluster
    /// mode the cached copy it was decided on (the store's condition).
    End(EndReason, Timestamp, Option<Expiry>),
    /// Not cached (or ended in the cache): decide on the store's record.
    Reread,
}

/// Due sessions shared by a pass's tasks: each takes the next one not yet taken.
struct Line {
    due: Vec<(Handle, Timestamp)>,
    next: AtomicUsize,
}

impl Line {
    fn new(due: Vec<(Handle, Timestamp)>) -> Line {
        Line {
            due,
            next: AtomicUsize::new(0),
        }
    }

    fn next(&self) -> Option<Handle> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.due.get(i).map(|(h, _)| *h)
    }
}

impl SessionService {
    /// Next timer point of a session: its warning time until warned, then its deadline.
    pub(super) fn timer_for(&self, s: &Session, warned: bool) -> Timestamp {
        let deadline = lifecycle::next_deadline(s);
        if warned {
            deadline
        } else {
            deadline - self.policy(&s.role).warn_ms()
        }
    }

    /// The timer of a freshly loaded record: none once it has ended.
    pub(super) fn timer_if_active(&self, s: &Session) -> Option<Timestamp> {
        s.is_active().then(|| self.timer_for(s, false))
    }

    /// Loads every active session's deadline into the timer (start-up, after a restart).
    pub async fn warm_start(&self) -> SessionResult<usize> {
        let mut filter = sessiond_core::store::SessionFilter {
            active_only: true,
            limit: 1000,
            ..Default::default()
        };
        let mut n = 0;
        loop {
            let page = self.store.list_sessions(&filter).await?;
            let last = page.last().map(|s| s.handle);
            {
                let mut c = self.lock();
                for s in &page {
                    let t = self.timer_for(s, false);
                    c.timers.schedule(s.handle, t);
                }
            }
            n += page.len();
            match last {
                Some(h) if page.len() == filter.limit => filter.after = Some(h),
                _ => break,
            }
        }
        Ok(n)
    }

    /// One scheduler pass: fires warnings and endings that are due. Returns how many.
    /// (The server runs [`run_scheduler`](Self::run_scheduler); a pass is for callers
    /// that drive the timer themselves, such as tests on a manual clock.)
    ///
    /// Due sessions are handled [`FIRE_CONCURRENCY`] at a time: each ending is a store
    /// write (with its audit event), and one after the other a burst of deadlines would
    /// wait for a commit each (on SQLite an fsync each, about a thousand a second, so
    /// endings fell seconds behind); concurrent ones share a group commit. Each session
    /// is still decided on its own record and ends once (the store's CAS).
    ///
    /// A batch is split over one task per runtime worker: in one task every ending ran on
    /// one core, and a million sessions created at about 139k/s (each create one task's
    /// work too) ended at about 127k/s, so lateness grew through the run to 770 ms.
    ///
    /// Batches of due sessions follow each other without waiting for the next tick while
    /// more are due (for up to [`MAX_PASS_MS`], so the flusher still gets its turn): a
    /// pass that waited for the next tick between batches fell behind a dense run of
    /// deadlines (a million sessions made in 16 s ended up to 2.8 s late).
    pub async fn tick(self: &Arc<Self>) -> usize {
        let start = self.now();
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let mut fired = 0;
        loop {
            let now = self.now();
            let due = self.lock().timers.pop_due(now, BATCH);
            let n = due.len();
            fired += self.fire_all(due, now, workers).await;
            if n < BATCH || self.now() - start >= MAX_PASS_MS {
                return fired;
            }
        }
    }

    /// Runs the scheduler until `shutdown`: one task per runtime worker, each firing due
    /// sessions [`FIRE_CONCURRENCY`] / workers at a time, taking the next few from the
    /// timer as soon as it has a free slot (so a burst of deadlines keeps every worker
    /// busy, and none waits for another's work to finish).
    ///
    /// Passes of [`tick`](Self::tick) every 100 ms made an ending wait for the next tick
    /// and then for the whole pass before it, so in a burst the wait grew with the pass:
    /// 32,031 sessions ending at about 7k/s on a three-master Redis Cluster ended up to
    /// 318 ms late (p50 171 ms), though the node kept up with them. An ending's
    /// `ended_at` is the moment it was taken from the timer, so every wait counts.
    /// (A task per firing would work too, at the cost of a spawn per session.)
    /// On `shutdown` no more are taken; the ones in flight finish.
    pub async fn run_scheduler(self: Arc<Self>, shutdown: CancellationToken) {
        let workers = tokio::runtime::Handle::current()
            .metrics()
            .num_workers()
            .max(1);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (svc, stop) = (Arc::clone(&self), shutdown.clone());
            set.spawn(svc.fire_until(stop, FIRE_CONCURRENCY / workers));
        }
        while let Some(r) = set.join_next().await {
            settled(r);
        }
    }

    /// One of [`run_scheduler`](Self::run_scheduler)'s tasks.
    async fn fire_until(self: Arc<Self>, shutdown: CancellationToken, concurrency: usize) {
        let state = (Arc::clone(&self), shutdown, VecDeque::new());
        let taken = futures::stream::unfold(state, |(svc, shutdown, mut mine)| async move {
            loop {
                if let Some(next) = mine.pop_front() {
                    return Some((next, (svc, shutdown, mine)));
                }
                if shutdown.is_cancelled() {
                    return None;
                }
                let now = svc.now();
                let next = {
                    let mut c = svc.lock();
                    let due = c.timers.pop_due(now, TAKE);
                    mine.extend(due.into_iter().map(|(h, _)| (h, now)));
                    c.timers.next_deadline()
                };
                if !mine.is_empty() {
                    continue;
                }
                let wait = next.map_or(LOOK_EVERY, |t| {
                    let ms = u64::try_from(t.saturating_sub(now)).unwrap_or(0);
                    Duration::from_millis(ms).clamp(LOOK_AT_LEAST, LOOK_EVERY)
                });
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
        taken
            .map(|(handle, now)| {
                let svc = Arc::clone(&self);
                async move { svc.fire(handle, now).await }
            })
            .buffer_unordered(concurrency.max(1))
            .for_each(|_| async {})
            .await;
    }

    /// Fires `due` over up to `workers` tasks, [`FIRE_CONCURRENCY`] sessions in flight
    /// in all. The tasks take the next session from one shared line, so all of them stay
    /// busy until the batch is done (fixed halves left one task's share in flight once
    /// the other finished, which shrank a SQLite group commit). How many were fired.
    async fn fire_all(
        self: &Arc<Self>,
        due: Vec<(Handle, Timestamp)>,
        now: Timestamp,
        workers: usize,
    ) -> usize {
        let tasks = workers.min(due.len() / MIN_CHUNK).max(1);
        if tasks == 1 {
            return self.fire_from(&Line::new(due), now, FIRE_CONCURRENCY).await;
        }
        let line = Arc::new(Line::new(due));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (svc, line) = (Arc::clone(self), Arc::clone(&line));
            set.spawn(async move { svc.fire_from(&line, now, FIRE_CONCURRENCY / tasks).await });
        }
        let mut fired = 0;
        while let Some(r) = set.join_next().await {
            if let Ok(n) = r {
                fired += n;
            } else {
                settled(r);
            }
        }
        fired
    }

    /// Fires sessions taken from `line` in this task, `concurrency` at a time, until it
    /// is empty. How many were fired.
    async fn fire_from(&self, line: &Line, now: Timestamp, concurrency: usize) -> usize {
        futures::stream::iter(std::iter::from_fn(|| line.next()))
            .map(|handle| self.fire(handle, now))
            .buffer_unordered(concurrency.max(1))
            .fold(0, |n, fired| async move { n + usize::from(fired) })
            .await
    }

    /// Fires one due session's timer: its warning or its ending (or re-reads it). Whether
    /// something was fired.
    async fn fire(&self, handle: Handle, now: Timestamp) -> bool {
        let cluster = self.cluster.get().is_some();
        if cluster && !self.due_in_cache(&handle, now) {
            // Another node may have moved or ended it: decide on the store's record. An
            // ending needs no read first: the store ends it only if its record is still
            // the cached one, and due (see `expire`).
            if let Err(err) = self.refresh(&handle).await {
                tracing::warn!(handle = %handle, error = %err, "expiry check deferred");
                self.lock().timers.schedule(handle, now + RETRY_MS);
                return false;
            }
        }
        let action = {
            let mut c = self.lock();
            match c.by_handle.get_mut(&handle) {
                Some(e) if !e.session.is_active() => Due::Reread,
                Some(e) => match lifecycle::due_reason(&e.session, now) {
                    Some(r) => Due::End(
                        r,
                        lifecycle::next_deadline(&e.session),
                        cluster.then(|| Expiry::of(&e.session)),
                    ),
                    None if !e.warned && now >= self.timer_for(&e.session, false) => {
                        e.warned = true;
                        Due::Warn(Box::new(e.session.clone()))
                    }
                    None => {
                        let t = self.timer_for(&e.session, e.warned);
                        c.timers.schedule(handle, t);
                        return false;
                    }
                },
                None => Due::Reread,
            }
        };
        match action {
            Due::Warn(s) => {
                let t = self.timer_for(&s, true);
                self.lock().timers.schedule(handle, t);
                self.bus.publish(Event::ExpiryWarning {
                    handle,
                    seconds_left: lifecycle::seconds_left(&s, now),
                    idle_expires_at: s.idle_expires_at,
                });
                true
            }
            Due::End(r, deadline, seen) => match match &seen {
                Some(seen) => self.expire(seen, r).await,
                None => self.end(&handle, r).await,
            } {
                Ok(ended) => {
                    if ended.is_some() {
                        // Measured once the ending is stored: what a client sees.
                        let late_ms = (self.now() - deadline).max(0);
                        self.meters().lateness.record(late_ms as f64 / 1000.0);
                    }
                    true
                }
                Err(err) => {
                    // Store unreachable: never expire blindly; retry shortly.
                    tracing::warn!(handle = %handle, error = %err, "expiry deferred");
                    self.lock().timers.schedule(handle, now + RETRY_MS);
                    false
                }
            },
            Due::Reread => match self.store.get_session(&handle).await {
                Ok(Some(s)) if s.is_active() => {
                    let overdue = lifecycle::due_reason(&s, now).is_some();
                    let timer = self.timer_if_active(&s);
                    let mut c = self.lock();
                    // A refused (older) read changes nothing; the cached record's
                    // timer stands.
                    if c.insert(s, false, timer, now) && overdue {
                        c.timers.schedule(handle, now);
                    }
                    false
                }
                Ok(_) => false,
                Err(err) => {
                    tracing::warn!(handle = %handle, error = %err, "expiry check deferred");
                    self.lock().timers.schedule(handle, now + RETRY_MS);
                    false
                }
            },
        }
    }

    /// Whether this node's cached copy of the session is live and due at `now`.
    fn due_in_cache(&self, handle: &Handle, now: Timestamp) -> bool {
        self.lock()
            .by_handle
            .get(handle)
            .is_some_and(|e| lifecycle::due_reason(&e.session, now).is_some())
    }

    /// Picks up sessions whose stored deadline passed but that this node's timer does not
    /// hold (created by another node, or evicted): a safety net polled every second.
    pub async fn reconcile_due(&self) -> SessionResult<usize> {
        let now = self.now();
        let due = self.store.due_sessions(now, 1000).await?;
        let n = due.len();
        let mut c = self.lock();
        for h in due {
            if c.timers.deadline(&h).is_none_or(|t| t > now) {
                // Cached activity may be newer than the store; tick() re-checks.
                c.timers.schedule(h, now);
            }
        }
        Ok(n)
    }

    /// Sessions in the timer (metrics).
    pub fn timer_len(&self) -> usize {
        self.lock().timers.len()
    }
}
