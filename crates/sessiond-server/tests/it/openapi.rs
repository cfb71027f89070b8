//! `/openapi.json` documents every route the server serves under `/v1/` (and ops), with
//! every method, and no route that does not exist.

use crate::common::*;
use reqwest::{Client, Method};
use serde_json::Value;
use std::collections::BTreeSet;

/// Every `/v1/` route of the router, with its methods (see `routes::*::router` and `ws::router`).
const V1_ROUTES: &[(&str, &[&str])] = &[
    ("/v1/session", &["get", "post", "delete"]),
    ("/v1/session/activity", &["post"]),
    ("/v1/session/renew", &["post"]),
    ("/v1/session/signin", &["post"]),
    ("/v1/session/local-key", &["get"]),
    ("/v1/session/data/{key}", &["get", "put", "delete"]),
    ("/v1/session/devices", &["get"]),
    ("/v1/session/devices/{handle}", &["delete"]),
    ("/v1/session/devices/end-others", &["post"]),
    (
        "/v1/auth/verify",
        &["get", "head", "post", "put", "patch", "delete", "options"],
    ),
    ("/v1/drafts", &["get"]),
    ("/v1/drafts/{conversation}", &["get", "put", "delete"]),
    (
        "/v1/drafts/{conversation}/attachments/{name}",
        &["get", "put", "delete"],
    ),
    ("/v1/rooms/{room}/snapshot", &["get", "put"]),
    ("/v1/ws", &["get"]),
    ("/v1/admin/sessions", &["get"]),
    ("/v1/admin/sessions/{handle}", &["get", "delete"]),
    ("/v1/admin/principals/{id}/sessions", &["delete"]),
    ("/v1/admin/principals/{id}/info", &["put"]),
    ("/v1/admin/audit", &["get"]),
    ("/v1/admin/audit/stream", &["get"]),
    ("/v1/admin/nodes", &["get"]),
    ("/v1/admin/key", &["get"]),
    ("/v1/admin/connections/{id}", &["delete"]),
    ("/v1/admin/tickets", &["post"]),
    ("/v1/admin/rooms", &["get"]),
    ("/v1/admin/rooms/{room}", &["get"]),
    ("/v1/admin/connections", &["get"]),
    (
        "/v1/admin/sessions/{handle}/rooms/{room}",
        &["put", "delete"],
    ),
    ("/v1/admin/principals/{id}/rooms/{room}", &["put", "delete"]),
    ("/v1/admin/rooms/{room}/tokens", &["post"]),
    ("/v1/admin/webhooks", &["get"]),
    ("/v1/admin/webhooks/dead-letters", &["get"]),
    (
        "/v1/admin/webhooks/dead-letters/{endpoint}/{event_id}",
        &["delete"],
    ),
    (
        "/v1/admin/webhooks/dead-letters/{endpoint}/{event_id}/retry",
        &["post"],
    ),
];

/// Outside `/v1/`: the ops endpoints and the dev demo API.
const OTHER_ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/demo/api/ticket", &["post"]),
    ("/demo/api/messages", &["get", "post"]),
];

/// A concrete URL path for a templated one.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x1" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route() {
    let s = start().await;
    let c = Client::new();
    let r = c.get(s.u("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    let paths = doc["paths"].as_object().expect("paths is an object");

    for (path, methods) in V1_ROUTES.iter().chain(OTHER_ROUTES) {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in *methods {
            let op = &item[*m];
            assert!(op.is_object(), "{m} {path} is not documented");
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{m} {path} has no tag"
            );
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {path} has no responses"
            );
        }
        // The list matches the router: a method no route has answers 405 only on a served
        // path (forward-auth answers every method: 401 without a session).
        let r = c
            .request(Method::PATCH, s.u(&concrete(path)))
            .send()
            .await
            .unwrap();
        let expected = if methods.contains(&"patch") { 401 } else { 405 };
        assert_eq!(r.status(), expected, "{path} is not served");
    }

    // Nothing documented under /v1/ that the list (and so the router) lacks.
    let documented: BTreeSet<&str> = paths
        .keys()
        .map(String::as_str)
        .filter(|p| p.starts_with("/v1/"))
        .collect();
    let listed: BTreeSet<&str> = V1_ROUTES.iter().map(|(p, _)| *p).collect();
    assert_eq!(documented, listed);

    // Admin operations name the API key; the browser's own ones do not.
    for (path, m) in [
        ("/v1/admin/rooms", "get"),
        ("/v1/admin/connections", "get"),
        ("/v1/admin/sessions", "get"),
    ] {
        assert_eq!(
            paths[path][m]["security"][0]["api_key"],
            Value::Array(vec![]),
            "{m} {path}"
        );
    }
    assert!(paths["/v1/drafts"]["get"].get("security").is_none());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for t in ["drafts", "snapshots", "realtime", "ops", "demo (dev only)"] {
        assert!(tags.contains(t), "tag {t} missing");
    }
    // Errors are documented as problem+json.
    assert!(
        paths["/v1/drafts/{conversation}"]["put"]["responses"]["409"]["content"]
            ["application/problem+json"]
            .is_object()
    );
    s.stop().await;
}

