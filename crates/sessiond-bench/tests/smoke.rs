//! The tool's smoke run: every target of every scenario (the Redis ones where
//! `redis-server` is on PATH) starts, answers its requests without an error (idle
//! WebSockets stay open and answer pings, every expiring session ends), and the run
//! exits 0 (tiny sizes; the bars are not checked here).

use std::process::Command;

#[test]
fn smoke_run_reaches_every_target_without_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_sessiond-bench"))
        .arg("smoke")
        .output()
        .expect("run sessiond-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "smoke run failed: {stdout}\n{stderr}");
    assert!(stdout.contains("smoke ok"), "{stdout}");
    for target in [
        "bare axum",
        "tower-sessions MemoryStore",
        "sessiond, SQLite",
        "naive axum",
        "drafts / sessiond, SQLite",
        // ws-idle: both WebSocket targets connected, held and pinged without a close.
        "bare axum WS (1 KiB read buffer, no write buffer, a ping timer per socket) 20 connected",
        "sessiond (SQLite, its heartbeat timer) 20 connected",
        // expiry: every session of both runs ended.
        "bulk 2000 ended",
        "burst",
    ] {
        assert!(stdout.contains(target), "{target} was not run: {stdout}");
    }
    // The Redis targets run wherever redis-server does (CI installs it).
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if redis {
        for target in [
            "tower-sessions RedisStore",
            "http-hot / sessiond, Redis",
            "drafts / sessiond, Redis",
            "cluster: node A",
            "revocation refused on B",
        ] {
            assert!(stdout.contains(target), "{target} was not run: {stdout}");
        }
    }
}

/// `serve` (the target for an outside load generator such as wrk): prints its URL, writes
/// the cookies of the sessions it made, answers the hot path with them, and stops by
/// itself when its time is up.
#[test]
fn serve_answers_an_outside_client_and_stops_by_itself() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let cookies = dir.path().join("cookies");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiond-bench"))
        .args(["serve", "sessiond-sqlite", "--for", "3s", "--sessions", "3"])
        .arg("--cookies")
        .arg(&cookies)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run sessiond-bench serve");
    let mut url = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("the URL line");
    let host = url
        .trim()
        .strip_prefix("http://")
        .expect("an http URL")
        .to_owned();
    let list = std::fs::read_to_string(&cookies).expect("cookies written");
    let first: Vec<&str> = list.lines().collect();
    assert_eq!(first.len(), 3, "{list}");
    let mut s = std::net::TcpStream::connect(&host).expect("connect");
    write!(
        s,
        "GET /v1/auth/verify HTTP/1.1\r\nHost: {host}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        first[0]
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = child.wait().expect("serve exits");
    assert!(status.success(), "serve exited with {status}");
}
