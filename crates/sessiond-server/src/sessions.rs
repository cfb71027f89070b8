//! The session service: the hot path (validate a token, record activity) served from
//! memory with coalesced store writes, the ending path, and the expiry scheduler.
//!
//! Reads come from an in-memory cache keyed by token hash; activity updates the cached
//! record and marks it dirty; a flusher writes dirty records at most once per
//! `flush_interval` in one batch. A SIGKILL can therefore lose at most the last
//! `flush_interval` of idle-deadline extension, never a session or its data (creation,
//! sign-in, data, endings are written through). A clean shutdown flushes everything.

use crate::bus::{Bus, Event};
use crate::error::{ApiError, ApiResult};
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::lifecycle::{self, ClientInfo};
use sessiond_core::policy::{Policies, Policy};
use sessiond_core::store::Touch;
use sessiond_core::timer::DeadlineQueue;
use sessiond_core::{Clock, EndReason, Handle, Session, Store, Timestamp, Token, TokenHash};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A cached session and whether its activity still has to reach the store.
struct Entry {
    session: Session,
    dirty: bool,
    /// Whether the expiry warning for the current idle deadline was already sent.
    warned: bool,
    /// When the record was last read from (or written to) the store; in cluster mode an
    /// entry older than [`ClusterMode::revalidate_ms`] is re-read before it is trusted.
    validated_at: Timestamp,
}

/// Cluster mode (Redis store, several nodes): other nodes change the same sessions, so
/// the cache is only trusted briefly and timeouts are re-checked against the store.
#[derive(Debug, Clone, Copy)]
pub struct ClusterMode {
    /// A cached entry older than this is re-read from the store before use, which
    /// bounds how long a session revoked or renewed elsewhere is seen stale here.
    pub revalidate_ms: i64,
    /// Activity on a session whose idle deadline is closer than this is written at once
    /// instead of coalesced, so another node never sees a stored deadline pass while
    /// newer activity waits in this node's cache.
    pub urgent_ms: i64,
}

/// State behind one mutex: no `.await` happens while it is held, so a std mutex is
/// right (and cheaper than tokio's).
#[derive(Default)]
struct Cache {
    by_handle: HashMap<Handle, Entry>,
    by_token: HashMap<TokenHash, Handle>,
    /// Next scheduler event per session: the warning time, then the deadline.
    timers: DeadlineQueue<Handle>,
}

pub struct SessionService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policies: Policies,
    bus: Bus,
    cache: Mutex<Cache>,
    capacity: usize,
    /// Set once when the store is shared by several nodes.
    cluster: std::sync::OnceLock<ClusterMode>,
}

/// How often ended sessions and old audit events are purged.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Rows per purge call, and calls per run: one run stays short; the rest waits.
const RETENTION_BATCH: usize = 1000;
const RETENTION_MAX_BATCHES: usize = 50;

/// What the scheduler does with a session whose timer fired.
enum Due {
    Warn(Box<Session>),
    End(Handle, EndReason),
    Reschedule,
}

