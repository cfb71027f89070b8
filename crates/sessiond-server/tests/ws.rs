//! WebSocket integration tests: a real server (`sessiond_server::run` on 127.0.0.1:0,
//! memory store, short policies: heartbeat 1 s, misses 3, idle 4 s, warn_before 2 s)
//! and real tokio-tungstenite clients.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sessiond_server::ws::protocol::{self, ServerMsg};
use sessiond_testkit::http::client;
use sessiond_testkit::inproc::{base_toml, Sess, TestServer, ADMIN_KEY};
use sessiond_testkit::ws::{raw_json, Frame, Ws, WAIT};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

fn config(extra: &str) -> String {
    format!(
        r#"{}{extra}
[ws]
max_message_size = 4096
max_connections_per_session = 3
max_rooms_per_connection = 2
[roles.editor]
idle_timeout = "4s"
absolute_timeout = "1h"
warn_before = "2s"
heartbeat_interval = "1s"
heartbeat_misses = 3
"#,
        base_toml("memory")
    )
}

async fn start() -> TestServer {
    TestServer::start(&config("")).await
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test]
async fn hello_announces_the_session_and_policy() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut c = srv.ws(&s).await;
    let hello = c.json().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["handle"], s.handle.as_str());
    assert_eq!(hello["role"], "editor");
    assert_eq!(hello["heartbeat_interval"], 1);
    assert_eq!(hello["heartbeat_interval_ms"], 1000);
    assert_eq!(hello["heartbeat_misses"], 3);
    assert_eq!(hello["warn_before"], 2);
    assert_eq!(hello["max_message_size"], 4096);
    assert!(hello["connection_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    serde_json::from_value::<ServerMsg>(hello).expect("hello matches the typed message");

    // Authorization header and cookie work too; the subprotocol is echoed.
    let ws = srv
        .ws_with(&[("authorization", format!("Bearer {}", s.token))])
        .await
        .unwrap();
    drop(ws);
    let mut req = srv.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", s.cookie.parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", "sessiond.v1".parse().unwrap());
    let (_ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "sessiond.v1"
    );
    srv.stop_now().await;
}

#[tokio::test]
async fn unauthenticated_and_cross_origin_upgrades_are_refused() {
    let mut srv = start().await;
    let status = |r: Result<Ws, tungstenite::Error>| match r {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade should have been refused"),
    };
    assert_eq!(status(srv.ws_with(&[]).await), 401);
    assert_eq!(
        status(
            srv.ws_with(&[("sec-websocket-protocol", "sessiond.v1, bearer.nope".into())])
                .await
        ),
        401
    );
    let s = srv.bearer_session().await;
    let evil = [
        ("cookie", s.cookie.clone()),
        ("origin", "https://evil.example".into()),
    ];
    assert_eq!(status(srv.ws_with(&evil).await), 403);
    let own = [("cookie", s.cookie.clone()), ("origin", srv.url.clone())];
    assert!(
        srv.ws_with(&own).await.is_ok(),
        "the server's own origin is allowed"
    );
    // A bearer token (the SDK's bearer mode) is held to the same origin rule: a page on
    // another site holding a stolen token gets no socket; a client that is no browser
    // (no Origin) and the server's own origin do.
    let bearer = format!("sessiond.v1, bearer.{}", s.token);
    let evil = [
        ("sec-websocket-protocol", bearer.clone()),
        ("origin", "https://evil.example".into()),
    ];
    assert_eq!(status(srv.ws_with(&evil).await), 403);
    let header = [
        ("authorization", format!("Bearer {}", s.token)),
        ("origin", "https://evil.example".into()),
    ];
    assert_eq!(status(srv.ws_with(&header).await), 403);
    let own = [
        ("sec-websocket-protocol", bearer.clone()),
        ("origin", srv.url.clone()),
    ];
    assert!(srv.ws_with(&own).await.is_ok());
    assert!(srv
        .ws_with(&[("sec-websocket-protocol", bearer)])
        .await
        .is_ok());
    srv.stop_now().await;
}

/// A cookie tossed in by a sibling subdomain (same name, narrower path or parent domain)
/// makes the browser send the session cookie twice: the upgrade is refused outright
/// rather than opened as whichever session comes first.
#[tokio::test]
async fn an_upgrade_carrying_the_session_cookie_twice_is_refused() {
    let mut srv = start().await;
    let victim = srv.bearer_session().await;
    let attacker = srv.bearer_session().await;
    for pair in [
        format!("{}; {}", attacker.cookie, victim.cookie),
        format!("{}; {}", victim.cookie, attacker.cookie),
    ] {
        let mut req = srv.ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("cookie", pair.parse().unwrap());
        req.headers_mut()
            .insert("sec-websocket-protocol", "sessiond.v1".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 400);
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["code"], "duplicate_cookie", "{body}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("an upgrade with two session cookies must be refused"),
        }
    }
    // One cookie still upgrades.
    assert!(srv
        .ws_with(&[("cookie", victim.cookie.clone())])
        .await
        .is_ok());
    srv.stop_now().await;
}

