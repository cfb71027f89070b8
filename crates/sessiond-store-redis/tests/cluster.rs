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
