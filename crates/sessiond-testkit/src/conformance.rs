//! The backend conformance suite: one behaviour contract for every `sessiond_core::Store`.
//!
//! Each check is a `pub async fn check_xxx(store: Arc<dyn Store>)` that expects a
//! fresh, empty store and panics on the first broken promise. A backend runs all of
//! them with one macro invocation in its tests:
//!
//! ```
//! use sessiond_core::Store;
//! use sessiond_store_memory::MemoryStore;
//! use std::sync::Arc;
//!
//! // The expression is pasted into every generated test and must evaluate to a future
//! // yielding either `Arc<dyn Store>` or `(Arc<dyn Store>, guard)`; the guard (a temp
//! // dir, a redis-server process, ...) is kept alive until the check returns.
//! sessiond_testkit::conformance_suite!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
//! # fn main() {}
//! ```
//!
//! With a guard, as the SQLite backend's `tests/conformance.rs` does:
//!
//! ```text
//! sessiond_testkit::conformance_suite!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let path = dir.path().to_path_buf();
//!     let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await.unwrap().unwrap();
//!     (Arc::new(store) as Arc<dyn Store>, dir)
//! });
//! ```
//!
//! The macro expands to a module `conformance_suite` (which glob-imports its parent, so
//! the expression may name the parent's items) holding one
//! `#[tokio::test(flavor = "multi_thread")]` per check, named after the check, so a
//! failure names the broken promise. The invoking crate needs `tokio` as a
//! dev-dependency. The tests run on a multi-threaded runtime because the concurrency
//! checks are only meaningful when callers really race.
//!
//! # Contract details the checks pin down
//!
//! Where the `Store` docs leave room, the suite settles it (so every backend agrees):
//! - A draft delete, or a write leaving no text and no attachments, leaves a tombstone
//!   (`deleted`, empty, seq + 1); only a write naming the tombstone's seq revives it.
//!   `put_attachment` with seq 0 on no draft creates one.
//! - `delete_attachment`: a stale seq is `Conflict`; with the current seq, a missing
//!   name (or no live draft) is `NotFound`.
//! - Attachment limits: exactly `max_size` bytes is allowed; the quota counts the
//!   principal's live drafts, minus the attachment being replaced.
//! - `move_drafts` removes the source rows; where the target has a row (live or
//!   tombstone) the result is `merge_on_sign_in(target, source)`, otherwise the draft
//!   keeps its seq; the source's tombstones stay behind.
//! - Audit `since` is inclusive, `until` exclusive; `after_id` reads oldest first.
//! - `limit: 0` is not used by the checks (the bundled stores read it as "no limit").

use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
use sessiond_core::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use sessiond_core::snapshot::{content_hash, SnapshotWrite};
use sessiond_core::store::{ByteStream, CreateOutcome, IdempotencyRecord, SessionFilter};
use sessiond_core::{
    EndReason, Handle, Principal, Session, SessionState, Store, StoreError, Timestamp, Token,
    TokenHash,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// What a conformance factory may yield: the store, optionally with a guard that must
/// outlive the check (temp directory, child process).
pub trait Fixture: Send {
    fn store(&self) -> Arc<dyn Store>;
}

impl Fixture for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        self.clone()
    }
}

impl<G: Send> Fixture for (Arc<dyn Store>, G) {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
}

/// Expands to one named `#[tokio::test]` per conformance check; see the module docs.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            check_create_and_get,
            check_idempotent_create,
            check_existence_independent_of_data,
            check_put_data_needs_active_session,
            check_concurrent_put_data,
            check_update_session_cas,
            check_touch_session,
            check_touch_sessions_batch,
            check_end_session_once,
            check_due_sessions,
            check_list_sessions,
            check_purge_ended_sessions,
            check_count_active_sessions,
            check_audit,
            check_draft_text_seq,
            check_concurrent_draft_create,
            check_attachment_roundtrip,
            check_attachment_limits,
            check_attachment_body_error,
            check_delete_attachment,
            check_deleted_draft_hides_attachments,
            check_move_drafts,
            check_purge_drafts,
            check_principal_isolation,
            check_snapshots,
            check_concurrent_snapshot_put,
            check_random_draft_isolation,
        );
    };
    (@tests $factory:expr; $($check:ident),* $(,)?) => {
        #[allow(unused_imports)]
        mod conformance_suite {
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let fixture = $factory.await;
                    let store = $crate::conformance::Fixture::store(&fixture);
                    $crate::conformance::$check(store).await;
                    drop(fixture);
                }
            )*
        }
    };
}

// ---------------------------------------------------------------- helpers

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Generous limits for checks that are not about limits.
const ROOMY: AttachmentLimits = AttachmentLimits {
    max_size: 1 << 24,
    quota: 1 << 26,
};

/// An active session created at `now`, idle 1 min, absolute 1 h, with its token hash.
pub fn session(principal: &str, role: &str, now: Timestamp) -> Session {
    Session {
        handle: Handle::generate(),
        token_hash: Token::generate().hash(),
        principal: Principal(principal.to_owned()),
        user_id: principal.strip_prefix("user:").map(str::to_owned),
        role: role.to_owned(),
        state: SessionState::Active,
        end_reason: None,
        ended_at: None,
        created_at: now,
        last_activity_at: now,
        last_seen_at: now,
        idle_expires_at: now + MINUTE,
        absolute_expires_at: now + HOUR,
        client_ip: Some("192.0.2.7".into()),
        user_agent: Some("conformance/1".into()),
        allowed_rooms: Some(vec!["room-1".into()]),
    }
}

fn with_deadlines(mut s: Session, idle: Timestamp, absolute: Timestamp) -> Session {
    s.idle_expires_at = idle;
    s.absolute_expires_at = absolute;
    s
}

fn idem(key: &str, handle: Handle, now: Timestamp) -> IdempotencyRecord {
    IdempotencyRecord {
        key_hash: hex::encode(Sha256::digest(key.as_bytes())),
        fingerprint: hex::encode(Sha256::digest(b"request")),
        handle,
        sealed_token: vec![1, 2, 3, 4],
        created_at: now,
    }
}

async fn create(store: &dyn Store, s: &Session) {
    assert_eq!(
        store.create_session(s, None).await.unwrap(),
        CreateOutcome::Created
    );
}

/// A body stream that yields `data` in chunks of `chunk` bytes.
pub fn body(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Collects a byte stream, failing the check on a stream error.
pub async fn read_all(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("attachment stream failed"));
    }
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[track_caller]
fn written(w: DraftWrite) -> Draft {
    match w {
        DraftWrite::Written(d) => d,
        other => panic!("expected Written, got {other:?}"),
    }
}