/// Follows a local `$ref` (`#/components/...`) to what it names; panics if it dangles.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let Some(r) = v["$ref"].as_str() else {
        return v;
    };
    let path = r
        .strip_prefix("#/")
        .unwrap_or_else(|| panic!("non-local $ref {r}"));
    let target = path.split('/').fold(doc, |node, seg| &node[seg]);
    assert!(target.is_object(), "dangling $ref {r}");
    target
}

/// Every response of every operation that has a body names a schema, every `$ref`
/// resolves, error answers are problem+json, and JSON success bodies are typed (not an
/// untyped object), except the session-data value, which is any JSON by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_body_has_a_schema() {
    let s = start().await;
    let doc: Value = Client::new()
        .get(s.u("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    s.stop().await;
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for (status, resp) in responses {
                let resp = resolve(&doc, resp);
                let code: u16 = status.parse().expect("numeric status");
                let content = resp["content"].as_object();
                // The WebSocket handshake's own refusals (before any session) are plain text.
                let handshake = path == "/v1/ws" && matches!(code, 400 | 426);
                if code >= 400 && !handshake {
                    let c = content.unwrap_or_else(|| panic!("{method} {path} {status}: no body"));
                    let schema = &c
                        .get("application/problem+json")
                        .unwrap_or_else(|| panic!("{method} {path} {status}: not problem+json"))
                        ["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
                for (media, c) in content.into_iter().flatten() {
                    let schema = c
                        .get("schema")
                        .unwrap_or_else(|| panic!("{method} {path} {status} {media}: no schema"));
                    let schema = resolve(&doc, schema);
                    let any_json = path == "/v1/session/data/{key}" && code == 200;
                    assert!(
                        schema
                            .as_object()
                            .is_some_and(|o| any_json || !o.is_empty()),
                        "{method} {path} {status} {media}: empty schema"
                    );
                    if media == "application/json" && !any_json {
                        assert!(
                            schema["properties"].is_object() || schema["type"] == "string",
                            "{method} {path} {status}: untyped JSON body {schema}"
                        );
                    }
                    bodies += 1;
                }
            }
        }
    }
    assert!(bodies > 50, "only {bodies} bodies documented");
    // The typed bodies that used to be hand-built JSON are components now.
    for name in [
        "DraftView",
        "DraftList",
        "DraftSummary",
        "AttachmentView",
        "DraftDeleted",
        "SnapshotMeta",
        "RoomList",
        "RoomView",
        "RoomMember",
        "ConnectionList",
        "AuditPage",
        "SessionPage",
        "Health",
        "Ready",
        "MessageList",
        "Problem",
    ] {
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "schema {name} missing"
        );
    }
    // Error answers come from one description per kind, the same wherever they appear.
    let conflict =
        |path: &str, m: &str| doc["paths"][path][m]["responses"]["409"]["description"].clone();
    assert_eq!(
        conflict("/v1/drafts/{conversation}", "put"),
        conflict("/v1/rooms/{room}/snapshot", "put")
    );
    assert!(conflict("/v1/drafts/{conversation}", "put")
        .as_str()
        .is_some_and(|d| d.contains("`current`")));
}
