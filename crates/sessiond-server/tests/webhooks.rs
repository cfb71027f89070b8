//! Lifecycle webhooks against a receiver the test starts (axum on 127.0.0.1:0): a
//! receiver that fails then recovers gets every event, in order, signed, with the same
//! `webhook-id` on retries; a receiver that always fails ends in dead letters that the
//! admin API lists, retries and deletes; on a two-node Redis cluster one node delivers
//! and the other takes over when it dies. Intervals are short, so each test takes
//! seconds. (The SIGKILL of the real binary is in crates/sessiond/tests/webhooks_kill.rs.)

use serde_json::{json, Value};
use sessiond_testkit::http::client;
use sessiond_testkit::inproc::{base_toml, Endpoint, Node, TestServer, ADMIN_KEY};
use sessiond_testkit::redis_guard::RedisServer;
use sessiond_testkit::wait;
use sessiond_testkit::webhook_receiver::{verify, Delivery, Receiver, SECRET};
use std::collections::BTreeSet;
use std::time::Duration;

const READ_KEY: &str = "webhook-read-key-1";
const WAIT: Duration = Duration::from_secs(20);

fn delivery(max_attempts: u32) -> String {
    format!(
        r#"[webhook_delivery]
poll_interval = "50ms"
lease_ttl = "900ms"
connect_timeout = "1s"
timeout = "2s"
max_attempts = {max_attempts}
max_age = "1m"
backoff_base = "20ms"
backoff_max = "100ms"
batch = 10
"#
    )
}

fn endpoint(id: &str, url: &str, events: &[&str]) -> String {
    format!(
        "[[webhooks]]\nid = \"{id}\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nevents = {}\n",
        json!(events)
    )
}

fn config(store: &str, max_attempts: u32, endpoints: &str) -> String {
    format!(
        "{}server_secret = \"webhook-test-secret-0123456789abcdef\"\n[[keys]]\nid = \"dash\"\nscope = \"read\"\nkey = \"{READ_KEY}\"\n{}{endpoints}",
        base_toml(store),
        delivery(max_attempts)
    )
}

/// Waits until every endpoint has its cursor (events from then on are sent); returns
/// the cursors by endpoint.
async fn started(s: &Endpoint) -> Value {
    s.admin_until("/v1/admin/webhooks", |st, v| {
        st == 200
            && v["endpoints"]
                .as_array()
                .is_some_and(|e| e.iter().all(|e| e["cursor"].is_i64()))
    })
    .await
    .1
}

