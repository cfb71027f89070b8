//! The extractors in remote mode: a real sessiond server started by the testkit (on a
//! manual clock), and the app, served on its own port, asking it over HTTP.

mod common;

use common::{app, call, serve, Flaky};
use reqwest::Method;
use serde_json::json;
use sessiond_axum::{Mode, RemoteConfig, Sessiond};
use sessiond_core::ManualClock;
use sessiond_server::config::Config;
use sessiond_server::ServerBuilder;
use sessiond_testkit::inproc::{base_toml, DataDir, TestServer, ADMIN_KEY};
use sessiond_testkit::wait;
use std::sync::Arc;
use std::time::{Duration, Instant};

const COOKIE: &str = "sessiond";
const START_MS: i64 = 1_800_000_000_000;

struct Setup {
    server: TestServer,
    /// The app's URL.
    url: String,
    sessiond: Sessiond,
    clock: Arc<ManualClock>,
}

/// A sessiond server (on `store` when given) and the app in remote mode against it,
/// caching lookups for `ttl`.
async fn start(store: Option<Arc<dyn sessiond_core::Store>>, ttl: Duration) -> Setup {
    let clock = Arc::new(ManualClock::new(START_MS));
    let config = Config::from_toml(&base_toml("memory")).unwrap();
    let c = clock.clone();
    let server = TestServer::spawn(&DataDir::new(), move |listener, shutdown| async move {
        let mut b = ServerBuilder::new(config).clock(c);
        if let Some(s) = store {
            b = b.store(s);
        }
        b.build().await?.serve(listener, shutdown).await
    })
    .await;
    let sessiond = Sessiond::remote(
        RemoteConfig::new(server.url.clone(), ADMIN_KEY)
            .cookie_secure(false)
            .cache_ttl(ttl),
    )
    .unwrap();
    assert_eq!(sessiond.mode(), Mode::Remote);
    Setup {
        url: serve(app(&sessiond)).await,
        server,
        sessiond,
        clock,
    }
}

impl Setup {
    /// A new anonymous session made on the sessiond server (as the browser SDK does):
    /// its token and handle.
    async fn new_session(&self) -> (String, String) {
        let a = call(Method::POST, &self.server.url, "/v1/session", None, None).await;
        assert_eq!(a.status, 201, "{}", a.body);
        let token = a.cookie(COOKIE).expect("cookie set");
        (token, a.body["handle"].as_str().unwrap().to_owned())
    }

