//! Embedded browser files, the OpenAPI document, ops endpoints and the dev demo API.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};

fn ct(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_openapi_and_ops() {
    let s = start().await;
    let c = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c.get(s.u("/")).send().await.unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["location"], "/demo/");
    for (path, want) in [
        ("/demo/", "text/html; charset=utf-8"),
        ("/admin/", "text/html; charset=utf-8"),
        ("/sdk/sessiond.js", "text/javascript; charset=utf-8"),
        ("/demo/style.css", "text/css; charset=utf-8"),
    ] {
        let r = c.get(s.u(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(ct(&r), want, "{path}");
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    problem(
        c.get(s.u("/demo/nope.js")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    problem(
        c.get(s.u("/sdk/../Cargo.toml")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let doc: Value = c
        .get(s.u("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/session"]["post"].is_object());
    assert!(doc["paths"]["/v1/admin/audit"]["get"].is_object());
    assert_eq!(c.get(s.u("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(c.get(s.u("/readyz")).send().await.unwrap().status(), 200);
    s.stop().await;

    let prod = start_with(Opts {
        dev: false,
        ..Default::default()
    })
    .await;
    let r = c.get(prod.u("/")).send().await.unwrap();
    assert_eq!(r.status(), 404, "no demo redirect outside dev mode");
    let r = c
        .post(prod.u("/demo/api/ticket"))
        .json(&json!({"user_id": "a"}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == 404 || r.status() == 405,
        "no demo API outside dev mode"
    );
    prod.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_api_tickets_and_messages() {
    let s = start().await;
    let c = Client::new();
    let r = c
        .post(s.u("/demo/api/ticket"))
        .json(&json!({"user_id": "dana", "role": "editor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ticket = r.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = c
        .post(s.u("/v1/session/signin"))
        .json(&json!({ "ticket": ticket }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = token_of(r.headers()).unwrap();
    let msg = json!({"conversation": "conv-1", "text": "hello", "attachments": ["voice.webm"]});
    let r = c
        .post(s.u("/demo/api/messages"))
        .json(&msg)
        .send()
        .await
        .unwrap();
    problem(r, 401, "unauthenticated").await;
    let r = c
        .post(s.u("/demo/api/messages"))
        .header("cookie", cookie(&token))
        .json(&msg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad = json!({"conversation": "../x", "text": "t", "attachments": []});
    let r = c
        .post(s.u("/demo/api/messages"))
        .header("cookie", cookie(&token))
        .json(&bad)
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_conversation").await;
    let v: Value = c
        .get(s.u("/demo/api/messages?conversation=conv-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &v["messages"][0];
    assert_eq!(m["id"], id);
    assert_eq!(m["principal"], "user:dana");
    assert_eq!(m["text"], "hello");
    assert_eq!(m["attachments"], json!(["voice.webm"]));
    let v: Value = c
        .get(s.u("/demo/api/messages?conversation=conv-2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["messages"].as_array().unwrap().is_empty());
    s.stop().await;
}
