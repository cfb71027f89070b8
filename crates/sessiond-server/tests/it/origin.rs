//! The origin check of sessiond's own routes (issue 10, finding 9): an origin is scheme,
//! host and port, so an `http://` page is not the `https://` server; an unreadable or
//! doubled `Origin` is refused; what browsers send for same-origin requests passes.

use crate::common::*;
use reqwest::header::HeaderValue;
use reqwest::{Client, Method};

/// A fresh session's cookie pair exactly as the server set it.
async fn cookie_pair(s: &Server) -> String {
    let r = Client::new().post(s.u("/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let sc = r.headers()["set-cookie"].to_str().unwrap();
    sc.split(';').next().unwrap().to_owned()
}

async fn status(s: &Server, method: Method, path: &str, ck: &str, origin: HeaderValue) -> u16 {
    Client::new()
        .request(method, s.u(path))
        .header("cookie", ck)
        .header("origin", origin)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_scheme_counts_and_unreadable_fails_closed() {
    // Dev mode: cookies without Secure, so the server's own origin is http://.
    let s = start().await;
    let ck = cookie_pair(&s).await;
    let authority = s.url.strip_prefix("http://").unwrap().to_owned();
    let https_twin = format!("https://{authority}");
    let act = "/v1/session/activity";
    assert_eq!(status(&s, Method::POST, act, &ck, hv(&s.url)).await, 200);
    assert_eq!(
        status(&s, Method::POST, act, &ck, hv(&https_twin)).await,
        403
    );
    let port_twin = format!("http://{}:1", authority.split(':').next().unwrap());
    assert_eq!(
        status(&s, Method::POST, act, &ck, hv(&port_twin)).await,
        403
    );
    // A WebSocket upgrade and the cookie-setting create are held to the same rule.
    assert_eq!(
        status(&s, Method::GET, "/v1/ws", &ck, hv(&https_twin)).await,
        403
    );
    let r = Client::new()
        .post(s.u("/v1/session"))
        .header("origin", &https_twin)
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    // Unreadable: not UTF-8, not an origin, or sent twice.
    let latin = HeaderValue::from_bytes(b"http://127.0.0.1\xff").unwrap();
    for bad in [
        latin,
        hv("null"),
        hv("127.0.0.1"),
        hv(&format!("{}/", s.url)),
    ] {
        assert_eq!(
            status(&s, Method::POST, act, &ck, bad.clone()).await,
            403,
            "{bad:?}"
        );
    }
    let r = Client::new()
        .post(s.u(act))
        .header("cookie", &ck)
        .header("origin", &s.url)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_make_the_own_origin_https() {
    // Not dev: the cookie is Secure, so browsers reach this server over HTTPS (through
    // a TLS proxy passing Host on); a plain-http page on the same host is another origin.
    let s = start_with(Opts {
        dev: false,
        ..Default::default()
    })
    .await;
    let ck = cookie_pair(&s).await;
    let authority = s.url.strip_prefix("http://").unwrap().to_owned();
    let act = "/v1/session/activity";
    let https = hv(&format!("https://{authority}"));
    assert_eq!(status(&s, Method::POST, act, &ck, https).await, 200);
    assert_eq!(status(&s, Method::POST, act, &ck, hv(&s.url)).await, 403);
    s.stop().await;
}
