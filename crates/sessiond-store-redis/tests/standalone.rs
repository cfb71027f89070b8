//! The conformance suite against a real standalone redis-server (one per test binary,
//! a fresh key prefix per test), plus checks of the Redis-specific promises: indexes
//! are hints that never override the session, failed uploads leave no bytes, prefixes
//! isolate deployments.

use redis::AsyncCommands;
use sessiond_core::draft::AttachmentLimits;
use sessiond_core::store::prelude::*;
use sessiond_core::store::ByteStream;
use sessiond_core::{Principal, StoreError, Token};
use sessiond_store_redis::keys::handle_hex;
use sessiond_store_redis::{RedisConfig, RedisStore};
use sessiond_testkit::conformance::{attachment, body, session};
use sessiond_testkit::redis_guard::RedisServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn fresh_prefix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn store_with_prefix(prefix: &str) -> RedisStore {
    RedisStore::connect(RedisConfig::new(server().url()).key_prefix(prefix))
        .await
        .expect("connect to test redis")
}

async fn fresh_store() -> Arc<dyn Store> {
    Arc::new(store_with_prefix(&fresh_prefix()).await)
}

sessiond_testkit::conformance_suite!(fresh_store());

async fn raw() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server().url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn a_stale_token_index_never_maps_to_a_session() {
    let prefix = fresh_prefix();
    let store = store_with_prefix(&prefix).await;
    let s = session("anon:x", "editor", 1_000);
    store.create_session(&s, None, &[]).await.unwrap();
    // An index entry for a token the session does not carry (a crash between two
    // writes, or a forged entry) points at the session's handle.
    let other = Token::generate().hash();
    let mut r = raw().await;
    let _: () = r
        .set(
            format!("{prefix}:t:{}", other.to_hex()),
            handle_hex(&s.handle),
        )
        .await
        .unwrap();
    assert_eq!(store.get_session_by_token(&other).await.unwrap(), None);
    assert_eq!(
        store.get_session_by_token(&s.token_hash).await.unwrap(),
        Some(s)
    );
}

#[tokio::test]
async fn due_sessions_verifies_and_repairs_the_deadline_index() {
    let prefix = fresh_prefix();
    let store = store_with_prefix(&prefix).await;
    let s = session("anon:x", "editor", 0); // idle deadline 60 s
    store.create_session(&s, None, &[]).await.unwrap();
    let ghost = session("anon:ghost", "editor", 0);
    let mut r = raw().await;
    let deadlines = store.deadline_index_key(&s.handle);
    let ghost_deadlines = store.deadline_index_key(&ghost.handle);
    // A deadline entry that is too early and one for a session that does not exist.
    let _: () = r.zadd(&deadlines, handle_hex(&s.handle), 10).await.unwrap();
    let _: () = r
        .zadd(&ghost_deadlines, handle_hex(&ghost.handle), 10)
        .await
        .unwrap();
    assert!(store.due_sessions(1_000, 10).await.unwrap().is_empty());
    let repaired: Option<i64> = r.zscore(&deadlines, handle_hex(&s.handle)).await.unwrap();
    assert_eq!(repaired, Some(60_000));
    let gone: Option<i64> = r
        .zscore(&ghost_deadlines, handle_hex(&ghost.handle))
        .await
        .unwrap();
    assert_eq!(gone, None);
    assert_eq!(
        store.due_sessions(60_000, 10).await.unwrap(),
        vec![s.handle]
    );
}

#[tokio::test]
async fn failed_uploads_leave_no_bytes() {
    let prefix = fresh_prefix();
    let store = store_with_prefix(&prefix).await;
    let p = Principal::user("alice");
    let limits = AttachmentLimits {
        max_size: 600_000,
        quota: 1 << 20,
    };
    // Larger than one flush, so bytes reached Redis before the limit tripped.
    let big = vec![7u8; 700_000];
    assert!(matches!(
        store
            .put_attachment(
                attachment(&p, "c", 0, "a.bin", "x/y", limits, 1),
                body(&big, 100_000)
            )
            .await,
        Err(StoreError::TooLarge { .. })
    ));
    let broken: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(bytes::Bytes::from(vec![1u8; 300_000])),
        Err(std::io::Error::other("client went away")),
    ]));
    assert!(matches!(
        store
            .put_attachment(attachment(&p, "c", 0, "a.bin", "x/y", limits, 1), broken)
            .await,
        Err(StoreError::Body(_))
    ));
    let mut r = raw().await;
    let leftovers: Vec<String> = r.keys(format!("{{{prefix}:p:*}}:b:*")).await.unwrap();
    assert!(
        leftovers.is_empty(),
        "upload bytes left behind: {leftovers:?}"
    );
    // A committed upload is permanent (no upload TTL left on it).
    store
        .put_attachment(
            attachment(&p, "c", 0, "a.bin", "x/y", limits, 2),
            body(b"kept", 2),
        )
        .await
        .unwrap();
    let blobs: Vec<String> = r.keys(format!("{{{prefix}:p:*}}:b:*")).await.unwrap();
    assert_eq!(blobs.len(), 1);
    let ttl: i64 = r.pttl(&blobs[0]).await.unwrap();
    assert_eq!(ttl, -1);
}

