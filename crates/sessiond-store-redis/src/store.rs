//! The [`Store`] implementation: each method maps to one operation module
//! (sessions, drafts, snapshots, audit) and its error into the core's terms.

use crate::RedisStore;
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use sessiond_core::snapshot::{Snapshot, SnapshotWrite};
use sessiond_core::store::{ByteStream, CreateOutcome, IdempotencyRecord, Result, SessionFilter};
use sessiond_core::{EndReason, Handle, Principal, Session, Store, Timestamp, TokenHash};

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<()> {
        let _: String = self.q(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome> {
        Ok(self.create_session_impl(s, idem).await?)
    }

    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>> {
        Ok(self.get_session_impl(handle).await?)
    }

    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>> {
        Ok(self.get_session_by_token_impl(hash).await?)
    }

    async fn update_session(&self, s: &Session, expected_token: &TokenHash) -> Result<bool> {
        Ok(self.update_session_impl(s, expected_token).await?)
    }

    async fn touch_session(
        &self,
        handle: &Handle,
        last_activity_at: Timestamp,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool> {
        Ok(self
            .touch_session_impl(handle, last_activity_at, last_seen_at, idle_expires_at)
            .await?)
    }

    async fn touch_sessions(
        &self,
        touches: &[(Handle, Timestamp, Timestamp, Timestamp)],
    ) -> Result<()> {
        Ok(self.touch_sessions_impl(touches).await?)
    }

    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Session>> {
        Ok(self.end_session_impl(handle, reason, now).await?)
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        Ok(self.list_sessions_impl(filter).await?)
    }

    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>> {
        Ok(self.due_sessions_impl(now, limit).await?)
    }

    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize> {
        Ok(self.purge_ended_sessions_impl(ended_before, limit).await?)
    }

    async fn count_active_sessions(&self) -> Result<u64> {
        Ok(self.count_active_sessions_impl().await?)
    }

    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.get_data_impl(handle, key).await?)
    }

    async fn put_data(
        &self,
        handle: &Handle,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<bool> {
        Ok(self.put_data_impl(handle, key, value).await?)
    }

    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool> {
        Ok(self.delete_data_impl(handle, key).await?)
    }

    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        Ok(self.append_audit_impl(e).await?)
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        Ok(self.query_audit_impl(f).await?)
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        Ok(self.purge_audit_impl(before, limit).await?)
    }

    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        Ok(self.get_draft_impl(p, conversation).await?)
    }

    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        Ok(self.list_drafts_impl(p).await?)
    }

    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.put_draft_text_impl(p, conversation, expected_seq, text, now)
            .await
    }

    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.delete_draft_impl(p, conversation, expected_seq, now)
            .await
    }

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
    ) -> Result<DraftWrite> {
        self.put_attachment_impl(
            p,
            conversation,
            expected_seq,
            name,
            content_type,
            body,
            limits,
            now,
        )
        .await
    }

    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>> {
        self.get_attachment_impl(p, conversation, name).await
    }

    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.delete_attachment_impl(p, conversation, expected_seq, name, now)
            .await
    }

    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
    ) -> Result<Vec<String>> {
        Ok(self.move_drafts_impl(from, to, now).await?)
    }

    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        Ok(self.purge_drafts_impl(before, limit).await?)
    }

    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        Ok(self.get_snapshot_impl(room).await?)
    }

    async fn put_snapshot(
        &self,
        room: &str,
        expected_version: u64,
        data: &[u8],
        content_type: &str,
        by: Option<&str>,
        retain_until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<SnapshotWrite> {
        Ok(self
            .put_snapshot_impl(
                room,
                expected_version,
                data,
                content_type,
                by,
                retain_until,
                now,
            )
            .await?)
    }

    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        Ok(self.retain_snapshot_impl(room, until).await?)
    }

    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        Ok(self.purge_snapshots_impl(now, limit).await?)
    }
}