#[track_caller]
fn conflict(w: DraftWrite) -> Option<Draft> {
    match w {
        DraftWrite::Conflict(d) => d,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

async fn attach(
    store: &dyn Store,
    p: &Principal,
    conv: &str,
    seq: u64,
    name: &str,
    data: &[u8],
    limits: AttachmentLimits,
) -> Result<DraftWrite, StoreError> {
    store
        .put_attachment(
            p,
            conv,
            seq,
            name,
            "audio/webm",
            body(data, 4096),
            limits,
            10,
        )
        .await
}

async fn attachment_bytes(
    store: &dyn Store,
    p: &Principal,
    conv: &str,
    name: &str,
) -> Option<(AttachmentMeta, Vec<u8>)> {
    match store.get_attachment(p, conv, name).await.unwrap() {
        Some((meta, s)) => Some((meta, read_all(s).await)),
        None => None,
    }
}

// ---------------------------------------------------------------- sessions

pub async fn check_create_and_get(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    let s = session("anon:abc", "editor", 1_000);
    create(&*store, &s).await;
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.get_session_by_token(&s.token_hash).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(store.get_session(&Handle::generate()).await.unwrap(), None);
    assert_eq!(
        store
            .get_session_by_token(&Token::generate().hash())
            .await
            .unwrap(),
        None
    );
    // A session without optional fields round-trips too.
    let mut bare = session("anon:bare", "viewer", 2_000);
    bare.client_ip = None;
    bare.user_agent = None;
    bare.allowed_rooms = None;
    bare.user_id = None;
    create(&*store, &bare).await;
    assert_eq!(store.get_session(&bare.handle).await.unwrap(), Some(bare));
}

pub async fn check_idempotent_create(store: Arc<dyn Store>) {
    const CALLERS: usize = 50;
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let s = session(&format!("anon:caller{i}"), "editor", 1_000);
            let rec = idem("same-key", s.handle, 1_000);
            let out = store.create_session(&s, Some(&rec)).await.unwrap();
            (s.handle, out)
        }));
    }
    let mut winners = Vec::new();
    let mut existing = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        let (h, out) = t.await.unwrap();
        match out {
            CreateOutcome::Created => winners.push(h),
            CreateOutcome::Existing(rec) => {
                existing.push(rec);
                losers.push(h);
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create must win");
    let winner = winners[0];
    for rec in &existing {
        assert_eq!(rec.handle, winner);
        assert_eq!(rec.key_hash, idem("same-key", winner, 0).key_hash);
        assert_eq!(rec.sealed_token, vec![1, 2, 3, 4]);
        assert_eq!(rec.created_at, 1_000);
    }
    let all = store
        .list_sessions(&SessionFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].handle, winner);
    for h in losers {
        assert_eq!(
            store.get_session(&h).await.unwrap(),
            None,
            "a losing create left a session"
        );
    }
    // A different key still creates.
    let s = session("anon:other", "editor", 2_000);
    let out = store
        .create_session(&s, Some(&idem("other-key", s.handle, 2_000)))
        .await
        .unwrap();
    assert_eq!(out, CreateOutcome::Created);
}

pub async fn check_existence_independent_of_data(store: Arc<dyn Store>) {
    let s = session("anon:x", "editor", 1_000);
    create(&*store, &s).await;
    // The very first thing that happens to this session is a data write.
    assert!(store
        .put_data(&s.handle, "cart", &serde_json::json!({"items": [1, 2]}))
        .await
        .unwrap());
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.get_session_by_token(&s.token_hash).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.get_data(&s.handle, "cart").await.unwrap(),
        Some(serde_json::json!({"items": [1, 2]}))
    );
    assert_eq!(store.get_data(&s.handle, "other").await.unwrap(), None);
    assert!(store.delete_data(&s.handle, "cart").await.unwrap());
    assert!(!store.delete_data(&s.handle, "cart").await.unwrap());
    assert_eq!(store.get_data(&s.handle, "cart").await.unwrap(), None);
    // Deleting data never deletes the session.
    assert!(store.get_session(&s.handle).await.unwrap().is_some());
}

pub async fn check_put_data_needs_active_session(store: Arc<dyn Store>) {
    let ghost = Handle::generate();
    assert!(!store
        .put_data(&ghost, "k", &serde_json::json!(1))
        .await
        .unwrap());
    assert_eq!(store.get_data(&ghost, "k").await.unwrap(), None);
    assert_eq!(
        store.get_session(&ghost).await.unwrap(),
        None,
        "a data write must not create a session"
    );
    let s = session("anon:x", "editor", 1_000);
    create(&*store, &s).await;
    assert!(store
        .put_data(&s.handle, "k", &serde_json::json!(1))
        .await
        .unwrap());
    store
        .end_session(&s.handle, EndReason::SignedOut, 2_000)
        .await
        .unwrap()
        .unwrap();
    assert!(!store
        .put_data(&s.handle, "k", &serde_json::json!(2))
        .await
        .unwrap());
    assert!(!store
        .put_data(&s.handle, "new", &serde_json::json!(3))
        .await
        .unwrap());
    assert_eq!(store.get_data(&s.handle, "new").await.unwrap(), None);
}

pub async fn check_concurrent_put_data(store: Arc<dyn Store>) {
    let s = session("anon:x", "editor", 1_000);
    create(&*store, &s).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let h = s.handle;
        tasks.push(tokio::spawn(async move {
            store
                .put_data(&h, "k", &serde_json::json!({ "v": i }))
                .await
        }));
    }
    for t in tasks {
        assert!(
            t.await.unwrap().unwrap(),
            "every concurrent write to an active session applies"
        );
    }
    let v = store
        .get_data(&s.handle, "k")
        .await
        .unwrap()
        .expect("one value must remain");
    let n = v["v"]
        .as_i64()
        .expect("the value is one of the written ones");
    assert!((0..20).contains(&n));
    assert!(store
        .put_data(&s.handle, "k", &serde_json::json!({"v": 999}))
        .await
        .unwrap());
    assert_eq!(
        store.get_data(&s.handle, "k").await.unwrap(),
        Some(serde_json::json!({"v": 999}))
    );
}

pub async fn check_update_session_cas(store: Arc<dyn Store>) {
    let s = session("anon:x", "viewer", 1_000);
    create(&*store, &s).await;
    let old_hash = s.token_hash;
    let mut signed = s.clone();
    signed.token_hash = Token::generate().hash();
    signed.principal = Principal::user("alice");
    signed.user_id = Some("alice".into());
    signed.role = "editor".into();
    signed.idle_expires_at = 50 * MINUTE;

    let stale: TokenHash = Token::generate().hash();
    assert!(!store.update_session(&signed, &stale).await.unwrap());
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(s.clone()));

    assert!(store.update_session(&signed, &old_hash).await.unwrap());
    assert_eq!(
        store.get_session_by_token(&old_hash).await.unwrap(),
        None,
        "old token must stop working"
    );
    assert_eq!(
        store
            .get_session_by_token(&signed.token_hash)
            .await
            .unwrap(),
        Some(signed.clone())
    );
    assert_eq!(
        store.get_session(&s.handle).await.unwrap(),
        Some(signed.clone())
    );
    // The same old hash cannot win twice.
    assert!(!store.update_session(&signed, &old_hash).await.unwrap());

    let ended = store
        .end_session(&s.handle, EndReason::Revoked, 2_000)
        .await
        .unwrap()
        .unwrap();
    let mut again = ended.clone();
    again.token_hash = Token::generate().hash();
    again.state = SessionState::Active;
    assert!(
        !store
            .update_session(&again, &signed.token_hash)
            .await
            .unwrap(),
        "ended sessions are final"
    );
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(ended));
}

pub async fn check_touch_session(store: Arc<dyn Store>) {
    let s = session("anon:x", "editor", 1_000);
    create(&*store, &s).await;
    assert!(store
        .touch_session(&s.handle, 5_000, 6_000, 70_000)
        .await
        .unwrap());
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(
        (got.last_activity_at, got.last_seen_at, got.idle_expires_at),
        (5_000, 6_000, 70_000)
    );
    // Older values (a late, reordered flush) never move anything backwards.
    store
        .touch_session(&s.handle, 2_000, 3_000, 20_000)
        .await
        .unwrap();
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(
        (got.last_activity_at, got.last_seen_at, got.idle_expires_at),
        (5_000, 6_000, 70_000)
    );
    // Mixed: only the newer fields move.
    store
        .touch_session(&s.handle, 4_000, 9_000, 60_000)
        .await
        .unwrap();
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(
        (got.last_activity_at, got.last_seen_at, got.idle_expires_at),
        (5_000, 9_000, 70_000)
    );
    assert_eq!(got.absolute_expires_at, s.absolute_expires_at);
    assert_eq!(got.token_hash, s.token_hash);

    let ended = store
        .end_session(&s.handle, EndReason::SignedOut, 10_000)
        .await
        .unwrap()
        .unwrap();
    assert!(!store
        .touch_session(&s.handle, 20_000, 20_000, 90_000)
        .await
        .unwrap());
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(ended));
    assert!(!store
        .touch_session(&Handle::generate(), 1, 1, 1)
        .await
        .unwrap());
}

