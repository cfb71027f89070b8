//! Operators' live views: the audit stream (server-sent events) resumes with exactly the
//! missed events, refuses keys without the read scope, and caps concurrent streams; the
//! nodes view; dropping one connection keeps its session.

use crate::common::*;
use reqwest::{Client, Response};
use serde_json::Value;
use std::time::Duration;

const READ: &str = "read-key-value-1";
const TICKETS: &str = "tickets-key-value-1";
const KEYS: &str = "audit.stream_poll_interval = \"100ms\"\n[[keys]]\nid = \"dashboard\"\nscope = \"read\"\nkey = \"read-key-value-1\"\n[[keys]]\nid = \"backend\"\nscope = \"tickets\"\nkey = \"tickets-key-value-1\"\n";
const WAIT: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: i64,
    kind: String,
    data: Value,
}

/// Reads a `text/event-stream` body into events (comments skipped).
struct Reader {
    r: Response,
    buf: String,
}

impl Reader {
    async fn open(s: &Server, key: &str, last_event_id: Option<i64>) -> Reader {
        let mut req = Client::new()
            .get(s.u("/v1/admin/audit/stream"))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Reader {
            r,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Sse {
        tokio::time::timeout(WAIT, async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id: ") {
                            id = v.parse().ok();
                        } else if let Some(v) = line.strip_prefix("event: ") {
                            kind = v.to_owned();
                        } else if let Some(v) = line.strip_prefix("data: ") {
                            data.push_str(v);
                        }
                    }
                    if let Some(id) = id {
                        return Sse {
                            id,
                            kind,
                            data: serde_json::from_str(&data).unwrap(),
                        };
                    }
                }
                let chunk = self.r.chunk().await.unwrap().expect("stream open");
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("an event within 10 s")
    }

    /// Events until one satisfies `done` (included).
    async fn until(&mut self, done: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut out = Vec::new();
        loop {
            let e = self.next().await;
            let stop = done(&e);
            out.push(e);
            if stop {
                return out;
            }
        }
    }
}

