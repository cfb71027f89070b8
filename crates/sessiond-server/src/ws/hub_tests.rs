//! Heartbeat tests of the hub on tokio's paused clock: ping interval, misses → lost, and
//! what members and the bus are told. The hub reads tokio time (`Hub::now_ms`), so these
//! tests move a virtual clock and never sleep for real.

use super::*;
use crate::ws::tasks::handle_event;
use serde_json::Value;
use sessiond_core::lifecycle::{new_session, ClientInfo};
use std::time::Duration;
use tokio::time::Instant;

const INTERVAL_MS: i64 = 1000;
const MISSES: u32 = 3;

fn policy(interval: Duration) -> Policy {
    let mut p = Policy::new(60, 600);
    p.heartbeat_interval = interval;
    p.heartbeat_misses = MISSES;
    p
}

fn hub() -> Hub {
    Hub::new(
        "n1".into(),
        Bus::new(),
        &crate::config::Config::default().ws,
    )
}

/// One registered connection; its queue is read through `shared`.
struct Client {
    id: u64,
    shared: Arc<ConnShared>,
    session: Session,
}

fn connect(hub: &Hub, policy: &Policy) -> Client {
    let (session, _) = new_session(0, "editor", policy, &ClientInfo::default());
    let shared = Arc::new(ConnShared::new(hub.now_ms(), 64));
    let id = hub
        .register(&session, None, policy, shared.clone(), 0, 4096)
        .expect("registered");
    let mut c = Client {
        id,
        shared,
        session,
    };
    assert!(c.texts().iter().any(|t| t.contains(r#""type":"hello""#)));
    c
}

impl Client {
    /// Drains the queue: (pings, texts).
    fn drain(&mut self) -> (usize, Vec<String>) {
        let (mut pings, mut texts) = (0, Vec::new());
        while let Some(m) = self.shared.pop() {
            match m {
                Outbound::Ping => pings += 1,
                Outbound::Text(t) => texts.push(t.as_str().to_owned()),
            }
        }
        (pings, texts)
    }
    fn texts(&mut self) -> Vec<String> {
        self.drain().1
    }
}

/// What the timer task does once: sleeps (virtual time) until the earliest deadline, then
/// fires what is due. `None` when nothing is scheduled.
async fn next_tick(hub: &Hub) -> Option<Effects> {
    let at = hub.next_deadline()?;
    let now = hub.now_ms();
    if at > now {
        tokio::time::sleep(Duration::from_millis((at - now) as u64)).await;
    }
    Some(hub.fire_due(hub.now_ms(), 4096))
}

#[tokio::test(start_paused = true)]
async fn first_ping_is_jittered_then_one_per_interval_while_answered() {
    let hub = hub();
    let mut c = connect(&hub, &policy(Duration::from_secs(1)));
    let first = hub.next_deadline().expect("a heartbeat is scheduled");
    assert!(
        (0..INTERVAL_MS).contains(&first),
        "first ping within one interval: {first}"
    );
    let start = Instant::now();
    let mut pinged_at = Vec::new();
    for _ in 0..10 {
        let fx = next_tick(&hub).await.expect("still scheduled");
        assert!(fx.lost.is_empty(), "an answering client is never lost");
        // Every wake-up of an answered connection is a ping: no wasted timer fires.
        assert_eq!(c.drain().0, 1, "one ping per tick");
        pinged_at.push(hub.now_ms());
        // The client answers at once.
        c.shared.heard(hub.now_ms());
    }
    assert_eq!(
        start.elapsed(),
        Duration::from_millis((first + 9 * INTERVAL_MS) as u64),
        "virtual time only"
    );
    assert_eq!(pinged_at[0], first);
    for w in pinged_at.windows(2) {
        assert_eq!(w[1] - w[0], INTERVAL_MS, "{pinged_at:?}");
    }
    assert_eq!(c.shared.close_code(), None);
    assert_eq!(hub.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_late_pass_does_not_stretch_the_ping_interval() {
    let hub = hub();
    let mut c = connect(&hub, &policy(Duration::from_secs(1)));
    let first = hub.next_deadline().expect("a heartbeat is scheduled");
    let mut pinged = Vec::new();
    for _ in 0..5 {
        let due = hub.next_deadline().expect("still scheduled");
        // Each pass runs 70 ms after the ping was due (as batched passes do).
        let late = due + 70 - hub.now_ms();
        tokio::time::sleep(Duration::from_millis(late as u64)).await;
        let fx = hub.fire_due(hub.now_ms(), 4096);
        assert!(fx.lost.is_empty());
        assert_eq!(c.drain().0, 1, "one ping per pass");
        pinged.push(hub.now_ms());
        c.shared.heard(hub.now_ms());
    }
    let expected: Vec<i64> = (0..5).map(|k| first + 70 + k * INTERVAL_MS).collect();
    assert_eq!(pinged, expected, "paced from when each ping was due");
}

#[tokio::test(start_paused = true)]
async fn silence_is_lost_after_exactly_misses_intervals() {
    let hub = hub();
    let mut c = connect(&hub, &policy(Duration::from_secs(1)));
    let heard = hub.now_ms();
    let mut pings = 0;
    let lost = loop {
        let fx = next_tick(&hub).await.expect("scheduled until lost");
        pings += c.drain().0;
        if let Some(l) = fx.lost.into_iter().next() {
            break l;
        }
        assert!(hub.now_ms() - heard < 3 * INTERVAL_MS, "not lost in time");
    };
    assert_eq!(
        hub.now_ms() - heard,
        i64::from(MISSES) * INTERVAL_MS,
        "lost exactly at interval × misses"
    );
    assert_eq!(pings, MISSES as usize, "one unanswered ping per miss");
    assert_eq!(lost.silent_ms, 3 * INTERVAL_MS);
    assert_eq!(lost.handle, c.session.handle);
    assert_eq!(c.shared.close_code(), Some(close::HEARTBEAT_LOST));
    assert!(hub.is_empty());
    assert_eq!(hub.next_deadline(), None, "its timer went with it");
}

#[tokio::test(start_paused = true)]
async fn any_frame_heard_resets_the_misses() {
    let hub = hub();
    let c = connect(&hub, &policy(Duration::from_secs(1)));
    // Two intervals of silence, then one frame.
    tokio::time::advance(Duration::from_millis(2500)).await;
    assert!(hub.fire_due(hub.now_ms(), 4096).lost.is_empty());
    c.shared.heard(hub.now_ms());
    let heard = hub.now_ms();
    let lost_at = loop {
        let fx = next_tick(&hub).await.expect("scheduled until lost");
        if !fx.lost.is_empty() {
            break hub.now_ms();
        }
    };
    assert_eq!(
        lost_at - heard,
        3 * INTERVAL_MS,
        "counted from the last frame"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_member_is_announced_to_its_room_and_on_the_bus() {
    let hub = hub();
    let p = policy(Duration::from_secs(1));
    let mut bus = hub.bus.subscribe();
    let mut silent = connect(&hub, &p);
    let mut other = connect(&hub, &p);
    let (r, _) = hub.join(silent.id, "room-1", None);
    assert_eq!(r, Ok(true));
    let (r, _) = hub.join(other.id, "room-1", None);
    assert_eq!(r, Ok(false));
    silent.drain();
    other.drain();
    while bus.try_recv().is_ok() {}

    let lost = loop {
        let fx = next_tick(&hub).await.expect("scheduled");
        if !fx.lost.is_empty() {
            break fx.lost;
        }
        // `other` answers every ping; `silent` never does.
        if other.drain().0 > 0 {
            other.shared.heard(hub.now_ms());
        }
    };
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].rooms, vec!["room-1".to_owned()]);
    let silent_member = lost[0].member.connection_id.clone();

    let left: Vec<Value> = other
        .texts()
        .iter()
        .map(|t| serde_json::from_str(t).expect("JSON"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["type"], "member_left");
    assert_eq!(left[0]["room"], "room-1");
    assert_eq!(left[0]["reason"], "lost");
    assert_eq!(left[0]["member"]["connection_id"], silent_member.as_str());
    // Other nodes hear of it through the bus, tagged with this node.
    let ev = bus.try_recv().expect("published");
    match ev {
        Event::Presence {
            room,
            payload,
            origin,
        } => {
            assert_eq!((room.as_str(), origin.as_str()), ("room-1", "n1"));
            assert_eq!(payload, left[0]);
        }
        other => panic!("expected a presence event, got {other:?}"),
    }
    assert_eq!(hub.room_members("room-1").map(|m| m.len()), Some(1));
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_wakes_the_timer_and_a_later_one_does_not() {
    let hub = hub();
    // A 1 ms interval leaves no room for jitter: its first ping is due now.
    let _fast = connect(&hub, &policy(Duration::from_millis(1)));
    tokio::time::timeout(Duration::from_millis(1), hub.timer_wake.notified())
        .await
        .expect("the first deadline wakes the timer");
    let _slow = connect(&hub, &policy(Duration::from_secs(1)));
    assert!(
        tokio::time::timeout(Duration::from_millis(1), hub.timer_wake.notified())
            .await
            .is_err(),
        "a deadline after the earliest one lets the timer sleep on"
    );
}

#[tokio::test(start_paused = true)]
async fn warnings_renewals_and_endings_reach_every_connection_of_the_session() {
    let hub = hub();
    let p = policy(Duration::from_secs(1));
    let mut tab1 = connect(&hub, &p);
    let tab2 = Arc::new(ConnShared::new(hub.now_ms(), 64));
    hub.register(&tab1.session, None, &p, tab2.clone(), 0, 4096)
        .expect("second tab");
    let _ = tab2.pop();
    let handle = tab1.session.handle;
    let tab2_texts = |q: &ConnShared| {
        std::iter::from_fn(|| q.pop())
            .filter_map(|m| match m {
                Outbound::Text(t) => Some(t.as_str().to_owned()),
                Outbound::Ping => None,
            })
            .collect::<Vec<_>>()
    };

    let fx = handle_event(
        &hub,
        Event::ExpiryWarning {
            handle,
            seconds_left: 2,
            idle_expires_at: 5_000,
        },
    );
    assert!(fx.is_empty());
    for texts in [tab1.texts(), tab2_texts(&tab2)] {
        assert_eq!(texts.len(), 1, "{texts:?}");
        let v: Value = serde_json::from_str(&texts[0]).expect("JSON");
        assert_eq!(v["type"], "expiry_warning");
        assert_eq!(v["seconds_left"], 2);
        assert_eq!(v["idle_expires_at"], to_rfc3339(5_000));
    }

    let _ = handle_event(
        &hub,
        Event::SessionRenewed {
            handle,
            idle_expires_at: 9_000,
            absolute_expires_at: 60_000,
        },
    );
    for texts in [tab1.texts(), tab2_texts(&tab2)] {
        let v: Value = serde_json::from_str(&texts[0]).expect("JSON");
        assert_eq!(v["type"], "renewed");
        assert_eq!(v["idle_expires_at"], to_rfc3339(9_000));
    }

    let _ = handle_event(
        &hub,
        Event::SessionEnded {
            handle,
            principal: tab1.session.principal.to_string(),
            reason: EndReason::IdleTimeout,
        },
    );
    let v: Value = serde_json::from_str(&tab1.texts()[0]).expect("JSON");
    assert_eq!(v["type"], "session_ended");
    assert_eq!(v["reason"], "idle_timeout");
    assert_eq!(tab1.shared.close_code(), Some(close::IDLE_TIMEOUT));
    assert!(hub.is_empty(), "both tabs removed");
    assert_eq!(hub.next_deadline(), None);
}

fn remote_member(id: &str) -> Member {
    Member {
        connection_id: id.into(),
        handle: "s_remote".into(),
        principal: "anon:remote".into(),
        role: "editor".into(),
        info: None,
    }
}

fn remote_joined(room: &str, id: &str) -> Value {
    serde_json::json!({"type": "member_joined", "room": room, "member": remote_member(id)})
}

/// A `member_joined` from another node that was still on the bus when a local joiner read
/// the registry is not sent twice: the joiner's `presence` already listed that member.
/// Joins it did not list, and later events about a listed member, still arrive.
#[tokio::test(start_paused = true)]
async fn a_remote_join_already_listed_in_presence_is_not_repeated() {
    let hub = hub();
    let p = policy(Duration::from_millis(INTERVAL_MS as u64));
    let mut early = connect(&hub, &p);
    let _ = hub.join(early.id, "r", None);
    early.texts();
    // `late` joins after the registry already lists n2-1 (its event is still in flight).
    let mut late = connect(&hub, &p);
    let (r, _) = hub.join_with(late.id, "r", None, vec![remote_member("n2-1")], None, None);
    r.expect("joined");
    let presence = late.texts().join("\n");
    assert!(presence.contains(r#""connection_id":"n2-1""#), "{presence}");
    early.texts();

    let _ = hub.deliver_remote("r", &remote_joined("r", "n2-1"));
    assert!(
        late.texts().is_empty(),
        "a listed member was announced twice"
    );
    assert_eq!(
        early.texts().len(),
        1,
        "a member not listed to `early` is announced"
    );

    // Another member, and the listed one leaving, reach both.
    let _ = hub.deliver_remote("r", &remote_joined("r", "n2-2"));
    assert_eq!((late.texts().len(), early.texts().len()), (1, 1));
    let left = serde_json::json!({"type": "member_left", "room": "r", "reason": "left",
        "member": remote_member("n2-1")});
    let _ = hub.deliver_remote("r", &left);
    assert_eq!((late.texts().len(), early.texts().len()), (1, 1));
    // A rejoin of n2-1 after it left is news to everyone.
    let _ = hub.deliver_remote("r", &remote_joined("r", "n2-1"));
    assert_eq!((late.texts().len(), early.texts().len()), (1, 1));
}
