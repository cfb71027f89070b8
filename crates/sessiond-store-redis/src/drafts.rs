//! Drafts and their attachments, per principal: seq compare-and-set, streamed uploads
//! under size and quota limits, sign-in moves and retention purges.
//!
//! Every write reads the current draft, computes the new one with the core's rules and
//! commits it with the `DRAFT_CAS` script, which applies it only if the seq is still
//! the one read. Since every write bumps the seq, "seq unchanged" means "draft
//! unchanged", and the read-compute-commit is as good as one atomic step.

use crate::error::RedisError;
use crate::keys::{dec, Keys};
use crate::scripts::{APPEND_BLOB, DEL_IF_EQ, DRAFT_CAS, ZREM_IF_LE};
use crate::{cap, RedisStore};
use bytes::Bytes;
use futures::StreamExt;
use sessiond_core::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use sessiond_core::store::ByteStream;
use sessiond_core::token::random_id;
use sessiond_core::{Principal, StoreError, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use sessiond_core::store::{AttachmentPut, DraftStore, MergeRule, Result};

type R<T> = Result<T, RedisError>;

/// Upload bytes buffered before one APPEND: bounds memory per upload and round trips.
const UPLOAD_FLUSH: usize = 256 * 1024;
/// Chunks an attachment is streamed back in.
const READ_CHUNK: usize = 64 * 1024;
/// How long a sign-in move holds the principal's move lock at most (a crashed mover
/// must not block sign-in forever).
const MOVE_LOCK_MS: u64 = 30_000;
/// Retries of a move's write into the target when the target changes meanwhile.
const MOVE_RETRIES: usize = 8;
/// Bound on candidate passes in one purge call.
const MAX_PASSES: usize = 16;
/// Candidates fetched per purge pass.
const PURGE_BATCH: usize = 256;

fn seq_of(d: Option<&Draft>) -> u64 {
    d.map_or(0, |d| d.seq)
}

fn live_bytes(d: Option<&Draft>) -> u64 {
    d.filter(|d| !d.deleted).map_or(0, Draft::attachment_bytes)
}

fn tombstone(p: &Principal, conversation: &str, seq: u64, now: Timestamp) -> Draft {
    Draft {
        principal: p.clone(),
        conversation: conversation.to_owned(),
        text: String::new(),
        seq,
        updated_at: now,
        deleted: true,
        attachments: Vec::new(),
    }
}

fn parse_draft(json: &str) -> R<Draft> {
    Ok(serde_json::from_str(json)?)
}

/// What the draft compare-and-set did.
enum Cas {
    Applied,
    /// The seq moved; carries the current draft.
    Stale(Option<Draft>),
    OverQuota,
}

/// One draft commit: the new state and the blob keys it frees or adopts.
struct Commit<'a> {
    expected_seq: u64,
    /// `None` removes the draft and its seq entirely (purge).
    new: Option<&'a Draft>,
    delta_bytes: i64,
    quota: Option<u64>,
    delete_blobs: Vec<String>,
    persist_blobs: Vec<String>,
}

impl RedisStore {
    async fn read_draft(&self, p: &Principal, conversation: &str) -> R<Option<Draft>> {
        let mut c = redis::cmd("HGET");
        c.arg(self.keys.drafts(p)).arg(conversation);
        match self.q::<Option<String>>(&c).await? {
            Some(j) => Ok(Some(parse_draft(&j)?)),
            None => Ok(None),
        }
    }

