//! Drives the embedded example over HTTP: its router from the library, served on
//! 127.0.0.1:0, with a browser-like cookie jar.

use serde_json::{json, Value};
use sessiond_server::config::Config;

async fn start() -> (String, reqwest::Client, example_embedded::App) {
    let config = Config::from_toml("store = \"memory\"\ndev = true").unwrap();
    let app = example_embedded::build(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    (url, browser, app)
}

#[tokio::test]
async fn the_page_the_sdk_and_the_session_routes_work_together() {
    let (url, browser, app) = start().await;
    // The page loads the SDK from the nested sessiond API, which serves it.
    let page = browser
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("/sessiond/sdk/sessiond.js"));
    let sdk = browser
        .get(format!("{url}/sessiond/sdk/sessiond.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(sdk.status(), 200);
    assert!(sdk.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));

    // Before the SDK starts a session: the app's route says why there is none.
    let r = browser.get(format!("{url}/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["reason"], "absent");

    // What `sessiond.start()` does, then the app sees the same session.
    let r = browser
        .post(format!("{url}/sessiond/v1/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let handle = r.json::<Value>().await.unwrap()["handle"].clone();
    let me: Value = browser
        .get(format!("{url}/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["handle"], handle);

    // Sign-in through the app rotates the cookie; the SDK's view agrees.
    let r = browser
        .post(format!("{url}/api/login"))
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = browser
        .get(format!("{url}/sessiond/v1/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&s["handle"], s["principal"].as_str()),
        (&handle, Some("user:alice"))
    );

    let r = browser
        .post(format!("{url}/api/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = browser.get(format!("{url}/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    app.guard.shutdown().await;
}
