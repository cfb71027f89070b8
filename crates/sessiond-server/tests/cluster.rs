//! Multi-node tests: two or three sessiond nodes on one Redis (each test starts its own
//! `redis-server` on a free port), real HTTP and WebSocket clients.
//!
//! Every node runs `sessiond_server::run` on its own thread and tokio runtime. Killing a
//! node drops that runtime without running any shutdown code, which is what Redis and
//! the other nodes see of a SIGKILL: the lease stops being refreshed, sockets close, no
//! cleanup happens.
//!
//! Policies are short: idle 4 s (warn 1 s), heartbeat 1 s × 3 misses, lease 3 s.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sessiond_testkit::redis_guard::{RedisCluster, RedisServer};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const API_KEY: &str = "cluster-test-admin-key-0123456789";
/// Longest wait for any single expected frame or condition.
const WAIT: Duration = Duration::from_secs(10);

fn config(store: &str, idle: &str) -> String {
    format!(
        r#"store = "{store}"
dev = true
server_secret = "cluster-test-secret-0123456789abcdef"
api_keys = ["{API_KEY}"]
[roles.editor]
idle_timeout = "{idle}"
absolute_timeout = "1h"
warn_before = "1s"
heartbeat_interval = "1s"
heartbeat_misses = 3
"#
    )
}

