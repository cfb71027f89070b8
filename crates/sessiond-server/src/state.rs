//! Shared application state handed to every handler.
//!
//! It sits below everything that reads it: what it holds comes from modules that never
//! import it back (the hub, the bus, the session service, tickets, the demo's messages,
//! the cluster seam from `sessiond_core`, the webhook deliverer), so the module graph has no cycle through
//! here. Built once by [`crate::builder::ServerBuilder`].

use crate::bus::Bus;
use crate::config::Config;
use crate::demo_messages::Messages;
use crate::rooms::Rooms;
use crate::sessions::SessionService;
use crate::tickets::Tickets;
use crate::ws::hub::Hub;
use sessiond_core::cluster::RemotePresence;
use sessiond_core::{Clock, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Cheap to clone; everything inside is shared.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// The hot-path cache, ending path and scheduler; the only writer of session deadlines.
    pub sessions: Arc<SessionService>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Session events for connections (local; bridged to other nodes in cluster mode).
    pub bus: Bus,
    /// Secret for server-side derivations (local draft keys). Never sent or logged.
    pub server_secret: [u8; 32],
    /// Parsed `trusted_proxies`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// This process's id (cluster presence, logs).
    pub node_id: String,
    /// Cancelled when the server is shutting down (WebSocket tasks watch it).
    pub shutdown: CancellationToken,
    /// Prometheus exposition of the process's metrics.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// WebSocket connections, rooms and heartbeats (see [`crate::ws`]).
    pub hub: Arc<Hub>,
    /// Room members on other nodes: the Redis registry in cluster mode, nobody
    /// ([`sessiond_core::cluster::SingleNode`]) on a single node (memory, SQLite).
    pub presence: Arc<dyn RemotePresence>,
    /// Sign-in ticket keys, parsed once at start.
    pub tickets: Tickets,
    /// Room access: the one decision, admin grants, room tokens.
    pub rooms: Arc<Rooms>,
    /// Per-IP and per-session rate limits (see [`crate::ratelimit`]).
    pub rate_limits: Arc<crate::ratelimit::RateLimits>,
    /// Draft and snapshot writes, admitted within the storage quotas.
    pub quotas: Arc<crate::quotas::QuotaGate>,
    /// Places for concurrent audit streams (`audit.max_streams`).
    pub audit_streams: Arc<tokio::sync::Semaphore>,
    /// Places for requests being handled (`http.max_in_flight`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Dev-mode demo messages (bounded; empty unless `dev`).
    pub demo: Messages,
    /// The webhook endpoints and their deliverer (see [`crate::webhooks`]).
    pub webhooks: Arc<crate::webhooks::deliver::Webhooks>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