/// Audit ids after `after`, oldest first, of the given kinds (all when empty).
async fn audit_ids(s: &Endpoint, after: i64, kinds: &[&str]) -> Vec<i64> {
    let v = s
        .admin_get(&format!("/v1/admin/audit?after={after}&limit=1000"))
        .await;
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| kinds.is_empty() || kinds.contains(&e["kind"].as_str().unwrap()))
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn accepted_ids_until(r: &Receiver, want: &[i64]) -> Vec<Delivery> {
    let want: BTreeSet<i64> = want.iter().copied().collect();
    wait::until_some(WAIT, "the receiver to accept every event", || async {
        let got = r.accepted();
        let ids: BTreeSet<i64> = got.iter().map(Delivery::event_id).collect();
        want.is_subset(&ids).then_some(got)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_every_event_in_order_once_it_recovers() {
    let all = Receiver::start().await;
    let ended_only = Receiver::start().await;
    all.fail_next(3);
    let eps =
        endpoint("all", &all.url, &[]) + &endpoint("ended", &ended_only.url, &["session.ended"]);
    let s = TestServer::start(&config("memory", 10, &eps)).await;
    let cursors = started(&s).await;
    let from = cursors["endpoints"][0]["cursor"].as_i64().unwrap();

    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(s.bearer_session().await.handle);
    }
    assert_eq!(s.revoke(&handles[1]).await, 204);
    let want = audit_ids(&s, from, &[]).await;
    assert!(want.len() >= 4, "3 created + 1 ended: {want:?}");

    let got = accepted_ids_until(&all, &want).await;
    let ids: Vec<i64> = got.iter().map(Delivery::event_id).collect();
    assert_eq!(ids, want, "each event once, in audit order");
    let every = all.deliveries();
    assert_eq!(every.len(), want.len() + 3, "three refused attempts");
    // The refused attempts were the first event's: retried with the same webhook-id.
    for d in &every[..4] {
        assert_eq!(d.id, format!("evt_{}", want[0]));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for d in &every {
        assert!(verify(SECRET, d), "signature of {}", d.id);
        let ts: i64 = d.timestamp.parse().unwrap();
        assert!((ts - now).abs() < 60, "timestamp is now-ish: {ts}");
        assert!(d.json["type"].as_str().unwrap().starts_with("session."));
        assert_eq!(
            d.json["data"]["kind"],
            d.json["type"].as_str().unwrap()[8..]
        );
    }
    assert_eq!(got[0].json["type"], "session.created");
    assert_eq!(got[0].json["data"]["handle"], handles[0].as_str());

    // The filtered endpoint got the ending only.
    let ended = audit_ids(&s, from, &["ended"]).await;
    let got = accepted_ids_until(&ended_only, &ended).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json["type"], "session.ended");
    assert_eq!(got[0].json["data"]["reason"], "revoked");

    // The endpoints' progress: caught up, nothing dead, this node delivers.
    let v = s
        .admin_until("/v1/admin/webhooks", |_, v| {
            v["endpoints"][0]["lag"] == 0 && v["endpoints"][1]["lag"] == 0
        })
        .await
        .1;
    assert_eq!(v["delivering"], true);
    assert_eq!(v["endpoints"][0]["dead_letters"], 0);
    assert_eq!(v["endpoints"][1]["events"], json!(["session.ended"]));
    let metrics = client()
        .get(s.u("/metrics"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sessiond_webhook_deliveries_total{endpoint=\"all\",result=\"failed\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sessiond_webhook_lag_events{endpoint=\"all\"}"));
}

async fn post(s: &Endpoint, path: &str, key: &str) -> (u16, Value) {
    let r = client()
        .post(s.u(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn del(s: &Endpoint, path: &str, key: &str) -> u16 {
    client()
        .delete(s.u(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_and_deleted() {
    let r = Receiver::start().await;
    r.fail_all(true);
    // No `events` list: every session.* type, and not the webhook.* ones, so the
    // operator actions below (audited) are not queued to the failing endpoint.
    let eps = endpoint("crm", &r.url, &[]);
    let s = TestServer::start(&config("sqlite", 2, &eps)).await;
    let from = started(&s).await["endpoints"][0]["cursor"]
        .as_i64()
        .unwrap();
    let a = s.bearer_session().await;
    let b = s.bearer_session().await;
    let want = audit_ids(&s, from, &[]).await;
    assert_eq!(want.len(), 2);
    let (_, v) = s
        .admin_until("/v1/admin/webhooks/dead-letters?endpoint=crm", |st, v| {
            st == 200 && v["dead_letters"].as_array().is_some_and(|d| d.len() == 2)
        })
        .await;
    let d = &v["dead_letters"][0];
    assert_eq!(d["event_id"], want[0]);
    assert_eq!(d["endpoint"], "crm");
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_status"], 500);
    assert_eq!(d["type"], "session.created");
    assert_eq!(d["webhook_id"], format!("evt_{}", want[0]));
    assert_eq!(d["event"]["handle"], a.handle.as_str());
    assert_eq!(r.deliveries().len(), 4, "two attempts each");
    // The read key lists too, but may not act.
    let (st, all) = {
        let resp = client()
            .get(s.u("/v1/admin/webhooks/dead-letters"))
            .bearer_auth(READ_KEY)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(st, 200);
    assert_eq!(all["dead_letters"].as_array().unwrap().len(), 2);
    let retry_a = format!("/v1/admin/webhooks/dead-letters/crm/{}/retry", want[0]);
    let (st, p) = post(&s, &retry_a, READ_KEY).await;
    assert_eq!((st, p["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        del(
            &s,
            &format!("/v1/admin/webhooks/dead-letters/crm/{}", want[1]),
            READ_KEY
        )
        .await,
        403
    );

    // Still failing: 502, the dead letter stays with one attempt more.
    let (st, p) = post(&s, &retry_a, ADMIN_KEY).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (502, Some("webhook_delivery_failed")),
        "{p}"
    );
    let v = s
        .admin_get("/v1/admin/webhooks/dead-letters?endpoint=crm&limit=1")
        .await;
    assert_eq!(v["dead_letters"][0]["attempts"], 3);
    assert_eq!(v["next"], want[0], "a full page has a next cursor");

    // The receiver recovers: the retry delivers (same webhook-id, signed) and removes it.
    r.fail_all(false);
    let (st, p) = post(&s, &retry_a, ADMIN_KEY).await;
    assert_eq!((st, &p), (200, &json!({"delivered": true, "status": 204})));
    let last = r.accepted().pop().unwrap();
    assert_eq!(last.id, format!("evt_{}", want[0]));
    assert!(verify(SECRET, &last));
    let (st, _) = post(&s, &retry_a, ADMIN_KEY).await;
    assert_eq!(st, 404, "gone once delivered");

    // Delete the other one.
    let del_b = format!("/v1/admin/webhooks/dead-letters/crm/{}", want[1]);
    assert_eq!(del(&s, &del_b, ADMIN_KEY).await, 204);
    assert_eq!(del(&s, &del_b, ADMIN_KEY).await, 404);
    assert_eq!(
        del(&s, "/v1/admin/webhooks/dead-letters/nope/1", ADMIN_KEY).await,
        404
    );
    let v = s.admin_get("/v1/admin/webhooks/dead-letters").await;
    assert_eq!(v["dead_letters"], json!([]));

    // Both actions are audited with the key that did them.
    let retried = s
        .admin_get("/v1/admin/audit?kind=dead_letter_retried")
        .await;
    let retried = retried["events"].as_array().unwrap();
    assert_eq!(retried.len(), 2, "the failed and the delivered retry");
    assert_eq!(retried[0]["detail"]["delivered"], true);
    assert_eq!(retried[0]["detail"]["key"], "api_keys.0");
    assert_eq!(retried[0]["detail"]["endpoint"], "crm");
    let deleted = s
        .admin_get("/v1/admin/audit?kind=dead_letter_deleted")
        .await;
    assert_eq!(deleted["events"][0]["detail"]["event_id"], want[1]);

    // The endpoint moved on: new events flow.
    let c = s.bearer_session().await;
    let got = wait::until_some(WAIT, "the new session's event", || async {
        r.accepted()
            .into_iter()
            .find(|d| d.json["data"]["handle"] == c.handle.as_str())
    })
    .await;
    assert_eq!(got.json["type"], "session.created");
    assert!(
        r.deliveries()
            .iter()
            .all(|d| d.json["type"].as_str().unwrap().starts_with("session.")),
        "operator actions are not sent without being listed"
    );
    let _ = b;
}

/// Which of the nodes says it delivers (exactly one must).
async fn deliverer(nodes: &[&Node]) -> usize {
    wait::until_some(WAIT, "exactly one deliverer", || async {
        let mut yes = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let (st, v) = n.admin_status("/v1/admin/webhooks").await;
            if st == 200 && v["delivering"] == true {
                yes.push(i);
            }
        }
        (yes.len() == 1).then(|| yes[0])
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_of_a_cluster_delivers_and_another_takes_over() {
    let redis = RedisServer::start();
    let r = Receiver::start().await;
    // A longer lease than the other tests': a renewal delayed by a loaded machine must
    // not hand the lease over mid-test (which would resend, at least once, and blur the
    // "one deliverer" check); the take-over waits it out.
    let toml = config(&redis.url(), 10, &endpoint("crm", &r.url, &[]))
        .replace("lease_ttl = \"900ms\"", "lease_ttl = \"3s\"");
    assert!(toml.contains("lease_ttl = \"3s\""));
    let mut nodes = [Node::start(&toml), Node::start(&toml)];
    for n in &nodes {
        n.wait_ready().await;
    }
    let from = started(&nodes[0]).await["endpoints"][0]["cursor"]
        .as_i64()
        .unwrap();
    let first = deliverer(&[&nodes[0], &nodes[1]]).await;
    let other = 1 - first;
    for i in 0..6 {
        nodes[i % 2].bearer_session().await;
    }
    let want = audit_ids(&nodes[0], from, &[]).await;
    assert_eq!(want.len(), 6);
    let got = accepted_ids_until(&r, &want).await;
    let ids: Vec<i64> = got.iter().map(Delivery::event_id).collect();
    assert_eq!(ids, want, "one deliverer: each event once, in order");
    // Still the same node, and the other never took over meanwhile.
    assert_eq!(deliverer(&[&nodes[0], &nodes[1]]).await, first);

    // The deliverer dies without a word; the other takes the lease once it lapses.
    nodes[first].kill();
    for _ in 0..3 {
        nodes[other].bearer_session().await;
    }
    let want = audit_ids(&nodes[other], from, &[]).await;
    assert_eq!(want.len(), 9);
    let got = accepted_ids_until(&r, &want).await;
    let ids: BTreeSet<i64> = got.iter().map(Delivery::event_id).collect();
    assert_eq!(ids, want.iter().copied().collect::<BTreeSet<_>>());
    let v = nodes[other].admin_get("/v1/admin/webhooks").await;
    assert_eq!(v["delivering"], true);
    assert!(got.iter().all(|d| verify(SECRET, d)));
}
