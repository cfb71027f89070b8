//! "My devices": a signed-in user lists their live sessions (browser, OS, IP, which one
//! is this), ends one or all the others; another user, an anonymous session, a foreign
//! page and a stolen ended token get nothing. Where a session was last seen from is
//! updated by its requests and survives a restart.

use crate::common::*;
use reqwest::{Client, RequestBuilder};
use serde_json::{json, Value};
use sessiond_testkit::ws::{connect_bearer, WsClient};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// One signed-in device: its bearer token, handle and user agent.
struct Device {
    token: String,
    handle: String,
    ua: &'static str,
}

impl Device {
    fn req(&self, c: RequestBuilder) -> RequestBuilder {
        c.bearer_auth(&self.token).header("user-agent", self.ua)
    }
    async fn list(&self, s: &Server) -> reqwest::Response {
        self.req(Client::new().get(s.u("/v1/session/devices")))
            .send()
            .await
            .unwrap()
    }
    async fn devices(&self, s: &Server) -> Vec<Value> {
        let r = self.list(s).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["devices"]
            .as_array()
            .unwrap()
            .clone()
    }
    async fn end(&self, s: &Server, handle: &str) -> reqwest::Response {
        self.req(Client::new().delete(s.u(&format!("/v1/session/devices/{handle}"))))
            .send()
            .await
            .unwrap()
    }
    async fn end_others(&self, s: &Server) -> reqwest::Response {
        self.req(Client::new().post(s.u("/v1/session/devices/end-others")))
            .send()
            .await
            .unwrap()
    }
    async fn session(&self, s: &Server) -> reqwest::Response {
        self.req(Client::new().get(s.u("/v1/session")))
            .send()
            .await
            .unwrap()
    }
}

