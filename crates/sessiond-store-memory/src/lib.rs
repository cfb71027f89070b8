//! An in-memory [`sessiond_core::Store`]: everything in maps behind one `std::sync::Mutex`.
//!
//! For tests and single-node development; nothing survives a restart. Every method takes
//! the lock once, does its work without awaiting and releases it, which is what makes
//! each method atomic (the contract's conditional writes are decided under the lock).
//! Attachment bodies are streamed *outside* the lock into a bounded buffer, then
//! committed under the lock after re-checking the draft's seq and the quota.
//!
//! A lifecycle write and its audit events commit under the same lock, so they are seen
//! together or not at all.
//!
//! A `limit` of 0 in a listing, query or purge means "no limit".

#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::draft::{AttachmentMeta, Draft, DraftWrite};
use sessiond_core::outbox::DeadLetter;
use sessiond_core::quota::{DataUsage, SnapshotUsage};
use sessiond_core::snapshot::{content_hash, Snapshot, SnapshotWrite};
use sessiond_core::store::{
    AttachmentPut, AuditStore, ByteStream, CreateOutcome, DraftMove, DraftStore, Expiring, Expiry,
    IdempotencyRecord, MergeRule, Result, SessionFilter, SessionStore, SnapshotPut, SnapshotStore,
    Touch,
};
use sessiond_core::token::random_id;
use sessiond_core::{
    EndReason, Handle, Principal, Session, SessionState, StoreError, Timestamp, TokenHash,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

/// Size of the chunks an attachment is streamed back in.
const READ_CHUNK: usize = 64 * 1024;

/// The in-memory store. Cheap to create; share it behind an `Arc`.
#[derive(Default)]
pub struct MemoryStore {
    /// A std mutex, not tokio's: no `.await` ever happens while it is held, and
    /// critical sections are short map operations.
    inner: Mutex<Inner>,
    /// Fault injection for tests: while set, every audit append fails (and with it the
    /// change it records).
    fail_audit: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// Ordered by handle, because listings page by handle.
    sessions: BTreeMap<Handle, Session>,
    /// Token-hash index, kept in step with `sessions` on every write.
    by_token: HashMap<TokenHash, Handle>,
    /// Active sessions by earliest deadline, so `due_sessions` never scans everything.
    deadlines: BTreeSet<(Timestamp, Handle)>,
    data: HashMap<Handle, HashMap<String, serde_json::Value>>,
    idempotency: HashMap<String, IdempotencyRecord>,
    /// Reverse index so purging a session also frees its idempotency keys.
    idem_by_handle: HashMap<Handle, Vec<String>>,
    /// Boxed: inline events (~250 B) made each leaf of the map a 2.7 KB allocation,
    /// and glibc's malloc tidies all its small free chunks before every allocation that
    /// large (a sixth of a million endings' time went to that).
    audit: BTreeMap<i64, Box<KeptEvent>>,
    last_audit_id: i64,
    /// Pending sign-in draft moves by source principal.
    draft_moves: BTreeMap<Principal, DraftMove>,
    drafts: BTreeMap<(Principal, String), Draft>,
    /// Attachment bytes by blob id; drafts refer to them through `AttachmentMeta::blob_id`.
    blobs: HashMap<String, Bytes>,
    snapshots: HashMap<String, Snapshot>,
    /// One-time claims: key → until.
    claims: HashMap<String, Timestamp>,
    /// The outbox lease: holder, fence, until.
    outbox_lease: Option<(String, u64, Timestamp)>,
    /// The last fence handed out.
    outbox_fence: u64,
    /// Per-endpoint cursors: endpoint → last audit id delivered.
    outbox_cursors: HashMap<String, i64>,
    /// Dead letters by (endpoint, event id).
    dead_letters: BTreeMap<(String, i64), DeadLetter>,
}

fn cap(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}

fn deadline_of(s: &Session) -> Timestamp {
    s.idle_expires_at.min(s.absolute_expires_at)
}

fn seq_of(d: Option<&Draft>) -> u64 {
    d.map_or(0, |d| d.seq)
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

impl Inner {
    /// Replaces a session record, keeping the token and deadline indexes in step.
    fn put_session(&mut self, s: Session) {
        if let Some(old) = self.sessions.get(&s.handle) {
            let (old_hash, old_deadline) = (old.token_hash, deadline_of(old));
            self.by_token.remove(&old_hash);
            self.deadlines.remove(&(old_deadline, s.handle));
        }
        self.by_token.insert(s.token_hash, s.handle);
        if s.is_active() {
            self.deadlines.insert((deadline_of(&s), s.handle));
        }
        self.sessions.insert(s.handle, s);
    }

    fn remove_session(&mut self, h: &Handle) {
        if let Some(s) = self.sessions.remove(h) {
            self.by_token.remove(&s.token_hash);
            self.deadlines.remove(&(deadline_of(&s), s.handle));
        }
        self.data.remove(h);
        for key in self.idem_by_handle.remove(h).unwrap_or_default() {
            self.idempotency.remove(&key);
        }
    }

    fn key(p: &Principal, conversation: &str) -> (Principal, String) {
        (p.clone(), conversation.to_owned())
    }

    /// Attachment bytes the principal holds in live drafts, leaving out `except`
    /// (the attachment about to be replaced).
    fn held_bytes(&self, p: &Principal, except: Option<(&str, &str)>) -> u64 {
        self.drafts
            .range((p.clone(), String::new())..)
            .take_while(|((owner, _), _)| owner == p)
            .filter(|(_, d)| !d.deleted)
            .flat_map(|((_, conv), d)| d.attachments.iter().map(move |a| (conv, a)))
            .filter(|(conv, a)| except != Some((conv.as_str(), a.name.as_str())))
            .map(|(_, a)| a.size)
            .sum()
    }

    fn free_blobs<'a>(&mut self, atts: impl IntoIterator<Item = &'a AttachmentMeta>) {
        for a in atts {
            self.blobs.remove(&a.blob_id);
        }
    }
}

impl Inner {
    fn append(&mut self, events: &[AuditEvent]) -> i64 {
        self.append_owned(events.iter().map(KeptEvent::keep))
    }

    /// [`Inner::append`] of events already copied and boxed (outside the lock: a burst
    /// of endings faulted in its events' new memory while every other call waited).
    fn append_owned(&mut self, events: impl IntoIterator<Item = Box<KeptEvent>>) -> i64 {
        for mut e in events {
            self.last_audit_id += 1;
            e.event.id = self.last_audit_id;
            self.audit.insert(e.event.id, e);
        }
        self.last_audit_id
    }
}

/// An audit event as the store keeps it: its `detail` as JSON text. A detail as a
/// `serde_json::Value` is a map, its keys and arrays of strings, about 1 KB of small
/// allocations for an ending's `kept`/`purged` lists; as text it is one of about 80 B.
/// A million endings faulted in that much fresh memory, a third of their time.
struct KeptEvent {
    /// The event, its `detail` left `Null`.
    event: AuditEvent,
    detail: Option<Box<str>>,
}

/// A detail as the store keeps it: `None` for `Null`.
fn detail_text(detail: &serde_json::Value) -> Option<Box<str>> {
    (!detail.is_null()).then(|| {
        serde_json::to_string(detail)
            .expect("a JSON value serializes")
            .into_boxed_str()
    })
}

impl KeptEvent {
    fn keep(e: &AuditEvent) -> Box<KeptEvent> {
        let event = AuditEvent {
            id: e.id,
            at: e.at,
            kind: e.kind,
            handle: e.handle.clone(),
            principal: e.principal.clone(),
            role: e.role.clone(),
            client_ip: e.client_ip.clone(),
            user_agent: e.user_agent.clone(),
            last_activity_at: e.last_activity_at,
            reason: e.reason.clone(),
            detail: serde_json::Value::Null,
        };
        Box::new(KeptEvent {
            event,
            detail: detail_text(&e.detail),
        })
    }

    /// [`KeptEvent::keep`] of an event the caller gives up: its fields move, not copy.
    fn keep_owned(mut e: AuditEvent) -> Box<KeptEvent> {
        let detail = detail_text(&e.detail);
        e.detail = serde_json::Value::Null;
        Box::new(KeptEvent { event: e, detail })
    }

    /// The event as it was appended (with its id).
    fn event(&self) -> AuditEvent {
        let mut e = self.event.clone();
        if let Some(d) = &self.detail {
            e.detail = serde_json::from_str(d).expect("a kept detail is JSON");
        }
        e
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Test fault: while `on`, audit appends fail with `Unavailable`, and so does every
    /// change that carries audit events (nothing of it is written).
    pub fn fail_audit(&self, on: bool) {
        self.fail_audit
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// `Err` if `events` cannot be appended now (the injected fault).
    fn check_audit<T>(&self, events: &[T]) -> Result<()> {
        if !events.is_empty() && self.fail_audit.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "audit append failed (injected)".into(),
            ));
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a map half-updated in a way later
        // callers could observe as a broken promise worse than the panic itself, so
        // poisoning is not propagated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An ending, unconditional (`end_session`) or on the record `seen` (`expire_session`).
    fn end(
        &self,
        handle: &Handle,
        seen: Option<&Expiry>,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        // Copied before the lock: every other store call waits while it is held, and
        // the copy was most of an ending's time under it.
        let events = audit.iter().map(KeptEvent::keep).collect();
        let mut g = self.lock();
        self.end_locked(&mut g, handle, seen, reason, now, events)
    }

    /// [`MemoryStore::end`] under the lock, with its events already copied.
    // Boxed as the map keeps them: the boxes are made before the lock is taken.
    #[allow(clippy::vec_box)]
    fn end_locked(
        &self,
        g: &mut Inner,
        handle: &Handle,
        seen: Option<&Expiry>,
        reason: EndReason,
        now: Timestamp,
        events: Vec<Box<KeptEvent>>,
    ) -> Result<Option<Session>> {
        let Some(cur) = g
            .sessions
            .get_mut(handle)
            .filter(|s| seen.map_or(s.is_active(), |seen| seen.holds_for(s, now)))
        else {
            return Ok(None);
        };
        self.check_audit(&events)?;
        // Changed in place: an ending keeps the token (so its index entry stands) and
        // only leaves the deadline index.
        cur.state = SessionState::Ended;
        cur.end_reason = Some(reason);
        cur.ended_at = Some(now);
        let s = cur.clone();
        g.deadlines.remove(&(deadline_of(&s), s.handle));
        g.append_owned(events);
        Ok(Some(s))
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
        audit: &[AuditEvent],
    ) -> Result<CreateOutcome> {
        let mut g = self.lock();
        if let Some(rec) = idem {
            if let Some(existing) = g.idempotency.get(&rec.key_hash) {
                return Ok(CreateOutcome::Existing(existing.clone()));
            }
        }
        self.check_audit(audit)?;
        if let Some(rec) = idem {
            g.idempotency.insert(rec.key_hash.clone(), rec.clone());
            g.idem_by_handle
                .entry(s.handle)
                .or_default()
                .push(rec.key_hash.clone());
        }
        g.put_session(s.clone());
        g.append(audit);
        Ok(CreateOutcome::Created)
    }

    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>> {
        Ok(self.lock().sessions.get(handle).cloned())
    }

    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>> {
        let g = self.lock();
        Ok(g.by_token
            .get(hash)
            .and_then(|h| g.sessions.get(h))
            .cloned())
    }

    async fn update_session(
        &self,
        s: &Session,
        expected_token: &TokenHash,
        audit: &[AuditEvent],
        draft_move: Option<&DraftMove>,
    ) -> Result<bool> {
        let mut g = self.lock();
        let ok = g
            .sessions
            .get(&s.handle)
            .is_some_and(|cur| cur.is_active() && cur.token_hash.ct_eq(expected_token));
        if ok {
            self.check_audit(audit)?;
            g.put_session(s.clone());
            g.append(audit);
            if let Some(m) = draft_move {
                g.draft_moves.insert(m.from.clone(), m.clone());
            }
        }
        Ok(ok)
    }

    async fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool> {
        let Touch {
            ref handle,
            last_activity_at,
            last_seen_at,
            idle_expires_at,
            ref client_ip,
            ref user_agent,
        } = *t;
        let mut g = self.lock();
        let Some(cur) = g.sessions.get(handle).filter(|s| s.is_active()) else {
            return Ok(false);
        };
        let mut s = cur.clone();
        self.check_audit(audit)?;
        s.last_activity_at = s.last_activity_at.max(last_activity_at);
        s.last_seen_at = s.last_seen_at.max(last_seen_at);
        s.idle_expires_at = s.idle_expires_at.max(idle_expires_at);
        if client_ip.is_some() {
            s.client_ip.clone_from(client_ip);
        }
        if user_agent.is_some() {
            s.user_agent.clone_from(user_agent);
        }
        g.put_session(s);
        g.append(audit);
        Ok(true)
    }

    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        self.end(handle, None, reason, now, audit)
    }

    async fn expire_session(
        &self,
        seen: &Expiry,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        self.end(&seen.handle, Some(seen), reason, now, audit)
    }

    /// One locking for the whole batch: a burst of endings, one lock each, made the
    /// scheduler's tasks queue on this lock.
    async fn expire_sessions(
        &self,
        batch: Vec<Expiring>,
        now: Timestamp,
    ) -> Vec<Result<Option<Session>>> {
        let batch: Vec<(Expiring, Vec<Box<KeptEvent>>)> = batch
            .into_iter()
            .map(|mut e| {
                let events = std::mem::take(&mut e.audit);
                (e, events.into_iter().map(KeptEvent::keep_owned).collect())
            })
            .collect();
        let mut g = self.lock();
        batch
            .into_iter()
            .map(|(e, events)| {
                self.end_locked(&mut g, &e.seen.handle, Some(&e.seen), e.reason, now, events)
            })
            .collect()
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let g = self.lock();
        let iter: Box<dyn Iterator<Item = &Session>> = match filter.after {
            Some(after) => Box::new(
                g.sessions
                    .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .map(|(_, s)| s),
            ),
            None => Box::new(g.sessions.values()),
        };
        Ok(iter
            .filter(|s| filter.matches(s))
            .take(cap(filter.limit))
            .cloned()
            .collect())
    }

    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>> {
        let g = self.lock();
        Ok(g.deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(cap(limit))
            .map(|(_, h)| *h)
            .collect())
    }

    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize> {
        let mut g = self.lock();
        let doomed: Vec<Handle> = g
            .sessions
            .values()
            .filter(|s| !s.is_active() && s.ended_at.is_some_and(|t| t < ended_before))
            .take(cap(limit))
            .map(|s| s.handle)
            .collect();
        for h in &doomed {
            g.remove_session(h);
        }
        Ok(doomed.len())
    }

    async fn count_active_sessions(&self) -> Result<u64> {
        Ok(self.lock().deadlines.len() as u64)
    }

    async fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>> {
        let g = self.lock();
        let mut out: Vec<DraftMove> = g.draft_moves.values().cloned().collect();
        out.sort_by_key(|m| m.at);
        out.truncate(cap(limit));
        Ok(out)
    }

    async fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool> {
        let mut g = self.lock();
        if g.draft_moves.get(&m.from) != Some(m) {
            return Ok(false);
        }
        self.check_audit(audit)?;
        g.draft_moves.remove(&m.from);
        g.append(audit);
        Ok(true)
    }

    async fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        let mut g = self.lock();
        if g.claims.get(key).is_some_and(|&u| u > now) {
            return Ok(false);
        }
        g.claims.insert(key.to_owned(), until);
        Ok(true)
    }

    async fn purge_claims(&self, now: Timestamp, limit: usize) -> Result<usize> {
        let mut g = self.lock();
        let doomed: Vec<String> = g
            .claims
            .iter()
            .filter(|(_, &u)| u <= now)
            .take(cap(limit))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            g.claims.remove(k);
        }
        Ok(doomed.len())
    }

    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>> {
        Ok(self
            .lock()
            .data
            .get(handle)
            .and_then(|m| m.get(key))
            .cloned())
    }

    async fn put_data(
        &self,
        handle: &Handle,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<bool> {
        let mut g = self.lock();
        if !g.sessions.get(handle).is_some_and(|s| s.is_active()) {
            return Ok(false);
        }
        g.data
            .entry(*handle)
            .or_default()
            .insert(key.to_owned(), value.clone());
        Ok(true)
    }

    async fn put_data_if(
        &self,
        handle: &Handle,
        key: &str,
        expected: Option<&serde_json::Value>,
        value: &serde_json::Value,
    ) -> Result<bool> {
        let mut g = self.lock();
        if !g.sessions.get(handle).is_some_and(|s| s.is_active()) {
            return Ok(false);
        }
        let bag = g.data.entry(*handle).or_default();
        if bag.get(key) != expected {
            return Ok(false);
        }
        bag.insert(key.to_owned(), value.clone());
        Ok(true)
    }

    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool> {
        Ok(self
            .lock()
            .data
            .get_mut(handle)
            .and_then(|m| m.remove(key))
            .is_some())
    }

    async fn data_usage(&self, handle: &Handle, key: &str) -> Result<DataUsage> {
        let g = self.lock();
        let mut u = DataUsage::default();
        for (k, v) in g.data.get(handle).into_iter().flatten() {
            let bytes = (k.len() + serde_json::to_string(v).map_or(0, |j| j.len())) as u64;
            if k == key {
                u.current = Some(bytes);
            } else {
                u.keys += 1;
                u.bytes += bytes;
            }
        }
        Ok(u)
    }
}