    fn blob_keys<'a>(
        &self,
        p: &Principal,
        atts: impl IntoIterator<Item = &'a AttachmentMeta>,
    ) -> Vec<String> {
        atts.into_iter()
            .map(|a| self.keys.blob(p, &a.blob_id))
            .collect()
    }

    async fn draft_cas(&self, p: &Principal, conversation: &str, c: Commit<'_>) -> R<Cas> {
        let json = match c.new {
            Some(d) => serde_json::to_string(d)?,
            None => String::new(),
        };
        let mut inv = DRAFT_CAS.prepare_invoke();
        inv.key(self.keys.drafts(p))
            .key(self.keys.draft_seqs(p))
            .key(self.keys.held_bytes(p));
        for k in c.delete_blobs.iter().chain(&c.persist_blobs) {
            inv.key(k);
        }
        inv.arg(conversation)
            .arg(c.expected_seq)
            .arg(json)
            .arg(c.new.map_or(0, |d| d.seq))
            .arg(c.delta_bytes)
            .arg(c.quota.map_or(-1, |q| q.min(i64::MAX as u64) as i64))
            .arg(c.delete_blobs.len());
        let reply: Vec<redis::Value> = self.eval(&inv).await?;
        let code = match reply.first() {
            Some(redis::Value::Int(n)) => *n,
            other => {
                return Err(RedisError::Corrupt(format!(
                    "unexpected draft script reply {other:?}"
                )))
            }
        };
        match code {
            1 => {
                self.replicated(&[&self.keys.drafts(p)]).await?;
                Ok(Cas::Applied)
            }
            2 => Ok(Cas::OverQuota),
            _ => {
                let current = match reply.get(1) {
                    Some(redis::Value::BulkString(b)) if !b.is_empty() => Some(parse_draft(
                        std::str::from_utf8(b).map_err(|e| RedisError::Corrupt(e.to_string()))?,
                    )?),
                    _ => None,
                };
                Ok(Cas::Stale(current))
            }
        }
    }

    /// Records when a draft last changed, for retention purges. GT: writes landing out
    /// of order can only make a draft look newer (purged later), never older.
    async fn note_draft_change(&self, p: &Principal, conversation: &str, at: Timestamp) -> R<()> {
        let mut c = redis::cmd("ZADD");
        c.arg(
            self.keys
                .draft_updates(self.keys.buckets.of_name(p.as_str())),
        )
        .arg("GT")
        .arg(at)
        .arg(Keys::draft_member(p, conversation));
        self.q::<i64>(&c).await.map(drop)
    }

    /// Commits a computed draft write and notes the change; the common tail of writes.
    async fn commit_write(
        &self,
        p: &Principal,
        conversation: &str,
        c: Commit<'_>,
    ) -> Result<DraftWrite, StoreError> {
        let new = c.new.cloned();
        match self.draft_cas(p, conversation, c).await? {
            Cas::Applied => {
                let d =
                    new.ok_or_else(|| StoreError::Corrupt("draft write without a draft".into()))?;
                self.note_draft_change(p, conversation, d.updated_at)
                    .await?;
                Ok(DraftWrite::Written(d))
            }
            Cas::Stale(cur) => Ok(DraftWrite::Conflict(cur)),
            Cas::OverQuota => Err(StoreError::Corrupt(
                "quota checked on a write that adds no bytes".into(),
            )),
        }
    }

    /// Streams `body` into `key` in bounded chunks, enforcing the limits as bytes
    /// arrive; `held` is what the principal holds besides the attachment replaced.
    /// Returns the size and SHA-256 (hex).
    async fn stream_blob(
        &self,
        key: &str,
        mut body: ByteStream,
        limits: AttachmentLimits,
        held: u64,
    ) -> Result<(u64, String), StoreError> {
        let ttl = self.cfg.upload_ttl.as_millis().max(1) as u64;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buf: Vec<u8> = Vec::with_capacity(UPLOAD_FLUSH);
        while let Some(chunk) = body.next().await {
            let chunk: Bytes = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limits.max_size {
                return Err(StoreError::TooLarge {
                    limit: limits.max_size,
                });
            }
            if held + size > limits.quota {
                return Err(StoreError::QuotaExceeded {
                    quota: limits.quota,
                });
            }
            hasher.update(&chunk);
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                let take = rest.len().min(UPLOAD_FLUSH - buf.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == UPLOAD_FLUSH {
                    self.append_blob(key, &buf, ttl).await?;
                    buf.clear();
                }
            }
        }
        if !buf.is_empty() {
            self.append_blob(key, &buf, ttl).await?;
        }
        Ok((size, hex::encode(hasher.finalize())))
    }

    async fn append_blob(&self, key: &str, bytes: &[u8], ttl_ms: u64) -> R<()> {
        let mut inv = APPEND_BLOB.prepare_invoke();
        inv.key(key).arg(bytes).arg(ttl_ms);
        self.eval::<i64>(&inv).await.map(drop)
    }

    /// Best effort: a failure leaves the bytes to their upload TTL.
    async fn discard_blob(&self, key: &str) {
        let mut c = redis::cmd("DEL");
        c.arg(key);
        if let Err(e) = self.q::<i64>(&c).await {
            tracing::debug!(error = %e, "unreferenced upload left to its TTL");
        }
    }

    /// Copies an attachment's bytes into `to`'s slot under a fresh blob id (with the
    /// upload TTL until a commit adopts them); returns the new metadata.
    async fn copy_blob(
        &self,
        from: &Principal,
        to: &Principal,
        a: &AttachmentMeta,
    ) -> R<AttachmentMeta> {
        let mut get = redis::cmd("GET");
        get.arg(self.keys.blob(from, &a.blob_id));
        let bytes = self.q::<Option<Vec<u8>>>(&get).await?.unwrap_or_default();
        let blob_id = random_id(16);
        if !bytes.is_empty() {
            let mut set = redis::cmd("SET");
            set.arg(self.keys.blob(to, &blob_id))
                .arg(bytes)
                .arg("PX")
                .arg(self.cfg.upload_ttl.as_millis().max(1) as u64);
            self.q::<redis::Value>(&set).await?;
        }
        Ok(AttachmentMeta {
            blob_id,
            ..a.clone()
        })
    }

    /// Moves one live draft of `from` into `to`: copy first, then retire the source,
    /// so a crash in between duplicates work but never loses it.
    async fn move_one(
        &self,
        from: &Principal,
        to: &Principal,
        anon: &Draft,
        now: Timestamp,
        merge: &MergeRule,
    ) -> R<()> {
        let conv = anon.conversation.as_str();
        let mut copy = anon.clone();
        copy.attachments.clear();
        for a in &anon.attachments {
            copy.attachments.push(self.copy_blob(from, to, a).await?);
        }
        let new_keys = self.blob_keys(to, &copy.attachments);
        let mut applied = false;
        for _ in 0..MOVE_RETRIES {
            let user = self.read_draft(to, conv).await?;
            let merged = match merge(user.as_ref(), &copy, to, now) {
                Ok(m) => m,
                Err(e) => {
                    // Refused (a sealed value that does not open): the copies go, the
                    // draft stays with `from`.
                    for k in &new_keys {
                        self.discard_blob(k).await;
                    }
                    return Err(e.into());
                }
            };
            let commit = Commit {
                expected_seq: seq_of(user.as_ref()),
                new: Some(&merged),
                delta_bytes: merged.attachment_bytes() as i64 - live_bytes(user.as_ref()) as i64,
                quota: None,
                delete_blobs: vec![],
                persist_blobs: new_keys.clone(),
            };
            if let Cas::Applied = self.draft_cas(to, conv, commit).await? {
                applied = true;
                break;
            }
        }
        if !applied {
            for k in &new_keys {
                self.discard_blob(k).await;
            }
            return Err(RedisError::Corrupt(format!(
                "draft {conv} kept changing during sign-in"
            )));
        }
        self.note_draft_change(to, conv, now).await?;
        let t = tombstone(from, conv, anon.seq + 1, now);
        let retire = Commit {
            expected_seq: anon.seq,
            new: Some(&t),
            delta_bytes: -(anon.attachment_bytes() as i64),
            quota: None,
            delete_blobs: self.blob_keys(from, &anon.attachments),
            persist_blobs: vec![],
        };
        // A stale seq here means another tab of `from` wrote meanwhile: that newer
        // draft stays where it is rather than being dropped.
        if let Cas::Applied = self.draft_cas(from, conv, retire).await? {
            self.note_draft_change(from, conv, now).await?;
        }
        Ok(())
    }

    /// Purges one draft named by a member of bucket `b`'s retention index if it is
    /// still older than `before`; otherwise repairs the index entry.
    async fn purge_draft_member(&self, b: usize, member: &str, before: Timestamp) -> R<bool> {
        let index = self.keys.draft_updates(b);
        let drop_entry = || async {
            let mut inv = ZREM_IF_LE.prepare_invoke();
            inv.key(&index).arg(member).arg(before - 1);
            self.eval::<i64>(&inv).await.map(drop)
        };
        let Some((p, conv)) = member
            .split_once(' ')
            .and_then(|(p, c)| Some((Principal(dec(p)?), c.to_owned())))
        else {
            drop_entry().await?;
            return Ok(false);
        };
        let Some(d) = self.read_draft(&p, &conv).await? else {
            drop_entry().await?;
            return Ok(false);
        };
        if d.updated_at >= before {
            let mut c = redis::cmd("ZADD");
            c.arg(&index).arg("GT").arg(d.updated_at).arg(member);
            self.q::<i64>(&c).await?;
            return Ok(false);
        }
        let commit = Commit {
            expected_seq: d.seq,
            new: None,
            delta_bytes: -(live_bytes(Some(&d)) as i64),
            quota: None,
            delete_blobs: self.blob_keys(&p, &d.attachments),
            persist_blobs: vec![],
        };
        match self.draft_cas(&p, &conv, commit).await? {
            Cas::Applied => {
                // Only if no newer write re-noted it meanwhile.
                drop_entry().await?;
                Ok(true)
            }
            // Written meanwhile: its writer re-noted it; the next purge decides.
            _ => Ok(false),
        }
    }
}

