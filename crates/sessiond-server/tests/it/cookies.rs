//! The session cookie as an attacker on a sibling subdomain meets it: a second cookie
//! of the same name is refused, a Secure host-only cookie is `__Host-` prefixed (no
//! sibling can set it), it is a browser-session cookie unless configured persistent
//! (then it outlives the absolute deadline, never the reverse), and SameSite is
//! configurable with `None` only on a Secure cookie.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};
use sessiond_server::config::Config;
use std::time::{Duration, Instant};

/// The attacker's own session cookie, planted next to the victim's: every order and
/// spelling of the duplicate is refused with 400 `duplicate_cookie`, and nothing is
/// written to either session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_carrying_the_session_cookie_twice_is_refused() {
    let s = start().await;
    let (victim, _) = s.new_session().await;
    let (attacker, _) = s.new_session().await;
    let c = Client::new();
    let headers = [
        vec![format!("{}; {}", cookie(&attacker), cookie(&victim))],
        vec![format!(
            "{}; theme=dark; {}",
            cookie(&victim),
            cookie(&attacker)
        )],
        // Two Cookie header lines (HTTP/2 style splitting).
        vec![cookie(&attacker), cookie(&victim)],
        // The same value twice is still ambiguous about which cookie the browser meant.
        vec![format!("{}; {}", cookie(&victim), cookie(&victim))],
    ];
    for lines in &headers {
        for (method, path) in [
            ("GET", "/v1/session"),
            ("POST", "/v1/session"),
            ("POST", "/v1/session/activity"),
            ("PUT", "/v1/session/data/draft"),
            ("GET", "/v1/auth/verify"),
        ] {
            let mut r = c.request(method.parse().unwrap(), s.u(path));
            for l in lines {
                r = r.header("cookie", l);
            }
            if method == "PUT" {
                r = r.json(&json!("autosave"));
            }
            let r = r.send().await.unwrap();
            assert!(
                r.headers().get("set-cookie").is_none(),
                "{method} {path}: no cookie handed out"
            );
            problem(r, 400, "duplicate_cookie").await;
        }
    }
    for t in [&victim, &attacker] {
        assert_eq!(get(&s.u("/v1/session/data/draft"), t).await.status(), 404);
    }
    // Another cookie with a similar name is not a duplicate.
    let r = c
        .get(s.u("/v1/session"))
        .header(
            "cookie",
            format!("sessiond_x=1; {}; xsessiond=2", cookie(&victim)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// Outside dev mode the cookie is Secure and host-only, so its name defaults to the
/// `__Host-` form a sibling subdomain cannot set; it works as the session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_host_only_cookie_is_host_prefixed() {
    let s = start_with(Opts {
        dev: false,
        ..Default::default()
    })
    .await;
    let r = Client::new().post(s.u("/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let sc = set_cookie(r.headers());
    assert!(sc.starts_with("__Host-sessiond="), "{sc}");
    for attr in ["; Secure", "; Path=/", "; HttpOnly", "; SameSite=Lax"] {
        assert!(sc.contains(attr), "{attr} missing in {sc}");
    }
    assert!(!sc.contains("Domain"), "{sc}");
    assert!(!sc.contains("Max-Age") && !sc.contains("Expires"), "{sc}");
    let token = token_of(r.headers()).unwrap();
    let ok = Client::new()
        .get(s.u("/v1/session"))
        .header("cookie", format!("__Host-sessiond={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The plain name is not the session cookie any more.
    problem(
        get(&s.u("/v1/session"), &token).await,
        401,
        "unauthenticated",
    )
    .await;
    // Sign-out clears the same cookie.
    let r = Client::new()
        .delete(s.u("/v1/session"))
        .header("cookie", format!("__Host-sessiond={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let sc = set_cookie(r.headers());
    assert!(
        sc.starts_with("__Host-sessiond=;") && sc.contains("Max-Age=0"),
        "{sc}"
    );
    s.stop().await;
}

/// The scenario: a 5 s absolute lifetime with a persistent cookie. Max-Age
/// rounded down made the browser drop the cookie first, so the user was told
/// `unauthenticated`; now it reaches past the deadline (rounded up plus a minute's
/// grace), so the browser keeps it and hears `session_expired` with `absolute_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_cookie_outlives_the_absolute_deadline() {
    let s = start_with(Opts {
        extra: "[cookie]\npersistent = true\nsame_site = \"strict\"\n\
                [roles.editor]\nidle_timeout = \"1h\"\nabsolute_timeout = \"5s\"\nwarn_before = \"1s\"\n",
        ..Default::default()
    })
    .await;
    let jar = Client::builder().cookie_store(true).build().unwrap();
    let r = jar.post(s.u("/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let sc = set_cookie(r.headers());
    assert!(sc.contains("; SameSite=Strict"), "{sc}");
    assert!(sc.contains("; Max-Age=65"), "past the deadline: {sc}");
    let created: Value = r.json().await.unwrap();
    let start = Instant::now();
    let answer = loop {
        let r = jar.get(s.u("/v1/session")).send().await.unwrap();
        if r.status() != 200 {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(8), "never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let p = problem(answer, 401, "session_expired").await;
    assert_eq!(p["reason"], "absolute_timeout", "{p}; created {created}");
    s.stop().await;
}

/// `SameSite=None` (embedded widgets) only on a Secure cookie; the server refuses to
/// start otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_site_none_needs_a_secure_cookie() {
    for (toml, ok) in [
        (
            "store = \"memory\"\ndev = true\n[cookie]\nsame_site = \"none\"",
            false,
        ),
        (
            "store = \"memory\"\n[cookie]\nsecure = false\nsame_site = \"none\"",
            false,
        ),
        ("store = \"memory\"\n[cookie]\nsame_site = \"none\"", true),
    ] {
        let config = Config::from_toml(toml).unwrap();
        let built = sessiond_server::ServerBuilder::new(config).build().await;
        assert_eq!(built.is_ok(), ok, "{toml}");
    }
    let s = start_with(Opts {
        dev: false,
        extra: "[cookie]\nsame_site = \"none\"\n",
        ..Default::default()
    })
    .await;
    let r = Client::new().post(s.u("/v1/session")).send().await.unwrap();
    let sc = set_cookie(r.headers());
    assert!(
        sc.contains("; SameSite=None") && sc.contains("; Secure"),
        "{sc}"
    );
    s.stop().await;
}
