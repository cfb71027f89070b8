//! Session checks: create (idempotent), lookups, token CAS, touches, ending,
//! listing, deadlines, purges, counts, the session data bag, audit events committed
//! with their change, and pending sign-in draft moves.

use super::{session, MINUTE};
use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
use sessiond_core::quota::DataUsage;
use sessiond_core::store::prelude::*;
use sessiond_core::store::{
    CreateOutcome, DraftMove, Expiring, Expiry, IdempotencyRecord, SessionFilter, Touch,
};
use sessiond_core::{
    EndReason, Handle, Principal, Session, SessionState, Timestamp, Token, TokenHash,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

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

fn touch(handle: Handle, activity: Timestamp, seen: Timestamp, idle: Timestamp) -> Touch {
    Touch {
        handle,
        last_activity_at: activity,
        last_seen_at: seen,
        idle_expires_at: idle,
        client_ip: None,
        user_agent: None,
    }
}

async fn create(store: &dyn Store, s: &Session) {
    assert_eq!(
        store.create_session(s, None, &[]).await.unwrap(),
        CreateOutcome::Created
    );
}

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
            let out = store.create_session(&s, Some(&rec), &[]).await.unwrap();
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
        .create_session(&s, Some(&idem("other-key", s.handle, 2_000)), &[])
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
        .end_session(&s.handle, EndReason::SignedOut, 2_000, &[])
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

pub async fn check_put_data_if(store: Arc<dyn Store>) {
    let ghost = Handle::generate();
    assert!(
        !store
            .put_data_if(&ghost, "k", None, &serde_json::json!(1))
            .await
            .unwrap(),
        "a compare-and-set needs a session"
    );
    let s = session("anon:x", "editor", 1_000);
    create(&*store, &s).await;
    let h = s.handle;
    let v1 = serde_json::json!({"rev": 1, "data": {"a": [1, 2.5, "x"], "b": null}});
    let v2 = serde_json::json!({"rev": 2, "data": {"a": 1}});
    assert!(
        !store.put_data_if(&h, "k", Some(&v1), &v2).await.unwrap(),
        "expecting a value where there is none fails"
    );
    assert!(store.put_data_if(&h, "k", None, &v1).await.unwrap());
    assert!(
        !store.put_data_if(&h, "k", None, &v2).await.unwrap(),
        "expecting no value where there is one fails"
    );
    // The value as read back is what a caller passes as expected.
    let read = store.get_data(&h, "k").await.unwrap().unwrap();
    assert_eq!(read, v1);
    assert!(store.put_data_if(&h, "k", Some(&read), &v2).await.unwrap());
    assert!(
        !store.put_data_if(&h, "k", Some(&read), &v1).await.unwrap(),
        "a stale expectation fails"
    );
    assert_eq!(store.get_data(&h, "k").await.unwrap(), Some(v2.clone()));

    // Concurrent writers that read the same value: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (store, expected) = (store.clone(), v2.clone());
        tasks.push(tokio::spawn(async move {
            store
                .put_data_if(
                    &h,
                    "k",
                    Some(&expected),
                    &serde_json::json!({ "rev": 3, "w": i }),
                )
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one concurrent compare-and-set applies");

    let now = store.get_data(&h, "k").await.unwrap().unwrap();
    store
        .end_session(&h, EndReason::SignedOut, 2_000, &[])
        .await
        .unwrap()
        .unwrap();
    assert!(
        !store.put_data_if(&h, "k", Some(&now), &v1).await.unwrap(),
        "an ended session takes no write"
    );
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

/// `data_usage` counts the session's other keys and their bytes (key length plus the
/// value's compact JSON), and the asked key apart; other sessions never count.
pub async fn check_data_usage(store: Arc<dyn Store>) {
    let s = session("anon:x", "editor", 1_000);
    let other = session("anon:y", "editor", 1_000);
    create(&*store, &s).await;
    create(&*store, &other).await;
    let none = store.data_usage(&s.handle, "a").await.unwrap();
    assert_eq!(none, DataUsage::default());
    let values = [
        ("a", serde_json::json!({"x": [1, 2, 3]})),
        ("bb", serde_json::json!("héllo")),
        ("ccc", serde_json::json!(12345)),
    ];
    for (k, v) in &values {
        assert!(store.put_data(&s.handle, k, v).await.unwrap());
    }
    assert!(store
        .put_data(&other.handle, "zzz", &serde_json::json!("elsewhere"))
        .await
        .unwrap());
    let size = |k: &str, v: &serde_json::Value| (k.len() + v.to_string().len()) as u64;
    let all: u64 = values.iter().map(|(k, v)| size(k, v)).sum();
    let u = store.data_usage(&s.handle, "bb").await.unwrap();
    assert_eq!(
        u,
        DataUsage {
            keys: 2,
            bytes: all - size("bb", &values[1].1),
            current: Some(size("bb", &values[1].1)),
        },
        "bytes, not characters: é is two"
    );
    let u = store.data_usage(&s.handle, "new").await.unwrap();
    assert_eq!((u.keys, u.bytes, u.current), (3, all, None));
    assert!(store.delete_data(&s.handle, "a").await.unwrap());
    let u = store.data_usage(&s.handle, "new").await.unwrap();
    assert_eq!((u.keys, u.bytes), (2, all - size("a", &values[0].1)));
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
    // The rotation counter is part of the record: a cache orders records by it.
    signed.version = 7;

    let stale: TokenHash = Token::generate().hash();
    assert!(!store
        .update_session(&signed, &stale, &[], None)
        .await
        .unwrap());
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(s.clone()));

    assert!(store
        .update_session(&signed, &old_hash, &[], None)
        .await
        .unwrap());
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
    assert!(!store
        .update_session(&signed, &old_hash, &[], None)
        .await
        .unwrap());

    let ended = store
        .end_session(&s.handle, EndReason::Revoked, 2_000, &[])
        .await
        .unwrap()
        .unwrap();
    let mut again = ended.clone();
    again.token_hash = Token::generate().hash();
    again.state = SessionState::Active;
    assert!(
        !store
            .update_session(&again, &signed.token_hash, &[], None)
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
        .touch_session(&touch(s.handle, 5_000, 6_000, 70_000), &[])
        .await
        .unwrap());
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(
        (got.last_activity_at, got.last_seen_at, got.idle_expires_at),
        (5_000, 6_000, 70_000)
    );
    // Older values (a late, reordered flush) never move anything backwards.
    store
        .touch_session(&touch(s.handle, 2_000, 3_000, 20_000), &[])
        .await
        .unwrap();
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(
        (got.last_activity_at, got.last_seen_at, got.idle_expires_at),
        (5_000, 6_000, 70_000)
    );
    // Mixed: only the newer fields move.
    store
        .touch_session(&touch(s.handle, 4_000, 9_000, 60_000), &[])
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
        .end_session(&s.handle, EndReason::SignedOut, 10_000, &[])
        .await
        .unwrap()
        .unwrap();
    assert!(!store
        .touch_session(&touch(s.handle, 20_000, 20_000, 90_000), &[])
        .await
        .unwrap());
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(ended));
    assert!(!store
        .touch_session(&touch(Handle::generate(), 1, 1, 1), &[])
        .await
        .unwrap());
}

/// A touch carries where the session was seen from: given fields replace what is
/// stored (in single and batched touches, through get, token lookup and listing), absent
/// ones keep it, and an ended session keeps its last ones.
pub async fn check_touch_updates_client(store: Arc<dyn Store>) {
    let mut s = session("user:devices", "editor", 1_000);
    s.client_ip = Some("10.0.0.1".into());
    s.user_agent = Some("Firefox/1".into());
    create(&*store, &s).await;
    let mut t = touch(s.handle, 2_000, 2_000, 70_000);
    t.client_ip = Some("192.0.2.7".into());
    t.user_agent = Some("Chrome/2 \"quoted\" = x".into());
    assert!(store.touch_session(&t, &[]).await.unwrap());
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(got.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(got.user_agent.as_deref(), Some("Chrome/2 \"quoted\" = x"));
    let by_token = store.get_session_by_token(&s.token_hash).await.unwrap();
    assert_eq!(by_token, Some(got.clone()));
    let listed = store
        .list_sessions(&SessionFilter {
            principal: Some("user:devices".into()),
            active_only: true,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![got]);

    // Without client fields a touch keeps the stored ones.
    store
        .touch_session(&touch(s.handle, 3_000, 3_000, 71_000), &[])
        .await
        .unwrap();
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(got.client_ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(got.last_activity_at, 3_000);

    // Batched, with only the IP given.
    let mut t = touch(s.handle, 4_000, 4_000, 72_000);
    t.client_ip = Some("2001:db8::1".into());
    store.touch_sessions(&[t]).await.unwrap();
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(got.client_ip.as_deref(), Some("2001:db8::1"));
    assert_eq!(got.user_agent.as_deref(), Some("Chrome/2 \"quoted\" = x"));

    // A sign-in rewrites the record; its fields stand until the next touch.
    let mut rotated = got.clone();
    rotated.token_hash = Token::generate().hash();
    rotated.version += 1;
    rotated.client_ip = Some("198.51.100.1".into());
    assert!(store
        .update_session(&rotated, &got.token_hash, &[], None)
        .await
        .unwrap());
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(got.client_ip.as_deref(), Some("198.51.100.1"));

    let ended = store
        .end_session(&s.handle, EndReason::EndedByUser, 5_000, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.end_reason, Some(EndReason::EndedByUser));
    let mut late = touch(s.handle, 6_000, 6_000, 80_000);
    late.client_ip = Some("203.0.113.9".into());
    assert!(!store.touch_session(&late, &[]).await.unwrap());
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(got.client_ip.as_deref(), Some("198.51.100.1"));
    assert_eq!(got.end_reason, Some(EndReason::EndedByUser));
}

pub async fn check_touch_sessions_batch(store: Arc<dyn Store>) {
    let a = session("anon:a", "editor", 1_000);
    let b = session("anon:b", "editor", 1_000);
    let c = session("anon:c", "editor", 1_000);
    for s in [&a, &b, &c] {
        create(&*store, s).await;
    }
    let ended = store
        .end_session(&c.handle, EndReason::Revoked, 2_000, &[])
        .await
        .unwrap()
        .unwrap();
    store
        .touch_sessions(&[
            touch(a.handle, 3_000, 3_000, 80_000),
            touch(b.handle, 4_000, 4_500, 90_000),
            touch(c.handle, 5_000, 5_000, 99_000),
            touch(Handle::generate(), 5_000, 5_000, 99_000),
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
                .end_session(&h, EndReason::IdleTimeout, 5_000 + i, &[])
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
            .end_session(&s.handle, EndReason::Revoked, 9_000, &[])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .end_session(&Handle::generate(), EndReason::Revoked, 9_000, &[])
            .await
            .unwrap(),
        None
    );
}

/// A timeout ending decided on a copy of the record ends the session only while the
/// stored record still is that copy and is due: activity or a rotation written
/// meanwhile, a copy not yet due, or an ending already made leave it as it is, write no
/// event, and answer `None`. Exactly one of concurrent callers ends it.
pub async fn check_expire_session(store: Arc<dyn Store>) {
    use AuditKind::Ended;
    let s = session("anon:exp", "editor", 1_000);
    create(&*store, &s).await;
    let ended_event = |s: &Session, at| [event(Ended, s, at).with_reason("idle_timeout")];
    let expire = |seen: Expiry, at: Timestamp, audit: [AuditEvent; 1]| {
        let store = store.clone();
        async move {
            store
                .expire_session(&seen, EndReason::IdleTimeout, at, &audit)
                .await
                .unwrap()
        }
    };
    let idle = s.idle_expires_at;
    let seen = Expiry::of(&s);

    // Not due yet on the copy: nothing.
    assert_eq!(
        expire(seen, idle - 1, ended_event(&s, idle - 1)).await,
        None
    );
    // Activity written after the copy was taken (another node's flush) moves the
    // deadline: the copy's deadline has passed, but the store's has not.
    assert!(store
        .touch_session(&touch(s.handle, 30_000, 30_000, 30_000 + MINUTE), &[])
        .await
        .unwrap());
    assert_eq!(
        expire(seen, idle + 1, ended_event(&s, idle + 1)).await,
        None
    );
    let cur = store.get_session(&s.handle).await.unwrap().unwrap();
    assert!(cur.is_active(), "stale copy must not end the session");

    // A rotation after the copy: the token no longer matches.
    let before = Expiry::of(&cur);
    let mut rotated = cur.clone();
    rotated.token_hash = Token::generate().hash();
    assert!(store
        .update_session(&rotated, &cur.token_hash, &[], None)
        .await
        .unwrap());
    let due = cur.idle_expires_at;
    assert_eq!(expire(before, due, ended_event(&cur, due)).await, None);
    assert!(store
        .get_session(&s.handle)
        .await
        .unwrap()
        .unwrap()
        .is_active());
    assert_eq!(
        audit_of(&*store, &s.handle).await,
        Vec::<AuditKind>::new(),
        "refused expiries write no event"
    );

    // The current copy, due: exactly one of concurrent callers ends it, with its event.
    let seen = Expiry::of(&rotated);
    let mut tasks = Vec::new();
    for i in 0..10 {
        tasks.push(tokio::spawn(expire(
            seen,
            due + i,
            ended_event(&rotated, due + i),
        )));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "exactly one caller ends the session");
    let e = &winners[0];
    assert_eq!(e.state, SessionState::Ended);
    assert_eq!(e.end_reason, Some(EndReason::IdleTimeout));
    assert!(e.ended_at.is_some_and(|t| (due..due + 10).contains(&t)));
    assert_eq!(e.token_hash, rotated.token_hash);
    assert_eq!(e.last_activity_at, 30_000);
    assert_eq!(
        store.get_session(&s.handle).await.unwrap().as_ref(),
        Some(e)
    );
    assert_eq!(
        store
            .get_session_by_token(&rotated.token_hash)
            .await
            .unwrap()
            .as_ref(),
        Some(e),
        "expired sessions stay findable"
    );
    assert_eq!(audit_of(&*store, &s.handle).await, vec![Ended]);
    assert!(!store
        .due_sessions(due + 100, 10)
        .await
        .unwrap()
        .contains(&s.handle));
    // Ended already, or never there: nothing.
    assert_eq!(
        expire(seen, due + 50, ended_event(&rotated, due + 50)).await,
        None
    );
    let ghost = session("anon:ghost", "editor", 1_000);
    assert_eq!(
        expire(Expiry::of(&ghost), due, ended_event(&ghost, due)).await,
        None
    );
    assert_eq!(audit_of(&*store, &s.handle).await, vec![Ended]);
}

/// A batch of timeouts answers item by item, in order, as one `expire_session` each
/// would: the due copies end with their own reason and event; a stale copy, one not yet
/// due, one already ended and one never stored are `None` and write nothing; the same
/// session twice in a batch ends once, by either of its items (the trait's default runs
/// the items concurrently, so which one wins is a race).
pub async fn check_expire_sessions_batch(store: Arc<dyn Store>) {
    use AuditKind::Ended;
    let make = |p: &str| session(p, "editor", 1_000);
    let (due_idle, due_abs, stale, early, gone) = (
        make("anon:b1"),
        with_deadlines(make("anon:b2"), 9_000_000, 2_000),
        make("anon:b3"),
        // Due only after the batch's moment.
        with_deadlines(make("anon:b4"), 200_000, 9_000_000),
        make("anon:b5"),
    );
    for s in [&due_idle, &due_abs, &stale, &early, &gone] {
        create(&*store, s).await;
    }
    let at = due_idle.idle_expires_at + 10;
    // The stale copy: activity written after it was taken moved the deadline.
    assert!(store
        .touch_session(&touch(stale.handle, 30_000, 30_000, at + MINUTE), &[])
        .await
        .unwrap());
    store
        .end_session(&gone.handle, EndReason::SignedOut, 5_000, &[])
        .await
        .unwrap()
        .unwrap();
    let never = make("anon:b6");
    let item = |s: &Session, reason: EndReason| Expiring {
        seen: Expiry::of(s),
        reason,
        audit: vec![event(Ended, s, at).with_reason(reason.as_str())],
    };
    let batch = vec![
        item(&due_idle, EndReason::IdleTimeout),
        item(&stale, EndReason::IdleTimeout),
        item(&due_abs, EndReason::AbsoluteTimeout),
        item(&early, EndReason::IdleTimeout),
        item(&gone, EndReason::IdleTimeout),
        item(&never, EndReason::IdleTimeout),
        item(&due_idle, EndReason::IdleTimeout),
    ];
    let answers: Vec<Option<Session>> = store
        .expire_sessions(batch.clone(), at)
        .await
        .into_iter()
        .map(|r| r.expect("no item fails"))
        .collect();
    assert_eq!(answers.len(), batch.len(), "one answer per item");
    let ended: Vec<bool> = answers.iter().map(Option::is_some).collect();
    assert!(
        ended[0] != ended[6],
        "the session named twice ends once: {ended:?}"
    );
    assert_eq!(ended[1..6], [false, true, false, false, false]);
    let twice = if ended[0] { 0 } else { 6 };
    for (i, reason) in [
        (twice, EndReason::IdleTimeout),
        (2, EndReason::AbsoluteTimeout),
    ] {
        let e = answers[i].as_ref().unwrap();
        assert_eq!(e.handle, batch[i].seen.handle);
        assert_eq!(e.state, SessionState::Ended);
        assert_eq!(e.end_reason, Some(reason));
        assert_eq!(e.ended_at, Some(at));
        assert_eq!(
            store.get_session(&e.handle).await.unwrap().as_ref(),
            Some(e)
        );
        assert_eq!(audit_of(&*store, &e.handle).await, vec![Ended]);
    }
    for s in [&stale, &early] {
        let cur = store.get_session(&s.handle).await.unwrap().unwrap();
        assert!(
            cur.is_active(),
            "a refused item leaves its session as it was"
        );
        assert!(audit_of(&*store, &s.handle).await.is_empty());
    }
    assert!(audit_of(&*store, &gone.handle).await.is_empty());
    assert!(store.get_session(&never.handle).await.unwrap().is_none());
    assert!(store.expire_sessions(Vec::new(), at).await.is_empty());
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
        .end_session(&d.handle, EndReason::SignedOut, 10, &[])
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
    store
        .touch_session(&touch(a.handle, 50, 50, 3_000), &[])
        .await
        .unwrap();
    assert_eq!(due(999, 10).await, BTreeSet::from([b.handle]));
    assert_eq!(due(1_000, 10).await, BTreeSet::from([a.handle, b.handle]));
    store
        .end_session(&b.handle, EndReason::AbsoluteTimeout, 300, &[])
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
        .end_session(&all[3].handle, EndReason::Revoked, 10, &[])
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
        store.create_session(&s1, Some(&rec1), &[]).await.unwrap(),
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
        .end_session(&s1.handle, EndReason::SignedOut, 100, &[])
        .await
        .unwrap()
        .unwrap();
    store
        .end_session(&s2.handle, EndReason::SignedOut, 500, &[])
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
            .create_session(&s4, Some(&idem("key-1", s4.handle, 1_000)), &[])
            .await
            .unwrap(),
        CreateOutcome::Created
    );
    // `limit` bounds one pass; active sessions are never purged.
    store
        .end_session(&s3.handle, EndReason::SignedOut, 600, &[])
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
        .end_session(&ss[0].handle, EndReason::Revoked, 10, &[])
        .await
        .unwrap()
        .unwrap();
    store
        .end_session(&ss[1].handle, EndReason::Revoked, 10, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.count_active_sessions().await.unwrap(), 3);
}

/// Now in ms on the wall clock: Redis expires claims on its own clock, so the check
/// speaks real time to every backend alike.
pub(crate) fn wall_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as Timestamp
}

/// A claim is won once (also under a race, on any node) until it runs out; purges
/// keep standing claims.
pub async fn check_claim_once(store: Arc<dyn Store>) {
    let now = wall_ms();
    assert!(store.claim_once("jti-a", now + 60_000, now).await.unwrap());
    assert!(!store.claim_once("jti-a", now + 60_000, now).await.unwrap());
    assert!(!store
        .claim_once("jti-a", now + 120_000, now + 1)
        .await
        .unwrap());
    // Distinct keys are independent.
    assert!(store.claim_once("jti-b", now + 60_000, now).await.unwrap());

    let racers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_once("jti-race", now + 60_000, now).await })
    });
    let won = futures::future::join_all(racers)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap().as_ref().unwrap())
        .count();
    assert_eq!(won, 1, "exactly one concurrent claim wins");

    // A short claim runs out and the key may be claimed again.
    let now = wall_ms();
    assert!(store.claim_once("jti-short", now + 150, now).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let later = wall_ms();
    let purged = store.purge_claims(later, 0).await.unwrap();
    assert!(purged <= 1, "only the run-out claim may be purged");
    assert!(!store
        .claim_once("jti-a", later + 60_000, later)
        .await
        .unwrap());
    assert!(store
        .claim_once("jti-short", later + 60_000, later)
        .await
        .unwrap());
}

// ---------------------------------------------------------------- audit with its change

fn event(kind: AuditKind, s: &Session, at: Timestamp) -> AuditEvent {
    AuditEvent::for_session(at, kind, s)
}

async fn audit_of(store: &dyn Store, h: &Handle) -> Vec<AuditKind> {
    let f = AuditFilter {
        handle: Some(h.to_string()),
        limit: 100,
        ..Default::default()
    };
    let mut kinds: Vec<(i64, AuditKind)> = store
        .query_audit(&f)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.kind))
        .collect();
    kinds.sort_by_key(|(id, _)| *id);
    kinds.into_iter().map(|(_, k)| k).collect()
}

