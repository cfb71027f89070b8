//! The session capability: session records, their data bag, idempotency records and
//! one-time claims. Every lifecycle write takes the audit events that record it and
//! commits them with the change, or neither: a crash or a failed append never leaves a
//! start, sign-in, renewal or ending without its record.

use super::Result;
use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::quota::DataUsage;
use crate::session::{EndReason, Principal, Session};
use crate::token::{Handle, TokenHash};

/// A sign-in's pending move of an anonymous principal's drafts to the signed-in
/// principal. Recorded with the rotation that makes it due (see
/// [`SessionStore::update_session`]), so a failed or interrupted move is finished later
/// (moving is idempotent), and removed with [`SessionStore::finish_draft_move`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DraftMove {
    /// The session that signed in.
    pub handle: Handle,
    pub from: Principal,
    pub to: Principal,
    /// When the sign-in recorded it.
    pub at: Timestamp,
}

/// The idempotency record of a create: which session a key made, for which request.
/// The key itself is never stored, only its SHA-256; the token is stored sealed with a
/// key derived from the idempotency key, so only a caller holding the key can get it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// SHA-256 of the idempotency key, hex.
    pub key_hash: String,
    /// SHA-256 of the request that used the key (so a different request gives 422).
    pub fingerprint: String,
    pub handle: Handle,
    /// The session token sealed (AEAD) under a key derived from the idempotency key.
    pub sealed_token: Vec<u8>,
    pub created_at: Timestamp,
}

/// Outcome of [`SessionStore::create_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was already used; nothing was written.
    Existing(IdempotencyRecord),
}

/// Session listing filter, ordered by handle and paged by `after`.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub principal: Option<String>,
    pub role: Option<String>,
    /// Only active sessions (the default for admin listings).
    pub active_only: bool,
    pub after: Option<Handle>,
    pub limit: usize,
}

impl SessionFilter {
    pub fn matches(&self, s: &Session) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| s.principal.as_str() == p)
            && self.role.as_ref().is_none_or(|r| &s.role == r)
            && (!self.active_only || s.is_active())
            && self.after.is_none_or(|h| s.handle > h)
    }
}

/// The record a timeout was decided on (see [`SessionStore::expire_session`]): the
/// fields that activity, a renewal, a sign-in or a rotation change, and that the ending's
/// audit event is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub handle: Handle,
    pub token_hash: TokenHash,
    pub last_activity_at: Timestamp,
    pub idle_expires_at: Timestamp,
    pub absolute_expires_at: Timestamp,
}

impl Expiry {
    /// Those fields of `s` as they stand.
    pub fn of(s: &Session) -> Expiry {
        Expiry {
            handle: s.handle,
            token_hash: s.token_hash,
            last_activity_at: s.last_activity_at,
            idle_expires_at: s.idle_expires_at,
            absolute_expires_at: s.absolute_expires_at,
        }
    }

    /// Whether `s` is active, still carries these fields and is due at `now` (its
    /// earliest deadline is at or before it): the condition of
    /// [`SessionStore::expire_session`], for stores that check it in Rust.
    pub fn holds_for(&self, s: &Session, now: Timestamp) -> bool {
        s.is_active()
            && Expiry::of(s) == *self
            && self.idle_expires_at.min(self.absolute_expires_at) <= now
    }
}

/// One timeout of a batch (see [`SessionStore::expire_sessions`]): the copy it was
/// decided on, its reason, and the events written with the ending.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiring {
    pub seen: Expiry,
    pub reason: EndReason,
    pub audit: Vec<AuditEvent>,
}

/// Recorded activity of one session (see [`SessionStore::touch_session`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub handle: Handle,
    pub last_activity_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub idle_expires_at: Timestamp,
    /// Where the session was last seen from (client IP after trusted proxies); `None`
    /// keeps what is stored. Written as given (the latest flush wins), not ordered.
    pub client_ip: Option<String>,
    /// The session's latest user agent; `None` keeps what is stored.
    pub user_agent: Option<std::sync::Arc<str>>,
}

impl Touch {
    /// The activity fields of `s` as they stand.
    pub fn of(s: &Session) -> Touch {
        Touch {
            handle: s.handle,
            last_activity_at: s.last_activity_at,
            last_seen_at: s.last_seen_at,
            idle_expires_at: s.idle_expires_at,
            client_ip: s.client_ip.clone(),
            user_agent: s.user_agent.clone(),
        }
    }
}