pub async fn check_touch_sessions_batch(store: Arc<dyn Store>) {
    let a = session("anon:a", "editor", 1_000);
    let b = session("anon:b", "editor", 1_000);
    let c = session("anon:c", "editor", 1_000);
    for s in [&a, &b, &c] {
        create(&*store, s).await;
    }
    let ended = store
        .end_session(&c.handle, EndReason::Revoked, 2_000)
        .await
        .unwrap()
        .unwrap();
    store
        .touch_sessions(&[
            (a.handle, 3_000, 3_000, 80_000),
            (b.handle, 4_000, 4_500, 90_000),
            (c.handle, 5_000, 5_000, 99_000),
            (Handle::generate(), 5_000, 5_000, 99_000),
        ])
        .await
        .unwrap();
    store.touch_sessions(&[]).await.unwrap();
    let ga = store.get_session(&a.handle).await.unwrap().unwrap();
    let gb = store.get_session(&b.handle).await.unwrap().unwrap();
    assert_eq!(
        (ga.last_activity_at, ga.last_seen_at, ga.idle_expires_at),
        (3_000, 3_000, 80_000)
    );
    assert_eq!(
        (gb.last_activity_at, gb.last_seen_at, gb.idle_expires_at),
        (4_000, 4_500, 90_000)
    );
    assert_eq!(store.get_session(&c.handle).await.unwrap(), Some(ended));
    // The batch moves deadlines for due_sessions as well.
    assert!(store.due_sessions(70_000, 10).await.unwrap().is_empty());
}

pub async fn check_end_session_once(store: Arc<dyn Store>) {
    let s = session("anon:x", "editor", 1_000);
    create(&*store, &s).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let h = s.handle;
        tasks.push(tokio::spawn(async move {
            store
                .end_session(&h, EndReason::IdleTimeout, 5_000 + i)
                .await
        }));
    }
    let mut ended = Vec::new();
    for t in tasks {
        if let Some(e) = t.await.unwrap().unwrap() {
            ended.push(e);
        }
    }
    assert_eq!(ended.len(), 1, "exactly one caller ends the session");
    let e = &ended[0];
    assert_eq!(e.state, SessionState::Ended);
    assert_eq!(e.end_reason, Some(EndReason::IdleTimeout));
    assert!(e.ended_at.is_some_and(|t| (5_000..5_020).contains(&t)));
    assert_eq!(e.handle, s.handle);
    assert_eq!(e.token_hash, s.token_hash);
    assert_eq!(
        store.get_session(&s.handle).await.unwrap().as_ref(),
        Some(e)
    );
    assert_eq!(
        store
            .get_session_by_token(&s.token_hash)
            .await
            .unwrap()
            .as_ref(),
        Some(e),
        "ended sessions stay findable"
    );
    assert_eq!(
        store
            .end_session(&s.handle, EndReason::Revoked, 9_000)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .end_session(&Handle::generate(), EndReason::Revoked, 9_000)
            .await
            .unwrap(),
        None
    );
}

pub async fn check_due_sessions(store: Arc<dyn Store>) {
    let a = with_deadlines(session("anon:a", "editor", 0), 100, 1_000);
    let b = with_deadlines(session("anon:b", "editor", 0), 500, 200);
    let c = with_deadlines(session("anon:c", "editor", 0), 1_500, 2_000);
    let d = with_deadlines(session("anon:d", "editor", 0), 50, 60);
    for s in [&a, &b, &c, &d] {
        create(&*store, s).await;
    }
    store
        .end_session(&d.handle, EndReason::SignedOut, 10)
        .await
        .unwrap()
        .unwrap();
    let due = |now: Timestamp, limit: usize| {
        let store = store.clone();
        async move {
            store
                .due_sessions(now, limit)
                .await
                .unwrap()
                .into_iter()
                .collect::<BTreeSet<_>>()
        }
    };
    assert!(due(99, 10).await.is_empty());
    assert_eq!(due(100, 10).await, BTreeSet::from([a.handle]));
    assert_eq!(due(200, 10).await, BTreeSet::from([a.handle, b.handle]));
    assert_eq!(
        due(5_000, 10).await,
        BTreeSet::from([a.handle, b.handle, c.handle])
    );
    assert_eq!(due(5_000, 2).await.len(), 2);
    // Activity pushes a deadline out (its earliest deadline is now the absolute one).
    store.touch_session(&a.handle, 50, 50, 3_000).await.unwrap();
    assert_eq!(due(999, 10).await, BTreeSet::from([b.handle]));
    assert_eq!(due(1_000, 10).await, BTreeSet::from([a.handle, b.handle]));
    store
        .end_session(&b.handle, EndReason::AbsoluteTimeout, 300)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(due(1_000, 10).await, BTreeSet::from([a.handle]));
}

pub async fn check_list_sessions(store: Arc<dyn Store>) {
    let mut all = vec![
        session("user:a", "editor", 1),
        session("user:a", "viewer", 2),
        session("user:b", "editor", 3),
        session("user:b", "editor", 4),
        session("anon:z", "public", 5),
    ];
    for s in &all {
        create(&*store, s).await;
    }
    let ended = store
        .end_session(&all[3].handle, EndReason::Revoked, 10)
        .await
        .unwrap()
        .unwrap();
    all[3] = ended;
    all.sort_by_key(|s| s.handle);
    let list = |f: SessionFilter| {
        let store = store.clone();
        async move { store.list_sessions(&f).await.unwrap() }
    };
    let everything = list(SessionFilter {
        limit: 100,
        ..Default::default()
    })
    .await;
    assert_eq!(everything, all, "ordered by handle, ended included");
    let hs = |v: &[Session]| v.iter().map(|s| s.handle).collect::<Vec<_>>();
    let by = |pred: &dyn Fn(&Session) -> bool| {
        all.iter()
            .filter(|s| pred(s))
            .map(|s| s.handle)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        hs(&list(SessionFilter {
            principal: Some("user:a".into()),
            limit: 100,
            ..Default::default()
        })
        .await),
        by(&|s| s.principal.0 == "user:a")
    );
    assert_eq!(
        hs(&list(SessionFilter {
            role: Some("editor".into()),
            limit: 100,
            ..Default::default()
        })
        .await),
        by(&|s| s.role == "editor")
    );
    assert_eq!(
        hs(&list(SessionFilter {
            active_only: true,
            limit: 100,
            ..Default::default()
        })
        .await),
        by(&|s| s.is_active())
    );
    assert_eq!(
        hs(&list(SessionFilter {
            principal: Some("user:b".into()),
            role: Some("editor".into()),
            active_only: true,
            limit: 100,
            ..Default::default()
        })
        .await),
        by(&|s| s.principal.0 == "user:b" && s.is_active())
    );
    // Paging by `after`, two at a time, visits every session once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = list(SessionFilter {
            after,
            limit: 2,
            ..Default::default()
        })
        .await;
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|s| s.handle);
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

