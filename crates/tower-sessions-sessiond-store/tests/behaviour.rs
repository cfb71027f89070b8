//! `SessiondStore` behind tower-sessions' `SessionManagerLayer` in an axum app, the
//! behaviour tower-sessions' own store tests check (cookie round trip, `cycle_id`,
//! flush, expiry, concurrent requests, `delete_expired`) plus sessiond's own (deadlines,
//! audit, revocation and sign-out-everywhere through a sessiond server's admin API,
//! outages), each against SQLite in a temp dir, a redis-server and a three-node Redis
//! Cluster the test starts.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use sessiond_core::store::SessionFilter;
use sessiond_core::{EndReason, ManualClock};
use sessiond_testkit::inproc::{base_toml, DataDir, TestServer, ADMIN_KEY};
use sessiond_testkit::redis_guard::{RedisCluster, RedisServer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_core::session::Id;
use tower_sessions_core::ExpiredDeletion;
use tower_sessions_sessiond_store::{Clock, Policies, Policy, SessiondStore, SystemClock};

// ---- the app under test

async fn put(s: Session, Path((k, v)): Path<(String, String)>) -> Result<&'static str, StatusCode> {
    s.insert(&k, v)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok("ok")
}

async fn del(s: Session, Path(k): Path<String>) -> Result<&'static str, StatusCode> {
    s.remove_value(&k)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok("ok")
}

async fn read(s: Session, Path(k): Path<String>) -> Result<String, StatusCode> {
    let v: Option<String> = s
        .get(&k)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(v.unwrap_or_default())
}

async fn cycle(s: Session) -> &'static str {
    s.cycle_id().await.expect("cycle_id");
    "ok"
}

async fn flush(s: Session) -> &'static str {
    s.flush().await.expect("flush");
    "ok"
}

fn app_with(layer: SessionManagerLayer<SessiondStore>) -> Router {
    Router::new()
        .route("/put/{k}/{v}", get(put))
        .route("/del/{k}", get(del))
        .route("/get/{k}", get(read))
        .route("/cycle", get(cycle))
        .route("/flush", get(flush))
        .layer(layer)
}

fn app(store: SessiondStore) -> Router {
    app_with(SessionManagerLayer::new(store).with_secure(false))
}

/// What a response said: status, the session cookie it set (`Some("")`: removed) and
/// the body.
struct Answer {
    status: StatusCode,
    cookie: Option<String>,
    body: String,
}

async fn call(app: &Router, path: &str, id: Option<&str>) -> Answer {
    let mut req = Request::get(path);
    if let Some(id) = id {
        req = req.header(header::COOKIE, format!("id={id}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("id="))
        .map(|c| {
            if c.contains("Max-Age=0") {
                String::new()
            } else {
                c.split(';').next().unwrap_or_default().to_owned()
            }
        });
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    Answer {
        status,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A request that must set a new session cookie; its id.
async fn new_session(app: &Router, k: &str, v: &str) -> String {
    let a = call(app, &format!("/put/{k}/{v}"), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let id = a.cookie.expect("a new session sets its cookie");
    assert!(!id.is_empty());
    id
}

async fn value(app: &Router, id: &str, k: &str) -> String {
    let a = call(app, &format!("/get/{k}"), Some(id)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

fn id_of(s: &str) -> Id {
    s.parse().expect("a tower-sessions id")
}

// ---- backends

/// One backend: how to open a `SessiondStore` on it (again, for a second "process")
/// and the TOML `store` of a sessiond server sharing it.
enum Backend {
    Sqlite(DataDir),
    Redis(RedisServer),
    Cluster(RedisCluster),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(DataDir::new())
    }
    fn redis() -> Backend {
        Backend::Redis(RedisServer::start())
    }
    fn cluster() -> Backend {
        Backend::Cluster(RedisCluster::start(3))
    }
    fn redis_url(&self) -> Option<String> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Redis(r) => Some(r.url()),
            Backend::Cluster(c) => Some(c.url()),
        }
    }
    async fn open(&self) -> SessiondStore {
        match self {
            // `<dir>/data` is where a TestServer in the same DataDir keeps its SQLite.
            Backend::Sqlite(dir) => SessiondStore::sqlite(dir.path().join("data"))
                .await
                .expect("open sqlite"),
            _ => SessiondStore::redis(&self.redis_url().unwrap())
                .await
                .expect("connect redis"),
        }
    }
    async fn server(&self) -> TestServer {
        match self {
            Backend::Sqlite(dir) => TestServer::start_in(&base_toml("sqlite"), dir).await,
            // A Redis store makes the server a cluster node, which needs a shared secret.
            _ => {
                let toml = format!(
                    "{}server_secret = \"tower-store-test-secret-0123456789ab\"\n",
                    base_toml(&self.redis_url().unwrap())
                );
                TestServer::start(&toml).await
            }
        }
    }
}

fn short_policies(idle_s: u64, absolute_s: u64) -> Policies {
    let mut p = Policy::new(idle_s, absolute_s);
    p.warn_before = Duration::ZERO;
    let mut roles = BTreeMap::new();
    roles.insert("short".to_owned(), p);
    Policies {
        roles,
        default_role: "short".into(),
    }
}

macro_rules! on_both {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::sqlite()).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::redis()).await
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::cluster()).await
                }
            )*
        }
    };
}

