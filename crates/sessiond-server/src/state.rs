//! Shared application state handed to every handler.

use crate::bus::Bus;
use crate::config::Config;
use crate::sessions::tokio_util_shutdown::Signal;
use crate::sessions::SessionService;
use sessiond_core::{Clock, Store};
use std::sync::Arc;

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
    /// Resolves when the server is shutting down (WebSocket tasks watch it).
    pub shutdown: Signal,
    /// Prometheus exposition of the process's metrics.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// WebSocket connections, rooms and heartbeats (see [`crate::ws`]).
    pub hub: Arc<crate::ws::Hub>,
    /// Cluster mode (Redis store): leases, presence registry, event bridge. `None` on a
    /// single node (memory, SQLite).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Sign-in ticket keys, parsed once at start.
    pub tickets: crate::tickets::Tickets,
    /// Dev-mode demo messages (bounded; empty unless `dev`).
    pub demo: crate::routes::demo::Messages,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
