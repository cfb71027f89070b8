//! Scoped API keys: `read` keys read but change nothing, `tickets` keys mint tickets
//! only, keys given as their SHA-256, the old `api_keys` as admin keys, and the audit
//! trail naming the key that ended a session.

use crate::common::*;
use reqwest::{Client, Method};
use serde_json::{json, Value};

const READ: &str = "read-key-value-1";
const TICKETS: &str = "tickets-key-value-1";
const OPS: &str = "ops-admin-key-value";

/// The keys of these tests: a plain read key, a hashed tickets key, a hashed admin key
/// (besides the base config's `api_keys`).
const KEYS: &str = "[[keys]]\nid = \"dashboard\"\nscope = \"read\"\nkey = \"read-key-value-1\"\n    [[keys]]\nid = \"backend\"\nscope = \"tickets\"\nkey = \"sha256:9182dc618d892376c986d8c22527aacfcf61188f3ebeefa848528a7a55d83f41\"\n    [[keys]]\nid = \"ops\"\nscope = \"admin\"\nkey = \"sha256:3A9C5BAB74FF11C6841AF89545D54A5095D74F6C52E106A344F1B6B2A035D2AF\"\n";

async fn call(
    s: &Server,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = Client::new().request(method, s.u(path)).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_limit_what_a_key_may_do() {
    let s = start_with(Opts {
        extra: KEYS,
        ..Default::default()
    })
    .await;
    let a = s.bearer_session().await;
    let sessions = "/v1/admin/sessions";
    let one = format!("/v1/admin/sessions/{}", a.handle);
    let ticket = Some(json!({"user_id": "alice", "role": "editor"}));

    // read: lists and shows, never changes.
    assert_eq!(
        call(&s, Method::GET, sessions, READ, None).await.status(),
        200
    );
    assert_eq!(call(&s, Method::GET, &one, READ, None).await.status(), 200);
    assert_eq!(
        call(&s, Method::GET, "/v1/admin/audit", READ, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        call(&s, Method::GET, "/v1/admin/rooms", READ, None)
            .await
            .status(),
        200
    );
    problem(
        call(&s, Method::DELETE, &one, READ, None).await,
        403,
        "forbidden",
    )
    .await;
    problem(
        call(
            &s,
            Method::DELETE,
            "/v1/admin/principals/user:alice/sessions",
            READ,
            None,
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    problem(
        call(&s, Method::POST, "/v1/admin/tickets", READ, ticket.clone()).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        s.get_session(&a).await.0,
        200,
        "a refused revoke changed nothing"
    );

    // tickets (configured as its hash): mints, reads nothing.
    let r = call(
        &s,
        Method::POST,
        "/v1/admin/tickets",
        TICKETS,
        ticket.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    problem(
        call(&s, Method::GET, sessions, TICKETS, None).await,
        403,
        "forbidden",
    )
    .await;
    problem(
        call(&s, Method::DELETE, &one, TICKETS, None).await,
        403,
        "forbidden",
    )
    .await;
    // The hash itself is not a key.
    let hash = KEYS
        .split("sha256:")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    problem(
        call(&s, Method::GET, sessions, hash, None).await,
        403,
        "forbidden",
    )
    .await;
    problem(
        call(&s, Method::GET, sessions, "not-a-key-at-all", None).await,
        403,
        "forbidden",
    )
    .await;

    // admin through the old api_keys and through a hashed [[keys]] entry.
    assert_eq!(
        call(&s, Method::POST, "/v1/admin/tickets", ADMIN_KEY, ticket)
            .await
            .status(),
        200
    );
    assert_eq!(
        call(&s, Method::DELETE, &one, OPS, None).await.status(),
        204
    );
    let ended = s.audit_ended(&a.handle).await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["detail"]["key"], "ops", "{}", ended[0]);

    let b = s.bearer_session().await;
    assert_eq!(s.revoke(&b.handle).await, 204);
    let ended = s.audit_ended(&b.handle).await;
    assert_eq!(ended[0]["detail"]["key"], "api_keys.0", "{}", ended[0]);
    s.stop().await;
}
