//! Several sessiond nodes as one cluster on a shared Redis store.
//!
//! Only active when the store is Redis. Three parts, each a background task per node:
//!
//! - [`bus`]: forwards this node's session and room events to the other nodes over Redis
//!   pub/sub (sharded pub/sub on Cluster) and delivers theirs into the local [`Bus`];
//!   pub/sub is at-most-once, so after every (re)subscription the node reconciles from
//!   the store, and the session cache re-reads entries older than a second anyway.
//! - [`presence`]: node leases, the cluster-wide room registry, and the cleanup of a
//!   dead node's members (declared `lost` to the survivors).
//! - expiry needs nothing here: every node's scheduler ends sessions through the store's
//!   compare-and-set, so each ending fires once cluster-wide (see
//!   [`crate::sessions::SessionService::enable_cluster_mode`]).
//!
//! [`Bus`]: crate::bus::Bus

pub mod bus;
pub mod presence;

use crate::error::ApiError;
use crate::state::AppState;
use crate::ws::protocol::Member;
use sessiond_store_redis::{RedisError, RedisStore};
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
pub struct Cluster {
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
    /// A room's members: connection id → [`presence::Entry`] JSON.
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

impl Cluster {
    pub fn new(redis: Arc<RedisStore>, node_id: String) -> Self {
        let keys = Keys::new(&redis.config().key_prefix);
        let sharded = redis.is_cluster();
        Cluster {
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
    pub(crate) async fn cmd<T: redis::FromRedisValue>(
        &self,
        c: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let r = self.redis.command(c).await;
        if r.is_err() {
            metrics::counter!("sessiond_cluster_redis_errors_total").increment(1);
        }
        r
    }

    pub(crate) fn request_resync(&self) {
        self.resync.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_resync(&self) -> bool {
        self.resync.swap(false, Ordering::Relaxed)
    }
}

/// The members of `room` on other nodes (the joiner's `presence` list). Empty on a
/// single node.
pub async fn remote_members(state: &AppState, room: &str) -> Result<Vec<Member>, ApiError> {
    match &state.cluster {
        Some(c) => presence::remote_members(c, room)
            .await
            .map_err(|e| ApiError::from(sessiond_core::StoreError::from(e))),
        None => Ok(Vec::new()),
    }
}

/// The members of `room` on other nodes with the node each is on, in join order. Empty
/// on a single node.
pub async fn remote_entries(
    state: &AppState,
    room: &str,
) -> Result<Vec<presence::Entry>, ApiError> {
    match &state.cluster {
        Some(c) => presence::remote_entries(c, room)
            .await
            .map_err(|e| ApiError::from(sessiond_core::StoreError::from(e))),
        None => Ok(Vec::new()),
    }
}

/// Rooms with members on other nodes → those members' connection ids. Empty on a
/// single node.
pub async fn remote_rooms(state: &AppState) -> Result<BTreeMap<String, HashSet<String>>, ApiError> {
    match &state.cluster {
        Some(c) => presence::remote_rooms(c)
            .await
            .map_err(|e| ApiError::from(sessiond_core::StoreError::from(e))),
        None => Ok(BTreeMap::new()),
    }
}

/// Starts the node's cluster tasks (bridge, leases, registry). The returned handle
/// finishes after shutdown, once this node has left the cluster cleanly.
pub fn spawn(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let cluster = state.cluster.clone()?;
    metrics::gauge!("sessiond_cluster_node", "node" => cluster.node_id().to_owned()).set(1.0);
    // Subscribed before any request is served, so no local event is missed.
    let outbound = state.bus.subscribe_outbound();
    tokio::spawn(bus::subscriber(state.clone(), cluster.clone()));
    tokio::spawn(bus::forwarder(state.clone(), cluster.clone(), outbound));
    Some(tokio::spawn(presence::lease_loop(state.clone(), cluster)))
}
