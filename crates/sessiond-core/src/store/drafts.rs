//! The draft capability: per-principal drafts with their streamed attachments.

use super::{ByteStream, Result};
use crate::clock::Timestamp;
use crate::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use crate::session::Principal;
use std::sync::{Arc, OnceLock};

/// How [`DraftStore::move_drafts`] builds the user's draft for one conversation: from the
/// user's current row (live or tombstone; `None` when there is none), the anonymous
/// draft, the new principal and the time. [`plain_merge`] is the rule itself; an
/// encrypting decorator wraps it to open values under their old owner and re-seal them
/// under the new one. Called inside the store's atomic step, possibly more than once
/// (retries), so it must have no side effects; an error aborts the move of that
/// conversation and leaves it with the anonymous principal.
pub type MergeRule =
    Arc<dyn Fn(Option<&Draft>, &Draft, &Principal, Timestamp) -> Result<Draft> + Send + Sync>;

/// The sign-in rule, unchanged: [`crate::draft::move_on_sign_in`].
pub fn plain_merge() -> MergeRule {
    Arc::new(|user, anon, to, now| Ok(crate::draft::move_on_sign_in(user, anon, to, now)))
}

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
    /// When `Some`, the draft's text becomes this in the same commit (an encrypting
    /// decorator re-seals the text for the seq this write creates); `None` keeps it.
    pub text: Option<&'a str>,
    /// When `Some`, the `sha256` recorded is the one this cell holds once the body has
    /// ended, not the hash of the bytes the store received: an encrypting decorator
    /// fills it with the plaintext's hash while it streams. Left empty, the store's own
    /// hash is kept.
    pub content_sha256: Option<&'a OnceLock<String>>,
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
    /// Removes the attachment if `expected_seq` is current. `text`: as
    /// [`AttachmentPut::text`], applied in the same commit when the attachment exists.
    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<DraftWrite>;
    /// Moves every live draft of `from` to `to` (sign-in), each built by `merge` (usually
    /// [`plain_merge`]: [`crate::draft::merge_on_sign_in`] where both have one). Returns
    /// the conversations moved.
    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
        merge: &MergeRule,
    ) -> Result<Vec<String>>;
    /// Purges drafts and tombstones last changed before `before`, with their bytes.
    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize>;
}
