//! The conformance suite through Redis Sentinel: the store asks the sentinel for the
//! master and talks to it.

use sessiond_core::store::prelude::*;
use sessiond_store_redis::{RedisConfig, RedisStore};
use sessiond_testkit::redis_guard::{RedisSentinel, RedisServer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The master and its sentinel, shared by the test binary.
fn sentinel() -> &'static (RedisServer, RedisSentinel) {
    static PAIR: OnceLock<(RedisServer, RedisSentinel)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let master = RedisServer::start();
        let sentinel = RedisSentinel::start(master.port(), "sessiond-master");
        (master, sentinel)
    })
}

async fn fresh_store() -> Arc<dyn Store> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!("s{}", N.fetch_add(1, Ordering::Relaxed));
    let store = RedisStore::connect(RedisConfig::new(sentinel().1.url()).key_prefix(prefix))
        .await
        .expect("connect through the sentinel");
    Arc::new(store)
}

sessiond_testkit::conformance_suite!(fresh_store());

/// Killing the master: the sentinel promotes the replica and the same store follows
/// it, with every call in between answered (possibly with `Unavailable`) in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover() {
    use sessiond_core::StoreError;
    use sessiond_testkit::conformance::session;
    use std::time::{Duration, Instant};

    let mut master = RedisServer::start();
    let replica = RedisServer::start_replica_of(master.port());
    let sentinel = RedisSentinel::start(master.port(), "failover-master");
    let store = RedisStore::connect(RedisConfig::new(sentinel.url()).key_prefix("fo"))
        .await
        .unwrap();
    let s = session("anon:x", "editor", 1_000);
    store.create_session(&s, None, &[]).await.unwrap();
    // Wait until the replica has the session, so the promoted replica still has it.
    let replica_store = RedisStore::connect(RedisConfig::new(replica.url()).key_prefix("fo"))
        .await
        .unwrap();
    let started = Instant::now();
    while replica_store
        .get_session(&s.handle)
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica never synced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    master.kill();
    let started = Instant::now();
    let s2 = session("anon:y", "editor", 2_000);
    loop {
        let call = Instant::now();
        match store.create_session(&s2, None, &[]).await {
            Ok(_) => break,
            Err(StoreError::Unavailable(_)) => {
                assert!(
                    call.elapsed() < Duration::from_millis(2_500),
                    "a call took {:?}",
                    call.elapsed()
                );
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "store never followed the failover"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(s));
    assert_eq!(store.get_session(&s2.handle).await.unwrap(), Some(s2));
}
