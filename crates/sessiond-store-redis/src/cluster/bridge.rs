//! The cluster bridge: this node's bus events go out on one Redis pub/sub channel
//! (`SPUBLISH` on Cluster, `PUBLISH` otherwise), the other nodes' come back in and are
//! handed to [`ClusterNode::deliver`] (which never forwards them again, so they are
//! never echoed).
//!
//! Pub/sub is at-most-once: a message published while a node is disconnected is gone.
//! So the subscriber reconnects with backoff and, after every re-subscription (or an
//! overflow of its bounded queue), reconciles from the store: every cached session is
//! marked for re-reading and the sessions of local connections are re-checked (endings
//! missed meanwhile are delivered). Between those, the session cache re-reads any entry
//! older than a second, so nothing stale is served for long even if a message is lost.

use super::RedisCluster;
use crate::config::Topology;
use crate::RedisError;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion,
    PushInfo, PushKind,
};
use sessiond_core::cluster::{ClusterNode, Event, RoomChange};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages received but not yet handled; past it the rest is dropped and the node
/// reconciles from the store.
const PUSH_QUEUE: usize = 8192;
/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the subscription connection is pinged (a silent half-open socket would
/// otherwise look like a quiet cluster).
const PING_EVERY: Duration = Duration::from_secs(1);

/// What travels on the channel: the origin node, when it was published (wall-clock ms,
/// for the lag metric) and the event.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Envelope {
    o: String,
    t: i64,
    e: Event,
}

/// Whether other nodes need an event. Expiry warnings stay local: every node holding a
/// connection of the session also holds its timer (connections authenticate there) and
/// warns its own connections after re-reading the store, so forwarding would duplicate.
fn crosses_nodes(e: &Event) -> bool {
    !matches!(e, Event::ExpiryWarning { .. })
}

/// Publishes one event on the cluster channel as coming from `origin`.
pub(super) async fn publish_as(
    cluster: &RedisCluster,
    origin: &str,
    e: &Event,
    now: i64,
) -> Result<(), RedisError> {
    let env = Envelope {
        o: origin.to_owned(),
        t: now,
        e: e.clone(),
    };
    let body = serde_json::to_vec(&env)?;
    let verb = if cluster.sharded {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let mut c = redis::cmd(verb);
    c.arg(cluster.keys.channel()).arg(body);
    let _: i64 = cluster.cmd(&c).await?;
    metrics::counter!("sessiond_cluster_events_published_total").increment(1);
    Ok(())
}

/// Forwards one of this node's events to the others and keeps the room registry in
/// step with this node's joins and leaves (the caller feeds events in order).
pub(super) async fn forward(cluster: &RedisCluster, node: &dyn ClusterNode, ev: &Event) {
    if let Event::Presence { origin, .. } = ev {
        if origin == cluster.node_id() {
            if let Some(change) = RoomChange::of(ev) {
                super::presence::record_local(cluster, node.now(), change).await;
            }
        }
    }
    if crosses_nodes(ev) {
        if let Err(e) = publish_as(cluster, cluster.node_id(), ev, node.now()).await {
            tracing::debug!(error = %e, "cluster event not published (at-most-once; others reconcile)");
        }
    }
}

/// Receives the other nodes' events, reconnecting with backoff, until dropped.
pub(super) async fn receive(cluster: &RedisCluster, node: &dyn ClusterNode) {
    let mut backoff = BACKOFF_MIN;
    let mut subscribed_before = false;
    loop {
        let (tx, mut rx) = mpsc::channel::<PushInfo>(PUSH_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let sender = {
            let overflow = overflow.clone();
            move |p: PushInfo| -> Result<(), redis::aio::SendError> {
                if tx.try_send(p).is_err() {
                    overflow.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
        };
        let mut conn = match connect(cluster, sender).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cluster subscription failed");
                metrics::counter!("sessiond_cluster_redis_errors_total").increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        if subscribed_before {
            tracing::info!("cluster subscription restored; reconciling from the store");
            reconcile(cluster, node).await;
        }
        subscribed_before = true;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => {
                        if !on_push(cluster, node, p) {
                            break;
                        }
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    let alive = tokio::time::timeout(PING_EVERY, redis::cmd("PING").query_async::<redis::Value>(&mut conn)).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        break;
                    }
                    if overflow.swap(false, Ordering::Relaxed) {
                        metrics::counter!("sessiond_cluster_events_dropped_total").increment(1);
                        reconcile(cluster, node).await;
                    }
                }
            }
        }
        tracing::warn!("cluster subscription lost; reconnecting");
        metrics::counter!("sessiond_cluster_resubscriptions_total").increment(1);
    }
}

/// Handles one push; `false` when the subscription is gone.
fn on_push(cluster: &RedisCluster, node: &dyn ClusterNode, p: PushInfo) -> bool {
    match p.kind {
        PushKind::Message | PushKind::SMessage => {
            let Some(body) = p
                .data
                .get(1)
                .and_then(|v| redis::from_redis_value::<Vec<u8>>(v).ok())
            else {
                return true;
            };
            match serde_json::from_slice::<Envelope>(&body) {
                Ok(env) if env.o != cluster.node_id() => {
                    let lag = (node.now() - env.t).max(0);
                    metrics::histogram!("sessiond_cluster_pubsub_lag_ms").record(lag as f64);
                    metrics::gauge!("sessiond_cluster_pubsub_last_lag_ms").set(lag as f64);
                    metrics::counter!("sessiond_cluster_events_received_total").increment(1);
                    node.deliver(env.e);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "undecodable cluster message ignored"),
            }
            true
        }
        // The server dropped our subscription (e.g. the channel's slot moved) or the
        // socket closed: subscribe again.
        PushKind::Disconnection | PushKind::SUnsubscribe | PushKind::Unsubscribe => false,
        _ => true,
    }
}

/// After messages may have been missed: the node re-checks what it serves, and this
/// node's presence entries are rewritten.
async fn reconcile(cluster: &RedisCluster, node: &dyn ClusterNode) {
    node.reconcile().await;
    cluster.request_resync();
}

fn resp3(mut info: ConnectionInfo) -> ConnectionInfo {
    info.redis.protocol = ProtocolVersion::RESP3;
    info
}

/// The same credentials and TLS settings at another address (a Cluster redirect).
fn moved(info: &ConnectionInfo, addr: &str) -> Option<ConnectionInfo> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let mut out = info.clone();
    out.addr = match &info.addr {
        ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host.to_owned(), port),
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        ConnectionAddr::Unix(_) => return None,
    };
    Some(out)
}

