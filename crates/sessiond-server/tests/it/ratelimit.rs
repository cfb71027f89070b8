//! Rate limits (`[rate_limits]`): over a per-IP or per-session limit a request is 429
//! `rate_limited` with `Retry-After`, and nothing is written; other clients are not
//! affected; the limit refills.

use crate::common::*;
use reqwest::Client;
use serde_json::Value;
use sessiond_testkit::wait;
use std::time::Duration;

/// Creates a session as the client `ip` (the test server trusts 127.0.0.1 as a proxy).
async fn create_as(s: &Server, ip: &str) -> reqwest::Response {
    Client::new()
        .post(s.u("/v1/session"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

async fn stored_sessions(s: &Server) -> usize {
    s.admin_get("/v1/admin/sessions?state=all").await["sessions"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_is_limited_per_client_ip_and_refills() {
    let s = start_with(Opts {
        extra: "trusted_proxies = [\"127.0.0.1\"]\n\
                [rate_limits]\ncreate = { per_ip = { burst = 3, period = \"3s\" } }\n",
        ..Opts::default()
    })
    .await;
    let mut token = String::new();
    for _ in 0..3 {
        let r = create_as(&s, "203.0.113.1").await;
        assert_eq!(r.status(), 201);
        token = token_of(r.headers()).unwrap();
    }
    let r = create_as(&s, "203.0.113.1").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    problem(r, 429, "rate_limited").await;
    assert_eq!(
        stored_sessions(&s).await,
        3,
        "the refused create stored nothing"
    );
    // A caller with a live session gets it back: that costs nothing and is not limited.
    let r = Client::new()
        .post(s.u("/v1/session"))
        .header("x-forwarded-for", "203.0.113.1")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Another client IP behind the same proxy has its own limit.
    assert_eq!(create_as(&s, "203.0.113.2").await.status(), 201);
    let metrics = Client::new()
        .get(s.u("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sessiond_rate_limited_total{scope=\"create\"}"),
        "{metrics}"
    );
    // One cell refills every second.
    wait::until(
        Duration::from_secs(5),
        "the create limit refills",
        || async { create_as(&s, "203.0.113.1").await.status() == 201 },
    )
    .await;
    assert_eq!(stored_sessions(&s).await, 5);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_and_writes_are_limited_per_session() {
    let s = start_with(Opts {
        extra: "[rate_limits]\n\
                renew = { per_session = { burst = 2, period = \"1m\" } }\n\
                write = { per_session = { burst = 2, period = \"1m\" } }\n",
        ..Opts::default()
    })
    .await;
    let c = Client::new();
    let a = s.bearer_session().await;
    let b = s.bearer_session().await;
    let renew = |t: &str| c.post(s.u("/v1/session/renew")).bearer_auth(t).send();
    assert_eq!(renew(&a.token).await.unwrap().status(), 200);
    assert_eq!(renew(&a.token).await.unwrap().status(), 200);
    let r = renew(&a.token).await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429, "rate_limited").await;
    // Another session from the same IP is not affected.
    assert_eq!(renew(&b.token).await.unwrap().status(), 200);

    let put = |t: &str, k: &str| {
        c.put(s.u(&format!("/v1/session/data/{k}")))
            .bearer_auth(t)
            .body("{\"v\":1}")
            .send()
    };
    assert_eq!(put(&a.token, "k1").await.unwrap().status(), 204);
    assert_eq!(put(&a.token, "k2").await.unwrap().status(), 204);
    problem(put(&a.token, "k3").await.unwrap(), 429, "rate_limited").await;
    let r = c
        .get(s.u("/v1/session/data/k3"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the refused write stored nothing");
    assert_eq!(put(&b.token, "k3").await.unwrap().status(), 204);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_limited_per_ip() {
    let s = start_with(Opts {
        extra: "[rate_limits]\nws = { per_ip = { burst = 2, period = \"1m\" } }\n",
        ..Opts::default()
    })
    .await;
    let a = s.bearer_session().await;
    let _w1 = sessiond_testkit::ws::connect_bearer(&s.ws_url, &a.token).await;
    let _w2 = sessiond_testkit::ws::connect_bearer(&s.ws_url, &a.token).await;
    let err = sessiond_testkit::ws::connect(
        &s.ws_url,
        &[(
            "sec-websocket-protocol",
            format!("sessiond.v1, bearer.{}", a.token),
        )],
    )
    .await
    .expect_err("the third upgrade is refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            assert_eq!(r.status(), 429);
            assert!(r.headers().contains_key("retry-after"));
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap_or(b"{}")).unwrap();
            assert_eq!(body["code"], "rate_limited");
        }
        e => panic!("expected an HTTP refusal, got {e}"),
    }
    s.stop().await;
}
