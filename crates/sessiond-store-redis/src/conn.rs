//! Connections: one type over standalone, Cluster and Sentinel deployments, each
//! reconnecting by itself, and the per-command time limit.
//!
//! - Standalone: `ConnectionManager`, a multiplexed connection (concurrent requests are
//!   pipelined on one socket) that reconnects in the background with capped
//!   exponential backoff.
//! - Cluster: the async cluster client, which routes by slot, follows MOVED/ASK and
//!   refreshes its slot map and node connections on failure.
//! - Sentinel: a `ConnectionManager` to the master the sentinels name; on connection,
//!   READONLY or timeout errors the sentinels are asked again (one query at a time) and
//!   the manager is swapped if the master moved.

use crate::config::{RedisConfig, Topology};
use crate::error::RedisError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reconnection attempts in one background cycle (about a second apart). A cycle
/// that fails ends, and the next command starts another, so a dropped store never
/// leaves a reconnect loop running for long.
const RECONNECT_ATTEMPTS: usize = 8;

/// How the master the sentinels name is reached: the URL's credentials and TLS (the
/// store's pool and the cluster's pub/sub connection differ only in `protocol`).
pub(crate) fn sentinel_node_info(
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    protocol: redis::ProtocolVersion,
) -> SentinelNodeConnectionInfo {
    SentinelNodeConnectionInfo {
        tls_mode: tls.then_some(redis::TlsMode::Secure),
        redis_connection_info: Some(redis::RedisConnectionInfo {
            db: 0,
            username,
            password,
            protocol,
        }),
    }
}

/// Bound on one re-resolution through the sentinels (query plus new connection).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

fn manager_config(cfg: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_factor(2)
        .set_max_delay(cfg.reconnect_max_delay.as_millis().max(1) as u64)
        .set_number_of_retries(RECONNECT_ATTEMPTS)
        .set_connection_timeout(cfg.connect_timeout)
        .set_response_timeout(cfg.command_timeout)
}

/// Awaits `fut` for at most `limit`.
pub(crate) async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(RedisError::Timeout(limit)))
}

/// A connection to any topology; cheap to clone (clones share the socket).
// Not boxed: a `Conn` is cloned for every command, and boxing the large variant would
// add an allocation per command to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConn>),
}

/// A master found through Sentinel, re-resolved when it stops answering as a master.
pub(crate) struct SentinelConn {
    sentinel: tokio::sync::Mutex<Sentinel>,
    master: String,
    node_info: SentinelNodeConnectionInfo,
    manager_config: ConnectionManagerConfig,
    /// The current master's manager and address. A std mutex: held only to clone or
    /// swap, never across an await.
    current: Mutex<(ConnectionManager, String)>,
    /// Single-flight guard for re-resolution.
    resolving: AtomicBool,
    /// A request unanswered for this long also triggers re-resolution: while the old
    /// master is unreachable, requests wait on reconnection and are cut off by the
    /// store's timeout before any error could reach this wrapper.
    stall_after: Duration,
}

impl SentinelConn {
    fn manager(&self) -> ConnectionManager {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Runs one request on the current master, re-resolving on failover symptoms.
    async fn request<T>(
        self: Arc<Self>,
        send: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let fut = send(self.manager());
        tokio::pin!(fut);
        let r = match tokio::time::timeout(self.stall_after, &mut fut).await {
            Ok(r) => r,
            Err(_) => {
                self.re_resolve();
                fut.await
            }
        };
        if let Err(e) = &r {
            let failover = e.kind() == redis::ErrorKind::ReadOnly
                || e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout();
            if failover {
                self.re_resolve();
            }
        }
        r
    }

    fn re_resolve(self: &Arc<Self>) {
        if self.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(RESOLVE_TIMEOUT, this.resolve()).await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, master = %this.master, "sentinel re-resolution failed")
                }
                Err(_) => tracing::warn!(master = %this.master, "sentinel re-resolution timed out"),
            }
            this.resolving.store(false, Ordering::Release);
        });
    }

    async fn resolve(&self) -> Result<(), redis::RedisError> {
        let client = self
            .sentinel
            .lock()
            .await
            .async_master_for(&self.master, Some(&self.node_info))
            .await?;
        let addr = client.get_connection_info().addr.to_string();
        let known = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        if addr != known {
            let manager =
                ConnectionManager::new_with_config(client, self.manager_config.clone()).await?;
            tracing::info!(master = %self.master, from = %known, to = %addr, "redis master moved");
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = (manager, addr);
        }
        Ok(())
    }
}

