//! HTTP timeouts and connection caps on real TCP sockets: a client that stalls in its
//! request head or body is cut off within the configured time while others are served,
//! and a connection over the per-IP cap is closed at once.

use crate::common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(s: &Server) -> SocketAddr {
    s.url.trim_start_matches("http://").parse().expect("addr")
}

async fn server(http: &str) -> Server {
    let extra = format!("[http]\n{http}\n");
    start_with(Opts {
        store: "memory",
        extra: &extra,
        ..Default::default()
    })
    .await
}

/// Reads until the server closes the connection (EOF or reset), at most `within`;
/// returns what it read, or `None` when the connection was still open.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

/// One whole keep-alive request on a raw connection; the status line's code.
async fn healthz_on(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_header_line_is_cut_off_while_others_are_served() {
    let s = server("header_read_timeout = \"1s\"").await;
    let mut slow = TcpStream::connect(addr(&s)).await.expect("connect");
    slow.write_all(b"GET /healthz HT").await.expect("write");
    let started = Instant::now();
    // Meanwhile another client is served.
    let r = reqwest::get(s.u("/healthz")).await.expect("healthz");
    assert_eq!(r.status(), 200);
    let closed = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a stalled request head holds its socket");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_and_closed() {
    let s = server("body_idle_timeout = \"1s\"").await;
    let mut slow = TcpStream::connect(addr(&s)).await.expect("connect");
    slow.write_all(
        b"POST /v1/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"role\":",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let r = reqwest::get(s.u("/healthz")).await.expect("healthz");
    assert_eq!(r.status(), 200);
    let answer = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("a stalled body holds its socket");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_per_ip_cap_is_closed_at_once() {
    const CAP: usize = 4;
    let s = server(&format!(
        "header_read_timeout = \"2s\"\nmax_connections_per_ip = {CAP}"
    ))
    .await;
    // The harness's own pooled connections are closed by the idle timer first.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
        assert_eq!(healthz_on(&mut c).await, 200);
        held.push(c);
    }
    let mut over = TcpStream::connect(addr(&s))
        .await
        .expect("the kernel accepts");
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = closed_within(&mut over, Duration::from_millis(800))
        .await
        .expect("a connection over the cap is served or held");
    assert_eq!(answer, "", "closed before any answer");
    // One closes: its place is free again.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
        let _ = c
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await;
        let answer = closed_within(&mut c, Duration::from_secs(2))
            .await
            .unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the freed place is not reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_keeps_its_place_under_the_cap() {
    let s = server("header_read_timeout = \"1s\"\nmax_connections_per_ip = 1").await;
    // Idle connections (the harness's, the creating client's) are closed by the idle timer.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sess = s.bearer_session().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ws = sessiond_testkit::ws::connect_bearer(&s.ws_url, &sess.token).await;
    // The upgraded socket still holds the one place: a second connection is closed at once.
    let mut over = TcpStream::connect(addr(&s))
        .await
        .expect("the kernel accepts");
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = closed_within(&mut over, Duration::from_millis(800)).await;
    assert_eq!(answer.as_deref(), Some(""), "a WebSocket does not count");
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_max_in_flight_is_shed_with_503_and_changes_nothing() {
    // One place: a create whose body is still coming holds it.
    let s = server("max_in_flight = 1\nbody_idle_timeout = \"10s\"").await;
    let mut slow = TcpStream::connect(addr(&s)).await.expect("connect");
    let body = b"{   }";
    slow.write_all(
        format!(
            "POST /v1/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Connection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("write head");
    slow.write_all(&body[..2]).await.expect("write part");
    let c = reqwest::Client::new();
    // The slow request reaches its handler on another task: wait until its place is taken.
    let shed = sessiond_testkit::wait::until_some(
        Duration::from_secs(5),
        "a second request shed while the first holds the only place",
        || async {
            let r = c
                .post(s.u("/v1/session"))
                .json(&serde_json::json!({}))
                .send()
                .await
                .ok()?;
            (r.status() == 503).then_some(r)
        },
    )
    .await;
    assert_eq!(
        shed.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(
        shed.headers().get("set-cookie").is_none(),
        "no session was made"
    );
    let p: serde_json::Value = shed.json().await.expect("problem+json");
    assert_eq!(p["code"], "overloaded", "{p}");
    assert_eq!(p["status"], 503);
    // The operator's view is never refused.
    let m = c.get(s.u("/metrics")).send().await.expect("metrics");
    assert_eq!(m.status(), 200);
    let text = m.text().await.expect("metrics text");
    assert!(
        text.contains("sessiond_requests_shed_total"),
        "shed requests are counted"
    );
    assert_eq!(
        c.get(s.u("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    // The first finishes: it was served, and its place is free again.
    slow.write_all(&body[2..]).await.expect("write rest");
    let answer = closed_within(&mut slow, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let r = c
        .post(s.u("/v1/session"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
}
