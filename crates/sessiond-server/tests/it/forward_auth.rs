//! Forward-auth (`/v1/auth/verify`) as an attacker meets it: every method is answered,
//! every identity header is always set (so a proxy overwrites a spoofed copy), and a
//! cookie-authenticated unsafe request from another origin is refused whatever the
//! forwarded headers try to hide. The real-nginx test is `tests/nginx.rs`.

use crate::common::*;
use reqwest::{Client, Method, RequestBuilder};
use sessiond_testkit::http::Browser;
use sessiond_testkit::inproc::TICKET_SECRET;

/// A cookie-authenticated verify call as a proxy makes it for `app.example`.
fn proxied(c: &Client, s: &Server, method: Method, cookie: &str) -> RequestBuilder {
    c.request(method, s.u("/v1/auth/verify"))
        .header("cookie", cookie)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_answers_every_method_with_every_header() {
    let s = start().await;
    let b = Browser::new(&s.url);
    b.new_session().await;
    let anon = b.cookie_header();
    let c = Client::new();
    for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        // The original method as Envoy forwards it, same-origin.
        let r = proxied(&c, &s, m.clone(), &anon)
            .header("origin", "https://app.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{m}");
        let h = r.headers();
        // The route's edge, though the front layer answers it without routing.
        assert_eq!(h["cache-control"], "no-store", "{m}");
        assert!(!h["x-request-id"].is_empty(), "{m}");
        assert!(h["x-session-principal"]
            .to_str()
            .unwrap()
            .starts_with("anon:"));
        assert_eq!(h["x-session-role"], "editor");
        assert!(!h["x-session-handle"].is_empty());
        // Present and empty: a proxy copying it replaces the client's `admin`.
        assert_eq!(
            h.get("x-session-user").map(|v| v.as_bytes()),
            Some(&b""[..]),
            "{m}"
        );
    }
    b.sign_in_with(
        &sessiond_testkit::http::hs256_ticket(TICKET_SECRET, "alice", "editor", None),
        "alice",
    )
    .await;
    let r = proxied(&c, &s, Method::GET, &b.cookie_header())
        .header("x-session-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-session-user"], "alice");
    assert_eq!(r.headers()["x-session-principal"], "user:alice");
    // The handle header names the session the cookie holds.
    let me: serde_json::Value = c
        .get(s.u("/v1/session"))
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["x-session-handle"],
        me["handle"].as_str().unwrap()
    );
    // No session: a problem+json 401, with the same edge and the caller's request id.
    let r = c
        .get(s.u("/v1/auth/verify"))
        .header("x-request-id", "proxy-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-request-id"], "proxy-7");
    // Timed under its own route, by status class.
    let metrics = c
        .get(s.u("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for status in ["2xx", "4xx"] {
        let series = format!(
            "sessiond_http_request_duration_seconds_count{{route=\"/v1/auth/verify\",method=\"GET\",status=\"{status}\"}}"
        );
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_cross_site_unsafe_requests() {
    let s = start_with(Opts {
        extra: "allowed_origins = [\"https://partner.example\"]",
        ..Default::default()
    })
    .await;
    let (token, _) = s.new_session().await;
    let ck = cookie(&token);
    let c = Client::new();
    let fwd =
        |m: &str| proxied(&c, &s, Method::GET, &ck).header("x-forwarded-method", m.to_owned());
    // nginx / Traefik: the original method in X-Forwarded-Method.
    for (m, origin) in [
        ("POST", "https://evil.example"),
        ("PUT", "https://evil.example"),
        ("PATCH", "https://evil.example"),
        ("DELETE", "https://evil.example"),
        ("PROPFIND", "https://evil.example"),
        ("POST", "null"),
        ("POST", "http://app.example"),
        ("POST", "https://app.example:8443"),
        ("POST", "https://app.example.evil.example"),
    ] {
        let r = fwd(m).header("origin", origin).send().await.unwrap();
        problem(r, 403, "forbidden_origin").await;
    }
    let r = fwd("POST")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    let r = fwd("POST")
        .header("referer", "https://evil.example/form")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    // Envoy: the method itself; an X-Forwarded-Method: GET cannot hide it.
    let r = proxied(&c, &s, Method::POST, &ck)
        .header("x-forwarded-method", "GET")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    // An unreadable forwarded method or host is not believed.
    let r = fwd("GET")
        .header("x-forwarded-method", "GET")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    let r = c
        .post(s.u("/v1/auth/verify"))
        .header("cookie", &ck)
        .header("x-forwarded-host", "app.example, evil.example")
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;

    // What passes: same origin, an allowed origin, reads from anywhere, bearer tokens.
    for origin in [
        "https://app.example",
        "https://APP.example:443",
        "https://partner.example",
    ] {
        let r = fwd("POST").header("origin", origin).send().await.unwrap();
        assert_eq!(r.status(), 200, "{origin}");
    }
    let r = fwd("POST")
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = fwd("GET")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a cross-site read is not refused");
    let r = c
        .post(s.u("/v1/auth/verify"))
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a bearer token is no ambient credential");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_touch_switch_is_a_header() {
    let s = start().await;
    let (token, _) = s.new_session().await;
    for bad in ["no", "2", ""] {
        let r = Client::new()
            .get(s.u("/v1/auth/verify"))
            .bearer_auth(&token)
            .header("x-sessiond-touch", bad)
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_request").await;
    }
    s.stop().await;
}
