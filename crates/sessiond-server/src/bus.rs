//! The event bus: session-level events that connections (on this node or, through a
//! cluster bridge, on others) react to. In-process it is a bounded broadcast channel;
//! subscribers that lag lose old events and reconcile from the store.

use sessiond_core::{EndReason, Handle, Timestamp};
use tokio::sync::broadcast;

/// Events every node's connection layer reacts to.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The session ended; its connections get `session_ended` and are closed.
    SessionEnded { handle: Handle, principal: String, reason: EndReason },
    /// Deadlines moved by a renewal (or activity inside the warning window).
    SessionRenewed { handle: Handle, idle_expires_at: Timestamp, absolute_expires_at: Timestamp },
    /// The idle deadline is `warn_before` away.
    ExpiryWarning { handle: Handle, seconds_left: i64, idle_expires_at: Timestamp },
    /// Room-level events published by the presence layer (cluster fan-out).
    Presence { room: String, payload: serde_json::Value, origin: String },
}

/// Capacity of the in-process broadcast; bounded so a stuck subscriber cannot grow memory.
pub const BUS_CAPACITY: usize = 8192;

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BUS_CAPACITY);
        Bus { tx }
    }
    /// Publishes locally; having no subscriber is fine.
    pub fn publish(&self, e: Event) {
        let _ = self.tx.send(e);
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
