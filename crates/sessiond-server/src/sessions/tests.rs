//! Unit tests of the session service on a manual clock over the memory store: the
//! scheduler, flusher and cache are driven step by step (`tick`, `flush`), so nothing
//! here sleeps in real time.

use super::*;
use crate::bus::Event;
use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
use sessiond_core::lifecycle::ClientInfo;
use sessiond_core::policy::Policy;
use sessiond_core::quota::DataUsage;
use sessiond_core::store::prelude::*;
use sessiond_core::store::{
    CreateOutcome, DraftMove, Expiry, IdempotencyRecord, Result, SessionFilter, Touch,
};
use sessiond_core::{
    EndReason, Handle, ManualClock, Principal, Session, Store, StoreError, Timestamp, Token,
    TokenHash,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

const T0: Timestamp = 1_700_000_000_000;
const IDLE_MS: i64 = 60_000;
const ABSOLUTE_MS: i64 = 300_000;
const WARN_MS: i64 = 10_000;

/// The memory store's sessions behind a switch that makes every session call fail as
/// unreachable, counting the activity writes (`touch_session` / `touch_sessions` calls)
/// that reach it. Audit, drafts and snapshots stay the memory store's own.
#[derive(Default)]
struct Faulty {
    inner: Arc<sessiond_store_memory::MemoryStore>,
    down: AtomicBool,
    /// What `time_ordered_handles` answers (the memory store says no).
    ordered: AtomicBool,
    writes: AtomicUsize,
    /// Armed by a test: the next `#[gated]` read, once it has its answer from the store,
    /// signals the first `Notify` and waits on the second before returning it.
    gate: std::sync::Mutex<Option<(Arc<Notify>, Arc<Notify>)>>,
}

impl Faulty {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }

    /// Holds a read that has its answer until the test releases it (once per arming).
    async fn hold(&self) {
        let armed = self.gate.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((read, release)) = armed {
            read.notify_one();
            release.notified().await;
        }
    }
}

/// Implements `SessionStore` for `Faulty`: each method checks the switch, calls the
/// memory store's method, and counts activity writes when marked `counted` or holds its
/// answer at the test's gate when marked `gated`.
macro_rules! switched_sessions {
    ($($(#[$counted:ident])? fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait::async_trait]
        impl SessionStore for Faulty {
            fn time_ordered_handles(&self) -> bool {
                self.ordered.load(Ordering::SeqCst)
            }
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.check()?;
                    let answer = self.inner.$name($($arg),*).await;
                    $(switched_sessions!(@$counted self);)?
                    answer
                }
            )*
        }
    };
    (@counted $s:ident) => {
        $s.writes.fetch_add(1, Ordering::SeqCst);
    };
    (@gated $s:ident) => {
        $s.hold().await;
    };
}

switched_sessions! {
    fn ping(&self) -> Result<()>;
    fn create_session(&self, s: &Session, idem: Option<&IdempotencyRecord>, audit: &[AuditEvent]) -> Result<CreateOutcome>;
    fn get_session(&self, handle: &Handle) -> Result<Option<Session>>;
    #[gated] fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>>;
    fn update_session(&self, s: &Session, expected_token: &TokenHash, audit: &[AuditEvent], draft_move: Option<&DraftMove>) -> Result<bool>;
    #[counted] fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool>;
    #[counted] fn touch_sessions(&self, touches: &[Touch]) -> Result<()>;
    fn end_session(&self, handle: &Handle, reason: EndReason, now: Timestamp, audit: &[AuditEvent]) -> Result<Option<Session>>;
    fn expire_session(&self, seen: &Expiry, reason: EndReason, now: Timestamp, audit: &[AuditEvent]) -> Result<Option<Session>>;
    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>>;
    fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>>;
    fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize>;
    fn count_active_sessions(&self) -> Result<u64>;
    fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>>;
    fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool>;
    fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool>;
    fn purge_claims(&self, now: Timestamp, limit: usize) -> Result<usize>;
    fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>>;
    fn put_data(&self, handle: &Handle, key: &str, value: &serde_json::Value) -> Result<bool>;
    fn put_data_if(&self, handle: &Handle, key: &str, expected: Option<&serde_json::Value>, value: &serde_json::Value) -> Result<bool>;
    fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool>;
    fn data_usage(&self, handle: &Handle, key: &str) -> Result<DataUsage>;
}

struct Harness {
    svc: Arc<SessionService>,
    store: Arc<Faulty>,
    clock: ManualClock,
    events: broadcast::Receiver<Event>,
}

fn policies() -> Policies {
    let mut p = Policy::new(IDLE_MS as u64 / 1000, ABSOLUTE_MS as u64 / 1000);
    p.warn_before = Duration::from_millis(WARN_MS as u64);
    let mut roles = BTreeMap::new();
    roles.insert("editor".to_owned(), p.clone());
    roles.insert("admin".to_owned(), p);
    Policies {
        roles,
        default_role: "editor".into(),
    }
}

fn harness(capacity: usize) -> Harness {
    let store = Arc::new(Faulty::default());
    let clock = ManualClock::new(T0);
    let bus = Bus::new();
    let events = bus.subscribe();
    let whole: Arc<dyn Store> = Arc::new(store.inner.clone().split().with_sessions(store.clone()));
    let svc = Arc::new(SessionService::new(
        whole,
        Arc::new(clock.clone()),
        policies(),
        bus,
        capacity,
    ));
    Harness {
        svc,
        store,
        clock,
        events,
    }
}

impl Harness {
    async fn create(&self) -> (Session, Token) {
        match self
            .svc
            .get_or_create(None, None, &ClientInfo::default())
            .await
            .expect("create")
        {
            Obtained::Created { session, token } => (session, token),
            _ => panic!("no token and no key must create"),
        }
    }

    async fn stored(&self, h: &Handle) -> Session {
        self.store
            .inner
            .get_session(h)
            .await
            .unwrap()
            .expect("stored")
    }