/// Every lifecycle write commits its audit events with it: a write that applies makes
/// its events visible, one that does not (lost idempotency race, stale token, ended or
/// missing session, second ending) writes none.
pub async fn check_audit_with_change(store: Arc<dyn Store>) {
    use AuditKind::*;
    let s = session("anon:a1", "editor", 1_000);
    let rec = idem("audited-key", s.handle, 1_000);
    let out = store
        .create_session(&s, Some(&rec), &[event(Created, &s, 1_000)])
        .await
        .unwrap();
    assert_eq!(out, CreateOutcome::Created);
    assert_eq!(audit_of(&*store, &s.handle).await, vec![Created]);

    // The same key again: nothing written, no event.
    let loser = session("anon:a2", "editor", 1_001);
    let again = store
        .create_session(
            &loser,
            Some(&idem("audited-key", loser.handle, 1_001)),
            &[event(Created, &loser, 1_001)],
        )
        .await
        .unwrap();
    assert!(matches!(again, CreateOutcome::Existing(_)));
    assert_eq!(
        audit_of(&*store, &loser.handle).await,
        Vec::<AuditKind>::new()
    );

    // Rotation: a stale token writes nothing; the right one writes both events.
    let mut signed = s.clone();
    signed.token_hash = Token::generate().hash();
    signed.principal = Principal("user:a".into());
    let evs = [
        event(SignedIn, &signed, 2_000),
        event(TokenRotated, &signed, 2_000),
    ];
    assert!(!store
        .update_session(&signed, &Token::generate().hash(), &evs, None)
        .await
        .unwrap());
    assert_eq!(audit_of(&*store, &s.handle).await, vec![Created]);
    assert!(store
        .update_session(&signed, &s.token_hash, &evs, None)
        .await
        .unwrap());
    assert_eq!(
        audit_of(&*store, &s.handle).await,
        vec![Created, SignedIn, TokenRotated]
    );

    // Renewal: with the touch; none for a missing session.
    assert!(store
        .touch_session(
            &touch(s.handle, 3_000, 3_000, 50_000),
            &[event(Renewed, &signed, 3_000)]
        )
        .await
        .unwrap());
    let ghost = session("anon:ghost", "editor", 1_000);
    assert!(!store
        .touch_session(
            &touch(ghost.handle, 3_000, 3_000, 50_000),
            &[event(Renewed, &ghost, 3_000)]
        )
        .await
        .unwrap());
    assert_eq!(
        audit_of(&*store, &ghost.handle).await,
        Vec::<AuditKind>::new()
    );

    // Ending: the winner's event only.
    let ended = [event(Ended, &signed, 4_000).with_reason("revoked")];
    assert!(store
        .end_session(&s.handle, EndReason::Revoked, 4_000, &ended)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .end_session(&s.handle, EndReason::Revoked, 4_001, &ended)
        .await
        .unwrap()
        .is_none());
    assert!(!store
        .touch_session(
            &touch(s.handle, 5_000, 5_000, 60_000),
            &[event(Renewed, &signed, 5_000)]
        )
        .await
        .unwrap());
    assert_eq!(
        audit_of(&*store, &s.handle).await,
        vec![Created, SignedIn, TokenRotated, Renewed, Ended]
    );
    let stored = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(
        stored.last_activity_at, 3_000,
        "the renewal's touch was written"
    );
}