async fn sign_in(s: &Server, user: &str, ua: &'static str) -> Device {
    let r = Client::new()
        .post(s.u("/v1/session/signin"))
        .header("user-agent", ua)
        .json(&json!({ "ticket": s.ticket(user, "editor").await, "bearer": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    Device {
        token: v["token"].as_str().unwrap().to_owned(),
        handle: v["handle"].as_str().unwrap().to_owned(),
        ua,
    }
}

fn find<'a>(list: &'a [Value], handle: &str) -> &'a Value {
    list.iter()
        .find(|d| d["handle"] == handle)
        .unwrap_or_else(|| panic!("{handle} listed in {list:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lists_and_ends_their_own_devices() {
    let s = start().await;
    let laptop = sign_in(&s, "alice", FIREFOX).await;
    let phone = sign_in(&s, "alice", SAFARI).await;
    let tablet = sign_in(&s, "alice", FIREFOX).await;
    let bob = sign_in(&s, "bob", CHROME_MAC).await;

    let list = laptop.devices(&s).await;
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(list[0]["handle"], laptop.handle, "this device first");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["browser"], "Firefox 133");
    assert_eq!(list[0]["os"], "Linux");
    assert_eq!(list[0]["client_ip"], "127.0.0.1");
    assert_eq!(list[0]["role"], "editor");
    let p = find(&list, &phone.handle);
    assert_eq!(p["current"], false);
    assert_eq!(
        (p["browser"].as_str(), p["os"].as_str()),
        (Some("Safari 18"), Some("iOS"))
    );
    assert!(p["last_active_at"].as_str().unwrap().ends_with('Z'));
    // Bob sees only his own, and cannot end alice's: 404, as for a handle that never was.
    let bobs = bob.devices(&s).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["handle"], bob.handle);
    problem(bob.end(&s, &phone.handle).await, 404, "not_found").await;
    problem(
        bob.end(&s, "s_AAAAAAAAAAAAAAAAAAAAAA").await,
        404,
        "not_found",
    )
    .await;
    problem(bob.end(&s, "not-a-handle").await, 404, "not_found").await;
    assert_eq!(
        bob.end_others(&s).await.json::<Value>().await.unwrap(),
        json!({"ended": 0})
    );
    assert_eq!(phone.session(&s).await.status(), 200, "bob changed nothing");

    // The phone's open socket is closed with 4012 when the laptop ends it.
    let mut ws = WsClient::spawn(connect_bearer(&s.ws_url, &phone.token).await);
    assert_eq!(ws.json().await["type"], "hello");
    assert_eq!(laptop.end(&s, &phone.handle).await.status(), 204);
    assert_eq!(ws.close_code().await, Some(4012));
    let p = problem(phone.session(&s).await, 401, "session_expired").await;
    assert_eq!(p["reason"], "ended_by_user");
    // The stolen (ended) token gets nothing of the devices either.
    problem(phone.list(&s).await, 401, "session_expired").await;
    problem(phone.end_others(&s).await, 401, "session_expired").await;
    // Ending it again: it is no live device any more.
    problem(laptop.end(&s, &phone.handle).await, 404, "not_found").await;
    let ended = s.audit_ended(&phone.handle).await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "ended_by_user");
    assert_eq!(ended[0]["detail"]["by"], laptop.handle.as_str());

    // End the others: the tablet goes, the laptop stays, bob is untouched.
    let r = laptop.end_others(&s).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ended": 1}));
    problem(tablet.session(&s).await, 401, "session_expired").await;
    assert_eq!(laptop.session(&s).await.status(), 200);
    assert_eq!(bob.session(&s).await.status(), 200);
    let list = laptop.devices(&s).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);

    // Its own handle signs this device out (the cookie is cleared).
    let r = laptop.end(&s, &laptop.handle).await;
    assert_eq!(r.status(), 204);
    assert!(set_cookie(r.headers()).contains("Max-Age=0"));
    let p = problem(laptop.session(&s).await, 401, "session_expired").await;
    assert_eq!(p["reason"], "signed_out");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_foreign_and_missing_callers_are_refused() {
    let s = start().await;
    let (anon, _) = s.new_session().await;
    let alice = sign_in(&s, "alice", FIREFOX).await;
    let c = Client::new();
    problem(
        get(&s.u("/v1/session/devices"), &anon).await,
        403,
        "not_signed_in",
    )
    .await;
    problem(
        post(&s.u("/v1/session/devices/end-others"), &anon).await,
        403,
        "not_signed_in",
    )
    .await;
    let r = c
        .delete(s.u(&format!("/v1/session/devices/{}", alice.handle)))
        .header("cookie", cookie(&anon))
        .send()
        .await
        .unwrap();
    problem(r, 403, "not_signed_in").await;
    problem(
        c.get(s.u("/v1/session/devices")).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    // A foreign page cannot make a signed-in cookie end devices.
    let signed = c
        .post(s.u("/v1/session/signin"))
        .json(&json!({ "ticket": s.ticket("alice", "editor").await }))
        .send()
        .await
        .unwrap();
    let alice_cookie = token_of(signed.headers()).unwrap();
    let r = c
        .post(s.u("/v1/session/devices/end-others"))
        .header("cookie", cookie(&alice_cookie))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden_origin").await;
    assert_eq!(alice.session(&s).await.status(), 200, "nothing ended");
    // With its own origin (the demo page), the cookie works.
    let r = c
        .post(s.u("/v1/session/devices/end-others"))
        .header("cookie", cookie(&alice_cookie))
        .header("origin", s.url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"ended": 1}));
    problem(alice.session(&s).await, 401, "session_expired").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_a_device_was_last_seen_is_kept_current_and_stored() {
    let dir = DataDir::new();
    let s = start_in(&dir, Opts::default()).await;
    let laptop = sign_in(&s, "alice", FIREFOX).await;
    let mut phone = sign_in(&s, "alice", SAFARI).await;
    // The same session, now from another browser (say the user agent updated itself).
    phone.ua = CHROME_MAC;
    assert_eq!(phone.session(&s).await.status(), 200);
    let p = find(&laptop.devices(&s).await, &phone.handle).clone();
    assert_eq!(p["user_agent"], CHROME_MAC);
    assert_eq!(
        (p["browser"].as_str(), p["os"].as_str()),
        (Some("Chrome 131"), Some("macOS"))
    );
    // Written with the coalesced activity (a clean stop flushes it), so a restart keeps it.
    s.stop().await;
    let s = start_in(&dir, Opts::default()).await;
    let p = find(&laptop.devices(&s).await, &phone.handle).clone();
    assert_eq!(p["user_agent"], CHROME_MAC);
    let admin = s
        .admin_get(&format!("/v1/admin/sessions/{}", phone.handle))
        .await;
    assert_eq!(admin["user_agent"], CHROME_MAC);
    s.stop().await;
}