pub async fn check_purge_ended_sessions(store: Arc<dyn Store>) {
    let s1 = session("anon:1", "editor", 0);
    let s2 = session("anon:2", "editor", 0);
    let s3 = session("anon:3", "editor", 0);
    let rec1 = idem("key-1", s1.handle, 0);
    assert_eq!(
        store.create_session(&s1, Some(&rec1)).await.unwrap(),
        CreateOutcome::Created
    );
    create(&*store, &s2).await;
    create(&*store, &s3).await;
    for s in [&s1, &s2, &s3] {
        assert!(store
            .put_data(&s.handle, "k", &serde_json::json!("v"))
            .await
            .unwrap());
    }
    store
        .end_session(&s1.handle, EndReason::SignedOut, 100)
        .await
        .unwrap()
        .unwrap();
    store
        .end_session(&s2.handle, EndReason::SignedOut, 500)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(store.purge_ended_sessions(300, 100).await.unwrap(), 1);
    assert_eq!(store.get_session(&s1.handle).await.unwrap(), None);
    assert_eq!(
        store.get_session_by_token(&s1.token_hash).await.unwrap(),
        None
    );
    assert_eq!(store.get_data(&s1.handle, "k").await.unwrap(), None);
    assert!(store.get_session(&s2.handle).await.unwrap().is_some());
    assert_eq!(
        store.get_data(&s3.handle, "k").await.unwrap(),
        Some(serde_json::json!("v"))
    );
    // The purged session's idempotency record went with it: the key is free again.
    let s4 = session("anon:4", "editor", 1_000);
    assert_eq!(
        store
            .create_session(&s4, Some(&idem("key-1", s4.handle, 1_000)))
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    // `limit` bounds one pass; active sessions are never purged.
    store
        .end_session(&s3.handle, EndReason::SignedOut, 600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.purge_ended_sessions(10_000, 1).await.unwrap(), 1);
    assert_eq!(store.purge_ended_sessions(10_000, 10).await.unwrap(), 1);
    assert_eq!(store.purge_ended_sessions(10_000, 10).await.unwrap(), 0);
    assert!(store.get_session(&s4.handle).await.unwrap().is_some());
}

pub async fn check_count_active_sessions(store: Arc<dyn Store>) {
    assert_eq!(store.count_active_sessions().await.unwrap(), 0);
    let ss: Vec<_> = (0..5)
        .map(|i| session(&format!("anon:{i}"), "editor", i))
        .collect();
    for s in &ss {
        create(&*store, s).await;
    }
    assert_eq!(store.count_active_sessions().await.unwrap(), 5);
    store
        .end_session(&ss[0].handle, EndReason::Revoked, 10)
        .await
        .unwrap()
        .unwrap();
    store
        .end_session(&ss[1].handle, EndReason::Revoked, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.count_active_sessions().await.unwrap(), 3);
}

// ---------------------------------------------------------------- audit

pub async fn check_audit(store: Arc<dyn Store>) {
    let ev = |at, kind, principal: &str, handle: &str, reason: Option<&str>| {
        let mut e = AuditEvent::new(at, kind);
        e.principal = Some(principal.into());
        e.handle = Some(handle.into());
        e.reason = reason.map(str::to_owned);
        e.client_ip = Some("192.0.2.1".into());
        e.detail = serde_json::json!({"at": at});
        e
    };
    let events = vec![
        ev(100, AuditKind::Created, "anon:a", "s_1", None),
        ev(200, AuditKind::SignedIn, "user:u", "s_1", None),
        ev(300, AuditKind::Created, "anon:b", "s_2", None),
        ev(400, AuditKind::Ended, "user:u", "s_1", Some("idle_timeout")),
        ev(500, AuditKind::Ended, "anon:b", "s_2", Some("signed_out")),
    ];
    let mut ids = Vec::new();
    for e in &events {
        ids.push(store.append_audit(e).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let stored: Vec<AuditEvent> = events
        .iter()
        .zip(&ids)
        .map(|(e, id)| AuditEvent {
            id: *id,
            ..e.clone()
        })
        .collect();
    let q = |f: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .query_audit(&AuditFilter {
                    limit: if f.limit == 0 { 100 } else { f.limit },
                    ..f
                })
                .await
                .unwrap()
        }
    };
    let newest_first: Vec<_> = stored.iter().rev().cloned().collect();
    assert_eq!(q(AuditFilter::default()).await, newest_first);
    let ids_of = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids_of(
            q(AuditFilter {
                principal: Some("user:u".into()),
                ..Default::default()
            })
            .await
        ),
        [ids[3], ids[1]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                handle: Some("s_2".into()),
                ..Default::default()
            })
            .await
        ),
        [ids[4], ids[2]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                kind: Some(AuditKind::Created),
                ..Default::default()
            })
            .await
        ),
        [ids[2], ids[0]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                reason: Some("idle_timeout".into()),
                ..Default::default()
            })
            .await
        ),
        [ids[3]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                since: Some(200),
                until: Some(400),
                ..Default::default()
            })
            .await
        ),
        [ids[2], ids[1]],
        "since is inclusive, until exclusive"
    );
    // Newest first, paged by before_id.
    let page1 = q(AuditFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(ids_of(page1.clone()), [ids[4], ids[3]]);
    let page2 = q(AuditFilter {
        limit: 2,
        before_id: Some(page1[1].id),
        ..Default::default()
    })
    .await;
    assert_eq!(ids_of(page2.clone()), [ids[2], ids[1]]);
    let page3 = q(AuditFilter {
        limit: 2,
        before_id: Some(page2[1].id),
        ..Default::default()
    })
    .await;
    assert_eq!(ids_of(page3), [ids[0]]);
    // Following: oldest first after a cursor.
    assert_eq!(
        ids_of(
            q(AuditFilter {
                after_id: Some(ids[1]),
                ..Default::default()
            })
            .await
        ),
        [ids[2], ids[3], ids[4]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                after_id: Some(ids[1]),
                limit: 1,
                ..Default::default()
            })
            .await
        ),
        [ids[2]]
    );

    assert_eq!(store.purge_audit(300, 100).await.unwrap(), 2);
    assert_eq!(
        ids_of(q(AuditFilter::default()).await),
        [ids[4], ids[3], ids[2]]
    );
    let next = store
        .append_audit(&ev(600, AuditKind::Renewed, "user:u", "s_1", None))
        .await
        .unwrap();
    assert!(next > ids[4], "ids never repeat, even after a purge");
}

// ---------------------------------------------------------------- drafts