on_both!(
    cookie_round_trip_stores_only_the_hash,
    cycle_id_moves_the_data_to_a_new_session,
    flush_ends_the_session_and_removes_the_cookie,
    idle_and_absolute_deadlines_end_the_record,
    the_earlier_tower_sessions_expiry_wins,
    concurrent_requests_lose_no_key,
    delete_expired_ends_due_sessions_then_purges_them,
    admin_revoke_and_sign_out_everywhere_end_tower_sessions,
    a_second_process_sees_the_same_sessions,
);

// ---- the behaviours

async fn cookie_round_trip_stores_only_the_hash(b: Backend) {
    let store = b.open().await;
    let app = app(store.clone());
    let id = new_session(&app, "color", "blue").await;
    let a = call(&app, "/get/color", Some(&id)).await;
    assert_eq!(a.body, "blue");
    assert_eq!(
        a.cookie, None,
        "a read-only request leaves the cookie alone"
    );

    let s = store
        .sessiond_session(&id_of(&id))
        .await
        .unwrap()
        .expect("a sessiond session");
    assert!(s.is_active());
    assert_eq!(s.role, "editor");
    let listed = store
        .store()
        .list_sessions(&SessionFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let dump = format!("{listed:?}");
    assert!(listed.iter().any(|x| x.handle == s.handle));
    assert!(!dump.contains(&id), "the id is never stored in clear");

    // A cookie the store never issued is a fresh, empty session.
    let forged = Id::default().to_string();
    let a = call(&app, "/get/color", Some(&forged)).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, ""));
    assert!(store
        .sessiond_session(&id_of(&forged))
        .await
        .unwrap()
        .is_none());

    let events = store
        .store()
        .query_audit(&sessiond_core::audit::AuditFilter {
            handle: Some(s.handle.to_string()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == sessiond_core::audit::AuditKind::Created),
        "{events:?}"
    );
}

async fn cycle_id_moves_the_data_to_a_new_session(b: Backend) {
    let store = b.open().await;
    let app = app(store.clone());
    let old = new_session(&app, "cart", "3").await;
    let a = call(&app, "/cycle", Some(&old)).await;
    assert_eq!(a.status, StatusCode::OK);
    let new = a.cookie.expect("cycle_id sets a new cookie");
    assert!(!new.is_empty() && new != old);
    assert_eq!(value(&app, &new, "cart").await, "3");
    assert_eq!(value(&app, &old, "cart").await, "", "the old id is dead");
    let before = store.sessiond_session(&id_of(&old)).await.unwrap().unwrap();
    assert_eq!(before.end_reason, Some(EndReason::SignedOut));
    let after = store.sessiond_session(&id_of(&new)).await.unwrap().unwrap();
    assert!(after.is_active());
    assert_ne!(after.handle, before.handle);
}