    /// Events published since the last call.
    fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    async fn audits(&self, h: &Handle, kind: AuditKind) -> Vec<AuditEvent> {
        let f = AuditFilter {
            handle: Some(h.to_string()),
            kind: Some(kind),
            limit: 100,
            ..Default::default()
        };
        self.store.inner.query_audit(&f).await.unwrap()
    }
}

fn sign_in_as(user: &str) -> SignIn {
    SignIn {
        user_id: user.into(),
        role: "admin".into(),
        rooms: None,
        once: TicketUse {
            key: format!("ticket:{}", sessiond_core::token::random_id(16)),
            until: T0 + 3_600_000,
        },
    }
}

#[tokio::test]
async fn a_ticket_signs_in_once_and_its_replay_changes_nothing() {
    let h = harness(100);
    let (anon, token) = h.create().await;
    let who = sign_in_as("alice");
    let once = who.once.clone();
    h.svc
        .sign_in(Some(&token.hash()), who, &ClientInfo::default())
        .await
        .expect("first use");
    let (other, other_token) = h.create().await;
    let mut replay = sign_in_as("alice");
    replay.once = once;
    assert!(matches!(
        h.svc
            .sign_in(Some(&other_token.hash()), replay, &ClientInfo::default())
            .await,
        Err(SessionError::TicketReused)
    ));
    // The replaying session stays anonymous; the first one is alice's.
    assert!(h.stored(&other.handle).await.principal.is_anonymous());
    assert_eq!(
        h.stored(&anon.handle).await.principal,
        Principal::user("alice")
    );
}

#[tokio::test]
async fn an_idempotent_replay_after_the_window_gets_no_token() {
    let h = harness(100);
    let key = "key-window-0123456789";
    let idem = || {
        Some(Idempotency {
            key,
            fingerprint: crate::idempotency::fingerprint(false),
        })
    };
    let client = ClientInfo::default();
    assert!(matches!(
        h.svc.get_or_create(None, idem(), &client).await,
        Ok(Obtained::Created { .. })
    ));
    // Inside the window (and the session's idle timeout): the token comes back.
    h.clock.advance_ms(IDLE_MS / 2);
    assert!(matches!(
        h.svc.get_or_create(None, idem(), &client).await,
        Ok(Obtained::Replayed { .. })
    ));
    h.clock
        .advance_ms(DEFAULT_REPLAY_WINDOW.as_millis() as i64 - IDLE_MS / 2 + 1);
    assert!(matches!(
        h.svc.get_or_create(None, idem(), &client).await,
        Err(SessionError::IdempotencyExpired)
    ));
}