#[tokio::test]
async fn prefixes_isolate_deployments() {
    let a = store_with_prefix(&fresh_prefix()).await;
    let b = store_with_prefix(&fresh_prefix()).await;
    let s = session("anon:x", "editor", 1_000);
    a.create_session(&s, None, &[]).await.unwrap();
    let p = Principal::user("alice");
    a.put_draft_text(&p, "c", 0, "only in a", 1).await.unwrap();
    assert_eq!(b.get_session(&s.handle).await.unwrap(), None);
    assert_eq!(b.get_session_by_token(&s.token_hash).await.unwrap(), None);
    assert_eq!(b.get_draft(&p, "c").await.unwrap(), None);
    assert_eq!(b.count_active_sessions().await.unwrap(), 0);
}

#[tokio::test]
async fn ended_sessions_keep_only_a_retention_ttl() {
    let prefix = fresh_prefix();
    let store = RedisStore::connect(
        RedisConfig::new(server().url())
            .key_prefix(&prefix)
            .ended_retention(std::time::Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let s = session("anon:x", "editor", 1_000);
    store.create_session(&s, None, &[]).await.unwrap();
    store
        .put_data(&s.handle, "k", &serde_json::json!(1))
        .await
        .unwrap();
    store
        .end_session(&s.handle, sessiond_core::EndReason::SignedOut, 2_000, &[])
        .await
        .unwrap()
        .unwrap();
    let mut r = raw().await;
    let hex = handle_hex(&s.handle);
    for key in [
        format!("{{{prefix}:s:{hex}}}"),
        format!("{{{prefix}:s:{hex}}}:d"),
        format!("{prefix}:t:{}", s.token_hash.to_hex()),
    ] {
        let ttl: i64 = r.pttl(&key).await.unwrap();
        assert!((1..=60_000).contains(&ttl), "{key} has ttl {ttl}");
    }
}

/// A failing audit append (here the id counter clobbered with a hash, so the append
/// cannot run) fails the change with it: one script checks, changes and appends.
#[tokio::test]
async fn a_failing_audit_append_fails_the_change() {
    let prefix = fresh_prefix();
    let store = Arc::new(store_with_prefix(&prefix).await);
    let key = store.audit_counter_key();
    sessiond_testkit::conformance::sessions::check_failed_audit_fails_change(
        store as Arc<dyn Store>,
        || async move {
            let mut c = raw().await;
            let _: () = c.del(&key).await.unwrap();
            let _: () = c.hset(&key, "x", "not a counter").await.unwrap();
        },
    )
    .await;
}

/// A counter holding text that is not a number fails the change too (INCR would fail
/// after the change had been written).
#[tokio::test]
async fn a_non_numeric_audit_counter_fails_the_change() {
    let prefix = fresh_prefix();
    let store = Arc::new(store_with_prefix(&prefix).await);
    let key = store.audit_counter_key();
    sessiond_testkit::conformance::sessions::check_failed_audit_fails_change(
        store as Arc<dyn Store>,
        || async move {
            let mut c = raw().await;
            let _: () = c.set(&key, "not a counter").await.unwrap();
        },
    )
    .await;
}

/// A keyspace written with another bucket count, or by the single-slot layout before
/// buckets, is refused at start with a message that says what to do.
#[tokio::test]
async fn another_layout_is_refused_at_start() {
    let prefix = fresh_prefix();
    let _first = store_with_prefix(&prefix).await;
    let other = RedisStore::connect(
        RedisConfig::new(server().url())
            .key_prefix(&prefix)
            .buckets(8),
    )
    .await;
    let msg = other.err().expect("other bucket count refused").to_string();
    assert!(msg.contains("redis.buckets"), "{msg}");
    let old = fresh_prefix();
    let mut r = raw().await;
    let _: () = r.zadd(format!("{old}:deadlines"), "00", 1).await.unwrap();
    let msg = RedisStore::connect(RedisConfig::new(server().url()).key_prefix(&old))
        .await
        .err()
        .expect("old layout refused")
        .to_string();
    assert!(msg.contains("older sessiond"), "{msg}");
}

/// A small read of the whole trail (the newest id, which the webhook deliverer asks for
/// on every poll) reads one id per bucket and one event, not a page of every bucket.
#[tokio::test]
async fn the_newest_audit_event_reads_one_event() {
    use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
    let store = store_with_prefix(&fresh_prefix()).await;
    let mut newest = 0;
    for i in 0..300 {
        let mut e = AuditEvent::new(1_000 + i, AuditKind::Created);
        e.handle = Some(format!("h{i}"));
        newest = store.append_audit(&e).await.unwrap();
    }
    let mut r = raw().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut r)
        .await
        .unwrap();
    let got = store
        .query_audit(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), [newest]);
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut r)
        .await
        .unwrap();
    let calls = |cmd: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    assert_eq!(calls("hmget"), 1, "{stats}");
}
