//! The servers under load, each on 127.0.0.1:0 in this process on the server runtime:
//! sessiond (SQLite, or Redis on a redis-server the tool starts) from its builder, and
//! the baselines: a bare axum handler, axum with tower-sessions' memory store or its Redis
//! store (crate::tower_redis, on its own redis-server), and a naive axum handler inserting
//! one SQLite row per request (WAL, synchronous=FULL).

use crate::BenchError;
use axum::http::{header::SET_COOKIE, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What can be put under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    BareAxum,
    TowerMemory,
    SessiondSqlite,
    /// sessiond on SQLite with group commit off (a transaction per write), to show
    /// what group commit changes in the same run.
    SessiondSqliteSolo,
    SessiondRedis,
    /// sessiond on its memory store (nothing durable): what sessiond's own work per
    /// request costs with a store that costs almost nothing, the ceiling of any store.
    SessiondMemory,
    /// axum + tower-sessions on its Redis store (crate::tower_redis).
    TowerRedis,
    NaiveInsert,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::BareAxum => "bare axum",
            Kind::TowerMemory => "axum + tower-sessions MemoryStore (read + write)",
            Kind::SessiondSqlite => "sessiond, SQLite",
            Kind::SessiondSqliteSolo => {
                "sessiond, SQLite, group commit off (a transaction per write)"
            }
            Kind::SessiondRedis => "sessiond, Redis",
            Kind::SessiondMemory => "sessiond, memory store (not durable: the ceiling)",
            Kind::TowerRedis => "axum + tower-sessions RedisStore (read + write)",
            Kind::NaiveInsert => "naive axum + one SQLite row per request (WAL, synchronous=FULL)",
        }
    }
}

/// A running target; dropping it stops the server (and its redis-server, temp files).
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    redis: Option<RedisProcess>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server and waits for it (sessiond flushes its pending writes).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), d).await;
        }
        drop(self.redis.take());
    }
}

/// The admin API key of every sessiond the tool starts (`Authorization: Bearer …`).
pub const ADMIN_KEY: &str = "bench-admin-key-0001";

/// sessiond's configuration for `store` (`sqlite` or a Redis URL) with its data in `dir`:
/// dev mode, rate limits off, one shared secret (nodes on one Redis need the same).
fn sessiond_config(store: &str, dir: &Path) -> Result<sessiond_server::config::Config, BenchError> {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nstore = {store:?}\ndev = true\n\
         api_keys = [{ADMIN_KEY:?}]\n\
         server_secret = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n\
         [rate_limits]\nenabled = false\n\
         [http]\nmax_connections_per_ip = 4096\n",
        dir.display().to_string()
    );
    sessiond_server::config::Config::from_toml(&toml)
        .map_err(|e| BenchError::Setup(format!("sessiond config: {e}")))
}

/// Starts one sessiond node on an existing Redis (`redis://…`), as a node of the cluster
/// every node on that Redis forms (on the current runtime).
pub async fn start_node(redis_url: &str) -> Result<Running, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("sessiond-bench-node-")
        .tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = sessiond_server::ServerBuilder::new(sessiond_config(redis_url, dir.path())?)
        .build()
        .await
        .map_err(|e| BenchError::Setup(format!("sessiond: {e}")))?;
    let done = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = server.serve(listener, shutdown).await {
            eprintln!("sessiond stopped with an error: {e}");
        }
    });
    Ok(Running {
        addr,
        stop: Some(stop),
        done: Some(done),
        _dir: dir,
        redis: None,
    })
}

