//! Drafts, attachments and room snapshots over HTTP against the real server (issue 4):
//! scope, survival across session endings and sign-in, multi-tab conflicts, refusals that
//! write nothing, at-rest encryption, the purge job, and a property test of scope.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sessiond_core::draft::{merge_on_sign_in, AttachmentMeta, Draft};
use sessiond_core::store::SnapshotPut;
use sessiond_core::{Clock, ManualClock, Principal, Store};
use sessiond_server::config::Config;
use sessiond_testkit::http::{hs256_ticket, Browser, Resp};
use sessiond_testkit::inproc::{base_toml, TestServer, ADMIN_KEY, TICKET_SECRET};
use sessiond_testkit::wait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

fn base_config() -> Config {
    Config::from_toml(&base_toml("memory")).expect("test config")
}

/// A server on the memory store with the test's settings.
async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = base_config();
    tweak(&mut config);
    TestServer::start_config(config).await
}

fn ticket(user: &str, rooms: Option<&[&str]>) -> String {
    hs256_ticket(TICKET_SECRET, user, "editor", rooms)
}

/// The drafts API as a browser tab uses it.
trait Drafts {
    async fn sign_in(&self, user: &str, rooms: Option<&[&str]>);
    async fn put_text(&self, conv: &str, text: &str, seq: u64) -> Resp;
    async fn get(&self, conv: &str) -> Resp;
    async fn seq(&self, conv: &str) -> u64;
    async fn delete(&self, conv: &str, seq: u64) -> Resp;
    async fn put_att(&self, conv: &str, name: &str, ct: &str, bytes: Vec<u8>, seq: u64) -> Resp;
    async fn get_att(&self, conv: &str, name: &str) -> Resp;
    async fn list(&self) -> Vec<Value>;
}

impl Drafts for Browser {
    async fn sign_in(&self, user: &str, rooms: Option<&[&str]>) {
        self.sign_in_with(&ticket(user, rooms), user).await;
    }

    async fn put_text(&self, conv: &str, text: &str, seq: u64) -> Resp {
        self.json_req(
            Method::PUT,
            &format!("/v1/drafts/{conv}"),
            json!({"text": text, "seq": seq}),
        )
        .await
    }

    async fn get(&self, conv: &str) -> Resp {
        self.send(Method::GET, &format!("/v1/drafts/{conv}"), None, None)
            .await
    }

    /// The seq the next write of `conv` must name (the tombstone's after a delete).
    async fn seq(&self, conv: &str) -> u64 {
        let r = self.get(conv).await;
        match r.status {
            StatusCode::OK => r.json()["seq"].as_u64().expect("seq"),
            StatusCode::NOT_FOUND => r.json()["seq"].as_u64().unwrap_or(0),
            s => panic!("GET draft {conv}: {s} {}", r.json()),
        }
    }

    async fn delete(&self, conv: &str, seq: u64) -> Resp {
        self.send(
            Method::DELETE,
            &format!("/v1/drafts/{conv}?seq={seq}"),
            None,
            None,
        )
        .await
    }

    async fn put_att(&self, conv: &str, name: &str, ct: &str, bytes: Vec<u8>, seq: u64) -> Resp {
        self.send(
            Method::PUT,
            &format!("/v1/drafts/{conv}/attachments/{name}?seq={seq}"),
            Some((ct, bytes)),
            None,
        )
        .await
    }

    async fn get_att(&self, conv: &str, name: &str) -> Resp {
        self.send(
            Method::GET,
            &format!("/v1/drafts/{conv}/attachments/{name}"),
            None,
            None,
        )
        .await
    }

