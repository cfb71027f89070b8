//! The hub's two background tasks (one heartbeat timer for all connections, one bus
//! listener) and the store follow-ups of hub operations (snapshot retention, audit).

use super::hub::{Effects, Hub, LostConn};
use super::protocol::{close, ServerMsg};
use crate::bus::Event;
use crate::state::AppState;
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::clock::to_rfc3339;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// Timers fired per pass; the rest fire on the next pass, right after.
const FIRE_BATCH: usize = 4096;
/// Longest sleep of the timer task when no connection exists.
const IDLE_SLEEP: Duration = Duration::from_secs(60);
/// Shortest sleep between two passes. Pings of many connections are spread over the
/// interval (jitter), so without it the task would wake once per connection per
/// interval and every ping would wake a worker on its own; passes at most this often
/// fire the pings due meanwhile together (at 10k connections and 30 s, about 33 a
/// pass), which is what keeps idle connections cheap in CPU. A ping or a loss check is
/// at most this late, far below the interval.
const MIN_PASS: Duration = Duration::from_millis(100);

/// Starts the hub's two tasks (once per state; a second call starts nothing). The
/// builder calls it and its guard owns the handles, so the tasks stop with the server
/// and the last one's retention write is awaited on shutdown.
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    if !state.hub.claim_start() {
        return Vec::new();
    }
    // Subscribed before any connection exists, so no event is missed.
    let events = state.bus.subscribe();
    vec![
        tokio::spawn(timer_loop(state.clone())),
        tokio::spawn(bus_loop(state.clone(), events)),
    ]
}

/// Sleeps until the earliest heartbeat deadline (woken early when an earlier one is
/// scheduled, but never sooner than [`MIN_PASS`] after the last pass), fires what is
/// due, and on shutdown closes everything with 1001.
async fn timer_loop(state: AppState) {
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    // When the next pass may run at the earliest (a full batch leaves a backlog that
    // runs at once).
    let mut not_before = tokio::time::Instant::now();
    loop {
        let now = hub.now_ms();
        let wait = match hub.next_deadline() {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => Duration::from_millis((t - now) as u64),
            None => IDLE_SLEEP,
        };
        // Measured from the last pass, so early wake-ups (new connections) cannot keep
        // postponing it.
        let until = (tokio::time::Instant::now() + wait).max(not_before);
        if until > tokio::time::Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = hub.timer_wake.notified() => continue,
                _ = shutdown.cancelled() => break,
            }
        }
        let fire_at = hub.now_ms();
        let fx = hub.fire_due(fire_at, FIRE_BATCH);
        apply(&state, fx);
        let backlog = hub.next_deadline().is_some_and(|t| t <= fire_at);
        not_before = if backlog {
            tokio::time::Instant::now()
        } else {
            tokio::time::Instant::now() + MIN_PASS
        };
        tokio::task::yield_now().await;
    }
    let fx = hub.close_all(close::GOING_AWAY);
    tracing::info!(
        rooms = fx.emptied.len(),
        "websocket connections told the server is going away"
    );
    // Awaited (not spawned) so the retention is written before the process exits.
    retain_emptied(&state, fx.emptied).await;
}

/// Reacts to session events: endings, renewals and warnings reach the session's
/// connections; room events from other nodes reach this node's members.
async fn bus_loop(state: AppState, mut events: tokio::sync::broadcast::Receiver<Event>) {
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = shutdown.cancelled() => return,
        };
        match ev {
            // Needs the store (grants, the session record): off the bus loop.
            Ok(Event::RoomAccessChanged { handle }) => {
                hub.access_changed();
                tokio::spawn(recheck_rooms(state.clone(), handle));
            }
            // Only the node holding the connection finds it; the others do nothing.
            Ok(Event::DropConnection { connection_id, key }) => {
                drop_connection(&state, &connection_id, &key);
            }
            Ok(ev) => {
                let fx = handle_event(&hub, ev);
                apply(&state, fx);
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "websocket hub lagged behind the bus; reconciling endings"
                );
                tokio::spawn(reconcile(state.clone()));
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// What one bus event does to this node's connections.
pub fn handle_event(hub: &Hub, ev: Event) -> Effects {
    match ev {
        Event::SessionEnded { handle, reason, .. } => hub.session_ended(&handle, reason),
        Event::SessionRotated { handle, version } => hub.session_rotated(&handle, version),
        Event::SessionRenewed {
            handle,
            idle_expires_at,
            absolute_expires_at,
        } => hub.to_session(
            &handle,
            &ServerMsg::Renewed {
                idle_expires_at: to_rfc3339(idle_expires_at),
                absolute_expires_at: to_rfc3339(absolute_expires_at),
            },
        ),
        Event::ExpiryWarning {
            handle,
            seconds_left,
            idle_expires_at,
        } => hub.to_session(
            &handle,
            &ServerMsg::ExpiryWarning {
                seconds_left,
                idle_expires_at: to_rfc3339(idle_expires_at),
            },
        ),
        // Handled (and audited) by the bus loop, see [`drop_connection`].
        Event::DropConnection { .. } => Effects::default(),
        // Re-checked by the bus loop (it reads the store), see [`recheck_rooms`].
        Event::RoomAccessChanged { .. } => Effects::default(),
        Event::Presence {
            room,
            payload,
            origin,
        } => {
            if origin == hub.node_id() {
                Effects::default()
            } else {
                hub.deliver_remote(&room, &payload)
            }
        }
    }
}

/// A grant of `handle` changed: each of its connections here leaves (told why) every
/// room no grant admits it to any more. A store failure keeps the member (logged) rather
/// than emptying rooms on a blip; the next change re-checks.
pub async fn recheck_rooms(state: AppState, handle: sessiond_core::Handle) {
    let rooms = state.hub.session_rooms(&handle);
    if rooms.is_empty() {
        return;
    }
    let session = match state.sessions.get(&handle).await {
        Ok(Some(s)) if s.is_active() => s,
        // Ended or gone: its ending closes the connections (with the ending's reason).
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(handle = %handle, error = %e, "room re-check could not read the session");
            return;
        }
    };
    for (id, room, token_exp) in rooms {
        match state.rooms.decide(&session, &room, None, token_exp).await {
            Ok(_) => {}
            Err(crate::rooms::RoomDenied::Session(e)) => {
                tracing::warn!(handle = %handle, room = %room, error = %e, "room re-check failed");
            }
            Err(_) => {
                if let Some(fx) = state.hub.expel(id, &room) {
                    metrics::counter!("sessiond_room_access_revoked_total").increment(1);
                    apply(&state, fx);
                }
            }
        }
    }
}

