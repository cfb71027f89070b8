//! What several nodes on one shared store say to each other, and the seams between a node
//! and its cluster transport: [`ClusterBridge`] (forward this node's events, receive the
//! others', keep leases and the presence registry) and [`RemotePresence`] (who is in a
//! room on other nodes). [`SingleNode`] is the no-op for stores that are not shared.
//!
//! The node side of the seam is [`ClusterNode`]: the server implements it, so a
//! transport (e.g. `sessiond-store-redis`) never sees the server's types. Nothing here
//! does IO or names a runtime; the transport's loops are cancelled by dropping them.

use crate::error::StoreError;
use crate::session::EndReason;
use crate::token::Handle;
use crate::Timestamp;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashSet};

/// Events every node's connection layer reacts to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The session ended; its connections get `session_ended` and are closed.
    SessionEnded {
        handle: Handle,
        principal: String,
        reason: EndReason,
    },
    /// The session's token was rotated (sign-in) to rotation `version`: its connections
    /// that authenticated with an earlier token are closed with "reauthenticate" (4010),
    /// on every node, so none keeps acting with a principal or role it did not
    /// authenticate as. Carries no token or hash.
    SessionRotated { handle: Handle, version: u64 },
    /// Deadlines moved by a renewal (or activity inside the warning window).
    SessionRenewed {
        handle: Handle,
        idle_expires_at: Timestamp,
        absolute_expires_at: Timestamp,
    },
    /// The idle deadline is `warn_before` away.
    ExpiryWarning {
        handle: Handle,
        seconds_left: i64,
        idle_expires_at: Timestamp,
    },
    /// A grant of the session's changed (admin grant revoked, sign-in with another
    /// ticket or role): every node re-checks the rooms of the session's connections.
    RoomAccessChanged { handle: Handle },
    /// An operator dropped one WebSocket connection (`DELETE /v1/admin/connections/{id}`):
    /// the node holding it (named by the id's prefix) closes it with 4011; the session
    /// stays valid and the client reconnects. `key` is the acting API key's id (audited).
    DropConnection { connection_id: String, key: String },
    /// Room-level events published by the presence layer (cluster fan-out): `payload`
    /// is the WebSocket message the room's members get.
    Presence {
        room: String,
        payload: serde_json::Value,
        origin: String,
    },
}

/// A room member: one connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub connection_id: String,
    pub handle: String,
    pub principal: String,
    pub role: String,
    /// What the app says of the member's principal (name, avatar URL, colour), as the
    /// connection found it when it opened; absent when none was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// Why a member left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// `leave`, or the client closed the connection.
    Left,
    /// Heartbeat lost, network dropped, or disconnected as a slow consumer.
    Lost,
    /// The member's session ended.
    SessionEnded,
    /// The member's session lost its grant to the room (admin revoke, or a sign-in whose
    /// ticket no longer allows it).
    AccessRevoked,
}

/// The room messages the presence registry follows. Same JSON as the WebSocket
/// protocol's `member_joined` / `member_left` (the server tests that they agree), so a
/// transport reads and writes [`Event::Presence`] payloads without the protocol crate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomChange {
    MemberJoined {
        room: String,
        member: Member,
    },
    MemberLeft {
        room: String,
        member: Member,
        reason: LeftReason,
    },
}

impl RoomChange {
    /// The membership change an event carries, if it is one.
    pub fn of(e: &Event) -> Option<RoomChange> {
        match e {
            Event::Presence { payload, .. } => serde_json::from_value(payload.clone()).ok(),
            _ => None,
        }
    }

    /// The event that announces this change to a room, as coming from `origin`.
    pub fn into_event(self, origin: &str) -> Event {
        let room = match &self {
            RoomChange::MemberJoined { room, .. } | RoomChange::MemberLeft { room, .. } => {
                room.clone()
            }
        };
        Event::Presence {
            room,
            payload: serde_json::to_value(&self).unwrap_or_default(),
            origin: origin.to_owned(),
        }
    }
}

/// One member in the cluster-wide room registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The node holding the connection.
    pub node: String,
    /// Join time (ms), for join-ordered presence lists.
    pub at: i64,
    pub member: Member,
}

/// The node as its cluster transport sees it (implemented by the server).
#[async_trait]
pub trait ClusterNode: Send + Sync {
    /// Wall-clock time of the node's clock.
    fn now(&self) -> Timestamp;
    /// An event that came from another node (or was declared on a dead node's behalf):
    /// the node stops trusting the session's cached state and tells its connections,
    /// without forwarding it again.
    fn deliver(&self, event: Event);
    /// Events may have been missed: distrust every cached session and re-check the
    /// sessions of this node's connections (missed endings are delivered).
    async fn reconcile(&self);
    /// This node's room memberships, as `(room, member)`.
    fn members(&self) -> Vec<(String, Member)>;
    /// A member of the dead node `node` was declared lost by this node (audit it).
    async fn lost(&self, node: &str, room: &str, member: &Member);
    /// How many connections this node holds (published with its lease for admin views).
    fn connection_count(&self) -> usize {
        0
    }
}

