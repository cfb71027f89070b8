//! One connection's task: reads client frames, writes what the hub queued, and says
//! goodbye with the close code the hub (or this task) chose.
//!
//! Written against any `Stream + Sink` of axum WebSocket messages so unit tests drive it
//! with channels. The task never polls shared state: the hub wakes it through
//! [`ConnShared`] when it must close.

use super::hub::{ConnShared, Effects, JoinRefused, Outbound, Refused};
use super::protocol::{close, code, parse_client, ClientMsg, LeftReason, ServerMsg, SnapshotBody};
use super::tasks::{apply, retain_emptied};
use crate::error::ApiError;
use crate::rooms::RoomDenied;
use crate::sessions::{Credential, SessionError};
use crate::state::AppState;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::{Sink, SinkExt, Stream, StreamExt};
use sessiond_core::clock::to_rfc3339;
use sessiond_core::rooms::Grant;
use sessiond_core::snapshot::{validate_room, SnapshotWrite};
use sessiond_core::store::SnapshotPut;
use sessiond_core::{Handle, Session};
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use ws_stream::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use ws_stream::tungstenite::protocol::frame::Frame;
use ws_stream::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use ws_stream::tungstenite::Message;
use ws_stream::WebSocketStream;

/// How long a goodbye (queued messages, close frame, the client's close reply) may take.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest accepted snapshot content type.
const MAX_CONTENT_TYPE: usize = 127;

/// How the main loop ended.
enum Exit {
    /// The hub removed the connection and chose the close code.
    Closed(u16),
    /// This task closes with `code`; rooms are told `reason`.
    Own(u16, LeftReason),
    /// The client closed (`Left`) or the transport failed (`Lost`).
    Gone(LeftReason),
}

/// What handling one frame asks of the loop.
enum Next {
    Continue,
    Exit(Exit),
}

struct Ctx {
    state: AppState,
    id: u64,
    handle: Handle,
    /// The token hash the connection authenticated with: every request it makes is
    /// checked against it, so after a rotation nothing it sends is acted on.
    who: Credential,
    shared: Arc<ConnShared>,
}

/// The RFC 6455 close code for a read error the protocol defines one for: tungstenite's
/// size limit (one frame, or fragments adding up past `max_message_size`) is 1009, a
/// text message that is not UTF-8 is 1007. Other errors (a reset) get no close frame.
/// The error arrives type-erased (axum boxes tungstenite's), so its text is matched.
fn refusal_code(e: &impl Display) -> Option<u16> {
    let s = e.to_string();
    if s.contains("Space limit exceeded") {
        Some(close::MESSAGE_TOO_BIG)
    } else if s.contains("UTF-8 encoding error") {
        Some(close::INVALID_PAYLOAD)
    } else {
        None
    }
}

/// The per-connection token bucket of inbound messages (`ws.message_rate` per second,
/// `ws.message_burst` at most): a client cannot make the server work (parse, look up,
/// answer) faster than that.
struct Bucket {
    tokens: f64,
    burst: f64,
    per_ms: f64,
    at: tokio::time::Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Bucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_ms: f64::from(rate) / 1000.0,
            at: tokio::time::Instant::now(),
        }
    }
    /// Takes one token; `false` when the bucket is empty.
    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let ms = now.duration_since(self.at).as_secs_f64() * 1000.0;
        self.at = now;
        self.tokens = (self.tokens + ms * self.per_ms).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Whether a frame is paid for from the bucket: pongs answer our pings and the close
/// frame ends the connection anyway; everything else (pings too: tungstenite answers
/// them) costs the server work.
fn is_metered(m: &Message) -> bool {
    !matches!(m, Message::Pong(_) | Message::Close(_))
}

fn close_frame(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: close::reason_text(code).into(),
    }))
}

/// The member info the app set for the session (presence carries it). A store failure
/// is not the connection's: it goes on without a name, and the failure is logged.
async fn member_info(state: &AppState, session: &Session) -> Option<serde_json::Value> {
    match state
        .sessions
        .get_data(&session.handle, crate::member_info::DATA_KEY)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(handle = %session.handle, error = %e, "member info unavailable; connecting without it");
            None
        }
    }
}

/// Serves one authenticated connection until it closes.
///
/// The task lives as long as the connection, so what it holds while idle is held by
/// every idle connection: the opening (member info, registration, the re-check) runs in
/// a boxed future of its own and leaves only what the loop needs (the `Session` and the
/// member info are dropped once registered); the goodbye is boxed too. The session
/// comes boxed because the caller's future keeps room for its arguments for the
/// connection's whole life.
pub async fn run<S, E>(state: AppState, mut socket: S, session: Box<Session>)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin + Send,
    E: Display,
{
    let mut live = match Box::pin(open(state, session)).await {
        Ok(live) => live,
        Err(refusal) => return Box::pin(refuse(&mut socket, refusal)).await,
    };
    let exit = serve(&mut socket, &mut live).await;
    Box::pin(close(&live.ctx, &mut socket, exit)).await;
}