fn ended(events: &[Event]) -> Vec<(Handle, EndReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SessionEnded { handle, reason, .. } => Some((*handle, *reason)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn same_idempotency_key_gets_the_same_session_and_another_request_a_mismatch() {
    let h = harness(100);
    let key = "key-0123456789abcdef";
    let idem = |bearer| {
        Some(Idempotency {
            key,
            fingerprint: crate::idempotency::fingerprint(bearer),
        })
    };
    let client = ClientInfo::default();
    let (first, token) = match h.svc.get_or_create(None, idem(false), &client).await {
        Ok(Obtained::Created { session, token }) => (session, token),
        _ => panic!("the first keyed call creates"),
    };
    match h.svc.get_or_create(None, idem(false), &client).await {
        Ok(Obtained::Replayed {
            session,
            token: again,
        }) => {
            assert_eq!(session.handle, first.handle);
            assert_eq!(again, token);
        }
        _ => panic!("the same key and request replays"),
    }
    assert!(matches!(
        h.svc.get_or_create(None, idem(true), &client).await,
        Err(SessionError::IdempotencyMismatch)
    ));
    // Only the one session was made.
    let filter = SessionFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(h.store.inner.list_sessions(&filter).await.unwrap().len(), 1);
    // A live token is simply the current session.
    match h
        .svc
        .get_or_create(Some(&token.hash()), None, &client)
        .await
    {
        Ok(Obtained::Current(s)) => assert_eq!(s.handle, first.handle),
        _ => panic!("a live token names its session"),
    }
}

#[tokio::test]
async fn sign_in_rotates_the_token_and_the_old_one_is_refused() {
    let h = harness(100);
    let (anon, old) = h.create().await;
    let signed = h
        .svc
        .sign_in(
            Some(&old.hash()),
            sign_in_as("alice"),
            &ClientInfo::default(),
        )
        .await
        .expect("sign in");
    assert!(!signed.created && signed.presented_live);
    assert_eq!(signed.session.handle, anon.handle, "the session is kept");
    assert_eq!(signed.session.principal, Principal::user("alice"));
    assert_ne!(signed.token, old);
    assert!(matches!(
        h.svc.authenticate(&old.hash(), false).await,
        Err(SessionError::Unauthenticated)
    ));
    // Not from the cache, not from the store.
    h.svc.forget(&anon.handle);
    assert!(matches!(
        h.svc.authenticate(&old.hash(), false).await,
        Err(SessionError::Unauthenticated)
    ));
    let s = h
        .svc
        .authenticate(&signed.token.hash(), false)
        .await
        .unwrap();
    assert_eq!(s.handle, anon.handle);
    assert_eq!(h.audits(&anon.handle, AuditKind::SignedIn).await.len(), 1);
    assert_eq!(
        h.audits(&anon.handle, AuditKind::TokenRotated).await.len(),
        1
    );

    // Another user on the same browser: alice is signed out, bob gets a new session.
    let bob = h
        .svc
        .sign_in(
            Some(&signed.token.hash()),
            sign_in_as("bob"),
            &ClientInfo::default(),
        )
        .await
        .expect("sign in as bob");
    assert!(bob.created && bob.presented_live);
    assert_ne!(bob.session.handle, anon.handle);
    let alice = h.stored(&anon.handle).await;
    assert_eq!(alice.end_reason, Some(EndReason::SignedOut));
}

/// Finding 7: a request with the old token whose store read happened just before a
/// sign-in committed must not put the pre-rotation record back into the cache: the old
/// token would work again (until the next request with the new one).
#[tokio::test]
async fn a_read_that_raced_a_sign_in_never_revives_the_old_token() {
    let h = harness(100);
    let (anon, old) = h.create().await;
    // Not cached on this node (evicted, or first seen here): the request reads the store.
    h.svc.forget(&anon.handle);
    let (read, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    *h.store.gate.lock().unwrap() = Some((read.clone(), release.clone()));
    let racer = {
        let (svc, hash) = (h.svc.clone(), old.hash());
        tokio::spawn(async move { svc.authenticate(&hash, true).await })
    };
    // The racing request holds the pre-rotation record, read from the store...
    read.notified().await;
    // ...while the sign-in rotates the token and commits.
    let signed = h
        .svc
        .sign_in(
            Some(&old.hash()),
            sign_in_as("alice"),
            &ClientInfo::default(),
        )
        .await
        .expect("sign in");
    assert_eq!(signed.session.version, anon.version + 1);
    release.notify_one();
    let raced = racer.await.unwrap();
    assert!(
        matches!(raced, Err(SessionError::Unauthenticated)),
        "the racing request completed after the rotation: {raced:?}"
    );
    // The old token is dead and the new one names the signed-in record, from the cache.
    assert!(matches!(
        h.svc.authenticate(&old.hash(), true).await,
        Err(SessionError::Unauthenticated)
    ));
    let cached = h.svc.cached(&anon.handle).expect("cached");
    assert_eq!(cached.token_hash, signed.token.hash());
    assert_eq!(cached.principal, Principal::user("alice"));
    h.store.down.store(true, Ordering::SeqCst);
    let s = h.svc.authenticate(&signed.token.hash(), false).await;
    assert_eq!(
        s.expect("served by the cache").version,
        signed.session.version
    );
}

/// Finding 2 (service side): a caller that authenticated before a rotation (an open
/// WebSocket) is refused with `Rotated` and nothing is recorded; the rotation is published.
#[tokio::test]
async fn a_caller_from_before_a_rotation_is_refused_and_the_rotation_is_announced() {
    let mut h = harness(100);
    let (anon, old) = h.create().await;
    let before = Credential::of(&anon);
    h.svc
        .touch(&before)
        .await
        .expect("valid before the sign-in");
    h.drain();
    let signed = h
        .svc
        .sign_in(
            Some(&old.hash()),
            sign_in_as("alice"),
            &ClientInfo::default(),
        )
        .await
        .expect("sign in");
    assert!(h.drain().iter().any(|e| matches!(e,
        Event::SessionRotated { handle, version }
            if *handle == anon.handle && *version == signed.session.version)));
    h.clock.advance_ms(5_000);
    let idle = h.svc.cached(&anon.handle).unwrap().idle_expires_at;
    for r in [
        h.svc.renew(&before).await,
        h.svc.touch(&before).await,
        h.svc.current(&before).await,
    ] {
        assert!(matches!(r, Err(SessionError::Rotated)), "{r:?}");
    }
    assert_eq!(h.svc.cached(&anon.handle).unwrap().idle_expires_at, idle);
    assert!(h.audits(&anon.handle, AuditKind::Renewed).await.is_empty());
    // Also when the record must first be read from the store.
    h.svc.forget(&anon.handle);
    assert!(matches!(
        h.svc.renew(&before).await,
        Err(SessionError::Rotated)
    ));
    let now = Credential::of(&signed.session);
    assert!(h.svc.renew(&now).await.is_ok());
}

#[tokio::test]
async fn sign_in_moves_anonymous_drafts_to_the_user() {
    let h = harness(100);
    let (anon, token) = h.create().await;
    h.store
        .inner
        .put_draft_text(&anon.principal, "c1", 0, "hello", T0)
        .await
        .unwrap();
    let signed = h
        .svc
        .sign_in(
            Some(&token.hash()),
            sign_in_as("carol"),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    let user = Principal::user("carol");
    assert_eq!(signed.session.principal, user);
    assert!(h
        .store
        .inner
        .get_draft(&user, "c1")
        .await
        .unwrap()
        .is_some());
    assert!(h
        .store
        .inner
        .get_draft(&anon.principal, "c1")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn new_sessions_take_time_ordered_handles_only_from_a_store_that_wants_them() {
    let h = harness(100);
    // Random handles (and principals that lead with the creation millisecond, masked).
    let (a, _) = h.create().await;
    let (b, _) = h.create().await;
    assert_ne!(a.handle.0[..4], b.handle.0[..4]);
    assert_eq!(a.principal.as_str()[..5 + 5], b.principal.as_str()[..5 + 5]);
    assert_ne!(a.principal, b.principal);
    // A store that keeps sessions in B-trees gets handles that share a prefix when made
    // in the same millisecond, and stores them like any other.
    h.store.ordered.store(true, Ordering::SeqCst);
    let (c, ct) = h.create().await;
    let (d, _) = h.create().await;
    assert_eq!(c.handle.0[..4], d.handle.0[..4]);
    assert_ne!(c.handle, d.handle);
    h.clock.advance_ms(1);
    let (e, _) = h.create().await;
    assert_eq!(c.handle.0[..3], e.handle.0[..3]);
    assert_ne!(c.handle.0[3], e.handle.0[3]);
    assert_eq!(h.stored(&c.handle).await.principal, c.principal);
    let found = h
        .svc
        .authenticate(&ct.hash(), false)
        .await
        .expect("found by token");
    assert_eq!(found.handle, c.handle);
}

#[tokio::test]
async fn renew_moves_the_idle_deadline_but_never_past_the_absolute_one() {
    let h = harness(100);
    let (s, _) = h.create().await;
    h.clock.advance_ms(30_000);
    let r = h.svc.renew(&Credential::of(&s)).await.unwrap();
    assert_eq!(r.idle_expires_at, T0 + 30_000 + IDLE_MS);
    assert_eq!(
        h.stored(&s.handle).await.idle_expires_at,
        r.idle_expires_at,
        "renewal is written through"
    );
    // Keep renewing until close to the absolute deadline.
    for _ in 0..5 {
        h.clock.advance_ms(50_000);
        h.svc.renew(&Credential::of(&s)).await.unwrap();
    }
    let r = h.svc.renew(&Credential::of(&s)).await.unwrap();
    assert_eq!(h.clock.now(), T0 + 280_000);
    assert_eq!(
        r.idle_expires_at,
        T0 + ABSOLUTE_MS,
        "capped at the absolute deadline"
    );
    assert_eq!(r.absolute_expires_at, T0 + ABSOLUTE_MS);
    assert_eq!(h.audits(&s.handle, AuditKind::Renewed).await.len(), 7);
}

#[tokio::test]
async fn many_touches_make_one_store_write_per_flush_with_the_latest_deadline() {
    let h = harness(100);
    let (s, token) = h.create().await;
    for _ in 0..5 {
        h.clock.advance_ms(1_000);
        h.svc.authenticate(&token.hash(), true).await.unwrap();
        h.svc.touch(&Credential::of(&s)).await.unwrap();
    }
    assert_eq!(
        h.store.writes.load(Ordering::SeqCst),
        0,
        "touches are not written one by one"
    );
    assert_eq!(h.stored(&s.handle).await.idle_expires_at, T0 + IDLE_MS);
    assert_eq!(h.svc.flush().await.unwrap(), 1);
    assert_eq!(h.store.writes.load(Ordering::SeqCst), 1);
    let stored = h.stored(&s.handle).await;
    assert_eq!(
        stored.idle_expires_at,
        T0 + 5_000 + IDLE_MS,
        "the latest deadline is kept"
    );
    assert_eq!(stored.last_activity_at, T0 + 5_000);
    assert_eq!(h.svc.flush().await.unwrap(), 0, "nothing left to write");
    assert_eq!(h.store.writes.load(Ordering::SeqCst), 1);
    // A lookup without activity writes nothing either.
    h.svc.authenticate(&token.hash(), false).await.unwrap();
    assert_eq!(h.svc.flush().await.unwrap(), 0);
}

#[tokio::test]
async fn a_flush_writes_each_session_changed_since_the_last_one_once_and_no_other() {
    let h = harness(100);
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(h.create().await);
    }
    h.clock.advance_ms(1_000);
    // Two of five: one touched twice, then seen from a new address (a change of its own).
    for (_, token) in [&made[1], &made[3], &made[3]] {
        h.svc.authenticate(&token.hash(), true).await.unwrap();
    }
    let moved = ClientInfo {
        ip: Some("203.0.113.9".into()),
        user_agent: None,
    };
    h.svc.seen_from(&made[3].0.handle, &moved);
    // Only seen from a new address: written too.
    h.svc.seen_from(&made[4].0.handle, &moved);
    assert_eq!(h.svc.flush().await.unwrap(), 3);
    assert_eq!(h.store.writes.load(Ordering::SeqCst), 1, "one batch");
    for (i, (s, _)) in made.iter().enumerate() {
        let stored = h.stored(&s.handle).await;
        let touched = i == 1 || i == 3;
        assert_eq!(
            stored.last_activity_at,
            T0 + if touched { 1_000 } else { 0 }
        );
        let seen = i == 3 || i == 4;
        assert_eq!(stored.client_ip.as_deref(), seen.then_some("203.0.113.9"));
    }
    assert_eq!(h.svc.flush().await.unwrap(), 0, "nothing left to write");
    // Written on its own (as before an ending), then touched again before the next
    // flush: the flush writes the later activity, once.
    h.clock.advance_ms(1_000);
    h.svc.authenticate(&made[1].1.hash(), true).await.unwrap();
    h.svc.flush_one(&made[1].0.handle).await.unwrap();
    assert_eq!(
        h.stored(&made[1].0.handle).await.last_activity_at,
        T0 + 2_000
    );
    h.clock.advance_ms(1_000);
    h.svc.authenticate(&made[1].1.hash(), true).await.unwrap();
    assert_eq!(h.svc.flush().await.unwrap(), 1);
    assert_eq!(
        h.stored(&made[1].0.handle).await.last_activity_at,
        T0 + 3_000
    );
    assert_eq!(h.svc.flush().await.unwrap(), 0);
}

#[tokio::test]
async fn a_flush_writes_many_sessions_in_bounded_batches_and_each_once() {
    use super::flusher::FLUSH_BATCH;
    let h = harness(100);
    let mut made = Vec::new();
    for _ in 0..FLUSH_BATCH + 5 {
        made.push(h.create().await);
    }
    h.clock.advance_ms(1_000);
    for (_, token) in &made {
        h.svc.authenticate(&token.hash(), true).await.unwrap();
    }
    // One written on its own first: the flush skips it.
    h.svc.flush_one(&made[0].0.handle).await.unwrap();
    assert_eq!(h.store.writes.load(Ordering::SeqCst), 1);
    assert_eq!(h.svc.flush().await.unwrap(), FLUSH_BATCH + 4);
    assert_eq!(
        h.store.writes.load(Ordering::SeqCst),
        3,
        "two batches after the single write"
    );
    for (s, _) in &made {
        assert_eq!(h.stored(&s.handle).await.last_activity_at, T0 + 1_000);
    }
    assert_eq!(h.svc.flush().await.unwrap(), 0, "nothing left to write");
}

#[tokio::test]
async fn the_warning_comes_warn_before_the_idle_deadline_and_once() {
    let mut h = harness(100);
    let (s, token) = h.create().await;
    h.drain();
    h.clock.set(T0 + IDLE_MS - WARN_MS - 1);
    assert_eq!(h.svc.tick().await, 0);
    assert!(h.drain().is_empty(), "nothing before the warning time");
    h.clock.advance_ms(1);
    assert_eq!(h.svc.tick().await, 1);
    let events = h.drain();
    assert_eq!(
        events,
        vec![Event::ExpiryWarning {
            handle: s.handle,
            seconds_left: WARN_MS / 1000,
            idle_expires_at: T0 + IDLE_MS,
        }]
    );
    h.clock.advance_ms(1_000);
    assert_eq!(h.svc.tick().await, 0, "warned once");
    assert!(h.drain().is_empty());
    // Activity inside the warning window announces the new deadline.
    h.svc.authenticate(&token.hash(), true).await.unwrap();
    assert!(matches!(
        h.drain().as_slice(),
        [Event::SessionRenewed { handle, .. }] if *handle == s.handle
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_scheduler_ends_a_burst_more_than_its_slots_and_stops_on_shutdown() {
    let mut h = harness(2_000);
    let n = scheduler::FIRE_CONCURRENCY * 3 + 7;
    let mut handles = Vec::new();
    for _ in 0..n {
        handles.push(h.create().await.0.handle);
    }
    h.drain();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(Arc::clone(&h.svc).run_scheduler(stop.clone()));
    // Past the warning and the deadline at once: each session is warned, then ended, by
    // the running loop alone (no pass is driven here).
    h.clock.set(T0 + IDLE_MS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n && tokio::time::Instant::now() < deadline {
        seen.extend(ended(&h.drain()).into_iter().map(|(h, _)| h));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.len(), n, "every due session ended");
    for handle in &handles {
        assert_eq!(
            h.stored(handle).await.ended_at,
            Some(T0 + IDLE_MS),
            "ended at the moment it was taken from the timer"
        );
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
    // Stopped: a session due after shutdown stays active.
    let (late, _) = h.create().await;
    h.clock.set(T0 + 10 * IDLE_MS);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.stored(&late.handle).await.is_active());
}

/// The running scheduler sleeps until its next look (up to a second), and a timer set
/// before that look (a retry, a deadline found overdue) wakes it: on tokio's paused
/// clock, the scheduler looks at the session without the runtime's time reaching the
/// look it slept towards.
#[tokio::test(start_paused = true)]
async fn a_timer_set_before_the_sleeping_scheduler_looks_again_wakes_it() {
    let h = harness(100);
    let (s, _) = h.create().await;
    let warning = T0 + IDLE_MS - WARN_MS;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(Arc::clone(&h.svc).run_scheduler(stop.clone()));
    // Asleep: the session's warning is 50 s away on the service's clock.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let asleep = tokio::time::Instant::now();
    h.clock.set(T0 + 10);
    h.svc.lock().schedule(s.handle, T0 + 10);
    // Looked at: not due, so its timer goes back to the warning.
    while h.svc.lock().timers.deadline(&s.handle) != Some(warning)
        && asleep.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(h.svc.lock().timers.deadline(&s.handle), Some(warning));
    assert!(
        asleep.elapsed() < Duration::from_millis(100),
        "woken by the timer, not at its next look: {:?}",
        asleep.elapsed()
    );
    stop.cancel();
    running.await.expect("no panic");
}

#[tokio::test]
async fn activity_leaves_an_early_timer_that_warns_and_ends_only_at_the_moved_deadline() {
    let mut h = harness(100);
    let (s, token) = h.create().await;
    let touched = T0 + IDLE_MS / 2;
    h.clock.set(touched);
    h.svc.authenticate(&token.hash(), true).await.unwrap();
    h.drain();
    // The old warning time and the old deadline: nothing is sent, nothing ends.
    for at in [T0 + IDLE_MS - WARN_MS, T0 + IDLE_MS] {
        h.clock.set(at);
        assert_eq!(h.svc.tick().await, 0);
        assert!(h.drain().is_empty(), "nothing fired at {at}");
    }
    assert!(h.stored(&s.handle).await.is_active());
    // The moved ones fire, once each.
    h.clock.set(touched + IDLE_MS - WARN_MS);
    assert_eq!(h.svc.tick().await, 1);
    assert!(matches!(
        h.drain().as_slice(),
        [Event::ExpiryWarning { .. }]
    ));
    h.clock.set(touched + IDLE_MS);
    assert_eq!(h.svc.tick().await, 1);
    assert_eq!(ended(&h.drain()), vec![(s.handle, EndReason::IdleTimeout)]);
}

#[tokio::test]
async fn idle_expiry_ends_the_session_once_with_its_reason_and_an_audit_event() {
    let mut h = harness(100);
    let (s, token) = h.create().await;
    h.clock.set(T0 + IDLE_MS - 1);
    h.svc.tick().await;
    assert!(ended(&h.drain()).is_empty(), "not before the deadline");
    h.clock.set(T0 + IDLE_MS);
    assert_eq!(h.svc.tick().await, 1);
    assert_eq!(ended(&h.drain()), vec![(s.handle, EndReason::IdleTimeout)]);
    assert_eq!(
        h.stored(&s.handle).await.end_reason,
        Some(EndReason::IdleTimeout)
    );
    // Neither the scheduler, a lookup nor a late end() ends it again.
    h.clock.advance_ms(1_000);
    assert_eq!(h.svc.tick().await, 0);
    assert!(matches!(
        h.svc.authenticate(&token.hash(), true).await,
        Err(SessionError::Ended {
            reason: EndReason::IdleTimeout
        })
    ));
    assert!(h
        .svc
        .end(&s.handle, EndReason::Revoked)
        .await
        .unwrap()
        .is_none());
    assert!(ended(&h.drain()).is_empty());
    let audits = h.audits(&s.handle, AuditKind::Ended).await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].reason.as_deref(), Some("idle_timeout"));
}

/// Cluster mode: the scheduler ends a session on its cached copy without reading the
/// store first, so activity another node wrote meanwhile (which this node never heard
/// of) must make that ending a no-op; the session then ends at its new deadline, with
/// the other node's activity in its audit event.
#[tokio::test]
async fn cluster_expiry_on_a_stale_copy_defers_to_activity_written_elsewhere() {
    let mut h = harness(100);
    h.svc.enable_cluster_mode(Duration::from_millis(100));
    let (s, _) = h.create().await;
    // Another node's flushed activity, 5 s before the old deadline.
    let seen_at = T0 + IDLE_MS - 5_000;
    assert!(h
        .store
        .inner
        .touch_session(
            &Touch {
                handle: s.handle,
                last_activity_at: seen_at,
                last_seen_at: seen_at,
                idle_expires_at: seen_at + IDLE_MS,
                client_ip: None,
                user_agent: None,
            },
            &[]
        )
        .await
        .unwrap());
    assert_eq!(
        h.svc.cached(&s.handle).unwrap().idle_expires_at,
        T0 + IDLE_MS
    );
    h.clock.set(T0 + IDLE_MS);
    h.svc.tick().await;
    assert!(
        ended(&h.drain()).is_empty(),
        "the stale deadline ends nothing"
    );
    assert!(h.stored(&s.handle).await.is_active());
    assert!(h.audits(&s.handle, AuditKind::Ended).await.is_empty());
    assert_eq!(
        h.svc.cached(&s.handle).unwrap().idle_expires_at,
        seen_at + IDLE_MS,
        "the refusal re-read the record"
    );
    h.clock.set(seen_at + IDLE_MS - 1);
    h.svc.tick().await;
    assert!(ended(&h.drain()).is_empty(), "not before the new deadline");
    h.clock.set(seen_at + IDLE_MS);
    h.svc.tick().await;
    assert_eq!(ended(&h.drain()), vec![(s.handle, EndReason::IdleTimeout)]);
    let audits = h.audits(&s.handle, AuditKind::Ended).await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].last_activity_at, Some(seen_at));
}

#[tokio::test]
async fn absolute_expiry_ends_a_busy_session_once() {
    let mut h = harness(100);
    let (s, token) = h.create().await;
    while h.clock.now() + 40_000 < T0 + ABSOLUTE_MS {
        h.clock.advance_ms(40_000);
        h.svc.authenticate(&token.hash(), true).await.unwrap();
        h.svc.tick().await;
    }
    h.drain();
    h.clock.set(T0 + ABSOLUTE_MS);
    h.svc.tick().await;
    assert_eq!(
        ended(&h.drain()),
        vec![(s.handle, EndReason::AbsoluteTimeout)]
    );
    h.clock.advance_ms(1_000);
    h.svc.tick().await;
    assert!(matches!(
        h.svc.authenticate(&token.hash(), true).await,
        Err(SessionError::Ended {
            reason: EndReason::AbsoluteTimeout
        })
    ));
    assert!(ended(&h.drain()).is_empty());
    let audits = h.audits(&s.handle, AuditKind::Ended).await;
    assert_eq!(audits.len(), 1);
    assert_eq!(audits[0].reason.as_deref(), Some("absolute_timeout"));
}

#[tokio::test]
async fn an_overdue_session_found_by_a_lookup_ends_there() {
    let mut h = harness(100);
    let (s, token) = h.create().await;
    h.clock.set(T0 + IDLE_MS + 5);
    assert!(matches!(
        h.svc.authenticate(&token.hash(), false).await,
        Err(SessionError::Ended {
            reason: EndReason::IdleTimeout
        })
    ));
    assert_eq!(ended(&h.drain()), vec![(s.handle, EndReason::IdleTimeout)]);
    assert_eq!(h.svc.tick().await, 0, "the scheduler does not end it again");
    assert_eq!(h.audits(&s.handle, AuditKind::Ended).await.len(), 1);
}

#[tokio::test]
async fn the_cache_evicts_clean_entries_at_capacity() {
    let h = harness(16);
    let mut made = Vec::new();
    for _ in 0..16 {
        made.push(h.create().await);
    }
    assert_eq!(h.svc.lock().len(), 16);
    // Entries with unwritten activity must survive any eviction: all but the first.
    h.clock.advance_ms(1_000);
    for (_, t) in &made[1..] {
        h.svc.authenticate(&t.hash(), true).await.unwrap();
    }
    let (extra, _) = h.create().await;
    let cached = h.svc.lock().len();
    assert!(cached <= 16, "at most the capacity is cached, got {cached}");
    assert!(h.svc.cached(&extra.handle).is_some());
    assert!(
        h.svc.cached(&made[0].0.handle).is_none(),
        "the clean entry went"
    );
    assert!(
        made[1..]
            .iter()
            .all(|(s, _)| h.svc.cached(&s.handle).is_some()),
        "dirty entries are kept"
    );
    // Evicted sessions are still served from the store and keep their timers.
    assert_eq!(h.svc.timer_len(), 17);
    let (evicted, token) = &made[0];
    assert_eq!(
        h.svc
            .authenticate(&token.hash(), false)
            .await
            .unwrap()
            .handle,
        evicted.handle
    );
}

#[tokio::test]
async fn a_store_failure_is_unavailable_at_once_and_never_expires_blindly() {
    let mut h = harness(100);
    let (s, token) = h.create().await;
    h.clock.advance_ms(1_000);
    h.svc.authenticate(&token.hash(), true).await.unwrap();
    h.store.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        h.svc.authenticate(&Token::generate().hash(), false).await,
        Err(SessionError::Unavailable { .. })
    ));
    assert!(matches!(
        h.svc
            .get_or_create(None, None, &ClientInfo::default())
            .await,
        Err(SessionError::Unavailable { .. })
    ));
    assert!(matches!(
        h.svc.flush().await,
        Err(SessionError::Unavailable { .. })
    ));
    assert!(matches!(
        h.svc.renew(&Credential::of(&s)).await,
        Err(SessionError::Unavailable { .. })
    ));
    // Past the deadline with the store down: the ending waits for the store.
    h.clock.set(T0 + 1_000 + IDLE_MS);
    h.svc.tick().await;
    assert!(ended(&h.drain()).is_empty());
    h.store.down.store(false, Ordering::SeqCst);
    // The failed flushes kept the activity pending; it is written once the store is back.
    assert_eq!(h.svc.flush().await.unwrap(), 1);
    h.clock.advance_ms(500);
    h.svc.tick().await;
    assert_eq!(ended(&h.drain()), vec![(s.handle, EndReason::IdleTimeout)]);
}

#[tokio::test]
async fn sign_out_revoke_and_data_follow_the_session() {
    let h = harness(100);
    let (s, _) = h.create().await;
    let v = serde_json::json!({"k": 1});
    h.svc.put_data(&s, "a", &v).await.unwrap();
    assert_eq!(
        h.svc.get_data(&s.handle, "a").await.unwrap(),
        Some(v.clone())
    );
    h.svc.delete_data(&s.handle, "a").await.unwrap();
    assert!(matches!(
        h.svc.delete_data(&s.handle, "a").await,
        Err(SessionError::NotFound)
    ));
    h.svc.sign_out(&s.handle).await.unwrap();
    assert!(matches!(
        h.svc.put_data(&s, "a", &v).await,
        Err(SessionError::Ended {
            reason: EndReason::SignedOut
        })
    ));
    assert!(matches!(
        h.svc.revoke(&Handle::generate()).await,
        Err(SessionError::NotFound)
    ));
    // Revoking an ended session keeps its first reason.
    h.svc.revoke(&s.handle).await.unwrap();
    assert_eq!(
        h.stored(&s.handle).await.end_reason,
        Some(EndReason::SignedOut)
    );
}

#[tokio::test(start_paused = true)]
async fn the_background_loop_flushes_on_its_interval_and_once_more_when_cancelled() {
    let h = harness(100);
    let (s, token) = h.create().await;
    let flush_every = Duration::from_secs(5);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(h.svc.clone().run_background(flush_every, cancel.clone()));
    // Let the loop take its immediate first ticks.
    tokio::time::sleep(Duration::from_millis(1)).await;
    h.clock.advance_ms(1_000);
    h.svc.authenticate(&token.hash(), true).await.unwrap();
    // Paused time: this advances tokio's clock without waiting.
    tokio::time::sleep(flush_every).await;
    assert_eq!(
        h.stored(&s.handle).await.idle_expires_at,
        T0 + 1_000 + IDLE_MS
    );
    h.clock.advance_ms(1_000);
    h.svc.authenticate(&token.hash(), true).await.unwrap();
    cancel.cancel();
    task.await.unwrap();
    assert_eq!(
        h.stored(&s.handle).await.idle_expires_at,
        T0 + 2_000 + IDLE_MS,
        "the final flush wrote the last activity"
    );
}

// ---------------------------------------------------------------- work that cannot go missing

#[tokio::test]
async fn a_change_whose_audit_cannot_be_written_fails_and_changes_nothing() {
    let h = harness(100);
    let (s, token) = h.create().await;
    h.store.inner.fail_audit(true);

    // A new session is refused, none is left behind.
    assert!(matches!(
        h.svc
            .get_or_create(None, None, &ClientInfo::default())
            .await,
        Err(SessionError::Unavailable { .. })
    ));
    let all = h
        .store
        .inner
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "only the session made before the fault");

    // Revoke, renew and sign-in fail and change nothing.
    assert!(h.svc.revoke(&s.handle).await.is_err());
    assert!(
        h.stored(&s.handle).await.is_active(),
        "not ended unrecorded"
    );
    let who = Credential {
        handle: s.handle,
        token_hash: token.hash(),
    };
    assert!(h.svc.renew(&who).await.is_err());
    assert!(h
        .svc
        .sign_in(
            Some(&token.hash()),
            sign_in_as("alice"),
            &ClientInfo::default()
        )
        .await
        .is_err());
    let stored = h.stored(&s.handle).await;
    assert!(stored.principal.is_anonymous() && stored.token_hash == token.hash());

    // Once the audit can be written, the same calls succeed, each with its record.
    h.store.inner.fail_audit(false);
    h.svc.revoke(&s.handle).await.expect("revoke");
    assert!(!h.stored(&s.handle).await.is_active());
    assert_eq!(h.audits(&s.handle, AuditKind::Ended).await.len(), 1);
    assert_eq!(h.audits(&s.handle, AuditKind::Created).await.len(), 1);
    assert_eq!(h.audits(&s.handle, AuditKind::SignedIn).await.len(), 0);
}

/// The memory store's drafts with a switch that makes `move_drafts` fail.
struct NoMoves {
    inner: Arc<sessiond_store_memory::MemoryStore>,
    fail: AtomicBool,
}

#[async_trait::async_trait]
impl DraftStore for NoMoves {
    async fn get_draft(
        &self,
        p: &Principal,
        c: &str,
    ) -> Result<Option<sessiond_core::draft::Draft>> {
        self.inner.get_draft(p, c).await
    }
    async fn list_drafts(&self, p: &Principal) -> Result<Vec<sessiond_core::draft::Draft>> {
        self.inner.list_drafts(p).await
    }
    async fn put_draft_text(
        &self,
        p: &Principal,
        c: &str,
        seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<sessiond_core::draft::DraftWrite> {
        self.inner.put_draft_text(p, c, seq, text, now).await
    }
    async fn delete_draft(
        &self,
        p: &Principal,
        c: &str,
        seq: u64,
        now: Timestamp,
    ) -> Result<sessiond_core::draft::DraftWrite> {
        self.inner.delete_draft(p, c, seq, now).await
    }
    async fn put_attachment(
        &self,
        put: sessiond_core::store::AttachmentPut<'_>,
        body: sessiond_core::store::ByteStream,
    ) -> Result<sessiond_core::draft::DraftWrite> {
        self.inner.put_attachment(put, body).await
    }
    async fn get_attachment(
        &self,
        p: &Principal,
        c: &str,
        name: &str,
    ) -> Result<
        Option<(
            sessiond_core::draft::AttachmentMeta,
            sessiond_core::store::ByteStream,
        )>,
    > {
        self.inner.get_attachment(p, c, name).await
    }
    async fn delete_attachment(
        &self,
        p: &Principal,
        c: &str,
        seq: u64,
        name: &str,
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<sessiond_core::draft::DraftWrite> {
        self.inner
            .delete_attachment(p, c, seq, name, text, now)
            .await
    }
    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
        merge: &sessiond_core::store::MergeRule,
    ) -> Result<Vec<String>> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "moves switched off by the test".into(),
            ));
        }
        self.inner.move_drafts(from, to, now, merge).await
    }
    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.inner.purge_drafts(before, limit).await
    }
}

