//! The draft capability: per-principal drafts with their streamed attachments.

use super::{ByteStream, Result};
use crate::clock::Timestamp;
use crate::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use crate::session::Principal;

/// Everything [`DraftStore::put_attachment`] needs but the body.
#[derive(Debug, Clone, Copy)]
pub struct AttachmentPut<'a> {
    pub principal: &'a Principal,
    pub conversation: &'a str,
    /// The draft seq the write expects (0 when there is no draft).
    pub expected_seq: u64,
    pub name: &'a str,
    pub content_type: &'a str,
    pub limits: AttachmentLimits,
    pub now: Timestamp,
}

/// Drafts and their attachments.
#[async_trait::async_trait]
pub trait DraftStore: Send + Sync + 'static {
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
    async fn put_attachment(&self, put: AttachmentPut<'_>, body: ByteStream) -> Result<DraftWrite>;
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
}
