//! The connection registry: every live WebSocket connection by id and by session handle,
//! the rooms and their members, and the one heartbeat timer queue for all connections.
//!
//! Everything sits behind one std mutex that is never held across an `.await`; every
//! message to a connection goes through its bounded queue without waiting, so a slow
//! reader is cut off (close 4005) instead of growing memory. Messages about one room are
//! enqueued under the lock, so every member sees a room's events in the same order.

use super::protocol::{close, code, LeftReason, Member, ServerMsg, SnapshotBody};
use crate::bus::{Bus, Event};
use crate::config::WsConfig;
use sessiond_core::clock::to_rfc3339;
use sessiond_core::policy::Policy;
use sessiond_core::timer::DeadlineQueue;
use sessiond_core::{EndReason, Handle, Session, Timestamp};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use ws_stream::tungstenite::Utf8Bytes;

/// What the hub hands a connection task to write.
#[derive(Debug)]
pub enum Outbound {
    Text(Utf8Bytes),
    /// A WebSocket protocol ping (browsers answer it themselves).
    Ping,
}

impl Outbound {
    /// Bytes this message holds while queued (counted against `ws.max_outbound_bytes`).
    pub fn queued_len(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Ping => 0,
        }
    }
}

/// The few words shared between a connection task and the hub: when the client was last
/// heard (monotonic ms, written by the task on every frame, read by the timer), the
/// close the hub asked for, and the connection's outbound queue.
#[derive(Debug)]
pub struct ConnShared {
    last_heard: AtomicI64,
    close_code: AtomicU16,
    queue: Mutex<Queue>,
    /// Wakes the task: a message was queued, a close was asked for, or the hub let go.
    pub wake: Notify,
}

/// A connection's outbound queue, bounded in messages (`ws.outbound_queue`) and in bytes
/// (`ws.max_outbound_bytes`). It holds no buffer while empty: an idle connection's only
/// traffic is a ping per interval, and a channel would keep a block of slots per
/// connection allocated for its whole life.
#[derive(Debug)]
struct Queue {
    items: VecDeque<Outbound>,
    /// Bytes of text in `items`.
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    /// The hub let go of the connection (it left the registry): nothing more comes.
    released: bool,
    /// The task stopped reading: what the hub sends is dropped, not queued.
    reader_gone: bool,
}

/// What became of a message handed to a connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// Over a bound: the connection is a slow consumer.
    Full,
    /// The task no longer reads; the message was dropped.
    ReaderGone,
}

impl ConnShared {
    /// Shared state whose queue holds at most `max_messages` (`ws.outbound_queue`).
    pub fn new(now_ms: i64, max_messages: usize) -> Self {
        ConnShared {
            last_heard: AtomicI64::new(now_ms),
            close_code: AtomicU16::new(0),
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                max_items: max_messages.max(1),
                max_bytes: usize::MAX,
                released: false,
                reader_gone: false,
            }),
            wake: Notify::new(),
        }
    }
    /// Bounds the queue in bytes as well (`ws.max_outbound_bytes`).
    pub fn with_byte_limit(self, max: usize) -> Self {
        self.lock_queue().max_bytes = max;
        self
    }
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Queues `out` behind what is already queued and wakes the task. A message alone in
    /// the queue always fits the byte bound, so one large snapshot still gets through.
    fn push(&self, out: Outbound) -> Pushed {
        let mut q = self.lock_queue();
        if q.reader_gone {
            return Pushed::ReaderGone;
        }
        let len = out.queued_len();
        if q.items.len() >= q.max_items
            || (q.bytes > 0 && q.bytes.saturating_add(len) > q.max_bytes)
        {
            return Pushed::Full;
        }
        q.bytes += len;
        q.items.push_back(out);
        drop(q);
        self.wake.notify_one();
        Pushed::Queued
    }
    /// The next queued message, oldest first.
    pub fn pop(&self) -> Option<Outbound> {
        let mut q = self.lock_queue();
        let out = q.items.pop_front()?;
        q.bytes -= out.queued_len();
        if q.items.is_empty() {
            // Most connections sit idle between pings: their queue keeps no buffer.
            q.items = VecDeque::new();
        }
        Some(out)
    }
    /// Whether the hub let go of the connection and everything it queued was taken: the
    /// task has nothing more to write.
    pub fn drained_and_released(&self) -> bool {
        let q = self.lock_queue();
        q.released && q.items.is_empty()
    }
    /// The hub let go of the connection (it left the registry).
    fn release(&self) {
        self.lock_queue().released = true;
        self.wake.notify_one();
    }
    /// The task stopped reading: the queue is emptied and stays empty.
    pub fn stop_reading(&self) {
        let mut q = self.lock_queue();
        q.reader_gone = true;
        q.items = VecDeque::new();
        q.bytes = 0;
    }
    pub fn heard(&self, now_ms: i64) {
        self.last_heard.store(now_ms, Ordering::Relaxed);
    }
    pub fn last_heard(&self) -> i64 {
        self.last_heard.load(Ordering::Relaxed)
    }
    /// Asks the task to close with `code`; the first request wins.
    pub fn close(&self, code: u16) {
        let _ = self
            .close_code
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.wake.notify_one();
    }
    pub fn close_code(&self) -> Option<u16> {
        match self.close_code.load(Ordering::SeqCst) {
            0 => None,
            c => Some(c),
        }
    }
}

