//! Creating, resuming, reading and ending a session; cookies; tokens that must never
//! map to a session; session data; the cross-origin check; bad bodies.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sets_a_strict_cookie_and_resumes_with_it() {
    for store in ["sqlite", "memory"] {
        let s = start_with(Opts {
            store,
            ..Default::default()
        })
        .await;
        let jar = Client::builder().cookie_store(true).build().unwrap();
        let r = jar.post(s.u("/v1/session")).send().await.unwrap();
        assert_eq!(r.status(), 201, "{store}");
        let sc = set_cookie(r.headers());
        for attr in ["sessiond=", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(sc.contains(attr), "{attr} missing in {sc}");
        }
        assert!(!sc.contains("Secure"), "dev mode has no Secure: {sc}");
        // A browser-session cookie by default: the server's deadlines end the session.
        assert!(
            !sc.contains("Max-Age") && !sc.contains("Expires"),
            "not persistent: {sc}"
        );
        let created: Value = r.json().await.unwrap();
        assert!(
            created.get("token").is_none(),
            "no token in the body unless asked"
        );
        assert_eq!(created["state"], "active");
        assert_eq!(created["role"], "editor");
        assert_eq!(created["policy"]["idle_timeout"], 900);
        assert!(created["principal"].as_str().unwrap().starts_with("anon:"));

        let again = jar.post(s.u("/v1/session")).send().await.unwrap();
        assert_eq!(again.status(), 200);
        assert!(again.headers().get("set-cookie").is_none());
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["handle"], created["handle"]);
        let read: Value = jar
            .get(s.u("/v1/session"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(read["handle"], created["handle"]);
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_outside_dev_mode() {
    let s = start_with(Opts {
        dev: false,
        ..Default::default()
    })
    .await;
    let r = Client::new().post(s.u("/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(set_cookie(r.headers()).contains("; Secure"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_truncated_or_empty_tokens_never_map_to_a_session() {
    let s = start().await;
    let (token, mine) = s.new_session().await;
    let made_up = "A".repeat(44);
    let candidates = vec![
        made_up,
        // The legacy shape (43 characters) is still a token's, and unknown.
        "A".repeat(43),
        token[..43].to_owned(),
        token[..42].to_owned(),
        token[1..].to_owned(),
        format!("{token}x"),
        format!("{token}="),
        String::new(),
        "null".into(),
        mine["handle"].as_str().unwrap().to_owned(),
        token.to_uppercase(),
    ];
    for bad in &candidates {
        problem(get(&s.u("/v1/session"), bad).await, 401, "unauthenticated").await;
        let r = Client::new()
            .get(s.u("/v1/session"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        problem(r, 401, "unauthenticated").await;
        let r = post(&s.u("/v1/session"), bad).await;
        assert_eq!(r.status(), 201, "a bad token gets a fresh session");
        let fresh: Value = r.json().await.unwrap();
        assert_ne!(fresh["handle"], mine["handle"]);
    }
    problem(
        Client::new().get(s.u("/v1/session")).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    // The real one still works.
    assert_eq!(get(&s.u("/v1/session"), &token).await.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_on_request_and_two_browsers_stay_apart() {
    let s = start().await;
    let r = Client::new()
        .post(s.u("/v1/session"))
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 44);
    let r = Client::new()
        .get(s.u("/v1/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["handle"], v["handle"]);
    assert!(read.get("token").is_none());
    // Same IP, same user agent, same X-Forwarded-For: still two sessions.
    let mut handles = Vec::new();
    for _ in 0..2 {
        let r = Client::new()
            .post(s.u("/v1/session"))
            .header("user-agent", "same-browser/1.0")
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        handles.push(r.json::<Value>().await.unwrap()["handle"].clone());
    }
    assert_ne!(handles[0], handles[1]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_data_round_trip_and_limits() {
    let s = start().await;
    let (token, _) = s.new_session().await;
    let c = Client::new();
    let url = s.u("/v1/session/data/cart:v1");
    // The first write of a session is data, and the next call still finds the session.
    let r = c
        .put(&url)
        .header("cookie", cookie(&token))
        .json(&json!({"items": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(post(&s.u("/v1/session"), &token).await.status(), 200);
    let v: Value = get(&url, &token).await.json().await.unwrap();
    assert_eq!(v, json!({"items": [1, 2]}));
    let r = c
        .put(&url)
        .header("cookie", cookie(&token))
        .json(&json!("second"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        get(&url, &token).await.json::<Value>().await.unwrap(),
        json!("second")
    );
    // Concurrent writes of one key leave one of the values, and later writes still work.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (c, url, token) = (c.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            c.put(&url)
                .header("cookie", cookie(&token))
                .json(&json!(i))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 204);
    }
    let v: Value = get(&url, &token).await.json().await.unwrap();
    assert!(v.as_i64().is_some_and(|i| (0..20).contains(&i)), "{v}");

    let r = c
        .delete(&url)
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(get(&url, &token).await, 404, "not_found").await;
    let r = c
        .put(s.u("/v1/session/data/bad%20key"))
        .header("cookie", cookie(&token))
        .json(&1)
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    let long_key = "k".repeat(129);
    let r = c
        .put(s.u(&format!("/v1/session/data/{long_key}")))
        .header("cookie", cookie(&token))
        .json(&1);
    problem(r.send().await.unwrap(), 400, "invalid_request").await;
    let big = json!("x".repeat(70 * 1024));
    let r = c
        .put(&url)
        .header("cookie", cookie(&token))
        .json(&big)
        .send()
        .await
        .unwrap();
    problem(r, 413, "payload_too_large").await;
    let r = c
        .put(&url)
        .header("cookie", cookie(&token))
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    // Another session does not see this one's data.
    let (other, _) = s.new_session().await;
    c.put(&url)
        .header("cookie", cookie(&token))
        .json(&json!("mine"))
        .send()
        .await
        .unwrap();
    problem(get(&url, &other).await, 404, "not_found").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_ends_the_session_and_clears_the_cookie() {
    let s = start().await;
    let (token, v) = s.new_session().await;
    let r = Client::new()
        .delete(s.u("/v1/session"))
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let sc = set_cookie(r.headers());
    assert!(
        sc.starts_with("sessiond=;") && sc.contains("Max-Age=0"),
        "{sc}"
    );
    let p = problem(
        get(&s.u("/v1/session"), &token).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(p["reason"], "signed_out");
    let ended: Vec<Value> = s.audit_of(v["handle"].as_str().unwrap()).await;
    assert!(ended
        .iter()
        .any(|e| e["kind"] == "ended" && e["reason"] == "signed_out"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_writes_from_another_origin_are_refused() {
    let s = start_with(Opts {
        extra: "allowed_origins = [\"https://app.example\"]",
        ..Default::default()
    })
    .await;
    let (token, _) = s.new_session().await;
    let c = Client::new();
    let act = s.u("/v1/session/activity");
    let r = c
        .post(&act)
        .header("cookie", cookie(&token))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    let r = c
        .post(&act)
        .header("cookie", cookie(&token))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    let r = c
        .delete(s.u("/v1/session"))
        .header("cookie", cookie(&token))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    let r = c
        .post(s.u("/v1/session"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    // The session is untouched; allowed and own origins pass; reads pass.
    assert_eq!(get(&s.u("/v1/session"), &token).await.status(), 200);
    let r = c
        .post(&act)
        .header("cookie", cookie(&token))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let own = s.url.clone();
    let r = c
        .post(&act)
        .header("cookie", cookie(&token))
        .header("origin", own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(s.u("/v1/session"))
        .header("cookie", cookie(&token))
        .header("origin", "https://evil.example");
    assert_eq!(r.send().await.unwrap().status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_problems() {
    let s = start().await;
    let c = Client::new();
    let r = c
        .post(s.u("/v1/session"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    let r = c
        .post(s.u("/v1/session"))
        .json(&json!({"bearer": "yes"}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    let r = c
        .post(s.u("/v1/session"))
        .json(&json!({"unknown": 1}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    let r = c
        .post(s.u("/v1/session/signin"))
        .body("[]")
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    // `{}` is a valid create.
    assert_eq!(
        c.post(s.u("/v1/session"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_verify() {
    let s = start().await;
    let (token, v) = s.new_session().await;
    let r = get(&s.u("/v1/auth/verify"), &token).await;
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-session-handle"], v["handle"].as_str().unwrap());
    assert_eq!(h["x-session-principal"], v["principal"].as_str().unwrap());
    assert_eq!(h["x-session-role"], "editor");
    let before: Value = get(&s.u("/v1/session"), &token).await.json().await.unwrap();
    // A touch now would move `last_activity_at`: the wall clock is past it.
    let last = sessiond_server::routes::admin::parse_time(
        before["last_activity_at"]
            .as_str()
            .expect("last_activity_at"),
    )
    .expect("RFC 3339");
    sessiond_testkit::wait::until(
        sessiond_testkit::wait::DEFAULT,
        "the wall clock to pass the last activity",
        || async { sessiond_core::Clock::now(&sessiond_core::SystemClock) > last },
    )
    .await;
    let passive = Client::new()
        .get(s.u("/v1/auth/verify"))
        .bearer_auth(&token)
        .header("x-sessiond-touch", "0");
    assert_eq!(passive.send().await.unwrap().status(), 200);
    let after: Value = get(&s.u("/v1/session"), &token).await.json().await.unwrap();
    assert_eq!(
        before["last_activity_at"], after["last_activity_at"],
        "X-Sessiond-Touch: 0 is not activity"
    );
    // A query parameter rides along with the client's own URL (Envoy appends it): it is
    // not the switch.
    assert_eq!(
        get(&s.u("/v1/auth/verify?touch=false"), &token)
            .await
            .status(),
        200
    );
    let touched: Value = get(&s.u("/v1/session"), &token).await.json().await.unwrap();
    assert_ne!(
        before["last_activity_at"], touched["last_activity_at"],
        "verify counts as activity"
    );
    problem(
        Client::new()
            .get(s.u("/v1/auth/verify"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    problem(
        get(&s.u("/v1/auth/verify"), &"B".repeat(43)).await,
        401,
        "unauthenticated",
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_key_is_per_principal() {
    let s = start().await;
    let (a, va) = s.new_session().await;
    let (b, _) = s.new_session().await;
    let ka: Value = get(&s.u("/v1/session/local-key"), &a)
        .await
        .json()
        .await
        .unwrap();
    let ka2: Value = get(&s.u("/v1/session/local-key"), &a)
        .await
        .json()
        .await
        .unwrap();
    let kb: Value = get(&s.u("/v1/session/local-key"), &b)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ka["principal"], va["principal"]);
    assert_eq!(ka["key"], ka2["key"]);
    assert_ne!(ka["key"], kb["key"]);
    assert_eq!(ka["key"].as_str().unwrap().len(), 44, "base64 of 32 bytes");
    problem(
        get(&s.u("/v1/session/local-key"), &"C".repeat(43)).await,
        401,
        "unauthenticated",
    )
    .await;
    s.stop().await;
}
