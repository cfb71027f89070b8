//! Storage quotas over the real HTTP (and WebSocket) API: every limit refuses with 413
//! `quota_exceeded` naming it, writes nothing, and anonymous sessions get the smaller
//! limits; a role's override applies to its signed-in sessions.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sessiond_server::config::{Config, QuotaOverrides};
use sessiond_testkit::http::{hs256_ticket, Browser, Resp};
use sessiond_testkit::inproc::{base_toml, TestServer, TICKET_SECRET};

/// Small limits for anonymous sessions, larger ones once signed in.
fn config(store: &str) -> Config {
    let mut c = Config::from_toml(&base_toml(store)).expect("test config");
    let q = &mut c.quotas;
    q.data_keys_per_session = 5;
    q.data_bytes_per_session = 4_000;
    q.drafts_per_principal = 4;
    q.draft_text_bytes_per_principal = 200;
    q.attachments_per_draft = 3;
    q.snapshot_bytes_per_principal = 3_000;
    q.anonymous = QuotaOverrides {
        data_keys_per_session: Some(3),
        data_bytes_per_session: Some(2_000),
        drafts_per_principal: Some(2),
        draft_text_bytes_per_principal: Some(100),
        attachments_per_draft: Some(2),
        snapshot_bytes_per_principal: Some(1_000),
    };
    c
}

async fn start(store: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = config(store);
    tweak(&mut c);
    TestServer::start_config(c).await
}

async fn sign_in(b: &Browser, user: &str, role: &str) {
    b.sign_in_with(&hs256_ticket(TICKET_SECRET, user, role, None), user)
        .await;
}

async fn put_data(b: &Browser, key: &str, v: Value) -> Resp {
    b.json_req(Method::PUT, &format!("/v1/session/data/{key}"), v)
        .await
}

async fn get_data(b: &Browser, key: &str) -> Resp {
    b.send(Method::GET, &format!("/v1/session/data/{key}"), None, None)
        .await
}

async fn put_text(b: &Browser, conv: &str, text: &str, seq: u64) -> Resp {
    b.json_req(
        Method::PUT,
        &format!("/v1/drafts/{conv}"),
        json!({"text": text, "seq": seq}),
    )
    .await
}

async fn get_draft(b: &Browser, conv: &str) -> Resp {
    b.send(Method::GET, &format!("/v1/drafts/{conv}"), None, None)
        .await
}

async fn put_att(b: &Browser, conv: &str, name: &str, bytes: Vec<u8>, seq: u64) -> Resp {
    b.send(
        Method::PUT,
        &format!("/v1/drafts/{conv}/attachments/{name}?seq={seq}"),
        Some(("audio/webm", bytes)),
        None,
    )
    .await
}

async fn put_snapshot(b: &Browser, room: &str, len: usize, version: u64) -> Resp {
    b.send(
        Method::PUT,
        &format!("/v1/rooms/{room}/snapshot?version={version}"),
        Some(("application/octet-stream", vec![7u8; len])),
        None,
    )
    .await
}

/// The answer is 413 `quota_exceeded` naming `limit` with its value.
#[track_caller]
fn refused(r: &Resp, limit: &str, max: u64) {
    let body = r.json();
    assert_eq!(
        (r.status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("quota_exceeded")),
        "{body}"
    );
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(
        (body["limit"].as_str(), body["max"].as_u64()),
        (Some(limit), Some(max)),
        "{body}"
    );
}

#[track_caller]
fn ok(r: &Resp) {
    assert!(r.status.is_success(), "{} {}", r.status, r.json());
}

