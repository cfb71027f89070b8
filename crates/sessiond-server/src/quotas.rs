//! Storage quotas on drafts and snapshots: the one place their writes are admitted (the
//! session service does the same for session data). Each write is checked against the
//! limits of the writer's role (smaller while anonymous, see
//! [`sessiond_core::quota::Quotas`]) and refused with `QuotaExceeded`, writing nothing.
//!
//! The rule that keeps concurrent writes from overshooting: a principal's check and the
//! write it admits run under that principal's lock (one per node), except an
//! attachment's upload, which must not hold up the principal's other saves for as long
//! as a body streams. An upload is safe without it: its per-draft check is made against
//! the draft at the seq the upload names, and the store commits only if the draft is
//! still at that seq; an upload that would create a draft reserves its place in
//! `drafts_per_principal` under the lock until it ends. Across nodes sharing Redis each
//! node decides on the usage it read, so the overshoot is bounded by one write per
//! other node writing for the same principal at that instant.

use crate::keyed_lock::KeyedLocks;
use crate::sessions::{SessionError, SessionResult};
use bytes::Bytes;
use futures::StreamExt;
use sessiond_core::draft::{Draft, DraftWrite};
use sessiond_core::policy::Policies;
use sessiond_core::quota::{QuotaExceeded, Quotas};
use sessiond_core::snapshot::SnapshotWrite;
use sessiond_core::store::{AttachmentPut, ByteStream, SnapshotPut};
use sessiond_core::{Principal, Session, Store, StoreError, Timestamp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Admits draft and snapshot writes within the quotas.
pub struct QuotaGate {
    store: Arc<dyn Store>,
    policies: Policies,
    drafts: KeyedLocks,
    snapshots: KeyedLocks,
    /// New drafts being created by an upload still streaming, per principal.
    reserved: Mutex<HashMap<Principal, u64>>,
}

/// A place in `drafts_per_principal` held by an upload until it ends.
struct Reservation<'a> {
    gate: &'a QuotaGate,
    principal: Principal,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut r = self.gate.reserved_map();
        if let Some(n) = r.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.remove(&self.principal);
            }
        }
    }
}

fn refuse(e: QuotaExceeded) -> SessionError {
    metrics::counter!("sessiond_quota_refusals_total", "limit" => e.limit).increment(1);
    SessionError::QuotaExceeded(e)
}

impl QuotaGate {
    pub fn new(store: Arc<dyn Store>, policies: Policies) -> Self {
        QuotaGate {
            store,
            policies,
            drafts: KeyedLocks::new(),
            snapshots: KeyedLocks::new(),
            reserved: Mutex::new(HashMap::new()),
        }
    }

    /// The limits for `s`: its role's (the default role's for a role since removed),
    /// the anonymous ones while it is not signed in.
    pub fn quotas(&self, s: &Session) -> Quotas {
        let policy = self
            .policies
            .get(&s.role)
            .or_else(|| self.policies.get(&self.policies.default_role));
        match policy {
            Some(p) => *p.quotas_for(s.principal.is_anonymous()),
            None => Quotas::ANONYMOUS,
        }
    }

    fn reserved_map(&self) -> std::sync::MutexGuard<'_, HashMap<Principal, u64>> {
        self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserved_for(&self, p: &Principal) -> u64 {
        self.reserved_map().get(p).copied().unwrap_or(0)
    }

    /// The current draft of `conversation` if its seq is not `expected_seq`: the write
    /// would be refused as a conflict anyway, and a check against another seq would not
    /// hold at commit.
    async fn stale(
        &self,
        p: &Principal,
        conversation: &str,
        live: &[Draft],
        expected_seq: u64,
    ) -> SessionResult<Option<DraftWrite>> {
        let seq = match live.iter().find(|d| d.conversation == conversation) {
            Some(d) => d.seq,
            // A tombstone (or nothing): its seq is what a write must name.
            None => match self.store.get_draft(p, conversation).await? {
                Some(d) => d.seq,
                None => 0,
            },
        };
        if seq == expected_seq {
            return Ok(None);
        }
        Ok(Some(DraftWrite::Conflict(
            self.store.get_draft(p, conversation).await?,
        )))
    }