/// A rotation records its pending draft move with it (not when it does not apply);
/// finishing removes it with its event, once.
pub async fn check_draft_moves(store: Arc<dyn Store>) {
    let s = session("anon:m1", "editor", 1_000);
    create(&*store, &s).await;
    let mut signed = s.clone();
    signed.token_hash = Token::generate().hash();
    signed.principal = Principal("user:m".into());
    let m = DraftMove {
        handle: s.handle,
        from: s.principal.clone(),
        to: signed.principal.clone(),
        at: 2_000,
    };
    assert!(!store
        .update_session(&signed, &Token::generate().hash(), &[], Some(&m))
        .await
        .unwrap());
    assert_eq!(store.pending_draft_moves(0).await.unwrap(), vec![]);
    assert!(store
        .update_session(&signed, &s.token_hash, &[], Some(&m))
        .await
        .unwrap());
    assert_eq!(store.pending_draft_moves(0).await.unwrap(), vec![m.clone()]);

    let other = session("anon:m2", "editor", 1_000);
    create(&*store, &other).await;
    let mut other_signed = other.clone();
    other_signed.token_hash = Token::generate().hash();
    other_signed.principal = Principal("user:n".into());
    let m2 = DraftMove {
        handle: other.handle,
        from: other.principal.clone(),
        to: other_signed.principal.clone(),
        at: 2_500,
    };
    assert!(store
        .update_session(&other_signed, &other.token_hash, &[], Some(&m2))
        .await
        .unwrap());
    assert_eq!(
        store.pending_draft_moves(0).await.unwrap(),
        vec![m.clone(), m2.clone()],
        "oldest first"
    );
    assert_eq!(store.pending_draft_moves(1).await.unwrap(), vec![m.clone()]);

    let restored = AuditEvent {
        handle: Some(s.handle.to_string()),
        ..AuditEvent::new(3_000, AuditKind::DraftsRestored)
    };
    assert!(store
        .finish_draft_move(&m, std::slice::from_ref(&restored))
        .await
        .unwrap());
    assert!(!store
        .finish_draft_move(&m, std::slice::from_ref(&restored))
        .await
        .unwrap());
    assert_eq!(store.pending_draft_moves(0).await.unwrap(), vec![m2]);
    assert_eq!(
        audit_of(&*store, &s.handle).await,
        vec![AuditKind::DraftsRestored],
        "the event once, with the removal"
    );
}

