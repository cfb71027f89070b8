//! [`StoreParts`]: a whole [`Store`](super::Store) assembled from one implementation per
//! capability. The delegation is written here once, so a decorator (encryption, a test's
//! failing store) implements only the capability it changes:
//!
//! ```
//! # use sessiond_core::store::{Store, StoreParts};
//! # use std::sync::Arc;
//! # fn demo(backend: Arc<dyn Store>, drafts: Arc<dyn sessiond_core::store::DraftStore>) {
//! let store: Arc<dyn Store> = Arc::new(backend.split().with_drafts(drafts));
//! # let _ = store;
//! # }
//! ```

use super::{
    AttachmentPut, AuditStore, ByteStream, CreateOutcome, DraftMove, DraftStore, Expiring, Expiry,
    IdempotencyRecord, MergeRule, Result, SessionFilter, SessionStore, SnapshotPut, SnapshotStore,
    Touch,
};
use crate::audit::{AuditEvent, AuditFilter};
use crate::clock::Timestamp;
use crate::draft::{AttachmentMeta, Draft, DraftWrite};
use crate::outbox::DeadLetter;
use crate::quota::{DataUsage, SnapshotUsage};
use crate::session::{EndReason, Principal, Session};
use crate::snapshot::{Snapshot, SnapshotWrite};
use crate::token::{Handle, TokenHash};
use std::sync::Arc;

/// One implementation per capability; itself a [`Store`](super::Store) by delegation.
/// Build it with [`Store::split`](super::Store::split) and replace parts with the
/// `with_*` methods.
#[derive(Clone)]
pub struct StoreParts {
    pub sessions: Arc<dyn SessionStore>,
    pub audit: Arc<dyn AuditStore>,
    pub drafts: Arc<dyn DraftStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
}

impl StoreParts {
    pub fn with_sessions(mut self, sessions: Arc<dyn SessionStore>) -> Self {
        self.sessions = sessions;
        self
    }

    pub fn with_audit(mut self, audit: Arc<dyn AuditStore>) -> Self {
        self.audit = audit;
        self
    }

    pub fn with_drafts(mut self, drafts: Arc<dyn DraftStore>) -> Self {
        self.drafts = drafts;
        self
    }

    pub fn with_snapshots(mut self, snapshots: Arc<dyn SnapshotStore>) -> Self {
        self.snapshots = snapshots;
        self
    }
}

#[async_trait::async_trait]
impl SessionStore for StoreParts {
    async fn ping(&self) -> Result<()> {
        self.sessions.ping().await
    }
    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
        audit: &[AuditEvent],
    ) -> Result<CreateOutcome> {
        self.sessions.create_session(s, idem, audit).await
    }
    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>> {
        self.sessions.get_session(handle).await
    }
    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>> {
        self.sessions.get_session_by_token(hash).await
    }
    async fn update_session(
        &self,
        s: &Session,
        expected_token: &TokenHash,
        audit: &[AuditEvent],
        draft_move: Option<&DraftMove>,
    ) -> Result<bool> {
        self.sessions
            .update_session(s, expected_token, audit, draft_move)
            .await
    }
    async fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool> {
        self.sessions.touch_session(t, audit).await
    }
    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()> {
        self.sessions.touch_sessions(touches).await
    }
    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        self.sessions.end_session(handle, reason, now, audit).await
    }
    async fn expire_session(
        &self,
        seen: &Expiry,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        self.sessions.expire_session(seen, reason, now, audit).await
    }
    async fn expire_sessions(
        &self,
        batch: Vec<Expiring>,
        now: Timestamp,
    ) -> Vec<Result<Option<Session>>> {
        self.sessions.expire_sessions(batch, now).await
    }
    fn time_ordered_handles(&self) -> bool {
        self.sessions.time_ordered_handles()
    }
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        self.sessions.list_sessions(filter).await
    }
    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>> {
        self.sessions.due_sessions(now, limit).await
    }
    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize> {
        self.sessions
            .purge_ended_sessions(ended_before, limit)
            .await
    }
    async fn count_active_sessions(&self) -> Result<u64> {
        self.sessions.count_active_sessions().await
    }
    async fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>> {
        self.sessions.pending_draft_moves(limit).await
    }
    async fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool> {
        self.sessions.finish_draft_move(m, audit).await
    }
    async fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        self.sessions.claim_once(key, until, now).await
    }
    async fn purge_claims(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.sessions.purge_claims(now, limit).await
    }
    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>> {
        self.sessions.get_data(handle, key).await
    }
    async fn put_data(
        &self,
        handle: &Handle,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<bool> {
        self.sessions.put_data(handle, key, value).await
    }
    async fn put_data_if(
        &self,
        handle: &Handle,
        key: &str,
        expected: Option<&serde_json::Value>,
        value: &serde_json::Value,
    ) -> Result<bool> {
        self.sessions
            .put_data_if(handle, key, expected, value)
            .await
    }
    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool> {
        self.sessions.delete_data(handle, key).await
    }
    async fn data_usage(&self, handle: &Handle, key: &str) -> Result<DataUsage> {
        self.sessions.data_usage(handle, key).await
    }
}