/// An anonymous session with a draft in `conv-1`, then signed in as `user`.
async fn signed_in_with_draft(
    svc: &SessionService,
    mem: &sessiond_store_memory::MemoryStore,
    user: &str,
) -> (Principal, SignedIn) {
    let client = ClientInfo::default();
    let Obtained::Created { session, token } =
        svc.get_or_create(None, None, &client).await.unwrap()
    else {
        panic!("created");
    };
    mem.put_draft_text(
        &session.principal,
        "conv-1",
        0,
        &format!("{user}'s words"),
        T0,
    )
    .await
    .unwrap();
    let out = svc
        .sign_in(Some(&token.hash()), sign_in_as(user), &client)
        .await
        .expect("the sign-in stands though the move failed");
    (session.principal, out)
}

fn service_over(store: Arc<dyn Store>, clock: &ManualClock) -> Arc<SessionService> {
    Arc::new(SessionService::new(
        store,
        Arc::new(clock.clone()),
        policies(),
        Bus::new(),
        100,
    ))
}

#[tokio::test]
async fn a_failed_draft_move_at_sign_in_is_finished_later_and_nothing_is_lost() {
    let mem = Arc::new(sessiond_store_memory::MemoryStore::new());
    let drafts = Arc::new(NoMoves {
        inner: mem.clone(),
        fail: AtomicBool::new(true),
    });
    let store: Arc<dyn Store> = Arc::new(mem.clone().split().with_drafts(drafts.clone()));
    let clock = ManualClock::new(T0);
    let svc = service_over(store.clone(), &clock);
    // 1. The next request of the session finishes the move.
    let (anon, out) = signed_in_with_draft(&svc, &mem, "alice").await;
    assert_eq!(
        mem.list_drafts(&anon).await.unwrap().len(),
        1,
        "still the anonymous one's"
    );
    assert_eq!(
        store.pending_draft_moves(0).await.unwrap().len(),
        1,
        "recorded with the rotation"
    );
    drafts.fail.store(false, Ordering::SeqCst);
    svc.authenticate(&out.token.hash(), true).await.unwrap();
    let mine = mem.list_drafts(&Principal::user("alice")).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].text, "alice's words");
    assert!(mem
        .list_drafts(&anon)
        .await
        .unwrap()
        .iter()
        .all(|d| d.deleted || d.text.is_empty()));
    assert_eq!(store.pending_draft_moves(0).await.unwrap(), vec![]);
    let restored = store
        .query_audit(&AuditFilter {
            kind: Some(AuditKind::DraftsRestored),
            principal: Some("user:alice".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(restored.len(), 1);

    // 2. After a restart (nothing in memory), the background sweep finishes it.
    drafts.fail.store(true, Ordering::SeqCst);
    let (anon, _) = signed_in_with_draft(&svc, &mem, "bob").await;
    drop(svc);
    let restarted = service_over(store.clone(), &clock);
    assert_eq!(
        restarted.sweep_draft_moves().await.unwrap(),
        0,
        "still failing: kept"
    );
    assert_eq!(store.pending_draft_moves(0).await.unwrap().len(), 1);
    drafts.fail.store(false, Ordering::SeqCst);
    clock.advance_ms(10_000);
    assert_eq!(restarted.sweep_draft_moves().await.unwrap(), 1);
    assert_eq!(
        restarted.sweep_draft_moves().await.unwrap(),
        0,
        "idempotent: done once"
    );
    let bobs = mem.list_drafts(&Principal::user("bob")).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].text, "bob's words");
    assert!(mem
        .list_drafts(&anon)
        .await
        .unwrap()
        .iter()
        .all(|d| d.deleted || d.text.is_empty()));
}

