//! The session service: the one owner of the session lifecycle. Creation (idempotent),
//! sign-in, lookups with activity, renewal, session data, endings and expiry all go
//! through [`SessionService`]; it is the only writer of sessions. It speaks
//! [`SessionError`]; the HTTP and WebSocket edges each map that once.
//!
//! Reads come from an in-memory cache keyed by token hash; activity updates the cached
//! record and marks it dirty; a flusher writes dirty records at most once per
//! `flush_interval` in one batch. A SIGKILL can therefore lose at most the last
//! `flush_interval` of idle-deadline extension, never a session or its data (creation,
//! sign-in, data, endings are written through). A clean shutdown flushes everything.
//! Every lifecycle write hands its audit events to the store, which commits them with
//! the change or fails both: no start, sign-in, renewal or ending goes unrecorded.
//!
//! Layout: [`cache`] (records, token index, timers), [`lookup`] (the hot path),
//! [`create`] (get-or-create, sign-in), [`scheduler`] (warnings and expiry),
//! [`flusher`] (coalesced activity writes), [`revalidate`] (cluster mode),
//! [`retention`] (purging ended sessions), [`moves`] (sign-in draft moves that are
//! retried until done), [`background`] (the loops and their shutdown).

mod background;
mod cache;
mod create;
mod devices;
mod error;
mod flusher;
mod lookup;
mod moves;
mod retention;
mod revalidate;
mod scheduler;
mod types;

#[cfg(test)]
mod tests;

pub use error::{SessionError, SessionResult};
pub use types::{
    ClusterMode, Credential, Idempotency, Obtained, Seen, SignIn, SignedIn, TicketUse,
    RETENTION_INTERVAL,
};

use crate::bus::{Bus, Event};
use crate::idempotency::IdempotencyKeys;
use crate::keyed_lock::KeyedLocks;
use cache::Cache;
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::policy::{Policies, Policy};
use sessiond_core::store::{DraftMove, Expiry};
use sessiond_core::{Clock, EndReason, Handle, Session, Store, Timestamp};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

/// Replay window of an idempotent create when none is configured (`idempotency.replay_window`).
pub const DEFAULT_REPLAY_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// A fresh secret for a service built without one (single node, tests).
fn random_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut s);
    s
}

/// Metric handles of the ending path, looked up once: `counter!` and `histogram!` look
/// their key up in the recorder's registry (hashing the name and labels) at every call,
/// which a million expiries pay a million times.
struct Meters {
    /// `sessiond_sessions_ended_total` by reason, in [`Meters::REASONS`] order.
    ended: [metrics::Counter; 5],
    lateness: metrics::Histogram,
}

impl Meters {
    const REASONS: [EndReason; 5] = [
        EndReason::SignedOut,
        EndReason::IdleTimeout,
        EndReason::AbsoluteTimeout,
        EndReason::Revoked,
        EndReason::EndedByUser,
    ];

    fn new() -> Self {
        Meters {
            ended: Self::REASONS.map(
                |r| metrics::counter!("sessiond_sessions_ended_total", "reason" => r.as_str()),
            ),
            lateness: metrics::histogram!("sessiond_expiry_lateness_seconds"),
        }
    }

    fn ended(&self, reason: EndReason) -> &metrics::Counter {
        let i = Self::REASONS.iter().position(|r| *r == reason);
        &self.ended[i.expect("every reason is listed")]
    }
}

pub struct SessionService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policies: Policies,
    bus: Bus,
    cache: Mutex<Cache>,
    /// Set once when the store is shared by several nodes.
    cluster: OnceLock<ClusterMode>,
    /// Server secret and replay window of idempotent creates.
    idempotency: IdempotencyKeys,
    /// Renewals of one session within this long (ms) after one that was written through
    /// are coalesced: see [`SessionService::renew`]. 0: every renewal is written.
    renew_window_ms: Timestamp,
    /// Session-data writes of one session, one at a time: the quota check and the write
    /// it admits cannot interleave with another write of that session on this node.
    data_locks: KeyedLocks,
    /// Sign-in draft moves that failed on this node, by session: retried on the
    /// session's next request (the store's record drives the background sweep).
    pending_moves: Mutex<HashMap<Handle, DraftMove>>,
    /// Whether `pending_moves` holds anything, kept under its lock: every authenticated
    /// request checks for a pending move, and almost always there is none, so the hot
    /// path reads this instead of taking a process-wide lock.
    any_pending_move: AtomicBool,
    /// Taken at the first ending, once the server has installed its recorder (a handle
    /// taken before would stay a no-op).
    meters: OnceLock<Meters>,
}

