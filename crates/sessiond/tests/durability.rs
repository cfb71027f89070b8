//! SIGKILL durability of work in progress: a stream of draft text, attachment and room
//! snapshot writes runs against the real `sessiond serve` (embedded SQLite store), the
//! process is killed with SIGKILL mid-stream, restarted on the same data directory, and
//! every acknowledged write must be there intact (the one write in flight may have landed
//! or not, but never torn).

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sessiond_testkit::server::SpawnedServer;
use sessiond_testkit::wait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "durability-admin-key";
const ROOM: &str = "dur-room";
/// Acknowledged writes to wait for before the kill (the stream keeps going meanwhile).
const ACKED_BEFORE_KILL: usize = 45;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiond"))
}

fn config() -> String {
    format!(
        "store = \"sqlite\"\napi_keys = [\"{KEY}\"]\n[tickets]\nhs256_secret = \"durability-ticket-secret-0123456789abcdef\"\n"
    )
}

/// What the stream wrote: per key the last acknowledged value, and the one write whose
/// answer never came (the server died with it in flight).
#[derive(Default)]
struct Journal {
    acked: BTreeMap<String, (Vec<u8>, u64)>,
    pending: Option<(String, Vec<u8>, u64)>,
    count: usize,
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| ((j * 131 + i * 7919) % 251) as u8)
        .collect()
}

/// Writes until the first transport error, recording each write before it is sent and
/// moving it to `acked` only once its 200 arrived.
async fn write_stream(http: Client, url: String, journal: Arc<Mutex<Journal>>) {
    let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
    let mut version = 0u64;
    for i in 0.. {
        let conv = format!("conv-{}", i % 4);
        let seq = seqs.get(&conv).copied().unwrap_or(0);
        let (key, value, req) = match i % 3 {
            0 => {
                let text = format!("draft {i} for {conv}: {}", "lorem ipsum ".repeat(i % 50));
                let req = http
                    .put(format!("{url}/v1/drafts/{conv}"))
                    .json(&json!({"text": text, "seq": seq}));
                (format!("text:{conv}"), text.into_bytes(), req)
            }
            1 => {
                let bytes = payload(i, 20_000 + (i * 7_777) % 90_000);
                let req = http
                    .put(format!(
                        "{url}/v1/drafts/{conv}/attachments/voice.webm?seq={seq}"
                    ))
                    .header("content-type", "audio/webm")
                    .body(bytes.clone());
                (format!("att:{conv}"), bytes, req)
            }
            _ => {
                let bytes = payload(i, 1_000 + (i * 3_331) % 60_000);
                let req = http
                    .put(format!("{url}/v1/rooms/{ROOM}/snapshot?version={version}"))
                    .header("content-type", "application/octet-stream")
                    .body(bytes.clone());
                ("snapshot".to_owned(), bytes, req)
            }
        };
        let tag = if key == "snapshot" { version + 1 } else { 0 };
        journal.lock().expect("journal").pending = Some((key.clone(), value.clone(), tag));
        let Ok(resp) = req.send().await else { return };
        let status = resp.status();
        let Ok(body) = resp.json::<Value>().await else {
            return;
        };
        assert_eq!(status, StatusCode::OK, "write {i} ({key}) refused: {body}");
        if key == "snapshot" {
            version = body["version"].as_u64().expect("version");
        } else {
            seqs.insert(conv, body["seq"].as_u64().expect("seq"));
        }
        let mut j = journal.lock().expect("journal");
        j.pending = None;
        j.acked.insert(key, (value, tag));
        j.count += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_drafts_attachments_and_snapshots_survive_sigkill() {
    let mut server = SpawnedServer::start(&bin(), &config(), &["--dev"]);
    let url = server.url();
    let http = Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let minted: Value = http
        .post(format!("{url}/v1/admin/tickets"))
        .bearer_auth(KEY)
        .json(&json!({"user_id": "dora", "role": "editor", "rooms": [ROOM]}))
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("ticket json");
    let ticket = minted["ticket"]
        .as_str()
        .unwrap_or_else(|| panic!("no ticket: {minted}"));
    let r = http
        .post(format!("{url}/v1/session/signin"))
        .json(&json!({"ticket": ticket}))
        .send()
        .await
        .expect("sign in");
    assert!(r.status().is_success(), "sign in: {}", r.status());

    let journal = Arc::new(Mutex::new(Journal::default()));
    let writer = tokio::spawn(write_stream(http.clone(), url.clone(), journal.clone()));
    let (j, w, srv) = (&journal, &writer, &server);
    let acked = wait::until(
        // Bounded by the timeout below, which quotes the log.
        Duration::from_secs(60),
        "the acknowledged writes",
        move || {
            assert!(
                !w.is_finished(),
                "the write stream stopped early; log:\n{}",
                srv.log_tail()
            );
            async move { j.lock().expect("journal").count >= ACKED_BEFORE_KILL }
        },
    );
    // The log tail says why the stream stalled, should it.
    if tokio::time::timeout(Duration::from_secs(30), acked)
        .await
        .is_err()
    {
        panic!("the write stream stalled; log:\n{}", server.log_tail());
    }
    server.kill9();
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("writer stops")
        .expect("writer ok");

    let restarted = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restart");
    let url = restarted.url();
    let journal = Arc::try_unwrap(journal)
        .ok()
        .expect("sole owner")
        .into_inner()
        .expect("journal");
    assert!(journal.count >= ACKED_BEFORE_KILL);
    let in_flight = |key: &str| journal.pending.as_ref().filter(|(k, _, _)| k == key);

    for (key, (value, tag)) in &journal.acked {
        let (got, version) = if let Some(conv) = key.strip_prefix("text:") {
            let r = http
                .get(format!("{url}/v1/drafts/{conv}"))
                .send()
                .await
                .expect("get draft");
            assert_eq!(r.status(), StatusCode::OK, "{key} lost");
            let d: Value = r.json().await.expect("draft json");
            (d["text"].as_str().expect("text").as_bytes().to_vec(), 0)
        } else if let Some(conv) = key.strip_prefix("att:") {
            let r = http
                .get(format!("{url}/v1/drafts/{conv}/attachments/voice.webm"))
                .send()
                .await
                .expect("get attachment");
            assert_eq!(r.status(), StatusCode::OK, "{key} lost");
            (r.bytes().await.expect("attachment bytes").to_vec(), 0)
        } else {
            let r = http
                .get(format!("{url}/v1/rooms/{ROOM}/snapshot"))
                .send()
                .await
                .expect("get snapshot");
            assert_eq!(r.status(), StatusCode::OK, "snapshot lost");
            let v: u64 = r.headers()["x-snapshot-version"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("version");
            (r.bytes().await.expect("snapshot bytes").to_vec(), v)
        };
        let acked_ok = &got == value && version == *tag;
        let landed = in_flight(key).is_some_and(|(_, v, t)| &got == v && version == *t);
        assert!(
            acked_ok || landed,
            "{key}: found {} bytes (version {version}), neither the acknowledged {} bytes (version {tag}) nor the write in flight",
            got.len(),
            value.len()
        );
    }
    let kinds = ["text:", "att:", "snapshot"];
    for k in kinds {
        assert!(
            journal.acked.keys().any(|key| key.starts_with(k)),
            "the stream acknowledged no {k} write"
        );
    }
    drop(restarted);
}