/// Each request brings its own copy of its user agent; the cache keeps one per distinct
/// agent (a million idle sessions held a million copies of ~110 bytes), and every
/// session still reads, and is stored with, its own agent.
#[tokio::test]
async fn cached_sessions_share_one_copy_of_an_equal_user_agent() {
    let h = harness(100);
    let from = |ua: &str| ClientInfo {
        ip: Some("192.0.2.1".into()),
        user_agent: Some(ua.into()),
    };
    let mut made = Vec::new();
    for ua in ["Firefox/140", "Firefox/140", "Chrome/141", "Firefox/140"] {
        match h.svc.get_or_create(None, None, &from(ua)).await.unwrap() {
            Obtained::Created { session, .. } => made.push(session.handle),
            _ => panic!("a create without a token makes a session"),
        }
    }
    let cached: Vec<_> = made
        .iter()
        .map(|hd| h.svc.cached(hd).unwrap().user_agent.unwrap())
        .collect();
    let agents: Vec<&str> = cached.iter().map(|a| &**a).collect();
    assert_eq!(
        agents,
        ["Firefox/140", "Firefox/140", "Chrome/141", "Firefox/140"]
    );
    // `cached` clones the record, and so the `Arc`: pointers say what the cache holds.
    assert!(Arc::ptr_eq(&cached[0], &cached[1]));
    assert!(Arc::ptr_eq(&cached[0], &cached[3]));
    assert!(!Arc::ptr_eq(&cached[0], &cached[2]));
    for (hd, ua) in made.iter().zip(agents) {
        assert_eq!(h.stored(hd).await.user_agent.as_deref(), Some(ua));
    }
}