pub async fn check_draft_text_seq(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), None);
    assert_eq!(
        conflict(store.put_draft_text(&p, "c1", 1, "x", 10).await.unwrap()),
        None,
        "first write needs seq 0"
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), None);

    let d1 = written(
        store
            .put_draft_text(&p, "c1", 0, "hello", 10)
            .await
            .unwrap(),
    );
    assert_eq!(
        (d1.seq, d1.text.as_str(), d1.deleted, d1.updated_at),
        (1, "hello", false, 10)
    );
    assert_eq!(d1.principal, p);
    assert_eq!(d1.conversation, "c1");
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d1.clone()));

    // Stale seq: refused with the current draft, nothing changes.
    let cur = conflict(
        store
            .put_draft_text(&p, "c1", 0, "other tab", 11)
            .await
            .unwrap(),
    );
    assert_eq!(cur, Some(d1.clone()));
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d1.clone()));

    let d2 = written(
        store
            .put_draft_text(&p, "c1", 1, "hello world", 12)
            .await
            .unwrap(),
    );
    assert_eq!((d2.seq, d2.text.as_str()), (2, "hello world"));
    written(
        store
            .put_draft_text(&p, "c2", 0, "second", 12)
            .await
            .unwrap(),
    );
    let listed: Vec<_> = store
        .list_drafts(&p)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.conversation)
        .collect();
    assert_eq!(listed, ["c1", "c2"]);

    // Emptying the draft tombstones it.
    let t = written(store.put_draft_text(&p, "c1", 2, "", 13).await.unwrap());
    assert!(t.deleted);
    assert_eq!(t.seq, 3);
    assert!(t.text.is_empty() && t.attachments.is_empty());
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(t.clone()));
    let listed: Vec<_> = store
        .list_drafts(&p)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.conversation)
        .collect();
    assert_eq!(listed, ["c2"], "tombstones are not listed");

    // A slow tab naming the pre-delete seq cannot revive it.
    assert_eq!(
        conflict(
            store
                .put_draft_text(&p, "c1", 2, "revived?", 14)
                .await
                .unwrap()
        ),
        Some(t.clone())
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(t.clone()));
    // A write naming the tombstone's seq starts again.
    let d4 = written(
        store
            .put_draft_text(&p, "c1", 3, "again", 15)
            .await
            .unwrap(),
    );
    assert_eq!((d4.seq, d4.deleted, d4.text.as_str()), (4, false, "again"));

    // Delete: stale refused, current applied.
    assert_eq!(
        conflict(store.delete_draft(&p, "c1", 3, 16).await.unwrap()),
        Some(d4.clone())
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d4.clone()));
    let t5 = written(store.delete_draft(&p, "c1", 4, 17).await.unwrap());
    assert!(t5.deleted);
    assert_eq!(t5.seq, 5);
    assert_eq!(t5.updated_at, 17);
    assert_eq!(
        conflict(
            store
                .put_draft_text(&p, "c1", 4, "late save", 18)
                .await
                .unwrap()
        ),
        Some(t5)
    );
}

pub async fn check_concurrent_draft_create(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_draft_text(&p, "c1", 0, &format!("tab {i}"), 10)
                .await
        }));
    }
    let mut wins = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            DraftWrite::Written(d) => wins.push(d),
            DraftWrite::Conflict(Some(d)) => assert_eq!(d.seq, 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one tab wins seq 0");
    assert_eq!(
        store.get_draft(&p, "c1").await.unwrap(),
        Some(wins[0].clone())
    );
}