/// Missed bus events may have been endings: ask the sessions of every local connection.
async fn reconcile(state: AppState) {
    for handle in state.hub.handles() {
        match state.sessions.get(&handle).await {
            Ok(Some(s)) if !s.is_active() => {
                let reason = s.end_reason.unwrap_or(sessiond_core::EndReason::Revoked);
                let fx = state.hub.session_ended(&handle, reason);
                apply(&state, fx);
            }
            // A missed event may also have been a lost grant.
            Ok(Some(_)) => recheck_rooms(state.clone(), handle).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(handle = %handle, error = %e, "reconcile lookup failed"),
        }
    }
}

/// Drops `connection_id` if this node holds it (closed with 4011, rooms told `lost`)
/// and audits `connection_dropped` naming the acting `key`. `false` if it is not here.
pub fn drop_connection(state: &AppState, connection_id: &str, key: &str) -> bool {
    let (found, fx) = state.hub.drop_connection(connection_id);
    apply(state, fx);
    let Some((member, rooms)) = found else {
        return false;
    };
    metrics::counter!("sessiond_ws_dropped_total").increment(1);
    tracing::info!(handle = %member.handle, connection_id = %connection_id, key = %key, "websocket connection dropped by an operator");
    let state = state.clone();
    let connection_id = connection_id.to_owned();
    let key = key.to_owned();
    tokio::spawn(async move {
        let ev = AuditEvent {
            handle: Some(member.handle.clone()),
            principal: Some(member.principal.clone()),
            role: Some(member.role.clone()),
            ..AuditEvent::new(state.clock.now(), AuditKind::ConnectionDropped)
        }
        .with_detail(serde_json::json!({
            "connection_id": connection_id,
            "rooms": rooms,
            "node": state.node_id,
            "key": key,
            "session_kept": true,
        }));
        state.sessions.audit(ev).await;
    });
    true
}

/// Runs the store follow-ups of a hub operation in the background.
pub fn apply(state: &AppState, fx: Effects) {
    if fx.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        for lost in fx.lost {
            audit_lost(&state, lost).await;
        }
        retain_emptied(&state, fx.emptied).await;
    });
}

/// Empty rooms keep their snapshot for `snapshots.retention` (unless someone rejoined meanwhile).
pub async fn retain_emptied(state: &AppState, rooms: Vec<String>) {
    if rooms.is_empty() {
        return;
    }
    let until = state.clock.now() + state.config.snapshots.retention.as_millis() as i64;
    for room in rooms {
        if state.hub.room_len(&room) > 0 {
            continue;
        }
        if let Err(e) = state.store.retain_snapshot(&room, Some(until)).await {
            tracing::warn!(room = %room, error = %e, "could not start snapshot retention");
        }
    }
}

async fn audit_lost(state: &AppState, lost: LostConn) {
    metrics::counter!("sessiond_ws_lost_total").increment(1);
    tracing::info!(
        handle = %lost.handle,
        connection_id = %lost.member.connection_id,
        silent_ms = lost.silent_ms,
        "websocket connection lost (heartbeat)"
    );
    let now = state.clock.now();
    let ev = match state.sessions.get(&lost.handle).await {
        Ok(Some(s)) => AuditEvent::for_session(now, AuditKind::ConnectionLost, &s),
        _ => AuditEvent {
            handle: Some(lost.member.handle.clone()),
            principal: Some(lost.member.principal.clone()),
            role: Some(lost.member.role.clone()),
            ..AuditEvent::new(now, AuditKind::ConnectionLost)
        },
    };
    let ev = ev
        .with_reason("heartbeat_lost")
        .with_detail(serde_json::json!({
            "connection_id": lost.member.connection_id,
            "rooms": lost.rooms,
            "silent_ms": lost.silent_ms,
            "session_kept": true,
        }));
    state.sessions.audit(ev).await;
}
