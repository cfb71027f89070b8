//! The expiry scheduler: a deadline queue holding each session's next event (its
//! warning time, then its deadline), fired by [`SessionService::run_scheduler`] (or a
//! pass of [`SessionService::tick`]), plus the start-up
//! load and the store poll that catch deadlines this node's queue does not hold.

use super::{SessionResult, SessionService};
use crate::bus::Event;
use futures::StreamExt;
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::store::{Expiring, Expiry};
use sessiond_core::{lifecycle, EndReason, Handle, Session, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Delay before a check that could not reach the store is tried again.
const RETRY_MS: i64 = 500;
/// Due sessions in flight at once, over all the scheduler's tasks (see
/// [`SessionService::run_scheduler`]).
pub(super) const FIRE_CONCURRENCY: usize = 256;
/// Longest the running scheduler sleeps between looks at its timer. A timer set earlier
/// than the look it sleeps towards wakes it at once (`Cache::schedule`), so this only
/// bounds how far the timer's clock (the service's, which tests set by hand) and the
/// runtime's sleep can drift apart. At 100 ms, with no wake-up, two tasks looking ten
/// times a second were most of an idle server's CPU.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Shortest such sleep, so a deadline within the millisecond does not spin the loop.
const LOOK_AT_LEAST: Duration = Duration::from_millis(2);
/// Due sessions one of the running scheduler's tasks takes from the timer at once (one
/// lock), fired as one batch (see `fire_batch`).
const TAKE: usize = 16;

/// A scheduler task's end: a panic goes on in the caller, as if it had run the task
/// itself. (Only a runtime shutting down cancels one; the store still holds the
/// deadlines, which the poll and the next warm start find.)
pub(super) fn settled<T>(r: Result<T, tokio::task::JoinError>) {
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
                    c.schedule(s.handle, t);
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

    /// One pass over the sessions due now, in the caller's task, [`FIRE_CONCURRENCY`]
    /// at a time; how many were fired. The server runs
    /// [`run_scheduler`](Self::run_scheduler); a pass is for callers that drive the
    /// timer themselves, such as tests on a manual clock.
    pub async fn tick(self: &Arc<Self>) -> usize {
        let now = self.now();
        let due = self.lock().timers.pop_due(now, usize::MAX);
        let takes: Vec<(Vec<Handle>, Timestamp)> = due
            .chunks(TAKE)
            .map(|c| (c.iter().map(|(h, _)| *h).collect(), now))
            .collect();
        self.fire_takes(futures::stream::iter(takes), FIRE_CONCURRENCY)
            .await
    }

    /// Runs the scheduler until `shutdown`: one task per runtime worker, each firing due
    /// sessions [`FIRE_CONCURRENCY`] / workers at a time, in batches of up to [`TAKE`]
    /// taken from the timer as soon as a batch's slot is free (so a burst of deadlines
    /// keeps every worker busy, and none waits for another's work to finish).
    ///
    /// Endings run concurrently because each is a store write with its audit event: one
    /// after the other, a burst of deadlines waited for a commit each (on SQLite an fsync
    /// each, so endings fell seconds behind); concurrent ones share a group commit. Each
    /// session is still decided on its own record and ends once (the store's CAS). One
    /// task per worker, because in one task every ending ran on one core and a million
    /// sessions created at about 139k/s ended at about 127k/s.
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

    /// One of [`run_scheduler`](Self::run_scheduler)'s tasks: it takes due sessions
    /// [`TAKE`] at a time, and fires each take as one batch.
    async fn fire_until(self: Arc<Self>, shutdown: CancellationToken, concurrency: usize) {
        let wake = Arc::clone(&self.lock().wake);
        let state = (Arc::clone(&self), shutdown, wake);
        let taken = futures::stream::unfold(state, |(svc, shutdown, wake)| async move {
            loop {
                if shutdown.is_cancelled() {
                    return None;
                }
                let batch = {
                    // Registered before the look, so a timer set between the look and
                    // the sleep still wakes this task.
                    let woken = wake.notified();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    let now = svc.now();
                    let (due, wait) = {
                        let mut c = svc.lock();
                        let due = c.timers.pop_due(now, TAKE);
                        let wait = c.timers.next_deadline().map_or(LOOK_EVERY, |t| {
                            let ms = u64::try_from(t.saturating_sub(now)).unwrap_or(0);
                            Duration::from_millis(ms).clamp(LOOK_AT_LEAST, LOOK_EVERY)
                        });
                        if due.is_empty() {
                            c.sleeps_until = now.saturating_add(wait.as_millis() as Timestamp);
                        }
                        (due, wait)
                    };
                    if due.is_empty() {
                        tokio::select! {
                            _ = shutdown.cancelled() => return None,
                            _ = tokio::time::sleep(wait) => {}
                            _ = &mut woken => {}
                        }
                        None
                    } else {
                        Some((due.into_iter().map(|(h, _)| h).collect::<Vec<_>>(), now))
                    }
                };
                if let Some(batch) = batch {
                    return Some((batch, (svc, shutdown, wake)));
                }
            }
        });
        self.fire_takes(taken, concurrency).await;
    }

    /// Fires the takes of due timers `takes` yields, `concurrency` endings at a time; how
    /// many were fired. On a single node each take is one batch ([`Self::fire_batch`]). On
    /// a cluster each session is decided on the store's record, one by one, and holds its
    /// own slot: a batch would hold its slots until its slowest store round trip came
    /// back.
    async fn fire_takes(
        self: &Arc<Self>,
        takes: impl futures::Stream<Item = (Vec<Handle>, Timestamp)>,
        concurrency: usize,
    ) -> usize {
        let count = |n, fired| async move { n + fired };
        if self.cluster.get().is_some() {
            return takes
                .flat_map(|(take, now)| {
                    futures::stream::iter(take.into_iter().map(move |h| (h, now)))
                })
                .map(|(handle, now)| {
                    let svc = Arc::clone(self);
                    async move { usize::from(svc.fire(handle, now).await) }
                })
                .buffer_unordered(concurrency.max(1))
                .fold(0, count)
                .await;
        }
        takes
            .map(|(take, now)| {
                let svc = Arc::clone(self);
                async move { svc.fire_batch(take, now).await }
            })
            .buffer_unordered((concurrency / TAKE).max(1))
            .fold(0, count)
            .await
    }

    /// Fires a batch of due timers taken at `now`; how many were fired.
    ///
    /// On a single node the cache holds the only copy that changes, so the timeouts
    /// among them that have no unwritten activity are decided in one locking and ended
    /// in one store call ([`SessionStore::expire_sessions`]), each on the copy it was
    /// decided on, and the cache takes the endings in one locking more. One by one, a
    /// burst of endings took five cache lockings and one store lock each from two
    /// worker threads, and they queued on those locks: on the memory store a million
    /// sessions created at about 68k/s ended at about 67k/s, ever later. The rest
    /// (warnings, moved deadlines, entries with activity to write first, and on a
    /// cluster everything, though [`Self::fire_takes`] sends a cluster's one by one
    /// itself: each is decided on the store's record) goes one by one, concurrently.
    ///
    /// [`SessionStore::expire_sessions`]: sessiond_core::store::SessionStore::expire_sessions
    async fn fire_batch(&self, handles: Vec<Handle>, now: Timestamp) -> usize {
        let mut one_by_one = Vec::new();
        let mut started = Vec::new();
        if self.cluster.get().is_some() {
            one_by_one = handles;
        } else {
            let c = self.lock();
            for handle in handles {
                let e = match c.by_handle.get(&handle) {
                    Some(e) if e.session.is_active() && !e.dirty => e,
                    _ => {
                        one_by_one.push(handle);
                        continue;
                    }
                };
                match lifecycle::due_reason(&e.session, now) {
                    Some(reason) => started.push((
                        Expiry::of(&e.session),
                        reason,
                        lifecycle::next_deadline(&e.session),
                        AuditEvent::for_session(now, AuditKind::Ended, &e.session),
                    )),
                    None => one_by_one.push(handle),
                }
            }
        }
        // What the answers are matched with, as the batch goes to the store.
        let mut meta = Vec::with_capacity(started.len());
        let batch: Vec<Expiring> = started
            .into_iter()
            .map(|(seen, reason, deadline, event)| {
                meta.push((seen.handle, reason, deadline));
                Expiring {
                    seen,
                    reason,
                    audit: super::ending_audit(Some(event), reason, None),
                }
            })
            .collect();
        let singles = futures::future::join_all(one_by_one.into_iter().map(|h| self.fire(h, now)));
        let together = async {
            if batch.is_empty() {
                Vec::new()
            } else {
                self.store.expire_sessions(batch, now).await
            }
        };
        let (singles, results) = futures::join!(singles, together);
        let mut fired = singles.into_iter().filter(|f| *f).count();
        let mut ended = Vec::with_capacity(meta.len());
        let mut refused = Vec::new();
        let mut late = Vec::with_capacity(meta.len());
        for ((handle, reason, deadline), r) in meta.into_iter().zip(results) {
            match r {
                Ok(Some(s)) => {
                    ended.push((s, reason));
                    late.push(deadline);
                }
                Ok(None) => refused.push(handle),
                Err(err) => {
                    // Store unreachable: never expire blindly; retry shortly.
                    tracing::warn!(handle = %handle, error = %err, "expiry deferred");
                    self.lock().schedule(handle, now + RETRY_MS);
                }
            }
        }
        fired += ended.len() + refused.len();
        if !ended.is_empty() {
            // Measured once the endings are stored: what a client sees.
            let stored = self.now();
            for deadline in late {
                let late_ms = (stored - deadline).max(0);
                self.meters().lateness.record(late_ms as f64 / 1000.0);
            }
            self.ended_all(ended);
        }
        for handle in refused {
            if let Err(err) = self.expiry_refused(&handle).await {
                tracing::warn!(handle = %handle, error = %err, "expiry check deferred");
                self.lock().schedule(handle, now + RETRY_MS);
            }
        }
        fired
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
                self.lock().schedule(handle, now + RETRY_MS);
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
                        c.schedule(handle, t);
                        return false;
                    }
                },
                None => Due::Reread,
            }
        };
        match action {
            Due::Warn(s) => {
                let t = self.timer_for(&s, true);
                self.lock().schedule(handle, t);
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
                    self.lock().schedule(handle, now + RETRY_MS);
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
                        c.schedule(handle, now);
                    }
                    false
                }
                Ok(_) => false,
                Err(err) => {
                    tracing::warn!(handle = %handle, error = %err, "expiry check deferred");
                    self.lock().schedule(handle, now + RETRY_MS);
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
                c.schedule(h, now);
            }
        }
        Ok(n)
    }

    /// Sessions in the timer (metrics).
    pub fn timer_len(&self) -> usize {
        self.lock().timers.len()
    }
}
