//! Room access, tried as an attacker would: deny by default over WebSocket and HTTP,
//! each grant path admits (role patterns, ticket claim, admin grant by handle and by
//! principal, room token), a lost grant removes the live member at once and tells it and
//! the room, and a room token opens its own room only. Real server, memory store.

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use sessiond_testkit::http::{client, hs256_ticket};
use sessiond_testkit::inproc::{base_toml, Sess, TestServer, ADMIN_KEY, TICKET_SECRET};
use sessiond_testkit::ws::{Frame, WsClient};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Dev mode (as every test server) but with the production room defaults spelled out:
/// anonymous sessions (editor) get no room; viewers get `lobby` and `public:*`.
fn config() -> String {
    format!(
        "{}[roles.editor]\nrooms = []\n[roles.viewer]\nrooms = [\"lobby\", \"public:*\"]\n[roles.public]\nrooms = []\n",
        base_toml("memory")
    )
}

async fn start() -> TestServer {
    TestServer::start(&config()).await
}

async fn admin(srv: &TestServer, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = client().request(method, srv.u(path)).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("admin request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Signs `s` in with `ticket` (bearer); the session under its new token.
async fn sign_in(srv: &TestServer, s: &Sess, ticket: &str) -> Sess {
    let r = client()
        .post(srv.u("/v1/session/signin"))
        .bearer_auth(&s.token)
        .json(&json!({"ticket": ticket, "bearer": true}))
        .send()
        .await
        .expect("sign in");
    assert!(r.status() == 200 || r.status() == 201, "{}", r.status());
    let v: Value = r.json().await.expect("json");
    Sess::from_token(v["token"].as_str().unwrap(), v["handle"].as_str().unwrap())
}

async fn snapshot(
    srv: &TestServer,
    s: &Sess,
    method: Method,
    room: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut path = format!("/v1/rooms/{room}/snapshot");
    if method == Method::PUT {
        path.push_str("?version=0");
    }
    let mut r = client()
        .request(method.clone(), srv.u(&path))
        .bearer_auth(&s.token);
    if let Some(t) = token {
        r = r.header("x-room-token", t);
    }
    if method == Method::PUT {
        r = r.body("pwned");
    }
    let r = r.send().await.expect("snapshot request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Joins and returns the answer: `presence`, or the `error` for this room.
async fn join(c: &mut WsClient, room: &str, token: Option<&str>) -> Value {
    let mut msg = json!({"type": "join", "room": room});
    if let Some(t) = token {
        msg["token"] = json!(t);
    }
    c.send(msg).await;
    loop {
        let v = c.json().await;
        if (v["type"] == "presence" || v["type"] == "error") && v["room"] == room {
            return v;
        }
    }
}

fn assert_refused(v: &Value, code: &str) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v.get("members").is_none() && v.get("snapshot").is_none());
}

/// A granted session writes a snapshot into `room` (so refusals are not just 404s).
async fn seed(srv: &TestServer, room: &str) {
    let owner = srv.bearer_session().await;
    let (s, _) = admin(
        srv,
        Method::PUT,
        &format!("/v1/admin/sessions/{}/rooms/{room}", owner.handle),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let r = client()
        .put(srv.u(&format!("/v1/rooms/{room}/snapshot?version=0")))
        .bearer_auth(&owner.token)
        .body("secret notes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn room_token(secret: &str, room: &str, exp: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"room": room, "aud": "sessiond:room", "iat": now_s() - 5, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn an_anonymous_session_is_refused_every_room_by_default() {
    let mut srv = start().await;
    seed(&srv, "support-42").await;
    let s = srv.bearer_session().await;
    let mut c = srv.ws_hello(&s).await;
    for room in ["support-42", "lobby", "public:x", "anything"] {
        assert_refused(&join(&mut c, room, None).await, "room_not_allowed");
    }
    let (st, p) = snapshot(&srv, &s, Method::GET, "support-42", None).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (403, Some("room_not_allowed")),
        "{p}"
    );
    let (st, p) = snapshot(&srv, &s, Method::PUT, "support-42", None).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (403, Some("room_not_allowed")),
        "{p}"
    );
    // The client cannot forge an admin grant through its data bag.
    let r = client()
        .put(srv.u("/v1/session/data/sessiond:room:support-42"))
        .bearer_auth(&s.token)
        .json(&json!({"granted_at": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_refused(&join(&mut c, "support-42", None).await, "room_not_allowed");
    // The production defaults grant no room to any role.
    let prod = sessiond_server::config::Config::from_toml("store = \"memory\"").unwrap();
    assert!(prod.policies().roles.values().all(|p| p.rooms.is_empty()));
    srv.stop_now().await;
}

#[tokio::test]
async fn role_patterns_admit_their_rooms_only() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let s = sign_in(
        &srv,
        &s,
        &hs256_ticket(TICKET_SECRET, "vic", "viewer", None),
    )
    .await;
    let mut c = srv.ws_hello(&s).await;
    assert_eq!(join(&mut c, "lobby", None).await["type"], "presence");
    assert_eq!(join(&mut c, "public:town", None).await["type"], "presence");
    assert_refused(&join(&mut c, "private:x", None).await, "room_not_allowed");
    assert_eq!(
        snapshot(&srv, &s, Method::GET, "public:other", None)
            .await
            .0,
        404
    );
    assert_eq!(snapshot(&srv, &s, Method::GET, "lobby2", None).await.0, 403);
    srv.stop_now().await;
}

#[tokio::test]
async fn a_ticket_claim_grants_and_a_sign_in_without_it_loses_the_room() {
    let mut srv = start().await;
    let s = srv.bearer_session().await;
    let ticket = hs256_ticket(TICKET_SECRET, "tina", "editor", Some(&["team:*"]));
    let s = sign_in(&srv, &s, &ticket).await;
    let mut c = srv.ws_hello(&s).await;
    assert_eq!(join(&mut c, "team:1", None).await["type"], "presence");
    assert_refused(&join(&mut c, "other", None).await, "room_not_allowed");
    assert_eq!(snapshot(&srv, &s, Method::PUT, "team:2", None).await.0, 200);

    // A watcher in the room, admitted by an admin grant.
    let w = srv.bearer_session().await;
    let path = format!("/v1/admin/sessions/{}/rooms/team:1", w.handle);
    assert_eq!(admin(&srv, Method::PUT, &path, None).await.0, 204);
    let mut wc = srv.ws_hello(&w).await;
    assert_eq!(join(&mut wc, "team:1", None).await["type"], "presence");
    c.expect("member_joined").await;

    // Signing in again with a ticket without the claim loses the grant: the sign-in
    // rotates the token, so the old connection is closed with 4010 (the room is told it
    // left), and the session's new connection is refused the room.
    let s2 = sign_in(
        &srv,
        &s,
        &hs256_ticket(TICKET_SECRET, "tina", "editor", None),
    )
    .await;
    assert_eq!(
        c.close_code().await,
        Some(sessiond_server::ws::protocol::close::REAUTHENTICATE)
    );
    let left = wc.expect("member_left").await;
    assert_eq!(left["reason"], "left", "{left}");
    assert_eq!(left["member"]["handle"], s.handle.as_str());
    let mut c2 = srv.ws_hello(&s2).await;
    assert_refused(&join(&mut c2, "team:1", None).await, "room_not_allowed");
    assert_eq!(
        snapshot(&srv, &s2, Method::GET, "team:2", None).await.0,
        403
    );
    srv.stop_now().await;
}

#[tokio::test]
async fn admin_grants_admit_and_a_revoke_removes_the_live_member_at_once() {
    let mut srv = start().await;
    seed(&srv, "conv-9").await;
    let (a, b) = (srv.bearer_session().await, srv.bearer_session().await);
    let mut ac = srv.ws_hello(&a).await;
    assert_refused(&join(&mut ac, "conv-9", None).await, "room_not_allowed");
    let grant_a = format!("/v1/admin/sessions/{}/rooms/conv-9", a.handle);
    let grant_b = format!("/v1/admin/sessions/{}/rooms/conv-9", b.handle);
    assert_eq!(admin(&srv, Method::PUT, &grant_a, None).await.0, 204);
    assert_eq!(admin(&srv, Method::PUT, &grant_b, None).await.0, 204);
    let p = join(&mut ac, "conv-9", None).await;
    assert_eq!(p["snapshot"]["version"], 1, "{p}");
    assert_eq!(snapshot(&srv, &a, Method::GET, "conv-9", None).await.0, 200);
    let mut bc = srv.ws_hello(&b).await;
    assert_eq!(join(&mut bc, "conv-9", None).await["type"], "presence");
    ac.expect("member_joined").await;

    assert_eq!(admin(&srv, Method::DELETE, &grant_a, None).await.0, 204);
    let e = ac.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["room"].as_str()),
        (Some("room_access_revoked"), Some("conv-9"))
    );
    let left = bc.expect("member_left").await;
    assert_eq!(
        (left["reason"].as_str(), left["member"]["handle"].as_str()),
        (Some("access_revoked"), Some(a.handle.as_str()))
    );
    let (_, room) = admin(&srv, Method::GET, "/v1/admin/rooms/conv-9", None).await;
    assert_eq!(room["members"].as_array().map(Vec::len), Some(1), "{room}");
    assert_eq!(snapshot(&srv, &a, Method::GET, "conv-9", None).await.0, 403);
    assert_refused(&join(&mut ac, "conv-9", None).await, "room_not_allowed");
    // The connection itself stays open for other rooms.
    ac.send(json!({"type":"ping","id":1})).await;
    ac.expect("pong").await;

    // By principal: every live session of the user, added and revoked.
    let u = srv.bearer_session().await;
    let u = sign_in(
        &srv,
        &u,
        &hs256_ticket(TICKET_SECRET, "carol", "editor", None),
    )
    .await;
    let mut uc = srv.ws_hello(&u).await;
    assert_refused(&join(&mut uc, "conv-9", None).await, "room_not_allowed");
    let by_p = "/v1/admin/principals/user:carol/rooms/conv-9";
    let (st, v) = admin(&srv, Method::PUT, by_p, None).await;
    assert_eq!((st, v["sessions"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(join(&mut uc, "conv-9", None).await["type"], "presence");
    let (st, v) = admin(&srv, Method::DELETE, by_p, None).await;
    assert_eq!((st, v["sessions"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(uc.expect("error").await["code"], "room_access_revoked");
    assert_eq!(bc.expect("member_left").await["reason"], "access_revoked");
    // Unknown handles are 404, bad rooms 400.
    let unknown = "/v1/admin/sessions/s_AAAAAAAAAAAAAAAAAAAAAA/rooms/conv-9";
    assert!(matches!(
        admin(&srv, Method::PUT, unknown, None).await.0,
        400 | 404
    ));
    let bad = format!("/v1/admin/sessions/{}/rooms/bad%20room", a.handle);
    assert_eq!(admin(&srv, Method::PUT, &bad, None).await.0, 400);
    srv.stop_now().await;
}

#[tokio::test]
async fn a_room_token_opens_its_room_only_and_forged_or_expired_ones_are_refused() {
    let mut srv = start().await;
    seed(&srv, "board-a").await;
    seed(&srv, "board-b").await;
    let (st, v) = admin(
        &srv,
        Method::POST,
        "/v1/admin/rooms/board-a/tokens",
        Some(json!({"ttl_seconds": 300})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let s = srv.bearer_session().await;
    let mut c = srv.ws_hello(&s).await;
    assert_refused(
        &join(&mut c, "board-b", Some(&token)).await,
        "invalid_room_token",
    );
    let p = join(&mut c, "board-a", Some(&token)).await;
    assert_eq!(p["type"], "presence", "{p}");
    assert_eq!(p["snapshot"]["version"], 1);
    // Over HTTP: the header (or query) opens room A only.
    let other = srv.bearer_session().await;
    assert_eq!(
        snapshot(&srv, &other, Method::GET, "board-a", Some(&token))
            .await
            .0,
        200
    );
    let q = client()
        .get(srv.u(&format!("/v1/rooms/board-a/snapshot?room_token={token}")))
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), 200);
    let (st, p) = snapshot(&srv, &other, Method::GET, "board-b", Some(&token)).await;
    assert_eq!((st, p["code"].as_str()), (403, Some("room_not_allowed")));
    assert_eq!(
        snapshot(&srv, &other, Method::PUT, "board-b", Some(&token))
            .await
            .0,
        403
    );
    assert_eq!(
        snapshot(&srv, &other, Method::GET, "board-a", None).await.0,
        403
    );

    // Expired, forged, too long-lived, a sign-in ticket, garbage: all refused.
    let expired = room_token(TICKET_SECRET, "board-a", now_s() - 120);
    let forged = room_token(
        "another-secret-0123456789abcdef-xx",
        "board-a",
        now_s() + 60,
    );
    let too_long = room_token(TICKET_SECRET, "board-a", now_s() + 30 * 86400);
    let ticket = hs256_ticket(TICKET_SECRET, "mallory", "editor", Some(&["*"]));
    let mut m = srv.ws_hello(&other).await;
    for bad in [expired.as_str(), &forged, &too_long, &ticket, "x.y.z"] {
        assert_refused(
            &join(&mut m, "board-a", Some(bad)).await,
            "invalid_room_token",
        );
        assert_eq!(
            snapshot(&srv, &other, Method::GET, "board-a", Some(bad))
                .await
                .0,
            403
        );
    }
    // A token member keeps the room when an (absent) admin grant is revoked.
    let path = format!("/v1/admin/sessions/{}/rooms/board-a", s.handle);
    assert_eq!(admin(&srv, Method::DELETE, &path, None).await.0, 204);
    c.send(json!({"type":"ping","id":2})).await;
    let pong = c.expect("pong").await;
    assert_eq!(pong["id"], 2);
    let (_, room) = admin(&srv, Method::GET, "/v1/admin/rooms/board-a", None).await;
    assert_eq!(room["members"].as_array().map(Vec::len), Some(1), "{room}");
    srv.stop_now().await;
}

/// What an attacker without a grant tries, in any order.
#[derive(Debug, Clone)]
enum Probe {
    Join(usize),
    JoinWithToken { room: usize, token_for: usize },
    JoinForged(usize),
    Get(usize),
    Put(usize),
    GetWithToken { room: usize, token_for: usize },
}

const ROOMS: [&str; 4] = ["vault", "team:1", "public:1", "conv-1"];

fn probe() -> impl Strategy<Value = Probe> {
    let r = 0..ROOMS.len();
    prop_oneof![
        r.clone().prop_map(Probe::Join),
        (r.clone(), r.clone())
            .prop_filter("another room's token", |(a, b)| a != b)
            .prop_map(|(room, token_for)| Probe::JoinWithToken { room, token_for }),
        r.clone().prop_map(Probe::JoinForged),
        r.clone().prop_map(Probe::Get),
        r.clone().prop_map(Probe::Put),
        (r.clone(), r)
            .prop_filter("another room's token", |(a, b)| a != b)
            .prop_map(|(room, token_for)| Probe::GetWithToken { room, token_for }),
    ]
}

/// Property: a session with no grant never sees any room's snapshot or member list and
/// never writes one, whatever it tries (other rooms' tokens, forged ones, any order).
#[test]
fn no_grant_never_reads_a_snapshot_or_member_list() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (srv, tokens) = rt.block_on(async {
        let srv = start().await;
        let mut tokens = Vec::new();
        for room in ROOMS {
            seed(&srv, room).await;
            let (_, v) = admin(
                &srv,
                Method::POST,
                &format!("/v1/admin/rooms/{room}/tokens"),
                Some(json!({})),
            )
            .await;
            tokens.push(v["token"].as_str().unwrap().to_owned());
        }
        (srv, tokens)
    });
    let mut runner = TestRunner::new(PropConfig {
        cases: 16,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let strategy = proptest::collection::vec(probe(), 1..8);
    runner
        .run(&strategy, |probes| {
            rt.block_on(async {
                let s = srv.bearer_session().await;
                let mut c = srv.ws_hello(&s).await;
                for p in probes {
                    match p {
                        Probe::Join(r) => {
                            assert_refused(&join(&mut c, ROOMS[r], None).await, "room_not_allowed")
                        }
                        Probe::JoinWithToken { room, token_for } => assert_refused(
                            &join(&mut c, ROOMS[room], Some(&tokens[token_for])).await,
                            "invalid_room_token",
                        ),
                        Probe::JoinForged(r) => {
                            let forged =
                                room_token("x".repeat(32).as_str(), ROOMS[r], now_s() + 60);
                            assert_refused(
                                &join(&mut c, ROOMS[r], Some(&forged)).await,
                                "invalid_room_token",
                            )
                        }
                        Probe::Get(r) => {
                            assert_eq!(snapshot(&srv, &s, Method::GET, ROOMS[r], None).await.0, 403)
                        }
                        Probe::Put(r) => {
                            assert_eq!(snapshot(&srv, &s, Method::PUT, ROOMS[r], None).await.0, 403)
                        }
                        Probe::GetWithToken { room, token_for } => assert_eq!(
                            snapshot(&srv, &s, Method::GET, ROOMS[room], Some(&tokens[token_for]))
                                .await
                                .0,
                            403
                        ),
                    }
                }
                // Nothing room-shaped ever reached this connection.
                tokio::time::sleep(Duration::from_millis(20)).await;
                while let Some(f) = c.try_next() {
                    if let Frame::Json(v) = f {
                        assert!(
                            !matches!(
                                v["type"].as_str(),
                                Some(
                                    "presence"
                                        | "member_joined"
                                        | "member_left"
                                        | "snapshot_updated"
                                )
                            ),
                            "leaked {v}"
                        );
                    }
                }
            });
            Ok(())
        })
        .unwrap();
    rt.block_on(async move {
        let mut srv = srv;
        let checker = srv.bearer_session().await;
        for room in ROOMS {
            let path = format!("/v1/admin/sessions/{}/rooms/{room}", checker.handle);
            assert_eq!(admin(&srv, Method::PUT, &path, None).await.0, 204);
            // Every snapshot is still the seeded one: nobody without a grant wrote.
            let r = client()
                .get(srv.u(&format!("/v1/rooms/{room}/snapshot")))
                .bearer_auth(&checker.token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["x-snapshot-version"], "1");
            assert_eq!(r.text().await.unwrap(), "secret notes");
        }
        srv.stop_now().await;
    });
}