async fn data_keys_and_bytes(store: &str) {
    let srv = start(store, |c| {
        c.roles
            .get_mut("viewer")
            .unwrap()
            .quotas
            .data_keys_per_session = Some(4);
    })
    .await;
    let anon = srv.browser().await;
    for k in ["k0", "k1", "k2"] {
        ok(&put_data(&anon, k, json!({"v": k})).await);
    }
    let r = put_data(&anon, "k3", json!(1)).await;
    refused(&r, "data_keys_per_session", 3);
    assert_eq!(get_data(&anon, "k3").await.status, StatusCode::NOT_FOUND);
    // Overwriting a key adds none.
    ok(&put_data(&anon, "k0", json!("again")).await);

    // Bytes: 2 000 for the session; k0..k2 hold about 40.
    let big = json!("x".repeat(1_990));
    let r = put_data(&anon, "k1", big.clone()).await;
    refused(&r, "data_bytes_per_session", 2_000);
    assert_eq!(get_data(&anon, "k1").await.json(), json!({"v": "k1"}));
    ok(&put_data(&anon, "k1", json!("x".repeat(1_900))).await);

    // Signed in (the same session, rotated): the larger limits.
    sign_in(&anon, "ann", "editor").await;
    ok(&put_data(&anon, "k3", json!(3)).await);
    ok(&put_data(&anon, "k4", json!(4)).await);
    refused(
        &put_data(&anon, "k5", json!(5)).await,
        "data_keys_per_session",
        5,
    );
    ok(&put_data(&anon, "k2", big).await);
    let r = put_data(&anon, "k0", json!("y".repeat(1_000))).await;
    refused(&r, "data_bytes_per_session", 4_000);
    assert_eq!(get_data(&anon, "k0").await.json(), json!("again"));
    // Deletes are never refused.
    assert_eq!(
        anon.send(Method::DELETE, "/v1/session/data/k2", None, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    // A role's override: viewers (signed in) may keep 4 keys.
    let viewer = srv.browser().await;
    sign_in(&viewer, "vic", "viewer").await;
    for k in ["a", "b", "c", "d"] {
        ok(&put_data(&viewer, k, json!(1)).await);
    }
    refused(
        &put_data(&viewer, "e", json!(1)).await,
        "data_keys_per_session",
        4,
    );
}

#[tokio::test]
async fn session_data_keys_and_bytes_are_limited_sqlite() {
    data_keys_and_bytes("sqlite").await;
}

#[tokio::test]
async fn session_data_keys_and_bytes_are_limited_memory() {
    data_keys_and_bytes("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_data_writes_cannot_overshoot_the_key_quota() {
    let srv = start("sqlite", |_| {}).await;
    let anon = srv.browser().await;
    let writes = (0..16).map(|i| {
        let tab = anon.tab();
        async move { put_data(&tab, &format!("key{i}"), json!(i)).await.status }
    });
    let answers = futures::future::join_all(writes).await;
    let stored = answers
        .iter()
        .filter(|s| **s == StatusCode::NO_CONTENT)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::PAYLOAD_TOO_LARGE)
        .count();
    assert_eq!((stored, refused), (3, 13), "{answers:?}");
    let mut found = 0;
    for i in 0..16 {
        if get_data(&anon, &format!("key{i}")).await.status == StatusCode::OK {
            found += 1;
        }
    }
    assert_eq!(found, 3);
}

#[tokio::test]
async fn drafts_text_and_attachments_are_limited_per_principal() {
    let srv = start("sqlite", |_| {}).await;
    let anon = srv.browser().await;
    ok(&put_text(&anon, "c1", &"a".repeat(60), 0).await);
    ok(&put_text(&anon, "c2", "b", 0).await);
    // A third draft, by text or by attachment: refused, nothing written.
    refused(
        &put_text(&anon, "c3", "c", 0).await,
        "drafts_per_principal",
        2,
    );
    refused(
        &put_att(&anon, "c3", "a.webm", vec![1; 10], 0).await,
        "drafts_per_principal",
        2,
    );
    assert_eq!(get_draft(&anon, "c3").await.status, StatusCode::NOT_FOUND);
    // Text bytes across the principal's drafts: 60 + 41 > 100.
    let r = put_text(&anon, "c2", &"b".repeat(41), 1).await;
    refused(&r, "draft_text_bytes_per_principal", 100);
    let d = get_draft(&anon, "c2").await.json();
    assert_eq!(
        (d["text"].as_str(), d["seq"].as_u64()),
        (Some("b"), Some(1))
    );
    ok(&put_text(&anon, "c2", &"b".repeat(40), 1).await);
    // Attachments per draft.
    ok(&put_att(&anon, "c1", "a.webm", vec![1; 10], 1).await);
    ok(&put_att(&anon, "c1", "b.webm", vec![2; 10], 2).await);
    let r = put_att(&anon, "c1", "c.webm", vec![3; 10], 3).await;
    refused(&r, "attachments_per_draft", 2);
    let d = get_draft(&anon, "c1").await.json();
    assert_eq!(d["seq"], 3);
    assert_eq!(d["attachments"].as_array().unwrap().len(), 2);
    // Replacing one adds none.
    ok(&put_att(&anon, "c1", "a.webm", vec![4; 10], 3).await);
    // A stale seq is still a conflict, not a quota answer.
    assert_eq!(
        put_att(&anon, "c1", "c.webm", vec![3; 10], 1).await.status,
        StatusCode::CONFLICT
    );

    // Signed in: the drafts move with the principal and the larger limits apply.
    sign_in(&anon, "dora", "editor").await;
    ok(&put_text(&anon, "c3", "c", 0).await);
    ok(&put_att(&anon, "c1", "c.webm", vec![3; 10], 4).await);
    ok(&put_text(&anon, "c4", "d", 0).await);
    refused(
        &put_text(&anon, "c5", "e", 0).await,
        "drafts_per_principal",
        4,
    );
    // A delete frees a place.
    let seq = get_draft(&anon, "c4").await.json()["seq"].as_u64().unwrap();
    ok(&anon
        .send(
            Method::DELETE,
            &format!("/v1/drafts/c4?seq={seq}"),
            None,
            None,
        )
        .await);
    ok(&put_text(&anon, "c5", "e", 0).await);
}

#[tokio::test]
async fn an_empty_attachment_is_refused_and_writes_nothing() {
    let srv = start("sqlite", |_| {}).await;
    let tab = srv.browser().await;
    ok(&put_text(&tab, "c1", "keep me", 0).await);
    // Declared empty.
    let r = put_att(&tab, "c1", "empty.webm", Vec::new(), 1).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "empty_attachment"),
        "{}",
        r.json()
    );
    // Streamed without a length and ending with no byte.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(Vec::new())];
    let r = tab
        .http()
        .put(format!(
            "{}/v1/drafts/c1/attachments/empty.webm?seq=1",
            tab.base
        ))
        .header("content-type", "audio/webm")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "empty_attachment", "{body}");
    let d = get_draft(&tab, "c1").await.json();
    assert_eq!(d["seq"], 1);
    assert_eq!(d["attachments"], json!([]));
    // One byte is enough.
    ok(&put_att(&tab, "c1", "one.webm", vec![1], 1).await);
}

