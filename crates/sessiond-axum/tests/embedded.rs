//! The extractors in embedded mode: an axum app running sessiond in-process (its API
//! nested under `/sessiond`), served on 127.0.0.1:0 and driven over HTTP.

mod common;

use common::{app, call, serve, Flaky};
use reqwest::Method;
use serde_json::json;
use sessiond_axum::{Mode, Sessiond};
use sessiond_core::ManualClock;
use sessiond_server::config::Config;
use sessiond_server::{ServerBuilder, ServerGuard};
use sessiond_testkit::inproc::base_toml;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Dev mode names the cookie `sessiond`.
const COOKIE: &str = "sessiond";
const START_MS: i64 = 1_800_000_000_000;

struct App {
    url: String,
    sessiond: Sessiond,
    clock: Arc<ManualClock>,
    _guard: ServerGuard,
}

/// The test app with sessiond embedded (on `store` when given, else memory).
async fn start(store: Option<Arc<dyn sessiond_core::Store>>) -> App {
    let config = Config::from_toml(&base_toml("memory")).unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut builder = ServerBuilder::new(config).clock(clock.clone());
    if let Some(s) = store {
        builder = builder.store(s);
    }
    let server = builder.build().await.unwrap();
    let sessiond = Sessiond::embedded(&server);
    assert_eq!(sessiond.mode(), Mode::Embedded);
    let (api, guard) = server.into_parts();
    let router = app(&sessiond).nest_service("/sessiond", api);
    App {
        url: serve(router).await,
        sessiond,
        clock,
        _guard: guard,
    }
}

impl App {
    /// A new anonymous session from the nested sessiond API, as the browser SDK makes
    /// it: its token and handle.
    async fn new_session(&self) -> (String, String) {
        let a = call(Method::POST, &self.url, "/sessiond/v1/session", None, None).await;
        assert_eq!(a.status, 201, "{}", a.body);
        let token = a.cookie(COOKIE).expect("cookie set");
        (token, a.body["handle"].as_str().unwrap().to_owned())
    }

    async fn me(&self, token: &str) -> common::Answer {
        call(Method::GET, &self.url, "/me", Some((COOKIE, token)), None).await
    }
}

#[tokio::test]
async fn absent_and_unknown_sessions_are_401_with_the_reason() {
    let app = start(None).await;
    let a = call(Method::GET, &app.url, "/me", None, None).await;
    a.assert_problem(401, "unauthenticated", Some("absent"));
    let a = app.me("not-a-token").await;
    a.assert_problem(401, "unauthenticated", Some("unknown"));
    let a = app.me(&"A".repeat(43)).await;
    a.assert_problem(401, "unauthenticated", Some("unknown"));
    let a = call(Method::GET, &app.url, "/maybe", None, None).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, json!({"handle": null, "why": "absent"}));
}

