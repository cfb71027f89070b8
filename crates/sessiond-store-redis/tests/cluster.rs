//! The conformance suite against a 3-master Redis Cluster: every atomic step must stay
//! inside one slot, which the cluster enforces (CROSSSLOT) on every script.

use sessiond_core::store::prelude::*;
use sessiond_store_redis::{RedisConfig, RedisStore};
use sessiond_testkit::redis_guard::RedisCluster;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3))
}

async fn fresh_store() -> Arc<dyn Store> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!("c{}", N.fetch_add(1, Ordering::Relaxed));
    let store = RedisStore::connect(RedisConfig::new(cluster().url()).key_prefix(prefix))
        .await
        .expect("connect to test cluster");
    assert!(store.is_cluster());
    Arc::new(store)
}

sessiond_testkit::conformance_suite!(fresh_store());

/// On Cluster an audit id is taken (one INCR) before its event is written in its
/// bucket, so for a moment a higher id can be visible below a missing one. A forward
/// read (`after_id`, what followers use) must not pass that gap: it stops before it
/// until the gap fills or the events above it are older than the settle time.
#[tokio::test]
async fn forward_audit_reads_never_pass_an_id_still_on_its_way() {
    use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
    use std::time::Duration;
    let store = RedisStore::connect(
        RedisConfig::new(cluster().url())
            .key_prefix("gap")
            .command_timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let ev = |handle: &str| {
        let mut e = AuditEvent::new(1_000, AuditKind::Created);
        e.handle = Some(handle.into());
        e
    };
    let first = store.append_audit(&ev("s_a")).await.unwrap();
    // An id taken by a writer that has not written its event yet.
    let mut incr = redis::cmd("INCR");
    incr.arg(store.audit_counter_key());
    let in_flight: i64 = store.command(&incr).await.unwrap();
    let third = store.append_audit(&ev("s_c")).await.unwrap();
    assert_eq!((in_flight, third), (first + 1, first + 2));
    let follow = |handle: Option<&str>| AuditFilter {
        after_id: Some(first),
        handle: handle.map(str::to_owned),
        ..Default::default()
    };
    let ids = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert!(ids(store.query_audit(&follow(None)).await.unwrap()).is_empty());
    assert!(
        ids(store.query_audit(&follow(Some("s_c"))).await.unwrap()).is_empty(),
        "a filtered follower stops at the gap too"
    );
    // Newest-first reads are not held back.
    assert_eq!(
        ids(store.query_audit(&AuditFilter::default()).await.unwrap()),
        [third, first]
    );
    // Past the settle time (command timeout + 1 s) the gap counts as lost for good.
    tokio::time::sleep(Duration::from_millis(1_400)).await;
    assert_eq!(
        ids(store.query_audit(&follow(None)).await.unwrap()),
        [third]
    );
    // A gap that fills at once is passed at once.
    let fourth = store.append_audit(&ev("s_d")).await.unwrap();
    assert_eq!(
        ids(store
            .query_audit(&AuditFilter {
                after_id: Some(third),
                ..Default::default()
            })
            .await
            .unwrap()),
        [fourth]
    );
}