/// With audit appends failing (the backend's own fault, armed by `arm` after the
/// setup), every audited write fails and leaves nothing: no session, no rotation, no
/// pending move, no touch, no ending.
pub async fn check_failed_audit_fails_change<F, Fut>(store: Arc<dyn Store>, arm: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use AuditKind::*;
    let base = session("anon:f1", "editor", 1_000);
    create(&*store, &base).await;
    arm().await;

    let s = session("anon:f2", "editor", 1_000);
    assert!(store
        .create_session(&s, None, &[event(Created, &s, 1_000)])
        .await
        .is_err());
    assert_eq!(store.get_session(&s.handle).await.unwrap(), None);
    let k = session("anon:f3", "editor", 1_000);
    assert!(store
        .create_session(
            &k,
            Some(&idem("failing-key", k.handle, 1_000)),
            &[event(Created, &k, 1_000)]
        )
        .await
        .is_err());
    assert!(
        store
            .get_session_by_token(&k.token_hash)
            .await
            .unwrap()
            .is_none()
            || store.get_session(&k.handle).await.unwrap().is_none(),
        "no usable session"
    );

    let mut signed = base.clone();
    signed.token_hash = Token::generate().hash();
    signed.principal = Principal("user:f".into());
    let m = DraftMove {
        handle: base.handle,
        from: base.principal.clone(),
        to: signed.principal.clone(),
        at: 2_000,
    };
    assert!(store
        .update_session(
            &signed,
            &base.token_hash,
            &[event(SignedIn, &signed, 2_000)],
            Some(&m)
        )
        .await
        .is_err());
    let cur = store.get_session(&base.handle).await.unwrap().unwrap();
    assert!(
        cur.token_hash == base.token_hash && cur.principal == base.principal,
        "not rotated"
    );
    assert_eq!(store.pending_draft_moves(0).await.unwrap(), vec![]);

    assert!(store
        .touch_session(
            &touch(base.handle, 3_000, 3_000, 50_000),
            &[event(Renewed, &base, 3_000)]
        )
        .await
        .is_err());
    assert_eq!(
        store
            .get_session(&base.handle)
            .await
            .unwrap()
            .unwrap()
            .last_activity_at,
        base.last_activity_at,
        "not renewed"
    );

    assert!(store
        .end_session(
            &base.handle,
            EndReason::Revoked,
            4_000,
            &[event(Ended, &base, 4_000)]
        )
        .await
        .is_err());
    assert!(
        store
            .get_session(&base.handle)
            .await
            .unwrap()
            .unwrap()
            .is_active(),
        "not ended"
    );
}
