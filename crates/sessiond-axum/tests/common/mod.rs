//! What both modes' extractor tests share: a small app using the extractors, served on
//! 127.0.0.1:0; a client that keeps the cookie by hand (so a test can replay an old
//! token); and a store whose sessions can be switched off (an outage).

#![allow(dead_code)]

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use sessiond_axum::{Error, MaybeSession, Session, Sessiond};
use sessiond_core::audit::AuditEvent;
use sessiond_core::quota::DataUsage;
use sessiond_core::store::{
    CreateOutcome, DraftMove, Expiry, IdempotencyRecord, Result as StoreResult, SessionFilter,
    SessionStore, Touch,
};
use sessiond_core::{EndReason, Handle, Store, StoreError, Timestamp, TokenHash};
use sessiond_store_memory::MemoryStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The app under test: every extractor and action behind a route.
pub fn app(sessiond: &Sessiond) -> Router {
    Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/renew", post(renew))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route(
            "/data/{key}",
            get(get_data).put(put_data).delete(delete_data),
        )
        .layer(sessiond.layer())
}

fn view(s: &sessiond_axum::SessionInfo) -> Value {
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    };
    json!({
        "handle": s.handle, "principal": s.principal, "user_id": s.user_id, "role": s.role,
        "idle_ms": ms(s.idle_expires_at), "absolute_ms": ms(s.absolute_expires_at),
    })
}

async fn me(s: Session) -> Json<Value> {
    Json(view(&s))
}

async fn maybe(m: MaybeSession) -> Json<Value> {
    Json(json!({
        "handle": m.session().map(|s| s.handle.clone()),
        "why": m.why_none().and_then(|e| e.reason()),
    }))
}

async fn renew(mut s: Session) -> Result<Json<Value>, Error> {
    Ok(Json(view(s.renew().await?)))
}

async fn login(m: MaybeSession, Json(who): Json<Value>) -> Result<Json<Value>, Error> {
    let user = who["user"].as_str().unwrap_or_default();
    let role = who["role"].as_str().unwrap_or("editor");
    let signed = m.sign_in(user, role).await?;
    Ok(Json(view(&signed.info)))
}

async fn logout(s: Session) -> Result<(), Error> {
    s.sign_out().await
}

async fn get_data(s: Session, Path(key): Path<String>) -> Result<Json<Value>, Error> {
    Ok(Json(s.data::<Value>(&key).await?.unwrap_or(Value::Null)))
}

async fn put_data(s: Session, Path(key): Path<String>, Json(v): Json<Value>) -> Result<(), Error> {
    s.set_data(&key, &v).await
}

async fn delete_data(s: Session, Path(key): Path<String>) -> Result<Json<bool>, Error> {
    Ok(Json(s.remove_data(&key).await?))
}

/// Serves `router` on 127.0.0.1:0 (with `ConnectInfo`) until the test ends; its URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    url
}

/// An answer: status, headers and the JSON body (`Null` when empty).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `name=value` a `Set-Cookie` of this answer sets for `name` (`""` when cleared).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or("").to_owned())
    }

    /// A 401 problem with `code` and `reason`.
    pub fn assert_problem(&self, status: u16, code: &str, reason: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.headers["content-type"], "application/problem+json");
        assert_eq!(self.body["code"], code, "{}", self.body);
        if let Some(r) = reason {
            assert_eq!(self.body["reason"], r, "{}", self.body);
        }
    }
}

/// Calls `url` + `path` with the session cookie `cookie` (its name and token) if given.
pub async fn call(
    method: reqwest::Method,
    url: &str,
    path: &str,
    cookie: Option<(&str, &str)>,
    body: Option<Value>,
) -> Answer {
    let mut req = reqwest::Client::new().request(method, format!("{url}{path}"));
    if let Some((name, token)) = cookie {
        req = req.header(COOKIE, format!("{name}={token}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), req.send())
        .await
        .expect("answered in time")
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// The memory store's sessions behind a switch that makes every session call fail as
/// unreachable.
pub struct Flaky {
    pub inner: Arc<MemoryStore>,
    pub down: AtomicBool,
}

impl Flaky {
    pub fn new() -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: Arc::new(MemoryStore::new()),
            down: AtomicBool::new(false),
        })
    }

    /// The whole store: these sessions, the memory store's other capabilities.
    pub fn store(self: &Arc<Self>) -> Arc<dyn Store> {
        Arc::new(self.inner.clone().split().with_sessions(self.clone()))
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }

    /// A session started at `now` (ms) written straight into the store, unknown to any
    /// server's cache (so a lookup of it must reach the store); its token.
    pub async fn stored_session(&self, now: Timestamp) -> String {
        let policy = sessiond_core::policy::Policy::new(15 * 60, 12 * 3600);
        let (s, token) =
            sessiond_core::lifecycle::new_session(now, "editor", &policy, &Default::default());
        self.inner.create_session(&s, None, &[]).await.unwrap();
        token.as_str().to_owned()
    }
}

/// Implements `SessionStore` for `Flaky`: each method checks the switch, then calls the
/// memory store's method of the same name.
macro_rules! switched_sessions {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait::async_trait]
        impl SessionStore for Flaky {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.check()?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

switched_sessions! {
    fn ping(&self) -> StoreResult<()>;
    fn create_session(&self, s: &sessiond_core::Session, idem: Option<&IdempotencyRecord>, audit: &[AuditEvent]) -> StoreResult<CreateOutcome>;
    fn get_session(&self, handle: &Handle) -> StoreResult<Option<sessiond_core::Session>>;
    fn get_session_by_token(&self, hash: &TokenHash) -> StoreResult<Option<sessiond_core::Session>>;
    fn update_session(&self, s: &sessiond_core::Session, expected_token: &TokenHash, audit: &[AuditEvent], draft_move: Option<&DraftMove>) -> StoreResult<bool>;
    fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> StoreResult<bool>;
    fn touch_sessions(&self, touches: &[Touch]) -> StoreResult<()>;
    fn end_session(&self, handle: &Handle, reason: EndReason, now: Timestamp, audit: &[AuditEvent]) -> StoreResult<Option<sessiond_core::Session>>;
    fn expire_session(&self, seen: &Expiry, reason: EndReason, now: Timestamp, audit: &[AuditEvent]) -> StoreResult<Option<sessiond_core::Session>>;
    fn list_sessions(&self, filter: &SessionFilter) -> StoreResult<Vec<sessiond_core::Session>>;
    fn due_sessions(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Handle>>;
    fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> StoreResult<usize>;
    fn count_active_sessions(&self) -> StoreResult<u64>;
    fn pending_draft_moves(&self, limit: usize) -> StoreResult<Vec<DraftMove>>;
    fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> StoreResult<bool>;
    fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> StoreResult<bool>;
    fn purge_claims(&self, now: Timestamp, limit: usize) -> StoreResult<usize>;
    fn get_data(&self, handle: &Handle, key: &str) -> StoreResult<Option<serde_json::Value>>;
    fn put_data(&self, handle: &Handle, key: &str, value: &serde_json::Value) -> StoreResult<bool>;
    fn put_data_if(&self, handle: &Handle, key: &str, expected: Option<&serde_json::Value>, value: &serde_json::Value) -> StoreResult<bool>;
    fn delete_data(&self, handle: &Handle, key: &str) -> StoreResult<bool>;
    fn data_usage(&self, handle: &Handle, key: &str) -> StoreResult<DataUsage>;
}