impl Conn {
    /// `WAIT n ms` for the writes this connection sent before it: on Cluster to the
    /// master of `key`'s slot (the cluster client keeps one connection per node, the one
    /// that carried the write); elsewhere on this multiplexed connection itself. Returns
    /// the replicas that acknowledged.
    pub(crate) async fn wait_replicas(
        &mut self,
        key: &str,
        n: u32,
        timeout: Duration,
    ) -> redis::RedisResult<i64> {
        use redis::cluster_routing::{
            get_slot, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
        };
        let mut wait = redis::cmd("WAIT");
        wait.arg(n).arg(timeout.as_millis().max(1) as u64);
        match self {
            Conn::Cluster(c) => {
                let route = Route::new(get_slot(key.as_bytes()), SlotAddr::Master);
                let v = c
                    .route_command(
                        &wait,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                redis::from_redis_value(&v)
            }
            other => wait.query_async(other).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => Box::pin(
                s.clone()
                    .request(async move |mut m| m.send_packed_command(cmd).await),
            ),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(s) => Box::pin(
                s.clone()
                    .request(async move |mut m| m.send_packed_commands(cmd, offset, count).await),
            ),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
            Conn::Sentinel(s) => s.manager().get_db(),
        }
    }
}

/// The store's connections, handed out in turn.
pub(crate) struct Pool {
    conns: Vec<Conn>,
    next: AtomicUsize,
    pub(crate) cluster: bool,
}

impl Pool {
    pub(crate) fn get(&self) -> Conn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    /// Every connection (a write may have gone out on any of them).
    pub(crate) fn all(&self) -> &[Conn] {
        &self.conns
    }

    /// Connects to the deployment `topology` describes; bounded by `connect_timeout`.
    pub(crate) async fn connect(
        cfg: &RedisConfig,
        topology: &Topology,
    ) -> Result<Pool, RedisError> {
        let limit = cfg.connect_timeout;
        let stall_after = cfg.command_timeout / 2;
        let (conns, cluster) = match topology {
            Topology::Standalone(url) => {
                let client = redis::Client::open(url.as_str())?;
                let mut conns = Vec::with_capacity(cfg.connections);
                for _ in 0..cfg.connections {
                    let client = client.clone();
                    let config = manager_config(cfg);
                    let m = bounded(limit, async move {
                        Ok(ConnectionManager::new_with_config(client, config).await?)
                    })
                    .await?;
                    conns.push(Conn::Single(m));
                }
                (conns, false)
            }
            Topology::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.command_timeout)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(cfg.reconnect_max_delay.as_millis().max(1) as u64)
                    .build()?;
                let c = bounded(
                    limit,
                    async move { Ok(client.get_async_connection().await?) },
                )
                .await?;
                (vec![Conn::Cluster(c)], true)
            }
            Topology::Sentinel {
                sentinels,
                master,
                tls,
                username,
                password,
            } => {
                let node_info = sentinel_node_info(
                    *tls,
                    username.clone(),
                    password.clone(),
                    Default::default(),
                );
                let mut conns = Vec::with_capacity(cfg.connections);
                for _ in 0..cfg.connections {
                    let mut sentinel = Sentinel::build(sentinels.clone())?;
                    let (master, node_info, config) =
                        (master.clone(), node_info.clone(), manager_config(cfg));
                    let conn = bounded(limit, async move {
                        let client = sentinel.async_master_for(&master, Some(&node_info)).await?;
                        let addr = client.get_connection_info().addr.to_string();
                        let m = ConnectionManager::new_with_config(client, config.clone()).await?;
                        Ok(SentinelConn {
                            sentinel: tokio::sync::Mutex::new(sentinel),
                            master,
                            node_info,
                            manager_config: config,
                            current: Mutex::new((m, addr)),
                            resolving: AtomicBool::new(false),
                            stall_after,
                        })
                    })
                    .await?;
                    conns.push(Conn::Sentinel(Arc::new(conn)));
                }
                (conns, false)
            }
        };
        Ok(Pool {
            conns,
            next: AtomicUsize::new(0),
            cluster,
        })
    }
}
