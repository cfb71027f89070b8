//! In-process servers for integration tests: `sessiond_server::run` (or any serve
//! function) on 127.0.0.1:0 with a temp data directory, ready before the test goes on,
//! stopped gracefully or dropped; cluster nodes on their own runtime so a test can kill
//! one; and the admin/session calls every test makes against them.

use crate::http::{self, hs256_ticket};
use crate::wait;
use crate::ws::{self, Ws, WsClient};
use serde_json::{json, Value};
use sessiond_server::config::Config;
use std::fmt::Display;
use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin API key of every test server.
pub const ADMIN_KEY: &str = "test-admin-key-0001";
/// The HS256 secret sign-in tickets of test servers are signed with.
pub const TICKET_SECRET: &str = "test-ticket-secret-0123456789abcdef";
/// How long a server may take to answer `/readyz` with 200 after it was spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful stop (drain and flush) may take.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The future a serve function is given: it resolves when the test asks for a stop.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// `dev = true`, the admin key and the ticket secret, ready for a test's own settings
/// after it (top-level keys first, then tables).
pub fn base_toml(store: &str) -> String {
    format!(
        "store = \"{store}\"\ndev = true\napi_keys = [\"{ADMIN_KEY}\"]\n\
         tickets.hs256_secret = \"{TICKET_SECRET}\"\n"
    )
}

/// A temp data directory shared by the servers started in it (restarts); removed when
/// the last keeper is dropped.
#[derive(Clone)]
pub struct DataDir(Arc<tempfile::TempDir>);

impl DataDir {
    pub fn new() -> DataDir {
        DataDir(Arc::new(
            tempfile::Builder::new()
                .prefix("sessiond-it-")
                .tempdir()
                .expect("temp dir"),
        ))
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Default for DataDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A fresh session made with `{"bearer": true}`: its token, cookie pair and handle.
#[derive(Debug, Clone)]
pub struct Sess {
    pub token: String,
    /// `sessiond=<token>` as set by the server ("" if the test made it up).
    pub cookie: String,
    pub handle: String,
    pub idle_expires_at: String,
    /// The whole creation answer.
    pub body: Value,
    /// When the creation answer arrived (deadlines are measured from here).
    pub created: Instant,
}

impl Sess {
    /// A session known only by a token (after a rotation, say).
    pub fn from_token(token: &str, handle: &str) -> Sess {
        Sess {
            token: token.to_owned(),
            cookie: http::cookie(token),
            handle: handle.to_owned(),
            idle_expires_at: String::new(),
            body: Value::Null,
            created: Instant::now(),
        }
    }
}

/// Where a server listens, and the calls tests make against it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `ws://127.0.0.1:PORT/v1/ws`.
    pub ws_url: String,
}

impl Endpoint {
    /// The endpoint of a server listening on `addr` (e.g. a `SpawnedServer` process).
    pub fn new(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint {
            url: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/ws"),
        }
    }

    /// `url` + `path`.
    pub fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let (c, url) = (&http::client(), &self.u("/readyz"));
        wait::until(
            READY_TIMEOUT,
            &format!("{url} to answer 200"),
            move || async move { c.get(url).send().await.is_ok_and(|r| r.status() == 200) },
        )
        .await;
    }

