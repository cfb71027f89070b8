//! The tool's smoke run: every target of every scenario starts, answers its requests
//! without an error (idle WebSockets stay open and answer pings, every expiring session
//! ends), and the run exits 0 (tiny sizes; the bars are not checked here).

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
        // ws-idle: both WebSocket targets connected, held and pinged without a close.
        "bare axum WS (1 KiB read buffer, no write buffer, a ping timer per socket) 20 connected",
        "sessiond (SQLite, its heartbeat timer) 20 connected",
        // expiry: every session of both runs ended.
        "bulk 2000 ended",
        "burst",
    ] {
        assert!(stdout.contains(target), "{target} was not run: {stdout}");
    }
}
