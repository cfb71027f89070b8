//! CORS of the browser-facing API (issue 14): a page on an `allowed_origins` entry gets
//! its preflights answered and may read answers with credentials; any other origin, and
//! every admin route, gets no CORS header at all.

use crate::common::*;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Response};

const APP: &str = "http://app.example:8080";
const EVIL: &str = "http://evil.example:8080";

async fn cors_server() -> Server {
    start_with(Opts {
        extra: &format!("allowed_origins = [\"{APP}/\"]\n[http]\ncors_max_age = \"90s\"\n"),
        ..Default::default()
    })
    .await
}

async fn preflight(s: &Server, path: &str, origin: &str, method: &str, headers: &str) -> Response {
    Client::new()
        .request(Method::OPTIONS, s.u(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

fn cors_headers(h: &HeaderMap) -> Vec<String> {
    h.keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn vary(h: &HeaderMap) -> String {
    h.get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_gets_preflights_and_credentialed_answers() {
    let s = cors_server().await;
    for (path, method) in [
        ("/v1/session", "POST"),
        ("/v1/session/signin", "POST"),
        ("/v1/drafts/c1", "PUT"),
        ("/v1/rooms/r1/snapshot", "PUT"),
        ("/v1/session", "DELETE"),
    ] {
        let r = preflight(
            &s,
            path,
            APP,
            method,
            "authorization, content-type, idempotency-key",
        )
        .await;
        assert_eq!(r.status(), 204, "{path}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], APP, "exact origin echoed");
        assert_eq!(h["access-control-allow-credentials"], "true");
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains(method), "{methods}");
        let allowed = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for want in [
            "authorization",
            "content-type",
            "idempotency-key",
            "x-room-token",
        ] {
            assert!(allowed.contains(want), "{allowed}");
        }
        assert_eq!(h["access-control-max-age"], "90");
        assert!(vary(h).contains("Origin"), "{}", vary(h));
    }

    // The real requests: create in bearer mode from the page, then use the token.
    let r = Client::new()
        .post(s.u("/v1/session"))
        .header("origin", APP)
        .json(&serde_json::json!({"bearer": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["access-control-allow-origin"], APP);
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let expose = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(expose.contains("X-Snapshot-Version") && expose.contains("Retry-After"));
    assert!(vary(r.headers()).contains("Origin"));
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["token"]
        .as_str()
        .expect("token in bearer mode")
        .to_owned();
    let r = Client::new()
        .post(s.u("/v1/session/renew"))
        .header("origin", APP)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], APP);
    // Errors carry the headers too, so the page can read the problem's code.
    let r = Client::new()
        .get(s.u("/v1/session"))
        .header("origin", APP)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], APP);
    problem(r, 401, "unauthenticated").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_and_admin_routes_get_no_cors() {
    let s = cors_server().await;
    // Another origin, the listed host on another scheme or port, `null`, a doubled header.
    for origin in [
        EVIL,
        "https://app.example:8080",
        "http://app.example",
        "null",
    ] {
        let r = preflight(&s, "/v1/session", origin, "POST", "content-type").await;
        assert_ne!(r.status(), 204, "{origin}");
        assert!(
            cors_headers(r.headers()).is_empty(),
            "{origin}: {:?}",
            r.headers()
        );
        let r = Client::new()
            .get(s.u("/v1/session"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(cors_headers(r.headers()).is_empty(), "{origin}");
    }
    let r = Client::new()
        .request(Method::OPTIONS, s.u("/v1/session"))
        .header("origin", APP)
        .header("origin", EVIL)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(cors_headers(r.headers()).is_empty());
    // A cookie-setting create from another origin is still refused outright (CSRF),
    // whatever CORS would say about reading the answer; nothing is created.
    let r = Client::new()
        .post(s.u("/v1/session"))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("set-cookie").is_none());
    assert!(cors_headers(r.headers()).is_empty());
    problem(r, 403, "forbidden_origin").await;

    // Admin, forward-auth, the SDK files and metrics never answer cross-origin, even to
    // a listed origin.
    for (path, method) in [
        ("/v1/admin/sessions", "GET"),
        ("/v1/admin/tickets", "POST"),
        ("/v1/auth/verify", "GET"),
        ("/sdk/sessiond.js", "GET"),
    ] {
        let r = preflight(&s, path, APP, method, "authorization").await;
        assert!(
            cors_headers(r.headers()).is_empty(),
            "{path}: {:?}",
            r.headers()
        );
    }
    let r = Client::new()
        .get(s.u("/v1/admin/sessions"))
        .header("origin", APP)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(cors_headers(r.headers()).is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allowed_origins_nothing_is_cross_origin() {
    let s = start().await;
    let r = preflight(&s, "/v1/session", APP, "POST", "content-type").await;
    assert!(cors_headers(r.headers()).is_empty());
    // Same-origin requests need no CORS and get none.
    let r = Client::new()
        .post(s.u("/v1/session"))
        .header("origin", &s.url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(cors_headers(r.headers()).is_empty());
    s.stop().await;
}
