//! The admin API: listing with filters and pages, revoke, sign-out-everywhere, the
//! audit query, and API-key checks.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::HashSet;

async fn signed_in(s: &Server, user: &str) -> (String, Value) {
    let r = Client::new()
        .post(s.u("/v1/session/signin"))
        .json(&json!({ "ticket": s.ticket(user, "editor").await }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    (token_of(r.headers()).unwrap(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_sign_out_everywhere_end_with_revoked() {
    let s = start().await;
    let (a1, v1) = signed_in(&s, "alice").await;
    let (a2, _) = signed_in(&s, "alice").await;
    let (a3, _) = signed_in(&s, "alice").await;
    let (anon, _) = s.new_session().await;
    let c = Client::new();
    let h1 = v1["handle"].as_str().unwrap();
    let r = c
        .delete(s.u(&format!("/v1/admin/sessions/{h1}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let p = problem(get(&s.u("/v1/session"), &a1).await, 401, "session_expired").await;
    assert_eq!(p["reason"], "revoked");
    let one: Value = s.admin_get(&format!("/v1/admin/sessions/{h1}")).await;
    assert_eq!(one["state"], "ended");
    assert_eq!(one["reason"], "revoked");
    let r = c
        .delete(s.u("/v1/admin/principals/user:alice/sessions"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ended": 2}));
    for t in [&a2, &a3] {
        let p = problem(get(&s.u("/v1/session"), t).await, 401, "session_expired").await;
        assert_eq!(p["reason"], "revoked");
    }
    assert_eq!(
        get(&s.u("/v1/session"), &anon).await.status(),
        200,
        "other principals are untouched"
    );
    let ev = s
        .admin_get("/v1/admin/audit?kind=ended&reason=revoked&principal=user:alice")
        .await;
    assert_eq!(ev["events"].as_array().unwrap().len(), 3);
    let unknown = sessiond_core::Handle::generate();
    let r = c
        .delete(s.u(&format!("/v1/admin/sessions/{unknown}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    problem(r, 404, "not_found").await;
    let r = c
        .get(s.u("/v1/admin/sessions/garbage"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    problem(r, 404, "not_found").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_filters_and_pages() {
    let s = start().await;
    let mut all = HashSet::new();
    for _ in 0..5 {
        let (_, v) = s.new_session().await;
        all.insert(v["handle"].as_str().unwrap().to_owned());
    }
    let (_, bob) = signed_in(&s, "bob").await;
    all.insert(bob["handle"].as_str().unwrap().to_owned());
    let mut seen = HashSet::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let v = s
            .admin_get(&format!("/v1/admin/sessions?limit=2&after={after}"))
            .await;
        pages += 1;
        for sess in v["sessions"].as_array().unwrap() {
            assert!(
                seen.insert(sess["handle"].as_str().unwrap().to_owned()),
                "no duplicates across pages"
            );
            assert_eq!(sess["connections"], 0);
            assert!(sess.get("token").is_none());
        }
        match v["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(seen, all);
    let v = s.admin_get("/v1/admin/sessions?principal=user:bob").await;
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(v["sessions"][0]["handle"], bob["handle"]);
    assert_eq!(v["next"], Value::Null);
    let v = s.admin_get("/v1/admin/sessions?role=viewer").await;
    assert!(v["sessions"].as_array().unwrap().is_empty());
    let r = Client::new()
        .get(s.u("/v1/admin/sessions?state=weird"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_by_time_and_pages() {
    let s = start().await;
    let t0 = sessiond_core::Clock::now(&sessiond_core::SystemClock) - 1;
    for _ in 0..3 {
        s.new_session().await;
    }
    let since = sessiond_core::clock::to_rfc3339(t0);
    let v = s
        .admin_get(&format!(
            "/v1/admin/audit?kind=created&since={since}&limit=2"
        ))
        .await;
    let first = v["events"].as_array().unwrap().clone();
    assert_eq!(first.len(), 2);
    assert!(
        first[0]["id"].as_i64() > first[1]["id"].as_i64(),
        "newest first"
    );
    assert!(first[0]["at"].as_str().unwrap().ends_with('Z'));
    let next = v["next"].as_i64().expect("a next page");
    let v = s
        .admin_get(&format!(
            "/v1/admin/audit?kind=created&since={t0}&limit=2&before={next}"
        ))
        .await;
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    let v = s
        .admin_get(&format!("/v1/admin/audit?kind=created&until={t0}"))
        .await;
    assert!(v["events"].as_array().unwrap().is_empty());
    for bad in ["since=yesterday", "kind=exploded", "limit=x"] {
        let r = Client::new()
            .get(s.u(&format!("/v1/admin/audit?{bad}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_request").await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_needs_a_valid_api_key() {
    let s = start().await;
    let (token, _) = s.new_session().await;
    let c = Client::new();
    for path in ["/v1/admin/sessions", "/v1/admin/audit"] {
        problem(c.get(s.u(path)).send().await.unwrap(), 403, "forbidden").await;
        problem(
            c.get(s.u(path))
                .bearer_auth("wrong-key-wrong")
                .send()
                .await
                .unwrap(),
            403,
            "forbidden",
        )
        .await;
        // A session token is not an API key.
        problem(
            c.get(s.u(path)).bearer_auth(&token).send().await.unwrap(),
            403,
            "forbidden",
        )
        .await;
    }
    let r = c
        .post(s.u("/v1/admin/tickets"))
        .json(&json!({"user_id": "x", "role": "editor"}))
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
    s.stop().await;
}
