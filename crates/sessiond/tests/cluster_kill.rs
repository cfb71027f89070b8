//! A real SIGKILL in a cluster: three `sessiond serve` processes share one Redis (started
//! by the test on a free port), cookie-authenticated WebSocket clients on each join one
//! room, and node A is killed with SIGKILL. The survivors must report A's member as
//! `lost` within heartbeat_interval × misses plus the lease slack, and A's session must
//! stay valid through another node: a lost node is not a logout.

use serde_json::{json, Value};
use sessiond_testkit::inproc::Endpoint;
use sessiond_testkit::redis_guard::RedisServer;
use sessiond_testkit::server::SpawnedServer;
use sessiond_testkit::ws::{self, WsClient};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const API_KEY: &str = "cluster-kill-admin-key-0123456789";
const ROOM: &str = "r1";
/// Longest wait for any single expected frame or answer.
const WAIT: Duration = Duration::from_secs(10);
/// heartbeat 1 s × 3 misses, plus the lease (3 s, checked every second), plus scheduling
/// slack for three debug-build processes on two cores.
const LOST_WITHIN: Duration = Duration::from_secs(10);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiond"))
}

fn config(store: &str) -> String {
    format!(
        r#"store = "{store}"
dev = true
server_secret = "cluster-kill-secret-0123456789abcdef"
api_keys = ["{API_KEY}"]
[roles.editor]
idle_timeout = "60s"
absolute_timeout = "1h"
warn_before = "1s"
heartbeat_interval = "1s"
heartbeat_misses = 3
"#
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

/// A session created through the cookie flow, as a browser would.
struct Sess {
    /// `sessiond=<token>`, ready for a `Cookie` header.
    cookie: String,
    handle: String,
}

async fn new_session(base: &str) -> Sess {
    let r = http()
        .post(format!("{base}/v1/session"))
        .header("origin", base)
        .send()
        .await
        .expect("POST /v1/session");
    assert_eq!(r.status(), 201);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with("sessiond="))
        .expect("a sessiond cookie")
        .to_owned();
    let v: Value = r.json().await.expect("session body");
    assert!(v.get("token").is_none(), "token in the body without bearer");
    Sess {
        cookie,
        handle: v["handle"].as_str().expect("handle").to_owned(),
    }
}

async fn get_session(base: &str, s: &Sess) -> (u16, Value) {
    let r = http()
        .get(format!("{base}/v1/session"))
        .header("cookie", &s.cookie)
        .send()
        .await
        .expect("GET /v1/session");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn audit(base: &str, handle: &str, kind: &str) -> Vec<Value> {
    let r = http()
        .get(format!("{base}/v1/admin/audit?handle={handle}&kind={kind}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("GET /v1/admin/audit");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("audit body");
    v["events"].as_array().cloned().unwrap_or_default()
}

/// A connection read all the time by the harness's client, with its id.
struct Client {
    ws: WsClient,
    connection_id: String,
}

/// Opens `/v1/ws` on `base` with the session cookie and the node's own origin.
async fn ws(base: &str, s: &Sess) -> Client {
    let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
    let headers = [
        ("sec-websocket-protocol", "sessiond.v1".to_owned()),
        ("cookie", s.cookie.clone()),
        ("origin", base.to_owned()),
    ];
    let socket = tokio::time::timeout(WAIT, ws::connect(&url, &headers))
        .await
        .expect("upgrade in time")
        .expect("websocket upgrade");
    let mut ws = WsClient::spawn(socket);
    let hello = ws.json().await;
    assert_eq!(hello["type"], "hello", "first frame: {hello}");
    assert_eq!(hello["handle"], s.handle.as_str());
    let connection_id = hello["connection_id"]
        .as_str()
        .expect("connection_id")
        .to_owned();
    Client { ws, connection_id }
}

fn member_ids(presence: &Value) -> Vec<String> {
    let mut ids: Vec<String> = presence["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["connection_id"].as_str().expect("member id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_node_members_are_lost_and_its_sessions_survive() {
    let redis = RedisServer::start();
    let cfg = config(&redis.url());
    let mut a = SpawnedServer::start(&bin(), &cfg, &[]);
    let b = SpawnedServer::start(&bin(), &cfg, &[]);
    let c = SpawnedServer::start(&bin(), &cfg, &[]);
    let (a_url, b_url, c_url) = (a.url(), b.url(), c.url());
    for server in [&a, &b, &c] {
        Endpoint::new(server.addr()).wait_ready().await;
    }

    let sa = new_session(&a_url).await;
    let sb = new_session(&b_url).await;
    let sc = new_session(&c_url).await;
    // The store is shared: A's cookie already works on B before anything happens.
    assert_eq!(get_session(&b_url, &sa).await.0, 200);

    let mut wa = ws(&a_url, &sa).await;
    let mut wb = ws(&b_url, &sb).await;
    let mut wc = ws(&c_url, &sc).await;

    wa.ws.send(json!({"type": "join", "room": ROOM})).await;
    let (p, _) = wa.ws.expect_at("presence").await;
    assert_eq!(member_ids(&p), vec![wa.connection_id.clone()]);

    wb.ws.send(json!({"type": "join", "room": ROOM})).await;
    let (p, _) = wb.ws.expect_at("presence").await;
    let mut want = vec![wa.connection_id.clone(), wb.connection_id.clone()];
    want.sort();
    assert_eq!(member_ids(&p), want, "B's joiner sees A's member: {p}");
    let (j, _) = wa.ws.expect_at("member_joined").await;
    assert_eq!(j["member"]["connection_id"], wb.connection_id.as_str());

    wc.ws.send(json!({"type": "join", "room": ROOM})).await;
    let (p, _) = wc.ws.expect_at("presence").await;
    want.push(wc.connection_id.clone());
    want.sort();
    assert_eq!(member_ids(&p), want, "C's joiner sees A's and B's: {p}");
    let (j, _) = wb.ws.expect_at("member_joined").await;
    assert_eq!(j["member"]["connection_id"], wc.connection_id.as_str());

    // A dies without a word: no shutdown code runs, its lease just stops being renewed.
    let t0 = Instant::now();
    a.kill9();
    assert!(!a.is_running());
    for (name, w) in [("B", &mut wb), ("C", &mut wc)] {
        let (l, at) = w.ws.expect_at("member_left").await;
        let took = at - t0;
        println!("{name}: member_left for A's connection {took:?} after SIGKILL");
        assert_eq!(
            (
                l["room"].as_str(),
                l["member"]["connection_id"].as_str(),
                l["member"]["handle"].as_str(),
                l["reason"].as_str()
            ),
            (
                Some(ROOM),
                Some(wa.connection_id.as_str()),
                Some(sa.handle.as_str()),
                Some("lost")
            ),
            "{name} got {l}"
        );
        assert!(
            took <= LOST_WITHIN,
            "{name} told of the loss after {took:?}"
        );
    }
    drop(wa);

    // The survivors' own connections were not collateral damage.
    wb.ws.send(json!({"type": "ping", "id": 7})).await;
    assert_eq!(wb.ws.expect_at("pong").await.0["id"], 7);
    // A rejoin on B lists only the living.
    wb.ws.send(json!({"type": "join", "room": ROOM})).await;
    let (p, _) = wb.ws.expect_at("presence").await;
    let mut living = vec![wb.connection_id.clone(), wc.connection_id.clone()];
    living.sort();
    assert_eq!(member_ids(&p), living, "A's member still listed: {p}");

    // A lost node is not a logout: A's cookie works through B, nothing was ended.
    let (status, body) = get_session(&b_url, &sa).await;
    assert_eq!(status, 200, "A's session through B after the kill: {body}");
    assert_eq!(body["handle"], sa.handle.as_str());
    assert_eq!(body["state"], "active", "{body}");
    let ended = audit(&b_url, &sa.handle, "ended").await;
    assert!(ended.is_empty(), "A's session was ended: {ended:?}");
    // And the client can reconnect through a survivor with the same cookie.
    let again = ws(&c_url, &sa).await;
    assert_ne!(again.connection_id, "");
}
