//! The storage contract every backend implements (memory, SQLite, Redis).
//!
//! Every method is atomic on its own; conditional writes (idempotent create, token CAS,
//! draft seq, snapshot version, ending) are decided inside the store so that concurrent
//! callers, on one node or many, see exactly one winner. The conformance suite in
//! `sessiond-testkit` holds each backend to this contract.

use crate::audit::{AuditEvent, AuditFilter};
use crate::clock::Timestamp;
use crate::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use crate::error::StoreError;
use crate::session::{EndReason, Principal, Session};
use crate::snapshot::{Snapshot, SnapshotWrite};
use crate::token::{Handle, TokenHash};
use bytes::Bytes;
use std::pin::Pin;

/// A streamed body (attachment upload or download). Bounded by the caller's limits.
pub type ByteStream =
    Pin<Box<dyn futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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

/// Outcome of [`Store::create_session`].
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

/// The storage contract. See the module docs for the atomicity promise.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip proving the store answers (readiness).
    async fn ping(&self) -> Result<()>;

    // ---- sessions ----

    /// Inserts a new session. With an idempotency record, the insert happens only if
    /// the key hash is unused; otherwise the existing record is returned and nothing
    /// is written (whatever the concurrency).
    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome>;
    /// Primary-key lookup of the session alone (ended sessions included).
    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>>;
    /// Lookup by token hash (ended sessions included, so callers can say why it ended).
    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>>;
    /// Replaces the session record if it is still active and its token hash is still
    /// `expected_token` (sign-in, rotation). Returns whether it applied.
    async fn update_session(&self, s: &Session, expected_token: &TokenHash) -> Result<bool>;
    /// Records activity: moves `last_activity_at`, `last_seen_at` and `idle_expires_at`
    /// forward only (max with what is stored), if the session is still active.
    async fn touch_session(
        &self,
        handle: &Handle,
        last_activity_at: Timestamp,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool>;
    /// Applies many [`Store::touch_session`]s, each
    /// `(handle, last_activity_at, last_seen_at, idle_expires_at)`, so the server can
    /// flush coalesced activity in one round trip. Backends with transactions override
    /// it to write the batch at once; ended or missing sessions are skipped.
    async fn touch_sessions(
        &self,
        touches: &[(Handle, Timestamp, Timestamp, Timestamp)],
    ) -> Result<()> {
        for (h, activity, seen, idle) in touches {
            self.touch_session(h, *activity, *seen, *idle).await?;
        }
        Ok(())
    }
    /// Ends an active session. Exactly one caller gets `Some` (the ended record); every
    /// other concurrent or later call gets `None`.
    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Session>>;
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>>;
    /// Active sessions whose earliest deadline is `<= now`, at most `limit`.
    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>>;
    /// Removes sessions ended before `ended_before` with their data and idempotency
    /// records; returns how many.
    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize>;
    async fn count_active_sessions(&self) -> Result<u64>;

    // ---- session data (one JSON value per key) ----

    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>>;
    /// Writes one value; returns false (and writes nothing) if the session is not active.
    async fn put_data(&self, handle: &Handle, key: &str, value: &serde_json::Value)
        -> Result<bool>;
    /// Returns whether a value existed.
    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool>;

    // ---- audit ----

    /// Appends an event and returns its id (monotonic per store).
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64>;
    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>>;
    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize>;

    // ---- drafts ----

    /// The draft (or tombstone) for (principal, conversation).
    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>>;
    /// The principal's live drafts (no tombstones), by conversation.
    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>>;
    /// Sets the text if `expected_seq` equals the current seq (0 when none). A write that
    /// leaves no text and no attachments becomes a tombstone.
    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite>;
    /// Deletes (tombstones) the draft and its attachments if `expected_seq` is current.
    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite>;
    /// Streams an attachment in and, if `expected_seq` is current when the body is
    /// complete, adds or replaces it under `name`. Enforces the limits while streaming;
    /// on any failure nothing is visible and no bytes are left behind.
    #[allow(clippy::too_many_arguments)]
    async fn put_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        content_type: &str,
        body: ByteStream,
        limits: AttachmentLimits,
        now: Timestamp,
    ) -> Result<DraftWrite>;
    /// The attachment's metadata and bytes, if the live draft has it.
    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>>;
    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        now: Timestamp,
    ) -> Result<DraftWrite>;
    /// Moves every live draft of `from` to `to` (sign-in), merging with
    /// [`crate::draft::merge_on_sign_in`] where both have one. Returns the conversations moved.
    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
    ) -> Result<Vec<String>>;
    /// Purges drafts and tombstones last changed before `before`, with their bytes.
    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize>;

    // ---- snapshots ----

    /// The room's snapshot with its data.
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>>;
    /// Stores `data` as version `expected_version + 1` if `expected_version` is current
    /// (0 when none). Atomic: readers see the old or the new snapshot, never a mix.
    #[allow(clippy::too_many_arguments)]
    async fn put_snapshot(
        &self,
        room: &str,
        expected_version: u64,
        data: &[u8],
        content_type: &str,
        by: Option<&str>,
        retain_until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<SnapshotWrite>;
    /// Sets when the snapshot may be purged (`None`: keep while the room is in use).
    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()>;
    /// Purges snapshots whose `retain_until` is `<= now`.
    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize>;
}