/// [`run`] on the connection an upgrade hands over, once the upgrade completes; `held`
/// is dropped when the connection ends. `hello` is written to the connection as a plain
/// frame before the WebSocket stream is made (see [`write_first`]).
///
/// Laid out for the size of the task, which every idle connection holds for its whole
/// life. What an `async fn` takes keeps its room in the future as long as the future
/// lives, twice over (the argument and the local it moves into), and so does any value
/// live across more than one `.await`; so the long-lived parts are the captures of
/// `async` blocks (kept once), the opening and the stream's making are boxed (freed when
/// done), and what only the loop needs is made inside [`run_open`].
// Not an `async fn`: its arguments would be kept twice for the connection's life.
#[allow(clippy::manual_async_fn)]
pub fn run_upgraded<H: Send>(
    state: AppState,
    on_upgrade: hyper::upgrade::OnUpgrade,
    session: Box<Session>,
    held: H,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let io = match on_upgrade.await {
            Ok(upgraded) => hyper_util::rt::TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        // The match awaits nothing: what it binds (a 128-byte `Live`) would otherwise be
        // kept beside the loop's future for the connection's life.
        let rest = match Box::pin(open(state, session)).await {
            Ok(live) => futures::future::Either::Left(run_open(io, live)),
            Err(refusal) => futures::future::Either::Right(Box::pin(refuse_upgraded(io, refusal))),
        };
        rest.await;
        drop(held);
    }
}

/// Tells a client the hub refused why, on the connection just upgraded.
async fn refuse_upgraded<I>(io: I, refusal: Refusal)
where
    I: tokio::io::AsyncRead + AsyncWrite + Unpin + Send,
{
    let cfg = stream_config(&refusal.state);
    let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(cfg)).await;
    refuse(&mut socket, refusal).await;
}

/// The stream's limits (`ws.read_buffer`, `ws.max_message_size`); nothing is buffered
/// for writing: every message is written at once.
fn stream_config(state: &AppState) -> WebSocketConfig {
    let cfg = &state.config.ws;
    WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size))
}

/// A registered connection: `hello`, then the loop, then the goodbye.
// Not an `async fn`, for the same reason as `run_upgraded`.
#[allow(clippy::manual_async_fn)]
fn run_open<I>(mut io: I, mut live: Live) -> impl std::future::Future<Output = ()> + Send
where
    I: tokio::io::AsyncRead + AsyncWrite + Unpin + Send,
{
    async move {
        let first = Box::pin(write_first(&mut io, &live.ctx.shared)).await;
        let cfg = stream_config(&live.ctx.state);
        let mut socket = Box::pin(WebSocketStream::from_raw_socket(
            io,
            Role::Server,
            Some(cfg),
        ))
        .await;
        let exit = match first {
            Ok(()) => serve(&mut socket, &mut live).await,
            Err(exit) => exit,
        };
        Box::pin(close(&live.ctx, &mut socket, exit)).await;
    }
}

/// Writes the first queued message (the `hello` the hub queued at registration) straight
/// to the connection as one unmasked frame, before the WebSocket stream exists. The
/// stream's write buffer keeps the capacity of the largest frame it ever wrote, for the
/// connection's whole life, and `hello` (about 350 bytes) is by far the largest an idle
/// connection gets: written through the stream, every idle connection would hold that
/// much for nothing (pings are 2 bytes). A close asked for meanwhile leaves it queued
/// for the goodbye, as the loop would.
async fn write_first<W>(io: &mut W, shared: &ConnShared) -> Result<(), Exit>
where
    W: AsyncWrite + Unpin,
{
    if shared.close_code().is_some() {
        return Ok(());
    }
    let frame = match shared.pop() {
        None => return Ok(()),
        Some(Outbound::Text(t)) => {
            Frame::message(bytes::Bytes::from(t), OpCode::Data(Data::Text), true)
        }
        Some(Outbound::Ping) => Frame::ping(bytes::Bytes::new()),
    };
    let mut buf = Vec::with_capacity(frame.len());
    if frame.format(&mut buf).is_err() {
        return Err(Exit::Gone(LeftReason::Lost));
    }
    let mut send = std::pin::pin!(async {
        io.write_all(&buf).await?;
        io.flush().await
    });
    loop {
        tokio::select! {
            r = &mut send => return r.map_err(|_| Exit::Gone(LeftReason::Lost)),
            _ = shared.wake.notified() => {
                if let Some(code) = shared.close_code() {
                    return Err(Exit::Closed(code));
                }
            }
        }
    }
}