    async fn list(&self) -> Vec<Value> {
        let r = self.send(Method::GET, "/v1/drafts", None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        r.json()["drafts"].as_array().expect("drafts").clone()
    }
}

fn audio(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

#[tokio::test]
async fn conversations_and_principals_never_see_each_other() {
    let srv = start(|_| {}).await;
    let alice = srv.browser().await;
    alice.sign_in("alice", None).await;
    assert_eq!(
        alice.put_text("conv-a", "text for A", 0).await.status,
        StatusCode::OK
    );
    assert_eq!(
        alice.put_text("conv-b", "text for B", 0).await.status,
        StatusCode::OK
    );
    let clip_a = audio(5000, 1);
    let clip_b = audio(7000, 2);
    assert_eq!(
        alice
            .put_att("conv-a", "clip.webm", "audio/webm", clip_a.clone(), 1)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        alice
            .put_att("conv-b", "other.ogg", "audio/ogg", clip_b.clone(), 1)
            .await
            .status,
        StatusCode::OK
    );

    let a = alice.get("conv-a").await.json();
    assert_eq!(a["text"], "text for A");
    assert_eq!(
        a["attachments"],
        json!([{"name": "clip.webm", "content_type": "audio/webm", "size": 5000}])
    );
    let b = alice.get("conv-b").await.json();
    assert_eq!(b["text"], "text for B");
    assert_eq!(b["attachments"][0]["name"], "other.ogg");
    assert_eq!(alice.get_att("conv-a", "clip.webm").await.body, clip_a);
    assert_eq!(alice.get_att("conv-b", "other.ogg").await.body, clip_b);
    // A's clip is not reachable through B, nor B's through A.
    assert_eq!(
        alice.get_att("conv-b", "clip.webm").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        alice.get_att("conv-a", "other.ogg").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(alice.list().await.len(), 2);

    // Another person: nothing of Alice's exists for them.
    let bob = srv.browser().await;
    bob.sign_in("bob", None).await;
    assert!(bob.list().await.is_empty());
    let r = bob.get("conv-a").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = bob.get_att("conv-a", "clip.webm").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    // Bob's own draft in the same conversation id starts at seq 0 and is his alone.
    let r = bob.put_text("conv-a", "bob's text", 0).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["seq"], 1);
    let r = bob.delete("conv-b", 2).await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "Bob cannot touch Alice's seq space"
    );
    assert_eq!(r.json()["current"], Value::Null);
    assert_eq!(alice.get("conv-a").await.json()["text"], "text for A");
    assert_eq!(alice.get("conv-b").await.json()["seq"], 2);

    // The shared browser: after Alice signs out, the next person sees none of it.
    alice.sign_out().await;
    alice.new_session().await;
    assert!(alice.principal().await.starts_with("anon:"));
    assert!(alice.list().await.is_empty());
    assert_eq!(alice.get("conv-a").await.status, StatusCode::NOT_FOUND);
    // …and Alice gets hers back on signing in again.
    alice.sign_in("alice", None).await;
    assert_eq!(alice.get("conv-a").await.json()["text"], "text for A");
}

#[tokio::test]
async fn draft_and_audio_survive_session_expiry_and_sign_in_again() {
    let srv = start(|c| {
        let r = c.roles.get_mut("editor").expect("editor role");
        r.idle_timeout = Duration::from_secs(2);
        r.warn_before = Duration::from_secs(1);
    })
    .await;
    let tab = srv.browser().await;
    tab.sign_in("carol", None).await;
    let clip = audio(200 * 1024, 7);
    assert_eq!(
        tab.put_text("support-42", "Dear customer, about your", 0)
            .await
            .status,
        StatusCode::OK
    );
    let r = tab
        .put_att(
            "support-42",
            "voice.webm",
            "audio/webm;codecs=opus",
            clip.clone(),
            1,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());

    // The session idles out.
    let tab_ref = &tab;
    let r = wait::until_some(
        Duration::from_secs(6),
        "the session to expire",
        move || async move {
            let r = tab_ref.send(Method::GET, "/v1/drafts", None, None).await;
            (r.status == StatusCode::UNAUTHORIZED).then_some(r)
        },
    )
    .await;
    assert_eq!(r.json()["reason"], "idle_timeout", "{}", r.json());
    // Signing in again (the old session is gone, so this makes a new one).
    tab.sign_in("carol", None).await;
    let d = tab.get("support-42").await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.json()["text"], "Dear customer, about your");
    assert_eq!(d.json()["seq"], 2);
    let got = tab.get_att("support-42", "voice.webm").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["content-type"], "audio/webm;codecs=opus");
    assert!(got.body == clip, "the clip comes back byte for byte");
}

