//! Cluster-wide presence: node leases, the room registry in Redis, and the cleanup of
//! nodes that died.
//!
//! - Each node refreshes `lease(node)` every [`LEASE_INTERVAL`] with a [`LEASE_TTL`]
//!   expiry. No socket-close hook is involved: a SIGKILLed node simply stops refreshing.
//! - Each room member is a field of `room(room)` (connection id → [`Entry`]) and a line
//!   of its node's `node_members(node)` set, written from this node's own `member_joined`
//!   / `member_left` events (the node's hub publishes every room change, and the bridge
//!   forwards them here in order).
//! - Every lease pass, each node looks for registered nodes whose lease is gone; the one
//!   that wins `SET claim NX` removes the dead node's members and tells every room
//!   `member_left {reason: lost}` (locally and over the bus). Detection therefore takes
//!   at most `LEASE_TTL + LEASE_INTERVAL` after the node's last refresh.
//! - Convergence: after a failed registry write, missed bus events, a lost lease or a
//!   Redis outage, and otherwise every [`RESYNC_EVERY`], a node rewrites its own entries
//!   from its hub (announcing members the others were told were lost) and removes those
//!   it no longer has.

use super::{bridge, decode, encode, RedisCluster, CLAIM_TTL, LEASE_INTERVAL, LEASE_TTL};
use crate::RedisError;
use sessiond_core::cluster::{ClusterNode, Entry, LeftReason, Member, NodeLease, RoomChange};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// Periodic self-check of this node's registry entries.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// Bound on leaving the cluster at shutdown.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

fn node_line(room: &str, connection_id: &str) -> String {
    format!("{} {connection_id}", encode(room))
}

fn parse_line(line: &str) -> Option<(String, String)> {
    let (room, conn) = line.split_once(' ')?;
    Some((decode(room)?, conn.to_owned()))
}

/// Writes one of this node's room changes (a `member_joined` or `member_left` the hub
/// published) into the registry. A failure schedules a resync.
pub(super) async fn record_local(cluster: &RedisCluster, now: i64, change: RoomChange) {
    let (room, r) = match change {
        RoomChange::MemberJoined { room, member } => {
            let r = add(cluster, &room, &member, now).await.map(|_| ());
            (room, r)
        }
        RoomChange::MemberLeft { room, member, .. } => {
            let r = remove(cluster, cluster.node_id(), &room, &member.connection_id)
                .await
                .map(|_| ());
            (room, r)
        }
    };
    if let Err(e) = r {
        tracing::debug!(room = %room, error = %e, "presence registry write failed; resync scheduled");
        cluster.request_resync();
    }
}

/// Registers a member of this node; `true` if the room did not list it yet.
async fn add(
    cluster: &RedisCluster,
    room: &str,
    member: &Member,
    now: i64,
) -> Result<bool, RedisError> {
    let entry = Entry {
        node: cluster.node_id().to_owned(),
        at: now,
        member: member.clone(),
    };
    let mut sadd = redis::cmd("SADD");
    sadd.arg(cluster.keys.node_members(cluster.node_id()))
        .arg(node_line(room, &member.connection_id));
    let _: i64 = cluster.cmd(&sadd).await?;
    let mut hset = redis::cmd("HSETNX");
    hset.arg(cluster.keys.room(room))
        .arg(&member.connection_id)
        .arg(serde_json::to_string(&entry)?);
    let added: i64 = cluster.cmd(&hset).await?;
    Ok(added == 1)
}

/// Removes a member of `node` from a room; the entry if it was listed.
async fn remove(
    cluster: &RedisCluster,
    node: &str,
    room: &str,
    connection_id: &str,
) -> Result<Option<Entry>, RedisError> {
    let key = cluster.keys.room(room);
    let mut hget = redis::cmd("HGET");
    hget.arg(&key).arg(connection_id);
    let raw: Option<String> = cluster.cmd(&hget).await?;
    let mut hdel = redis::cmd("HDEL");
    hdel.arg(&key).arg(connection_id);
    let removed: i64 = cluster.cmd(&hdel).await?;
    let mut srem = redis::cmd("SREM");
    srem.arg(cluster.keys.node_members(node))
        .arg(node_line(room, connection_id));
    let _: i64 = cluster.cmd(&srem).await?;
    Ok(match raw {
        Some(raw) if removed == 1 => serde_json::from_str(&raw).ok(),
        _ => None,
    })
}