/// A registration the hub refused: the error the client is told (if any) and the close.
struct Refusal {
    message: Option<String>,
    code: u16,
    state: AppState,
}

/// Tells a refused client why and closes.
async fn refuse<S, E>(socket: &mut S, refusal: Refusal)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin + Send,
{
    if let Some(text) = refusal.message {
        let _ = socket.send(Message::Text(text.into())).await;
    }
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye(socket, None, refusal.code)).await;
}

/// What the loop of an open connection holds.
struct Live {
    ctx: Ctx,
    bucket: Bucket,
    /// Marks the queue unread when the task ends however it ends (as dropping a
    /// channel's receiver would).
    _reading: Reading,
}

/// Ends the reading of a connection's queue when dropped.
struct Reading(Arc<ConnShared>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.stop_reading();
    }
}

/// Registers the connection (or refuses it, with what the client is told) and re-checks
/// the session.
async fn open(state: AppState, session: Box<Session>) -> Result<Live, Refusal> {
    let hub = state.hub.clone();
    let cfg = &state.config.ws;
    let shared = Arc::new(
        ConnShared::new(hub.now_ms(), cfg.outbound_queue).with_byte_limit(cfg.max_outbound_bytes),
    );
    let reading = Reading(shared.clone());
    let bucket = Bucket::new(cfg.message_rate, cfg.message_burst);
    let info = member_info(&state, &session).await;
    let policy = state.sessions.policy(&session.role);
    let id = match hub.register(
        &session,
        info,
        policy,
        shared.clone(),
        state.clock.now(),
        cfg.max_message_size,
    ) {
        Ok(id) => id,
        Err(Refused::TooManyConnections) => {
            let msg = ServerMsg::error(
                code::TOO_MANY_CONNECTIONS,
                format!(
                    "at most {} connections per session",
                    cfg.max_connections_per_session
                ),
            );
            return Err(Refusal {
                message: Some(msg.to_json()),
                code: close::TOO_MANY_CONNECTIONS,
                state,
            });
        }
        Err(Refused::ShuttingDown) => {
            return Err(Refusal {
                message: None,
                code: close::GOING_AWAY,
                state,
            })
        }
    };
    // An ending or rotation published between authentication and registration would be
    // missed.
    if let Ok(Some(s)) = state.sessions.get(&session.handle).await {
        if !s.is_active() {
            let fx = hub.session_ended(
                &s.handle,
                s.end_reason.unwrap_or(sessiond_core::EndReason::Revoked),
            );
            apply(&state, fx);
        } else if s.version > session.version {
            apply(&state, hub.session_rotated(&s.handle, s.version));
        }
    }
    Ok(Live {
        ctx: Ctx {
            id,
            handle: session.handle,
            who: Credential::of(&session),
            shared,
            state,
        },
        bucket,
        _reading: reading,
    })
}

/// The loop: writes what the hub queued (before reading on), reads client frames, and
/// returns how it ended.
async fn serve<S, E>(socket: &mut S, live: &mut Live) -> Exit
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin + Send,
    E: Display,
{
    let ctx = &live.ctx;
    let shared = &*ctx.shared;
    loop {
        if let Some(code) = shared.close_code() {
            return Exit::Closed(code);
        }
        if let Some(out) = shared.pop() {
            // Boxed: a write's state (the message, the send) is held only while it is
            // written, not by every idle connection's task.
            if let Err(exit) = Box::pin(write(socket, out, shared)).await {
                return exit;
            }
            continue;
        }
        if shared.drained_and_released() {
            return Exit::Closed(shared.close_code().unwrap_or(close::INTERNAL));
        }
        tokio::select! {
            biased;
            // A close, a queued message, or the hub letting go: the top of the loop sees
            // which.
            _ = shared.wake.notified() => {}
            frame = socket.next() => {
                shared.heard(ctx.state.hub.now_ms());
                match frame {
                    None => return Exit::Gone(LeftReason::Lost),
                    Some(Err(e)) if refusal_code(&e).is_some() => {
                        let code = refusal_code(&e).unwrap_or(close::INTERNAL);
                        return Exit::Own(code, LeftReason::Lost);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(handle = %ctx.handle, error = %e, "websocket read failed");
                        return Exit::Gone(LeftReason::Lost);
                    }
                    Some(Ok(msg)) if is_metered(&msg) && !live.bucket.take() => {
                        metrics::counter!("sessiond_ws_rate_limited_total").increment(1);
                        tracing::debug!(handle = %ctx.handle, "websocket message rate exceeded");
                        return Exit::Own(close::POLICY_VIOLATION, LeftReason::Lost);
                    }
                    // Boxed: the handlers' state (joins, snapshot writes) is held
                    // only while a frame is handled, not by every idle connection.
                    Some(Ok(msg)) => match Box::pin(on_frame(ctx, msg)).await {
                        Next::Continue => {}
                        Next::Exit(exit) => return exit,
                    },
                }
            }
        }
    }
}