#[tokio::test]
async fn anonymous_drafts_move_to_the_user_on_sign_in() {
    let srv = start(|_| {}).await;
    // Dave already has a draft for conv-1 from another browser.
    let other = srv.browser().await;
    other.sign_in("dave", None).await;
    assert_eq!(
        other.put_text("conv-1", "from the laptop", 0).await.status,
        StatusCode::OK
    );

    let tab = srv.browser().await;
    let anon = tab.principal().await;
    assert!(anon.starts_with("anon:"));
    assert_eq!(
        tab.put_text("conv-1", "typed before signing in", 0)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        tab.put_text("conv-2", "only here", 0).await.status,
        StatusCode::OK
    );
    assert_eq!(
        tab.put_att("conv-2", "pic.png", "image/png", audio(300, 3), 1)
            .await
            .status,
        StatusCode::OK
    );
    tab.sign_in("dave", None).await;

    // Neither text is lost: the user's first, then the anonymous one.
    let d1 = tab.get("conv-1").await.json();
    assert_eq!(d1["text"], "from the laptop\n\ntyped before signing in");
    assert_eq!(d1["seq"], 2);
    let d2 = tab.get("conv-2").await.json();
    assert_eq!(d2["text"], "only here");
    assert_eq!(tab.get_att("conv-2", "pic.png").await.body, audio(300, 3));
    assert_eq!(other.get("conv-2").await.json()["text"], "only here");

    let r = tab
        .http()
        .get(format!(
            "{}/v1/admin/audit?kind=drafts_restored&principal=user:dave",
            srv.url
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("audit");
    assert_eq!(r.status(), StatusCode::OK);
    let events: Value = r.json().await.expect("json");
    let e = &events["events"][0];
    assert_eq!(e["kind"], "drafts_restored");
    assert_eq!(e["detail"]["from"], anon);
    let moved: BTreeSet<&str> = e["detail"]["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(moved, BTreeSet::from(["conv-1", "conv-2"]));
}

#[tokio::test]
async fn two_tabs_conflict_and_a_sent_draft_stays_deleted() {
    let srv = start(|_| {}).await;
    let tab1 = srv.browser().await;
    let tab2 = tab1.tab();
    let r = tab1.put_text("c", "tab one", 0).await;
    assert_eq!(
        (r.status, r.json()["seq"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    assert_eq!(r.headers["etag"], "\"1\"");

    // Tab two still believes seq 0: refused with the current draft, nothing changes.
    let r = tab2.put_text("c", "tab two", 0).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "conflict");
    assert_eq!(r.json()["current"]["text"], "tab one");
    assert_eq!(r.json()["current"]["seq"], 1);
    assert_eq!(tab1.get("c").await.json()["text"], "tab one");
    // An overwrite must name the current seq (here via If-Match).
    let r = tab2
        .send(
            Method::PUT,
            "/v1/drafts/c",
            Some(("application/json", br#"{"text":"tab two"}"#.to_vec())),
            Some(1),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["seq"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{}",
        r.json()
    );
    assert_eq!(r.json()["text"], "tab two");

    // A delete with a stale seq is refused.
    let r = tab1.delete("c", 1).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["current"]["text"], "tab two");
    assert_eq!(tab1.get("c").await.json()["seq"], 2);
    // The message was sent: delete with the current seq.
    let r = tab1.delete("c", 2).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"seq": 3}));
    let r = tab1.get("c").await;
    assert_eq!(
        (r.status, r.json()["seq"].as_u64()),
        (StatusCode::NOT_FOUND, Some(3))
    );
    assert!(tab1.list().await.is_empty());
    // A slow tab's save naming a pre-delete seq cannot bring the draft back.
    let r = tab2.put_text("c", "tab two, late", 2).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["current"]["deleted"], true);
    assert_eq!(r.json()["current"]["seq"], 3);
    let r = tab2
        .put_att("c", "late.webm", "audio/webm", audio(10, 1), 2)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(tab1.get("c").await.status, StatusCode::NOT_FOUND);
    // A new draft names the tombstone's seq.
    let r = tab2.put_text("c", "next message", 3).await;
    assert_eq!(
        (r.status, r.json()["seq"].as_u64()),
        (StatusCode::OK, Some(4))
    );
    // An empty text with no attachments deletes.
    let r = tab2.put_text("c", "", 4).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["deleted"], true);
    assert_eq!(tab1.get("c").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_get_clear_codes_and_write_nothing() {
    let srv = start(|c| {
        c.drafts.max_attachment_size = 64 * 1024;
        c.drafts.quota_per_principal = 100 * 1024;
        c.drafts.max_text_bytes = 1000;
    })
    .await;
    let tab = srv.browser().await;
    assert_eq!(
        tab.put_text("c1", "keep me", 0).await.status,
        StatusCode::OK
    );
    assert_eq!(
        tab.put_att("c1", "a.webm", "audio/webm", audio(60 * 1024, 1), 1)
            .await
            .status,
        StatusCode::OK
    );
    let before = tab.get("c1").await.json();
    let unchanged = |r: &Resp, status: StatusCode, code: &str| {
        assert_eq!(
            (r.status, r.code().as_str()),
            (status, code),
            "{}",
            r.json()
        );
        assert_eq!(r.headers["content-type"], "application/problem+json");
    };

    // Oversize attachment, declared up front.
    let r = tab
        .put_att("c1", "big.webm", "audio/webm", audio(65 * 1024, 2), 2)
        .await;
    unchanged(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Oversize attachment, streamed without a length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|i| Ok(audio(8 * 1024, i))).collect();
    let r = tab
        .http()
        .put(format!(
            "{}/v1/drafts/c1/attachments/big.webm?seq=2",
            srv.url
        ))
        .header("content-type", "audio/webm")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Disallowed content type.
    let r = tab
        .put_att("c1", "x.html", "text/html", b"<script>".to_vec(), 2)
        .await;
    unchanged(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let r = tab
        .put_att(
            "c1",
            "x.webm",
            "audio/webm;sessiond-enc=a1",
            b"x".to_vec(),
            2,
        )
        .await;
    unchanged(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // Quota: 60 KiB held, 50 more exceed 100 KiB.
    let r = tab
        .put_att("c2", "b.webm", "audio/webm", audio(50 * 1024, 3), 0)
        .await;
    unchanged(&r, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded");
    // Bad conversation ids and attachment names.
    for bad in ["bad%20id", "a%2Fb", &"x".repeat(129)] {
        let r = tab.put_text(bad, "t", 0).await;
        unchanged(&r, StatusCode::BAD_REQUEST, "invalid_conversation");
        let r = tab.get(bad).await;
        unchanged(&r, StatusCode::BAD_REQUEST, "invalid_conversation");
    }
    let r = tab
        .put_att("c1", ".hidden", "audio/webm", b"x".to_vec(), 2)
        .await;
    unchanged(&r, StatusCode::BAD_REQUEST, "invalid_request");
    // Oversize text, missing seq, malformed body, NUL in text.
    let r = tab.put_text("c1", &"y".repeat(1001), 2).await;
    unchanged(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = tab
        .json_req(Method::PUT, "/v1/drafts/c1", json!({"text": "no seq"}))
        .await;
    unchanged(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = tab
        .json_req(
            Method::PUT,
            "/v1/drafts/c1",
            json!({"txt": "typo", "seq": 2}),
        )
        .await;
    unchanged(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = tab.put_text("c1", "nul\0byte", 2).await;
    unchanged(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let r = tab.send(Method::DELETE, "/v1/drafts/c1", None, None).await;
    unchanged(&r, StatusCode::BAD_REQUEST, "invalid_request");

    assert_eq!(tab.get("c1").await.json(), before, "nothing was written");
    assert_eq!(tab.get("c2").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        tab.get_att("c1", "big.webm").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(tab.list().await.len(), 1);
    // Unauthenticated callers get 401, not someone's drafts.
    let anon = Browser::new(&srv.url);
    let r = anon.get("c1").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    );
}

#[tokio::test]
async fn snapshots_over_http_are_versioned_and_only_for_members() {
    let srv = start(|c| {
        c.snapshots.max_size = 4096;
        // Production room defaults (dev mode would grant every room to the role).
        for r in c.roles.values_mut() {
            r.rooms = Some(Vec::new());
        }
    })
    .await;
    let member = srv.browser().await;
    member.sign_in("erin", Some(&["board-1"])).await;
    let path = "/v1/rooms/board-1/snapshot";

    assert_eq!(
        member.send(Method::GET, path, None, None).await.status,
        StatusCode::NOT_FOUND
    );
    let state = br#"{"shapes":[1,2,3]}"#.to_vec();
    let r = member
        .send(
            Method::PUT,
            &format!("{path}?version=0"),
            Some(("application/json", state.clone())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let meta = r.json();
    assert_eq!(meta["room"], "board-1");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["size"], state.len());
    let hash = meta["hash"].as_str().expect("hash").to_owned();
    assert_eq!(hash, sessiond_core::snapshot::content_hash(&state));

    let r = member.send(Method::GET, path, None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, state);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-snapshot-version"], "1");
    assert_eq!(r.headers["etag"], format!("\"{hash}\"").as_str());

    // A write naming an old version is refused and changes nothing.
    let r = member
        .send(
            Method::PUT,
            path,
            Some(("application/json", b"{}".to_vec())),
            Some(0),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["current"]["version"], 1);
    assert_eq!(r.json()["current"]["hash"], hash.as_str());
    let r = member
        .send(
            Method::PUT,
            path,
            Some(("application/json", b"{\"v\":2}".to_vec())),
            Some(1),
        )
        .await;
    assert_eq!(r.json()["version"], 2);
    // Too large.
    let r = member
        .send(
            Method::PUT,
            &format!("{path}?version=2"),
            Some(("application/json", vec![b' '; 5000])),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert_eq!(
        member.send(Method::GET, path, None, None).await.body,
        b"{\"v\":2}"
    );

    // A room the ticket does not grant, and a session without any grant.
    let r = member
        .send(Method::GET, "/v1/rooms/board-2/snapshot", None, None)
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "room_not_allowed")
    );
    let outsider = srv.browser().await;
    let r = outsider.send(Method::GET, path, None, None).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "room_not_allowed")
    );
    let r = outsider
        .send(
            Method::PUT,
            &format!("{path}?version=2"),
            Some(("text/plain", b"x".to_vec())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // An admin grant lets the outsider in; it joins over WebSocket.
    let handle = outsider
        .send(Method::GET, "/v1/session", None, None)
        .await
        .json()["handle"]
        .as_str()
        .expect("handle")
        .to_owned();
    let r = reqwest::Client::new()
        .put(format!(
            "{}/v1/admin/sessions/{handle}/rooms/board-1",
            srv.url
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{}/v1/ws", srv.url.replace("http://", "ws://"))
        .into_client_request()
        .expect("ws request");
    req.headers_mut()
        .insert("sec-websocket-protocol", "sessiond.v1".parse().expect("hv"));
    req.headers_mut()
        .insert("cookie", outsider.cookie_header().parse().expect("hv"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connect");
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(
        json!({"type": "join", "room": "board-1"}).to_string(),
    ))
    .await
    .expect("join");
    let presence = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Text(t)) = m {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["type"] == "presence" {
                    return v;
                }
            }
        }
        panic!("socket closed before presence");
    })
    .await
    .expect("presence within 3 s");
    assert_eq!(presence["snapshot"]["version"], 2);
    let r = outsider
        .send(
            Method::PUT,
            &format!("{path}?version=2"),
            Some(("text/plain", b"joined".to_vec())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["version"], 3);
    let r = outsider.send(Method::GET, path, None, None).await;
    assert_eq!(r.body, b"joined");
    assert_eq!(r.headers["content-type"], "text/plain");
}

#[tokio::test]
async fn encryption_at_rest_keeps_plaintext_out_of_the_data_dir() {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([0x5a; 32]);
    let srv = start(move |c| {
        c.store = sessiond_server::config::StoreKind::Sqlite;
        c.drafts.encryption_key = key.into();
    })
    .await;
    let data_dir = srv.dir.clone();
    let tab = srv.browser().await;
    tab.sign_in("frank", Some(&["room-x"])).await;
    let marker = "PLAINTEXT-MARKER-7d1f";
    let text = format!("{marker} in the draft text");
    let clip: Vec<u8> = marker.bytes().cycle().take(150_000).collect();
    let snap = format!("{{\"note\":\"{marker}\"}}");
    assert_eq!(tab.put_text("c-enc", &text, 0).await.status, StatusCode::OK);
    let r = tab
        .put_att("c-enc", "note.webm", "audio/webm", clip.clone(), 1)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["attachments"][0]["size"],
        150_000,
        "sizes are plaintext sizes"
    );
    let r = tab
        .send(
            Method::PUT,
            "/v1/rooms/room-x/snapshot?version=0",
            Some(("application/json", snap.clone().into_bytes())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(
        r.json()["hash"],
        sessiond_core::snapshot::content_hash(snap.as_bytes())
    );

    assert_eq!(tab.get("c-enc").await.json()["text"], text.as_str());
    assert!(tab.get_att("c-enc", "note.webm").await.body == clip);
    let r = tab
        .send(Method::GET, "/v1/rooms/room-x/snapshot", None, None)
        .await;
    assert_eq!(r.body, snap.as_bytes());
    assert_eq!(r.headers["content-type"], "application/json");

    let mut files = 0;
    let mut stack = vec![data_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).expect("read file");
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "plaintext found in {}",
                    p.display()
                );
            }
        }
    }
    assert!(
        files > 0,
        "the store wrote its files under {}",
        data_dir.display()
    );
}

#[tokio::test]
async fn purge_job_removes_expired_drafts_and_snapshots_and_audits() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = base_config();
    config.data_dir = dir.path().to_path_buf();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store: Arc<dyn Store> = Arc::new(sessiond_store_memory::MemoryStore::new());
    let server = sessiond_server::ServerBuilder::new(config)
        .store(store.clone())
        .clock(clock.clone())
        .build()
        .await
        .expect("state");
    let state = server.state();
    let p = Principal::user("gina");
    let t0 = clock.now();
    store
        .put_draft_text(&p, "old", 0, "stale", t0)
        .await
        .expect("write");
    store
        .put_snapshot(SnapshotPut {
            room: "room-old",
            expected_version: 0,
            data: b"s",
            content_type: "text/plain",
            by: None,
            retain_until: Some(t0 + 1000),
            now: t0,
        })
        .await
        .expect("snapshot");
    store
        .put_snapshot(SnapshotPut {
            room: "room-live",
            expected_version: 0,
            data: b"s",
            content_type: "text/plain",
            by: None,
            retain_until: None,
            now: t0,
        })
        .await
        .expect("snapshot");
    clock.advance_ms(6 * 24 * 3600 * 1000);
    store
        .put_draft_text(&p, "fresh", 0, "recent", clock.now())
        .await
        .expect("write");
    clock.advance_ms(2 * 24 * 3600 * 1000);

    let purged = sessiond_server::drafts::purge_once(state)
        .await
        .expect("purge");
    assert_eq!((purged.drafts, purged.snapshots), (1, 1));
    assert!(store.get_draft(&p, "old").await.expect("get").is_none());
    assert!(store.get_draft(&p, "fresh").await.expect("get").is_some());
    assert!(store.get_snapshot("room-old").await.expect("get").is_none());
    assert!(store
        .get_snapshot("room-live")
        .await
        .expect("get")
        .is_some());
    let events = store
        .query_audit(&sessiond_core::audit::AuditFilter {
            kind: Some(sessiond_core::audit::AuditKind::DraftsPurged),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail["drafts"], 1);
    assert_eq!(events[0].detail["snapshots"], 1);
    // Nothing left to purge: no event.
    assert_eq!(
        sessiond_server::drafts::purge_once(state)
            .await
            .expect("purge"),
        Default::default()
    );
}

// ---- property test: random interleavings never show a draft outside its scope ----

#[derive(Debug, Clone)]
enum Op {
    Write { browser: usize, conv: usize },
    Attach { browser: usize, conv: usize },
    Delete { browser: usize, conv: usize },
    SignIn { browser: usize, user: usize },
    SignOut { browser: usize },
}

const BROWSERS: usize = 3;
const CONVS: [&str; 3] = ["c1", "c2", "c3"];
const USERS: [&str; 2] = ["u1", "u2"];

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let b = 0..BROWSERS;
    let c = 0..CONVS.len();
    prop_oneof![
        4 => (b.clone(), c.clone()).prop_map(|(browser, conv)| Op::Write { browser, conv }),
        2 => (b.clone(), c.clone()).prop_map(|(browser, conv)| Op::Attach { browser, conv }),
        2 => (b.clone(), c).prop_map(|(browser, conv)| Op::Delete { browser, conv }),
        2 => (b.clone(), 0..USERS.len()).prop_map(|(browser, user)| Op::SignIn { browser, user }),
        1 => b.prop_map(|browser| Op::SignOut { browser }),
    ]
}

/// What the server should hold: live drafts by (principal, conversation), with the
/// attachment bytes by name.
#[derive(Default)]
struct Model {
    drafts: BTreeMap<(String, String), Draft>,
    bytes: BTreeMap<(String, String, String), Vec<u8>>,
}

impl Model {
    fn sign_in(&mut self, from: &str, to: &str) {
        let moved: Vec<String> = self
            .drafts
            .keys()
            .filter(|(p, _)| p == from)
            .map(|(_, c)| c.clone())
            .collect();
        for conv in moved {
            let anon = self
                .drafts
                .remove(&(from.to_owned(), conv.clone()))
                .expect("listed");
            let merged = match self.drafts.get(&(to.to_owned(), conv.clone())) {
                Some(user) => merge_on_sign_in(user, &anon, 0),
                None => Draft {
                    principal: Principal(to.to_owned()),
                    ..anon.clone()
                },
            };
            // Attachment bytes follow their (possibly renamed) attachment.
            let anon_names: Vec<&str> = anon.attachments.iter().map(|a| a.name.as_str()).collect();
            let renamed = merged.attachments.iter().rev().take(anon_names.len()).rev();
            for (old, new) in anon_names.iter().zip(renamed) {
                let b = self
                    .bytes
                    .remove(&(from.to_owned(), conv.clone(), (*old).to_owned()))
                    .expect("bytes");
                self.bytes
                    .insert((to.to_owned(), conv.clone(), new.name.clone()), b);
            }
            self.drafts.insert((to.to_owned(), conv), merged);
        }
    }
}

async fn check_scope(b: &Browser, principal: &str, model: &Model) {
    let listed: BTreeMap<String, Value> = b
        .list()
        .await
        .into_iter()
        .map(|d| {
            (
                d["conversation"].as_str().expect("conversation").to_owned(),
                d,
            )
        })
        .collect();
    let expected: BTreeSet<&str> = model
        .drafts
        .keys()
        .filter(|(p, _)| p == principal)
        .map(|(_, c)| c.as_str())
        .collect();
    assert_eq!(
        listed.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected,
        "{principal} lists its own drafts only"
    );
    for conv in CONVS {
        let r = b.get(conv).await;
        match model.drafts.get(&(principal.to_owned(), conv.to_owned())) {
            None => assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{principal}/{conv}: {}",
                r.json()
            ),
            Some(d) => {
                let v = r.json();
                assert_eq!(r.status, StatusCode::OK);
                assert_eq!(v["text"], d.text.as_str(), "{principal}/{conv}");
                let names: BTreeSet<&str> = v["attachments"]
                    .as_array()
                    .expect("atts")
                    .iter()
                    .filter_map(|a| a["name"].as_str())
                    .collect();
                let want: BTreeSet<&str> = d.attachments.iter().map(|a| a.name.as_str()).collect();
                assert_eq!(names, want, "{principal}/{conv} attachments");
                for a in &d.attachments {
                    let got = b.get_att(conv, &a.name).await;
                    let want =
                        &model.bytes[&(principal.to_owned(), conv.to_owned(), a.name.clone())];
                    assert!(&got.body == want, "{principal}/{conv}/{} bytes", a.name);
                }
            }
        }
    }
}

async fn run_ops(ops: Vec<Op>) {
    let srv = start(|_| {}).await;
    let mut browsers = Vec::new();
    let mut principals = Vec::new();
    for _ in 0..BROWSERS {
        let b = srv.browser().await;
        principals.push(b.principal().await);
        browsers.push(b);
    }
    let mut model = Model::default();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Write { browser, conv } => {
                let (b, p, c) = (&browsers[browser], principals[browser].clone(), CONVS[conv]);
                let text = format!("{p} wrote {c} #{n}");
                let r = b.put_text(c, &text, b.seq(c).await).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json());
                let key = (p.clone(), c.to_owned());
                let d = model.drafts.entry(key).or_insert_with(|| Draft {
                    principal: Principal(p.clone()),
                    conversation: c.to_owned(),
                    text: String::new(),
                    seq: 0,
                    updated_at: 0,
                    deleted: false,
                    attachments: Vec::new(),
                });
                d.text = text;
            }
            Op::Attach { browser, conv } => {
                let (b, p, c) = (&browsers[browser], principals[browser].clone(), CONVS[conv]);
                let bytes = format!("{p}/{c}/{n}").into_bytes();
                let r = b
                    .put_att(c, "clip.webm", "audio/webm", bytes.clone(), b.seq(c).await)
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json());
                let d = model
                    .drafts
                    .entry((p.clone(), c.to_owned()))
                    .or_insert_with(|| Draft {
                        principal: Principal(p.clone()),
                        conversation: c.to_owned(),
                        text: String::new(),
                        seq: 0,
                        updated_at: 0,
                        deleted: false,
                        attachments: Vec::new(),
                    });
                if d.attachment("clip.webm").is_none() {
                    d.attachments.push(AttachmentMeta {
                        name: "clip.webm".into(),
                        content_type: "audio/webm".into(),
                        size: bytes.len() as u64,
                        sha256: String::new(),
                        blob_id: String::new(),
                    });
                }
                model
                    .bytes
                    .insert((p, c.to_owned(), "clip.webm".into()), bytes);
            }
            Op::Delete { browser, conv } => {
                let (b, p, c) = (&browsers[browser], principals[browser].clone(), CONVS[conv]);
                let r = b.delete(c, b.seq(c).await).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json());
                if let Some(d) = model.drafts.remove(&(p.clone(), c.to_owned())) {
                    for a in d.attachments {
                        model.bytes.remove(&(p.clone(), c.to_owned(), a.name));
                    }
                }
            }
            Op::SignIn { browser, user } => {
                let b = &browsers[browser];
                if !principals[browser].starts_with("anon:") {
                    b.sign_out().await;
                    b.new_session().await;
                    principals[browser] = b.principal().await;
                }
                let from = principals[browser].clone();
                b.sign_in(USERS[user], None).await;
                let to = format!("user:{}", USERS[user]);
                model.sign_in(&from, &to);
                principals[browser] = to;
            }
            Op::SignOut { browser } => {
                let b = &browsers[browser];
                b.sign_out().await;
                b.new_session().await;
                principals[browser] = b.principal().await;
            }
        }
        for (b, p) in browsers.iter().zip(&principals) {
            check_scope(b, p, &model).await;
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..Default::default() })]
    #[test]
    fn random_interleavings_stay_in_scope(ops in proptest::collection::vec(op_strategy(), 1..24)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run_ops(ops));
    }
}

