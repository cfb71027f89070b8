//! sessiond's server: axum HTTP + WebSocket routes over a [`sessiond_core::Store`].
//!
//! [`run`] takes its configuration, a bound listener and a shutdown future, so tests
//! start it on `127.0.0.1:0` with their own shutdown; the binary only parses arguments.

pub mod auth;
pub mod bus;
pub mod client;
pub mod config;
pub mod drafts;
pub mod error;
pub mod routes;
pub mod sessions;
pub mod state;

use crate::bus::Bus;
use crate::config::Config;
use crate::sessions::tokio_util_shutdown;
use crate::sessions::SessionService;
use crate::state::{AppState, Inner};
use sessiond_core::{Clock, Store, SystemClock};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot open the store: {0}")]
    Store(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the backend the configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    match config.store.as_str() {
        "memory" => Ok(Arc::new(sessiond_store_memory::MemoryStore::new())),
        "sqlite" => {
            let dir = config.data_dir.clone();
            let s = sessiond_store_sqlite::SqliteStore::open(&dir).map_err(|e| ServerError::Store(e.to_string()))?;
            Ok(Arc::new(s))
        }
        other => Err(ServerError::Store(format!("unsupported store {other:?} in this build"))),
    }
}

/// The server secret: configured, or generated once and kept in the data directory
/// (mode 0600), or random per process for the memory store.
fn server_secret(config: &Config) -> Result<[u8; 32], ServerError> {
    use sha2::{Digest, Sha256};
    if !config.server_secret.is_empty() {
        return Ok(Sha256::digest(config.server_secret.as_bytes()).into());
    }
    let mut fresh = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut fresh[..]);
    if config.store != "sqlite" {
        return Ok(fresh);
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let path = config.data_dir.join("server-secret");
    match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => Ok(b.try_into().expect("length checked")),
        _ => {
            let tmp = config.data_dir.join("server-secret.tmp");
            std::fs::write(&tmp, fresh)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(fresh)
        }
    }
}

/// The process-wide Prometheus recorder (installed once; several test servers share it).
fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok()).clone()
}

/// Builds the state: store, session service (warm-started from stored deadlines).
pub async fn build_state(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: tokio_util_shutdown::Signal,
) -> Result<AppState, ServerError> {
    config.validate()?;
    let store = open_store(&config).await?;
    build_state_with_store(config, clock, store, shutdown).await
}

/// Like [`build_state`] with a given store (tests, embedding).
pub async fn build_state_with_store(
    config: Config,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    shutdown: tokio_util_shutdown::Signal,
) -> Result<AppState, ServerError> {
    let bus = Bus::new();
    let sessions = Arc::new(SessionService::new(
        store.clone(),
        clock.clone(),
        config.policies(),
        bus.clone(),
        config.hot_path.cache_capacity,
    ));
    let loaded = sessions.warm_start().await.map_err(|e| ServerError::Store(e.to_string()))?;
    tracing::info!(sessions = loaded, "scheduler loaded stored deadlines");
    let inner = Inner {
        server_secret: server_secret(&config)?,
        trusted_proxies: client::parse_trusted(&config.trusted_proxies),
        node_id: sessiond_core::token::random_id(6),
        config,
        sessions,
        store,
        clock,
        bus,
        shutdown,
        metrics: metrics_handle(),
    };
    Ok(AppState(Arc::new(inner)))
}

/// Serves until `shutdown` resolves, then stops accepting, closes connections and
/// flushes pending writes.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with an injected clock.
pub async fn run_with_clock(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
) -> Result<(), ServerError> {
    let (trigger, signal) = tokio_util_shutdown::channel();
    let state = build_state(config, clock, signal.clone()).await?;
    let flush_every = state.config.hot_path.flush_interval;
    let background = tokio::spawn(state.sessions.clone().run_background(flush_every, signal.clone()));
    let _purger = drafts::spawn_purger(state.clone(), signal.clone());
    let app = routes::app(state.clone());
    let mut serve_signal = signal.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.trigger();
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { serve_signal.wait().await })
        .await?;
    // Give connection tasks a moment to send their goodbyes, then flush.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = background.await;
    Ok(())
}
