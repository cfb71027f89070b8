//! sessiond's server: axum HTTP + WebSocket routes over a [`sessiond_core::Store`].
//!
//! [`run`] takes its configuration, a bound listener and a shutdown future, so tests
//! start it on `127.0.0.1:0` with their own shutdown; the binary only parses arguments.

pub mod auth;
pub mod bus;
pub mod client;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod drafts;
pub mod error;
pub mod idempotency;
pub mod routes;
pub mod sessions;
pub mod state;
pub mod tickets;
pub mod ws;

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
            let s = sessiond_store_sqlite::SqliteStore::open(&dir)
                .map_err(|e| ServerError::Store(e.to_string()))?;
            Ok(Arc::new(s))
        }
        url if is_redis_url(url) => Ok(open_redis(config).await?),
        other => Err(ServerError::Store(format!(
            "unsupported store {other:?} in this build"
        ))),
    }
}

/// Whether `store` names a Redis deployment (cluster mode).
pub fn is_redis_url(store: &str) -> bool {
    [
        "redis://",
        "rediss://",
        "redis+cluster://",
        "rediss+cluster://",
        "redis+sentinel://",
        "rediss+sentinel://",
    ]
    .iter()
    .any(|p| store.starts_with(p))
}

/// Connects the Redis store (standalone, Cluster or Sentinel, from the URL).
///
/// Several nodes share it, so they must derive the same keys: an explicit
/// `server_secret` is required (a generated one would differ per node).
pub async fn open_redis(
    config: &Config,
) -> Result<Arc<sessiond_store_redis::RedisStore>, ServerError> {
    if config.server_secret.is_empty() {
        return Err(ServerError::Store(
            "a Redis store is shared by several nodes: set server_secret (the same on every node)"
                .into(),
        ));
    }
    let cfg = sessiond_store_redis::RedisConfig::new(config.store.clone())
        .key_prefix(config.redis.key_prefix.clone())
        .connections(config.redis.connections)
        .command_timeout(config.redis.command_timeout)
        .connect_timeout(config.redis.connect_timeout);
    let store = sessiond_store_redis::RedisStore::connect(cfg)
        .await
        .map_err(|e| ServerError::Store(e.to_string()))?;
    Ok(Arc::new(store))
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
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Builds the state: store, session service (warm-started from stored deadlines).
pub async fn build_state(
    config: Config,
    clock: Arc<dyn Clock>,
    shutdown: tokio_util_shutdown::Signal,
) -> Result<AppState, ServerError> {
    config.validate()?;
    if is_redis_url(&config.store) {
        let redis = open_redis(&config).await?;
        return build_state_parts(config, clock, redis.clone(), Some(redis), shutdown).await;
    }
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
    build_state_parts(config, clock, store, None, shutdown).await
}

/// Like [`build_state_with_store`]; with `redis` (the same store, concrete) the node
/// joins a cluster: see [`cluster`].
pub async fn build_state_parts(
    config: Config,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    redis: Option<Arc<sessiond_store_redis::RedisStore>>,
    shutdown: tokio_util_shutdown::Signal,
) -> Result<AppState, ServerError> {
    let mut config = config;
    apply_dev_defaults(&mut config);
    config.validate()?;
    let tickets = tickets::Tickets::from_config(&config)?;
    // At-rest encryption sits between everything and the backend.
    let store = crypto::wrap_store(&config, store)
        .map_err(|e| config::ConfigError::Invalid(e.to_string()))?;
    let bus = Bus::new();
    let sessions = Arc::new(SessionService::new(
        store.clone(),
        clock.clone(),
        config.policies(),
        bus.clone(),
        config.hot_path.cache_capacity,
    ));
    let loaded = sessions
        .warm_start()
        .await
        .map_err(|e| ServerError::Store(e.to_string()))?;
    tracing::info!(sessions = loaded, "scheduler loaded stored deadlines");
    let node_id = sessiond_core::token::random_id(6);
    let cluster = redis.map(|r| {
        sessions.enable_cluster_mode(config.hot_path.flush_interval);
        tracing::info!(node = %node_id, sharded = r.is_cluster(), "cluster mode: sharing the Redis store with other nodes");
        Arc::new(cluster::Cluster::new(r, node_id.clone()))
    });
    let inner = Inner {
        cluster,
        server_secret: server_secret(&config)?,
        trusted_proxies: client::parse_trusted(&config.trusted_proxies),
        hub: Arc::new(crate::ws::Hub::new(
            node_id.clone(),
            bus.clone(),
            &config.ws,
        )),
        node_id,
        config,
        sessions,
        store,
        clock,
        bus,
        shutdown,
        metrics: metrics_handle(),
        tickets,
        demo: Default::default(),
    };
    Ok(AppState(Arc::new(inner)))
}

/// The admin API key of dev mode when none is configured (logged at start; dev only).
pub const DEV_API_KEY: &str = "dev-admin-key";

/// Dev mode fills in what a local demo needs and the config left empty: the well-known
/// admin key and a per-process ticket secret (used to mint and to verify).
fn apply_dev_defaults(config: &mut Config) {
    if !config.dev {
        return;
    }
    if config.api_keys.is_empty() {
        config.api_keys.push(DEV_API_KEY.to_owned());
        tracing::warn!(
            api_key = DEV_API_KEY,
            "dev mode: admin API key (never use dev mode in production)"
        );
    }
    if config.tickets.hs256_secret.is_empty() {
        config.tickets.hs256_secret = sessiond_core::token::random_id(32);
        tracing::info!("dev mode: generated a ticket secret for this process");
    }
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
    config.validate()?;
    if is_redis_url(&config.store) {
        let redis = open_redis(&config).await?;
        return run_with_parts(
            config,
            listener,
            shutdown,
            clock,
            redis.clone(),
            Some(redis),
        )
        .await;
    }
    let store = open_store(&config).await?;
    run_with_store(config, listener, shutdown, clock, store).await
}

/// [`run`] with an injected clock and store (tests, embedding).
pub async fn run_with_store(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
) -> Result<(), ServerError> {
    run_with_parts(config, listener, shutdown, clock, store, None).await
}

/// [`run_with_store`]; with `redis` the node runs as part of a cluster.
pub async fn run_with_parts(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    redis: Option<Arc<sessiond_store_redis::RedisStore>>,
) -> Result<(), ServerError> {
    let (trigger, signal) = tokio_util_shutdown::channel();
    let state = build_state_parts(config, clock, store, redis, signal.clone()).await?;
    let cluster_task = cluster::spawn(&state);
    let flush_every = state.config.hot_path.flush_interval;
    // The session service stops on a CancellationToken; bridged from the signal.
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let (mut signal, cancel) = (signal.clone(), cancel.clone());
        async move {
            signal.wait().await;
            cancel.cancel();
        }
    });
    let background = tokio::spawn(
        state
            .sessions
            .clone()
            .run_background(flush_every, cancel.clone()),
    );
    let _retention = tokio::spawn(
        state
            .sessions
            .clone()
            .run_retention(state.config.audit.retention, cancel),
    );
    let _purger = drafts::spawn_purger(state.clone(), signal.clone());
    let app = routes::app(state.clone());
    let mut serve_signal = signal.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.trigger();
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { serve_signal.wait().await })
    .await?;
    // Give connection tasks a moment to send their goodbyes, then flush.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = background.await;
    if let Some(t) = cluster_task {
        // Bounded inside: the node's members are announced lost and its lease dropped.
        let _ = t.await;
    }
    Ok(())
}