/// A server with at-rest encryption over a memory store the test can also write to
/// directly: the attacker with write access to the store (an unauthenticated Redis).
async fn start_encrypted_over(store: Arc<dyn Store>) -> TestServer {
    use base64::Engine;
    let mut config = base_config();
    config.drafts.encryption_key = base64::engine::general_purpose::STANDARD
        .encode([0x5b; 32])
        .into();
    let dir = sessiond_testkit::inproc::DataDir::new();
    config.data_dir = dir.path().join("data");
    TestServer::spawn(&dir, move |listener, shutdown| async move {
        sessiond_server::ServerBuilder::new(config)
            .store(store)
            .build()
            .await?
            .serve(listener, shutdown)
            .await
    })
    .await
}

/// Finding 8 (issue 10): a victim's sealed draft copied in the store under the
/// attacker's principal is not decrypted for the attacker: 500 `store_integrity`, no
/// content; the victim still reads it; a sign-in merge keeps the moved drafts readable.
#[tokio::test]
async fn an_encrypted_draft_copied_to_another_principal_is_refused() {
    let raw: Arc<dyn Store> = Arc::new(sessiond_store_memory::MemoryStore::new());
    let srv = start_encrypted_over(raw.clone()).await;
    let victim = srv.browser().await;
    let attacker = srv.browser().await;
    let secret = "SECRET-card-4242-4242";
    assert_eq!(
        victim.put_text("support", secret, 0).await.status,
        StatusCode::OK
    );
    assert_eq!(
        attacker.put_text("support", "mine", 0).await.status,
        StatusCode::OK
    );
    let vp = Principal(victim.principal().await);
    let ap = Principal(attacker.principal().await);
    let sealed = raw.get_draft(&vp, "support").await.unwrap().unwrap();
    assert!(!sealed.text.contains(secret), "stored sealed");
    // Same conversation, same seq (1), another principal.
    let w = raw
        .put_draft_text(&ap, "support", 1, &sealed.text, 1)
        .await
        .unwrap();
    assert!(matches!(w, sessiond_core::draft::DraftWrite::Written(_)));
    let r = attacker.get("support").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.json());
    assert_eq!(r.code(), "store_integrity");
    assert!(!String::from_utf8_lossy(&r.body).contains(secret));
    let r = attacker.send(Method::GET, "/v1/drafts", None, None).await;
    assert_eq!(r.code(), "store_integrity");
    assert!(!String::from_utf8_lossy(&r.body).contains(secret));
    assert_eq!(victim.get("support").await.json()["text"], secret);

    // The victim signs in: the anonymous drafts (text and attachment) are re-sealed for
    // the user and stay readable.
    let clip = audio(70_000, 9);
    assert_eq!(
        victim
            .put_att("support", "note.webm", "audio/webm", clip.clone(), 1)
            .await
            .status,
        StatusCode::OK
    );
    victim.sign_in("erin", None).await;
    let d = victim.get("support").await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.json());
    assert_eq!(d.json()["text"], secret);
    assert_eq!(d.json()["attachments"][0]["size"], 70_000);
    assert_eq!(victim.get_att("support", "note.webm").await.body, clip);
}