#[async_trait::async_trait]
impl DraftStore for RedisStore {
    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        Ok(self.read_draft(p, conversation).await?)
    }

    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        let mut c = redis::cmd("HGETALL");
        c.arg(self.keys.drafts(p));
        let all: HashMap<String, String> = self.q(&c).await?;
        let mut out: Vec<Draft> = all
            .values()
            .map(|j| parse_draft(j))
            .collect::<R<Vec<_>>>()?
            .into_iter()
            .filter(|d| !d.deleted)
            .collect();
        out.sort_by(|a, b| a.conversation.cmp(&b.conversation));
        Ok(out)
    }

    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite, StoreError> {
        let cur = self.read_draft(p, conversation).await?;
        if seq_of(cur.as_ref()) != expected_seq {
            return Ok(DraftWrite::Conflict(cur));
        }
        let attachments = cur
            .as_ref()
            .filter(|d| !d.deleted)
            .map(|d| d.attachments.clone())
            .unwrap_or_default();
        let mut d = Draft {
            principal: p.clone(),
            conversation: conversation.to_owned(),
            text: text.to_owned(),
            seq: expected_seq + 1,
            updated_at: now,
            deleted: false,
            attachments,
        };
        d.deleted = d.is_empty();
        let commit = Commit {
            expected_seq,
            new: Some(&d),
            delta_bytes: 0,
            quota: None,
            delete_blobs: vec![],
            persist_blobs: vec![],
        };
        self.commit_write(p, conversation, commit).await
    }

    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite, StoreError> {
        let cur = self.read_draft(p, conversation).await?;
        if seq_of(cur.as_ref()) != expected_seq {
            return Ok(DraftWrite::Conflict(cur));
        }
        let t = tombstone(p, conversation, expected_seq + 1, now);
        let commit = Commit {
            expected_seq,
            new: Some(&t),
            delta_bytes: -(live_bytes(cur.as_ref()) as i64),
            quota: None,
            delete_blobs: self.blob_keys(p, cur.iter().flat_map(|d| &d.attachments)),
            persist_blobs: vec![],
        };
        self.commit_write(p, conversation, commit).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_attachment(&self, put: AttachmentPut<'_>, body: ByteStream) -> Result<DraftWrite> {
        let AttachmentPut {
            principal: p,
            conversation,
            expected_seq,
            name,
            content_type,
            limits,
            now,
            text,
            content_sha256,
        } = put;
        let cur = self.read_draft(p, conversation).await?;
        // Seqs only grow: a stale seq now is stale at commit too, so refuse before
        // reading the body.
        if seq_of(cur.as_ref()) != expected_seq {
            return Ok(DraftWrite::Conflict(cur));
        }
        let replaced = cur
            .as_ref()
            .filter(|d| !d.deleted)
            .and_then(|d| d.attachment(name))
            .cloned();
        let replaced_size = replaced.as_ref().map_or(0, |a| a.size);
        let mut get_held = redis::cmd("GET");
        get_held.arg(self.keys.held_bytes(p));
        let held = self.q::<Option<i64>>(&get_held).await?.unwrap_or(0).max(0) as u64;
        let blob_id = random_id(16);
        let blob_key = self.keys.blob(p, &blob_id);

        let streamed = self
            .stream_blob(&blob_key, body, limits, held.saturating_sub(replaced_size))
            .await;
        let (size, sha256) = match streamed {
            Ok(v) => v,
            Err(e) => {
                self.discard_blob(&blob_key).await;
                return Err(e);
            }
        };
        let sha256 = content_sha256
            .and_then(|c| c.get().cloned())
            .unwrap_or(sha256);
        let meta = AttachmentMeta {
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size,
            sha256,
            blob_id,
        };
        let mut d = match &cur {
            Some(d) if !d.deleted => d.clone(),
            _ => tombstone(p, conversation, expected_seq, now),
        };
        d.attachments.retain(|a| a.name != name);
        d.attachments.push(meta);
        if let Some(t) = text {
            d.text = t.to_owned();
        }
        d.seq = expected_seq + 1;
        d.updated_at = now;
        d.deleted = false;
        let commit = Commit {
            expected_seq,
            new: Some(&d),
            delta_bytes: size as i64 - replaced_size as i64,
            quota: Some(limits.quota),
            delete_blobs: self.blob_keys(p, replaced.iter()),
            persist_blobs: vec![blob_key.clone()],
        };
        let outcome = self.draft_cas(p, conversation, commit).await;
        match outcome {
            Ok(Cas::Applied) => {
                self.note_draft_change(p, conversation, now).await?;
                Ok(DraftWrite::Written(d))
            }
            Ok(Cas::Stale(current)) => {
                self.discard_blob(&blob_key).await;
                Ok(DraftWrite::Conflict(current))
            }
            Ok(Cas::OverQuota) => {
                // Other uploads of this principal committed while this body streamed.
                self.discard_blob(&blob_key).await;
                Err(StoreError::QuotaExceeded {
                    quota: limits.quota,
                })
            }
            Err(e) => {
                // Unknown whether the commit applied (timeout): the blob may be in use,
                // so it is left to its upload TTL or to the commit's PERSIST.
                Err(e.into())
            }
        }
    }

    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>, StoreError> {
        let Some(d) = self
            .read_draft(p, conversation)
            .await?
            .filter(|d| !d.deleted)
        else {
            return Ok(None);
        };
        let Some(meta) = d.attachment(name).cloned() else {
            return Ok(None);
        };
        let mut get = redis::cmd("GET");
        get.arg(self.keys.blob(p, &meta.blob_id));
        let bytes = self.q::<Option<Vec<u8>>>(&get).await?.unwrap_or_default();
        if bytes.len() as u64 != meta.size {
            // Replaced or deleted between the two reads, or lost by Redis.
            let again = self.read_draft(p, conversation).await?;
            if again
                .as_ref()
                .and_then(|d| d.attachment(name))
                .map(|a| &a.blob_id)
                != Some(&meta.blob_id)
            {
                return Ok(None);
            }
            return Err(StoreError::Corrupt(format!(
                "attachment {name} has {} of {} bytes",
                bytes.len(),
                meta.size
            )));
        }
        let bytes = Bytes::from(bytes);
        let chunks: Vec<std::io::Result<Bytes>> = (0..bytes.len())
            .step_by(READ_CHUNK)
            .map(|i| Ok(bytes.slice(i..(i + READ_CHUNK).min(bytes.len()))))
            .collect();
        Ok(Some((meta, Box::pin(futures::stream::iter(chunks)))))
    }

    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<DraftWrite, StoreError> {
        let cur = self.read_draft(p, conversation).await?;
        if seq_of(cur.as_ref()) != expected_seq {
            return Ok(DraftWrite::Conflict(cur));
        }
        let Some(mut d) = cur.filter(|d| !d.deleted && d.attachment(name).is_some()) else {
            return Ok(DraftWrite::NotFound);
        };
        let removed: Vec<AttachmentMeta> = d
            .attachments
            .iter()
            .filter(|a| a.name == name)
            .cloned()
            .collect();
        d.attachments.retain(|a| a.name != name);
        if let Some(t) = text {
            d.text = t.to_owned();
        }
        d.seq += 1;
        d.updated_at = now;
        d.deleted = d.is_empty();
        let commit = Commit {
            expected_seq,
            new: Some(&d),
            delta_bytes: -(removed.iter().map(|a| a.size).sum::<u64>() as i64),
            quota: None,
            delete_blobs: self.blob_keys(p, &removed),
            persist_blobs: vec![],
        };
        self.commit_write(p, conversation, commit).await
    }

    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
        merge: &MergeRule,
    ) -> Result<Vec<String>> {
        if from == to {
            return Ok(Vec::new());
        }
        // Two sign-ins of one browser at once would both copy the same drafts; the
        // lock makes the second one a no-op instead of a duplicate.
        let lock = self.keys.move_lock(from);
        let token = random_id(16);
        let mut set = redis::cmd("SET");
        set.arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(MOVE_LOCK_MS);
        if self.q::<Option<String>>(&set).await?.is_none() {
            return Ok(Vec::new());
        }
        let result: Result<Vec<String>> = async {
            let mut moved = Vec::new();
            for anon in self.list_drafts(from).await? {
                self.move_one(from, to, &anon, now, merge).await?;
                moved.push(anon.conversation);
            }
            Ok(moved)
        }
        .await;
        let mut release = DEL_IF_EQ.prepare_invoke();
        release.key(&lock).arg(&token);
        let released = self.eval::<i64>(&release).await;
        let moved = result?;
        released?;
        Ok(moved)
    }

    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        let limit = cap(limit);
        let n = self.keys.buckets.len();
        let start = self.rotate();
        let mut purged = 0;
        for k in 0..n {
            let b = (start + k) % n;
            for _ in 0..MAX_PASSES {
                let want = (limit - purged).min(PURGE_BATCH);
                if want == 0 {
                    break;
                }
                let mut range = redis::cmd("ZRANGEBYSCORE");
                range
                    .arg(self.keys.draft_updates(b))
                    .arg("-inf")
                    .arg(format!("({before}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(want);
                let members: Vec<String> = self.q(&range).await?;
                for m in &members {
                    if self.purge_draft_member(b, m, before).await? {
                        purged += 1;
                    }
                }
                if members.len() < want {
                    break;
                }
            }
            if purged >= limit {
                break;
            }
        }
        Ok(purged)
    }
}
