//! Webhook delivery survives a crash: the real `sessiond serve` (SQLite) sends events to
//! a slow receiver the test runs, is killed with SIGKILL while deliveries are in flight,
//! restarted on the same data directory, and every audit event must reach the receiver
//! at least once (the one in flight may arrive twice, with the same `webhook-id`), none
//! skipped, first arrivals in audit order.

use reqwest::Client;
use serde_json::Value;
use sessiond_testkit::server::SpawnedServer;
use sessiond_testkit::wait;
use sessiond_testkit::webhook_receiver::{verify, Delivery, Receiver, SECRET};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

const KEY: &str = "webhooks-kill-admin-key";
const EVENTS: usize = 30;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiond"))
}

fn config(url: &str) -> String {
    format!(
        r#"store = "sqlite"
api_keys = ["{KEY}"]
[webhook_delivery]
poll_interval = "50ms"
lease_ttl = "1s"
backoff_base = "20ms"
backoff_max = "200ms"
[[webhooks]]
id = "crm"
url = "{url}"
secret = "{SECRET}"
"#
    )
}

async fn admin(http: &Client, url: &str, path: &str) -> Value {
    let r = http
        .get(format!("{url}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("admin request");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_delivered_at_least_once_across_a_sigkill() {
    let r = Receiver::start().await;
    // Slow enough that the kill lands with deliveries still to go.
    r.delay(Duration::from_millis(60));
    let mut server = SpawnedServer::start(&bin(), &config(&r.url), &["--dev"]);
    let url = server.url();
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let (h, u) = (&http, &url);
    let from = wait::until_some(Duration::from_secs(20), "the endpoint's cursor", || async move {
        admin(h, u, "/v1/admin/webhooks").await["endpoints"][0]["cursor"].as_i64()
    })
    .await;
    for _ in 0..EVENTS {
        let r = http
            .post(format!("{url}/v1/session"))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
    }
    let trail = admin(
        &http,
        &url,
        &format!("/v1/admin/audit?after={from}&limit=1000"),
    )
    .await;
    let want: Vec<i64> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(want.len(), EVENTS);
    let rr = &r;
    wait::until(Duration::from_secs(20), "a few deliveries", || async move {
        rr.accepted().len() >= 5
    })
    .await;
    server.kill9();
    let before = r.accepted().len();
    assert!(
        before < EVENTS,
        "killed mid-delivery ({before} of {EVENTS} delivered)"
    );

    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let want_set: BTreeSet<i64> = want.iter().copied().collect();
    let got = wait::until_some(
        Duration::from_secs(30),
        "every event after the restart",
        || async {
            let got = r.accepted();
            let ids: BTreeSet<i64> = got.iter().map(Delivery::event_id).collect();
            want_set.is_subset(&ids).then_some(got)
        },
    )
    .await;
    // First arrivals in audit order; a repeat is only ever the event at the kill.
    let mut seen = BTreeSet::new();
    let mut first_arrivals = Vec::new();
    for d in &got {
        assert!(verify(SECRET, d), "signature of {}", d.id);
        assert_eq!(d.id, format!("evt_{}", d.event_id()));
        if seen.insert(d.event_id()) {
            first_arrivals.push(d.event_id());
        }
    }
    assert_eq!(first_arrivals, want, "in order, none skipped");
    assert!(
        got.len() <= want.len() + 1,
        "at most the in-flight event twice: {} deliveries",
        got.len()
    );
    drop(server);
}