#[tokio::test]
async fn snapshot_bytes_are_limited_per_principal_over_http_and_websocket() {
    let srv = start("sqlite", |_| {}).await;
    let anon = srv.browser().await;
    ok(&put_snapshot(&anon, "r1", 600, 0).await);
    let r = put_snapshot(&anon, "r2", 600, 0).await;
    refused(&r, "snapshot_bytes_per_principal", 1_000);
    assert_eq!(
        anon.send(Method::GET, "/v1/rooms/r2/snapshot", None, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Rewriting its own room counts the new size only.
    ok(&put_snapshot(&anon, "r1", 1_000, 1).await);
    sign_in(&anon, "sam", "editor").await;
    ok(&put_snapshot(&anon, "r2", 1_500, 0).await);
    refused(
        &put_snapshot(&anon, "r3", 1_600, 0).await,
        "snapshot_bytes_per_principal",
        3_000,
    );

    // The WebSocket path answers the same, naming the limit.
    let s = srv.bearer_session().await;
    let mut ws = srv.ws_hello(&s).await;
    for room in ["w1", "w2"] {
        ws.send(json!({"type": "join", "room": room})).await;
        ws.expect("presence").await;
    }
    let data = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![9u8; n]);
    ws.send(json!({"type": "snapshot", "room": "w1", "version": 0, "data": data(700)}))
        .await;
    ws.expect("snapshot_saved").await;
    ws.send(json!({"type": "snapshot", "room": "w2", "version": 0, "data": data(700)}))
        .await;
    let e = ws.expect("error").await;
    assert_eq!(
        (
            e["code"].as_str(),
            e["room"].as_str(),
            e["limit"].as_str(),
            e["max"].as_u64()
        ),
        (
            Some("quota_exceeded"),
            Some("w2"),
            Some("snapshot_bytes_per_principal"),
            Some(1_000)
        ),
        "{e}"
    );
    let r = reqwest::Client::new()
        .get(srv.u("/v1/rooms/w2/snapshot"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn quota_config_is_validated_and_layered() {
    let c = Config::from_toml(
        "[quotas.anonymous]\ndata_keys_per_session = 7\n\
         [roles.viewer.quotas]\ndrafts_per_principal = 9\n\
         [roles.viewer.quotas.anonymous]\nattachments_per_draft = 1",
    )
    .unwrap();
    c.validate().unwrap();
    let p = c.policies();
    let editor = p.get("editor").unwrap();
    assert_eq!(editor.anonymous_quotas.data_keys_per_session, 7);
    assert_eq!(editor.quotas.data_keys_per_session, 256);
    let viewer = p.get("viewer").unwrap();
    assert_eq!(viewer.quotas.drafts_per_principal, 9);
    assert_eq!(viewer.anonymous_quotas.drafts_per_principal, 20);
    assert_eq!(viewer.anonymous_quotas.attachments_per_draft, 1);
    assert_eq!(viewer.anonymous_quotas.data_keys_per_session, 7);
    for (toml, key) in [
        (
            "[quotas]\ndata_keys_per_session = 1000001",
            "quotas.data_keys_per_session",
        ),
        (
            "[quotas.anonymous]\nsnapshot_bytes_per_principal = 2000000000000",
            "quotas.anonymous.snapshot_bytes_per_principal",
        ),
        (
            "[roles.public.quotas.anonymous]\nattachments_per_draft = 2000000",
            "roles.public.quotas.anonymous.attachments_per_draft",
        ),
    ] {
        let e = Config::from_toml(toml)
            .and_then(|c| c.validate())
            .expect_err(toml)
            .to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    assert!(Config::from_toml("[quotas]\nunknown = 1").is_err());
    assert!(Config::from_toml("[roles.editor.quotas]\nbogus = 1").is_err());
}