/// Starts `kind` (on the current runtime).
pub async fn start(kind: Kind) -> Result<Running, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("sessiond-bench-")
        .tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let mut redis = None;
    let done = match kind {
        Kind::SessiondSqlite
        | Kind::SessiondSqliteSolo
        | Kind::SessiondRedis
        | Kind::SessiondMemory => {
            let store = if kind == Kind::SessiondRedis {
                let r = RedisProcess::start(dir.path())?;
                let url = format!("redis://127.0.0.1:{}/0", r.port);
                redis = Some(r);
                url
            } else {
                "sqlite".to_owned()
            };
            let config = sessiond_config(&store, dir.path())?;
            let mut builder = sessiond_server::ServerBuilder::new(config);
            if kind == Kind::SessiondMemory {
                builder = builder.store(Arc::new(sessiond_store_memory::MemoryStore::new()));
            }
            if kind == Kind::SessiondSqliteSolo {
                let opts = sessiond_store_sqlite::SqliteOptions {
                    max_group: 1,
                    ..Default::default()
                };
                let path = dir.path().to_path_buf();
                let store = tokio::task::spawn_blocking(move || {
                    sessiond_store_sqlite::SqliteStore::open_with(&path, opts)
                })
                .await
                .map_err(|e| BenchError::Setup(format!("sqlite open: {e}")))?
                .map_err(|e| BenchError::Setup(format!("sqlite open: {e}")))?;
                builder = builder.store(Arc::new(store));
            }
            let server = builder
                .build()
                .await
                .map_err(|e| BenchError::Setup(format!("sessiond: {e}")))?;
            tokio::spawn(async move {
                if let Err(e) = server.serve(listener, shutdown).await {
                    eprintln!("sessiond stopped with an error: {e}");
                }
            })
        }
        Kind::BareAxum => serve_axum(listener, bare_axum(), shutdown),
        Kind::TowerMemory => serve_axum(
            listener,
            tower_app(tower_sessions::MemoryStore::default()),
            shutdown,
        ),
        Kind::TowerRedis => {
            let r = RedisProcess::start(dir.path())?;
            let url = format!("redis://127.0.0.1:{}/0", r.port);
            redis = Some(r);
            let store = crate::tower_redis::RedisStore::connect(&url)
                .await
                .map_err(|e| BenchError::Setup(format!("tower-sessions Redis store: {e}")))?;
            serve_axum(listener, tower_app(store), shutdown)
        }
        Kind::NaiveInsert => serve_axum(listener, naive_insert(dir.path())?, shutdown),
    };
    Ok(Running {
        addr,
        stop: Some(stop),
        done: Some(done),
        _dir: dir,
        redis,
    })
}

fn serve_axum(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    })
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The floor: a handler answering 200 at once. Its create route hands out a cookie so
/// every target is driven the same way (the verify route ignores it).
fn bare_axum() -> Router {
    Router::new()
        .route(
            "/v1/session",
            post(|| async {
                (
                    StatusCode::CREATED,
                    [(SET_COOKIE, format!("sid={}; HttpOnly", random_token()))],
                )
            }),
        )
        .route("/v1/auth/verify", get(|| async { StatusCode::OK }))
}

/// tower-sessions on `store`; verify reads the session and writes a counter (a changed
/// session is saved back), the equivalent of validate-and-touch.
fn tower_app<S>(store: S) -> Router
where
    S: tower_sessions::SessionStore + Clone,
{
    use tower_sessions::{Session, SessionManagerLayer};
    async fn create(session: Session) -> StatusCode {
        match session.insert("n", 0u64).await {
            Ok(()) => StatusCode::CREATED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    async fn verify(session: Session) -> StatusCode {
        match session.get::<u64>("n").await {
            Ok(Some(n)) => match session.insert("n", n + 1).await {
                Ok(()) => StatusCode::OK,
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Ok(None) => StatusCode::UNAUTHORIZED,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    Router::new()
        .route("/v1/session", post(create))
        .route("/v1/auth/verify", get(verify))
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

/// One autocommitted row per request, on one connection: each answer waits for its fsync.
fn naive_insert(dir: &Path) -> Result<Router, BenchError> {
    let conn = rusqlite::Connection::open(dir.join("naive.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE sessions (token TEXT PRIMARY KEY, created_ms INTEGER NOT NULL);",
    )?;
    let conn = Arc::new(Mutex::new(conn));
    let create = move || {
        let conn = conn.clone();
        async move {
            let token = random_token();
            let t = token.clone();
            let done = tokio::task::spawn_blocking(move || {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                conn.execute(
                    "INSERT INTO sessions (token, created_ms) VALUES (?1, ?2)",
                    rusqlite::params![t, now],
                )
            })
            .await;
            match done {
                Ok(Ok(_)) => (
                    StatusCode::CREATED,
                    [(SET_COOKIE, format!("sid={token}; HttpOnly"))],
                )
                    .into_response(),
                _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
    };
    Ok(Router::new().route("/v1/session", post(create)))
}

/// A redis-server on a free loopback port, without persistence; killed when dropped.
pub struct RedisProcess {
    pub port: u16,
    child: Child,
}

impl RedisProcess {
    pub fn start(dir: &Path) -> Result<RedisProcess, BenchError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BenchError::Setup(format!("cannot start redis-server: {e}")))?;
        let r = RedisProcess { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "redis-server did not listen on {port} within 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(r)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `redis-server` can be started here.
pub fn redis_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