/// The registry entries of `room` from other nodes, in join order.
pub(super) async fn remote_entries(
    cluster: &RedisCluster,
    room: &str,
) -> Result<Vec<Entry>, RedisError> {
    let mut c = redis::cmd("HGETALL");
    c.arg(cluster.keys.room(room));
    let all: HashMap<String, String> = cluster.cmd(&c).await?;
    let mut entries: Vec<Entry> = all
        .into_values()
        .filter_map(|raw| serde_json::from_str::<Entry>(&raw).ok())
        .filter(|e| e.node != cluster.node_id())
        .collect();
    entries.sort_by(|a, b| (a.at, &a.member.connection_id).cmp(&(b.at, &b.member.connection_id)));
    Ok(entries)
}

/// Rooms with members on other nodes: room → those members' connection ids. Reads the
/// member set of each registered node (one `SMEMBERS` per node, sized by that node's
/// memberships) rather than scanning the keyspace; a dead node's members count until
/// its cleanup, as in the room hashes.
pub(super) async fn remote_rooms(
    cluster: &RedisCluster,
) -> Result<BTreeMap<String, HashSet<String>>, RedisError> {
    let mut c = redis::cmd("SMEMBERS");
    c.arg(cluster.keys.nodes());
    let nodes: Vec<String> = cluster.cmd(&c).await?;
    let mut rooms: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for node in nodes.iter().filter(|n| n.as_str() != cluster.node_id()) {
        let mut c = redis::cmd("SMEMBERS");
        c.arg(cluster.keys.node_members(node));
        let lines: Vec<String> = cluster.cmd(&c).await?;
        for (room, conn) in lines.iter().filter_map(|l| parse_line(l)) {
            rooms.entry(room).or_default().insert(conn);
        }
    }
    Ok(rooms)
}

/// Every registered node with what its lease says (renewal time, connection count).
pub(super) async fn nodes(cluster: &RedisCluster) -> Result<Vec<NodeLease>, RedisError> {
    let mut c = redis::cmd("SMEMBERS");
    c.arg(cluster.keys.nodes());
    let mut ids: Vec<String> = cluster.cmd(&c).await?;
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for node in ids {
        let mut get = redis::cmd("GET");
        get.arg(cluster.keys.lease(&node));
        let raw: Option<String> = cluster.cmd(&get).await?;
        let mut parts = raw.as_deref().unwrap_or("").split(' ');
        let renewed_at = parts.next().and_then(|v| v.parse().ok());
        let connections = parts.next().and_then(|v| v.parse().ok());
        out.push(NodeLease {
            node,
            renewed_at,
            connections,
        });
    }
    Ok(out)
}

/// A `member_left` for a room, as the hub would publish it, from `origin`.
fn left_event(
    room: &str,
    member: Member,
    reason: LeftReason,
    origin: &str,
) -> sessiond_core::cluster::Event {
    RoomChange::MemberLeft {
        room: room.to_owned(),
        member,
        reason,
    }
    .into_event(origin)
}