/// Leaves the hub if the hub did not remove the connection, and says goodbye.
async fn close<S, E>(ctx: &Ctx, socket: &mut S, exit: Exit)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin + Send,
{
    let state = &ctx.state;
    match exit {
        Exit::Closed(code) => {
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye(socket, Some(&ctx.shared), code))
                .await;
        }
        Exit::Own(code, reason) => {
            finish(state, state.hub.close_connection(ctx.id, code, reason)).await;
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye(socket, Some(&ctx.shared), code))
                .await;
        }
        Exit::Gone(reason) => {
            finish(state, state.hub.unregister(ctx.id, reason)).await;
            if reason == LeftReason::Left {
                // Flushes the close reply tungstenite queued.
                let _ = tokio::time::timeout(GOODBYE_TIMEOUT, socket.close()).await;
            }
        }
    }
}

/// Store follow-ups of this connection leaving (its rooms may have emptied).
async fn finish(state: &AppState, fx: Effects) {
    retain_emptied(state, fx.emptied).await;
}

/// Writes one queued message; a close request that arrives while the write is stuck
/// (the client stopped reading) abandons it.
async fn write<S>(socket: &mut S, out: Outbound, shared: &ConnShared) -> Result<(), Exit>
where
    S: Sink<Message> + Unpin,
{
    let msg = match out {
        Outbound::Text(t) => Message::Text(t),
        Outbound::Ping => Message::Ping(bytes::Bytes::new()),
    };
    let mut send = socket.send(msg);
    loop {
        tokio::select! {
            r = &mut send => return match r {
                Ok(()) => Ok(()),
                Err(_) => Err(Exit::Gone(LeftReason::Lost)),
            },
            _ = shared.wake.notified() => {
                if let Some(code) = shared.close_code() {
                    return Err(Exit::Closed(code));
                }
                // A message queued behind this one (or the hub letting go, which the
                // loop sees once the queue is written): the write goes on.
            }
        }
    }
}

/// Delivers what is still queued, sends the close frame, and waits (bounded by the
/// caller) for the client's close reply so the TCP connection ends cleanly.
async fn goodbye<S, E>(socket: &mut S, queue: Option<&ConnShared>, code: u16)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    if let Some(shared) = queue {
        while let Some(out) = shared.pop() {
            if let Outbound::Text(t) = out {
                if socket.send(Message::Text(t)).await.is_err() {
                    return;
                }
            }
        }
    }
    if socket.send(close_frame(code)).await.is_err() {
        return;
    }
    while let Some(Ok(m)) = socket.next().await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
}

async fn on_frame(ctx: &Ctx, msg: Message) -> Next {
    match msg {
        Message::Text(t) => {
            if t.len() > ctx.state.config.ws.max_message_size {
                return Next::Exit(Exit::Own(close::MESSAGE_TOO_BIG, LeftReason::Lost));
            }
            match parse_client(t.as_str()) {
                Ok(m) => on_message(ctx, m).await,
                Err(r) => reply(ctx, &ServerMsg::error(r.code, r.message)),
            }
        }
        Message::Binary(_) => reply(
            ctx,
            &ServerMsg::error(
                code::BINARY_NOT_SUPPORTED,
                "only JSON text frames are accepted",
            ),
        ),
        // Already counted as alive; tungstenite answers pings itself.
        Message::Ping(_) | Message::Pong(_) => Next::Continue,
        Message::Close(_) => Next::Exit(Exit::Gone(LeftReason::Left)),
        // Never read: the stream hands over whole messages.
        Message::Frame(_) => Next::Continue,
    }
}

/// Enqueues a reply behind whatever the hub queued before it.
fn reply(ctx: &Ctx, msg: &ServerMsg) -> Next {
    let (ok, fx) = ctx.state.hub.send(ctx.id, msg);
    apply(&ctx.state, fx);
    if ok {
        Next::Continue
    } else {
        // Cut off as a slow consumer (or already removed): the close code is set.
        Next::Exit(Exit::Closed(
            ctx.shared.close_code().unwrap_or(close::SLOW_CONSUMER),
        ))
    }
}

