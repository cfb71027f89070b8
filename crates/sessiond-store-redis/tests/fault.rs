//! Outages: a stopped Redis is answered with `Unavailable` within the command timeout,
//! never a hang, and the same store serves again by itself once Redis is back.

use sessiond_core::store::prelude::*;
use sessiond_core::StoreError;
use sessiond_store_redis::{RedisConfig, RedisStore};
use sessiond_testkit::conformance::session;
use sessiond_testkit::redis_guard::RedisServer;
use std::time::{Duration, Instant};

/// The promise: 1 s command timeout, plus scheduling slack.
const ANSWER_WITHIN: Duration = Duration::from_millis(1_500);
/// How long the store may take to notice Redis is back (reconnect backoff is capped at 1 s).
const RESUME_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_answers_fast_and_service_resumes_without_a_new_store() {
    let mut server = RedisServer::start_durable();
    let store = RedisStore::connect(RedisConfig::new(server.url()).key_prefix("fault"))
        .await
        .unwrap();
    let s = session("anon:x", "editor", 1_000);
    store.create_session(&s, None, &[]).await.unwrap();

    server.stop();
    // Several calls, so both the first failure (dead socket) and later ones (while the
    // manager reconnects in the background) are covered.
    for i in 0..4 {
        let started = Instant::now();
        let got = match i % 2 {
            0 => store.get_session(&s.handle).await.map(drop),
            _ => store.due_sessions(10_000_000, 10).await.map(drop),
        };
        let took = started.elapsed();
        assert!(
            matches!(got, Err(StoreError::Unavailable(_))),
            "call {i}: expected Unavailable, got {got:?}"
        );
        assert!(took < ANSWER_WITHIN, "call {i} took {took:?}");
    }

    server.restart();
    let started = Instant::now();
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(StoreError::Unavailable(e)) => {
                assert!(
                    started.elapsed() < RESUME_WITHIN,
                    "store did not resume: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    // appendfsync always: the acknowledged session survived the restart.
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(s.clone()));
    let s2 = session("anon:y", "editor", 2_000);
    store.create_session(&s2, None, &[]).await.unwrap();
    assert_eq!(
        store.get_session_by_token(&s2.token_hash).await.unwrap(),
        Some(s2)
    );
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast() {
    // A port nobody listens on: bind, note, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let cfg = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_secs(1));
    let got = RedisStore::connect(cfg).await;
    assert!(got.is_err(), "connected to a closed port");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let e: StoreError = got.err().unwrap().into();
    assert!(matches!(e, StoreError::Unavailable(_)));
}
