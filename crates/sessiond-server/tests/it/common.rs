//! The test harness: a server per test, a log capture, and small HTTP helpers.

use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Client, Response};
use serde_json::Value;
use sessiond_server::config::Config;
use sessiond_server::ServerError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_KEY: &str = "test-admin-key-0001";
pub const TICKET_SECRET: &str = "test-ticket-secret-0123456789abcdef";
/// Most log bytes kept (tests stay far below; the bound guards a runaway logger).
const MAX_LOG: usize = 256 * 1024 * 1024;

/// Everything every test server logged, at debug level and up.
pub fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| Mutex::new(Vec::new()))
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut l = logs().lock().unwrap_or_else(|e| e.into_inner());
        if l.len() + buf.len() <= MAX_LOG {
            l.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
    });
}

/// A server running in this process.
pub struct Server {
    pub url: String,
    pub dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
    /// Keeps the data directory alive for the test (and across restarts).
    _tmp: Option<Arc<tempfile::TempDir>>,
}

/// Options of [`Server::start_with`].
pub struct Opts<'a> {
    pub store: &'a str,
    pub dev: bool,
    /// Extra TOML appended after the base (top-level keys first, then tables).
    pub extra: &'a str,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            store: "sqlite",
            dev: true,
            extra: "",
        }
    }
}

impl Server {
    /// SQLite in a temp directory, dev mode, defaults.
    pub async fn start() -> Server {
        Self::start_with(Opts::default()).await
    }

    pub async fn start_with(o: Opts<'_>) -> Server {
        let tmp = Arc::new(
            tempfile::Builder::new()
                .prefix("sessiond-it-")
                .tempdir()
                .expect("temp dir"),
        );
        let dir = tmp.path().join("data");
        Self::start_in(&dir, o, Some(tmp)).await
    }

    /// A server on a given data directory (restarts).
    pub async fn start_in(dir: &Path, o: Opts<'_>, tmp: Option<Arc<tempfile::TempDir>>) -> Server {
        init_logs();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\nstore = \"{}\"\ndev = {}\ndata_dir = \"{}\"\napi_keys = [\"{ADMIN_KEY}\"]\n\
             tickets.hs256_secret = \"{TICKET_SECRET}\"\nhot_path.flush_interval = \"200ms\"\n{}\n",
            o.store,
            o.dev,
            dir.display(),
            o.extra
        );
        let config = Config::from_toml(&toml).expect("test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sessiond_server::run(config, listener, async move {
            let _ = rx.await;
        }));
        let s = Server {
            url,
            dir: dir.to_path_buf(),
            shutdown: Some(tx),
            task: Some(task),
            _tmp: tmp,
        };
        s.wait_ready().await;
        s
    }

    async fn wait_ready(&self) {
        let c = Client::new();
        for _ in 0..200 {
            if let Ok(r) = c.get(format!("{}/readyz", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server at {} did not become ready", self.url);
    }

    /// Graceful stop (flushes), returning the data directory's keeper for a restart.
    pub async fn stop(mut self) -> Option<Arc<tempfile::TempDir>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("server stops within 10 s")
                .expect("server task")
                .expect("server ran cleanly");
        }
        self._tmp.take()
    }

    pub fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Admin GET returning JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = Client::new()
            .get(self.u(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("admin request");
        assert_eq!(r.status(), 200, "admin GET {path}");
        r.json().await.expect("admin json")
    }

    /// A fresh session: (token, session JSON).
    pub async fn new_session(&self) -> (String, Value) {
        let r = Client::new()
            .post(self.u("/v1/session"))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let token = token_of(r.headers()).expect("cookie");
        (token, r.json().await.expect("json"))
    }

    /// A sign-in ticket minted through the admin API.
    pub async fn ticket(&self, user: &str, role: &str) -> String {
        let r = Client::new()
            .post(self.u("/v1/admin/tickets"))
            .bearer_auth(ADMIN_KEY)
            .json(&serde_json::json!({"user_id": user, "role": role}))
            .send()
            .await
            .expect("mint");
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("json")["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned()
    }

    /// Audit events for a handle (newest first).
    pub async fn audit_of(&self, handle: &str) -> Vec<Value> {
        let v = self
            .admin_get(&format!("/v1/admin/audit?handle={handle}&limit=1000"))
            .await;
        v["events"].as_array().expect("events").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The session token in a response's `Set-Cookie`, if any.
pub fn token_of(h: &HeaderMap) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("sessiond="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .filter(|t| !t.is_empty())
}

/// The raw `Set-Cookie` header.
pub fn set_cookie(h: &HeaderMap) -> String {
    h.get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

pub fn cookie(token: &str) -> String {
    format!("sessiond={token}")
}

/// GET with a cookie.
pub async fn get(url: &str, token: &str) -> Response {
    Client::new()
        .get(url)
        .header("cookie", cookie(token))
        .send()
        .await
        .expect("request")
}

/// POST (empty body) with a cookie.
pub async fn post(url: &str, token: &str) -> Response {
    Client::new()
        .post(url)
        .header("cookie", cookie(token))
        .send()
        .await
        .expect("request")
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: Value = r.json().await.expect("problem json");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    v
}