async fn flush_ends_the_session_and_removes_the_cookie(b: Backend) {
    let store = b.open().await;
    let app = app(store.clone());
    let id = new_session(&app, "k", "v").await;
    let a = call(&app, "/flush", Some(&id)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.cookie.as_deref(), Some(""), "the cookie is removed");
    assert_eq!(value(&app, &id, "k").await, "");
    let s = store.sessiond_session(&id_of(&id)).await.unwrap().unwrap();
    assert_eq!(s.end_reason, Some(EndReason::SignedOut));
    assert_eq!(
        store
            .store()
            .get_data(&s.handle, "tower_sessions.record")
            .await
            .unwrap(),
        None,
        "the data goes with it"
    );
}

async fn idle_and_absolute_deadlines_end_the_record(b: Backend) {
    let clock = ManualClock::new(SystemClock.now());
    let store = b
        .open()
        .await
        .with_policies(short_policies(10, 30))
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let app = app(store.clone());

    // Activity keeps it alive past the idle timeout...
    let id = new_session(&app, "k", "v").await;
    for _ in 0..2 {
        clock.advance_ms(6_000);
        assert_eq!(value(&app, &id, "k").await, "v");
    }
    // ...idleness ends it.
    clock.advance_ms(11_000);
    assert_eq!(value(&app, &id, "k").await, "");
    let s = store.sessiond_session(&id_of(&id)).await.unwrap().unwrap();
    assert_eq!(s.end_reason, Some(EndReason::IdleTimeout));

    // The absolute deadline ends even a busy one.
    let id = new_session(&app, "k", "v").await;
    let mut alive = 0;
    for _ in 0..5 {
        clock.advance_ms(7_000);
        if value(&app, &id, "k").await == "v" {
            alive += 1;
        }
    }
    assert_eq!(alive, 4, "alive at 7..28 s, gone at 35 s");
    let s = store.sessiond_session(&id_of(&id)).await.unwrap().unwrap();
    assert_eq!(s.end_reason, Some(EndReason::AbsoluteTimeout));
}

async fn the_earlier_tower_sessions_expiry_wins(b: Backend) {
    let clock = ManualClock::new(SystemClock.now());
    let store = b
        .open()
        .await
        .with_policies(short_policies(60, 600))
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let app = app_with(
        SessionManagerLayer::new(store.clone())
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::seconds(5))),
    );
    let id = new_session(&app, "k", "v").await;
    let s = store.sessiond_session(&id_of(&id)).await.unwrap().unwrap();
    assert!(
        s.idle_expires_at <= clock.now() + 6_000,
        "the stored idle deadline is the earlier tower-sessions expiry"
    );
    clock.advance_ms(6_000);
    assert_eq!(value(&app, &id, "k").await, "");
    let s = store.sessiond_session(&id_of(&id)).await.unwrap().unwrap();
    assert_eq!(s.end_reason, Some(EndReason::IdleTimeout));
}

async fn concurrent_requests_lose_no_key(b: Backend) {
    let store = b.open().await;
    let app = app(store.clone());
    let id = new_session(&app, "gone", "x").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (app, id) = (app.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            call(&app, &format!("/put/k{i}/v{i}"), Some(&id))
                .await
                .status
        }));
    }
    // One more removes a key at the same time.
    let (app2, id2) = (app.clone(), id.clone());
    tasks.push(tokio::spawn(async move {
        call(&app2, "/del/gone", Some(&id2)).await.status
    }));
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    for i in 0..16 {
        assert_eq!(value(&app, &id, &format!("k{i}")).await, format!("v{i}"));
    }
    assert_eq!(value(&app, &id, "gone").await, "", "the removal stands too");
}