/// One node on its own thread and runtime.
struct Node {
    base: String,
    ws_url: String,
    stop: Option<std::sync::mpsc::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(store: &str, idle: &str) -> Node {
        let cfg =
            sessiond_server::config::Config::from_toml(&config(store, idle)).expect("test config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        // `true`: graceful shutdown; `false`: kill (drop the runtime, nothing runs).
        let (stop, stopped) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel::<()>();
            let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || match stopped.recv() {
                Ok(true) => {
                    let _ = graceful_tx.send(());
                }
                _ => {
                    let _ = kill_tx.send(());
                }
            });
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
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
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/ws"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The SIGKILL stand-in: every task of the node is dropped at once.
    fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(false);
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
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

struct Sess {
    token: String,
    handle: String,
    idle_expires_at: String,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn wait_ready(n: &Node) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(r) = http().get(format!("{}/readyz", n.base)).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "node {} not ready", n.base);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn new_session(n: &Node) -> Sess {
    let r = http()
        .post(format!("{}/v1/session", n.base))
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    Sess {
        token: v["token"].as_str().unwrap().to_owned(),
        handle: v["handle"].as_str().unwrap().to_owned(),
        idle_expires_at: v["idle_expires_at"].as_str().unwrap().to_owned(),
    }
}

async fn get_session(n: &Node, s: &Sess) -> (u16, Value) {
    let r = http()
        .get(format!("{}/v1/session", n.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn audit_ended(n: &Node, handle: &str) -> Vec<Value> {
    let r = http()
        .get(format!(
            "{}/v1/admin/audit?kind=ended&handle={handle}",
            n.base
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["events"].as_array().cloned().unwrap_or_default()
}

/// A client connection: a task reads the socket all the time (so protocol pings are
/// answered even while the test sleeps) and hands over the JSON frames.
struct Client {
    rx: mpsc::Receiver<Value>,
    tx: futures::stream::SplitSink<Ws, Message>,
}

async fn ws(n: &Node, s: &Sess) -> Client {
    let mut req = n.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("sessiond.v1, bearer.{}", s.token).parse().unwrap(),
    );
    let (socket, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket upgrade");
    let (tx, mut read) = socket.split();
    let (frames, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Some(Ok(m)) = read.next().await {
            let v = match m {
                Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(f) => {
                    json!({"type": "closed", "code": f.map(|f| u16::from(f.code))})
                }
                _ => continue,
            };
            if frames.send(v).await.is_err() {
                break;
            }
        }
    });
    let mut c = Client { rx, tx };
    let hello = next_json(&mut c).await;
    assert_eq!(hello["type"], "hello");
    c
}

async fn next_json(c: &mut Client) -> Value {
    tokio::time::timeout(WAIT, c.rx.recv())
        .await
        .expect("a frame in time")
        .expect("socket open")
}

/// Reads until a frame of `type`, skipping others; returns it and when it arrived.
async fn expect_type(c: &mut Client, ty: &str) -> (Value, Instant) {
    loop {
        let v = next_json(c).await;
        if v["type"] == ty {
            return (v, Instant::now());
        }
        assert!(
            v["type"] != "closed" || ty == "closed",
            "closed while waiting for {ty}: {v}"
        );
    }
}

async fn send(c: &mut Client, v: Value) {
    c.tx.send(Message::Text(v.to_string())).await.unwrap();
}

fn member_handles(v: &Value) -> Vec<String> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["handle"].as_str().unwrap().to_owned())
        .collect()
}

/// Milliseconds from now until an RFC 3339 instant (negative if past).
fn ms_until(rfc3339: &str) -> i64 {
    let at = time_ms(rfc3339);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    at - now
}

fn time_ms(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339_weak(rfc3339).expect("rfc3339 time");
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_shared_activity_moves_deadlines_and_revocation_reaches_other_nodes() {
    let redis = RedisServer::start();
    let (a, b) = (
        Node::start(&redis.url(), "20s"),
        Node::start(&redis.url(), "20s"),
    );
    wait_ready(&a).await;
    wait_ready(&b).await;

    // Created on A, works on B.
    let s = new_session(&a).await;
    let (status, on_b) = get_session(&b, &s).await;
    assert_eq!(status, 200);
    assert_eq!(on_b["handle"], s.handle.as_str());
    let (_, on_a) = get_session(&a, &s).await;
    let before = time_ms(on_a["idle_expires_at"].as_str().unwrap());

    // Activity on B moves the deadline A reports (A re-reads entries older than 1 s).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = http()
        .post(format!("{}/v1/session/activity", b.base))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let (_, on_a) = get_session(&a, &s).await;
        if time_ms(on_a["idle_expires_at"].as_str().unwrap()) >= before + 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never saw B's activity: {on_a}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Revoked through A: B's connection is told and B refuses the token within ~1 s.
    let mut on_b_ws = ws(&b, &s).await;
    let t0 = Instant::now();
    let r = http()
        .delete(format!("{}/v1/admin/sessions/{}", a.base, s.handle))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (ended, at) = expect_type(&mut on_b_ws, "session_ended").await;
    assert_eq!(ended["reason"], "revoked");
    assert!(
        at - t0 < Duration::from_millis(1000),
        "B's connection told after {:?}",
        at - t0
    );
    let (status, body) = get_session(&b, &s).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("revoked")),
        "B still serves a revoked session: {body}"
    );
    assert_eq!(audit_ended(&a, &s.handle).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_expiry_fires_once_and_connections_on_both_nodes_are_told() {
    let redis = RedisServer::start();
    let (a, b) = (
        Node::start(&redis.url(), "4s"),
        Node::start(&redis.url(), "4s"),
    );
    wait_ready(&a).await;
    wait_ready(&b).await;

    let mut sessions = Vec::new();
    for i in 0..4 {
        // Half created on each node; every session has a connection on both.
        let s = if i % 2 == 0 {
            new_session(&a).await
        } else {
            new_session(&b).await
        };
        let wa = ws(&a, &s).await;
        let wb = ws(&b, &s).await;
        sessions.push((s, wa, wb));
    }
    for (s, wa, wb) in &mut sessions {
        for w in [wa, wb] {
            let (ended, _) = expect_type(w, "session_ended").await;
            assert_eq!(ended["reason"], "idle_timeout");
            // Told within a second of the deadline (and never before it).
            let late = -ms_until(&s.idle_expires_at);
            assert!(
                (0..=1200).contains(&late),
                "session_ended {late} ms after the deadline"
            );
        }
    }
    // Both schedulers raced for every session; the store's CAS let one win each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (s, ..) in &sessions {
        let events = audit_ended(&b, &s.handle).await;
        assert_eq!(
            events.len(),
            1,
            "ended audited {} times for {}",
            events.len(),
            s.handle
        );
        assert_eq!(events[0]["reason"], "idle_timeout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_nodes_and_a_killed_nodes_members_are_lost() {
    let redis = RedisServer::start();
    let (a, b, mut c) = (
        Node::start(&redis.url(), "60s"),
        Node::start(&redis.url(), "60s"),
        Node::start(&redis.url(), "60s"),
    );
    for n in [&a, &b, &c] {
        wait_ready(n).await;
    }
    let (s1, s2, s3) = (
        new_session(&a).await,
        new_session(&b).await,
        new_session(&c).await,
    );
    let (mut w1, mut w2, mut w3) = (ws(&a, &s1).await, ws(&b, &s2).await, ws(&c, &s3).await);

    send(&mut w1, json!({"type": "join", "room": "conv-9"})).await;
    let (p, _) = expect_type(&mut w1, "presence").await;
    assert_eq!(member_handles(&p), vec![s1.handle.clone()]);

    send(&mut w2, json!({"type": "join", "room": "conv-9"})).await;
    let (p, _) = expect_type(&mut w2, "presence").await;
    assert_eq!(
        member_handles(&p),
        vec![s1.handle.clone(), s2.handle.clone()],
        "B's joiner sees A's member"
    );
    let (j, _) = expect_type(&mut w1, "member_joined").await;
    assert_eq!(j["member"]["handle"], s2.handle.as_str());

    send(&mut w3, json!({"type": "join", "room": "conv-9"})).await;
    let (p, _) = expect_type(&mut w3, "presence").await;
    let mut got = member_handles(&p);
    got.sort();
    let mut want = vec![s1.handle.clone(), s2.handle.clone(), s3.handle.clone()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        expect_type(&mut w1, "member_joined").await.0["member"]["handle"],
        s3.handle.as_str()
    );
    assert_eq!(
        expect_type(&mut w2, "member_joined").await.0["member"]["handle"],
        s3.handle.as_str()
    );

    // A leave on B reaches A and C.
    send(&mut w2, json!({"type": "leave", "room": "conv-9"})).await;
    for w in [&mut w1, &mut w3] {
        let (l, _) = expect_type(w, "member_left").await;
        assert_eq!(
            (l["member"]["handle"].as_str(), l["reason"].as_str()),
            (Some(s2.handle.as_str()), Some("left"))
        );
    }

    // C dies without a word: A is told its member was lost within interval × misses
    // (3 s) plus the lease slack (lease 3 s, checked every second).
    let t0 = Instant::now();
    c.kill();
    let (l, at) = expect_type(&mut w1, "member_left").await;
    assert_eq!(
        (l["member"]["handle"].as_str(), l["reason"].as_str()),
        (Some(s3.handle.as_str()), Some("lost"))
    );
    assert!(
        at - t0 <= Duration::from_secs(7),
        "lost reported after {:?}",
        at - t0
    );
    // The survivors no longer list it; the session itself stays valid.
    send(&mut w2, json!({"type": "join", "room": "conv-9"})).await;
    let (p, _) = expect_type(&mut w2, "presence").await;
    assert_eq!(
        member_handles(&p),
        vec![s1.handle.clone(), s2.handle.clone()]
    );
    assert_eq!(get_session(&a, &s3).await.0, 200);
    drop(w3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_answers_503_fast_defers_expiry_and_recovers() {
    let mut redis = RedisServer::start_durable();
    let (a, b) = (
        Node::start(&redis.url(), "12s"),
        Node::start(&redis.url(), "12s"),
    );
    wait_ready(&a).await;
    wait_ready(&b).await;
    let client = http();

    // X's idle deadline falls inside the outage; S's well after it (idle 12 s leaves S
    // several seconds of slack after recovery even on a loaded machine).
    let x = new_session(&a).await;
    let mut wx = ws(&b, &x).await;
    tokio::time::sleep(Duration::from_millis(9500)).await;
    let s = new_session(&b).await;
    let r = client
        .put(format!("{}/v1/drafts/conv-1", a.base))
        .bearer_auth(&s.token)
        .json(&json!({"text": "acknowledged before the outage", "seq": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "draft saved");
    let mut ws_s = ws(&a, &s).await;
    assert!(
        ms_until(&x.idle_expires_at) > 1500,
        "X must still be live when Redis stops"
    );

    redis.stop();
    let outage = Instant::now();
    let mut saw_503 = 0;
    let mut ping_id = 0;
    while outage.elapsed() < Duration::from_secs(4) {
        for (node, path) in [
            (&a, "/v1/drafts/conv-1"),
            (&b, "/v1/drafts/conv-1"),
            (&a, "/readyz"),
        ] {
            let t = Instant::now();
            let r = client
                .get(format!("{}{path}", node.base))
                .bearer_auth(&s.token)
                .send()
                .await
                .unwrap();
            let took = t.elapsed();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(
                took <= Duration::from_millis(1200),
                "{path} took {took:?} during the outage"
            );
            assert_eq!(status, 503, "{path} during the outage: {body}");
            assert_eq!(body["code"], "store_unavailable");
            saw_503 += 1;
        }
        if ping_id == 0 {
            // The cluster-wide room views need the registry too (checked once, inside
            // the outage window, so S's idle deadline stays after it).
            for path in ["/v1/admin/rooms", "/v1/admin/rooms/conv-1"] {
                let t = Instant::now();
                let (status, body) = admin_get(&b, path).await;
                assert!(t.elapsed() <= Duration::from_millis(1200), "{path} slow");
                assert_eq!(
                    (status, body["code"].as_str()),
                    (503, Some("store_unavailable")),
                    "{path} during the outage: {body}"
                );
            }
        }
        // The connection stays up and answers.
        ping_id += 1;
        send(&mut ws_s, json!({"type": "ping", "id": ping_id})).await;
        let (pong, _) = expect_type(&mut ws_s, "pong").await;
        assert_eq!(pong["id"], ping_id);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(saw_503 >= 6);
    assert!(
        ms_until(&x.idle_expires_at) < 0,
        "X's deadline passed during the outage"
    );
    // Not expired while its deadline could not be checked: no ending was sent.
    let early = wx.rx.try_recv();
    assert!(
        early.is_err(),
        "X was told something during the outage: {early:?}"
    );

    redis.restart();
    let back = Instant::now();
    // Everything resumes by itself.
    for n in [&a, &b] {
        wait_ready(n).await;
    }
    let (ended, _) = expect_type(&mut wx, "session_ended").await;
    assert_eq!(ended["reason"], "idle_timeout");
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "missed deadline honoured {:?} after recovery",
        back.elapsed()
    );
    let deadline = Instant::now() + WAIT;
    let draft = loop {
        let r = client
            .get(format!("{}/v1/drafts/conv-1", b.base))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break r.json::<Value>().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "drafts did not come back: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(draft["text"], "acknowledged before the outage");
    assert_eq!(get_session(&a, &s).await.0, 200, "S survived the outage");
    assert_eq!(audit_ended(&a, &x.handle).await.len(), 1);
    let fresh = new_session(&b).await;
    assert_eq!(get_session(&a, &fresh).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_uses_sharded_pubsub_for_revocation() {
    let cluster = RedisCluster::start(3);
    let url = cluster.url();
    let (a, b) = (Node::start(&url, "30s"), Node::start(&url, "30s"));
    wait_ready(&a).await;
    wait_ready(&b).await;
    let s = new_session(&a).await;
    assert_eq!(get_session(&b, &s).await.0, 200);
    let mut on_b = ws(&b, &s).await;
    // Let B's subscription settle (it may have followed a MOVED redirect).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let r = http()
        .delete(format!("{}/v1/admin/sessions/{}", a.base, s.handle))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (ended, at) = expect_type(&mut on_b, "session_ended").await;
    assert_eq!(ended["reason"], "revoked");
    assert!(
        at - t0 < Duration::from_millis(1000),
        "told after {:?}",
        at - t0
    );
}

async fn admin_get(n: &Node, path: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{}{path}", n.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Polls an admin view on `n` until `ok` holds for (status, body).
async fn admin_until(n: &Node, path: &str, ok: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = admin_get(n, path).await;
        if ok(status, &body) {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "{path} never matched: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_room_views_list_members_of_every_node() {
    let redis = RedisServer::start();
    let (a, b) = (
        Node::start(&redis.url(), "60s"),
        Node::start(&redis.url(), "60s"),
    );
    wait_ready(&a).await;
    wait_ready(&b).await;
    let (sa, sb) = (new_session(&a).await, new_session(&b).await);
    let (mut wa, mut wb) = (ws(&a, &sa).await, ws(&b, &sb).await);

    send(&mut wa, json!({"type": "join", "room": "ops-1"})).await;
    expect_type(&mut wa, "presence").await;
    // A's member, seen from B, which has nobody in the room itself.
    let (_, rooms) = admin_until(&b, "/v1/admin/rooms", |s, v| {
        s == 200 && v["rooms"] != json!([])
    })
    .await;
    assert_eq!(rooms, json!({"rooms": [{"room": "ops-1", "members": 1}]}));
    let (status, room) = admin_get(&b, "/v1/admin/rooms/ops-1").await;
    assert_eq!(status, 200);
    assert_eq!(member_handles(&room), vec![sa.handle.clone()]);
    let node_a = room["members"][0]["node"].as_str().unwrap().to_owned();

    // B's own member joins: both listed once, each with its node.
    send(&mut wb, json!({"type": "join", "room": "ops-1"})).await;
    expect_type(&mut wb, "presence").await;
    let (_, rooms) = admin_get(&b, "/v1/admin/rooms").await;
    assert_eq!(rooms, json!({"rooms": [{"room": "ops-1", "members": 2}]}));
    let (_, room) = admin_get(&b, "/v1/admin/rooms/ops-1").await;
    assert_eq!(
        member_handles(&room),
        vec![sb.handle.clone(), sa.handle.clone()]
    );
    let node_b = room["members"][0]["node"].as_str().unwrap();
    assert_eq!(room["members"][1]["node"], node_a.as_str());
    assert_ne!(node_b, node_a);
    // A agrees, from its side.
    let (_, room) = admin_until(&a, "/v1/admin/rooms/ops-1", |_, v| {
        v["members"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    assert_eq!(
        member_handles(&room),
        vec![sa.handle.clone(), sb.handle.clone()]
    );

    // Both leave: B lists nothing and the room is gone.
    send(&mut wa, json!({"type": "leave", "room": "ops-1"})).await;
    admin_until(&b, "/v1/admin/rooms", |s, v| {
        s == 200 && v == &json!({"rooms": [{"room": "ops-1", "members": 1}]})
    })
    .await;
    let (_, room) = admin_get(&b, "/v1/admin/rooms/ops-1").await;
    assert_eq!(member_handles(&room), vec![sb.handle.clone()]);
    send(&mut wb, json!({"type": "leave", "room": "ops-1"})).await;
    admin_until(&b, "/v1/admin/rooms", |s, v| {
        s == 200 && v == &json!({"rooms": []})
    })
    .await;
    admin_until(&b, "/v1/admin/rooms/ops-1", |s, _| s == 404).await;
}
