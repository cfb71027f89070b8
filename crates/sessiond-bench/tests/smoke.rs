//! The tool's smoke run: every target of every scenario (the Redis ones where
//! `redis-server` is on PATH) starts, answers its requests without an error, and the run
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
