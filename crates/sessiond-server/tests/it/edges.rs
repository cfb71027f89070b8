//! The HTTP edge: 404 and 405 as problem+json, request ids, `no-store`, body limits.

use crate::common::*;
use reqwest::{Client, Method};
use serde_json::json;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_are_problems() {
    let s = start().await;
    let c = Client::new();
    for path in ["/v1/nope", "/v1/session/nope", "/nothing-here"] {
        problem(c.get(s.u(path)).send().await.unwrap(), 404, "not_found").await;
    }
    for (method, path, allowed) in [
        (Method::PATCH, "/v1/session", "GET,HEAD,POST,DELETE"),
        (Method::PUT, "/v1/session/activity", "POST"),
        (Method::POST, "/v1/admin/audit", "GET,HEAD"),
        (Method::DELETE, "/healthz", "GET,HEAD"),
    ] {
        let r = c.request(method.clone(), s.u(path)).send().await.unwrap();
        let mut allow: Vec<String> = header(&r, "allow")
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        allow.sort();
        let mut want: Vec<&str> = allowed.split(',').collect();
        want.sort();
        assert_eq!(allow, want, "{method} {path}");
        let p = problem(r, 405, "method_not_allowed").await;
        assert!(
            p["detail"].as_str().unwrap().contains(method.as_str()),
            "{p}"
        );
    }
    // The embedded web pages keep their own answers.
    let r = c.post(s.u("/demo/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_ne!(header(&r, "content-type"), "application/problem+json");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let s = start().await;
    let c = Client::new();
    let r = c
        .get(s.u("/v1/session"))
        .header("x-request-id", "it-req-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-request-id"), "it-req-0001");
    problem(r, 401, "unauthenticated").await;

    let mut seen = Vec::new();
    for sent in [
        None,
        Some("has space"),
        Some(&*"x".repeat(129)),
        Some("ok\u{1}"),
    ] {
        let mut req = c.get(s.u("/healthz"));
        if let Some(v) = sent {
            req = req.header("x-request-id", v);
        }
        let Ok(r) = req.send().await else {
            // A control character may be refused by the client itself: nothing to check.
            continue;
        };
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-request-id");
        assert!(
            !id.is_empty() && Some(id.as_str()) != sent && id.len() <= 128,
            "{sent:?} -> {id:?}"
        );
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert!(seen.len() >= 3, "generated ids are unique: {seen:?}");

    // Errors carry it too, and the request's span records it with the route.
    let r = c
        .patch(s.u("/v1/session"))
        .header("x-request-id", "it-req-0002")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-request-id"), "it-req-0002");
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let line = logs
        .lines()
        .find(|l| l.contains("it-req-0001") && l.contains("answered"))
        .expect("a log line of the request");
    assert!(line.contains("route=/v1/session "), "{line}");
    assert!(line.contains("method=GET"), "{line}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_are_not_stored_and_bodies_are_limited() {
    let s = start().await;
    let c = Client::new();
    let (token, _) = s.new_session().await;
    let r = get(&s.u("/v1/session"), &token).await;
    assert_eq!(header(&r, "cache-control"), "no-store");
    let r = c.get(s.u("/v1/session")).send().await.unwrap();
    assert_eq!(header(&r, "cache-control"), "no-store", "errors too");
    let r = get(&s.u("/v1/drafts"), &token).await;
    assert_eq!(header(&r, "cache-control"), "private, no-store");
    let r = c.get(s.u("/healthz")).send().await.unwrap();
    assert_eq!(
        header(&r, "cache-control"),
        "",
        "ops answers are not API state"
    );

    // Over the session routes' 64 KiB: 413 problem before any handler work.
    let r = c
        .post(s.u("/v1/session"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"bearer\": false, \"pad\": \"{}\"}}",
            "x".repeat(70 * 1024)
        ))
        .send()
        .await
        .unwrap();
    problem(r, 413, "payload_too_large").await;
    // Bad JSON on every JSON extractor is the same 400.
    let r = c
        .post(s.u("/v1/admin/tickets"))
        .bearer_auth(ADMIN_KEY)
        .body("{oops")
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    let r = c
        .post(s.u("/v1/admin/tickets"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"user_id": 5}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    s.stop().await;
}
