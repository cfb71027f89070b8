//! The in-memory session cache: records by handle, the token index, and the timer queue,
//! all behind one mutex so a lookup, its activity and its timer move in one locking.

use super::types::Seen;
use sessiond_core::intern::Interner;
use sessiond_core::timer::DeadlineQueue;
use sessiond_core::token::RandomKeys;
use sessiond_core::{Handle, Session, Timestamp, TokenHash};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// A cached session and whether its activity still has to reach the store.
pub(super) struct Entry {
    pub session: Session,
    pub dirty: bool,
    /// Whether the expiry warning for the current idle deadline was already sent.
    pub warned: bool,
    /// When the record was last read from (or written to) the store; in cluster mode an
    /// entry older than [`super::ClusterMode::revalidate_ms`] is re-read before it is trusted.
    pub validated_at: Timestamp,
    /// When a renewal was last written through and audited (0: never); renewals within
    /// the service's renew window after it are coalesced like activity.
    pub renewed_at: Timestamp,
}

impl Entry {
    /// Takes where a live session was just seen from (IP, user agent) when it differs
    /// from the record, marking it dirty so the flusher writes it with the next batch of
    /// activity: one write per change, not per request.
    pub fn note_client(&mut self, client: &Seen<'_>) {
        if !self.session.is_active() {
            return;
        }
        let s = &mut self.session;
        let mut changed = false;
        if client.ip_differs(s.client_ip.as_deref()) {
            s.client_ip = client.ip.map(|i| i.to_string());
            changed = true;
        }
        if client.user_agent_differs(s.user_agent.as_deref()) {
            // Not interned (the cache is borrowed here): a session's agent changes when
            // its browser updates, rarely enough that this copy costs nothing much.
            s.user_agent = client.user_agent.map(Arc::from);
            changed = true;
        }
        if changed {
            self.dirty = true;
        }
    }
}

/// The token index's key: eight bytes of the token's hash that are SHA-256 output, so
/// already uniform (its head is a time prefix, shared by the tokens of a millisecond).
fn token_key(hash: &TokenHash) -> u64 {
    hash.uniform_u64()
}

/// Distinct user agents the cache shares among its records (see [`Interner`]).
const AGENTS_KEPT: usize = 4096;

/// State behind one mutex: no `.await` happens while it is held, so a std mutex is
/// right (and cheaper than tokio's).
pub(super) struct Cache {
    /// Boxed: a hash table keeps up to about twice its entries' slots (capacity is a
    /// power of two), so inline records (~300 B each) would cost about as much again in
    /// empty slots; a slot holding a pointer wastes 8 B.
    pub by_handle: HashMap<Handle, Box<Entry>, RandomKeys>,
    /// Token index by the first 8 bytes of the hash (16 B a slot instead of 48; a
    /// million sessions save about 50 MB). Only an index: every hit is checked against
    /// the record's full hash in constant time, so a prefix shared by two sessions (a
    /// 2^-64 chance per pair) costs the one not indexed a store read, never a wrong
    /// session.
    by_token: HashMap<u64, Handle, RandomKeys>,
    /// Next scheduler event per session: the warning time, then the deadline. Read
    /// here; set only through [`Cache::schedule`], which wakes the scheduler.
    pub timers: DeadlineQueue<Handle, RandomKeys>,
    /// Signalled when a timer is set before [`Cache::sleeps_until`]: the scheduler sleeps
    /// until its next deadline, not in short naps (two tasks waking ten times a second
    /// were most of an idle server's CPU).
    pub wake: Arc<Notify>,
    /// When a sleeping scheduler task looks at the timer next (`i64::MAX`: unknown).
    pub sleeps_until: Timestamp,
    /// Handles of entries that turned dirty since the last flush (see
    /// [`Cache::queue_dirty`]), so a flush visits those, not the whole cache: a scan of a
    /// million entries held this lock for about 90 ms every flush interval, and every
    /// request and ending waited. A handle may be listed twice, or be clean or gone by
    /// the flush; the entry's own flag decides.
    dirtied: Vec<Handle>,
    /// User agents shared by the cached records: at a million sessions a copy each was
    /// about 128 B of every idle session's RSS, for a few distinct values.
    agents: Interner,
    capacity: usize,
}

impl Cache {
    /// A cache of at most `capacity` records (never fewer than 16).
    pub fn new(capacity: usize) -> Self {
        Cache {
            by_handle: HashMap::default(),
            by_token: HashMap::default(),
            timers: DeadlineQueue::default(),
            wake: Arc::new(Notify::new()),
            sleeps_until: Timestamp::MAX,
            dirtied: Vec::new(),
            agents: Interner::new(AGENTS_KEPT),
            capacity: capacity.max(16),
        }
    }

    /// The entry a token names, checked in constant time against the record's hash.
    pub fn by_token_mut(&mut self, hash: &TokenHash) -> Option<&mut Entry> {
        let handle = self.by_token.get(&token_key(hash))?;
        self.by_handle
            .get_mut(handle)
            .filter(|e| e.session.token_hash.ct_eq(hash))
            .map(|b| &mut **b)
    }

