//! The one way to build a server: [`ServerBuilder`] (configuration, optional store,
//! optional clock) validates the configuration once, opens the store and, for a Redis
//! store, joins the cluster; it yields a [`Server`]: the router, the state and the
//! [`ServerGuard`] that owns every background task. [`run`] is the one-liner on top.

use crate::bus::Bus;
use crate::cluster::Node;
use crate::config::{Config, ConfigError, StoreKind};
use crate::routes::listeners::Side;
use crate::sessions::SessionService;
use crate::state::{AppState, Inner};
use crate::tickets::Tickets;
use crate::tls::{CertReloader, TlsReload};
use crate::ws::hub::Hub;
use sessiond_core::cluster::{ClusterBridge, RemotePresence, SingleNode};
use sessiond_core::{Clock, Store, SystemClock};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Keys(#[from] crate::crypto::KeyError),
    #[error("cannot open the SQLite store: {0}")]
    Sqlite(#[from] sessiond_store_sqlite::SqliteError),
    #[error("cannot connect the Redis store: {0}")]
    Redis(#[from] sessiond_store_redis::RedisError),
    #[error("cannot load the stored session deadlines: {0}")]
    WarmStart(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The generated server secret cannot be read or written; never silently replaced.
    #[error("server secret file {}: {reason}", path.display())]
    SecretFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("dev mode listens only on a loopback address (127.0.0.1 or [::1]), not {0}")]
    DevNotLoopback(SocketAddr),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The admin API key of dev mode when none is configured (logged at start; dev only).
pub const DEV_API_KEY: &str = "dev-admin-key";

/// Builds a server from its configuration; the store and the clock default to what the
/// configuration names and to the system clock.
pub struct ServerBuilder {
    config: Config,
    store: Option<Arc<dyn Store>>,
    clock: Arc<dyn Clock>,
    /// Unit tests of a connection alone turn the hub's tasks off.
    hub_tasks: bool,
}

impl ServerBuilder {
    pub fn new(config: Config) -> Self {
        ServerBuilder {
            config,
            store: None,
            clock: Arc::new(SystemClock),
            hub_tasks: true,
        }
    }

    /// Leaves the WebSocket hub's heartbeat timer and bus listener off, so a test sees
    /// what a connection does on its own, without session events reaching it.
    #[cfg(test)]
    pub(crate) fn without_hub_tasks(mut self) -> Self {
        self.hub_tasks = false;
        self
    }

    /// Uses `store` instead of opening the configured one (tests, embedding). The node
    /// then runs alone, whatever `config.store` says.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses `clock` for every timestamp (tests drive a [`sessiond_core::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration, opens the store (or takes the given one), loads the
    /// stored deadlines and starts the background tasks (a tokio runtime must be running).
    pub async fn build(self) -> Result<Server, ServerError> {
        let ServerBuilder {
            mut config,
            store,
            clock,
            hub_tasks,
        } = self;
        apply_dev_defaults(&mut config);
        // Fixed once here, so every reader of `cookie.name` sees the effective name.
        config.cookie.name = config.cookie_name();
        config.validate()?;
        // Certificates before the store: a bad file fails the start before anything opens.
        let tls_public = CertReloader::from_config("tls", &config.tls)?;
        let tls_internal = CertReloader::from_config("internal_tls", &config.internal_tls)?;
        let node_id = sessiond_core::token::random_id(6);
        let (store, cluster) = match store {
            Some(store) => (store, None),
            None => open_store(&config, &node_id).await?,
        };
        let secret = server_secret(&config)?;
        let tickets = Tickets::from_config(&config)?;
        // At-rest encryption sits between everything and the backend.
        let store = crate::crypto::wrap_store(&config, store)?;
        // Outermost, so a store call's span covers what its caller waits for.
        let store = if config.tracing.enabled() {
            crate::telemetry::traced(store, config.store.backend_name())
        } else {
            store
        };
        let bus = Bus::new();
        let sessions = Arc::new(
            SessionService::new(
                store.clone(),
                clock.clone(),
                config.policies(),
                bus.clone(),
                config.hot_path.cache_capacity,
            )
            .with_idempotency(crate::idempotency::IdempotencyKeys::new(
                secret,
                config.idempotency.replay_window,
            ))
            .with_renew_window(config.hot_path.flush_interval),
        );
        let loaded = sessions
            .warm_start()
            .await
            .map_err(|e| ServerError::WarmStart(Box::new(e)))?;
        tracing::info!(sessions = loaded, "scheduler loaded stored deadlines");
        let hub = Arc::new(Hub::new(node_id.clone(), bus.clone(), &config.ws));
        let (bridge, presence): (Arc<dyn ClusterBridge>, Arc<dyn RemotePresence>) = match cluster {
            Some(c) => (c.clone(), c),
            None => (Arc::new(SingleNode), Arc::new(SingleNode)),
        };
        if bridge.is_shared() {
            sessions.enable_cluster_mode(config.hot_path.flush_interval);
            tracing::info!(node = %node_id, "cluster mode: sharing the Redis store with other nodes");
        }
        let rooms = Arc::new(crate::rooms::Rooms::new(
            &config,
            sessions.clone(),
            store.clone(),
            bus.clone(),
        ));
        let quotas = Arc::new(crate::quotas::QuotaGate::new(
            store.clone(),
            config.policies(),
        ));
        let webhooks = Arc::new(
            crate::webhooks::deliver::Webhooks::new(
                &config,
                store.clone(),
                clock.clone(),
                &node_id,
            )
            .map_err(|m| ServerError::Config(ConfigError::Invalid(m)))?,
        );
        let token = CancellationToken::new();
        let state = AppState(Arc::new(Inner {
            webhooks,
            server_secret: secret,
            trusted_proxies: crate::client::parse_trusted(&config.trusted_proxies),
            hub: hub.clone(),
            presence,
            node_id: node_id.clone(),
            sessions: sessions.clone(),
            store,
            clock: clock.clone(),
            bus: bus.clone(),
            shutdown: token.clone(),
            metrics: metrics_handle(),
            tickets,
            rooms,
            demo: Default::default(),
            rate_limits: Arc::new(crate::ratelimit::RateLimits::new(&config.rate_limits)),
            quotas,
            audit_streams: Arc::new(tokio::sync::Semaphore::new(config.audit.max_streams)),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.http.max_in_flight)),
            config,
        }));
        let mut guard = ServerGuard {
            token: token.clone(),
            flusher: None,
            cluster: Vec::new(),
            jobs: Vec::new(),
        };
        if bridge.is_shared() {
            let node = Arc::new(Node {
                sessions: sessions.clone(),
                hub,
                bus,
                clock,
            });
            guard.cluster = crate::cluster::spawn(bridge, node, &node_id, token.clone());
        }
        let hot = &state.config.hot_path;
        guard.flusher = Some(tokio::spawn(
            sessions
                .clone()
                .run_background(hot.flush_interval, token.clone()),
        ));
        guard.jobs.push(tokio::spawn(
            sessions
                .clone()
                .run_retention(state.config.audit.retention, token.clone()),
        ));
        guard
            .jobs
            .push(crate::drafts::spawn_purger(state.clone(), token.clone()));
        guard.jobs.push(crate::ratelimit::spawn_janitor(
            state.rate_limits.clone(),
            token.clone(),
        ));
        guard
            .jobs
            .extend(state.webhooks.clone().spawn(token.clone()));
        if hub_tasks {
            guard.jobs.extend(crate::ws::tasks::spawn(&state));
        }
        for reloader in tls_public.iter().chain(&tls_internal) {
            guard.jobs.push(reloader.spawn_watch(token.clone()));
        }
        Ok(Server {
            router: crate::routes::app(state.clone()),
            state,
            guard,
            tls_public,
            tls_internal,
        })
    }
}

/// A built server: serve [`Server::router`] yourself (keeping the guard alive), or call
/// [`Server::serve`].
pub struct Server {
    router: axum::Router,
    state: AppState,
    guard: ServerGuard,
    /// The listeners' certificates (`[tls]`, `[internal_tls]`), when set.
    tls_public: Option<Arc<CertReloader>>,
    tls_internal: Option<Arc<CertReloader>>,
}

impl Server {
    /// The whole HTTP + WebSocket API (needs `ConnectInfo<SocketAddr>`). Served another
    /// way it keeps the body idle timeout but not the header timeout and connection caps
    /// of [`Server::serve`].
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The shared state (tests reach the service, the hub and the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The router and the guard, for serving it another way (without TLS: an
    /// embedder's own loop terminates TLS itself).
    pub fn into_parts(self) -> (axum::Router, ServerGuard) {
        (self.router, self.guard)
    }

    /// Reloads the listeners' certificates on demand (the binary calls it on SIGHUP);
    /// empty when neither `[tls]` nor `[internal_tls]` is set.
    pub fn tls_reload(&self) -> TlsReload {
        TlsReload {
            listeners: self
                .tls_public
                .iter()
                .chain(&self.tls_internal)
                .cloned()
                .collect(),
        }
    }

    /// Serves on `listener` (and on `internal_listen` when the configuration sets it)
    /// until `shutdown` resolves, then stops accepting, closes connections and flushes
    /// pending writes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let internal = match self.state.config.internal_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        self.serve_split(listener, internal, shutdown).await
    }

    /// [`Server::serve`] with the internal listener bound by the caller (the
    /// configuration's `internal_listen` must be set for the split to apply).
    pub async fn serve_split(
        self,
        listener: tokio::net::TcpListener,
        internal: Option<tokio::net::TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        // The configuration's `listen` was checked; an embedder's listener is checked here.
        for l in std::iter::once(&listener).chain(internal.as_ref()) {
            let addr = l.local_addr()?;
            if self.state.config.dev && !addr.ip().is_loopback() {
                return Err(ServerError::DevNotLoopback(addr));
            }
        }
        let http = self.state.config.http.clone();
        let acceptor = |r: &Option<Arc<CertReloader>>| -> Result<_, ServerError> {
            Ok(match r {
                Some(r) => Some(tokio_rustls::TlsAcceptor::from(r.server_config()?)),
                None => None,
            })
        };
        let public_tls = acceptor(&self.tls_public)?;
        let internal_tls = acceptor(&self.tls_internal)?;
        // The service itself rather than [`Server::router`], whose one route holds it.
        let app = crate::routes::service(self.state.clone());
        let (_router, guard) = self.into_parts();
        let token = guard.token();
        let trigger = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        // Our own loop, not `axum::serve`: it has the timers and connection caps.
        let public_loop = crate::serve::serve(
            listener,
            app.clone(),
            Side::Public,
            &http,
            public_tls,
            token.clone(),
        );
        match internal {
            Some(internal) => {
                tokio::join!(
                    public_loop,
                    crate::serve::serve(internal, app, Side::Internal, &http, internal_tls, token)
                );
            }
            None => public_loop.await,
        }
        // Give connection tasks a moment to send their goodbyes, then flush.
        tokio::time::sleep(Duration::from_millis(50)).await;
        guard.shutdown().await;
        Ok(())
    }
}

/// Owns the server's background tasks: the scheduler and flusher, the retention and
/// draft purge jobs, the WebSocket hub's heartbeat timer and bus listener, and the
/// cluster tasks. Dropping it cancels them all (the flusher
/// still runs its final flush on its own); [`ServerGuard::shutdown`] also waits for
/// the flush and for the node to leave its cluster.
pub struct ServerGuard {
    token: CancellationToken,
    flusher: Option<JoinHandle<()>>,
    cluster: Vec<JoinHandle<()>>,
    jobs: Vec<JoinHandle<()>>,
}

impl ServerGuard {
    /// Cancelled when the server shuts down; WebSocket tasks and the serving loop watch it.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Stops every task and waits: pending activity flushed, cluster left (bounded).
    pub async fn shutdown(mut self) {
        self.token.cancel();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.await;
        }
        for t in self.cluster.drain(..).chain(self.jobs.drain(..)) {
            let _ = t.await;
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Serves until `shutdown` resolves, then stops accepting, closes connections and
/// flushes pending writes.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    ServerBuilder::new(config)
        .build()
        .await?
        .serve(listener, shutdown)
        .await
}

/// A cluster joined through a shared store: its bridge and its presence registry.
type Shared = Arc<sessiond_store_redis::RedisCluster>;

/// Opens the backend the configuration names; a Redis store also yields this node's
/// cluster layer on it.
async fn open_store(
    config: &Config,
    node_id: &str,
) -> Result<(Arc<dyn Store>, Option<Shared>), ServerError> {
    match &config.store {
        StoreKind::Memory => Ok((Arc::new(sessiond_store_memory::MemoryStore::new()), None)),
        StoreKind::Sqlite => {
            let opts = sessiond_store_sqlite::SqliteOptions {
                deadline: config.store_queue.deadline,
                max_waiting: config.store_queue.max_waiting,
                ..Default::default()
            };
            let s = sessiond_store_sqlite::SqliteStore::open_with(&config.data_dir, opts)?;
            Ok((Arc::new(s), None))
        }
        StoreKind::Redis(url) => {
            tracing::info!(store = %config.store, "connecting to the Redis store");
            let cfg = sessiond_store_redis::RedisConfig::new(url.clone())
                .key_prefix(config.redis.key_prefix.clone())
                .connections(config.redis.connections)
                .command_timeout(config.redis.command_timeout)
                .connect_timeout(config.redis.connect_timeout)
                .buckets(config.redis.buckets)
                .min_replicas(config.redis.min_replicas, config.redis.replica_timeout);
            let store = Arc::new(sessiond_store_redis::RedisStore::connect(cfg).await?);
            tracing::info!(
                sharded = store.is_cluster(),
                "connected to the shared Redis store"
            );
            let cluster = Arc::new(sessiond_store_redis::RedisCluster::new(
                store.clone(),
                node_id.to_owned(),
            ));
            Ok((store, Some(cluster)))
        }
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
    if config.store != StoreKind::Sqlite {
        return Ok(fresh);
    }
    std::fs::create_dir_all(&config.data_dir)?;
    secret_file(&config.data_dir, fresh)
}

/// Name of the generated secret in the data directory.
const SECRET_FILE: &str = "server-secret";

/// Reads `dir/server-secret`, or when it does not exist writes `fresh` there and returns
/// it. Any other failure (unreadable, wrong length) stops the start: replacing the secret
/// would silently invalidate everything derived from it (draft keys, idempotency records).
fn secret_file(dir: &std::path::Path, fresh: [u8; 32]) -> Result<[u8; 32], ServerError> {
    let path = dir.join(SECRET_FILE);
    let fail = |reason: String| ServerError::SecretFile {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(b) => {
            let len = b.len();
            <[u8; 32]>::try_from(b).map_err(|_| {
                fail(format!(
                    "holds {len} bytes, expected 32; restore it from a backup (deleting it \
                     invalidates local draft keys and idempotency records)"
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_secret_file(dir, &path, &fresh)
                .map_err(|e| fail(format!("cannot create: {e}")))?;
            Ok(fresh)
        }
        Err(e) => Err(fail(format!("cannot read: {e}"))),
    }
}

/// Writes the secret durably and never readable by others: a new temporary file created
/// with mode 0600 (no window with wider permissions), synced, renamed into place, and
/// the directory synced so the rename survives a crash.
fn write_secret_file(
    dir: &std::path::Path,
    path: &std::path::Path,
    secret: &[u8; 32],
) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{SECRET_FILE}.tmp"));
    // A leftover from a crash before the rename holds nothing in use.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(secret)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Histogram buckets (seconds unless said), chosen around each figure's bar: expiry
/// lateness is held to 250 ms p99 and 1 s max; a store call is sub-millisecond cached
/// and an fsync (milliseconds) when durable; HTTP answers span both.
const LATENESS_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Writes per group commit (counts, up to the writer's cap of 256).
const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The process-wide Prometheus recorder (installed once; several test servers share it).
fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let full = |name: &str| Matcher::Full(name.to_owned());
            // Without buckets the exporter renders histograms as summaries, which
            // cannot be aggregated across nodes.
            PrometheusBuilder::new()
                .set_buckets_for_metric(full("sessiond_expiry_lateness_seconds"), LATENESS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(full("sessiond_store_call_seconds"), STORE_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        full("sessiond_store_group_commit_seconds"),
                        STORE_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(full("sessiond_store_group_size"), GROUP_SIZE_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        full("sessiond_store_checkpoint_seconds"),
                        STORE_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        full("sessiond_http_request_duration_seconds"),
                        HTTP_BUCKETS,
                    )
                })
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Dev mode fills in what a local demo needs and the config left empty: the well-known
/// admin key, a per-process ticket secret (used to mint and to verify), and every room
/// for roles without `rooms` patterns (production default: none).
fn apply_dev_defaults(config: &mut Config) {
    if !config.dev {
        return;
    }
    for role in config.roles.values_mut() {
        if role.rooms.is_none() {
            role.rooms = Some(vec!["*".to_owned()]);
        }
    }
    if config.api_keys.is_empty() {
        config.api_keys.push(DEV_API_KEY.into());
        tracing::warn!(
            api_key = DEV_API_KEY,
            "dev mode: admin API key (never use dev mode in production)"
        );
    }
    if config.tickets.hs256_secret.is_empty() {
        config.tickets.hs256_secret = sessiond_core::token::random_id(32).into();
        tracing::info!("dev mode: generated a ticket secret for this process");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn memory() -> Config {
        Config::from_toml("store = \"memory\"").unwrap()
    }

    #[tokio::test]
    async fn the_guard_owns_the_tasks_and_shutdown_waits_for_them() {
        let server = ServerBuilder::new(memory()).build().await.unwrap();
        let token = server.state().shutdown.clone();
        let (_router, guard) = server.into_parts();
        assert!(!token.is_cancelled());
        // Every task watches the token: shutdown returns once they all finished.
        tokio::time::timeout(Duration::from_secs(5), guard.shutdown())
            .await
            .expect("every background task stopped");
        assert!(token.is_cancelled());

        let server = ServerBuilder::new(memory()).build().await.unwrap();
        let token = server.guard.token();
        drop(server);
        assert!(token.is_cancelled(), "dropping the guard stops the tasks");
    }

    #[tokio::test]
    async fn the_config_is_validated_and_errors_keep_their_source() {
        let mut bad = memory();
        bad.default_role = "nobody".into();
        let err = ServerBuilder::new(bad)
            .build()
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, ServerError::Config(_)), "{err}");

        // The data directory is a file: SQLite cannot open it, and says why.
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut sqlite = memory();
        sqlite.store = StoreKind::Sqlite;
        sqlite.data_dir = file.path().to_owned();
        let err = ServerBuilder::new(sqlite)
            .build()
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, ServerError::Sqlite(_)), "{err}");
        assert!(err.source().is_some());
    }

    #[tokio::test]
    async fn a_given_store_and_clock_are_used_and_the_node_runs_alone() {
        let clock = Arc::new(sessiond_core::ManualClock::new(1_700_000_000_000));
        let mut config = memory();
        // Ignored: the given store wins, so no Redis is contacted.
        config.store = StoreKind::Redis("redis://127.0.0.1:1".into());
        config.server_secret = "a-secret-shared-by-every-node-0123".into();
        let server = ServerBuilder::new(config)
            .store(Arc::new(sessiond_store_memory::MemoryStore::new()))
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        assert_eq!(server.state().clock.now(), clock.now());
        assert!(server.guard.cluster.is_empty(), "no cluster task");
        assert!(server
            .state()
            .presence
            .remote_rooms()
            .await
            .unwrap()
            .is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn the_secret_file_is_created_private_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRET_FILE);
        let first = secret_file(dir.path(), [1; 32]).unwrap();
        assert_eq!(first, [1; 32]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "created private");
        assert!(!dir.path().join("server-secret.tmp").exists());
        // Kept across starts.
        assert_eq!(secret_file(dir.path(), [2; 32]).unwrap(), [1; 32]);

        // A wrong length fails the start naming the file, which stays as it was.
        std::fs::write(&path, b"short").unwrap();
        let err = secret_file(dir.path(), [3; 32]).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("5 bytes"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"short");

        // A read error other than not-found (here: it is a directory) is no reason to
        // write a new secret.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = secret_file(dir.path(), [4; 32]).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        assert!(path.is_dir(), "left in place");
    }

    #[tokio::test]
    async fn a_bad_cookie_domain_is_refused_before_any_create() {
        // On main this configuration started, and every create then panicked building
        // the Set-Cookie header.
        let mut config = memory();
        config.cookie.domain = "example.com\r\nSet-Cookie: x=y".into();
        let err = ServerBuilder::new(config)
            .build()
            .await
            .err()
            .expect("refused at start");
        assert!(err.to_string().contains("cookie.domain"), "{err}");
        // Every domain validation lets through makes a valid header.
        for domain in ["example.com", ".example.com", "localhost"] {
            let mut config = memory();
            config.cookie.domain = domain.into();
            let server = ServerBuilder::new(config).build().await.unwrap();
            // The builder every create's Set-Cookie goes through (it panics on a bad one).
            let cookie = crate::routes::session::clear_cookie(server.state());
            assert!(cookie
                .to_str()
                .unwrap()
                .ends_with(&format!("; Domain={domain}")));
        }
    }

    #[tokio::test]
    async fn dev_mode_refuses_a_non_loopback_listener() {
        let mut config = memory();
        config.dev = true;
        let server = ServerBuilder::new(config).build().await.unwrap();
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let err = server
            .serve(listener, std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, ServerError::DevNotLoopback(_)), "{err}");
    }
}