#[tokio::test]
async fn silent_client_is_declared_lost_but_its_session_stays_valid() {
    let mut srv = start().await;
    let (sa, sb) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut b = srv.ws(&sb).await;
    b.expect("hello").await;
    b.send(json!({"type":"join","room":"lobby"})).await;
    b.expect("presence").await;

    let mut a = srv.ws_raw(&sa).await;
    assert_eq!(raw_json(&mut a).await["type"], "hello");
    a.send(Message::Text(
        json!({"type":"join","room":"lobby"}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(raw_json(&mut a).await["type"], "presence");
    let joined = b.expect("member_joined").await;
    let a_conn = joined["member"]["connection_id"].clone();
    // From here on `a` is never polled: no pongs, no frames.
    let silent_since = Instant::now();
    let left = b.expect("member_left").await;
    let took = silent_since.elapsed();
    assert_eq!(left["reason"], "lost");
    assert_eq!(left["member"]["connection_id"], a_conn);
    assert!(
        took > Duration::from_millis(2500) && took < Duration::from_millis(4500),
        "lost after {took:?}"
    );

    assert_eq!(
        srv.session_status(&sa).await,
        200,
        "a lost connection is not a logout"
    );
    let (st, audit) = srv
        .admin_status(&format!(
            "/v1/admin/audit?handle={}&kind=connection_lost",
            sa.handle
        ))
        .await;
    assert_eq!(st, 200);
    let ev = &audit["events"][0];
    assert_eq!(ev["reason"], "heartbeat_lost");
    assert_eq!(ev["detail"]["connection_id"], a_conn);

    // When `a` reads again it finds the heartbeat-lost close code after the queued pings.
    let code = loop {
        match tokio::time::timeout(WAIT, a.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Close(c))) => break c.map(|c| u16::from(c.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(protocol::close::HEARTBEAT_LOST));
    srv.stop_now().await;
}

#[tokio::test]
async fn warning_arrives_before_idle_deadline_and_renew_reaches_every_tab() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut tab1 = srv.ws(&s).await;
    let mut tab2 = srv.ws(&s).await;
    let hello = tab1.expect("hello").await;
    tab2.expect("hello").await;

    let w1 = tab1.expect("expiry_warning").await;
    let at = s.created.elapsed();
    assert!(
        at > Duration::from_millis(1500) && at < Duration::from_millis(3000),
        "warned at {:.2}s",
        secs(at)
    );
    assert!(
        (1..=2).contains(&w1["seconds_left"].as_i64().unwrap()),
        "{w1}"
    );
    assert_eq!(w1["idle_expires_at"], hello["idle_expires_at"]);
    let w2 = tab2.expect("expiry_warning").await;
    assert_eq!(w2["idle_expires_at"], w1["idle_expires_at"]);

    tab1.send(json!({"type":"renew"})).await;
    let r1 = tab1.expect("renewed").await;
    let r2 = tab2.expect("renewed").await;
    assert!(
        r1["idle_expires_at"].as_str() > w1["idle_expires_at"].as_str(),
        "deadline moved: {r1}"
    );
    assert_eq!(r2["idle_expires_at"], r1["idle_expires_at"]);
    assert_eq!(
        r1["absolute_expires_at"], hello["absolute_expires_at"],
        "never past the absolute deadline"
    );

    // Past the old idle deadline the session is alive.
    // Real time: the old idle deadline must pass on the server's wall clock.
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(s.created.elapsed())).await;
    assert_eq!(srv.session_status(&s).await, 200);
    srv.stop_now().await;
}

#[tokio::test]
async fn pings_alone_do_not_keep_a_session_alive() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut c = srv.ws(&s).await;
    c.expect("hello").await;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut n = 0u64;
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {
                n += 1;
                c.send(json!({"type":"ping","id":n})).await;
            }
            f = c.recv() => match f.expect("reader alive") {
                Frame::Json(v) if v["type"] == "session_ended" => break v,
                Frame::Json(v) => assert!(v["type"] == "pong" || v["type"] == "expiry_warning", "{v}"),
                other => panic!("unexpected {other:?}"),
            },
        }
        assert!(
            s.created.elapsed() < Duration::from_secs(7),
            "session never ended"
        );
    };
    let at = s.created.elapsed();
    assert_eq!(ended["reason"], "idle_timeout");
    assert!(
        at > Duration::from_millis(3800) && at < Duration::from_millis(5300),
        "ended at {:.2}s",
        secs(at)
    );
    assert_eq!(c.close_code().await, Some(protocol::close::IDLE_TIMEOUT));
    assert_eq!(srv.session_status(&s).await, 401);
    srv.stop_now().await;
}