/// The registry's hold on a connection's shared state. Dropping it (the connection left
/// the registry) tells the task that nothing more will be queued, as dropping a
/// channel's last sender would.
#[derive(Debug)]
struct Outbox(Arc<ConnShared>);

impl std::ops::Deref for Outbox {
    type Target = ConnShared;
    fn deref(&self) -> &ConnShared {
        &self.0
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.release();
    }
}

struct Conn {
    shared: Outbox,
    /// Principal and role as authenticated; never changed while the connection lives.
    member: Member,
    handle: Handle,
    /// The session's rotation (`Session::version`) the connection authenticated at.
    version: u64,
    rooms: Vec<String>,
    /// What the connection holds about its rooms; `None` while it is in none (most
    /// connections never join one, and each keeps its `Conn` for its whole life).
    in_rooms: Option<Box<InRooms>>,
    connected_at: Timestamp,
    interval_ms: i64,
    lost_after_ms: i64,
    next_ping_at: i64,
}

/// A connection's state about the rooms it is in.
#[derive(Default)]
struct InRooms {
    /// The snapshot version last sent to (or written by) this connection per room it is
    /// in, so a repeated join never sends the same snapshot again. Forgotten on leaving
    /// (the client may drop the room's state), so it holds at most `max_rooms` entries.
    snapshots_held: HashMap<String, u64>,
    /// Rooms joined with a room token, and when that token expires (wall-clock ms): the
    /// re-check after a lost grant keeps them until then.
    token_rooms: HashMap<String, Timestamp>,
    /// Per room, the other nodes' members this connection's `presence` listed and no
    /// remote event has mentioned since: their `member_joined`, still in flight on the
    /// bus when the registry was read, is already known here and is not sent twice.
    seen_remote: HashMap<String, HashSet<String>>,
}

impl Conn {
    fn in_rooms_mut(&mut self) -> &mut InRooms {
        self.in_rooms.get_or_insert_with(Box::default)
    }
    fn snapshot_held(&self, room: &str) -> Option<u64> {
        self.in_rooms.as_ref()?.snapshots_held.get(room).copied()
    }
    fn token_expiry(&self, room: &str) -> Option<Timestamp> {
        self.in_rooms.as_ref()?.token_rooms.get(room).copied()
    }
    /// Leaves `room` here (not in the hub's room lists); `false` if not a member.
    fn forget_room(&mut self, room: &str) -> bool {
        let Some(pos) = self.rooms.iter().position(|r| r == room) else {
            return false;
        };
        self.rooms.swap_remove(pos);
        if self.rooms.is_empty() {
            self.in_rooms = None;
        } else if let Some(x) = self.in_rooms.as_mut() {
            x.token_rooms.remove(room);
            x.seen_remote.remove(room);
            x.snapshots_held.remove(room);
        }
        true
    }
}

#[derive(Default)]
struct HubState {
    /// Boxed: a table slot then costs a pointer, not a whole `Conn`, and the table keeps
    /// up to twice as many slots as connections.
    conns: HashMap<u64, Box<Conn>>,
    by_handle: HashMap<Handle, Vec<u64>>,
    /// Members in join order.
    rooms: HashMap<String, Vec<u64>>,
    /// Next heartbeat event per connection (monotonic ms): a ping or the loss check.
    timers: DeadlineQueue<u64>,
    closed: bool,
}

/// A connection declared lost by the heartbeat (audited by the caller).
#[derive(Debug, Clone)]
pub struct LostConn {
    pub handle: Handle,
    pub member: Member,
    pub rooms: Vec<String>,
    pub silent_ms: i64,
}

/// Follow-up work of a hub operation that needs the store (done outside the lock).
#[derive(Debug, Default)]
#[must_use]
pub struct Effects {
    /// Rooms whose last member left: their snapshot starts its retention.
    pub emptied: Vec<String>,
    pub lost: Vec<LostConn>,
    slow: Vec<u64>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.emptied.is_empty() && self.lost.is_empty()
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyConnections,
    ShuttingDown,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    TooManyRooms,
    /// The room has `ws.max_room_members` members on this node.
    RoomFull,
    /// The connection is gone (closed meanwhile).
    Gone,
}

/// One admin view of a connection.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConnInfo {
    pub connection_id: String,
    pub handle: String,
    pub principal: String,
    pub role: String,
    pub rooms: Vec<String>,
    pub connected_at: String,
    /// The member info the connection carries (see [`crate::member_info`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub info: Option<serde_json::Value>,
}

