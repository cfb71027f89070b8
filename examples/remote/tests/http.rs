//! Drives the remote example over HTTP against a real sessiond server from the testkit:
//! its router in-process, and its binary as a process.

use serde_json::{json, Value};
use sessiond_testkit::inproc::{base_toml, TestServer, ADMIN_KEY};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A session made on the sessiond server, as the browser SDK makes it: its cookie.
async fn browser_session(server: &TestServer) -> String {
    let r = reqwest::Client::new()
        .post(server.u("/v1/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    sessiond_testkit::http::cookie(&sessiond_testkit::http::token_of(r.headers()).unwrap())
}

async fn call(
    url: &str,
    method: reqwest::Method,
    cookie: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("cookie", cookie);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_checks_and_acts_through_the_sessiond_server() {
    let server = TestServer::start(&base_toml("memory")).await;
    let sessiond = example_remote::sessiond(&server.url, ADMIN_KEY, false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, example_remote::app(&sessiond))
            .await
            .unwrap()
    });

    let (status, v) = call(&format!("{url}/api/me"), reqwest::Method::GET, "", None).await;
    assert_eq!((status, v["reason"].as_str()), (401, Some("absent")));

    let cookie = browser_session(&server).await;
    let (status, me) = call(
        &format!("{url}/api/me"),
        reqwest::Method::GET,
        &cookie,
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert!(me["principal"].as_str().unwrap().starts_with("anon:"));

    let (status, v) = call(
        &format!("{url}/api/note"),
        reqwest::Method::PUT,
        &cookie,
        Some(json!("remember the milk")),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = call(
        &format!("{url}/api/note"),
        reqwest::Method::GET,
        &cookie,
        None,
    )
    .await;
    assert_eq!(v, json!("remember the milk"));

    // Sign-in rotates the token: the answer sets the new cookie, the same session.
    let r = reqwest::Client::new()
        .post(format!("{url}/api/login"))
        .header("cookie", &cookie)
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let signed_in =
        sessiond_testkit::http::cookie(&sessiond_testkit::http::token_of(r.headers()).unwrap());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (&v["handle"], v["user_id"].as_str()),
        (&me["handle"], Some("alice"))
    );
    let (status, _) = call(
        &format!("{url}/api/logout"),
        reqwest::Method::POST,
        &signed_in,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(
        &format!("{url}/api/me"),
        reqwest::Method::GET,
        &signed_in,
        None,
    )
    .await;
    assert_eq!((status, v["reason"].as_str()), (401, Some("signed_out")));
}

/// Kills the example's process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_backend() {
    let server = TestServer::start(&base_toml("memory")).await;
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_example-remote"))
            .env("SESSIOND_URL", &server.url)
            .env("SESSIOND_API_KEY", ADMIN_KEY)
            .env("COOKIE_SECURE", "false")
            .env("LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await
    .expect("the example announced its address")
    .unwrap()
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let cookie = browser_session(&server).await;
    let (status, me) = call(
        &format!("{url}/api/me"),
        reqwest::Method::GET,
        &cookie,
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    let (status, v) = call(&format!("{url}/api/me"), reqwest::Method::GET, "", None).await;
    assert_eq!((status, v["reason"].as_str()), (401, Some("absent")));
}