#[tokio::test]
async fn activity_keeps_the_session_alive() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut c = srv.ws(&s).await;
    c.expect("hello").await;
    for _ in 0..10 {
        // Real-time smoke test: activity spaced on the wall clock carries the session
        // past its 4 s idle deadline.
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.send(json!({"type":"activity"})).await;
    }
    // 6 s after creation, past the 4 s idle timeout.
    assert_eq!(srv.session_status(&s).await, 200);
    srv.stop_now().await;
}

#[tokio::test]
async fn revoke_ends_every_connection_with_its_code_within_a_second() {
    let mut srv = start().await;
    let (s, other) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut a = srv.ws(&s).await;
    let mut a2 = srv.ws(&s).await;
    let mut o = srv.ws(&other).await;
    for c in [&mut a, &mut a2, &mut o] {
        c.expect("hello").await;
        c.send(json!({"type":"join","room":"team"})).await;
        c.expect("presence").await;
    }
    let t = Instant::now();
    let r = client()
        .delete(format!("{}/v1/admin/sessions/{}", srv.url, s.handle))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for c in [&mut a, &mut a2] {
        assert_eq!(c.expect("session_ended").await["reason"], "revoked");
        assert_eq!(c.close_code().await, Some(protocol::close::REVOKED));
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        t.elapsed()
    );
    let l1 = o.expect("member_left").await;
    let l2 = o.expect("member_left").await;
    assert_eq!(
        (l1["reason"].as_str(), l2["reason"].as_str()),
        (Some("session_ended"), Some("session_ended"))
    );
    assert_eq!(l1["member"]["handle"], s.handle.as_str());
    // The other session's connection is untouched.
    o.send(json!({"type":"ping","id":1})).await;
    assert_eq!(o.expect("pong").await["id"], 1);
    srv.stop_now().await;
}