#[async_trait::async_trait]
impl AuditStore for StoreParts {
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        self.audit.append_audit(e).await
    }
    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.audit.query_audit(f).await
    }
    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.audit.purge_audit(before, limit).await
    }

    async fn acquire_outbox_lease(
        &self,
        holder: &str,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<u64>> {
        self.audit.acquire_outbox_lease(holder, now, ttl_ms).await
    }
    async fn release_outbox_lease(&self, holder: &str) -> Result<()> {
        self.audit.release_outbox_lease(holder).await
    }
    async fn outbox_cursor(&self, endpoint: &str) -> Result<Option<i64>> {
        self.audit.outbox_cursor(endpoint).await
    }
    async fn advance_outbox_cursor(
        &self,
        endpoint: &str,
        fence: u64,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool> {
        self.audit
            .advance_outbox_cursor(endpoint, fence, from, to)
            .await
    }
    async fn put_dead_letter(&self, d: &DeadLetter) -> Result<()> {
        self.audit.put_dead_letter(d).await
    }
    async fn get_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<Option<DeadLetter>> {
        self.audit.get_dead_letter(endpoint, event_id).await
    }
    async fn list_dead_letters(
        &self,
        endpoint: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.audit
            .list_dead_letters(endpoint, after_id, limit)
            .await
    }
    async fn delete_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<bool> {
        self.audit.delete_dead_letter(endpoint, event_id).await
    }
    async fn count_dead_letters(&self, endpoint: &str) -> Result<u64> {
        self.audit.count_dead_letters(endpoint).await
    }
}

#[async_trait::async_trait]
impl DraftStore for StoreParts {
    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        self.drafts.get_draft(p, conversation).await
    }
    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        self.drafts.list_drafts(p).await
    }
    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.drafts
            .put_draft_text(p, conversation, expected_seq, text, now)
            .await
    }
    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.drafts
            .delete_draft(p, conversation, expected_seq, now)
            .await
    }
    async fn put_attachment(&self, put: AttachmentPut<'_>, body: ByteStream) -> Result<DraftWrite> {
        self.drafts.put_attachment(put, body).await
    }
    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>> {
        self.drafts.get_attachment(p, conversation, name).await
    }
    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.drafts
            .delete_attachment(p, conversation, expected_seq, name, text, now)
            .await
    }
    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
        merge: &MergeRule,
    ) -> Result<Vec<String>> {
        self.drafts.move_drafts(from, to, now, merge).await
    }
    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.drafts.purge_drafts(before, limit).await
    }
}

#[async_trait::async_trait]
impl SnapshotStore for StoreParts {
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        self.snapshots.get_snapshot(room).await
    }
    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<SnapshotWrite> {
        self.snapshots.put_snapshot(put).await
    }
    async fn snapshot_usage(&self, by: &str, except_room: &str) -> Result<SnapshotUsage> {
        self.snapshots.snapshot_usage(by, except_room).await
    }
    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        self.snapshots.retain_snapshot(room, until).await
    }
    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.snapshots.purge_snapshots(now, limit).await
    }
}