pub async fn check_attachment_roundtrip(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(
        store
            .put_draft_text(&p, "c1", 0, "with clip", 10)
            .await
            .unwrap(),
    );
    let data = pattern(200 * 1024, 7);
    let w = store
        .put_attachment(
            &p,
            "c1",
            d1.seq,
            "clip.webm",
            "audio/webm",
            body(&data, 30_000),
            ROOMY,
            20,
        )
        .await
        .unwrap();
    let d2 = written(w);
    assert_eq!(d2.seq, d1.seq + 1);
    assert_eq!(d2.text, "with clip");
    assert_eq!(d2.updated_at, 20);
    let meta = d2
        .attachment("clip.webm")
        .expect("attachment listed")
        .clone();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.sha256, sha_hex(&data));
    assert_eq!(meta.content_type, "audio/webm");
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d2.clone()));

    let (got_meta, bytes) = attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .expect("readable");
    assert_eq!(got_meta, meta);
    assert!(bytes == data, "bytes differ");
    assert!(attachment_bytes(&*store, &p, "c1", "nope.webm")
        .await
        .is_none());

    // Replacing under the same name keeps one entry with the new bytes.
    let data2 = pattern(5_000, 99);
    let d3 = written(
        store
            .put_attachment(
                &p,
                "c1",
                d2.seq,
                "clip.webm",
                "audio/ogg",
                body(&data2, 999),
                ROOMY,
                30,
            )
            .await
            .unwrap(),
    );
    assert_eq!(d3.seq, d2.seq + 1);
    assert_eq!(d3.attachments.len(), 1);
    let (m, b) = attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .unwrap();
    assert_eq!(
        (m.size, m.sha256.as_str(), m.content_type.as_str()),
        (5_000, sha_hex(&data2).as_str(), "audio/ogg")
    );
    assert!(b == data2);

    // An attachment alone makes a draft (seq 0 creates it); a stale seq is refused.
    let d = written(
        attach(&*store, &p, "c2", 0, "a.bin", b"abc", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!((d.seq, d.text.as_str(), d.attachments.len()), (1, "", 1));
    let cur = conflict(
        attach(&*store, &p, "c2", 0, "b.bin", b"def", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(cur, Some(d.clone()));
    assert!(attachment_bytes(&*store, &p, "c2", "b.bin").await.is_none());
    // A zero-byte attachment is still an attachment.
    let d = written(
        attach(&*store, &p, "c2", 1, "empty.bin", b"", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(d.attachments.len(), 2);
    let (m, b) = attachment_bytes(&*store, &p, "c2", "empty.bin")
        .await
        .unwrap();
    assert_eq!((m.size, b.len()), (0, 0));
}

pub async fn check_attachment_limits(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let small = AttachmentLimits {
        max_size: 1_000,
        quota: 3_000,
    };
    match attach(
        &*store,
        &p,
        "c1",
        d1.seq,
        "big.bin",
        &pattern(1_500, 1),
        small,
    )
    .await
    {
        Err(StoreError::TooLarge { limit }) => assert_eq!(limit, 1_000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(
        store.get_draft(&p, "c1").await.unwrap(),
        Some(d1.clone()),
        "nothing written"
    );
    assert!(attachment_bytes(&*store, &p, "c1", "big.bin")
        .await
        .is_none());
    // Exactly max_size is allowed.
    let d2 = written(
        attach(
            &*store,
            &p,
            "c1",
            d1.seq,
            "a.bin",
            &pattern(1_000, 2),
            small,
        )
        .await
        .unwrap(),
    );
    let d3 = written(
        attach(
            &*store,
            &p,
            "c1",
            d2.seq,
            "b.bin",
            &pattern(1_000, 3),
            small,
        )
        .await
        .unwrap(),
    );
    // 2_000 held; another 1_000 in another conversation reaches the quota exactly.
    let e = written(
        attach(&*store, &p, "c2", 0, "c.bin", &pattern(1_000, 4), small)
            .await
            .unwrap(),
    );
    // One more byte anywhere for this principal is over quota.
    match attach(&*store, &p, "c3", 0, "d.bin", &pattern(10, 5), small).await {
        Err(StoreError::QuotaExceeded { quota }) => assert_eq!(quota, 3_000),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(store.get_draft(&p, "c3").await.unwrap(), None);
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d3.clone()));
    // Replacing an attachment counts only the difference.
    let d4 = written(
        attach(&*store, &p, "c1", d3.seq, "a.bin", &pattern(900, 6), small)
            .await
            .unwrap(),
    );
    assert_eq!(d4.attachment_bytes(), 1_900);
    // Another principal has its own quota.
    let q = Principal::user("bob");
    written(
        attach(&*store, &q, "c1", 0, "x.bin", &pattern(1_000, 7), small)
            .await
            .unwrap(),
    );
    assert_eq!(store.get_draft(&p, "c2").await.unwrap(), Some(e));
}

pub async fn check_attachment_body_error(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(pattern(50_000, 1))),
        Ok(Bytes::from(pattern(50_000, 2))),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let broken: ByteStream = Box::pin(futures::stream::iter(chunks));
    match store
        .put_attachment(
            &p,
            "c1",
            d1.seq,
            "clip.webm",
            "audio/webm",
            broken,
            ROOMY,
            20,
        )
        .await
    {
        Err(StoreError::Body(_)) => {}
        other => panic!("expected Body error, got {other:?}"),
    }
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d1.clone()));
    assert!(attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .is_none());
    // The failure left nothing that blocks a retry.
    written(
        attach(&*store, &p, "c1", d1.seq, "clip.webm", b"ok", ROOMY)
            .await
            .unwrap(),
    );
}

pub async fn check_delete_attachment(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let d2 = written(
        attach(&*store, &p, "c1", d1.seq, "a.bin", b"aaa", ROOMY)
            .await
            .unwrap(),
    );
    let d3 = written(
        attach(&*store, &p, "c1", d2.seq, "b.bin", b"bbb", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(
        store
            .delete_attachment(&p, "c1", d3.seq, "zzz.bin", 20)
            .await
            .unwrap(),
        DraftWrite::NotFound
    );
    assert_eq!(
        conflict(
            store
                .delete_attachment(&p, "c1", d2.seq, "a.bin", 20)
                .await
                .unwrap()
        ),
        Some(d3.clone())
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d3.clone()));
    let d4 = written(
        store
            .delete_attachment(&p, "c1", d3.seq, "a.bin", 21)
            .await
            .unwrap(),
    );
    assert_eq!(d4.seq, d3.seq + 1);
    assert!(d4.attachment("a.bin").is_none());
    assert!(!d4.deleted);
    assert!(attachment_bytes(&*store, &p, "c1", "a.bin").await.is_none());
    assert_eq!(
        attachment_bytes(&*store, &p, "c1", "b.bin")
            .await
            .unwrap()
            .1,
        b"bbb"
    );
    assert_eq!(
        store
            .delete_attachment(&p, "c9", 0, "a.bin", 22)
            .await
            .unwrap(),
        DraftWrite::NotFound,
        "no draft, no attachment"
    );
}

pub async fn check_deleted_draft_hides_attachments(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let d2 = written(
        attach(
            &*store,
            &p,
            "c1",
            d1.seq,
            "clip.webm",
            &pattern(10_000, 3),
            ROOMY,
        )
        .await
        .unwrap(),
    );
    let t = written(store.delete_draft(&p, "c1", d2.seq, 20).await.unwrap());
    assert!(t.deleted && t.attachments.is_empty() && t.text.is_empty());
    assert!(attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .is_none());
    // Starting the draft again does not bring the old clip back.
    let d = written(
        store
            .put_draft_text(&p, "c1", t.seq, "fresh", 30)
            .await
            .unwrap(),
    );
    assert!(d.attachments.is_empty());
    assert!(attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .is_none());
    // The deleted bytes no longer count against the quota.
    let tight = AttachmentLimits {
        max_size: 10_000,
        quota: 10_000,
    };
    written(
        attach(
            &*store,
            &p,
            "c1",
            d.seq,
            "new.webm",
            &pattern(10_000, 4),
            tight,
        )
        .await
        .unwrap(),
    );
}

pub async fn check_move_drafts(store: Arc<dyn Store>) {
    let anon = Principal("anon:shared-browser".into());
    let user = Principal::user("alice");
    let a1 = written(
        store
            .put_draft_text(&anon, "c1", 0, "anon text", 10)
            .await
            .unwrap(),
    );
    let anon_clip = pattern(20_000, 1);
    let a1 = written(
        attach(&*store, &anon, "c1", a1.seq, "clip.webm", &anon_clip, ROOMY)
            .await
            .unwrap(),
    );
    let a2 = written(
        store
            .put_draft_text(&anon, "c2", 0, "only anon", 11)
            .await
            .unwrap(),
    );
    let a2 = written(
        attach(&*store, &anon, "c2", a2.seq, "pic.png", b"png-bytes", ROOMY)
            .await
            .unwrap(),
    );
    // A deleted anonymous draft is not live and does not move.
    let a3 = written(
        store
            .put_draft_text(&anon, "c3", 0, "gone", 12)
            .await
            .unwrap(),
    );
    written(store.delete_draft(&anon, "c3", a3.seq, 13).await.unwrap());

    let u1 = written(
        store
            .put_draft_text(&user, "c1", 0, "user text", 5)
            .await
            .unwrap(),
    );
    let user_clip = pattern(3_000, 2);
    let u1 = written(
        attach(&*store, &user, "c1", u1.seq, "clip.webm", &user_clip, ROOMY)
            .await
            .unwrap(),
    );
    let u4 = written(
        store
            .put_draft_text(&user, "c4", 0, "untouched", 6)
            .await
            .unwrap(),
    );

    let mut moved = store.move_drafts(&anon, &user, 100).await.unwrap();
    moved.sort();
    assert_eq!(moved, ["c1", "c2"]);

    let expected = sessiond_core::draft::merge_on_sign_in(&u1, &a1, 100);
    let m1 = store
        .get_draft(&user, "c1")
        .await
        .unwrap()
        .expect("merged draft");
    assert_eq!(m1.text, "user text\n\nanon text");
    assert_eq!(m1.seq, expected.seq);
    assert!(!m1.deleted);
    let names: Vec<_> = m1.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["clip.webm", "clip-2.webm"]);
    assert_eq!(
        attachment_bytes(&*store, &user, "c1", "clip.webm")
            .await
            .unwrap()
            .1,
        user_clip
    );
    let (meta, bytes) = attachment_bytes(&*store, &user, "c1", "clip-2.webm")
        .await
        .unwrap();
    assert!(bytes == anon_clip);
    assert_eq!(meta.sha256, sha_hex(&anon_clip));

    let m2 = store
        .get_draft(&user, "c2")
        .await
        .unwrap()
        .expect("moved draft");
    assert_eq!(
        (m2.text.as_str(), m2.principal.clone(), m2.deleted),
        ("only anon", user.clone(), false)
    );
    assert!(m2.seq >= a2.seq);
    assert_eq!(
        attachment_bytes(&*store, &user, "c2", "pic.png")
            .await
            .unwrap()
            .1,
        b"png-bytes"
    );
    assert_eq!(store.get_draft(&user, "c4").await.unwrap(), Some(u4));
    assert!(store
        .get_draft(&user, "c3")
        .await
        .unwrap()
        .is_none_or(|d| d.deleted));

    // Nothing stays readable under the anonymous principal.
    assert!(store.list_drafts(&anon).await.unwrap().is_empty());
    for c in ["c1", "c2"] {
        assert!(store
            .get_draft(&anon, c)
            .await
            .unwrap()
            .is_none_or(|d| d.deleted));
    }
    assert!(attachment_bytes(&*store, &anon, "c1", "clip.webm")
        .await
        .is_none());
    assert!(attachment_bytes(&*store, &anon, "c2", "pic.png")
        .await
        .is_none());
    let listed: Vec<_> = store
        .list_drafts(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.conversation)
        .collect();
    assert_eq!(listed, ["c1", "c2", "c4"]);

    // Writes continue from the merged seq; moving again moves nothing.
    written(
        store
            .put_draft_text(&user, "c1", m1.seq, "edited", 101)
            .await
            .unwrap(),
    );
    assert!(store
        .move_drafts(&anon, &user, 102)
        .await
        .unwrap()
        .is_empty());
}

pub async fn check_purge_drafts(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let old = written(
        store
            .put_draft_text(&p, "old", 0, "old text", 100)
            .await
            .unwrap(),
    );
    written(
        store
            .put_attachment(
                &p,
                "old",
                old.seq,
                "a.bin",
                "x/y",
                body(b"old bytes", 3),
                ROOMY,
                100,
            )
            .await
            .unwrap(),
    );
    let t = written(
        store
            .put_draft_text(&p, "tomb", 0, "soon gone", 120)
            .await
            .unwrap(),
    );
    written(store.delete_draft(&p, "tomb", t.seq, 150).await.unwrap());
    let fresh = written(
        store
            .put_draft_text(&p, "fresh", 0, "keep me", 1_000)
            .await
            .unwrap(),
    );

    assert_eq!(store.purge_drafts(500, 100).await.unwrap(), 2);
    assert_eq!(store.get_draft(&p, "old").await.unwrap(), None);
    assert_eq!(store.get_draft(&p, "tomb").await.unwrap(), None);
    assert!(attachment_bytes(&*store, &p, "old", "a.bin")
        .await
        .is_none());
    assert_eq!(store.get_draft(&p, "fresh").await.unwrap(), Some(fresh));
    // After a purge the conversation starts from seq 0 again.
    written(
        store
            .put_draft_text(&p, "old", 0, "new life", 2_000)
            .await
            .unwrap(),
    );
    // The purged bytes no longer count against the quota.
    let tight = AttachmentLimits {
        max_size: 100,
        quota: 9,
    };
    written(
        attach(&*store, &p, "fresh", 1, "b.bin", b"123456789", tight)
            .await
            .unwrap(),
    );
    // `limit` bounds one pass.
    let q = Principal::user("bob");
    for c in ["x1", "x2", "x3"] {
        written(store.put_draft_text(&q, c, 0, "t", 1).await.unwrap());
    }
    assert_eq!(store.purge_drafts(5, 2).await.unwrap(), 2);
    assert_eq!(store.purge_drafts(5, 2).await.unwrap(), 1);
    assert_eq!(store.purge_drafts(5, 2).await.unwrap(), 0);
}

pub async fn check_principal_isolation(store: Arc<dyn Store>) {
    let a = Principal::user("alice");
    let b = Principal::user("bob");
    let d = written(
        store
            .put_draft_text(&a, "c1", 0, "alice secret", 10)
            .await
            .unwrap(),
    );
    let d = written(
        attach(&*store, &a, "c1", d.seq, "clip.webm", b"alice audio", ROOMY)
            .await
            .unwrap(),
    );

    assert_eq!(store.get_draft(&b, "c1").await.unwrap(), None);
    assert!(store.list_drafts(&b).await.unwrap().is_empty());
    assert!(attachment_bytes(&*store, &b, "c1", "clip.webm")
        .await
        .is_none());
    // B naming A's seq gets B's own (absent) draft back, never A's.
    assert_eq!(
        conflict(
            store
                .put_draft_text(&b, "c1", d.seq, "bob", 11)
                .await
                .unwrap()
        ),
        None
    );
    assert_eq!(
        conflict(store.delete_draft(&b, "c1", d.seq, 11).await.unwrap()),
        None
    );
    assert!(matches!(
        store
            .delete_attachment(&b, "c1", d.seq, "clip.webm", 11)
            .await
            .unwrap(),
        DraftWrite::NotFound | DraftWrite::Conflict(None)
    ));

    let bd = written(
        store
            .put_draft_text(&b, "c1", 0, "bob text", 12)
            .await
            .unwrap(),
    );
    assert_eq!(bd.principal, b);
    assert_eq!(
        store
            .delete_attachment(&b, "c1", bd.seq, "clip.webm", 13)
            .await
            .unwrap(),
        DraftWrite::NotFound
    );
    written(store.delete_draft(&b, "c1", bd.seq, 14).await.unwrap());
    assert_eq!(store.get_draft(&a, "c1").await.unwrap(), Some(d.clone()));
    assert_eq!(
        attachment_bytes(&*store, &a, "c1", "clip.webm")
            .await
            .unwrap()
            .1,
        b"alice audio"
    );
    assert!(
        attachment_bytes(&*store, &a, "c2", "clip.webm")
            .await
            .is_none(),
        "attachments are per conversation"
    );
}

// ---------------------------------------------------------------- snapshots

pub async fn check_snapshots(store: Arc<dyn Store>) {
    assert_eq!(store.get_snapshot("room-1").await.unwrap(), None);
    let data1 = pattern(70_000, 5);
    let s1 = match store
        .put_snapshot(
            "room-1",
            0,
            &data1,
            "application/json",
            Some("s_abc"),
            None,
            100,
        )
        .await
        .unwrap()
    {
        SnapshotWrite::Written(s) => s,
        other => panic!("expected Written, got {other:?}"),
    };
    assert_eq!(s1.version, 1);
    assert_eq!(s1.hash, content_hash(&data1));
    assert_eq!(s1.size, data1.len() as u64);
    let got = store.get_snapshot("room-1").await.unwrap().expect("stored");
    assert!(got.data == data1, "snapshot bytes differ");
    assert_eq!(
        (
            got.version,
            got.hash.as_str(),
            got.content_type.as_str(),
            got.updated_by.as_deref(),
            got.updated_at,
            got.retain_until
        ),
        (
            1,
            content_hash(&data1).as_str(),
            "application/json",
            Some("s_abc"),
            100,
            None
        )
    );

    let data2 = b"{\"v\":2}".to_vec();
    let s2 = match store
        .put_snapshot("room-1", 1, &data2, "application/json", None, None, 200)
        .await
        .unwrap()
    {
        SnapshotWrite::Written(s) => s,
        other => panic!("expected Written, got {other:?}"),
    };
    assert_eq!(s2.version, 2);
    // A writer naming an old version is refused and shown the current one, without data.
    match store
        .put_snapshot("room-1", 1, b"stale", "application/json", None, None, 300)
        .await
        .unwrap()
    {
        SnapshotWrite::Conflict(Some(cur)) => {
            assert_eq!(
                (cur.version, cur.hash.as_str()),
                (2, content_hash(&data2).as_str())
            );
            assert!(cur.data.is_empty());
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store
        .put_snapshot("room-1", 0, b"stale", "application/json", None, None, 300)
        .await
        .unwrap()
    {
        SnapshotWrite::Conflict(Some(cur)) => assert_eq!(cur.version, 2),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store
        .put_snapshot("room-2", 3, b"x", "text/plain", None, None, 300)
        .await
        .unwrap()
    {
        SnapshotWrite::Conflict(None) => {}
        other => panic!("expected Conflict(None), got {other:?}"),
    }
    assert_eq!(store.get_snapshot("room-2").await.unwrap(), None);
    let got = store.get_snapshot("room-1").await.unwrap().unwrap();
    assert_eq!((got.version, got.data.as_slice()), (2, data2.as_slice()));

    // Retention: purged once `retain_until <= now`; `None` keeps it.
    match store
        .put_snapshot("room-3", 0, b"kept", "text/plain", None, Some(10_000), 300)
        .await
        .unwrap()
    {
        SnapshotWrite::Written(s) => assert_eq!(s.retain_until, Some(10_000)),
        other => panic!("expected Written, got {other:?}"),
    }
    store.retain_snapshot("room-3", None).await.unwrap();
    store.retain_snapshot("room-1", Some(1_000)).await.unwrap();
    store
        .retain_snapshot("no-such-room", Some(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_snapshot("room-1")
            .await
            .unwrap()
            .unwrap()
            .retain_until,
        Some(1_000)
    );
    assert_eq!(store.purge_snapshots(999, 10).await.unwrap(), 0);
    assert_eq!(store.purge_snapshots(1_000, 10).await.unwrap(), 1);
    assert_eq!(store.get_snapshot("room-1").await.unwrap(), None);
    assert_eq!(store.purge_snapshots(1_000_000, 10).await.unwrap(), 0);
    assert!(store.get_snapshot("room-3").await.unwrap().is_some());
    // A purged room starts again at version 1.
    assert!(matches!(
        store.put_snapshot("room-1", 0, b"new", "text/plain", None, None, 2_000).await.unwrap(),
        SnapshotWrite::Written(s) if s.version == 1
    ));
}

pub async fn check_concurrent_snapshot_put(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let data = vec![i; 1_000];
            (
                i,
                store
                    .put_snapshot("room", 0, &data, "application/octet-stream", None, None, 10)
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, SnapshotWrite::Written(s)) => winners.push((i, s)),
            (_, SnapshotWrite::Conflict(Some(cur))) => assert_eq!(cur.version, 1),
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins version 1");
    let got = store.get_snapshot("room").await.unwrap().unwrap();
    assert_eq!(
        got.data,
        vec![winners[0].0; 1_000],
        "the stored bytes are the winner's, whole"
    );
    assert_eq!(got.hash, winners[0].1.hash);
}

// ---------------------------------------------------------------- property: isolation

#[derive(Debug, Clone)]
enum Op {
    Write {
        p: usize,
        c: usize,
        empty: bool,
        stale: bool,
    },
    Delete {
        p: usize,
        c: usize,
    },
    Attach {
        p: usize,
        c: usize,
        name: usize,
    },
    DeleteAttachment {
        p: usize,
        c: usize,
        name: usize,
    },
    Move {
        from: usize,
        to: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, prop::bool::weighted(0.15), prop::bool::weighted(0.2))
            .prop_map(|(p, c, empty, stale)| Op::Write { p, c, empty, stale }),
        1 => (0..3usize, 0..3usize).prop_map(|(p, c)| Op::Delete { p, c }),
        2 => (0..3usize, 0..3usize, 0..2usize).prop_map(|(p, c, name)| Op::Attach { p, c, name }),
        1 => (0..3usize, 0..3usize, 0..2usize).prop_map(|(p, c, name)| Op::DeleteAttachment { p, c, name }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Move { from, to }),
    ]
}

/// Everything a principal may legitimately see in one conversation: what it wrote
/// there, plus what was moved to it from other principals' same conversation.
#[derive(Default)]
struct Allowed {
    texts: HashMap<(usize, usize), HashSet<String>>,
    blobs: HashMap<(usize, usize), HashSet<Vec<u8>>>,
}

async fn run_isolation_case(
    store: &dyn Store,
    case: usize,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let principals: Vec<Principal> = (0..3)
        .map(|i| Principal(format!("anon:case{case}-p{i}")))
        .collect();
    let convs = ["conv-a", "conv-b", "conv-c"];
    let names = ["one.bin", "two.bin"];
    let mut allowed = Allowed::default();
    let su = |e: StoreError| TestCaseError::fail(format!("store error: {e}"));
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Write { p, c, empty, stale } => {
                let cur = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?;
                let seq = cur.map_or(0, |d| d.seq);
                let seq = if stale { seq.saturating_sub(1) } else { seq };
                let text = if empty {
                    String::new()
                } else {
                    format!("case{case}|p{p}|{}|op{n}", convs[c])
                };
                if !text.is_empty() {
                    allowed
                        .texts
                        .entry((p, c))
                        .or_default()
                        .insert(text.clone());
                }
                store
                    .put_draft_text(&principals[p], convs[c], seq, &text, n as i64)
                    .await
                    .map_err(su)?;
            }
            Op::Delete { p, c } => {
                let seq = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?
                    .map_or(0, |d| d.seq);
                store
                    .delete_draft(&principals[p], convs[c], seq, n as i64)
                    .await
                    .map_err(su)?;
            }
            Op::Attach { p, c, name } => {
                let seq = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?
                    .map_or(0, |d| d.seq);
                let data = format!("case{case}|p{p}|{}|op{n}", convs[c]).into_bytes();
                allowed
                    .blobs
                    .entry((p, c))
                    .or_default()
                    .insert(data.clone());
                store
                    .put_attachment(
                        &principals[p],
                        convs[c],
                        seq,
                        names[name],
                        "x/y",
                        body(&data, 7),
                        ROOMY,
                        n as i64,
                    )
                    .await
                    .map_err(su)?;
            }
            Op::DeleteAttachment { p, c, name } => {
                let seq = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?
                    .map_or(0, |d| d.seq);
                store
                    .delete_attachment(&principals[p], convs[c], seq, names[name], n as i64)
                    .await
                    .map_err(su)?;
            }
            Op::Move { from, to } => {
                if from != to {
                    for c in 0..convs.len() {
                        let t: Vec<String> = allowed
                            .texts
                            .get(&(from, c))
                            .into_iter()
                            .flatten()
                            .cloned()
                            .collect();
                        allowed.texts.entry((to, c)).or_default().extend(t);
                        let b: Vec<Vec<u8>> = allowed
                            .blobs
                            .get(&(from, c))
                            .into_iter()
                            .flatten()
                            .cloned()
                            .collect();
                        allowed.blobs.entry((to, c)).or_default().extend(b);
                    }
                    store
                        .move_drafts(&principals[from], &principals[to], n as i64)
                        .await
                        .map_err(su)?;
                }
            }
        }
        // After every step, every principal reads only what it may see.
        for (p, principal) in principals.iter().enumerate() {
            for d in store.list_drafts(principal).await.map_err(su)? {
                prop_assert_eq!(&d.principal, principal);
                prop_assert!(!d.deleted, "list_drafts returned a tombstone");
            }
            for (c, conv) in convs.iter().enumerate() {
                let Some(d) = store.get_draft(principal, conv).await.map_err(su)? else {
                    continue;
                };
                prop_assert_eq!(&d.principal, principal);
                prop_assert_eq!(&d.conversation, conv);
                let ok_texts = allowed.texts.get(&(p, c));
                for seg in d.text.split("\n\n").filter(|s| !s.is_empty()) {
                    prop_assert!(
                        ok_texts.is_some_and(|t| t.contains(seg)),
                        "{} in {} read foreign text {:?}",
                        principal,
                        conv,
                        seg
                    );
                }
                for a in &d.attachments {
                    let Some((meta, s)) = store
                        .get_attachment(principal, conv, &a.name)
                        .await
                        .map_err(su)?
                    else {
                        return Err(TestCaseError::fail(format!(
                            "listed attachment {} unreadable",
                            a.name
                        )));
                    };
                    let bytes = read_all(s).await;
                    prop_assert_eq!(&meta.sha256, &sha_hex(&bytes));
                    prop_assert!(
                        allowed
                            .blobs
                            .get(&(p, c))
                            .is_some_and(|b| b.contains(&bytes)),
                        "{} in {} read foreign attachment {:?}",
                        principal,
                        conv,
                        String::from_utf8_lossy(&bytes)
                    );
                }
            }
        }
    }
    Ok(())
}

/// Random interleavings of draft writes, deletes, attachments and sign-in moves across
/// 3 principals x 3 conversations never let a principal read outside its own scope.
pub async fn check_random_draft_isolation(store: Arc<dyn Store>) {
    let rt = tokio::runtime::Handle::current();
    let case = std::sync::atomic::AtomicUsize::new(0);
    // proptest's runner is synchronous; block_in_place lets it drive the async store
    // from inside this multi-threaded test runtime.
    tokio::task::block_in_place(|| {
        let config = ProptestConfig {
            cases: 32,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let result = runner.run(&prop::collection::vec(op_strategy(), 1..40), |ops| {
            // Each case (and each shrink step) uses fresh principals in the shared store.
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(run_isolation_case(&*store, n, &ops))
        });
        if let Err(e) = result {
            panic!("draft isolation violated: {e}");
        }
    });
}