    async fn me(&self, token: &str) -> common::Answer {
        call(Method::GET, &self.url, "/me", Some((COOKIE, token)), None).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_unknown_and_live_sessions() {
    let s = start(None, Duration::ZERO).await;
    let a = call(Method::GET, &s.url, "/me", None, None).await;
    a.assert_problem(401, "unauthenticated", Some("absent"));
    s.me(&"A".repeat(43))
        .await
        .assert_problem(401, "unauthenticated", Some("unknown"));
    let (token, handle) = s.new_session().await;
    let a = s.me(&token).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["handle"], handle.as_str());
    assert!(a.body["principal"].as_str().unwrap().starts_with("anon:"));
    assert_eq!(a.body["role"], "editor");
    assert_eq!(a.body["idle_ms"], START_MS + 15 * 60_000);
    assert_eq!(a.body["absolute_ms"], START_MS + 12 * 3_600_000);
    // A bearer token works the same.
    let r = reqwest::Client::new()
        .get(format!("{}/me", s.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_are_401_with_their_reason() {
    let s = start(None, Duration::ZERO).await;
    let (token, handle) = s.new_session().await;
    s.sessiond.revoke(&handle).await.unwrap();
    s.me(&token)
        .await
        .assert_problem(401, "session_expired", Some("revoked"));
    let a = call(Method::GET, &s.url, "/maybe", Some((COOKIE, &token)), None).await;
    assert_eq!(a.body, json!({"handle": null, "why": "revoked"}));

    let (token, _) = s.new_session().await;
    s.clock.advance_ms(15 * 60_000 + 1);
    s.me(&token)
        .await
        .assert_problem(401, "session_expired", Some("idle_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_sign_in_and_sign_out_go_through_the_server() {
    let s = start(None, Duration::from_secs(60)).await;
    let (old, handle) = s.new_session().await;
    assert_eq!(s.me(&old).await.status, 200);

    s.clock.advance_ms(10 * 60_000);
    let a = call(Method::POST, &s.url, "/renew", Some((COOKIE, &old)), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["idle_ms"], START_MS + 25 * 60_000);

    let login = json!({"user": "alice", "role": "viewer"});
    let a = call(
        Method::POST,
        &s.url,
        "/login",
        Some((COOKIE, &old)),
        Some(login),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let new = a.cookie(COOKIE).expect("new cookie");
    assert_ne!(new, old);
    assert_eq!(a.body["handle"], handle.as_str(), "same session");
    assert_eq!(a.body["principal"], "user:alice");
    assert_eq!(a.body["role"], "viewer");
    // The old token's cached lookup was dropped with the rotation (the TTL is long).
    s.me(&old)
        .await
        .assert_problem(401, "unauthenticated", Some("unknown"));
    assert_eq!(s.me(&new).await.body["user_id"], "alice");

    let t = Some((COOKIE, new.as_str()));
    let a = call(Method::PUT, &s.url, "/data/theme", t, Some(json!("dark"))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        call(Method::GET, &s.url, "/data/theme", t, None).await.body,
        json!("dark")
    );
    assert_eq!(
        call(Method::DELETE, &s.url, "/data/theme", t, None)
            .await
            .body,
        json!(true)
    );
    assert_eq!(
        call(Method::GET, &s.url, "/data/theme", t, None).await.body,
        json!(null)
    );

    let a = call(Method::POST, &s.url, "/logout", t, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.cookie(COOKIE).as_deref(), Some(""), "cleared");
    s.me(&new)
        .await
        .assert_problem(401, "session_expired", Some("signed_out"));
    // The server agrees.
    let (status, v) = s
        .server
        .admin_status(&format!("/v1/admin/sessions/{handle}"))
        .await;
    assert_eq!((status, v["reason"].as_str()), (200, Some("signed_out")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_short_and_bounded_in_age() {
    let s = start(None, Duration::from_millis(500)).await;
    let (token, handle) = s.new_session().await;
    assert_eq!(s.me(&token).await.status, 200);
    // Revoked on the server behind the app's back: served from the cache for at most
    // the TTL, then seen.
    assert_eq!(s.server.revoke(&handle).await, 204);
    let revoked_at = Instant::now();
    wait::until(
        Duration::from_secs(5),
        "the revocation to be seen",
        || async { s.me(&token).await.status == 401 },
    )
    .await;
    assert!(
        revoked_at.elapsed() < Duration::from_secs(2),
        "{:?}",
        revoked_at.elapsed()
    );
    s.me(&token)
        .await
        .assert_problem(401, "session_expired", Some("revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_on_the_server_is_a_503() {
    let flaky = Flaky::new();
    let s = start(Some(flaky.store()), Duration::ZERO).await;
    let token = flaky.stored_session(START_MS).await;
    flaky.set_down(true);
    let started = Instant::now();
    let a = s.me(&token).await;
    a.assert_problem(503, "store_unavailable", None);
    let a = call(
        Method::POST,
        &s.url,
        "/login",
        None,
        Some(json!({"user": "alice"})),
    )
    .await;
    a.assert_problem(503, "store_unavailable", None);
    assert!(started.elapsed() < Duration::from_secs(2), "at once");
    flaky.set_down(false);
    assert_eq!(s.me(&token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_503_not_a_hang() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sessiond = Sessiond::remote(
        RemoteConfig::new(url, ADMIN_KEY)
            .cookie_secure(false)
            .timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let app_url = serve(app(&sessiond)).await;
    let started = Instant::now();
    let a = call(
        Method::GET,
        &app_url,
        "/me",
        Some((COOKIE, &"A".repeat(43))),
        None,
    )
    .await;
    a.assert_problem(503, "store_unavailable", None);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(Sessiond::remote(RemoteConfig::new("127.0.0.1:7400", ADMIN_KEY)).is_err());
}
