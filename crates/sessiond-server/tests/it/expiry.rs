//! Idle and absolute timeouts with short real deadlines, renewal, and deadlines that
//! survive a restart.

use crate::common::*;
use serde_json::Value;
use sessiond_server::routes::admin::parse_time;
use sessiond_testkit::wait;
use std::time::{Duration, Instant};

/// Editor: idle 2 s (warning 1 s before), absolute 4 s.
const SHORT: &str =
    "[roles.editor]\nidle_timeout = \"2s\"\nabsolute_timeout = \"4s\"\nwarn_before = \"1s\"";

fn ms(v: &Value) -> i64 {
    parse_time(v.as_str().expect("time string")).expect("RFC 3339")
}

/// Waits for the `ended` audit event of `handle` (only the scheduler writes it while no
/// request touches the session).
async fn ended_event(s: &Server, handle: &str) -> Value {
    wait::until_some(wait::DEFAULT, "the ended audit event", move || async move {
        s.audit_of(handle)
            .await
            .into_iter()
            .find(|e| e["kind"] == "ended")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_ends_and_the_audit_lists_it() {
    let s = start_with(Opts {
        extra: SHORT,
        ..Default::default()
    })
    .await;
    let (token, v) = s.new_session().await;
    let handle = v["handle"].as_str().unwrap();
    assert_eq!(v["seconds_left"], 2);
    // The scheduler ends it on its own: the audit has it before any request asks.
    let ended = ended_event(&s, handle).await;
    assert_eq!(ended["reason"], "idle_timeout");
    assert!(
        ms(&ended["at"]) - ms(&v["idle_expires_at"]) < 1000,
        "ended within 1 s of the deadline: {ended}"
    );
    assert_eq!(ended["handle"], handle);
    assert_eq!(ended["principal"], v["principal"]);
    assert!(
        ended["client_ip"]
            .as_str()
            .is_some_and(|ip| ip == "127.0.0.1"),
        "{ended}"
    );
    let p = problem(
        get(&s.u("/v1/session"), &token).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(p["reason"], "idle_timeout");
    let p = problem(
        post(&s.u("/v1/session/activity"), &token).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(p["reason"], "idle_timeout");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_keeps_it_alive_and_renewal_never_passes_absolute() {
    let s = start_with(Opts {
        extra: SHORT,
        ..Default::default()
    })
    .await;
    let (token, v) = s.new_session().await;
    let absolute = ms(&v["absolute_expires_at"]);
    let start = Instant::now();
    // Activity and renewal every 600 ms: alive well past the 2 s idle timeout.
    let mut last_renewed = None;
    while start.elapsed() < Duration::from_millis(2900) {
        // Real-time smoke test: activity spaced on the wall clock outlives the idle timeout.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = post(&s.u("/v1/session/activity"), &token).await;
        assert_eq!(r.status(), 200, "alive at {:?}", start.elapsed());
        let r = post(&s.u("/v1/session/renew"), &token).await;
        assert_eq!(r.status(), 200);
        let cur: Value = r.json().await.unwrap();
        assert!(
            ms(&cur["idle_expires_at"]) <= absolute,
            "renewal passed the absolute deadline"
        );
        assert_eq!(ms(&cur["absolute_expires_at"]), absolute);
        last_renewed = Some(cur);
    }
    let last = last_renewed.unwrap();
    assert_eq!(
        ms(&last["idle_expires_at"]),
        absolute,
        "capped at the absolute deadline"
    );
    assert!(
        start.elapsed() > Duration::from_millis(2500),
        "outlived the idle timeout"
    );
    // Keep renewing: the absolute deadline still ends it.
    let (s_ref, token_ref) = (&s, &token);
    wait::until(
        wait::DEFAULT,
        "the absolute deadline to end the session",
        move || async move {
            let _ = post(&s_ref.u("/v1/session/renew"), token_ref).await;
            get(&s_ref.u("/v1/session"), token_ref).await.status() == 401
        },
    )
    .await;
    let p = problem(
        get(&s.u("/v1/session"), &token).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(p["reason"], "absolute_timeout");
    ended_event(&s, v["handle"].as_str().unwrap()).await;
    let events = s.audit_of(v["handle"].as_str().unwrap()).await;
    assert!(events.iter().any(|e| e["kind"] == "renewed"));
    assert_eq!(
        events.iter().filter(|e| e["kind"] == "ended").count(),
        1,
        "ends exactly once"
    );
    assert!(events
        .iter()
        .any(|e| e["kind"] == "ended" && e["reason"] == "absolute_timeout"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_survives_a_restart_and_ends_at_its_original_deadline() {
    let extra = "[roles.editor]\nidle_timeout = \"4s\"\nwarn_before = \"1s\"";
    let s = start_with(Opts {
        extra,
        ..Default::default()
    })
    .await;
    let (token, created) = s.new_session().await;
    // Activity that only the coalesced flush writes: the clean stop must not lose it.
    // Repeated until the wall clock has moved enough for it to move the deadline.
    let (s_ref, token_ref, created_ref) = (&s, &token, &created);
    let touched: Value = wait::until_some(
        wait::DEFAULT,
        "activity to move the idle deadline",
        move || async move {
            let v: Value = post(&s_ref.u("/v1/session/activity"), token_ref)
                .await
                .json()
                .await
                .unwrap();
            (ms(&v["idle_expires_at"]) > ms(&created_ref["idle_expires_at"])).then_some(v)
        },
    )
    .await;
    let dir = s.stop().await;

    let s = start_in(
        &dir,
        Opts {
            extra,
            ..Default::default()
        },
    )
    .await;
    let r = get(&s.u("/v1/session"), &token).await;
    assert_eq!(r.status(), 200, "alive after the restart");
    let after: Value = r.json().await.unwrap();
    assert_eq!(after["handle"], touched["handle"]);
    assert_eq!(
        after["idle_expires_at"], touched["idle_expires_at"],
        "the latest deadline survived"
    );
    let deadline = ms(&touched["idle_expires_at"]);
    // Ended by the restarted scheduler.
    let ended = ended_event(&s, touched["handle"].as_str().unwrap()).await;
    assert_eq!(ended["reason"], "idle_timeout");
    let at = ms(&ended["at"]);
    assert!(
        at >= deadline && at - deadline < 1000,
        "ended within 1 s of the original deadline ({at} vs {deadline})"
    );
    let p = problem(
        get(&s.u("/v1/session"), &token).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(p["reason"], "idle_timeout");
    s.stop().await;
}

/// The figures the benchmarks hold the server to are visible in production: after a
/// timeout ending, a store write and a few requests, `/metrics` has the expiry-lateness,
/// store-call and per-route request-duration histograms, with buckets (not summaries)
/// and with the route template, never a real handle, as the label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_expiry_lateness_store_calls_and_request_durations() {
    let s = start_with(Opts {
        extra: SHORT,
        ..Default::default()
    })
    .await;
    let (token, v) = s.new_session().await;
    let handle = v["handle"].as_str().unwrap().to_owned();
    assert_eq!(get(&s.u("/v1/session"), &token).await.status(), 200);
    let admin = reqwest::Client::new()
        .get(s.u(&format!("/v1/admin/sessions/{handle}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    ended_event(&s, &handle).await;

    let text = reqwest::get(s.u("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |needle: &str| {
        assert!(
            text.contains(needle),
            "{needle} missing from /metrics:\n{text}"
        );
    };
    has("sessiond_expiry_lateness_seconds_bucket{le=\"0.25\"}");
    has("sessiond_expiry_lateness_seconds_count");
    has(
        "sessiond_store_call_seconds_bucket{backend=\"sqlite\",op=\"create_session\",le=\"0.005\"}",
    );
    // The scheduler ends a timeout on the copy it decided on.
    has("sessiond_store_call_seconds_bucket{backend=\"sqlite\",op=\"expire_session\",le=");
    has("sessiond_store_group_commits_total");
    has("sessiond_http_request_duration_seconds_bucket{route=\"/v1/session\",method=\"POST\",status=\"2xx\",le=\"0.1\"}");
    has("sessiond_http_request_duration_seconds_bucket{route=\"/v1/session\",method=\"GET\",status=\"2xx\",le=");
    has("route=\"/v1/admin/sessions/{handle}\"");
    assert!(!text.contains(&handle), "a handle leaked into a label");
    s.stop().await;
}