pub struct Hub {
    state: Mutex<HubState>,
    next_id: AtomicU64,
    epoch: tokio::time::Instant,
    /// Wakes the timer task when a deadline earlier than its current sleep appears.
    pub(crate) timer_wake: Notify,
    node_id: String,
    bus: Bus,
    max_rooms: usize,
    max_connections: usize,
    max_room_members: usize,
    started: AtomicBool,
    /// Bumped on every grant change seen here: a join decided before a change and
    /// registered after it re-checks (see [`Hub::access_epoch`]).
    access_epoch: AtomicU64,
}

fn text(msg: &ServerMsg) -> Utf8Bytes {
    Utf8Bytes::from(msg.to_json())
}

/// Enqueues without waiting; a full queue marks the connection a slow consumer.
/// Over `ws.max_outbound_bytes` counts as a full queue: a reader that does not keep up
/// with large messages is cut off before it holds many megabytes.
fn push(id: u64, c: &Conn, out: Outbound, fx: &mut Effects) {
    match c.shared.push(out) {
        Pushed::Queued => {}
        Pushed::Full => {
            c.shared.close(close::SLOW_CONSUMER);
            fx.slow.push(id);
        }
        // The task is already gone; its own unregister cleans up.
        Pushed::ReaderGone => {}
    }
}

