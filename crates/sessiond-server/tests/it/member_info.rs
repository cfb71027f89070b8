//! Member info on presence: set by a ticket's `info` claim or by the backend through
//! the admin API, carried on presence lists, joins and leaves; invalid info, a missing
//! API key and a client trying the reserved data key are refused and change nothing.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};
use sessiond_testkit::http::{hs256_claims, TICKET_AUDIENCE};
use sessiond_testkit::inproc::TICKET_SECRET;
use sessiond_testkit::ws::{connect_bearer, WsClient};
use std::time::{SystemTime, UNIX_EPOCH};

fn ticket_with_info(user: &str, info: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    hs256_claims(
        TICKET_SECRET,
        json!({
            "sub": user, "role": "editor", "iat": now, "exp": now + 120,
            "aud": TICKET_AUDIENCE, "jti": sessiond_core::token::random_id(16), "info": info,
        }),
        Some(&["lobby"]),
    )
}

async fn sign_in(s: &Server, ticket: &str) -> reqwest::Response {
    Client::new()
        .post(s.u("/v1/session/signin"))
        .json(&json!({ "ticket": ticket, "bearer": true }))
        .send()
        .await
        .unwrap()
}

/// Signs in and returns the bearer token.
async fn token(s: &Server, ticket: &str) -> String {
    let r = sign_in(s, ticket).await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn put_info(
    s: &Server,
    principal: &str,
    body: Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut r = Client::new()
        .put(s.u(&format!("/v1/admin/principals/{principal}/info")))
        .json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

async fn joined(s: &Server, token: &str) -> (WsClient, Value) {
    let mut c = WsClient::spawn(connect_bearer(&s.ws_url, token).await);
    c.expect("hello").await;
    c.send(json!({"type":"join","room":"lobby"})).await;
    let p = c.expect("presence").await;
    (c, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_carries_member_info_from_tickets_and_the_admin_api() {
    let s = start().await;
    let alice_info = json!({"name": "Alice Martin", "color": "#1f5fbf"});
    let alice = token(&s, &ticket_with_info("alice", alice_info.clone())).await;
    let bob = token(&s, &s.signed_ticket("bob", Some(&["lobby"]))).await;
    let carol = token(&s, &s.signed_ticket("carol", Some(&["lobby"]))).await;
    // The backend names bob (markup stays text: the server neither strips nor runs it).
    let bob_info = json!({"name": "Bob <script>alert(1)</script>", "avatar_url": "https://cdn.example.com/b.png"});
    let r = put_info(&s, "user:bob", bob_info.clone(), Some(ADMIN_KEY)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"sessions": 1}));
    assert_eq!(
        put_info(&s, "user:nobody", json!({"name": "N"}), Some(ADMIN_KEY))
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!({"sessions": 0})
    );

    let (mut b, _) = joined(&s, &bob).await;
    let (mut c, _) = joined(&s, &carol).await;
    assert_eq!(
        b.expect("member_joined").await["member"].get("info"),
        None,
        "carol has none"
    );
    let (mut a, presence) = joined(&s, &alice).await;
    let by_principal = |p: &str| {
        presence["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["principal"] == p)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_principal("user:bob")["info"], bob_info);
    assert_eq!(by_principal("user:alice")["info"], alice_info);
    assert_eq!(by_principal("user:carol").get("info"), None);
    assert_eq!(
        b.expect("member_joined").await["member"]["info"],
        alice_info
    );
    assert_eq!(
        c.expect("member_joined").await["member"]["info"],
        alice_info
    );
    a.send(json!({"type":"leave","room":"lobby"})).await;
    let left = b.expect("member_left").await;
    assert_eq!(left["reason"], "left");
    assert_eq!(left["member"]["info"], alice_info);
    // The admin view of connections shows it too.
    let conns = s.admin_get("/v1/admin/connections").await;
    let bob_conn = conns["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["principal"] == "user:bob")
        .cloned()
        .unwrap();
    assert_eq!(bob_conn["info"], bob_info);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_info_and_foreign_writers_are_refused() {
    let s = start().await;
    for bad in [
        json!({"avatar_url": "javascript:alert(1)"}),
        json!({"color": "red"}),
        json!({"name": "x".repeat(65)}),
        json!({"nickname": "typo"}),
    ] {
        let p = problem(
            sign_in(&s, &ticket_with_info("alice", bad.clone())).await,
            401,
            "invalid_ticket",
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("info"), "{bad}: {p}");
    }
    let bob = token(&s, &s.signed_ticket("bob", Some(&["lobby"]))).await;
    let good = json!({"name": "Bob"});
    assert_eq!(
        put_info(&s, "user:bob", good.clone(), Some(ADMIN_KEY))
            .await
            .status(),
        200
    );
    let p = problem(
        put_info(
            &s,
            "user:bob",
            json!({"avatar_url": "data:image/png;base64,AA"}),
            Some(ADMIN_KEY),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("avatar_url"), "{p}");
    problem(
        put_info(&s, "user:bob", json!({"name": "Mallory"}), None).await,
        403,
        "forbidden",
    )
    .await;
    problem(
        put_info(
            &s,
            "user:bob",
            json!({"name": "Mallory"}),
            Some("not-a-key"),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    let big = json!({"name": "B", "avatar_url": format!("https://x.example/{}", "a".repeat(1100))});
    problem(
        put_info(&s, "user:bob", big, Some(ADMIN_KEY)).await,
        400,
        "invalid_request",
    )
    .await;
    // The session itself cannot read or forge its info through session data.
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let r = Client::new()
            .request(method, s.u("/v1/session/data/sessiond:info"))
            .bearer_auth(&bob)
            .json(&json!({"name": "Forged"}))
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_request").await;
    }
    // Admin-minted tickets take info too, validated the same way.
    let r = Client::new()
        .post(s.u("/v1/admin/tickets"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"user_id": "dan", "role": "editor", "info": {"color": "#12"}}))
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    // Nothing of the refused calls landed: bob is still "Bob".
    let (_b, presence) = joined(&s, &bob).await;
    assert_eq!(presence["members"][0]["info"], good);
    s.stop().await;
}