#[async_trait::async_trait]
impl AuditStore for MemoryStore {
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        self.check_audit(std::slice::from_ref(e))?;
        Ok(self.lock().append(std::slice::from_ref(e)))
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let g = self.lock();
        // The filter reads no detail (`AuditFilter::matches`).
        let pick = |e: &&KeptEvent| f.matches(&e.event);
        let out = if f.after_id.is_some() {
            g.audit
                .values()
                .map(|e| &**e)
                .filter(pick)
                .take(cap(f.limit))
                .map(KeptEvent::event)
                .collect()
        } else {
            g.audit
                .values()
                .rev()
                .map(|e| &**e)
                .filter(pick)
                .take(cap(f.limit))
                .map(KeptEvent::event)
                .collect()
        };
        Ok(out)
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        let mut g = self.lock();
        let doomed: Vec<i64> = g
            .audit
            .values()
            .filter(|e| e.event.at < before)
            .take(cap(limit))
            .map(|e| e.event.id)
            .collect();
        for id in &doomed {
            g.audit.remove(id);
        }
        Ok(doomed.len())
    }

    async fn acquire_outbox_lease(
        &self,
        holder: &str,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<u64>> {
        let mut g = self.lock();
        let until = now.saturating_add(ttl_ms.max(1));
        let fence = match &g.outbox_lease {
            Some((h, fence, _)) if h == holder => *fence,
            Some((_, _, running)) if *running > now => return Ok(None),
            _ => {
                g.outbox_fence += 1;
                g.outbox_fence
            }
        };
        g.outbox_lease = Some((holder.to_owned(), fence, until));
        Ok(Some(fence))
    }

    async fn release_outbox_lease(&self, holder: &str) -> Result<()> {
        let mut g = self.lock();
        if g.outbox_lease.as_ref().is_some_and(|(h, _, _)| h == holder) {
            g.outbox_lease = None;
        }
        Ok(())
    }

    async fn outbox_cursor(&self, endpoint: &str) -> Result<Option<i64>> {
        Ok(self.lock().outbox_cursors.get(endpoint).copied())
    }

    async fn advance_outbox_cursor(
        &self,
        endpoint: &str,
        fence: u64,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool> {
        let mut g = self.lock();
        // The fence counter, not the lease: a holder whose lease ran out may still move
        // the cursor as long as nobody else took the lease meanwhile.
        if g.outbox_fence != fence || g.outbox_cursors.get(endpoint).copied() != from {
            return Ok(false);
        }
        g.outbox_cursors.insert(endpoint.to_owned(), to);
        Ok(true)
    }

    async fn put_dead_letter(&self, d: &DeadLetter) -> Result<()> {
        self.lock()
            .dead_letters
            .insert((d.endpoint.clone(), d.event.id), d.clone());
        Ok(())
    }

    async fn get_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<Option<DeadLetter>> {
        Ok(self
            .lock()
            .dead_letters
            .get(&(endpoint.to_owned(), event_id))
            .cloned())
    }

    async fn list_dead_letters(
        &self,
        endpoint: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let g = self.lock();
        let from = (
            endpoint.to_owned(),
            after_id.map_or(i64::MIN, |a| a.saturating_add(1)),
        );
        Ok(g.dead_letters
            .range(from..)
            .take_while(|((e, _), _)| e == endpoint)
            .take(cap(limit))
            .map(|(_, d)| d.clone())
            .collect())
    }

    async fn delete_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<bool> {
        Ok(self
            .lock()
            .dead_letters
            .remove(&(endpoint.to_owned(), event_id))
            .is_some())
    }

    async fn count_dead_letters(&self, endpoint: &str) -> Result<u64> {
        let g = self.lock();
        Ok(g.dead_letters
            .range((endpoint.to_owned(), i64::MIN)..)
            .take_while(|((e, _), _)| e == endpoint)
            .count() as u64)
    }
}

#[async_trait::async_trait]
impl DraftStore for MemoryStore {
    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        Ok(self
            .lock()
            .drafts
            .get(&Inner::key(p, conversation))
            .cloned())
    }

    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        let g = self.lock();
        Ok(g.drafts
            .range((p.clone(), String::new())..)
            .take_while(|((owner, _), _)| owner == p)
            .filter(|(_, d)| !d.deleted)
            .map(|(_, d)| d.clone())
            .collect())
    }

    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        let mut g = self.lock();
        let key = Inner::key(p, conversation);
        let cur = g.drafts.get(&key);
        if seq_of(cur) != expected_seq {
            return Ok(DraftWrite::Conflict(cur.cloned()));
        }
        let attachments = cur
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
        g.drafts.insert(key, d.clone());
        Ok(DraftWrite::Written(d))
    }

    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        let mut g = self.lock();
        let key = Inner::key(p, conversation);
        let cur = g.drafts.get(&key);
        if seq_of(cur) != expected_seq {
            return Ok(DraftWrite::Conflict(cur.cloned()));
        }
        let t = tombstone(p, conversation, expected_seq + 1, now);
        if let Some(old) = g.drafts.insert(key, t.clone()) {
            g.free_blobs(&old.attachments);
        }
        Ok(DraftWrite::Written(t))
    }

    async fn put_attachment(
        &self,
        put: AttachmentPut<'_>,
        mut body: ByteStream,
    ) -> Result<DraftWrite> {
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
        let key = Inner::key(p, conversation);
        let held = {
            let g = self.lock();
            let cur = g.drafts.get(&key);
            // Seqs only grow, so a stale seq now is stale at commit too: refuse before
            // reading the body.
            if seq_of(cur) != expected_seq {
                return Ok(DraftWrite::Conflict(cur.cloned()));
            }
            g.held_bytes(p, Some((conversation, name)))
        };
        let mut buf = BytesMut::new();
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
            let size = (buf.len() + chunk.len()) as u64;
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
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        let meta = AttachmentMeta {
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size: bytes.len() as u64,
            sha256: content_sha256
                .and_then(|c| c.get().cloned())
                .unwrap_or_else(|| hex::encode(hasher.finalize())),
            blob_id: random_id(16),
        };

        let mut g = self.lock();
        let cur = g.drafts.get(&key);
        if seq_of(cur) != expected_seq {
            return Ok(DraftWrite::Conflict(cur.cloned()));
        }
        // Other uploads may have committed while this body streamed.
        if g.held_bytes(p, Some((conversation, name))) + meta.size > limits.quota {
            return Err(StoreError::QuotaExceeded {
                quota: limits.quota,
            });
        }
        let mut d = match cur {
            Some(d) if !d.deleted => d.clone(),
            _ => tombstone(p, conversation, expected_seq, now),
        };
        let replaced = d
            .attachments
            .iter()
            .position(|a| a.name == name)
            .map(|i| d.attachments.remove(i));
        d.attachments.push(meta.clone());
        if let Some(t) = text {
            d.text = t.to_owned();
        }
        d.seq = expected_seq + 1;
        d.updated_at = now;
        d.deleted = false;
        g.blobs.insert(meta.blob_id.clone(), bytes);
        g.drafts.insert(key, d.clone());
        g.free_blobs(replaced.as_ref());
        Ok(DraftWrite::Written(d))
    }

    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>> {
        let g = self.lock();
        let Some(meta) = g
            .drafts
            .get(&Inner::key(p, conversation))
            .filter(|d| !d.deleted)
            .and_then(|d| d.attachment(name))
        else {
            return Ok(None);
        };
        let bytes = g
            .blobs
            .get(&meta.blob_id)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("attachment {name} has no bytes")))?;
        let chunks: Vec<std::io::Result<Bytes>> = (0..bytes.len())
            .step_by(READ_CHUNK)
            .map(|i| Ok(bytes.slice(i..(i + READ_CHUNK).min(bytes.len()))))
            .collect();
        Ok(Some((
            meta.clone(),
            Box::pin(futures::stream::iter(chunks)),
        )))
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
        let mut g = self.lock();
        let key = Inner::key(p, conversation);
        let cur = g.drafts.get(&key);
        if seq_of(cur) != expected_seq {
            return Ok(DraftWrite::Conflict(cur.cloned()));
        }
        let Some(mut d) = cur
            .filter(|d| !d.deleted && d.attachment(name).is_some())
            .cloned()
        else {
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
        g.drafts.insert(key, d.clone());
        g.free_blobs(&removed);
        Ok(DraftWrite::Written(d))
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
        let mut g = self.lock();
        let live: Vec<Draft> = g
            .drafts
            .range((from.clone(), String::new())..)
            .take_while(|((owner, _), _)| owner == from)
            .filter(|(_, d)| !d.deleted)
            .map(|(_, d)| d.clone())
            .collect();
        let mut moved = Vec::with_capacity(live.len());
        for anon in live {
            let key = Inner::key(to, &anon.conversation);
            // Blob ids travel with the metadata, so the bytes need no copying. A merge
            // that fails leaves this conversation (and the rest) with `from`.
            let d = merge(g.drafts.get(&key), &anon, to, now)?;
            g.drafts.remove(&Inner::key(from, &anon.conversation));
            g.drafts.insert(key, d);
            moved.push(anon.conversation);
        }
        Ok(moved)
    }

    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        let mut g = self.lock();
        let doomed: Vec<(Principal, String)> = g
            .drafts
            .iter()
            .filter(|(_, d)| d.updated_at < before)
            .take(cap(limit))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            if let Some(d) = g.drafts.remove(k) {
                g.free_blobs(&d.attachments);
            }
        }
        Ok(doomed.len())
    }
}