    /// Puts a record in (replacing the old one and its token), scheduling `timer` or,
    /// with `None`, cancelling the session's timer. At capacity clean entries are
    /// evicted: the store has their state and the timer keeps their handle.
    ///
    /// A record older than the cached one (an earlier rotation, or still active while the
    /// cached one ended; [`Session::is_older_than`]) is refused and nothing changes: it
    /// was read from the store before a rotation or ending committed, and putting it back
    /// would make a rotated-away token work again. Returns whether it went in.
    #[must_use = "a refused record must not be used as the session's state"]
    pub fn insert(
        &mut self,
        s: Session,
        dirty: bool,
        timer: Option<Timestamp>,
        now: Timestamp,
    ) -> bool {
        if self
            .by_handle
            .get(&s.handle)
            .is_some_and(|cur| s.is_older_than(&cur.session))
        {
            return false;
        }
        match timer {
            Some(t) => self.schedule(s.handle, t),
            None => {
                self.timers.cancel(&s.handle);
            }
        }
        if self.by_handle.len() >= self.capacity && !self.by_handle.contains_key(&s.handle) {
            let victims: Vec<Handle> = self
                .by_handle
                .iter()
                .filter(|(_, e)| !e.dirty)
                .take(self.capacity / 16 + 1)
                .map(|(h, _)| *h)
                .collect();
            for h in victims {
                self.remove(&h);
            }
        }
        if let Some(old) = self.by_handle.get(&s.handle) {
            if !old.session.token_hash.ct_eq(&s.token_hash) {
                // A rotated token stops naming the session at once.
                let old_hash = old.session.token_hash;
                self.unindex(&old_hash, &s.handle);
            }
        }
        let mut s = s;
        if let Some(ua) = s.user_agent.take() {
            s.user_agent = Some(self.agents.intern(ua));
        }
        self.by_token.insert(token_key(&s.token_hash), s.handle);
        if dirty {
            self.dirtied.push(s.handle);
        }
        // Survives a re-read of the same session (cluster revalidation before a renew).
        let renewed_at = self.by_handle.get(&s.handle).map_or(0, |e| e.renewed_at);
        self.by_handle.insert(
            s.handle,
            Box::new(Entry {
                session: s,
                dirty,
                warned: false,
                validated_at: now,
                renewed_at,
            }),
        );
        true
    }

    /// Sets `handle`'s timer to `t`, waking the scheduler if it sleeps past `t`.
    pub fn schedule(&mut self, handle: Handle, t: Timestamp) {
        self.timers.schedule(handle, t);
        if t < self.sleeps_until {
            // Lowered so later timers past `t` do not signal again before it looks.
            self.sleeps_until = t;
            self.wake.notify_waiters();
        }
    }

    /// Lists an entry that just turned dirty (its flag went from clean to dirty) for the
    /// next [`Cache::take_dirty`]. Every such change must be listed, or its activity
    /// waits for the session's ending to be written.
    pub fn queue_dirty(&mut self, handle: Handle) {
        self.dirtied.push(handle);
    }

    /// Marks an entry dirty (a write of its activity failed), listing it if it was clean.
    pub fn mark_dirty(&mut self, handle: &Handle) {
        if let Some(e) = self.by_handle.get_mut(handle) {
            if !e.dirty {
                e.dirty = true;
                self.dirtied.push(*handle);
            }
        }
    }

    /// The records of the first `max` entries listed as dirty, marked clean: a batch of
    /// what a flush writes (an entry written on its own since is skipped, so a batch may
    /// hold fewer).
    pub fn take_dirty<T>(&mut self, max: usize, f: impl Fn(&Session) -> T) -> Vec<T> {
        let n = self.dirtied.len().min(max);
        let mut out = Vec::with_capacity(n);
        for h in self.dirtied.drain(..n) {
            if let Some(e) = self.by_handle.get_mut(&h) {
                if std::mem::take(&mut e.dirty) {
                    out.push(f(&e.session));
                }
            }
        }
        out
    }

    /// How many entries are listed as dirty (an upper bound of what a flush writes).
    pub fn dirty_listed(&self) -> usize {
        self.dirtied.len()
    }

    /// Drops a record and its token (the timer is left alone).
    pub fn remove(&mut self, handle: &Handle) -> Option<Entry> {
        let e = self.by_handle.remove(handle)?;
        self.unindex(&e.session.token_hash, handle);
        Some(*e)
    }

    /// Drops `hash` from the token index if it names `handle` there (a session sharing
    /// the prefix keeps its entry).
    fn unindex(&mut self, hash: &TokenHash, handle: &Handle) {
        let key = token_key(hash);
        if self.by_token.get(&key) == Some(handle) {
            self.by_token.remove(&key);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_handle.len()
    }
}
