//! Several sessiond nodes as one cluster on a shared Redis store: the Redis side of
//! [`sessiond_core::cluster`].
//!
//! [`RedisCluster`] implements both seams for one node:
//!
//! - the bridge ([`bridge`]): forwards this node's session and room events to the other
//!   nodes over Redis pub/sub (sharded pub/sub on Cluster) and delivers theirs to the
//!   node; pub/sub is at-most-once, so after every (re)subscription the node reconciles
//!   from the store, and the server's session cache re-reads entries older than a
//!   second anyway.
//! - presence ([`presence`]): node leases, the cluster-wide room registry, and the
//!   cleanup of a dead node's members (declared `lost` to the survivors).
//! - expiry needs nothing here: every node's scheduler ends sessions through the store's
//!   compare-and-set, so each ending fires once cluster-wide.

mod bridge;
mod presence;

use crate::{RedisError, RedisStore};
use async_trait::async_trait;
use sessiond_core::cluster::{ClusterBridge, ClusterNode, Entry, Event, NodeLease, RemotePresence};
use sessiond_core::StoreError;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a node refreshes its lease and checks the others'.
pub const LEASE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a lease lives without refresh: a node silent this long is dead. Three
/// refreshes, so one slow round trip does not kill a healthy node.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How long a cleanup claim holds: the claimant finishes well within it, and if it dies
/// meanwhile another survivor takes over after it.
const CLAIM_TTL: Duration = Duration::from_secs(10);

/// This node's handle on the cluster: its id, the shared Redis, and the key names.
pub struct RedisCluster {
    redis: Arc<RedisStore>,
    node_id: String,
    keys: Keys,
    /// Redis Cluster: sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`).
    sharded: bool,
    /// A registry write failed (or events were missed): rewrite this node's members.
    resync: AtomicBool,
}

/// Key names of the cluster layer (beside the store's own; same prefix). Keys touched
/// together share a hash tag, though no command here spans two keys.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }
    /// Set of node ids that ever registered (and were not cleaned up yet).
    pub fn nodes(&self) -> String {
        format!("{{{}:cl}}:nodes", self.prefix)
    }
    /// The pub/sub channel (one shard channel on Cluster).
    pub fn channel(&self) -> String {
        format!("{{{}:cl}}:bus", self.prefix)
    }
    /// A node's lease: exists while the node is alive.
    pub fn lease(&self, node: &str) -> String {
        format!("{{{}:cl:n:{node}}}:lease", self.prefix)
    }
    /// A node's room memberships, as `<encoded room> <connection id>`.
    pub fn node_members(&self, node: &str) -> String {
        format!("{{{}:cl:n:{node}}}:members", self.prefix)
    }
    /// Who is cleaning up a dead node.
    pub fn claim(&self, node: &str) -> String {
        format!("{{{}:cl:n:{node}}}:claim", self.prefix)
    }
    /// A room's members: connection id → [`Entry`] JSON.
    pub fn room(&self, room: &str) -> String {
        format!("{{{}:cl:r:{}}}:members", self.prefix, encode(room))
    }
}

fn encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}

fn decode(s: &str) -> Option<String> {
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?,
    )
    .ok()
}

impl RedisCluster {
    /// The cluster layer of node `node_id` on `redis` (sharded pub/sub on Redis Cluster).
    pub fn new(redis: Arc<RedisStore>, node_id: String) -> Self {
        let keys = Keys::new(&redis.config().key_prefix);
        let sharded = redis.is_cluster();
        RedisCluster {
            redis,
            node_id,
            keys,
            sharded,
            resync: AtomicBool::new(false),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn redis(&self) -> &Arc<RedisStore> {
        &self.redis
    }

    /// One command on the store's connections; failures are counted per node.
    async fn cmd<T: redis::FromRedisValue>(&self, c: &redis::Cmd) -> Result<T, RedisError> {
        let r = self.redis.command(c).await;
        if r.is_err() {
            metrics::counter!("sessiond_cluster_redis_errors_total").increment(1);
        }
        r
    }

    fn request_resync(&self) {
        self.resync.store(true, Ordering::Relaxed);
    }

    fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::Relaxed)
    }
}

#[async_trait]
impl ClusterBridge for RedisCluster {
    fn is_shared(&self) -> bool {
        true
    }

    async fn forward(&self, node: &dyn ClusterNode, event: &Event) {
        bridge::forward(self, node, event).await
    }

    fn missed(&self, n: u64) {
        tracing::warn!(
            missed = n,
            "cluster forwarder lagged; rewriting this node's presence"
        );
        metrics::counter!("sessiond_cluster_events_dropped_total").increment(n);
        self.request_resync();
    }

    async fn receive(&self, node: &dyn ClusterNode) {
        bridge::receive(self, node).await
    }

    async fn maintain(&self, node: &dyn ClusterNode) {
        presence::maintain(self, node).await
    }

    async fn leave(&self, node: &dyn ClusterNode) {
        presence::leave_bounded(self, node).await
    }
}

#[async_trait]
impl RemotePresence for RedisCluster {
    async fn remote_entries(&self, room: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(presence::remote_entries(self, room).await?)
    }

    async fn remote_rooms(&self) -> Result<BTreeMap<String, HashSet<String>>, StoreError> {
        Ok(presence::remote_rooms(self).await?)
    }

    async fn nodes(&self) -> Result<Vec<NodeLease>, StoreError> {
        Ok(presence::nodes(self).await?)
    }
}
