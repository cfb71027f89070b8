//! Idempotent get-or-create: one session whatever the concurrency, 422 on a different
//! request with the same key.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_with_one_key_make_one_session() {
    for store in ["sqlite", "memory"] {
        let s = start_with(Opts {
            store,
            ..Default::default()
        })
        .await;
        let c = Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        let key = format!("idem-{}", sessiond_core::token::random_id(16));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (c, url, key) = (c.clone(), s.u("/v1/session"), key.clone());
            tasks.push(tokio::spawn(async move {
                let r = c
                    .post(url)
                    .header("idempotency-key", key)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let token = token_of(r.headers());
                let v: Value = r.json().await.unwrap();
                (status, token, v["handle"].as_str().map(str::to_owned))
            }));
        }
        let mut statuses = Vec::new();
        let mut handles = HashSet::new();
        let mut tokens = HashSet::new();
        for t in tasks {
            let (status, token, handle) = t.await.unwrap();
            statuses.push(status);
            handles.insert(handle.expect("every answer names the session"));
            tokens.insert(token.expect("every answer sets the cookie"));
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed < Duration::from_secs(1),
            "{store}: 200 answers took {elapsed:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{store}: {statuses:?}"
        );
        assert!(statuses.iter().all(|s| *s == 200 || *s == 201));
        assert_eq!(handles.len(), 1, "{store}: one handle");
        assert_eq!(tokens.len(), 1, "{store}: one token");
        let list = s.admin_get("/v1/admin/sessions?state=all").await;
        assert_eq!(
            list["sessions"].as_array().unwrap().len(),
            1,
            "{store}: exactly one session stored"
        );
        let token = tokens.into_iter().next().unwrap();
        assert_eq!(get(&s.u("/v1/session"), &token).await.status(), 200);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_different_request_is_422_and_bad_keys_are_400() {
    let s = start().await;
    let c = Client::new();
    let key = "k-0123456789-unguessable";
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let first: Value = r.json().await.unwrap();
    // `{}` is the same request as an empty body.
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["handle"], first["handle"]);
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    problem(r, 422, "idempotency_mismatch").await;
    for bad in ["short", "has spaces in it", &"x".repeat(256)] {
        let r = c
            .post(s.u("/v1/session"))
            .header("idempotency-key", bad)
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_request").await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_key_of_an_ended_session_says_why() {
    let s = start().await;
    let c = Client::new();
    let key = "k-replay-after-sign-out";
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["token"].as_str(),
        Some(token.as_str())
    );
    let r = c
        .delete(s.u("/v1/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .post(s.u("/v1/session"))
        .header("idempotency-key", key)
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    let p = problem(r, 401, "session_expired").await;
    assert_eq!(p["reason"], "signed_out");
    s.stop().await;
}

/// The key is a bearer credential only briefly: after `idempotency.replay_window` a
/// replay gets 409 `idempotency_expired`, no cookie and no token, though the session
/// lives on (with its own cookie).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_the_window_gets_no_token() {
    let s = start_with(Opts {
        extra: "[idempotency]\nreplay_window = \"1s\"\n",
        ..Default::default()
    })
    .await;
    let c = Client::new();
    let key = "k-window-0123456789abcdef";
    let create = || {
        c.post(s.u("/v1/session"))
            .header("idempotency-key", key)
            .json(&json!({"bearer": true}))
            .send()
    };
    let r = create().await.unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = create().await.unwrap();
    assert_eq!(r.status(), 200, "inside the window");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = create().await.unwrap();
    assert!(r.headers().get("set-cookie").is_none());
    let p = problem(r, 409, "idempotency_expired").await;
    assert!(p.get("token").is_none());
    assert!(!p.to_string().contains(&token));
    assert_eq!(get(&s.u("/v1/session"), &token).await.status(), 200);
    s.stop().await;
}

/// The store indexes the key under the server secret, as the docs say: a record
/// written by the server is not found under the bare SHA-256 of the key (which anyone
/// reading the store could otherwise test guessed keys against).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_key_hash_depends_on_the_server_secret() {
    use sessiond_core::lifecycle::ClientInfo;
    use sessiond_core::policy::Policy;
    use sessiond_core::store::{CreateOutcome, IdempotencyRecord, SessionStore};
    use sessiond_core::Store;
    use sessiond_store_memory::MemoryStore;
    use sha2::{Digest, Sha256};
    use std::sync::Arc;

    let store = Arc::new(MemoryStore::new());
    let whole: Arc<dyn Store> = store.clone();
    let config = sessiond_server::config::Config::from_toml(&format!(
        "store = \"memory\"\ndev = true\napi_keys = [\"{ADMIN_KEY}\"]\nserver_secret = \"s3cret-for-this-test\""
    ))
    .unwrap();
    let server = sessiond_testkit::inproc::TestServer::spawn(
        &DataDir::new(),
        move |listener, shutdown| async move {
            sessiond_server::ServerBuilder::new(config)
                .store(whole)
                .build()
                .await?
                .serve(listener, shutdown)
                .await
        },
    )
    .await;
    let key = "k-secret-mixed-0123456789";
    let r = Client::new()
        .post(server.u("/v1/session"))
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (probe, _) = sessiond_core::lifecycle::new_session(
        1_000,
        "editor",
        &Policy::new(60, 600),
        &ClientInfo::default(),
    );
    let guess = IdempotencyRecord {
        key_hash: hex::encode(Sha256::digest(key.as_bytes())),
        fingerprint: "x".into(),
        handle: probe.handle,
        sealed_token: vec![0; 40],
        created_at: 1_000,
    };
    assert_eq!(
        store
            .create_session(&probe, Some(&guess), &[])
            .await
            .unwrap(),
        CreateOutcome::Created,
        "the bare SHA-256 of the key must not index the server's record"
    );
    drop(server);
}