/// Maps a session-service failure to what the connection does.
/// The one mapping of the session service's errors to frames and close codes.
fn on_session_error(ctx: &Ctx, e: SessionError) -> Next {
    match e {
        SessionError::Ended { reason } => {
            let fx = ctx.state.hub.session_ended(&ctx.handle, reason);
            apply(&ctx.state, fx);
            Next::Exit(Exit::Closed(close::for_reason(reason)))
        }
        // Rooms get `left`: the client comes back at once as the new principal.
        SessionError::Rotated => Next::Exit(Exit::Own(close::REAUTHENTICATE, LeftReason::Left)),
        SessionError::Unauthenticated | SessionError::NotFound => {
            Next::Exit(Exit::Own(close::UNAUTHENTICATED, LeftReason::SessionEnded))
        }
        SessionError::Unavailable { .. } => reply(
            ctx,
            &ServerMsg::error(
                code::STORE_UNAVAILABLE,
                "the session store cannot be reached; retry shortly",
            ),
        ),
        e => {
            tracing::error!(handle = %ctx.handle, error = %e, "websocket request failed");
            reply(
                ctx,
                &ServerMsg::error(code::INTERNAL, "an internal error occurred"),
            )
        }
    }
}

fn store_error(ctx: &Ctx, e: ApiError, room: Option<&str>) -> Next {
    let code = match e {
        ApiError::StoreUnavailable(_) => code::STORE_UNAVAILABLE,
        ApiError::TooLarge { .. } => code::PAYLOAD_TOO_LARGE,
        ApiError::QuotaExceeded { .. } => code::QUOTA_EXCEEDED,
        ApiError::StoreIntegrity(_) => code::STORE_INTEGRITY,
        _ => code::INTERNAL,
    };
    if code == code::INTERNAL || code == code::STORE_INTEGRITY {
        tracing::error!(handle = %ctx.handle, error = ?e, "websocket request failed");
    }
    let message = match code {
        code::STORE_UNAVAILABLE => "the session store cannot be reached; retry shortly".to_owned(),
        code::STORE_INTEGRITY => {
            "a stored value failed its integrity check and was not served".to_owned()
        }
        code::INTERNAL => "an internal error occurred".to_owned(),
        _ => e.to_string(),
    };
    let mut msg = match room {
        Some(r) => ServerMsg::room_error(code, r, message),
        None => ServerMsg::error(code, message),
    };
    if let (
        ApiError::QuotaExceeded { limit, max },
        ServerMsg::Error {
            limit: l, max: m, ..
        },
    ) = (&e, &mut msg)
    {
        *l = Some((*limit).to_owned());
        *m = Some(*max);
    }
    reply(ctx, &msg)
}

async fn on_message(ctx: &Ctx, m: ClientMsg) -> Next {
    let state = &ctx.state;
    match m {
        ClientMsg::Ping { id } => reply(ctx, &ServerMsg::Pong { id }),
        ClientMsg::Activity => match state.sessions.touch(&ctx.who).await {
            Ok(_) => Next::Continue,
            Err(e) => on_session_error(ctx, e),
        },
        // Every connection of the session (this one too) gets `renewed` through the bus.
        ClientMsg::Renew => match state.sessions.renew(&ctx.who).await {
            Ok(_) => Next::Continue,
            Err(e) => on_session_error(ctx, e),
        },
        ClientMsg::Join {
            room,
            token,
            have_version,
        } => join(ctx, room, token, have_version).await,
        ClientMsg::Leave { room } => match state.hub.leave(ctx.id, &room) {
            Some(fx) => {
                finish(state, fx).await;
                Next::Continue
            }
            None => reply(
                ctx,
                &ServerMsg::room_error(code::NOT_JOINED, &room, "not a member of this room"),
            ),
        },
        ClientMsg::Snapshot {
            room,
            version,
            data,
            content_type,
        } => snapshot(ctx, room, version, data, content_type).await,
    }
}