    /// Admin GET: (status, JSON body or `Null`).
    pub async fn admin_status(&self, path: &str) -> (u16, Value) {
        let r = http::client()
            .get(self.u(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Admin GET that must answer 200; its JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        let (status, v) = self.admin_status(path).await;
        assert_eq!(status, 200, "admin GET {path}: {v}");
        v
    }

    /// Polls an admin view until `ok` holds for (status, body), at most [`wait::DEFAULT`].
    pub async fn admin_until(&self, path: &str, ok: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
        let ok = &ok;
        wait::until_some(
            wait::DEFAULT,
            &format!("{path} to match"),
            move || async move {
                let (s, v) = self.admin_status(path).await;
                ok(s, &v).then_some((s, v))
            },
        )
        .await
    }

    /// Admin DELETE of a session (revocation); its status.
    pub async fn revoke(&self, handle: &str) -> u16 {
        http::client()
            .delete(self.u(&format!("/v1/admin/sessions/{handle}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("revoke")
            .status()
            .as_u16()
    }

    /// A fresh cookie session: (token, session JSON).
    pub async fn new_session(&self) -> (String, Value) {
        let r = http::client()
            .post(self.u("/v1/session"))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let token = http::token_of(r.headers()).expect("cookie");
        (token, r.json().await.expect("json"))
    }

    /// A fresh session with a bearer token (and its cookie).
    pub async fn bearer_session(&self) -> Sess {
        let r = http::client()
            .post(self.u("/v1/session"))
            .json(&json!({"bearer": true}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201, "session created");
        let cookie = http::token_of(r.headers())
            .map(|t| http::cookie(&t))
            .expect("session cookie");
        let body: Value = r.json().await.expect("json");
        let created = Instant::now();
        Sess {
            token: body["token"].as_str().expect("bearer token").to_owned(),
            handle: body["handle"].as_str().expect("handle").to_owned(),
            idle_expires_at: body["idle_expires_at"].as_str().unwrap_or("").to_owned(),
            cookie,
            body,
            created,
        }
    }

    /// `GET /v1/session` with the bearer token: (status, body).
    pub async fn get_session(&self, s: &Sess) -> (u16, Value) {
        let r = http::client()
            .get(self.u("/v1/session"))
            .bearer_auth(&s.token)
            .send()
            .await
            .expect("get session");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/session` with the session's cookie; the status.
    pub async fn session_status(&self, s: &Sess) -> u16 {
        http::client()
            .get(self.u("/v1/session"))
            .header("cookie", &s.cookie)
            .send()
            .await
            .expect("get session")
            .status()
            .as_u16()
    }

    /// A sign-in ticket minted through the admin API.
    pub async fn ticket(&self, user: &str, role: &str) -> String {
        let r = http::client()
            .post(self.u("/v1/admin/tickets"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"user_id": user, "role": role}))
            .send()
            .await
            .expect("mint");
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("json")["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned()
    }

    /// A ticket signed with [`TICKET_SECRET`] (role editor), as an identity provider would.
    pub fn signed_ticket(&self, user: &str, rooms: Option<&[&str]>) -> String {
        hs256_ticket(TICKET_SECRET, user, "editor", rooms)
    }

    /// Audit events for a handle (newest first).
    pub async fn audit_of(&self, handle: &str) -> Vec<Value> {
        let v = self
            .admin_get(&format!("/v1/admin/audit?handle={handle}&limit=1000"))
            .await;
        v["events"].as_array().expect("events").clone()
    }

    /// The `ended` audit events of a handle.
    pub async fn audit_ended(&self, handle: &str) -> Vec<Value> {
        let v = self
            .admin_get(&format!("/v1/admin/audit?kind=ended&handle={handle}"))
            .await;
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// A browser (own cookie jar) with a fresh anonymous session.
    pub async fn browser(&self) -> http::Browser {
        let b = http::Browser::new(&self.url);
        b.new_session().await;
        b
    }

    /// A raw socket authenticated with the session's bearer token (not read by anyone).
    pub async fn ws_raw(&self, s: &Sess) -> Ws {
        ws::connect_bearer(&self.ws_url, &s.token).await
    }

    /// A raw socket with the given upgrade headers; a refusal is the `Err`.
    pub async fn ws_with(
        &self,
        headers: &[(&str, String)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        ws::connect(&self.ws_url, headers).await
    }

    /// A continuously read client of the session (its `hello` is the first frame).
    pub async fn ws(&self, s: &Sess) -> WsClient {
        WsClient::spawn(self.ws_raw(s).await)
    }

    /// [`Endpoint::ws`] with the `hello` already read and checked.
    pub async fn ws_hello(&self, s: &Sess) -> WsClient {
        let mut c = self.ws(s).await;
        let hello = c.json().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        c
    }
}

/// A server running on the test's runtime.
pub struct TestServer {
    endpoint: Endpoint,
    /// The data directory (kept while any server or keeper holds it).
    pub data_dir: DataDir,
    /// Its path, for tests that look at what the server wrote.
    pub dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl Deref for TestServer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl TestServer {
    /// `sessiond_server::run` with this TOML config in a fresh data directory.
    pub async fn start(toml: &str) -> TestServer {
        Self::start_in(toml, &DataDir::new()).await
    }

    /// [`TestServer::start`] in a given data directory (a restart on the same data).
    pub async fn start_in(toml: &str, dir: &DataDir) -> TestServer {
        let config = Config::from_toml(toml).expect("test config");
        Self::start_config_in(config, dir).await
    }

    /// `sessiond_server::run` with a config built by the test, in a fresh data directory.
    pub async fn start_config(config: Config) -> TestServer {
        Self::start_config_in(config, &DataDir::new()).await
    }

    /// [`TestServer::start_config`] in a given data directory (`<dir>/data`; any
    /// `data_dir` the config names is replaced, so tests never write outside a temp dir).
    pub async fn start_config_in(mut config: Config, dir: &DataDir) -> TestServer {
        config.data_dir = dir.path().join("data");
        Self::spawn(dir, move |listener, shutdown| {
            sessiond_server::run(config, listener, shutdown)
        })
        .await
    }

    /// Runs any serve function (an injected store, say) on a listener bound to
    /// 127.0.0.1:0 and waits until it is ready. `serve` gets the listener and the signal
    /// to stop on.
    pub async fn spawn<F, Fut, E>(dir: &DataDir, serve: F) -> TestServer
    where
        F: FnOnce(tokio::net::TcpListener, ShutdownSignal) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = Endpoint::new(listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let fut = serve(
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        );
        let task = tokio::spawn(async move { fut.await.map_err(|e| e.to_string()) });
        let s = TestServer {
            endpoint,
            dir: dir.path().join("data"),
            data_dir: dir.clone(),
            shutdown: Some(tx),
            task: Some(task),
        };
        s.wait_ready().await;
        s
    }

    /// Graceful stop (drains connections, flushes); panics if the server failed or takes
    /// longer than [`STOP_TIMEOUT`]. Returns the data directory for a restart.
    pub async fn stop(mut self) -> DataDir {
        self.stop_now().await;
        self.data_dir.clone()
    }

    /// [`TestServer::stop`] through a mutable reference (the server stays usable as a
    /// value, e.g. for its endpoint).
    pub async fn stop_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(STOP_TIMEOUT, t)
                .await
                .unwrap_or_else(|_| panic!("server stops within {STOP_TIMEOUT:?}"))
                .expect("server task")
                .unwrap_or_else(|e| panic!("server failed: {e}"));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// One cluster node on its own thread and tokio runtime. Killing it drops that runtime
/// without running any shutdown code, which is what Redis and the other nodes see of a
/// SIGKILL: the lease stops being refreshed, sockets close, no cleanup happens.
pub struct Node {
    endpoint: Endpoint,
    stop: Option<std::sync::mpsc::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: DataDir,
}

impl Deref for Node {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Node {
    /// Starts `sessiond_server::run` with this TOML (and a fresh data directory); call
    /// [`Endpoint::wait_ready`] before using it.
    pub fn start(toml: &str) -> Node {
        let dir = DataDir::new();
        let mut cfg = Config::from_toml(toml).expect("test config");
        cfg.data_dir = dir.path().join("data");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let endpoint = Endpoint::new(listener.local_addr().expect("addr"));
        // `true`: graceful shutdown; `false`: kill (drop the runtime, nothing runs).
        let (stop, stopped) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("node runtime");
            let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
            let (kill_tx, kill_rx) = oneshot::channel::<()>();
            std::thread::spawn(move || match stopped.recv() {
                Ok(true) => {
                    let _ = graceful_tx.send(());
                }
                _ => {
                    let _ = kill_tx.send(());
                }
            });
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let server = sessiond_server::run(cfg, listener, async move {
                    let _ = graceful_rx.await;
                });
                tokio::select! {
                    r = server => r.expect("node runs"),
                    _ = kill_rx => {}
                }
            });
            rt.shutdown_background();
        });
        Node {
            endpoint,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The SIGKILL stand-in: every task of the node is dropped at once.
    pub fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(false);
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
