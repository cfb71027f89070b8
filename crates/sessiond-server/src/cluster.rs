//! This node's side of the cluster seam ([`sessiond_core::cluster`]): [`Node`] is what a
//! cluster transport may do here (deliver, reconcile, list members, audit losses), and
//! [`spawn`] runs a bridge's tasks for this node. The transport itself lives with its
//! store (`sessiond_store_redis::RedisCluster`); a single node uses
//! [`sessiond_core::cluster::SingleNode`] and runs none of this.
//!
//! Expiry needs nothing here: every node's scheduler ends sessions through the store's
//! compare-and-set, so each ending fires once cluster-wide (see
//! [`crate::sessions::SessionService::enable_cluster_mode`]).

use crate::bus::{Bus, Event};
use crate::sessions::SessionService;
use crate::ws::hub::Hub;
use async_trait::async_trait;
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::cluster::{ClusterBridge, ClusterNode, Member};
use sessiond_core::{Clock, EndReason, Timestamp};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the cluster transport reaches on this node: only the parts it acts on.
pub struct Node {
    pub sessions: Arc<SessionService>,
    pub hub: Arc<Hub>,
    pub bus: Bus,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl ClusterNode for Node {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn deliver(&self, e: Event) {
        match &e {
            Event::SessionEnded { handle, .. }
            | Event::SessionRenewed { handle, .. }
            | Event::SessionRotated { handle, .. }
            | Event::RoomAccessChanged { handle } => self.sessions.invalidate(handle),
            Event::ExpiryWarning { .. } | Event::Presence { .. } | Event::DropConnection { .. } => {
            }
        }
        self.bus.deliver_local(e);
    }

    async fn reconcile(&self) {
        self.sessions.invalidate_all();
        for handle in self.hub.handles() {
            match self.sessions.refresh(&handle).await {
                Ok(Some(s)) if !s.is_active() => self.bus.deliver_local(Event::SessionEnded {
                    handle,
                    principal: s.principal.to_string(),
                    reason: s.end_reason.unwrap_or(EndReason::Revoked),
                }),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(handle = %handle, error = %e, "reconcile lookup failed; the cache re-reads it later");
                }
            }
        }
    }

    fn members(&self) -> Vec<(String, Member)> {
        let mut out = Vec::new();
        for c in self.hub.connections(None, usize::MAX) {
            let member = Member {
                connection_id: c.connection_id,
                handle: c.handle,
                principal: c.principal,
                role: c.role,
                info: c.info,
            };
            for room in c.rooms {
                out.push((room, member.clone()));
            }
        }
        out
    }

    fn connection_count(&self) -> usize {
        self.hub.len()
    }

    async fn lost(&self, node: &str, room: &str, m: &Member) {
        metrics::counter!("sessiond_ws_lost_total").increment(1);
        let ev = AuditEvent {
            handle: Some(m.handle.clone()),
            principal: Some(m.principal.clone()),
            role: Some(m.role.clone()),
            ..AuditEvent::new(self.clock.now(), AuditKind::ConnectionLost)
        }
        .with_reason("heartbeat_lost")
        .with_detail(serde_json::json!({
            "connection_id": m.connection_id,
            "rooms": [room],
            "node_lost": node,
            "session_kept": true,
        }));
        self.sessions.audit(ev).await;
    }
}

/// Starts the bridge's tasks for this node (forwarder, subscriber, leases and registry)
/// until `shutdown`; the handles finish once this node has left the cluster cleanly.
pub fn spawn(
    bridge: Arc<dyn ClusterBridge>,
    node: Arc<Node>,
    node_id: &str,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    metrics::gauge!("sessiond_cluster_node", "node" => node_id.to_owned()).set(1.0);
    // Subscribed before any request is served, so no local event is missed.
    let mut outbound = node.bus.subscribe_outbound();
    let forwarder = {
        let (bridge, node, shutdown) = (bridge.clone(), node.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = outbound.recv() => ev,
                    _ = shutdown.cancelled() => return,
                };
                match ev {
                    Ok(ev) => bridge.forward(&*node, &ev).await,
                    Err(RecvError::Lagged(n)) => bridge.missed(n),
                    Err(RecvError::Closed) => return,
                }
            }
        })
    };
    let subscriber = {
        let (bridge, node, shutdown) = (bridge.clone(), node.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = bridge.receive(&*node) => {}
                _ = shutdown.cancelled() => {}
            }
        })
    };
    let leases = tokio::spawn(async move {
        tokio::select! {
            _ = bridge.maintain(&*node) => {}
            _ = shutdown.cancelled() => {}
        }
        // Bounded inside: the node's members are announced lost and its lease dropped.
        bridge.leave(&*node).await;
    });
    vec![forwarder, subscriber, leases]
}

#[cfg(test)]
mod tests {
    use crate::ws::protocol::{LeftReason, Member, ServerMsg};
    use sessiond_core::cluster::RoomChange;

    /// The registry reads and writes room changes with core's type: it must be the same
    /// JSON as the WebSocket messages the hub publishes.
    #[test]
    fn room_changes_are_the_protocol_messages() {
        let member = Member {
            connection_id: "n-1".into(),
            handle: "s_x".into(),
            principal: "anon:x".into(),
            role: "editor".into(),
            info: None,
        };
        let pairs = [
            (
                ServerMsg::MemberJoined {
                    room: "r".into(),
                    member: member.clone(),
                },
                RoomChange::MemberJoined {
                    room: "r".into(),
                    member: member.clone(),
                },
            ),
            (
                ServerMsg::MemberLeft {
                    room: "r".into(),
                    member: member.clone(),
                    reason: LeftReason::Lost,
                },
                RoomChange::MemberLeft {
                    room: "r".into(),
                    member,
                    reason: LeftReason::Lost,
                },
            ),
        ];
        for (msg, change) in pairs {
            let json = serde_json::to_value(&msg).unwrap();
            assert_eq!(json, serde_json::to_value(&change).unwrap());
            assert_eq!(serde_json::from_value::<RoomChange>(json).unwrap(), change);
        }
    }
}