async fn join(ctx: &Ctx, room: String, token: Option<String>, have_version: Option<u64>) -> Next {
    let state = &ctx.state;
    if let Err(e) = validate_room(&room) {
        let shown: String = room.chars().take(40).collect();
        return reply(
            ctx,
            &ServerMsg::error(code::INVALID_ROOM, format!("room {shown:?}: {e}")),
        );
    }
    // A grant change between the decision and the registration is re-checked below.
    let epoch = state.hub.access_epoch();
    // The current record, still under the token this connection authenticated with
    // (else it is closed with 4010: a sign-in since may have changed the allowed rooms).
    let session = match state.sessions.current(&ctx.who).await {
        Ok(s) => s,
        Err(e) => return on_session_error(ctx, e),
    };
    // Deny by default: the one decision (see crate::rooms).
    let grant = match state
        .rooms
        .decide(&session, &room, token.as_deref(), None)
        .await
    {
        Ok(g) => g,
        Err(RoomDenied::NoGrant) => {
            return reply(
                ctx,
                &ServerMsg::room_error(
                    code::ROOM_NOT_ALLOWED,
                    &room,
                    "no grant admits this session to this room",
                ),
            )
        }
        Err(RoomDenied::BadToken(why)) => {
            return reply(
                ctx,
                &ServerMsg::room_error(code::INVALID_ROOM_TOKEN, &room, why),
            )
        }
        Err(RoomDenied::Session(e)) => return on_session_error(ctx, e),
    };
    // Held through the token only: remembered, so a lost grant keeps it until it expires.
    let token_exp = match (grant, token.as_deref()) {
        (Grant::Token, Some(t)) => state
            .rooms
            .verify_token(t, state.clock.now())
            .ok()
            .map(|c| c.exp.saturating_mul(1000)),
        _ => None,
    };
    let snapshot = match state.store.get_snapshot(&room).await {
        Ok(s) => s.map(|s| SnapshotBody {
            version: s.version,
            hash: s.hash,
            content_type: s.content_type,
            data: STANDARD.encode(&s.data),
            updated_at: to_rfc3339(s.updated_at),
        }),
        Err(e) => return store_error(ctx, e.into(), Some(&room)),
    };
    // Cluster mode: the members on other nodes come from Redis (empty on a single node).
    let remote = match state
        .presence
        .remote_members(&room)
        .await
        .map_err(ApiError::from)
    {
        Ok(m) => m,
        Err(e) => return store_error(ctx, e, Some(&room)),
    };
    let (r, fx) = state
        .hub
        .join_with(ctx.id, &room, snapshot, remote, token_exp, have_version);
    apply(state, fx);
    match r {
        Ok(was_empty) => {
            if state.hub.access_epoch() != epoch {
                tokio::spawn(super::tasks::recheck_rooms(state.clone(), ctx.handle));
            }
            if was_empty {
                if let Err(e) = state.store.retain_snapshot(&room, None).await {
                    tracing::warn!(room = %room, error = %e, "could not stop snapshot retention");
                }
            }
            Next::Continue
        }
        Err(JoinRefused::TooManyRooms) => reply(
            ctx,
            &ServerMsg::room_error(
                code::TOO_MANY_ROOMS,
                &room,
                format!(
                    "at most {} rooms per connection",
                    state.config.ws.max_rooms_per_connection
                ),
            ),
        ),
        Err(JoinRefused::RoomFull) => {
            metrics::counter!("sessiond_ws_room_full_total").increment(1);
            reply(
                ctx,
                &ServerMsg::room_error(
                    code::ROOM_FULL,
                    &room,
                    format!(
                        "the room has its maximum of {} members",
                        state.config.ws.max_room_members
                    ),
                ),
            )
        }
        Err(JoinRefused::Gone) => Next::Exit(Exit::Closed(
            ctx.shared.close_code().unwrap_or(close::INTERNAL),
        )),
    }
}