#[async_trait::async_trait]
impl SnapshotStore for MemoryStore {
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        Ok(self.lock().snapshots.get(room).cloned())
    }

    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<SnapshotWrite> {
        let SnapshotPut {
            room,
            expected_version,
            data,
            content_type,
            by,
            retain_until,
            now,
        } = put;
        let mut g = self.lock();
        let cur = g.snapshots.get(room);
        if cur.map_or(0, |s| s.version) != expected_version {
            return Ok(SnapshotWrite::Conflict(cur.map(|s| Snapshot {
                data: Vec::new(),
                ..s.clone()
            })));
        }
        let s = Snapshot {
            room: room.to_owned(),
            version: expected_version + 1,
            hash: content_hash(data),
            content_type: content_type.to_owned(),
            data: data.to_vec(),
            size: data.len() as u64,
            updated_at: now,
            updated_by: by.map(str::to_owned),
            retain_until,
        };
        g.snapshots.insert(room.to_owned(), s.clone());
        Ok(SnapshotWrite::Written(Snapshot {
            data: Vec::new(),
            ..s
        }))
    }

    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        if let Some(s) = self.lock().snapshots.get_mut(room) {
            s.retain_until = until;
        }
        Ok(())
    }

    async fn snapshot_usage(&self, by: &str, except_room: &str) -> Result<SnapshotUsage> {
        let g = self.lock();
        let mine = g
            .snapshots
            .values()
            .filter(|s| s.room != except_room && s.updated_by.as_deref() == Some(by));
        Ok(mine.fold(SnapshotUsage::default(), |u, s| SnapshotUsage {
            rooms: u.rooms + 1,
            bytes: u.bytes + s.size,
        }))
    }

    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        let mut g = self.lock();
        let doomed: Vec<String> = g
            .snapshots
            .values()
            .filter(|s| s.retain_until.is_some_and(|t| t <= now))
            .take(cap(limit))
            .map(|s| s.room.clone())
            .collect();
        for r in &doomed {
            g.snapshots.remove(r);
        }
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_core::draft::AttachmentLimits;
    use sessiond_core::Store;
    use std::sync::Arc;

    sessiond_testkit::conformance_suite!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });

    #[tokio::test]
    async fn a_failing_audit_append_fails_the_change() {
        let store = Arc::new(MemoryStore::new());
        let armed = store.clone();
        sessiond_testkit::conformance::sessions::check_failed_audit_fails_change(
            store.clone() as Arc<dyn Store>,
            || async move { armed.fail_audit(true) },
        )
        .await;
    }

    #[tokio::test]
    async fn replaced_and_deleted_attachments_free_their_bytes() {
        let store = MemoryStore::new();
        let p = Principal::user("a");
        let limits = AttachmentLimits {
            max_size: 100,
            quota: 100,
        };
        let body = |b: &'static [u8]| -> ByteStream {
            Box::pin(futures::stream::iter([Ok(Bytes::from_static(b))]))
        };
        let put = |expected_seq, now| AttachmentPut {
            principal: &p,
            conversation: "c",
            expected_seq,
            name: "x",
            content_type: "t/t",
            limits,
            now,
            text: None,
            content_sha256: None,
        };
        store.put_attachment(put(0, 1), body(b"one")).await.unwrap();
        store.put_attachment(put(1, 2), body(b"two")).await.unwrap();
        assert_eq!(store.lock().blobs.len(), 1);
        store.delete_draft(&p, "c", 2, 3).await.unwrap();
        assert!(store.lock().blobs.is_empty());
    }
}
