//! `internal_listen`: operators' paths only on the internal listener, the public one
//! answering 404 for them; readiness without the node id on the public side; the
//! security headers of the embedded HTML pages.

use crate::common::*;
use reqwest::Client;
use serde_json::Value;
use sessiond_server::config::Config;
use std::time::Duration;

/// A server on two listeners; returns the public and internal base URLs and the stop.
async fn start_split() -> (String, String, tokio::sync::oneshot::Sender<()>, DataDir) {
    let dir = DataDir::new();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = Config::from_toml(&format!(
        "store = \"memory\"\ndev = true\napi_keys = [\"{ADMIN_KEY}\"]\n"
    ))
    .unwrap();
    config.internal_listen = Some(internal.local_addr().unwrap());
    config.data_dir = dir.path().join("data");
    let (pu, iu) = (
        format!("http://{}", public.local_addr().unwrap()),
        format!("http://{}", internal.local_addr().unwrap()),
    );
    let server = sessiond_server::ServerBuilder::new(config)
        .build()
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve_split(public, Some(internal), async move {
        let _ = rx.await;
    }));
    let c = Client::new();
    for _ in 0..100 {
        if c.get(format!("{pu}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (pu, iu, tx, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_listener_takes_the_operators_paths() {
    let (pu, iu, stop, _dir) = start_split().await;
    let c = Client::new();
    let admin =
        |base: &str, path: &str| c.get(format!("{base}{path}")).bearer_auth(ADMIN_KEY).send();
    for path in [
        "/v1/admin/sessions",
        "/admin/",
        "/admin/admin.js",
        "/metrics",
        "/readyz",
    ] {
        problem(admin(&pu, path).await.unwrap(), 404, "not_found").await;
        assert_eq!(admin(&iu, path).await.unwrap().status(), 200, "{path}");
    }
    // The public surface stays public, and is not served on the internal listener.
    let r = c.post(format!("{pu}/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        c.get(format!("{pu}/demo/")).send().await.unwrap().status(),
        200
    );
    problem(
        c.get(format!("{iu}/demo/")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    problem(
        c.post(format!("{iu}/v1/session")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    for base in [&pu, &iu] {
        assert_eq!(
            c.get(format!("{base}/healthz"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // Readiness names the node only to operators.
    let ready: Value = admin(&iu, "/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(
        ready["node"].as_str().is_some_and(|n| !n.is_empty()),
        "{ready}"
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listener_serves_everything_and_readiness_is_anonymous() {
    let s = start().await;
    let c = Client::new();
    let ready: Value = c
        .get(s.u("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(
        ready.get("node").is_none(),
        "public readiness names no node: {ready}"
    );
    let r = c
        .get(s.u("/v1/admin/sessions"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_pages_carry_security_headers() {
    let s = start().await;
    let c = Client::new();
    for path in ["/admin/", "/demo/", "/admin/index.html"] {
        let r = c.get(s.u(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    s.stop().await;
}
