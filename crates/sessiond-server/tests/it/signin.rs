//! Sign-in with a ticket: token rotation, data carried over, refused tickets (another
//! app's JWT, bent time claims, a replay on any node), another user on a shared browser.

use crate::common::*;
use reqwest::Client;
use serde_json::{json, Value};

async fn sign_in(s: &Server, token: Option<&str>, ticket: &str) -> reqwest::Response {
    let mut r = Client::new()
        .post(s.u("/v1/session/signin"))
        .json(&json!({ "ticket": ticket }));
    if let Some(t) = token {
        r = r.header("cookie", cookie(t));
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_rotates_the_token_and_carries_data_over() {
    let s = start().await;
    let (old, anon) = s.new_session().await;
    let r = Client::new()
        .put(s.u("/v1/session/data/theme"))
        .header("cookie", cookie(&old))
        .json(&json!("dark"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let ticket = s.ticket("alice", "viewer").await;
    let r = sign_in(&s, Some(&old), &ticket).await;
    assert_eq!(r.status(), 200);
    let new = token_of(r.headers()).expect("a new cookie");
    assert_ne!(new, old);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["handle"], anon["handle"], "same session");
    assert_eq!(v["principal"], "user:alice");
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["role"], "viewer");
    assert_eq!(v["policy"]["idle_timeout"], 3600);
    assert!(v.get("token").is_none());
    // The old token stops at once; the new one works; the data came along.
    problem(get(&s.u("/v1/session"), &old).await, 401, "unauthenticated").await;
    problem(
        post(&s.u("/v1/session/activity"), &old).await,
        401,
        "unauthenticated",
    )
    .await;
    let cur: Value = get(&s.u("/v1/session"), &new).await.json().await.unwrap();
    assert_eq!(cur["principal"], "user:alice");
    let theme: Value = get(&s.u("/v1/session/data/theme"), &new)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theme, json!("dark"));
    // A POST with the old cookie gets a fresh anonymous session, never alice's.
    let r = post(&s.u("/v1/session"), &old).await;
    assert_eq!(r.status(), 201);
    assert_ne!(r.json::<Value>().await.unwrap()["handle"], anon["handle"]);
    let events = s.audit_of(anon["handle"].as_str().unwrap()).await;
    for kind in ["created", "signed_in", "token_rotated"] {
        assert!(events.iter().any(|e| e["kind"] == kind), "audit has {kind}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_bearer_returns_the_new_token() {
    let s = start().await;
    let v: Value = Client::new()
        .post(s.u("/v1/session"))
        .json(&json!({"bearer": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old = v["token"].as_str().unwrap().to_owned();
    let ticket = s.ticket("bob", "editor").await;
    let r = Client::new()
        .post(s.u("/v1/session/signin"))
        .bearer_auth(&old)
        .json(&json!({"ticket": ticket}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let new = v["token"]
        .as_str()
        .expect("bearer clients get the rotated token")
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(
        Client::new()
            .get(s.u("/v1/session"))
            .bearer_auth(&new)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        Client::new()
            .get(s.u("/v1/session"))
            .bearer_auth(&old)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_without_a_live_session_creates_one() {
    let s = start().await;
    let ticket = s.ticket("carol", "editor").await;
    let r = sign_in(&s, None, &ticket).await;
    assert_eq!(r.status(), 201);
    let token = token_of(r.headers()).unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["principal"], "user:carol");
    // After sign-out the same tab signs in again: a new session.
    let r = Client::new()
        .delete(s.u("/v1/session"))
        .header("cookie", cookie(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = sign_in(&s, Some(&token), &s.ticket("carol", "editor").await).await;
    assert_eq!(r.status(), 201);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_on_the_same_browser_starts_fresh() {
    let s = start().await;
    let r = sign_in(&s, None, &s.ticket("alice", "editor").await).await;
    let alice = token_of(r.headers()).unwrap();
    let alice_v: Value = r.json().await.unwrap();
    Client::new()
        .put(s.u("/v1/session/data/secret"))
        .header("cookie", cookie(&alice))
        .json(&json!("alice's"))
        .send()
        .await
        .unwrap();
    let r = sign_in(&s, Some(&alice), &s.ticket("mallory", "editor").await).await;
    assert_eq!(r.status(), 201);
    let mallory = token_of(r.headers()).unwrap();
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["handle"], alice_v["handle"]);
    problem(
        get(&s.u("/v1/session/data/secret"), &mallory).await,
        404,
        "not_found",
    )
    .await;
    let p = problem(
        get(&s.u("/v1/session"), &alice).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(p["reason"], "signed_out");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_are_refused() {
    let s = start().await;
    let (token, _) = s.new_session().await;
    for bad in ["", "not-a-jwt", "a.b.c"] {
        problem(sign_in(&s, Some(&token), bad).await, 401, "invalid_ticket").await;
    }
    let mut forged = s.ticket("alice", "editor").await;
    forged.truncate(forged.len() - 3);
    forged.push_str("AAA");
    problem(
        sign_in(&s, Some(&token), &forged).await,
        401,
        "invalid_ticket",
    )
    .await;
    // The session is unchanged by the failures.
    let v: Value = get(&s.u("/v1/session"), &token).await.json().await.unwrap();
    assert!(v["principal"].as_str().unwrap().starts_with("anon:"));
    // Minting refuses unknown roles and bad user ids.
    for body in [
        json!({"user_id": "a", "role": "root"}),
        json!({"user_id": "", "role": "editor"}),
        json!({"user_id": "a b", "role": "editor"}),
    ] {
        let r = Client::new()
            .post(s.u("/v1/admin/tickets"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        problem(r, 400, "invalid_request").await;
    }
    s.stop().await;
}

/// A leaked ticket signs in once: replayed (on this node, or on another node sharing
/// the store) it is 401 `invalid_ticket` and the replaying session stays anonymous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_signs_in_once_on_every_node() {
    let dir = DataDir::new();
    let a = start_in(&dir, Opts::default()).await;
    let b = start_in(&dir, Opts::default()).await;
    for ticket in [
        a.signed_ticket("alice", None),
        a.ticket("alice", "editor").await,
    ] {
        let (victim, _) = a.new_session().await;
        assert_eq!(sign_in(&a, Some(&victim), &ticket).await.status(), 200);
        for node in [&a, &b] {
            let (thief, _) = node.new_session().await;
            let p = problem(
                sign_in(node, Some(&thief), &ticket).await,
                401,
                "invalid_ticket",
            )
            .await;
            assert!(
                p["detail"].as_str().unwrap().contains("already used"),
                "{p}"
            );
            let v: Value = get(&node.u("/v1/session"), &thief)
                .await
                .json()
                .await
                .unwrap();
            assert!(v["principal"].as_str().unwrap().starts_with("anon:"), "{v}");
            // Without a session the replay makes none either.
            problem(sign_in(node, None, &ticket).await, 401, "invalid_ticket").await;
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Any JWT signed with the ticket key is not a ticket: it must name this audience, carry
/// a jti, be valid now (nbf), and have time claims that cannot overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_apps_jwt_or_bent_time_claims_are_refused() {
    use sessiond_testkit::http::hs256_claims;
    use sessiond_testkit::inproc::TICKET_SECRET;
    let s = start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let base = json!({"sub": "alice", "role": "editor", "iat": now, "exp": now + 60,
                      "aud": "sessiond", "jti": "j-1"});
    let bent = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        hs256_claims(TICKET_SECRET, v, None)
    };
    let refused = [
        // An app's own API token: sub, role, exp, same key, no aud.
        bent(&|v| {
            v.as_object_mut().unwrap().remove("aud");
        }),
        bent(&|v| v["aud"] = json!("billing-api")),
        bent(&|v| {
            v.as_object_mut().unwrap().remove("jti");
        }),
        bent(&|v| v["nbf"] = json!(now + 60)),
        bent(&|v| v["iat"] = json!(i64::MIN)),
        bent(&|v| v["iat"] = json!(i64::MAX)),
        bent(&|v| v["exp"] = json!(i64::MAX)),
        bent(&|v| {
            v.as_object_mut().unwrap().remove("iat");
            v["exp"] = json!(i64::MAX);
        }),
    ];
    for ticket in &refused {
        let (token, _) = s.new_session().await;
        problem(
            sign_in(&s, Some(&token), ticket).await,
            401,
            "invalid_ticket",
        )
        .await;
        let v: Value = get(&s.u("/v1/session"), &token).await.json().await.unwrap();
        assert!(v["principal"].as_str().unwrap().starts_with("anon:"));
    }
    // The same claims done right sign in.
    let (token, _) = s.new_session().await;
    let ok = bent(&|v| v["aud"] = json!(["billing-api", "sessiond"]));
    assert_eq!(sign_in(&s, Some(&token), &ok).await.status(), 200);
    s.stop().await;
}