async fn snapshot(
    ctx: &Ctx,
    room: String,
    version: u64,
    data: String,
    content_type: String,
) -> Next {
    let state = &ctx.state;
    // Writes only while the connection's token still names a live session.
    let session = match state.sessions.current(&ctx.who).await {
        Ok(s) => s,
        Err(e) => return on_session_error(ctx, e),
    };
    if !state.hub.is_member(ctx.id, &room) {
        return reply(
            ctx,
            &ServerMsg::room_error(
                code::NOT_JOINED,
                &room,
                "join the room before saving its snapshot",
            ),
        );
    }
    if content_type.is_empty()
        || content_type.len() > MAX_CONTENT_TYPE
        || !content_type
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return reply(
            ctx,
            &ServerMsg::room_error(code::BAD_MESSAGE, &room, "invalid content_type"),
        );
    }
    let max = state.config.snapshots.max_size;
    // Base64 is 4/3 of the bytes: refuse before decoding what cannot fit.
    if data.len() / 4 * 3 > max + 3 {
        return reply(
            ctx,
            &ServerMsg::room_error(
                code::PAYLOAD_TOO_LARGE,
                &room,
                format!("snapshots are at most {max} bytes"),
            ),
        );
    }
    let bytes = match STANDARD.decode(data.as_bytes()) {
        Ok(b) => b,
        Err(_) => {
            return reply(
                ctx,
                &ServerMsg::room_error(code::BAD_MESSAGE, &room, "data is not standard base64"),
            )
        }
    };
    if bytes.len() > max {
        return reply(
            ctx,
            &ServerMsg::room_error(
                code::PAYLOAD_TOO_LARGE,
                &room,
                format!("snapshots are at most {max} bytes"),
            ),
        );
    }
    let by = ctx.handle.to_string();
    let now = state.clock.now();
    match state
        .quotas
        .put_snapshot(
            &session,
            SnapshotPut {
                room: &room,
                expected_version: version,
                data: &bytes,
                content_type: &content_type,
                // The gate records the principal.
                by: None,
                retain_until: None,
                now,
            },
        )
        .await
    {
        Ok(SnapshotWrite::Written(s)) => {
            let fx = state
                .hub
                .snapshot_written(&room, s.version, &s.hash, Some(&by), Some(ctx.id));
            apply(state, fx);
            Next::Continue
        }
        Ok(SnapshotWrite::Conflict(current)) => {
            let current_version = current.map_or(0, |s| s.version);
            reply(
                ctx,
                &ServerMsg::Error {
                    code: code::CONFLICT.into(),
                    message: format!("version {version} is stale; the room's snapshot is at version {current_version}"),
                    room: Some(room),
                    current_version: Some(current_version),
                    limit: None,
                    max: None,
                },
            )
        }
        Err(e) => store_error(ctx, e.into(), Some(&room)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc as fmpsc;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket made of two channels: what the test sends in, what the server writes out.
    struct ChanSocket {
        rx: fmpsc::Receiver<Result<Message, Infallible>>,
        tx: fmpsc::Sender<Message>,
    }

    impl Stream for ChanSocket {
        type Item = Result<Message, Infallible>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Pin::new(&mut self.rx).poll_next(cx)
        }
    }

    impl Sink<Message> for ChanSocket {
        type Error = fmpsc::SendError;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            Pin::new(&mut self.tx).start_send(item)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_flush(cx)
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Pin::new(&mut self.tx).poll_close(cx)
        }
    }

    struct Harness {
        input: fmpsc::Sender<Result<Message, Infallible>>,
        output: fmpsc::Receiver<Message>,
        state: AppState,
        session: Session,
        _guard: crate::builder::ServerGuard,
    }

    impl Harness {
        async fn recv(&mut self) -> Message {
            tokio::time::timeout(Duration::from_secs(5), self.output.next())
                .await
                .expect("server wrote in time")
                .expect("socket open")
        }
        async fn recv_json(&mut self) -> serde_json::Value {
            loop {
                match self.recv().await {
                    Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                    Message::Ping(_) => continue,
                    other => panic!("expected text, got {other:?}"),
                }
            }
        }
        async fn send_text(&mut self, s: &str) {
            self.input
                .send(Ok(Message::Text(s.to_owned().into())))
                .await
                .unwrap();
        }
    }

    async fn start(toml: &str) -> Harness {
        start_with(toml, true).await
    }

    /// `hub_tasks: false` leaves the hub's bus listener off, so no session event (an
    /// ending, a rotation) reaches the connection: what it does on its own is seen alone.
    async fn start_with(toml: &str, hub_tasks: bool) -> Harness {
        let config = crate::config::Config::from_toml(toml).unwrap();
        let store: Arc<dyn sessiond_core::Store> =
            Arc::new(sessiond_store_memory::MemoryStore::new());
        let mut builder = crate::builder::ServerBuilder::new(config).store(store);
        if !hub_tasks {
            builder = builder.without_hub_tasks();
        }
        let server = builder.build().await.unwrap();
        let state = server.state().clone();
        let (_, guard) = server.into_parts();
        let session = match state
            .sessions
            .get_or_create(None, None, &Default::default())
            .await
            .unwrap()
        {
            crate::sessions::Obtained::Created { session, .. } => session,
            _ => unreachable!("no token and no key always creates"),
        };
        let (in_tx, in_rx) = fmpsc::channel(16);
        let (out_tx, out_rx) = fmpsc::channel(16);
        tokio::spawn(run(
            state.clone(),
            ChanSocket {
                rx: in_rx,
                tx: out_tx,
            },
            Box::new(session.clone()),
        ));
        Harness {
            input: in_tx,
            output: out_rx,
            state,
            session,
            _guard: guard,
        }
    }

    const FAST: &str = "store = \"memory\"\n[roles.editor]\nidle_timeout = \"30s\"\nwarn_before = \"5s\"\nheartbeat_interval = \"10s\"\nrooms = [\"doc-*\"]\n";

    #[tokio::test]
    async fn hello_first_then_answers_and_errors_keep_the_connection() {
        let mut h = start(FAST).await;
        let hello = h.recv_json().await;
        assert_eq!(hello["type"], "hello");
        assert_eq!(hello["handle"], h.session.handle.to_string());
        assert_eq!(hello["heartbeat_interval"], 10);
        h.send_text("{oops").await;
        assert_eq!(h.recv_json().await["code"], "bad_message");
        h.send_text(r#"{"type":"teleport"}"#).await;
        assert_eq!(h.recv_json().await["code"], "unknown_type");
        h.input
            .send(Ok(Message::Binary(vec![1, 2].into())))
            .await
            .unwrap();
        assert_eq!(h.recv_json().await["code"], "binary_not_supported");
        h.send_text(r#"{"type":"join","room":"bad room!"}"#).await;
        assert_eq!(h.recv_json().await["code"], "invalid_room");
        h.send_text(r#"{"type":"leave","room":"r1"}"#).await;
        assert_eq!(h.recv_json().await["code"], "not_joined");
        h.send_text(r#"{"type":"ping","id":"abc"}"#).await;
        let pong = h.recv_json().await;
        assert_eq!(
            (pong["type"].as_str(), pong["id"].as_str()),
            (Some("pong"), Some("abc"))
        );
        assert_eq!(h.state.hub.len(), 1);
    }

    #[tokio::test]
    async fn snapshot_write_conflict_and_rejoin_restore() {
        let mut h = start(FAST).await;
        h.recv_json().await;
        h.send_text(r#"{"type":"join","room":"doc-1"}"#).await;
        let p = h.recv_json().await;
        assert_eq!(p["type"], "presence");
        assert!(p["snapshot"].is_null());
        assert_eq!(p["members"].as_array().unwrap().len(), 1);
        h.send_text(r#"{"type":"snapshot","room":"doc-1","version":0,"data":"aGVsbG8=","content_type":"text/plain"}"#)
            .await;
        let saved = h.recv_json().await;
        assert_eq!(
            (saved["type"].as_str(), saved["version"].as_u64()),
            (Some("snapshot_saved"), Some(1))
        );
        h.send_text(r#"{"type":"snapshot","room":"doc-1","version":0,"data":"eA==","content_type":"text/plain"}"#).await;
        let c = h.recv_json().await;
        assert_eq!(
            (c["code"].as_str(), c["current_version"].as_u64()),
            (Some("conflict"), Some(1))
        );
        h.send_text(r#"{"type":"leave","room":"doc-1"}"#).await;
        h.send_text(r#"{"type":"join","room":"doc-1"}"#).await;
        let p = h.recv_json().await;
        assert_eq!(p["snapshot"]["data"], "aGVsbG8=");
        assert_eq!(p["snapshot"]["version"], 1);
        let stored = h.state.store.get_snapshot("doc-1").await.unwrap().unwrap();
        assert_eq!(
            stored.retain_until, None,
            "a room in use is not up for purging"
        );
    }

    #[tokio::test]
    async fn client_close_unregisters_and_starts_snapshot_retention() {
        let mut h = start(FAST).await;
        h.recv_json().await;
        h.send_text(r#"{"type":"join","room":"doc-2"}"#).await;
        h.recv_json().await;
        h.send_text(
            r#"{"type":"snapshot","room":"doc-2","version":0,"data":"AA==","content_type":"x/y"}"#,
        )
        .await;
        h.recv_json().await;
        h.input.send(Ok(Message::Close(None))).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let s = h.state.store.get_snapshot("doc-2").await.unwrap().unwrap();
            if h.state.hub.is_empty() && s.retain_until.is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not unregistered / retained in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// In the window before a rotation's close lands (here: never, the hub hears no
    /// events), a frame from the connection is checked against the token it
    /// authenticated with: `renew` renews nothing and the connection closes with 4010.
    #[tokio::test]
    async fn frames_after_a_rotation_are_refused_before_the_close_lands() {
        let mut h = start_with(FAST, false).await;
        assert_eq!(h.recv_json().await["type"], "hello");
        let store = h.state.store.clone();
        let mut rotated = store.get_session(&h.session.handle).await.unwrap().unwrap();
        let old_hash = rotated.token_hash;
        let at = rotated.last_activity_at;
        sessiond_core::lifecycle::rotate(&mut rotated, at);
        assert!(store
            .update_session(&rotated, &old_hash, &[], None)
            .await
            .unwrap());
        h.state.sessions.forget(&h.session.handle);
        let idle = rotated.idle_expires_at;
        h.send_text(r#"{"type":"renew"}"#).await;
        match h.recv().await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), close::REAUTHENTICATE),
            other => panic!("expected close, got {other:?}"),
        }
        let after = store.get_session(&h.session.handle).await.unwrap().unwrap();
        assert_eq!(
            after.idle_expires_at, idle,
            "an old socket renewed the session"
        );
        assert_eq!(h.state.hub.len(), 0);
    }

    #[tokio::test]
    async fn revoke_sends_session_ended_then_close_code() {
        let mut h = start(FAST).await;
        h.recv_json().await;
        h.state
            .sessions
            .end(&h.session.handle, sessiond_core::EndReason::Revoked)
            .await
            .unwrap();
        let ended = h.recv_json().await;
        assert_eq!(
            ended,
            serde_json::json!({"type":"session_ended","reason":"revoked"})
        );
        match h.recv().await {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4003),
            other => panic!("expected close, got {other:?}"),
        }
    }
}