#[tokio::test]
async fn three_members_see_joins_leaves_and_losses_in_order() {
    let mut srv = start().await;
    let (sa, sb, sc) = (
        srv.bearer_session().await,
        srv.bearer_session().await,
        srv.bearer_session().await,
    );
    let mut a = srv.ws(&sa).await;
    let id_a = a.expect("hello").await["connection_id"].clone();
    a.send(json!({"type":"join","room":"room-3"})).await;
    let p = a.expect("presence").await;
    assert_eq!(p["members"].as_array().unwrap().len(), 1);
    assert!(p["snapshot"].is_null());

    let mut b = srv.ws(&sb).await;
    let id_b = b.expect("hello").await["connection_id"].clone();
    b.send(json!({"type":"join","room":"room-3"})).await;
    let p = b.expect("presence").await;
    let ids: Vec<&Value> = p["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["connection_id"])
        .collect();
    assert_eq!(ids, vec![&id_a, &id_b]);

    let mut c = srv.ws_raw(&sc).await;
    let id_c = raw_json(&mut c).await["connection_id"].clone();
    c.send(Message::Text(
        json!({"type":"join","room":"room-3"}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        raw_json(&mut c).await["members"].as_array().unwrap().len(),
        3
    );
    // `c` goes silent now.

    b.send(json!({"type":"leave","room":"room-3"})).await;

    // A sees, in order: B joined, C joined, B left, C lost.
    let seen: Vec<(String, Value, Value)> = {
        let mut v = Vec::new();
        while v.len() < 4 {
            let m = a.json().await;
            let ty = m["type"].as_str().unwrap().to_owned();
            if ty == "member_joined" || ty == "member_left" {
                v.push((
                    ty,
                    m["member"]["connection_id"].clone(),
                    m["reason"].clone(),
                ));
            }
        }
        v
    };
    assert_eq!(
        seen,
        vec![
            ("member_joined".into(), id_b.clone(), Value::Null),
            ("member_joined".into(), id_c.clone(), Value::Null),
            ("member_left".into(), id_b.clone(), json!("left")),
            ("member_left".into(), id_c.clone(), json!("lost")),
        ]
    );
    let (_, rooms) = srv.admin_status("/v1/admin/rooms").await;
    assert_eq!(rooms, json!({"rooms":[{"room":"room-3","members":1}]}));
    let (_, conns) = srv
        .admin_status(&format!("/v1/admin/connections?handle={}", sa.handle))
        .await;
    assert_eq!(conns["connections"][0]["connection_id"], id_a);
    assert_eq!(conns["connections"][0]["rooms"], json!(["room-3"]));
    a.send(json!({"type":"leave","room":"room-3"})).await;
    a.send(json!({"type":"ping"})).await;
    a.expect("pong").await;
    assert_eq!(srv.admin_status("/v1/admin/rooms/room-3").await.0, 404);
    assert_eq!(
        srv.admin_status("/v1/admin/rooms").await.1,
        json!({"rooms":[]})
    );
    srv.stop_now().await;
}

#[tokio::test]
async fn bad_frames_get_documented_answers_and_others_are_unaffected() {
    let mut srv = start().await;
    let (s, bystander) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut other = srv.ws(&bystander).await;
    other.expect("hello").await;
    let mut c = srv.ws(&s).await;
    c.expect("hello").await;

    c.send_raw(Message::Text("{not json".into())).await;
    assert_eq!(c.json().await["code"], "bad_message");
    c.send(json!({"type":"join"})).await;
    assert_eq!(c.json().await["code"], "bad_message");
    c.send(json!({"type":"fly"})).await;
    assert_eq!(c.json().await["code"], "unknown_type");
    c.send_raw(Message::Binary(vec![0, 1, 2])).await;
    assert_eq!(c.json().await["code"], "binary_not_supported");
    c.send(json!({"type":"join","room":"no spaces"})).await;
    assert_eq!(c.json().await["code"], "invalid_room");
    c.send(json!({"type":"snapshot","room":"r1","version":0,"data":"AA=="}))
        .await;
    assert_eq!(c.json().await["code"], "not_joined");
    for r in ["r1", "r2"] {
        c.send(json!({"type":"join","room":r})).await;
        c.expect("presence").await;
    }
    c.send(json!({"type":"join","room":"r3"})).await;
    let e = c.json().await;
    assert_eq!(
        (e["code"].as_str(), e["room"].as_str()),
        (Some("too_many_rooms"), Some("r3"))
    );
    c.send(json!({"type":"snapshot","room":"r1","version":0,"data":"%%%"}))
        .await;
    assert_eq!(c.json().await["code"], "bad_message");
    c.send(json!({"type":"ping","id":"still-here"})).await;
    assert_eq!(c.json().await, json!({"type":"pong","id":"still-here"}));

    // Over max_message_size: closed with 1009.
    c.send_raw(Message::Text(format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(5000)
    )))
    .await;
    assert_eq!(c.close_code().await, Some(protocol::close::MESSAGE_TOO_BIG));

    // Connections per session are bounded (3 in this config).
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let mut t = srv.ws(&s).await;
        t.expect("hello").await;
        tabs.push(t);
    }
    let mut fourth = srv.ws(&s).await;
    assert_eq!(fourth.json().await["code"], "too_many_connections");
    assert_eq!(
        fourth.close_code().await,
        Some(protocol::close::TOO_MANY_CONNECTIONS)
    );

    other.send(json!({"type":"ping","id":2})).await;
    assert_eq!(other.expect("pong").await["id"], 2);
    srv.stop_now().await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_without_growing_memory() {
    let mut srv = start().await;
    let (sa, sb) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut b = srv.ws(&sb).await;
    b.expect("hello").await;
    b.send(json!({"type":"join","room":"big"})).await;
    b.expect("presence").await;
    // A 5 MiB snapshot (6.7 MB framed) makes a `presence` larger than the TCP buffers.
    let r = client()
        .put(format!("{}/v1/rooms/big/snapshot?version=0", srv.url))
        .bearer_auth(&sb.token)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 5 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    b.expect("snapshot_updated").await;

    // `a` joins (one big `presence`) but never reads, through a small receive window
    // (a repeated join no longer re-sends the snapshot, so one answer has to fill it).
    let mut a = ws_small_window(&srv, &sa).await;
    a.send(Message::Text(
        json!({"type":"join","room":"big"}).to_string(),
    ))
    .await
    .unwrap();
    let a_conn = b.expect("member_joined").await["member"]["connection_id"].clone();
    // Real time: the big `presence` fills the silent reader's TCP buffers, which
    // nothing the test can observe signals.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Small room events (`snapshot_updated`) for `a` now pile up in its bounded queue (64)
    // until it is cut off, long before its heartbeat could be missed (3 s).
    let flood = Instant::now();
    for v in 1..=100u64 {
        b.send(json!({"type":"snapshot","room":"big","version":v,"data":"AA=="}))
            .await;
    }
    let left = loop {
        let m = b.json().await;
        if m["type"] == "member_left" && m["member"]["connection_id"] == a_conn {
            break m;
        }
    };
    assert_eq!(left["reason"], "lost");
    assert!(
        flood.elapsed() < Duration::from_secs(2),
        "cut off after {:?}",
        flood.elapsed()
    );
    let (_, conns) = srv
        .admin_status(&format!("/v1/admin/connections?handle={}", sa.handle))
        .await;
    assert_eq!(conns, json!({"connections": []}));
    // The slow reader's session is untouched; other members carry on.
    assert_eq!(srv.session_status(&sa).await, 200);
    b.send(json!({"type":"ping","id":"ok"})).await;
    b.expect("pong").await;
    srv.stop_now().await;
}

/// Finding 2: a socket opened with the pre-sign-in token (planted on a shared computer)
/// never becomes the signed-in user. Every connection of the session that authenticated
/// with the old token is closed with 4010 "reauthenticate" (its rooms told `left`), a
/// `renew` it sent is not acted on, and the client reconnects with the new token as the
/// user.
#[tokio::test]
async fn sign_in_closes_old_connections_with_reauthenticate() {
    let mut srv = start().await;
    let (s, other) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut c = srv.ws(&s).await;
    let hello = c.expect("hello").await;
    assert!(hello["principal"].as_str().unwrap().starts_with("anon:"));
    // A second old connection, authenticated by the cookie.
    let mut by_cookie = sessiond_testkit::ws::WsClient::spawn(
        srv.ws_with(&[
            ("cookie", s.cookie.clone()),
            ("sec-websocket-protocol", "sessiond.v1".to_owned()),
        ])
        .await
        .unwrap(),
    );
    by_cookie.expect("hello").await;
    c.send(json!({"type":"join","room":"team-1"})).await;
    c.expect("presence").await;
    let mut o = srv.ws(&other).await;
    o.expect("hello").await;
    o.send(json!({"type":"join","room":"team-1"})).await;
    o.expect("presence").await;
    c.expect("member_joined").await;

    let t: Value = client()
        .post(format!("{}/demo/api/ticket", srv.url))
        .json(&json!({"user_id":"alice","role":"editor","rooms":["team-1"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = client()
        .post(format!("{}/v1/session/signin", srv.url))
        .bearer_auth(&s.token)
        .json(&json!({"ticket": t["ticket"], "bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let signed: Value = r.json().await.unwrap();
    assert_eq!(signed["handle"], s.handle.as_str());
    let new_token = signed["token"].as_str().expect("rotated token").to_owned();
    assert_ne!(new_token, s.token);
    // Sent over the old socket right after the rotation: refused whether or not the
    // close has landed yet (if it has, the client cannot even send it).
    let _ = c.try_send(json!({"type":"renew"})).await;

    assert_eq!(c.close_code().await, Some(protocol::close::REAUTHENTICATE));
    assert_eq!(
        by_cookie.close_code().await,
        Some(protocol::close::REAUTHENTICATE)
    );
    let left = o.expect("member_left").await;
    assert_eq!(left["member"]["handle"], s.handle.as_str());
    assert!(left["member"]["principal"]
        .as_str()
        .unwrap()
        .starts_with("anon:"));
    assert_eq!(left["reason"], "left");
    let renewals: Vec<Value> = srv
        .audit_of(&s.handle)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "renewed")
        .collect();
    assert!(renewals.is_empty(), "an old socket renewed: {renewals:?}");

    // The old token is dead for new connections; the new one reconnects as the user.
    let old = srv
        .ws_with(&[(
            "sec-websocket-protocol",
            format!("sessiond.v1, bearer.{}", s.token),
        )])
        .await;
    assert!(matches!(old, Err(tungstenite::Error::Http(ref r)) if r.status() == 401));
    let fresh = Sess::from_token(&new_token, &s.handle);
    let mut c2 = srv.ws(&fresh).await;
    let hello = c2.expect("hello").await;
    assert_eq!(
        (hello["principal"].as_str(), hello["handle"].as_str()),
        (Some("user:alice"), Some(s.handle.as_str()))
    );
    c2.send(json!({"type":"join","room":"team-1"})).await;
    c2.expect("presence").await;
    assert_eq!(
        o.expect("member_joined").await["member"]["principal"],
        "user:alice"
    );
    // The ticket's claim grants rooms; it never takes away the role's (dev mode: every
    // room). Deny-by-default and lost grants are tested in tests/rooms.rs.
    c2.send(json!({"type":"join","room":"team-2"})).await;
    assert_eq!(c2.expect("presence").await["room"], "team-2");
    // A connection opened with the new token is not closed by the rotation it follows.
    c2.send(json!({"type":"renew"})).await;
    c2.expect("renewed").await;
    srv.stop_now().await;
}

#[tokio::test]
async fn snapshots_over_the_socket_reach_other_members() {
    let mut srv = start().await;
    let (s1, s2) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut a = srv.ws(&s1).await;
    let mut b = srv.ws(&s2).await;
    for c in [&mut a, &mut b] {
        c.expect("hello").await;
        c.send(json!({"type":"join","room":"board"})).await;
        c.expect("presence").await;
    }
    a.send(json!({"type":"snapshot","room":"board","version":0,"data":"e30=","content_type":"application/json"})).await;
    let saved = a.expect("snapshot_saved").await;
    assert_eq!(saved["version"], 1);
    let upd = b.expect("snapshot_updated").await;
    assert_eq!(
        (upd["version"].as_u64(), upd["by"].as_str()),
        (Some(1), Some(s1.handle.as_str()))
    );
    assert_eq!(upd["hash"], saved["hash"]);
    b.send(json!({"type":"snapshot","room":"board","version":0,"data":"e30=","content_type":"application/json"})).await;
    let e = b.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["current_version"].as_u64()),
        (Some("conflict"), Some(1))
    );
    // Both leave; a rejoin gets the bytes back.
    a.send(json!({"type":"leave","room":"board"})).await;
    b.send(json!({"type":"leave","room":"board"})).await;
    b.send(json!({"type":"join","room":"board"})).await;
    let p = b.expect("presence").await;
    assert_eq!(p["snapshot"]["data"], "e30=");
    assert_eq!(p["snapshot"]["content_type"], "application/json");
    srv.stop_now().await;
}

#[tokio::test]
async fn shutdown_says_going_away() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut c = srv.ws(&s).await;
    c.expect("hello").await;
    let t = Instant::now();
    srv.stop_now().await;
    assert_eq!(c.close_code().await, Some(protocol::close::GOING_AWAY));
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// The fenced blocks of the WebSocket section of `docs/protocol.md`, by info string.
fn doc_blocks() -> (String, Vec<(String, String)>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md");
    let start = doc.find("## WebSocket").expect("a WebSocket section");
    let section = &doc[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let section = section[..end].to_owned();
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(l) = lines.next() {
        if let Some(info) = l.strip_prefix("```") {
            if info.is_empty() {
                continue;
            }
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((info.trim().to_owned(), body.join("\n")));
        }
    }
    (section, blocks)
}

#[tokio::test]
async fn protocol_doc_examples_match_the_server() {
    let (section, blocks) = doc_blocks();
    let server: Vec<&String> = blocks
        .iter()
        .filter(|(i, _)| i == "json server")
        .map(|(_, b)| b)
        .collect();
    let client: Vec<&String> = blocks
        .iter()
        .filter(|(i, _)| i == "json client")
        .map(|(_, b)| b)
        .collect();
    assert!(
        server.len() >= 11 && client.len() >= 6,
        "examples found: {} server, {} client",
        server.len(),
        client.len()
    );

    // Every server example is exactly what the typed messages serialize to.
    let mut server_types = std::collections::BTreeSet::new();
    for b in &server {
        let v: Value =
            serde_json::from_str(b).unwrap_or_else(|e| panic!("example is not JSON ({e}): {b}"));
        let m: ServerMsg = serde_json::from_value(v.clone())
            .unwrap_or_else(|e| panic!("not a server message ({e}): {b}"));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            v,
            "example has fields the server does not send: {b}"
        );
        server_types.insert(v["type"].as_str().unwrap().to_owned());
    }
    for ty in [
        "hello",
        "pong",
        "expiry_warning",
        "renewed",
        "session_ended",
        "presence",
        "member_joined",
        "member_left",
        "snapshot_saved",
        "snapshot_updated",
        "error",
    ] {
        assert!(server_types.contains(ty), "no example of {ty}");
    }
    // Every error code and close code is documented.
    use protocol::{close, code};
    for c in [
        code::BAD_MESSAGE,
        code::UNKNOWN_TYPE,
        code::BINARY_NOT_SUPPORTED,
        code::INVALID_ROOM,
        code::ROOM_NOT_ALLOWED,
        code::TOO_MANY_ROOMS,
        code::ROOM_FULL,
        code::NOT_JOINED,
        code::CONFLICT,
        code::PAYLOAD_TOO_LARGE,
        code::STORE_UNAVAILABLE,
        code::TOO_MANY_CONNECTIONS,
        code::INTERNAL,
    ] {
        assert!(
            section.contains(&format!("`{c}`")),
            "error code {c} undocumented"
        );
    }
    for c in [
        close::GOING_AWAY,
        close::INVALID_PAYLOAD,
        close::POLICY_VIOLATION,
        close::MESSAGE_TOO_BIG,
        close::INTERNAL,
        close::SIGNED_OUT,
        close::IDLE_TIMEOUT,
        close::ABSOLUTE_TIMEOUT,
        close::REVOKED,
        close::ENDED_BY_USER,
        close::HEARTBEAT_LOST,
        close::SLOW_CONSUMER,
        close::UNAUTHENTICATED,
        close::TOO_MANY_CONNECTIONS,
    ] {
        assert!(
            section.contains(&format!("`{c}`")),
            "close code {c} undocumented"
        );
    }

    // Every client example, sent in document order, is accepted by the real server.
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut c = srv.ws(&s).await;
    c.expect("hello").await;
    for b in client {
        let v: Value =
            serde_json::from_str(b).unwrap_or_else(|e| panic!("example is not JSON ({e}): {b}"));
        c.send(v.clone()).await;
        // A ping answers right away; anything sent before it has been handled by then.
        c.send(json!({"type":"ping","id":"doc"})).await;
        loop {
            let m = c.json().await;
            assert_ne!(
                m["type"], "error",
                "the server refused the documented {v}: {m}"
            );
            if m == json!({"type":"pong","id":"doc"}) {
                break;
            }
        }
    }
    srv.stop_now().await;
}

/// A raw socket of the session whose receive buffer is 4 KiB (no autotuning), so a
/// reader that stops reading blocks the server's writes after a few megabytes at most.
async fn ws_small_window(
    srv: &TestServer,
    s: &Sess,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let mut req = srv.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("sessiond.v1, bearer.{}", s.token).parse().unwrap(),
    );
    let addr: std::net::SocketAddr = req.uri().authority().unwrap().as_str().parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws
}

/// The test config with `[ws]` keys added (the section is already in `config`).
fn ws_config(keys: &str) -> String {
    config("").replacen("[ws]\n", &format!("[ws]\n{keys}\n"), 1)
}

/// Reads a raw socket until its close frame: `(code, reason)`; `None` if the stream
/// ended without one (1006 to a browser).
async fn raw_close(ws: &mut Ws) -> Option<(u16, String)> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(f))) => {
                return f.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Finding 4a: a repeated `join` of the same room on the same connection does not send
/// the room's snapshot again, and a client naming the version it holds gets none either.
#[tokio::test]
async fn a_repeated_join_sends_the_snapshot_once() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let size = 200_000;
    let r = client()
        .put(format!("{}/v1/rooms/r1/snapshot?version=0", srv.url))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut c = srv.ws(&s).await;
    c.expect("hello").await;
    let mut received = 0;
    for i in 0..5 {
        c.send(json!({"type":"join","room":"r1"})).await;
        let p = c.expect("presence").await;
        received += p.to_string().len();
        if i == 0 {
            assert_eq!(p["snapshot"]["version"], 1);
        } else {
            assert!(p["snapshot"].is_null(), "snapshot sent again: join {i}");
            assert_eq!(p["snapshot_version"], 1);
        }
    }
    assert!(
        received < size * 4 / 3 + 10_000,
        "{received} bytes for five joins of a {size}-byte snapshot"
    );
    // Another connection naming the version it holds gets none; an older one gets it.
    let mut d = srv.ws(&s).await;
    d.expect("hello").await;
    d.send(json!({"type":"join","room":"r1","have_version":1}))
        .await;
    let p = d.expect("presence").await;
    assert!(p["snapshot"].is_null());
    assert_eq!(p["snapshot_version"], 1);
    d.send(json!({"type":"leave","room":"r1"})).await;
    let mut e = srv.ws(&s).await;
    e.expect("hello").await;
    e.send(json!({"type":"join","room":"r1","have_version":0}))
        .await;
    assert_eq!(e.expect("presence").await["snapshot"]["version"], 1);
    srv.stop_now().await;
}

/// Finding 4b: a connection sending faster than its token bucket allows is closed with
/// 1008 "rate limit exceeded"; others are unaffected.
#[tokio::test]
async fn a_message_flood_is_closed_with_policy_violation() {
    let mut srv = TestServer::start(&ws_config("message_rate = 5\nmessage_burst = 20")).await;
    let (s, other) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut calm = srv.ws(&other).await;
    calm.expect("hello").await;
    let mut ws = srv.ws_raw(&s).await;
    raw_json(&mut ws).await;
    // Within the burst: all answered.
    for i in 0..10 {
        ws.send(Message::Text(json!({"type":"ping","id":i}).to_string()))
            .await
            .unwrap();
        assert_eq!(raw_json(&mut ws).await["type"], "pong");
    }
    for i in 0..200 {
        if ws
            .send(Message::Text(json!({"type":"ping","id":i}).to_string()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, reason) = raw_close(&mut ws).await.expect("a close frame");
    assert_eq!(code, protocol::close::POLICY_VIOLATION);
    assert!(reason.contains("rate limit"), "{reason}");
    calm.send(json!({"type":"ping","id":"ok"})).await;
    calm.expect("pong").await;
    srv.stop_now().await;
}

/// Finding 4d: a room holds at most `ws.max_room_members`; a join over it is refused
/// with `room_full` and nobody is told of a member that never joined.
#[tokio::test]
async fn a_full_room_refuses_the_next_join() {
    let mut srv = TestServer::start(&ws_config("max_room_members = 2")).await;
    let mut members = Vec::new();
    for _ in 0..2 {
        let s = srv.bearer_session().await;
        let mut c = srv.ws(&s).await;
        c.expect("hello").await;
        c.send(json!({"type":"join","room":"r1"})).await;
        c.expect("presence").await;
        members.push(c);
    }
    members[0].expect("member_joined").await;
    let s = srv.bearer_session().await;
    let mut late = srv.ws(&s).await;
    late.expect("hello").await;
    late.send(json!({"type":"join","room":"r1"})).await;
    let e = late.json().await;
    assert_eq!(
        (e["code"].as_str(), e["room"].as_str()),
        (Some("room_full"), Some("r1"))
    );
    let (_, room) = srv.admin_status("/v1/admin/rooms/r1").await;
    assert_eq!(room["members"].as_array().unwrap().len(), 2);
    // A member joining again is not over the cap; the refused one can join elsewhere.
    members[1].send(json!({"type":"join","room":"r1"})).await;
    members[1].expect("presence").await;
    late.send(json!({"type":"join","room":"r2"})).await;
    late.expect("presence").await;
    members[0].send(json!({"type":"ping","id":1})).await;
    assert_eq!(members[0].json().await["type"], "pong", "no member_joined");
    srv.stop_now().await;
}

/// Finding 4f: a text frame that is not UTF-8 is refused with 1007 (a close frame, not a
/// dropped TCP connection).
#[tokio::test]
async fn invalid_utf8_is_closed_with_1007() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame as RawFrame;
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut ws = srv.ws_raw(&s).await;
    raw_json(&mut ws).await;
    let bad = vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'];
    ws.send(Message::Frame(RawFrame::message(
        bad,
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .unwrap();
    let (code, _) = raw_close(&mut ws).await.expect("a close frame");
    assert_eq!(code, protocol::close::INVALID_PAYLOAD);
    srv.stop_now().await;
}

/// Finding 4f: a message over `max_message_size` sent as many small fragments is refused
/// with 1009 like one big frame.
#[tokio::test]
async fn an_oversized_fragmented_message_is_closed_with_1009() {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::Frame as RawFrame;
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut ws = srv.ws_raw(&s).await;
    raw_json(&mut ws).await;
    // 4096 is the limit: fragments of 512 bytes keep coming (1 MB in all) while the
    // server refuses the message, as from a client that does not wait for answers.
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..2000 {
            let op = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = RawFrame::message(vec![b' '; 512], op, false);
            if tx.send(Message::Frame(frame)).await.is_err() {
                break;
            }
        }
    });
    let close = loop {
        match tokio::time::timeout(WAIT, rx.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("no close frame: {e}"),
            None => panic!("no close frame: stream ended"),
        }
    };
    sender.abort();
    let code = close.expect("a close code");
    assert_eq!(code, protocol::close::MESSAGE_TOO_BIG);
    srv.stop_now().await;
}

/// Finding 4c: repeated `renew` within the flush interval costs one audit row (and one
/// synced write); every one is still answered with `renewed` and the new deadlines.
#[tokio::test]
async fn repeated_renews_are_coalesced() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let mut c = srv.ws(&s).await;
    c.expect("hello").await;
    let mut last = String::new();
    for _ in 0..20 {
        c.send(json!({"type":"renew"})).await;
        let r = c.expect("renewed").await;
        let idle = r["idle_expires_at"].as_str().unwrap().to_owned();
        assert!(idle >= last, "deadline went back: {idle} < {last}");
        last = idle;
    }
    let renewed = srv
        .audit_of(&s.handle)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "renewed")
        .count();
    assert!(
        (1..=2).contains(&renewed),
        "{renewed} audit rows for 20 renewals"
    );
    srv.stop_now().await;
}