#[tokio::test]
async fn a_live_session_gives_its_identity_and_deadlines() {
    let app = start(None).await;
    let (token, handle) = app.new_session().await;
    let a = app.me(&token).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["handle"], handle.as_str());
    assert!(a.body["principal"].as_str().unwrap().starts_with("anon:"));
    assert_eq!(a.body["user_id"], json!(null));
    assert_eq!(a.body["role"], "editor");
    // The editor role's defaults: 15 min idle, 12 h absolute.
    assert_eq!(a.body["idle_ms"], START_MS + 15 * 60_000);
    assert_eq!(a.body["absolute_ms"], START_MS + 12 * 3_600_000);
    let a = call(
        Method::GET,
        &app.url,
        "/maybe",
        Some((COOKIE, &token)),
        None,
    )
    .await;
    assert_eq!(a.body, json!({"handle": handle, "why": null}));
    // The nested API sees the same session, and serves the browser SDK.
    let a = call(
        Method::GET,
        &app.url,
        "/sessiond/v1/session",
        Some((COOKIE, &token)),
        None,
    )
    .await;
    assert_eq!(a.body["handle"], handle.as_str());
    let r = reqwest::get(format!("{}/sessiond/sdk/sessiond.js", app.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_ended_session_is_401_with_its_reason() {
    let app = start(None).await;
    let (token, handle) = app.new_session().await;
    app.sessiond.revoke(&handle).await.unwrap();
    app.me(&token)
        .await
        .assert_problem(401, "session_expired", Some("revoked"));
    let a = call(
        Method::GET,
        &app.url,
        "/maybe",
        Some((COOKIE, &token)),
        None,
    )
    .await;
    assert_eq!(a.body, json!({"handle": null, "why": "revoked"}));
    assert_eq!(
        app.sessiond
            .revoke("s_AAAAAAAAAAAAAAAA")
            .await
            .unwrap_err()
            .to_string(),
        "not found"
    );

    // Idle: 15 minutes without activity.
    let (token, _) = app.new_session().await;
    app.clock.advance_ms(15 * 60_000 + 1);
    app.me(&token)
        .await
        .assert_problem(401, "session_expired", Some("idle_timeout"));
}

#[tokio::test]
async fn renew_moves_the_idle_deadline() {
    let app = start(None).await;
    let (token, _) = app.new_session().await;
    app.clock.advance_ms(10 * 60_000);
    let a = call(
        Method::POST,
        &app.url,
        "/renew",
        Some((COOKIE, &token)),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["idle_ms"], START_MS + 25 * 60_000);
    // Past the first deadline, the session lives on.
    app.clock.advance_ms(10 * 60_000);
    assert_eq!(app.me(&token).await.status, 200);
}

#[tokio::test]
async fn sign_in_rotates_the_token_and_keeps_the_session() {
    let app = start(None).await;
    let (old, handle) = app.new_session().await;
    let login = json!({"user": "alice", "role": "viewer"});
    let a = call(
        Method::POST,
        &app.url,
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
    // The viewer role's idle timeout (60 min), restarted at sign-in.
    assert_eq!(a.body["idle_ms"], START_MS + 60 * 60_000);
    app.me(&old)
        .await
        .assert_problem(401, "unauthenticated", Some("unknown"));
    let a = app.me(&new).await;
    assert_eq!(a.body["user_id"], "alice");

    // Without a session: a new signed-in one.
    let a = call(
        Method::POST,
        &app.url,
        "/login",
        None,
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(a.body["handle"], handle.as_str());
    let bob = a.cookie(COOKIE).unwrap();
    assert_eq!(app.me(&bob).await.body["principal"], "user:bob");

    // Bad input is a 400 and signs nobody in.
    let bad = json!({"user": "carol", "role": "emperor"});
    let a = call(Method::POST, &app.url, "/login", None, Some(bad)).await;
    a.assert_problem(400, "invalid_request", None);
    assert!(a.cookie(COOKIE).is_none());
}

#[tokio::test]
async fn sign_out_ends_the_session_and_clears_the_cookie() {
    let app = start(None).await;
    let (token, _) = app.new_session().await;
    let a = call(
        Method::POST,
        &app.url,
        "/logout",
        Some((COOKIE, &token)),
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.cookie(COOKIE).as_deref(), Some(""), "cleared");
    assert!(a.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    app.me(&token)
        .await
        .assert_problem(401, "session_expired", Some("signed_out"));
}

#[tokio::test]
async fn session_data_round_trips() {
    let app = start(None).await;
    let (token, _) = app.new_session().await;
    let t = Some((COOKIE, token.as_str()));
    let a = call(
        Method::PUT,
        &app.url,
        "/data/theme",
        t,
        Some(json!({"dark": true})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(Method::GET, &app.url, "/data/theme", t, None).await;
    assert_eq!(a.body, json!({"dark": true}));
    let a = call(Method::DELETE, &app.url, "/data/theme", t, None).await;
    assert_eq!(a.body, json!(true));
    let a = call(Method::DELETE, &app.url, "/data/theme", t, None).await;
    assert_eq!(a.body, json!(false));
    let a = call(Method::GET, &app.url, "/data/sessiond:room:x", t, None).await;
    a.assert_problem(400, "invalid_request", None);
}

#[tokio::test]
async fn a_cookie_write_from_another_origin_is_refused() {
    let app = start(None).await;
    let (token, _) = app.new_session().await;
    let r = reqwest::Client::new()
        .post(format!("{}/renew", app.url))
        .header("cookie", format!("{COOKIE}={token}"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "forbidden_origin");
}

#[tokio::test]
async fn a_store_outage_is_a_503_at_once_and_passes() {
    let flaky = Flaky::new();
    let app = start(Some(flaky.store())).await;
    // Written behind the service's back: a lookup of it must reach the store.
    let token = flaky.stored_session(START_MS).await;
    flaky.set_down(true);
    let started = Instant::now();
    let a = app.me(&token).await;
    a.assert_problem(503, "store_unavailable", None);
    assert_eq!(a.headers["retry-after"], "1");
    assert!(!a.body["detail"].as_str().unwrap().contains("switched off"));
    let a = call(
        Method::GET,
        &app.url,
        "/maybe",
        Some((COOKIE, &token)),
        None,
    )
    .await;
    a.assert_problem(503, "store_unavailable", None);
    let a = call(
        Method::POST,
        &app.url,
        "/login",
        None,
        Some(json!({"user": "alice"})),
    )
    .await;
    a.assert_problem(503, "store_unavailable", None);
    assert!(started.elapsed() < Duration::from_secs(2), "at once");
    flaky.set_down(false);
    assert_eq!(app.me(&token).await.status, 200);
}
