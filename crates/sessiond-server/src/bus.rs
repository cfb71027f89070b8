//! The event bus: session-level events that connections (on this node or, through a
//! cluster bridge, on others) react to. In-process it is a bounded broadcast channel;
//! subscribers that lag lose old events and reconcile from the store.

pub use sessiond_core::cluster::Event;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// Capacity of the in-process broadcast; bounded so a stuck subscriber cannot grow memory.
pub const BUS_CAPACITY: usize = 8192;

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
    /// Events published on this node, for the cluster bridge (created only when a bridge
    /// subscribes, so a single node pays nothing). Events delivered from other nodes
    /// never enter it, so the bridge cannot echo them back.
    outbound: Arc<OnceLock<broadcast::Sender<Event>>>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Bus {
            tx,
            outbound: Arc::default(),
        }
    }
    /// Publishes locally (and, in cluster mode, to the bridge); having no subscriber is fine.
    pub fn publish(&self, e: Event) {
        if let Some(out) = self.outbound.get() {
            let _ = out.send(e.clone());
        }
        let _ = self.tx.send(e);
    }
    /// Delivers an event that came from another node to this node's subscribers only.
    pub fn deliver_local(&self, e: Event) {
        let _ = self.tx.send(e);
    }
    /// Events published on this node (the cluster bridge forwards them to the others).
    pub fn subscribe_outbound(&self) -> broadcast::Receiver<Event> {
        self.outbound
            .get_or_init(|| broadcast::channel(BUS_CAPACITY).0)
            .subscribe()
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