fn is_created(handle: &str) -> impl Fn(&Sse) -> bool + '_ {
    move |e| e.kind == "created" && e.data["handle"] == handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_stream_gets_exactly_the_missed_events_then_live_ones() {
    let s = start_with(Opts {
        extra: KEYS,
        ..Default::default()
    })
    .await;
    let mut live = Reader::open(&s, READ, None).await;
    let a = s.bearer_session().await;
    let seen = live.until(is_created(&a.handle)).await;
    let last = seen.last().unwrap().id;
    assert_eq!(
        seen.last().unwrap().data["id"],
        last,
        "id: is the event's id"
    );
    drop(live);

    // While nobody listens: two sessions, one revoked.
    let b = s.bearer_session().await;
    let c = s.bearer_session().await;
    assert_eq!(s.revoke(&b.handle).await, 204);
    let missed: Vec<i64> = s.admin_get(&format!("/v1/admin/audit?after={last}")).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(missed.len() >= 3, "{missed:?}");

    let mut resumed = Reader::open(&s, READ, Some(last)).await;
    let d = s.bearer_session().await;
    let got = resumed.until(is_created(&d.handle)).await;
    let ids: Vec<i64> = got.iter().map(|e| e.id).collect();
    assert_eq!(
        &ids[..missed.len()],
        &missed[..],
        "the missed ones, in order"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "no duplicate: {ids:?}");
    assert!(ids.iter().all(|id| *id > last));
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e.kind.as_str(), e.data["handle"].as_str().unwrap_or("")))
        .collect();
    assert!(kinds.contains(&("created", b.handle.as_str())));
    assert!(kinds.contains(&("created", c.handle.as_str())));
    assert!(kinds.contains(&("ended", b.handle.as_str())));
    let ended = got.iter().find(|e| e.kind == "ended").unwrap();
    assert_eq!(ended.data["reason"], "revoked");

    // `?after=` is the same cursor.
    let r = Client::new()
        .get(s.u(&format!("/v1/admin/audit/stream?after={last}")))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    let mut by_query = Reader {
        r,
        buf: String::new(),
    };
    assert_eq!(by_query.next().await.id, missed[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_reading_keys_may_stream() {
    let s = start_with(Opts {
        extra: KEYS,
        ..Default::default()
    })
    .await;
    let url = s.u("/v1/admin/audit/stream");
    let r = Client::new().get(&url).send().await.unwrap();
    problem(r, 403, "forbidden").await;
    let r = Client::new()
        .get(&url)
        .bearer_auth(TICKETS)
        .send()
        .await
        .unwrap();
    let p = problem(r, 403, "forbidden").await;
    assert!(p["detail"].as_str().unwrap().contains("tickets"), "{p}");
    let r = Client::new()
        .get(&url)
        .bearer_auth("not-a-configured-key")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
    // A session token is not an API key.
    let a = s.bearer_session().await;
    let r = Client::new()
        .get(&url)
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;
    let r = Client::new()
        .get(&url)
        .bearer_auth(READ)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    let r = Client::new()
        .get(format!("{url}?after=-3"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_request").await;
    // The admin key streams too.
    Reader::open(&s, ADMIN_KEY, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_are_capped_and_a_closed_one_frees_its_place() {
    let s = start_with(Opts {
        extra: "audit.max_streams = 1\naudit.stream_poll_interval = \"100ms\"",
        ..Default::default()
    })
    .await;
    let first = Reader::open(&s, ADMIN_KEY, None).await;
    let r = Client::new()
        .get(s.u("/v1/admin/audit/stream"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    problem(r, 429, "rate_limited").await;
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = Client::new()
            .get(s.u("/v1/admin/audit/stream"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(tokio::time::Instant::now() < deadline, "place never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drops_one_connection_and_the_session_goes_on() {
    let s = start_with(Opts {
        extra: KEYS,
        ..Default::default()
    })
    .await;
    let a = s.bearer_session().await;
    let mut ws = s.ws(&a).await;
    let hello = ws.json().await;
    let id = hello["connection_id"].as_str().unwrap().to_owned();

    let nodes = s.admin_get("/v1/admin/nodes").await;
    assert_eq!(nodes["clustered"], false);
    let list = nodes["nodes"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{nodes}");
    assert_eq!(list[0]["this_node"], true);
    assert_eq!(list[0]["connections"], 1);
    assert!(list[0]["lease_age_ms"].is_null());
    let r = Client::new()
        .get(s.u("/v1/admin/nodes"))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let path = format!("/v1/admin/connections/{id}");
    // Reading keys, ticket keys and nobody may not.
    for key in [Some(READ), Some(TICKETS), None] {
        let mut r = Client::new().delete(s.u(&path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        problem(r.send().await.unwrap(), 403, "forbidden").await;
    }
    let del = |p: String| Client::new().delete(s.u(&p)).bearer_auth(ADMIN_KEY).send();
    assert_eq!(del(path.clone()).await.unwrap().status(), 204);
    assert_eq!(ws.close_code().await, Some(4011));
    assert_eq!(s.get_session(&a).await.0, 200, "the session stays valid");
    // Gone now; ids of no node are unknown.
    problem(del(path).await.unwrap(), 404, "not_found").await;
    problem(
        del("/v1/admin/connections/nowhere-1".into()).await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let (_, audit) = s
        .admin_until(
            &format!(
                "/v1/admin/audit?handle={}&kind=connection_dropped",
                a.handle
            ),
            |_, v| v["events"].as_array().is_some_and(|e| !e.is_empty()),
        )
        .await;
    let dropped = &audit["events"][0];
    assert_eq!(dropped["detail"]["connection_id"], id.as_str());
    assert_eq!(dropped["detail"]["key"], "api_keys.0");
    // The client reconnects with the same session.
    let mut again = s.ws(&a).await;
    assert_eq!(again.json().await["type"], "hello");
}