/// Sessions, their data bag, idempotency records and one-time claims.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Cheap round trip proving the store answers (readiness).
    async fn ping(&self) -> Result<()>;

    /// Whether new sessions should get handles that lead with their creation time
    /// ([`crate::Handle::generate_at`]) rather than 96 random bits. A store keeping
    /// sessions in B-trees by handle says yes: a group of new sessions then lands in a few
    /// leaves. A store partitioning by a handle's leading bytes (Redis buckets) needs them
    /// random. Either kind of handle is valid in every store.
    fn time_ordered_handles(&self) -> bool {
        false
    }

    /// Inserts a new session and appends `audit`, together. With an idempotency record,
    /// the insert happens only if the key hash is unused; otherwise the existing record
    /// is returned and nothing is written (whatever the concurrency).
    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
        audit: &[AuditEvent],
    ) -> Result<CreateOutcome>;
    /// Primary-key lookup of the session alone (ended sessions included).
    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>>;
    /// Lookup by token hash (ended sessions included, so callers can say why it ended).
    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>>;
    /// Replaces the session record if it is still active and its token hash is still
    /// `expected_token` (sign-in, rotation), appending `audit` and recording
    /// `draft_move` (pending until [`SessionStore::finish_draft_move`]) with it. Returns
    /// whether it applied; when not, nothing is written.
    async fn update_session(
        &self,
        s: &Session,
        expected_token: &TokenHash,
        audit: &[AuditEvent],
        draft_move: Option<&DraftMove>,
    ) -> Result<bool>;
    /// Records activity: moves `last_activity_at`, `last_seen_at` and `idle_expires_at`
    /// forward only (max with what is stored) and sets the client IP and user agent that
    /// are given (`Some`), if the session is still active, and then
    /// appends `audit` with it (a renewal); nothing is written if it is not.
    async fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool>;
    /// Applies many [`SessionStore::touch_session`]s (unaudited activity) so the server
    /// can flush coalesced activity in one round trip. Backends with transactions
    /// override it to write the batch at once; ended or missing sessions are skipped.
    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()> {
        for t in touches {
            self.touch_session(t, &[]).await?;
        }
        Ok(())
    }
    /// Ends an active session, appending `audit` with the ending. Exactly one caller gets
    /// `Some` (the ended record) and has its events written; every other concurrent or
    /// later call gets `None` and writes nothing.
    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>>;
    /// [`SessionStore::end_session`] for a timeout decided on `seen`: ends the session
    /// only if the stored record still is what the caller decided on, i.e. active, with
    /// `seen`'s token, last activity and deadlines, and due at `now` (its earliest
    /// deadline at or before `now`). Otherwise (activity, a renewal, a sign-in or a
    /// rotation written meanwhile, by any node, or already ended) it is `None` and writes
    /// nothing, like a lost race; the caller re-reads the record and decides again. So a
    /// node may expire a session on its own possibly stale copy without reading the
    /// store first: the check and the ending are one step.
    async fn expire_session(
        &self,
        seen: &Expiry,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>>;
    /// [`SessionStore::expire_session`] of each item of `batch` at `now`: one answer per
    /// item, in order, each what that call would have answered (a failed item leaves
    /// the others done). The scheduler ends a burst of deadlines in batches, so a
    /// backend can end them under one lock or in one round trip; the default makes the
    /// calls concurrently (a backend that groups concurrent writes, as SQLite's writer
    /// does, then commits them together). A session named twice ends once, by either
    /// item (concurrent calls race for it); the scheduler never names one twice.
    async fn expire_sessions(
        &self,
        batch: Vec<Expiring>,
        now: Timestamp,
    ) -> Vec<Result<Option<Session>>> {
        futures_util::future::join_all(
            batch
                .iter()
                .map(|e| self.expire_session(&e.seen, e.reason, now, &e.audit)),
        )
        .await
    }
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>>;
    /// Active sessions whose earliest deadline is `<= now`, at most `limit`.
    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>>;
    /// Removes sessions ended before `ended_before` with their data and idempotency
    /// records; returns how many.
    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize>;
    async fn count_active_sessions(&self) -> Result<u64>;

    // ---- pending draft moves (recorded by update_session)

    /// Pending draft moves, oldest first, at most `limit` (0: all).
    async fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>>;
    /// Removes a pending move once its drafts were moved, appending `audit` with the
    /// removal. Returns whether it was still pending (false: another caller finished it).
    async fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool>;

    // ---- one-time claims (a sign-in ticket's `jti` is accepted once) ----

    /// Records `key` as used until `until` (ms since the epoch) unless a claim of it is
    /// still standing at `now`: exactly one caller, on any node, gets `true`; every other
    /// concurrent or later call before `until` gets `false`. A claim past its `until`
    /// counts as gone (whether or not a purge removed it yet).
    async fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool>;
    /// Removes claims whose `until` is `<= now`, at most `limit`; returns how many.
    /// Backends whose claims expire by themselves (Redis TTLs) may return 0.
    async fn purge_claims(&self, now: Timestamp, limit: usize) -> Result<usize>;

    // ---- session data (one JSON value per key) ----

    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>>;
    /// Writes one value; returns false (and writes nothing) if the session is not active.
    async fn put_data(&self, handle: &Handle, key: &str, value: &serde_json::Value)
        -> Result<bool>;
    /// Writes one value only if the stored one is still `expected` (`None`: no value)
    /// and the session is active: a compare-and-set, decided inside the store, so of
    /// concurrent writers that read the same value exactly one wins. Returns whether it
    /// applied; a caller that lost rereads and retries (see the tower-sessions store's
    /// merge rule).
    async fn put_data_if(
        &self,
        handle: &Handle,
        key: &str,
        expected: Option<&serde_json::Value>,
        value: &serde_json::Value,
    ) -> Result<bool>;
    /// Returns whether a value existed.
    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool>;
    /// What the session's data holds apart from `key` (keys and bytes, each entry
    /// counted as its key's length plus its value's compact JSON), and what `key` holds,
    /// in one read, so a quota check sees a consistent picture.
    async fn data_usage(&self, handle: &Handle, key: &str) -> Result<DataUsage>;
}