impl SessionService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        policies: Policies,
        bus: Bus,
        capacity: usize,
    ) -> Self {
        SessionService {
            store,
            clock,
            policies,
            bus,
            cache: Mutex::new(Cache::default()),
            capacity: capacity.max(16),
            cluster: std::sync::OnceLock::new(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
    pub fn policies(&self) -> &Policies {
        &self.policies
    }
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The policy of a role; unknown roles (a role removed from config) fall back to the default.
    pub fn policy(&self, role: &str) -> &Policy {
        self.policies
            .get(role)
            .or_else(|| self.policies.get(&self.policies.default_role))
            .expect("validated config has the default role")
    }

    /// Switches on cluster mode (see [`ClusterMode`]); `flush_every` is the activity
    /// flush interval, which sizes the urgent-write window.
    pub fn enable_cluster_mode(&self, flush_every: Duration) {
        let flush_ms = i64::try_from(flush_every.as_millis()).unwrap_or(i64::MAX / 4);
        let _ = self.cluster.set(ClusterMode {
            revalidate_ms: 1000,
            urgent_ms: 2 * flush_ms + 1000,
        });
    }

    pub fn cluster_mode(&self) -> Option<ClusterMode> {
        self.cluster.get().copied()
    }

    /// Whether a cached entry must be re-read before use (cluster mode only).
    fn is_stale(&self, e: &Entry, now: Timestamp) -> bool {
        self.cluster
            .get()
            .is_some_and(|m| now.saturating_sub(e.validated_at) > m.revalidate_ms)
    }

    /// Marks a cached session for re-reading (another node changed it).
    pub fn invalidate(&self, handle: &Handle) {
        if let Some(e) = self.lock().by_handle.get_mut(handle) {
            e.validated_at = Timestamp::MIN;
        }
    }

    /// Marks every cached session for re-reading (events from other nodes may be lost).
    pub fn invalidate_all(&self) {
        for e in self.lock().by_handle.values_mut() {
            e.validated_at = Timestamp::MIN;
        }
    }

    /// Re-reads a session from the store into the cache, keeping this node's unwritten
    /// activity (touches only move deadlines forward). Returns the merged record.
    pub async fn refresh(&self, handle: &Handle) -> ApiResult<Option<Session>> {
        let fresh = self.store.get_session(handle).await?;
        let mut c = self.lock();
        let Some(mut fresh) = fresh else {
            if let Some(e) = c.by_handle.remove(handle) {
                c.by_token.remove(&e.session.token_hash);
            }
            c.timers.cancel(handle);
            return Ok(None);
        };
        let (dirty, warned) = match c.by_handle.get(handle) {
            Some(e) if fresh.is_active() => {
                let old = &e.session;
                let dirty = e.dirty && old.last_activity_at > fresh.last_activity_at;
                if dirty {
                    fresh.last_activity_at = fresh.last_activity_at.max(old.last_activity_at);
                    fresh.last_seen_at = fresh.last_seen_at.max(old.last_seen_at);
                    fresh.idle_expires_at = fresh.idle_expires_at.max(old.idle_expires_at);
                }
                // A deadline moved by another node makes the warning sent for the old one moot.
                (
                    dirty,
                    e.warned && fresh.idle_expires_at <= old.idle_expires_at,
                )
            }
            Some(e) if e.session.is_active() => {
                // Ended elsewhere and the event may never come: tell this node's connections.
                self.bus.deliver_local(Event::SessionEnded {
                    handle: *handle,
                    principal: fresh.principal.to_string(),
                    reason: fresh.end_reason.unwrap_or(EndReason::Revoked),
                });
                (false, false)
            }
            _ => (false, false),
        };
        self.insert_locked(&mut c, fresh.clone(), dirty);
        if let Some(e) = c.by_handle.get_mut(handle) {
            e.warned = warned;
        }
        if fresh.is_active() {
            let t = self.timer_for(&fresh, warned);
            c.timers.schedule(*handle, t);
        }
        Ok(Some(fresh))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Next timer point of a session: its warning time until warned, then its deadline.
    fn timer_for(&self, s: &Session, warned: bool) -> Timestamp {
        let deadline = lifecycle::next_deadline(s);
        if warned {
            deadline
        } else {
            deadline - self.policy(&s.role).warn_ms()
        }
    }

    /// Puts a session into the cache and the timer queue (write-through callers).
    pub fn remember(&self, s: Session) {
        let mut c = self.lock();
        self.insert_locked(&mut c, s, false);
    }

    fn insert_locked(&self, c: &mut Cache, s: Session, dirty: bool) {
        if s.is_active() {
            let t = self.timer_for(&s, false);
            c.timers.schedule(s.handle, t);
        } else {
            c.timers.cancel(&s.handle);
        }
        if c.by_handle.len() >= self.capacity && !c.by_handle.contains_key(&s.handle) {
            // Evict clean entries; the timer keeps their handle, the store has their state.
            let victims: Vec<Handle> = c
                .by_handle
                .iter()
                .filter(|(_, e)| !e.dirty)
                .take(self.capacity / 16 + 1)
                .map(|(h, _)| *h)
                .collect();
            for h in victims {
                if let Some(e) = c.by_handle.remove(&h) {
                    c.by_token.remove(&e.session.token_hash);
                }
            }
        }
        if let Some(old) = c.by_handle.get(&s.handle) {
            if !old.session.token_hash.ct_eq(&s.token_hash) {
                let old_hash = old.session.token_hash;
                c.by_token.remove(&old_hash);
            }
        }
        c.by_token.insert(s.token_hash, s.handle);
        let validated_at = self.now();
        c.by_handle.insert(
            s.handle,
            Entry {
                session: s,
                dirty,
                warned: false,
                validated_at,
            },
        );
    }

    /// The cached record of a session, if this node holds it (includes activity not yet
    /// flushed to the store).
    pub fn cached(&self, handle: &Handle) -> Option<Session> {
        self.lock().by_handle.get(handle).map(|e| e.session.clone())
    }

    /// Drops a session from the cache (another node changed it; the store is the truth).
    pub fn forget(&self, handle: &Handle) {
        let mut c = self.lock();
        if let Some(e) = c.by_handle.remove(handle) {
            c.by_token.remove(&e.session.token_hash);
        }
    }

    /// Loads every active session's deadline into the timer (start-up, after a restart).
    pub async fn warm_start(&self) -> Result<usize, ApiError> {
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

    /// Looks a live session up by its token: cache first, then the store. An ended or
    /// overdue session is `SessionEnded` with its reason; an unknown token `Unauthenticated`.
    pub async fn authenticate(&self, token: &str, touch: bool) -> ApiResult<Session> {
        let token = Token::parse(token).ok_or(ApiError::Unauthenticated)?;
        let hash = token.hash();
        // Cluster mode: a stale entry, or one that looks overdue, is re-read once first.
        let mut refreshed = false;
        loop {
            let now = self.now();
            let mut stale = None;
            let cached = {
                let mut c = self.lock();
                let handle = c.by_token.get(&hash).copied();
                match handle.and_then(|h| c.by_handle.get_mut(&h).map(|e| (h, e))) {
                    Some((h, e)) if !refreshed && self.is_stale(e, now) => {
                        stale = Some(h);
                        None
                    }
                    Some((_, e)) if e.session.token_hash.ct_eq(&hash) => {
                        Some(self.check_and_touch(e, now, touch))
                    }
                    _ => None,
                }
            };
            if let Some(h) = stale {
                self.refresh(&h).await?;
                refreshed = true;
                continue;
            }
            let result = match cached {
                Some(r) => r,
                None => {
                    let s = self
                        .store
                        .get_session_by_token(&hash)
                        .await?
                        .ok_or(ApiError::Unauthenticated)?;
                    if !s.token_hash.ct_eq(&hash) {
                        return Err(ApiError::Unauthenticated);
                    }
                    let mut c = self.lock();
                    self.insert_locked(&mut c, s.clone(), false);
                    let e = c.by_handle.get_mut(&s.handle).expect("just inserted");
                    self.check_and_touch(e, now, touch)
                }
            };
            return match result {
                Ok((s, renewed, urgent)) => {
                    if !s.is_active() {
                        return Err(ApiError::SessionEnded(
                            s.end_reason.unwrap_or(EndReason::Revoked),
                        ));
                    }
                    if renewed {
                        self.publish_renewed(&s);
                    }
                    if touch {
                        let mut c = self.lock();
                        let warned = c.by_handle.get(&s.handle).is_some_and(|e| e.warned);
                        let t = self.timer_for(&s, warned);
                        c.timers.schedule(s.handle, t);
                    }
                    if urgent {
                        self.flush_urgent(&s.handle).await;
                    }
                    Ok(s)
                }
                Err((handle, reason)) => {
                    if self.cluster.get().is_some() && !refreshed {
                        // Another node may have moved the deadline: ask the store first.
                        self.refresh(&handle).await?;
                        refreshed = true;
                        continue;
                    }
                    self.end(&handle, reason).await?;
                    Err(ApiError::SessionEnded(reason))
                }
            };
        }
    }

    /// Cluster mode: writes activity near the deadline at once (see [`ClusterMode::urgent_ms`]).
    /// A failure leaves the entry dirty for the regular flusher.
    async fn flush_urgent(&self, handle: &Handle) {
        if let Err(e) = self.flush_one(handle).await {
            tracing::debug!(handle = %handle, error = %e, "urgent activity write deferred");
        }
    }

    /// Checks an entry and records activity on it. `Ok((session, renewed_inside_warning))`
    /// or the ending that must happen now.
    /// The third value asks for an immediate write (cluster mode, deadline near).
    #[allow(clippy::type_complexity)]
    fn check_and_touch(
        &self,
        e: &mut Entry,
        now: Timestamp,
        touch: bool,
    ) -> Result<(Session, bool, bool), (Handle, EndReason)> {
        if !e.session.is_active() {
            return Ok((e.session.clone(), false, false));
        }
        if let Some(reason) = lifecycle::due_reason(&e.session, now) {
            return Err((e.session.handle, reason));
        }
        let mut renewed = false;
        let mut urgent = false;
        if touch {
            let policy = self.policy(&e.session.role).clone();
            let before = e.session.idle_expires_at;
            if lifecycle::touch(&mut e.session, now, &policy) {
                urgent = self
                    .cluster
                    .get()
                    .is_some_and(|m| before - now < m.urgent_ms);
                e.dirty = true;
                if e.warned {
                    e.warned = false;
                    renewed = true;
                }
            }
        }
        Ok((e.session.clone(), renewed, urgent))
    }

    /// Records activity for a session known by handle (WebSocket `activity`).
    pub async fn touch_handle(&self, handle: &Handle) -> ApiResult<Session> {
        let mut refreshed = false;
        loop {
            let now = self.now();
            let stale = !refreshed
                && self
                    .lock()
                    .by_handle
                    .get(handle)
                    .is_some_and(|e| self.is_stale(e, now));
            if stale {
                self.refresh(handle).await?;
                refreshed = true;
                continue;
            }
            let r = {
                let mut c = self.lock();
                c.by_handle
                    .get_mut(handle)
                    .map(|e| self.check_and_touch(e, now, true))
            };
            let r = match r {
                Some(r) => r,
                None => {
                    let s = self
                        .store
                        .get_session(handle)
                        .await?
                        .ok_or(ApiError::Unauthenticated)?;
                    let mut c = self.lock();
                    self.insert_locked(&mut c, s, false);
                    let e = c.by_handle.get_mut(handle).expect("just inserted");
                    self.check_and_touch(e, now, true)
                }
            };
            return match r {
                Ok((s, renewed, urgent)) => {
                    if !s.is_active() {
                        return Err(ApiError::SessionEnded(
                            s.end_reason.unwrap_or(EndReason::Revoked),
                        ));
                    }
                    {
                        let mut c = self.lock();
                        let warned = c.by_handle.get(handle).is_some_and(|e| e.warned);
                        let t = self.timer_for(&s, warned);
                        c.timers.schedule(s.handle, t);
                    }
                    if renewed {
                        self.publish_renewed(&s);
                    }
                    if urgent {
                        self.flush_urgent(&s.handle).await;
                    }
                    Ok(s)
                }
                Err((h, reason)) => {
                    if self.cluster.get().is_some() && !refreshed {
                        self.refresh(&h).await?;
                        refreshed = true;
                        continue;
                    }
                    self.end(&h, reason).await?;
                    Err(ApiError::SessionEnded(reason))
                }
            };
        }
    }

    /// Explicit renewal ("stay online"): activity that is always announced and audited.
    pub async fn renew(&self, handle: &Handle) -> ApiResult<Session> {
        let s = self.touch_handle(handle).await?;
        {
            let mut c = self.lock();
            if let Some(e) = c.by_handle.get_mut(handle) {
                e.warned = false;
            }
            let t = self.timer_for(&s, false);
            c.timers.schedule(s.handle, t);
        }
        self.flush_one(handle).await?;
        self.audit(AuditEvent::for_session(self.now(), AuditKind::Renewed, &s))
            .await;
        self.publish_renewed(&s);
        Ok(s)
    }

    fn publish_renewed(&self, s: &Session) {
        self.bus.publish(Event::SessionRenewed {
            handle: s.handle,
            idle_expires_at: s.idle_expires_at,
            absolute_expires_at: s.absolute_expires_at,
        });
    }

    /// The current record of a session by handle (cache, then store).
    pub async fn get(&self, handle: &Handle) -> ApiResult<Option<Session>> {
        if let Some(e) = self.lock().by_handle.get(handle) {
            return Ok(Some(e.session.clone()));
        }
        Ok(self.store.get_session(handle).await?)
    }

    /// Ends a session once (store CAS); the winner audits and tells every connection.
    /// Returns the ended record if this call ended it.
    pub async fn end(&self, handle: &Handle, reason: EndReason) -> ApiResult<Option<Session>> {
        let now = self.now();
        // Write pending activity first so the audit's last activity is exact.
        self.flush_one(handle).await?;
        let ended = self.store.end_session(handle, reason, now).await?;
        match &ended {
            Some(s) => {
                {
                    let mut c = self.lock();
                    c.timers.cancel(handle);
                    if let Some(e) = c.by_handle.get_mut(handle) {
                        e.session = s.clone();
                        e.dirty = false;
                    }
                }
                let ev = AuditEvent::for_session(now, AuditKind::Ended, s).with_reason(reason.as_str()).with_detail(
                    serde_json::json!({"kept": ["drafts", "room_snapshots"], "purged": ["session_data_after_retention"]}),
                );
                self.audit(ev).await;
                metrics::counter!("sessiond_sessions_ended_total", "reason" => reason.as_str())
                    .increment(1);
                tracing::info!(handle = %s.handle, principal = %s.principal, reason = reason.as_str(), "session ended");
                self.bus.publish(Event::SessionEnded {
                    handle: *handle,
                    principal: s.principal.to_string(),
                    reason,
                });
            }
            None => {
                // Someone else (another request, node or the scheduler) ended it first.
                self.lock().timers.cancel(handle);
                if let Some(s) = self.store.get_session(handle).await? {
                    if self.cluster.get().is_some() && !s.is_active() {
                        // The winner may be another node whose event never arrives
                        // (pub/sub is at-most-once): tell this node's connections too.
                        self.bus.deliver_local(Event::SessionEnded {
                            handle: *handle,
                            principal: s.principal.to_string(),
                            reason: s.end_reason.unwrap_or(reason),
                        });
                    }
                    let mut c = self.lock();
                    if let Some(e) = c.by_handle.get_mut(handle) {
                        e.session = s;
                        e.dirty = false;
                    }
                }
            }
        }
        Ok(ended)
    }

    /// Appends an audit event; a failure is logged, not fatal to the request that caused it.
    pub async fn audit(&self, e: AuditEvent) {
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::error!(error = %err, kind = e.kind.as_str(), "audit append failed");
            metrics::counter!("sessiond_audit_errors_total").increment(1);
        }
    }

    /// Writes one session's pending activity now.
    pub async fn flush_one(&self, handle: &Handle) -> ApiResult<()> {
        let pending = {
            let mut c = self.lock();
            match c.by_handle.get_mut(handle) {
                Some(e) if e.dirty => {
                    e.dirty = false;
                    Some(e.session.clone())
                }
                _ => None,
            }
        };
        if let Some(s) = pending {
            if let Err(err) = self.store.touch_session(&Touch::of(&s)).await {
                self.mark_dirty(&s.handle);
                return Err(err.into());
            }
        }
        Ok(())
    }

    fn mark_dirty(&self, handle: &Handle) {
        if let Some(e) = self.lock().by_handle.get_mut(handle) {
            e.dirty = true;
        }
    }

    /// Writes all pending activity in one batch. On failure the entries stay dirty.
    pub async fn flush(&self) -> ApiResult<usize> {
        let batch: Vec<Touch> = {
            let mut c = self.lock();
            c.by_handle
                .values_mut()
                .filter(|e| e.dirty)
                .map(|e| {
                    e.dirty = false;
                    Touch::of(&e.session)
                })
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        if let Err(err) = self.store.touch_sessions(&batch).await {
            for t in &batch {
                self.mark_dirty(&t.handle);
            }
            return Err(err.into());
        }
        metrics::counter!("sessiond_activity_flushed_total").increment(batch.len() as u64);
        Ok(batch.len())
    }

    /// One scheduler pass: fires warnings and endings that are due. Returns how many.
    pub async fn tick(&self) -> usize {
        let now = self.now();
        let due = self.lock().timers.pop_due(now, 10_000);
        let mut fired = 0;
        for (handle, _) in due {
            if self.cluster.get().is_some() {
                // Another node may have moved or ended it: decide on the store's record.
                if let Err(err) = self.refresh(&handle).await {
                    tracing::warn!(handle = %handle, error = %err, "expiry check deferred");
                    self.lock().timers.schedule(handle, now + 500);
                    continue;
                }
            }
            let action = {
                let mut c = self.lock();
                match c.by_handle.get_mut(&handle) {
                    Some(e) if !e.session.is_active() => Due::Reschedule,
                    Some(e) => match lifecycle::due_reason(&e.session, now) {
                        Some(r) => Due::End(handle, r),
                        None if !e.warned && now >= self.timer_for(&e.session, false) => {
                            e.warned = true;
                            Due::Warn(Box::new(e.session.clone()))
                        }
                        None => {
                            let t = self.timer_for(&e.session, e.warned);
                            c.timers.schedule(handle, t);
                            continue;
                        }
                    },
                    None => Due::Reschedule,
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
                    fired += 1;
                }
                Due::End(h, r) => match self.end(&h, r).await {
                    Ok(_) => fired += 1,
                    Err(err) => {
                        // Store unreachable: never expire blindly; retry shortly.
                        tracing::warn!(handle = %h, error = %err, "expiry deferred");
                        self.lock().timers.schedule(h, now + 500);
                    }
                },
                Due::Reschedule => {
                    // Not cached: read the truth from the store and decide again.
                    match self.store.get_session(&handle).await {
                        Ok(Some(s)) if s.is_active() => {
                            let mut c = self.lock();
                            self.insert_locked(&mut c, s.clone(), false);
                            if lifecycle::due_reason(&s, now).is_some() {
                                c.timers.schedule(handle, now);
                            }
                        }
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(handle = %handle, error = %err, "expiry check deferred");
                            self.lock().timers.schedule(handle, now + 500);
                        }
                    }
                }
            }
        }
        fired
    }

    /// Picks up sessions whose stored deadline passed but that this node's timer does not
    /// hold (created by another node, or evicted): a safety net polled every second.
    pub async fn reconcile_due(&self) -> ApiResult<usize> {
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

    /// Runs the scheduler, flusher and reconciler until `shutdown`, then flushes.
    pub async fn run_background(
        self: Arc<Self>,
        flush_every: Duration,
        shutdown: tokio_util_shutdown::Signal,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut flush = tokio::time::interval(flush_every);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut reconcile = tokio::time::interval(Duration::from_secs(1));
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shutdown = shutdown;
        loop {
            tokio::select! {
                _ = tick.tick() => { self.tick().await; }
                _ = flush.tick() => {
                    if let Err(e) = self.flush().await { tracing::warn!(error = %e, "activity flush failed"); }
                }
                _ = reconcile.tick() => {
                    if let Err(e) = self.reconcile_due().await { tracing::debug!(error = %e, "reconcile failed"); }
                }
                _ = shutdown.wait() => break,
            }
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final activity flush failed");
        }
    }

    /// One bounded retention pass: sessions that ended before `retention` ago (with
    /// their data and idempotency records) and audit events older than that.
    pub async fn purge_retention(&self, retention: Duration) -> ApiResult<(usize, usize)> {
        let before = self
            .now()
            .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let (mut sessions, mut events) = (0, 0);
        for _ in 0..RETENTION_MAX_BATCHES {
            let n = self
                .store
                .purge_ended_sessions(before, RETENTION_BATCH)
                .await?;
            sessions += n;
            if n < RETENTION_BATCH {
                break;
            }
        }
        for _ in 0..RETENTION_MAX_BATCHES {
            let n = self.store.purge_audit(before, RETENTION_BATCH).await?;
            events += n;
            if n < RETENTION_BATCH {
                break;
            }
        }
        if sessions + events > 0 {
            tracing::info!(sessions, events, "retention purge");
        }
        metrics::counter!("sessiond_sessions_purged_total").increment(sessions as u64);
        metrics::counter!("sessiond_audit_purged_total").increment(events as u64);
        Ok((sessions, events))
    }

    /// Runs [`SessionService::purge_retention`] now and every [`RETENTION_INTERVAL`]
    /// until `shutdown`.
    pub async fn run_retention(
        self: Arc<Self>,
        retention: Duration,
        shutdown: tokio_util_shutdown::Signal,
    ) {
        let mut every = tokio::time::interval(RETENTION_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shutdown = shutdown;
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = self.purge_retention(retention).await {
                        tracing::warn!(error = %e, "retention purge failed; retrying next run");
                    }
                }
                _ = shutdown.wait() => break,
            }
        }
    }

    /// Creates a fresh anonymous session of the default role (write-through).
    pub fn new_session(&self, client: &ClientInfo) -> (Session, Token) {
        let role = self.policies.default_role.clone();
        let policy = self.policy(&role).clone();
        lifecycle::new_session(self.now(), &role, &policy, client)
    }
}

/// A cloneable shutdown signal passed down explicitly (no globals).
pub mod tokio_util_shutdown {
    use tokio::sync::watch;

    /// Resolves once shutdown has been requested.
    #[derive(Clone)]
    pub struct Signal(pub watch::Receiver<bool>);

    impl Signal {
        pub async fn wait(&mut self) {
            while !*self.0.borrow() {
                if self.0.changed().await.is_err() {
                    return;
                }
            }
        }
        pub fn is_set(&self) -> bool {
            *self.0.borrow()
        }
    }

    /// The sending half: `trigger()` starts the shutdown.
    pub struct Trigger(pub watch::Sender<bool>);

    impl Trigger {
        pub fn trigger(&self) {
            let _ = self.0.send(true);
        }
    }

    pub fn channel() -> (Trigger, Signal) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Signal(rx))
    }
}