/// Refreshes this node's lease, watches the others' and keeps the registry right, until
/// dropped (then [`leave_bounded`]).
pub(super) async fn maintain(cluster: &RedisCluster, node: &dyn ClusterNode) {
    let mut tick = tokio::time::interval(LEASE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Only judge others after holding our own lease for a full TTL: right after an
    // outage every lease has lapsed, and live nodes need a pass to renew theirs.
    let mut judge_after = Instant::now();
    let mut lease_ok = true;
    let mut next_resync = Instant::now() + RESYNC_EVERY;
    loop {
        tick.tick().await;
        match renew_lease(cluster, node.now(), node.connection_count()).await {
            Ok(claimed) => {
                if !lease_ok || claimed {
                    // Our lease lapsed (or someone cleaned us up): the others may have
                    // been told our members were lost.
                    tracing::info!("node lease restored; re-announcing this node's members");
                    cluster.request_resync();
                    judge_after = Instant::now() + LEASE_TTL;
                }
                lease_ok = true;
            }
            Err(e) => {
                if lease_ok {
                    tracing::warn!(error = %e, "node lease refresh failed");
                }
                lease_ok = false;
                continue;
            }
        }
        let forced = cluster.take_resync();
        if forced || Instant::now() >= next_resync {
            next_resync = Instant::now() + RESYNC_EVERY;
            if let Err(e) = resync(cluster, node, forced).await {
                tracing::warn!(error = %e, "presence resync failed; retrying");
                cluster.request_resync();
            }
        }
        if Instant::now() >= judge_after {
            if let Err(e) = check_nodes(cluster, node).await {
                tracing::debug!(error = %e, "node lease check failed");
            }
        }
    }
}

/// Shutdown: leaves the cluster within [`LEAVE_TIMEOUT`]; if it cannot, the others time
/// the lease out.
pub(super) async fn leave_bounded(cluster: &RedisCluster, node: &dyn ClusterNode) {
    match tokio::time::timeout(LEAVE_TIMEOUT, leave(cluster, node)).await {
        Ok(Ok(n)) => tracing::info!(members = n, "left the cluster"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not leave the cluster cleanly; the others will time the lease out")
        }
        Err(_) => {
            tracing::warn!("leaving the cluster timed out; the others will time the lease out")
        }
    }
}

/// Writes the lease and the node's registration. `Ok(true)` if another node had claimed
/// this node's cleanup (we were presumed dead).
async fn renew_lease(
    cluster: &RedisCluster,
    now: i64,
    connections: usize,
) -> Result<bool, RedisError> {
    let id = cluster.node_id();
    let mut set = redis::cmd("SET");
    // "<renewed at ms> <connections>": only its existence decides liveness; the value
    // feeds the admin nodes view.
    set.arg(cluster.keys.lease(id))
        .arg(format!("{now} {connections}"))
        .arg("PX")
        .arg(LEASE_TTL.as_millis() as u64);
    let _: () = cluster.cmd(&set).await?;
    let mut sadd = redis::cmd("SADD");
    sadd.arg(cluster.keys.nodes()).arg(id);
    let _: i64 = cluster.cmd(&sadd).await?;
    let mut claimed = redis::cmd("EXISTS");
    claimed.arg(cluster.keys.claim(id));
    let n: i64 = cluster.cmd(&claimed).await?;
    if n > 0 {
        let mut del = redis::cmd("DEL");
        del.arg(cluster.keys.claim(id));
        let _: i64 = cluster.cmd(&del).await?;
    }
    Ok(n > 0)
}

/// This node's memberships according to its hub: line → (room, member).
fn local_members(node: &dyn ClusterNode) -> HashMap<String, (String, Member)> {
    node.members()
        .into_iter()
        .map(|(room, member)| (node_line(&room, &member.connection_id), (room, member)))
        .collect()
}

/// Makes the registry match this node's hub: missing members are added and announced to
/// the others (who may have been told they were lost), gone ones removed and announced.
/// `thorough` also checks each room hash (after an outage or a cleanup by others), not
/// only this node's own set.
async fn resync(
    cluster: &RedisCluster,
    node: &dyn ClusterNode,
    thorough: bool,
) -> Result<(), RedisError> {
    let local = local_members(node);
    let mut c = redis::cmd("SMEMBERS");
    c.arg(cluster.keys.node_members(cluster.node_id()));
    let stored: HashSet<String> = cluster.cmd(&c).await?;
    let now = node.now();
    for (line, (room, member)) in &local {
        if stored.contains(line)
            && (!thorough || room_has(cluster, room, &member.connection_id).await?)
        {
            continue;
        }
        if add(cluster, room, member, now).await? {
            let ev = RoomChange::MemberJoined {
                room: room.clone(),
                member: member.clone(),
            }
            .into_event(cluster.node_id());
            bridge::publish_as(cluster, cluster.node_id(), &ev, now).await?;
        }
    }
    for line in stored.difference(&local.keys().cloned().collect()) {
        let Some((room, conn)) = parse_line(line) else {
            continue;
        };
        if let Some(entry) = remove(cluster, cluster.node_id(), &room, &conn).await? {
            let ev = left_event(&room, entry.member, LeftReason::Lost, cluster.node_id());
            bridge::publish_as(cluster, cluster.node_id(), &ev, now).await?;
        }
    }
    Ok(())
}

async fn room_has(
    cluster: &RedisCluster,
    room: &str,
    connection_id: &str,
) -> Result<bool, RedisError> {
    let mut c = redis::cmd("HEXISTS");
    c.arg(cluster.keys.room(room)).arg(connection_id);
    Ok(cluster.cmd::<i64>(&c).await? == 1)
}

/// Finds registered nodes whose lease is gone and cleans up those whose claim we win.
async fn check_nodes(cluster: &RedisCluster, node: &dyn ClusterNode) -> Result<(), RedisError> {
    let mut c = redis::cmd("SMEMBERS");
    c.arg(cluster.keys.nodes());
    let nodes: Vec<String> = cluster.cmd(&c).await?;
    for dead in nodes.iter().filter(|n| n.as_str() != cluster.node_id()) {
        let mut exists = redis::cmd("EXISTS");
        exists.arg(cluster.keys.lease(dead));
        if cluster.cmd::<i64>(&exists).await? > 0 {
            continue;
        }
        let mut claim = redis::cmd("SET");
        claim
            .arg(cluster.keys.claim(dead))
            .arg(cluster.node_id())
            .arg("NX")
            .arg("PX")
            .arg(CLAIM_TTL.as_millis() as u64);
        let won: Option<String> = cluster.cmd(&claim).await?;
        if won.is_none() {
            continue;
        }
        let n = cleanup_node(cluster, node, dead, true).await?;
        tracing::warn!(node = %dead, members = n, "node lease expired; its members were declared lost");
        metrics::counter!("sessiond_cluster_nodes_lost_total").increment(1);
    }
    Ok(())
}

/// Removes every member of `node` and tells the rooms they were lost (over the bus, as
/// coming from `node`, and to this node's members when `local` is set). The claim key
/// is left to expire so a concurrent pass of another survivor does not repeat it.
async fn cleanup_node(
    cluster: &RedisCluster,
    here: &dyn ClusterNode,
    node: &str,
    local: bool,
) -> Result<usize, RedisError> {
    let mut c = redis::cmd("SMEMBERS");
    c.arg(cluster.keys.node_members(node));
    let lines: Vec<String> = cluster.cmd(&c).await?;
    let now = here.now();
    let mut n = 0;
    for line in lines {
        let Some((room, conn)) = parse_line(&line) else {
            continue;
        };
        let Some(entry) = remove(cluster, node, &room, &conn).await? else {
            continue;
        };
        n += 1;
        if local {
            here.lost(node, &room, &entry.member).await;
        }
        let ev = left_event(&room, entry.member, LeftReason::Lost, node);
        if let Err(e) = bridge::publish_as(cluster, node, &ev, now).await {
            tracing::debug!(error = %e, "member_left not published");
        }
        if local {
            here.deliver(ev);
        }
    }
    let mut del = redis::cmd("DEL");
    del.arg(cluster.keys.node_members(node));
    let _: i64 = cluster.cmd(&del).await?;
    let mut srem = redis::cmd("SREM");
    srem.arg(cluster.keys.nodes()).arg(node);
    let _: i64 = cluster.cmd(&srem).await?;
    Ok(n)
}

/// Shutdown: this node's members are announced lost to the others (their clients
/// reconnect elsewhere) and the lease is dropped, so nobody waits for it to expire.
async fn leave(cluster: &RedisCluster, node: &dyn ClusterNode) -> Result<usize, RedisError> {
    let n = cleanup_node(cluster, node, cluster.node_id(), false).await?;
    let mut del = redis::cmd("DEL");
    del.arg(cluster.keys.lease(cluster.node_id()));
    let _: i64 = cluster.cmd(&del).await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_any_room_name() {
        for room in ["conv-1", "a b", "ünï {x}"] {
            let line = node_line(room, "n1-7");
            assert_eq!(
                parse_line(&line),
                Some((room.to_owned(), "n1-7".to_owned()))
            );
        }
        assert_eq!(parse_line("no-separator"), None);
    }

    #[test]
    fn left_event_is_what_the_hub_would_send() {
        let m = Member {
            connection_id: "n-1".into(),
            handle: "s_x".into(),
            principal: "anon:x".into(),
            role: "editor".into(),
            info: None,
        };
        let sessiond_core::cluster::Event::Presence {
            room,
            payload,
            origin,
        } = left_event("r1", m, LeftReason::Lost, "dead")
        else {
            panic!("presence event expected");
        };
        assert_eq!((room.as_str(), origin.as_str()), ("r1", "dead"));
        assert_eq!(payload["type"], "member_left");
        assert_eq!(payload["reason"], "lost");
    }
}