/// A node as its lease last described it (admin views).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeLease {
    pub node: String,
    /// When the node last renewed its lease (its clock, ms); `None` if the lease is gone
    /// (the node is dead and not cleaned up yet).
    pub renewed_at: Option<Timestamp>,
    /// Its connection count at that renewal.
    pub connections: Option<u64>,
}

/// Carries this node's events to the other nodes and theirs back, and keeps this node's
/// lease and presence entries. Every method but [`ClusterBridge::leave`] may be
/// cancelled by dropping its future.
#[async_trait]
pub trait ClusterBridge: Send + Sync {
    /// Whether other nodes can exist; a single node runs no cluster task.
    fn is_shared(&self) -> bool;
    /// Sends an event published on this node to the others (and records this node's
    /// own room changes in the registry). At-most-once: a failure is only logged.
    async fn forward(&self, node: &dyn ClusterNode, event: &Event);
    /// `n` local events never reached [`ClusterBridge::forward`]: rewrite this node's
    /// presence entries at the next pass.
    fn missed(&self, n: u64);
    /// Receives the other nodes' events into `node`, resubscribing (and reconciling)
    /// after every loss of the subscription. Runs until dropped.
    async fn receive(&self, node: &dyn ClusterNode);
    /// Refreshes this node's lease, keeps its registry entries right and cleans up dead
    /// nodes (their members declared lost). Runs until dropped.
    async fn maintain(&self, node: &dyn ClusterNode);
    /// Leaves the cluster (this node's members announced lost to the others, lease
    /// dropped); bounded in time.
    async fn leave(&self, node: &dyn ClusterNode);
}

/// Room members on other nodes (admin views, the joiner's `presence` list).
#[async_trait]
pub trait RemotePresence: Send + Sync {
    /// The registry entries of `room` from other nodes, in join order.
    async fn remote_entries(&self, room: &str) -> Result<Vec<Entry>, StoreError>;
    /// Rooms with members on other nodes → those members' connection ids.
    async fn remote_rooms(&self) -> Result<BTreeMap<String, HashSet<String>>, StoreError>;
    /// The members of `room` on other nodes, in join order.
    async fn remote_members(&self, room: &str) -> Result<Vec<Member>, StoreError> {
        Ok(self
            .remote_entries(room)
            .await?
            .into_iter()
            .map(|e| e.member)
            .collect())
    }
    /// Every registered node (this one included) with its last lease; empty when the
    /// store is not shared.
    async fn nodes(&self) -> Result<Vec<NodeLease>, StoreError> {
        Ok(Vec::new())
    }
}

/// The cluster of one node (memory and SQLite stores): nothing to forward, nobody remote.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNode;

#[async_trait]
impl ClusterBridge for SingleNode {
    fn is_shared(&self) -> bool {
        false
    }
    async fn forward(&self, _node: &dyn ClusterNode, _event: &Event) {}
    fn missed(&self, _n: u64) {}
    async fn receive(&self, _node: &dyn ClusterNode) {}
    async fn maintain(&self, _node: &dyn ClusterNode) {}
    async fn leave(&self, _node: &dyn ClusterNode) {}
}

#[async_trait]
impl RemotePresence for SingleNode {
    async fn remote_entries(&self, _room: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(Vec::new())
    }
    async fn remote_rooms(&self) -> Result<BTreeMap<String, HashSet<String>>, StoreError> {
        Ok(BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_changes_round_trip_through_events() {
        let m = Member {
            connection_id: "n-1".into(),
            handle: "s_x".into(),
            principal: "anon:x".into(),
            role: "editor".into(),
            info: None,
        };
        let left = RoomChange::MemberLeft {
            room: "r1".into(),
            member: m,
            reason: LeftReason::Lost,
        };
        let e = left.clone().into_event("dead");
        let Event::Presence {
            room,
            payload,
            origin,
        } = &e
        else {
            panic!("presence event expected");
        };
        assert_eq!((room.as_str(), origin.as_str()), ("r1", "dead"));
        assert_eq!(payload["type"], "member_left");
        assert_eq!(payload["reason"], "lost");
        assert_eq!(RoomChange::of(&e), Some(left));
        let other = Event::Presence {
            room: "r1".into(),
            payload: serde_json::json!({"type": "snapshot_updated"}),
            origin: "n".into(),
        };
        assert_eq!(RoomChange::of(&other), None);
    }
}
