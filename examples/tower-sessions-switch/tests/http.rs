//! Drives the example over HTTP: the router in-process on 127.0.0.1:0, and the built
//! binary as a child process.

use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tower_sessions_sessiond_store::SessiondStore;

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, url: &str) -> String {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn counter_counts_per_visitor_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let store = SessiondStore::sqlite(dir.path()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, tower_sessions_switch::app(store))
            .await
            .unwrap()
    });

    let (alice, bob) = (browser(), browser());
    assert_eq!(get(&alice, &url).await, "1");
    assert_eq!(get(&alice, &url).await, "2");
    assert_eq!(get(&bob, &url).await, "1", "each visitor has a session");
    let r = alice.post(format!("{url}reset")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&alice, &url).await, "1", "a reset starts over");
    assert_eq!(get(&bob, &url).await, "2");
    server.abort();
}

#[tokio::test]
async fn the_binary_serves_and_keeps_counts_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = browser();
    let mut last = String::new();
    for round in 0..2 {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tower-sessions-switch"))
            .arg("127.0.0.1:0")
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the example");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the example reports its address in time")
            .unwrap()
            .expect("a line");
        let url = format!("{}/", line.strip_prefix("listening on ").expect(&line));
        last = get(&c, &url).await;
        if round == 0 {
            assert_eq!(last, "1");
            assert_eq!(get(&c, &url).await, "2");
        }
        child.kill().await.unwrap();
    }
    assert_eq!(
        last, "3",
        "the session survived a restart of the app (SQLite)"
    );
}