async fn delete_expired_ends_due_sessions_then_purges_them(b: Backend) {
    let clock = ManualClock::new(SystemClock.now());
    let store = b
        .open()
        .await
        .with_policies(short_policies(10, 60))
        .unwrap()
        .with_clock(Arc::new(clock.clone()))
        .with_ended_retention(Duration::from_secs(5));
    let app = app(store.clone());
    let ids = [
        new_session(&app, "a", "1").await,
        new_session(&app, "b", "2").await,
    ];
    let live = new_session(&app, "c", "3").await;
    clock.advance_ms(8_000);
    assert_eq!(value(&app, &live, "c").await, "3", "activity on one");
    clock.advance_ms(3_000);
    store.delete_expired().await.unwrap();
    for id in &ids {
        let s = store.sessiond_session(&id_of(id)).await.unwrap().unwrap();
        assert_eq!(s.end_reason, Some(EndReason::IdleTimeout), "ended, kept");
    }
    let l = store
        .sessiond_session(&id_of(&live))
        .await
        .unwrap()
        .unwrap();
    assert!(l.is_active(), "a session with activity stays");
    clock.advance_ms(6_000);
    store.delete_expired().await.unwrap();
    for id in &ids {
        assert!(
            store.sessiond_session(&id_of(id)).await.unwrap().is_none(),
            "purged after the retention"
        );
    }
}

async fn admin_revoke_and_sign_out_everywhere_end_tower_sessions(b: Backend) {
    let server = b.server().await;
    let store = b.open().await.with_user_id_key("user_id");
    let app = app(store.clone());

    // A sessiond server on the same store lists the session and revokes it.
    let id = new_session(&app, "k", "v").await;
    let handle = store
        .sessiond_session(&id_of(&id))
        .await
        .unwrap()
        .unwrap()
        .handle
        .to_string();
    let listed = server.admin_get("/v1/admin/sessions?limit=500").await;
    assert!(
        listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["handle"] == handle.as_str()),
        "{listed}"
    );
    assert_eq!(server.revoke(&handle).await, 204);
    assert_eq!(value(&app, &id, "k").await, "", "a revoked session is gone");
    let ended = server.audit_ended(&handle).await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "revoked");

    // Sign out everywhere: both of alice's sessions end, bob's stays.
    let alice1 = new_session(&app, "user_id", "alice").await;
    let alice2 = new_session(&app, "user_id", "alice").await;
    let bob = new_session(&app, "user_id", "bob").await;
    let r = reqwest::Client::new()
        .delete(server.u("/v1/admin/principals/user:alice/sessions"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ended"], 2, "{body}");
    assert_eq!(value(&app, &alice1, "user_id").await, "");
    assert_eq!(value(&app, &alice2, "user_id").await, "");
    assert_eq!(value(&app, &bob, "user_id").await, "bob");
}

async fn a_second_process_sees_the_same_sessions(b: Backend) {
    // Two stores on one backend stand for two app processes (or nodes).
    let one = app(b.open().await);
    let two = app(b.open().await);
    let id = new_session(&one, "k", "1").await;
    assert_eq!(value(&two, &id, "k").await, "1");
    assert_eq!(
        call(&two, "/put/j/2", Some(&id)).await.status,
        StatusCode::OK
    );
    assert_eq!(value(&one, &id, "j").await, "2");
    assert_eq!(value(&one, &id, "k").await, "1");
}

/// A Redis outage is an error the handler maps (here 503) within the command timeout,
/// never a panic or a hang; service resumes when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_an_error_not_a_hang() {
    let mut redis = RedisServer::start();
    let store = SessiondStore::redis(&redis.url()).await.unwrap();
    let app = app(store);
    let id = new_session(&app, "k", "v").await;
    redis.kill();
    let a = tokio::time::timeout(Duration::from_secs(10), call(&app, "/get/k", Some(&id)))
        .await
        .expect("answers while Redis is down");
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let a = tokio::time::timeout(Duration::from_secs(10), call(&app, "/put/x/y", Some(&id)))
        .await
        .expect("answers while Redis is down");
    assert!(a.status.is_server_error(), "{}", a.status);
}