impl SessionService {
    /// A service over `store` keeping at most `capacity` sessions in memory.
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
            cache: Mutex::new(Cache::new(capacity)),
            cluster: OnceLock::new(),
            idempotency: IdempotencyKeys::new(random_secret(), DEFAULT_REPLAY_WINDOW),
            renew_window_ms: 0,
            data_locks: KeyedLocks::new(),
            pending_moves: Mutex::new(HashMap::new()),
            any_pending_move: AtomicBool::new(false),
            meters: OnceLock::new(),
        }
    }

    /// Coalesces renewals like activity (the server passes `hot_path.flush_interval`):
    /// within `window` after a renewal that was written and audited, further ones only
    /// move the cached deadline, which the flusher writes.
    pub fn with_renew_window(mut self, window: std::time::Duration) -> Self {
        self.renew_window_ms = Timestamp::try_from(window.as_millis()).unwrap_or(Timestamp::MAX);
        self
    }

    /// Uses the server secret and replay window of the configuration for idempotent
    /// creates (without it: a per-process secret and [`DEFAULT_REPLAY_WINDOW`]).
    pub fn with_idempotency(mut self, keys: IdempotencyKeys) -> Self {
        self.idempotency = keys;
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The policy of a role; unknown roles (a role removed from config) fall back to the default.
    pub fn policy(&self, role: &str) -> &Policy {
        self.policies
            .get(role)
            .or_else(|| self.policies.get(&self.policies.default_role))
            .expect("validated config has the default role")
    }

    fn meters(&self) -> &Meters {
        self.meters.get_or_init(Meters::new)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a written-through session into the cache and the timer queue (unless the
    /// cache already holds a newer state of it).
    fn remember(&self, s: Session) {
        let timer = self.timer_if_active(&s);
        let now = self.now();
        let _ = self.lock().insert(s, false, timer, now);
    }

    /// The cached record of a session, if this node holds it (includes activity not yet
    /// flushed to the store).
    pub fn cached(&self, handle: &Handle) -> Option<Session> {
        self.lock().by_handle.get(handle).map(|e| e.session.clone())
    }

    /// The current record of a session by handle (cache, then store), ended ones included.
    pub async fn get(&self, handle: &Handle) -> SessionResult<Option<Session>> {
        if let Some(e) = self.lock().by_handle.get(handle) {
            return Ok(Some(e.session.clone()));
        }
        Ok(self.store.get_session(handle).await?)
    }

    /// Explicit renewal ("stay online"): activity that is always announced. The first
    /// renewal is written through and audited; further ones within the renew window
    /// (`hot_path.flush_interval`) are coalesced like activity: the cached deadline moves
    /// and is announced, the flusher writes it, and no audit row is added. So a client
    /// repeating `renew` costs at most one synced write and one audit row per window.
    /// `Rotated` if `who`'s token no longer names the session.
    pub async fn renew(&self, who: &Credential) -> SessionResult<Session> {
        if self.cluster.get().is_some() {
            // Another node may have rotated the token a moment ago: a renewal (a write)
            // is decided on the store's record, not on this node's cache.
            self.refresh(&who.handle).await?;
        }
        let s = self.touch(who).await?;
        let handle = &who.handle;
        let now = self.now();
        let (coalesced, previous) = {
            let mut c = self.lock();
            let mut coalesced = false;
            let mut previous = 0;
            if let Some(e) = c.by_handle.get_mut(handle) {
                e.warned = false;
                previous = e.renewed_at;
                coalesced = self.renew_window_ms > 0
                    && e.renewed_at > 0
                    && now.saturating_sub(e.renewed_at) < self.renew_window_ms;
                if !coalesced {
                    e.renewed_at = now;
                }
            }
            let t = self.timer_for(&s, false);
            c.schedule(s.handle, t);
            (coalesced, previous)
        };
        if !coalesced {
            let renewed = [AuditEvent::for_session(now, AuditKind::Renewed, &s)];
            if let Err(e) = self.flush_one_audited(handle, &renewed).await {
                // Not written: the next renewal is not coalesced with this one.
                if let Some(e) = self.lock().by_handle.get_mut(handle) {
                    e.renewed_at = previous;
                }
                return Err(e);
            }
        }
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

    /// The user signs out: the session ends with `signed_out`.
    pub async fn sign_out(&self, handle: &Handle) -> SessionResult<()> {
        self.end(handle, EndReason::SignedOut).await.map(drop)
    }

    /// An operator revokes a session: `NotFound` if the handle names none; a session that
    /// had already ended stays as it was.
    pub async fn revoke(&self, handle: &Handle) -> SessionResult<()> {
        self.revoke_by(handle, None).await
    }

    /// [`SessionService::revoke`] by the API key `key` (its id), recorded in the audit
    /// event's detail as `"key"`.
    pub async fn revoke_by(&self, handle: &Handle, key: Option<&str>) -> SessionResult<()> {
        self.get(handle).await?.ok_or(SessionError::NotFound)?;
        self.end_by(handle, EndReason::Revoked, key).await.map(drop)
    }

    /// Ends a session once (store CAS, with its audit event); the winner tells every
    /// connection. Returns the ended record if this call ended it.
    pub async fn end(&self, handle: &Handle, reason: EndReason) -> SessionResult<Option<Session>> {
        self.end_by(handle, reason, None).await
    }

    /// [`SessionService::end`] on behalf of the API key `key` (its id, in the audit
    /// event's detail as `"key"`).
    pub async fn end_by(
        &self,
        handle: &Handle,
        reason: EndReason,
        key: Option<&str>,
    ) -> SessionResult<Option<Session>> {
        self.end_with(handle, reason, key.map(|k| ("key", k))).await
    }

    /// [`SessionService::end`] recording who asked in the audit event's detail, as
    /// `(field, value)`: `("key", api key id)` or `("by", the ending session's handle)`.
    pub(crate) async fn end_with(
        &self,
        handle: &Handle,
        reason: EndReason,
        who: Option<(&str, &str)>,
    ) -> SessionResult<Option<Session>> {
        let now = self.now();
        // Write pending activity first so the audit's last activity is exact.
        self.flush_one(handle).await?;
        // Taken from the cached record under the lock: a copy of the whole record (as
        // `get` makes) was a tenth of an expiry's cost. The rest is built outside it.
        let cached = self.lock().by_handle.get(handle).map(|e| {
            let cur = &e.session;
            cur.is_active()
                .then(|| AuditEvent::for_session(now, AuditKind::Ended, cur))
        });
        let started = match cached {
            Some(event) => event,
            None => match self.store.get_session(handle).await? {
                Some(cur) if cur.is_active() => {
                    Some(AuditEvent::for_session(now, AuditKind::Ended, &cur))
                }
                _ => None,
            },
        };
        let audit = ending_audit(started, reason, who);
        let ended = self.store.end_session(handle, reason, now, &audit).await?;
        match &ended {
            Some(s) => self.ended(s, reason),
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
                    if let Some(e) = c
                        .by_handle
                        .get_mut(handle)
                        .filter(|e| !s.is_older_than(&e.session))
                    {
                        e.session = s;
                        e.dirty = false;
                    }
                }
            }
        }
        Ok(ended)
    }

    /// Cluster mode: the scheduler's timeout ending, decided on this node's cached copy
    /// `seen` without reading the store first. The store ends it only if its record is
    /// still that copy and due ([`sessiond_core::SessionStore::expire_session`]), so
    /// activity, a renewal, a sign-in or a rotation on another node since makes it a
    /// no-op; the record is then re-read (as the refresh before every firing used to
    /// do) and the timer follows it. Returns the ended record if this call ended it.
    pub(super) async fn expire(
        &self,
        seen: &Expiry,
        reason: EndReason,
    ) -> SessionResult<Option<Session>> {
        let handle = &seen.handle;
        let now = self.now();
        // Write pending activity first so the audit's last activity is exact.
        self.flush_one(handle).await?;
        let started = self.lock().by_handle.get(handle).and_then(|e| {
            let cur = &e.session;
            (cur.is_active() && Expiry::of(cur) == *seen)
                .then(|| AuditEvent::for_session(now, AuditKind::Ended, cur))
        });
        let ended = match started {
            Some(event) => {
                let audit = ending_audit(Some(event), reason, None);
                self.store.expire_session(seen, reason, now, &audit).await?
            }
            // Changed in the cache since the scheduler looked: decide again.
            None => None,
        };
        match &ended {
            Some(s) => self.ended(s, reason),
            None => self.expiry_refused(handle).await?,
        }
        Ok(ended)
    }

    /// After the store refused a timeout ending (ended elsewhere, or no longer the
    /// record the timeout was decided on): the refresh tells this node's connections of
    /// an ending elsewhere (whose event may never arrive) and reschedules a live session.
    pub(super) async fn expiry_refused(&self, handle: &Handle) -> SessionResult<()> {
        if let Some(s) = self.refresh(handle).await?.filter(Session::is_active) {
            let mut c = self.lock();
            if c.timers.deadline(handle).is_none() {
                // The cache held a newer record, so the refresh left the timer.
                let warned = c.by_handle.get(handle).is_some_and(|e| e.warned);
                let t = self.timer_for(&s, warned);
                c.schedule(*handle, t);
            }
        }
        Ok(())
    }

    /// What every node-side ending does once the store has ended `s`: the cache, the
    /// meters, the log and the event.
    fn ended(&self, s: &Session, reason: EndReason) {
        self.ended_all(vec![(s.clone(), reason)]);
    }

    /// [`SessionService::ended`] of several sessions, each with its reason; their cache
    /// entries take the ended records (moved, not copied) in one locking.
    pub(super) fn ended_all(&self, ended: Vec<(Session, EndReason)>) {
        let told: Vec<(Handle, String, EndReason)> = ended
            .iter()
            .map(|(s, reason)| (s.handle, s.principal.to_string(), *reason))
            .collect();
        // The records they replace are dropped once the lock is released.
        let mut replaced = Vec::with_capacity(ended.len());
        {
            let mut c = self.lock();
            for (s, _) in ended {
                c.timers.cancel(&s.handle);
                if let Some(e) = c.by_handle.get_mut(&s.handle) {
                    replaced.push(std::mem::replace(&mut e.session, s));
                    e.dirty = false;
                }
            }
        }
        drop(replaced);
        for (handle, principal, reason) in told {
            self.meters().ended(reason).increment(1);
            tracing::info!(handle = %handle, principal = %principal, reason = reason.as_str(), "session ended");
            self.bus.publish(Event::SessionEnded {
                handle,
                principal,
                reason,
            });
        }
    }

    /// Appends an event that records no session change (a lost connection, a purge
    /// summary); a failure is logged, not fatal to what caused it. Lifecycle changes
    /// never come here: their events are written with them.
    pub async fn audit(&self, e: AuditEvent) {
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::error!(error = %err, kind = e.kind.as_str(), "audit append failed");
            metrics::counter!("sessiond_audit_errors_total").increment(1);
        }
    }

    /// One session-data value of a live session (`None`: no such key).
    pub async fn get_data(
        &self,
        handle: &Handle,
        key: &str,
    ) -> SessionResult<Option<serde_json::Value>> {
        Ok(self.store.get_data(handle, key).await?)
    }

    /// Stores one session-data value of `session` (as authenticated); the last write
    /// wins. Within the quotas of its role (smaller while anonymous): a write that would
    /// take the session past `data_keys_per_session` or `data_bytes_per_session` is
    /// `QuotaExceeded` and writes nothing. The check and the write hold the session's
    /// lock, so concurrent writes on this node cannot overshoot together; across nodes
    /// (Redis) each node may admit one concurrent write on the same picture, so the
    /// overshoot is bounded by one value per other node writing at that instant. A
    /// session that ended under the request is `Ended` with its stored reason.
    pub async fn put_data(
        &self,
        session: &Session,
        key: &str,
        value: &serde_json::Value,
    ) -> SessionResult<()> {
        let handle = &session.handle;
        let quotas = *self
            .policy(&session.role)
            .quotas_for(session.principal.is_anonymous());
        let entry_bytes = (key.len() + value.to_string().len()) as u64;
        let _held = self.data_locks.lock(&handle.to_string()).await;
        let usage = self.store.data_usage(handle, key).await?;
        if let Err(e) = quotas.check_data(usage, entry_bytes) {
            metrics::counter!("sessiond_quota_refusals_total", "limit" => e.limit).increment(1);
            return Err(e.into());
        }
        self.put_server_data(handle, key, value).await
    }

    /// Stores one value the server itself keeps in a session's data (admin room grants,
    /// under the reserved `sessiond:` prefix): no quota is checked, though the entry
    /// counts toward the session's usage like any other.
    pub async fn put_server_data(
        &self,
        handle: &Handle,
        key: &str,
        value: &serde_json::Value,
    ) -> SessionResult<()> {
        if self.store.put_data(handle, key, value).await? {
            return Ok(());
        }
        Err(match self.get(handle).await {
            Ok(Some(cur)) => cur
                .end_reason
                .map(|reason| SessionError::Ended { reason })
                .unwrap_or(SessionError::Unauthenticated),
            _ => SessionError::Unauthenticated,
        })
    }

    /// Removes one session-data value; `NotFound` if there was none.
    pub async fn delete_data(&self, handle: &Handle, key: &str) -> SessionResult<()> {
        if self.store.delete_data(handle, key).await? {
            Ok(())
        } else {
            Err(SessionError::NotFound)
        }
    }
}

/// The audit of an ending: the `ended` event of the record as it stood (none if it had
/// already ended), with the reason, what is kept and purged, and who asked (`(field,
/// value)`: `("key", api key id)` or `("by", the ending session's handle)`).
pub(super) fn ending_audit(
    started: Option<AuditEvent>,
    reason: EndReason,
    who: Option<(&str, &str)>,
) -> Vec<AuditEvent> {
    started
        .map(|event| {
            let mut detail = serde_json::json!({
                "kept": ["drafts", "room_snapshots"],
                "purged": ["session_data_after_retention"],
            });
            if let Some((field, value)) = who {
                detail[field] = value.into();
            }
            event.with_reason(reason.as_str()).with_detail(detail)
        })
        .into_iter()
        .collect()
}