async fn open(
    info: ConnectionInfo,
    sender: impl redis::aio::AsyncPushSender + Clone,
    cluster: &RedisCluster,
) -> Result<MultiplexedConnection, RedisError> {
    let cfg = cluster.redis.config();
    let client = redis::Client::open(info)?;
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(cfg.connect_timeout)
        .set_response_timeout(cfg.command_timeout)
        .set_push_sender(sender);
    let conn = tokio::time::timeout(
        cfg.connect_timeout,
        client.get_multiplexed_async_connection_with_config(&conn_cfg),
    )
    .await
    .map_err(|_| RedisError::Timeout(cfg.connect_timeout))??;
    Ok(conn)
}

/// Opens a RESP3 connection to the node serving the channel and subscribes.
async fn connect(
    cluster: &RedisCluster,
    sender: impl redis::aio::AsyncPushSender + Clone,
) -> Result<MultiplexedConnection, RedisError> {
    let cfg = cluster.redis.config();
    let channel = cluster.keys.channel();
    let limit = cfg.connect_timeout + cfg.command_timeout;
    let subscribe = |mut conn: MultiplexedConnection, verb: &'static str| {
        let channel = channel.clone();
        async move {
            let mut c = redis::cmd(verb);
            c.arg(&channel);
            tokio::time::timeout(limit, c.query_async::<redis::Value>(&mut conn))
                .await
                .map_err(|_| RedisError::Timeout(limit))??;
            Ok::<_, RedisError>(conn)
        }
    };
    match cfg.validate()? {
        Topology::Standalone(url) => {
            let info = resp3(url.as_str().into_connection_info()?);
            subscribe(open(info, sender, cluster).await?, "SUBSCRIBE").await
        }
        Topology::Sentinel {
            sentinels,
            master,
            tls,
            username,
            password,
        } => {
            let mut s = redis::sentinel::Sentinel::build(sentinels)?;
            let node =
                crate::conn::sentinel_node_info(tls, username, password, ProtocolVersion::RESP3);
            let client = tokio::time::timeout(limit, s.async_master_for(&master, Some(&node)))
                .await
                .map_err(|_| RedisError::Timeout(limit))??;
            let info = resp3(client.get_connection_info().clone());
            subscribe(open(info, sender, cluster).await?, "SUBSCRIBE").await
        }
        Topology::Cluster(seeds) => {
            let mut last = None;
            for seed in seeds {
                let info = resp3(seed.as_str().into_connection_info()?);
                let conn = match open(info.clone(), sender.clone(), cluster).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
                match subscribe(conn, "SSUBSCRIBE").await {
                    Ok(c) => return Ok(c),
                    Err(RedisError::Redis(e)) if e.redirect_node().is_some() => {
                        let target = e.redirect_node().and_then(|(addr, _)| moved(&info, addr));
                        let Some(target) = target else {
                            last = Some(RedisError::Redis(e));
                            continue;
                        };
                        match open(target, sender.clone(), cluster).await {
                            Ok(c) => match subscribe(c, "SSUBSCRIBE").await {
                                Ok(c) => return Ok(c),
                                Err(e) => last = Some(e),
                            },
                            Err(e) => last = Some(e),
                        }
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| RedisError::Config("no cluster seed node".into())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_warnings_stay_local() {
        let e = Event::Presence {
            room: "r".into(),
            payload: serde_json::json!({"type": "member_joined"}),
            origin: "n1".into(),
        };
        let env = Envelope {
            o: "n1".into(),
            t: 5,
            e: e.clone(),
        };
        let back: Envelope = serde_json::from_slice(&serde_json::to_vec(&env).unwrap()).unwrap();
        assert_eq!((back.o.as_str(), back.t, back.e), ("n1", 5, e.clone()));
        assert!(crosses_nodes(&e));
        let w = Event::ExpiryWarning {
            handle: sessiond_core::Handle::generate(),
            seconds_left: 3,
            idle_expires_at: 9,
        };
        assert!(!crosses_nodes(&w));
    }

    #[test]
    fn redirects_keep_credentials() {
        let info = "redis://:pw@127.0.0.1:7000".into_connection_info().unwrap();
        let m = moved(&info, "127.0.0.2:7001").unwrap();
        assert_eq!(m.addr, ConnectionAddr::Tcp("127.0.0.2".into(), 7001));
        assert_eq!(m.redis.password.as_deref(), Some("pw"));
        assert!(moved(&info, "nonsense").is_none());
    }
}