    /// Sets a draft's text (see `DraftStore::put_draft_text`) within
    /// `drafts_per_principal` and `draft_text_bytes_per_principal`.
    pub async fn put_draft_text(
        &self,
        s: &Session,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> SessionResult<DraftWrite> {
        let p = &s.principal;
        let quotas = self.quotas(s);
        let _held = self.drafts.lock(p.as_str()).await;
        let live = self.store.list_drafts(p).await?;
        if let Some(conflict) = self.stale(p, conversation, &live, expected_seq).await? {
            return Ok(conflict);
        }
        quotas
            .check_draft(&live, self.reserved_for(p), conversation, Some(text), None)
            .map_err(refuse)?;
        Ok(self
            .store
            .put_draft_text(p, conversation, expected_seq, text, now)
            .await?)
    }

    /// Streams an attachment in (see `DraftStore::put_attachment`) within
    /// `attachments_per_draft` and `drafts_per_principal`; an attachment of no bytes is
    /// `EmptyAttachment`. `put.principal` must be the session's.
    pub async fn put_attachment(
        &self,
        s: &Session,
        put: AttachmentPut<'_>,
        body: ByteStream,
    ) -> SessionResult<DraftWrite> {
        let p = &s.principal;
        let quotas = self.quotas(s);
        let held = self.drafts.lock(p.as_str()).await;
        let live = self.store.list_drafts(p).await?;
        if let Some(conflict) = self
            .stale(p, put.conversation, &live, put.expected_seq)
            .await?
        {
            return Ok(conflict);
        }
        quotas
            .check_draft(
                &live,
                self.reserved_for(p),
                put.conversation,
                put.text,
                Some(put.name),
            )
            .map_err(refuse)?;
        let _reservation = if live.iter().any(|d| d.conversation == put.conversation) {
            None
        } else {
            *self.reserved_map().entry(p.clone()).or_default() += 1;
            Some(Reservation {
                gate: self,
                principal: p.clone(),
            })
        };
        drop(held);
        let (body, ended_empty) = refuse_empty(body);
        match self.store.put_attachment(put, body).await {
            Err(StoreError::Body(_)) if ended_empty.load(Ordering::SeqCst) => {
                Err(SessionError::EmptyAttachment)
            }
            other => Ok(other?),
        }
    }

    /// Stores a snapshot (see `SnapshotStore::put_snapshot`) within
    /// `snapshot_bytes_per_principal`; `put.by` is set to the session's principal, whose
    /// usage it counts toward.
    pub async fn put_snapshot(
        &self,
        s: &Session,
        put: SnapshotPut<'_>,
    ) -> SessionResult<SnapshotWrite> {
        let by = s.principal.as_str();
        let quotas = self.quotas(s);
        let _held = self.snapshots.lock(by).await;
        let others = self.store.snapshot_usage(by, put.room).await?;
        quotas
            .check_snapshot(others.bytes, put.data.len() as u64)
            .map_err(refuse)?;
        Ok(self
            .store
            .put_snapshot(SnapshotPut {
                by: Some(by),
                ..put
            })
            .await?)
    }
}

/// Why an upload's body was cut: it ended with no byte.
const EMPTY_BODY: &str = "an attachment must have at least one byte";

/// `body` with an error in place of its end when it ended having yielded no byte (the
/// flag then set): the store writes nothing, as for any failed body.
fn refuse_empty(body: ByteStream) -> (ByteStream, Arc<AtomicBool>) {
    let received = Arc::new(AtomicU64::new(0));
    let ended_empty = Arc::new(AtomicBool::new(false));
    let seen = received.clone();
    let counting = body.inspect(move |chunk| {
        if let Ok(b) = chunk {
            seen.fetch_add(b.len() as u64, Ordering::SeqCst);
        }
    });
    let flag = ended_empty.clone();
    let tail = futures::stream::once(async move {
        (received.load(Ordering::SeqCst) == 0).then(|| {
            flag.store(true, Ordering::SeqCst);
            Err::<Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                EMPTY_BODY,
            ))
        })
    })
    .filter_map(futures::future::ready);
    (Box::pin(counting.chain(tail)), ended_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_body_ends_in_an_error_and_a_full_one_does_not() {
        let empty: ByteStream = Box::pin(futures::stream::empty());
        let (s, flag) = refuse_empty(empty);
        let items: Vec<_> = s.collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
        assert!(flag.load(Ordering::SeqCst));

        let one: ByteStream = Box::pin(futures::stream::iter([
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"x")),
        ]));
        let (s, flag) = refuse_empty(one);
        let items: Vec<_> = s.collect().await;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
        assert!(!flag.load(Ordering::SeqCst));
    }
}