impl Hub {
    pub fn new(node_id: String, bus: Bus, cfg: &WsConfig) -> Self {
        Hub {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
            epoch: tokio::time::Instant::now(),
            timer_wake: Notify::new(),
            node_id,
            bus,
            max_rooms: cfg.max_rooms_per_connection.max(1),
            max_connections: cfg.max_connections_per_session.max(1),
            max_room_members: cfg.max_room_members.max(1),
            started: AtomicBool::new(false),
            access_epoch: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Monotonic milliseconds for heartbeat timers (tokio time, so paused-time tests work).
    pub fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// True the first time only: the caller starts the hub's tasks.
    pub(crate) fn claim_start(&self) -> bool {
        !self.started.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn next_deadline(&self) -> Option<i64> {
        self.lock().timers.next_deadline()
    }

    fn schedule(&self, st: &mut HubState, id: u64, at: i64) {
        let earlier = st.timers.next_deadline().is_none_or(|t| at < t);
        st.timers.schedule(id, at);
        if earlier {
            self.timer_wake.notify_one();
        }
    }

    /// Registers a connection of `session` and enqueues its `hello` first.
    // Each argument is a distinct part of the new connection (its session and member
    // info, its policy, shared state and queue, clock and frame limit); a struct would
    // only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        session: &Session,
        info: Option<serde_json::Value>,
        policy: &Policy,
        shared: Arc<ConnShared>,
        wall_now: Timestamp,
        max_message_size: usize,
    ) -> Result<u64, Refused> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refused::ShuttingDown);
        }
        if st
            .by_handle
            .get(&session.handle)
            .is_some_and(|v| v.len() >= self.max_connections)
        {
            return Err(Refused::TooManyConnections);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            connection_id: format!("{}-{id}", self.node_id),
            handle: session.handle.to_string(),
            principal: session.principal.to_string(),
            role: session.role.clone(),
            info,
        };
        let interval_ms = (policy.heartbeat_interval.as_millis() as i64).max(1);
        let hello = ServerMsg::Hello {
            connection_id: member.connection_id.clone(),
            handle: member.handle.clone(),
            principal: member.principal.clone(),
            role: member.role.clone(),
            idle_expires_at: to_rfc3339(session.idle_expires_at),
            absolute_expires_at: to_rfc3339(session.absolute_expires_at),
            heartbeat_interval: (interval_ms as u64).div_ceil(1000),
            heartbeat_interval_ms: interval_ms as u64,
            heartbeat_misses: policy.heartbeat_misses,
            warn_before: policy.warn_before.as_secs(),
            max_message_size,
        };
        // The queue is new and has room for at least one message.
        let _ = shared.push(Outbound::Text(text(&hello)));
        let now = self.now_ms();
        // Jitter spreads the pings of connections opened together (e.g. after a restart).
        let first_ping = now + rand::Rng::gen_range(&mut rand::thread_rng(), 0..interval_ms);
        let conn = Conn {
            shared: Outbox(shared),
            member,
            handle: session.handle,
            version: session.version,
            rooms: Vec::new(),
            in_rooms: None,
            connected_at: wall_now,
            interval_ms,
            lost_after_ms: interval_ms * i64::from(policy.heartbeat_misses.max(1)),
            next_ping_at: first_ping,
        };
        st.conns.insert(id, Box::new(conn));
        // Most sessions have one connection: room for one id, not a `Vec`'s first four.
        st.by_handle
            .entry(session.handle)
            .or_insert_with(|| Vec::with_capacity(1))
            .push(id);
        self.schedule(&mut st, id, first_ping);
        metrics::gauge!("sessiond_ws_connections").set(st.conns.len() as f64);
        Ok(id)
    }

    /// Removes a connection and tells its rooms; the caller already asked it to close
    /// (or it is closing itself).
    fn remove_locked(
        &self,
        st: &mut HubState,
        id: u64,
        reason: LeftReason,
        fx: &mut Effects,
    ) -> Option<Conn> {
        let conn = *st.conns.remove(&id)?;
        st.timers.cancel(&id);
        if let Some(v) = st.by_handle.get_mut(&conn.handle) {
            v.retain(|x| *x != id);
            if v.is_empty() {
                st.by_handle.remove(&conn.handle);
            }
        }
        for room in &conn.rooms {
            self.drop_member(st, room, id, &conn.member, reason, fx);
        }
        metrics::gauge!("sessiond_ws_connections").set(st.conns.len() as f64);
        Some(conn)
    }

    fn drop_member(
        &self,
        st: &mut HubState,
        room: &str,
        id: u64,
        member: &Member,
        reason: LeftReason,
        fx: &mut Effects,
    ) {
        let now_empty = match st.rooms.get_mut(room) {
            Some(members) => {
                members.retain(|x| *x != id);
                members.is_empty()
            }
            None => return,
        };
        if now_empty {
            st.rooms.remove(room);
            fx.emptied.push(room.to_owned());
        }
        let msg = ServerMsg::MemberLeft {
            room: room.to_owned(),
            member: member.clone(),
            reason,
        };
        self.broadcast_locked(st, room, None, &msg, fx);
    }

    /// Enqueues `msg` to every local member of `room` but `except`, and publishes it for
    /// other nodes.
    fn broadcast_locked(
        &self,
        st: &HubState,
        room: &str,
        except: Option<u64>,
        msg: &ServerMsg,
        fx: &mut Effects,
    ) {
        let t = text(msg);
        if let Some(members) = st.rooms.get(room) {
            for &m in members {
                if Some(m) == except {
                    continue;
                }
                if let Some(c) = st.conns.get(&m) {
                    push(m, c, Outbound::Text(t.clone()), fx);
                }
            }
        }
        if let Ok(payload) = serde_json::to_value(msg) {
            self.bus.publish(Event::Presence {
                room: room.to_owned(),
                payload,
                origin: self.node_id.clone(),
            });
        }
    }

    /// Cuts off the connections whose queue overflowed (which may overflow others).
    fn settle(&self, st: &mut HubState, fx: &mut Effects) {
        while let Some(id) = fx.slow.pop() {
            if self.remove_locked(st, id, LeftReason::Lost, fx).is_some() {
                metrics::counter!("sessiond_ws_slow_consumers_total").increment(1);
            }
        }
    }

    /// Enqueues a message to one connection. `false` if it is gone or was cut off.
    pub fn send(&self, id: u64, msg: &ServerMsg) -> (bool, Effects) {
        let mut fx = Effects::default();
        let mut st = self.lock();
        let ok = match st.conns.get(&id) {
            Some(c) => {
                push(id, c, Outbound::Text(text(msg)), &mut fx);
                fx.slow.is_empty()
            }
            None => false,
        };
        self.settle(&mut st, &mut fx);
        (ok, fx)
    }

    /// The connection task ended on its own (client closed, network error, 1009).
    pub fn unregister(&self, id: u64, reason: LeftReason) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.lock();
        self.remove_locked(&mut st, id, reason, &mut fx);
        self.settle(&mut st, &mut fx);
        fx
    }

    /// Closes one connection with `code` (it is removed at once; rooms told `reason`).
    pub fn close_connection(&self, id: u64, code: u16, reason: LeftReason) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.lock();
        if let Some(c) = st.conns.get(&id) {
            c.shared.close(code);
        }
        self.remove_locked(&mut st, id, reason, &mut fx);
        self.settle(&mut st, &mut fx);
        fx
    }

    /// An operator drops the connection `connection_id` if it is on this node: it is
    /// closed with 4011 and its rooms are told it was lost (the client reconnects). The
    /// dropped connection's member and rooms, `None` if this node does not hold it.
    pub fn drop_connection(&self, connection_id: &str) -> (Option<(Member, Vec<String>)>, Effects) {
        let mut fx = Effects::default();
        let Some(id) = connection_id
            .strip_prefix(self.node_id.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return (None, fx);
        };
        let mut st = self.lock();
        let found = st.conns.get(&id).map(|c| {
            c.shared.close(close::DROPPED);
            (c.member.clone(), c.rooms.clone())
        });
        if found.is_some() {
            self.remove_locked(&mut st, id, LeftReason::Lost, &mut fx);
        }
        self.settle(&mut st, &mut fx);
        (found, fx)
    }

    /// A session ended: each of its connections gets `session_ended`, leaves its rooms
    /// (`member_left` with `session_ended`) and is closed with the reason's code.
    pub fn session_ended(&self, handle: &Handle, reason: EndReason) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.lock();
        let ids = st.by_handle.get(handle).cloned().unwrap_or_default();
        let t = text(&ServerMsg::SessionEnded { reason });
        for id in ids {
            if let Some(c) = st.conns.get(&id) {
                push(id, c, Outbound::Text(t.clone()), &mut fx);
                c.shared.close(close::for_reason(reason));
            }
            self.remove_locked(&mut st, id, LeftReason::SessionEnded, &mut fx);
        }
        self.settle(&mut st, &mut fx);
        fx
    }

    /// Enqueues `msg` to every connection of a session.
    pub fn to_session(&self, handle: &Handle, msg: &ServerMsg) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.lock();
        if let Some(ids) = st.by_handle.get(handle) {
            let t = text(msg);
            for id in ids {
                if let Some(c) = st.conns.get(id) {
                    push(*id, c, Outbound::Text(t.clone()), &mut fx);
                }
            }
        }
        self.settle(&mut st, &mut fx);
        fx
    }

    /// A session's token was rotated to rotation `version`: each of its connections that
    /// authenticated at an earlier rotation leaves its rooms (`member_left` with `left`)
    /// and is closed with 4010 "reauthenticate". A connection never takes on the new
    /// principal or role: the client reconnects with the new token instead.
    pub fn session_rotated(&self, handle: &Handle, version: u64) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.lock();
        let ids = st.by_handle.get(handle).cloned().unwrap_or_default();
        for id in ids {
            let Some(c) = st.conns.get(&id).filter(|c| c.version < version) else {
                continue;
            };
            c.shared.close(close::REAUTHENTICATE);
            self.remove_locked(&mut st, id, LeftReason::Left, &mut fx);
        }
        self.settle(&mut st, &mut fx);
        fx
    }

    /// Adds a connection to a room: the joiner gets `presence` (members in join order,
    /// itself last, and `snapshot`), the others `member_joined`. Joining a room twice
    /// answers `presence` again. `Ok(true)` if the room was empty before.
    pub fn join(
        &self,
        id: u64,
        room: &str,
        snapshot: Option<SnapshotBody>,
    ) -> (Result<bool, JoinRefused>, Effects) {
        self.join_with(id, room, snapshot, Vec::new(), None, None)
    }

    /// [`Hub::join`] in cluster mode: `remote` are the room's members on other nodes
    /// (listed first in `presence`; see [`sessiond_core::cluster::RemotePresence`]).
    /// `token_exp`: the join was admitted by a room token expiring then (ms).
    /// `have_version`: the snapshot version the client says it holds. The snapshot goes
    /// out only if it is newer than that and than what this connection was sent before;
    /// otherwise `presence` names its version in `snapshot_version` instead.
    pub fn join_with(
        &self,
        id: u64,
        room: &str,
        snapshot: Option<SnapshotBody>,
        remote: Vec<Member>,
        token_exp: Option<Timestamp>,
        have_version: Option<u64>,
    ) -> (Result<bool, JoinRefused>, Effects) {
        let mut fx = Effects::default();
        let mut st = self.lock();
        let Some(conn) = st.conns.get(&id) else {
            return (Err(JoinRefused::Gone), fx);
        };
        let already = conn.rooms.iter().any(|r| r == room);
        if !already && conn.rooms.len() >= self.max_rooms {
            return (Err(JoinRefused::TooManyRooms), fx);
        }
        if !already && st.rooms.get(room).map_or(0, Vec::len) >= self.max_room_members {
            return (Err(JoinRefused::RoomFull), fx);
        }
        let held = conn.snapshot_held(room).max(have_version).unwrap_or(0);
        let (snapshot, snapshot_version) = match snapshot {
            Some(s) if s.version <= held => (None, Some(s.version)),
            other => (other, None),
        };
        let me = conn.member.clone();
        let was_empty = !st.rooms.contains_key(room);
        if !already {
            st.rooms.entry(room.to_owned()).or_default().push(id);
        }
        if let Some(c) = st.conns.get_mut(&id) {
            if !already {
                c.rooms.push(room.to_owned());
            }
            let x = c.in_rooms_mut();
            let listed: HashSet<String> = remote.iter().map(|m| m.connection_id.clone()).collect();
            if listed.is_empty() {
                x.seen_remote.remove(room);
            } else {
                x.seen_remote.insert(room.to_owned(), listed);
            }
            if let Some(s) = &snapshot {
                x.snapshots_held.insert(room.to_owned(), s.version);
            }
            // The latest join says how this connection holds the room.
            match token_exp {
                Some(exp) => x.token_rooms.insert(room.to_owned(), exp),
                None => x.token_rooms.remove(room),
            };
        }
        let mut members = remote;
        members.extend(
            st.rooms[room]
                .iter()
                .filter_map(|m| st.conns.get(m).map(|c| c.member.clone())),
        );
        let presence = ServerMsg::Presence {
            room: room.to_owned(),
            members,
            snapshot,
            snapshot_version,
        };
        if let Some(c) = st.conns.get(&id) {
            push(id, c, Outbound::Text(text(&presence)), &mut fx);
        }
        if !already {
            let joined = ServerMsg::MemberJoined {
                room: room.to_owned(),
                member: me,
            };
            self.broadcast_locked(&st, room, Some(id), &joined, &mut fx);
        }
        self.settle(&mut st, &mut fx);
        (Ok(was_empty), fx)
    }

    /// Removes a connection from a room (`member_left` with `left` to the others).
    /// `None` if it was not a member.
    pub fn leave(&self, id: u64, room: &str) -> Option<Effects> {
        let mut fx = Effects::default();
        let mut st = self.lock();
        let conn = st.conns.get_mut(&id)?;
        if !conn.forget_room(room) {
            return None;
        }
        let member = conn.member.clone();
        self.drop_member(&mut st, room, id, &member, LeftReason::Left, &mut fx);
        self.settle(&mut st, &mut fx);
        Some(fx)
    }

    /// The count of grant changes seen on this node. A join reads it before deciding and
    /// after registering; a change in between may have been re-checked before the member
    /// existed, so the joiner re-checks itself.
    pub fn access_epoch(&self) -> u64 {
        self.access_epoch.load(Ordering::SeqCst)
    }

    /// A grant changed (bumped before the re-check is started).
    pub fn access_changed(&self) {
        self.access_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The rooms of `handle`'s connections on this node, as `(connection, room, token
    /// expiry if joined with a room token)`, for the re-check after a grant changed.
    pub fn session_rooms(&self, handle: &Handle) -> Vec<(u64, String, Option<Timestamp>)> {
        let st = self.lock();
        let mut out = Vec::new();
        for id in st.by_handle.get(handle).into_iter().flatten() {
            if let Some(c) = st.conns.get(id) {
                for r in &c.rooms {
                    out.push((*id, r.clone(), c.token_expiry(r)));
                }
            }
        }
        out
    }

    /// Removes a connection from a room it lost its grant to: it gets an `error` with
    /// `room_access_revoked` and the room, the others `member_left` with
    /// `access_revoked`. `None` if it was not a member.
    pub fn expel(&self, id: u64, room: &str) -> Option<Effects> {
        let mut fx = Effects::default();
        let mut st = self.lock();
        let conn = st.conns.get_mut(&id)?;
        if !conn.forget_room(room) {
            return None;
        }
        let member = conn.member.clone();
        let told = ServerMsg::room_error(
            code::ROOM_ACCESS_REVOKED,
            room,
            "this session no longer has a grant to this room",
        );
        if let Some(c) = st.conns.get(&id) {
            push(id, c, Outbound::Text(text(&told)), &mut fx);
        }
        self.drop_member(
            &mut st,
            room,
            id,
            &member,
            LeftReason::AccessRevoked,
            &mut fx,
        );
        self.settle(&mut st, &mut fx);
        Some(fx)
    }

    pub fn is_member(&self, id: u64, room: &str) -> bool {
        self.lock()
            .conns
            .get(&id)
            .is_some_and(|c| c.rooms.iter().any(|r| r == room))
    }

    /// Members currently in `room` on this node.
    pub fn room_len(&self, room: &str) -> usize {
        self.lock().rooms.get(room).map_or(0, Vec::len)
    }

    /// A snapshot was saved by connection `by_conn` (WebSocket) or over HTTP (`None`):
    /// the writer gets `snapshot_saved`, every other member `snapshot_updated`.
    pub fn snapshot_written(
        &self,
        room: &str,
        version: u64,
        hash: &str,
        by_handle: Option<&str>,
        by_conn: Option<u64>,
    ) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.lock();
        if let Some(id) = by_conn {
            // The writer holds these bytes: its next join need not get them back.
            if let Some(c) = st.conns.get_mut(&id) {
                if c.rooms.iter().any(|r| r == room) {
                    c.in_rooms_mut()
                        .snapshots_held
                        .insert(room.to_owned(), version);
                }
            }
            if let Some(c) = st.conns.get(&id) {
                let saved = ServerMsg::SnapshotSaved {
                    room: room.to_owned(),
                    version,
                    hash: hash.to_owned(),
                };
                push(id, c, Outbound::Text(text(&saved)), &mut fx);
            }
        }
        let updated = ServerMsg::SnapshotUpdated {
            room: room.to_owned(),
            version,
            hash: hash.to_owned(),
            by: by_handle.map(str::to_owned),
        };
        self.broadcast_locked(&st, room, by_conn, &updated, &mut fx);
        self.settle(&mut st, &mut fx);
        fx
    }

    /// Delivers a room event published by another node to this node's members.
    pub fn deliver_remote(&self, room: &str, payload: &serde_json::Value) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.lock();
        let t = Utf8Bytes::from(payload.to_string());
        let joined = payload["type"] == "member_joined";
        let about = payload["member"]["connection_id"].as_str();
        let state = &mut *st;
        if let Some(members) = state.rooms.get(room) {
            for &m in members {
                if let Some(c) = state.conns.get_mut(&m) {
                    // The first remote event about a member this connection's `presence`
                    // listed settles it; a `member_joined` then is a repeat.
                    let listed = about.is_some_and(|id| {
                        c.in_rooms
                            .as_mut()
                            .and_then(|x| x.seen_remote.get_mut(room))
                            .is_some_and(|seen| seen.remove(id))
                    });
                    if joined && listed {
                        continue;
                    }
                    push(m, c, Outbound::Text(t.clone()), &mut fx);
                }
            }
        }
        self.settle(&mut st, &mut fx);
        fx
    }

    /// Fires due heartbeat timers: pings connections whose interval came, declares lost
    /// those silent for `heartbeat_misses` intervals (close 4004, rooms told `lost`).
    pub fn fire_due(&self, now: i64, limit: usize) -> Effects {
        let mut fx = Effects::default();
        let mut guard = self.lock();
        let st = &mut *guard;
        let due = st.timers.pop_due(now, limit);
        let mut lost = Vec::new();
        for (id, _) in due {
            let Some(c) = st.conns.get_mut(&id) else {
                continue;
            };
            let heard = c.shared.last_heard();
            if now - heard >= c.lost_after_ms {
                lost.push((id, now - heard));
                continue;
            }
            if now >= c.next_ping_at {
                // Paced from when the ping was due, not from this (batched, up to
                // MIN_PASS late) pass, so the interval does not stretch by the pass's
                // delay each time; after a stall longer than an interval, from now.
                let planned = c.next_ping_at + c.interval_ms;
                c.next_ping_at = if planned > now {
                    planned
                } else {
                    now + c.interval_ms
                };
                let before = fx.slow.len();
                push(id, c, Outbound::Ping, &mut fx);
                if fx.slow.len() > before {
                    continue;
                }
            }
            let next = c.next_ping_at.min(heard + c.lost_after_ms).max(now + 1);
            st.timers.schedule(id, next);
        }
        for (id, silent_ms) in lost {
            if let Some(c) = st.conns.get(&id) {
                c.shared.close(close::HEARTBEAT_LOST);
            }
            if let Some(conn) = self.remove_locked(st, id, LeftReason::Lost, &mut fx) {
                fx.lost.push(LostConn {
                    handle: conn.handle,
                    member: conn.member,
                    rooms: conn.rooms,
                    silent_ms,
                });
            }
        }
        self.settle(st, &mut fx);
        fx
    }

    /// Shutdown: refuses new connections and closes every connection with `code`
    /// (queued messages are still delivered first). Returns the rooms that emptied.
    pub fn close_all(&self, code: u16) -> Effects {
        let mut st = self.lock();
        st.closed = true;
        for c in st.conns.values() {
            c.shared.close(code);
        }
        let emptied = st.rooms.drain().map(|(r, _)| r).collect();
        st.conns.clear();
        st.by_handle.clear();
        st.timers = DeadlineQueue::new();
        Effects {
            emptied,
            ..Effects::default()
        }
    }

    /// Handles with at least one local connection.
    pub fn handles(&self) -> Vec<Handle> {
        self.lock().by_handle.keys().copied().collect()
    }

    /// Whether `connection_id` names a connection of this node (live or not).
    pub fn is_local_id(&self, connection_id: &str) -> bool {
        connection_id
            .strip_prefix(self.node_id.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| n.parse::<u64>().is_ok())
    }

    pub fn connection_count(&self, handle: &Handle) -> usize {
        self.lock().by_handle.get(handle).map_or(0, Vec::len)
    }

    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rooms with their member counts, by name.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .lock()
            .rooms
            .iter()
            .map(|(r, m)| (r.clone(), m.len()))
            .collect();
        v.sort();
        v
    }

    /// A room's members in join order; `None` if nobody is in it.
    pub fn room_members(&self, room: &str) -> Option<Vec<Member>> {
        let st = self.lock();
        let ids = st.rooms.get(room)?;
        Some(
            ids.iter()
                .filter_map(|id| st.conns.get(id).map(|c| c.member.clone()))
                .collect(),
        )
    }

    /// Connections (of one session, or all), oldest first, at most `limit`.
    pub fn connections(&self, handle: Option<&Handle>, limit: usize) -> Vec<ConnInfo> {
        let st = self.lock();
        let mut ids: Vec<u64> = match handle {
            Some(h) => st.by_handle.get(h).cloned().unwrap_or_default(),
            None => st.conns.keys().copied().collect(),
        };
        ids.sort_unstable();
        ids.truncate(limit);
        ids.iter()
            .filter_map(|id| st.conns.get(id))
            .map(|c| ConnInfo {
                connection_id: c.member.connection_id.clone(),
                handle: c.member.handle.clone(),
                principal: c.member.principal.clone(),
                role: c.member.role.clone(),
                rooms: c.rooms.clone(),
                connected_at: to_rfc3339(c.connected_at),
                info: c.member.info.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_core::lifecycle::{new_session, ClientInfo};
    use std::time::Duration;

    fn setup() -> (Hub, Session, Policy) {
        let hub = Hub::new(
            "n1".into(),
            Bus::new(),
            &crate::config::Config::default().ws,
        );
        let mut policy = Policy::new(60, 600);
        policy.heartbeat_interval = Duration::from_secs(1);
        policy.heartbeat_misses = 3;
        let (s, _) = new_session(0, "editor", &policy, &ClientInfo::default());
        (hub, s, policy)
    }

    /// Moves the (synthetic, monotonic ms) clock in 100 ms steps, firing timers like the
    /// timer task does.
    fn run_for(hub: &Hub, now: &mut i64, ms: i64, fx_out: &mut Vec<Effects>) {
        for _ in 0..ms / 100 {
            *now += 100;
            fx_out.push(hub.fire_due(*now, 1000));
        }
    }

    #[tokio::test]
    async fn pings_every_interval_and_declares_silence_lost() {
        let (hub, s, policy) = setup();
        // The hub was just created: its clock reads ~0; the test drives it from 0 on.
        let mut now = 0;
        let shared = Arc::new(ConnShared::new(now, 64));
        hub.register(&s, None, &policy, shared.clone(), 0, 4096)
            .unwrap();
        assert!(
            matches!(shared.pop(), Some(Outbound::Text(_))),
            "hello first"
        );
        let mut fx = Vec::new();
        // Answering (any frame) keeps it alive for many intervals; pings keep coming.
        let mut pings = 0;
        for _ in 0..50 {
            run_for(&hub, &mut now, 100, &mut fx);
            while let Some(m) = shared.pop() {
                assert!(matches!(m, Outbound::Ping));
                pings += 1;
                shared.heard(now);
            }
        }
        assert!(
            (4..=6).contains(&pings),
            "{pings} pings in 5 s at 1 s intervals"
        );
        assert!(fx.iter().all(|f| f.lost.is_empty()));
        assert_eq!(shared.close_code(), None);
        // Silence: lost after 3 intervals, not before.
        shared.heard(now);
        let silent_from = now;
        fx.clear();
        run_for(&hub, &mut now, 2900, &mut fx);
        assert!(fx.iter().all(|f| f.lost.is_empty()), "lost too early");
        run_for(&hub, &mut now, 200, &mut fx);
        let lost: Vec<&LostConn> = fx.iter().flat_map(|f| &f.lost).collect();
        assert_eq!(lost.len(), 1);
        assert!(lost[0].silent_ms >= 3000 && now - silent_from <= 3100);
        assert_eq!(shared.close_code(), Some(close::HEARTBEAT_LOST));
        assert!(
            hub.is_empty() && hub.next_deadline().is_none(),
            "timer entry removed with the connection"
        );
    }

    #[tokio::test]
    async fn a_full_queue_cuts_the_connection_off_and_tells_its_room() {
        let (hub, s, policy) = setup();
        let slow = Arc::new(ConnShared::new(0, 2));
        let id_slow = hub
            .register(&s, None, &policy, slow.clone(), 0, 4096)
            .unwrap();
        let (s2, _) = new_session(0, "editor", &policy, &ClientInfo::default());
        let shared = Arc::new(ConnShared::new(0, 64));
        let id = hub
            .register(&s2, None, &policy, shared.clone(), 0, 4096)
            .unwrap();
        let (r, _) = hub.join(id_slow, "r", None); // hello + presence: queue full
        assert_eq!(r, Ok(true));
        let (r, _) = hub.join(id, "r", None); // member_joined overflows the slow queue
        assert_eq!(r, Ok(false));
        assert_eq!(slow.close_code(), Some(close::SLOW_CONSUMER));
        assert_eq!(hub.room_members("r").unwrap().len(), 1);
        let texts: Vec<String> = std::iter::from_fn(|| shared.pop())
            .filter_map(|m| match m {
                Outbound::Text(t) => Some(t.as_str().to_owned()),
                Outbound::Ping => None,
            })
            .collect();
        assert!(
            texts.last().unwrap().contains(r#""type":"member_left""#),
            "{texts:?}"
        );
        assert!(texts.last().unwrap().contains(r#""reason":"lost""#));
    }

    /// Finding 4e: the queue is bounded in bytes too. A message alone in the queue is
    /// delivered whatever its size; one that would pile bytes on a backlog past
    /// `max_outbound_bytes` cuts the connection off as a slow consumer.
    #[tokio::test]
    async fn queued_bytes_are_bounded() {
        let (hub, s, policy) = setup();
        let shared = Arc::new(ConnShared::new(0, 64).with_byte_limit(4096));
        let id = hub
            .register(&s, None, &policy, shared.clone(), 0, 4096)
            .unwrap();
        shared.pop().expect("hello");
        let big = |version| SnapshotBody {
            version,
            hash: "h".into(),
            content_type: "x/y".into(),
            data: "A".repeat(10_000),
            updated_at: "t".into(),
        };
        let (r, _) = hub.join(id, "r", Some(big(1)));
        assert_eq!(r, Ok(true), "alone in the queue: delivered");
        assert_eq!(shared.close_code(), None);
        let (r, _) = hub.join(id, "q", Some(big(1)));
        assert_eq!(r, Ok(true));
        assert_eq!(shared.close_code(), Some(close::SLOW_CONSUMER));
        assert!(hub.is_empty());
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod heartbeat_tests;
