//! Real time: `GET /v1/ws` (heartbeats, activity, warnings, renewal, endings, presence
//! and room snapshots) and the admin views of rooms and connections.
//!
//! The upgrade authenticates first (the cookie, `Authorization: Bearer`, or a
//! `bearer.<token>` subprotocol entry, each only from this server's own or an allowed
//! origin) so an unauthenticated client never gets a socket. Each connection is one task ([`conn`]); the [`hub::Hub`] keeps the
//! registry, the rooms and one heartbeat timer for all connections ([`tasks`]).

pub mod conn;
pub mod hub;
pub mod protocol;
pub mod tasks;

pub use hub::Hub;

use crate::auth::{self, PresentedToken, Reader, TokenSource};
use crate::error::ApiError;
use crate::routes::extract::{ApiPath, ApiQuery};
use crate::routes::problems::{
    AdminErrors, ForbiddenErrors, InputErrors, NotFoundErrors, RateLimitErrors, ReadErrors,
};
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::{BEARER_PREFIX, PROTOCOL};
use serde::Serialize;
use sessiond_core::Handle;
use std::collections::{BTreeMap, HashSet};
use utoipa::ToSchema;

/// Most connections one admin listing returns.
const MAX_LISTED_CONNECTIONS: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .route("/v1/admin/rooms", get(admin_rooms))
        .route("/v1/admin/rooms/{room}", get(admin_room))
        .route("/v1/admin/connections", get(admin_connections))
}

/// The session token of an upgrade request: a `bearer.<token>` subprotocol entry, then
/// `Authorization: Bearer`, then the cookie.
pub fn ws_token(headers: &HeaderMap, cookie_name: &str) -> Option<PresentedToken> {
    let offered = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for p in offered {
        if let Some(t) = p.strip_prefix(BEARER_PREFIX) {
            return Some(PresentedToken::parse(t, TokenSource::Bearer));
        }
    }
    auth::request_token(headers, cookie_name)
}

/// Opens the real-time WebSocket (subprotocol `sessiond.v1`; messages in docs/protocol.md).
#[utoipa::path(get, path = "/v1/ws", tag = "realtime",
    params(
        ("Sec-WebSocket-Protocol" = Option<String>, Header,
         description = "`sessiond.v1`, optionally with a `bearer.<token>` entry (browsers cannot set Authorization)"),
        ("Authorization" = Option<String>, Header, description = "`Bearer <session token>` instead of the cookie"),
    ),
    responses(
        (status = 101, description = "Switching Protocols: the WebSocket is open"),
        (status = 400, description = "Not a valid WebSocket upgrade request", body = String, content_type = "text/plain"),
        (status = 426, description = "The connection cannot be upgraded", body = String, content_type = "text/plain"),
        // 403 is forbidden_origin: an upgrade from a disallowed Origin (cookie or bearer).
        ReadErrors, ForbiddenErrors, RateLimitErrors,
    ))]
async fn upgrade(
    State(state): State<AppState>,
    crate::client::Client(client): crate::client::Client,
    headers: HeaderMap,
    version: Version,
    place: Option<axum::Extension<crate::serve::ConnPlace>>,
    // Read before `ws`, which takes it out of the request (see [`connection`]).
    on_upgrade: Option<axum::Extension<hyper::upgrade::OnUpgrade>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(presented) = ws_token(&headers, &state.config.cookie.name) else {
        return ApiError::Unauthenticated.into_response();
    };
    // A WebSocket is not covered by CORS: without this any site could open one with the
    // cookie. A bearer token is held to the same rule: no page outside the allowed
    // origins gets a socket, whoever's token it carries (clients that are not browsers
    // send no `Origin` and pass, as on every other route).
    if let Err(e) = auth::origin_allowed(&state, &headers) {
        return e.into_response();
    }
    let Some(hash) = presented.hash else {
        return ApiError::Unauthenticated.into_response();
    };
    let session = match state.sessions.authenticate(&hash, false).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    state.sessions.seen_from(&session.handle, &client);
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // axum found the request's upgrade (else `ws` is a rejection), so this is there.
    let Some(axum::Extension(on_upgrade)) = on_upgrade else {
        return StatusCode::UPGRADE_REQUIRED.into_response();
    };
    let protocol = ws.protocols([PROTOCOL]).selected_protocol().cloned();
    tokio::spawn(connection(state, on_upgrade, Box::new(session), place));
    switching_protocols(version, &headers, protocol)
}

/// The task of one connection: runs it once the upgrade completes.
///
/// axum's `on_upgrade` is not used: it makes the WebSocket stream itself, and the
/// connection writes `hello` before the stream exists (see [`conn::run_upgraded`]); its
/// task would also keep room for its own arguments (the upgrade, the config, the
/// protocol, the callback) beside the connection's for as long as the connection lives.
/// The socket keeps its place under `http.max_connections` until it closes.
fn connection(
    state: AppState,
    on_upgrade: hyper::upgrade::OnUpgrade,
    session: Box<sessiond_core::Session>,
    place: Option<axum::Extension<crate::serve::ConnPlace>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    conn::run_upgraded(state, on_upgrade, session, place)
}

/// `size_of_val` of a connection task's future before it runs (`sessiond-bench ws-parts`).
pub fn task_future_bytes(state: &AppState, session: sessiond_core::Session) -> usize {
    let mut req = axum::http::Request::new(());
    let task = connection(
        state.clone(),
        hyper::upgrade::on(&mut req),
        Box::new(session),
        None,
    );
    std::mem::size_of_val(&task)
}

/// The answer that completes the upgrade (RFC 6455 over HTTP/1.1, RFC 8441 over
/// HTTP/2), naming the subprotocol chosen.
fn switching_protocols(
    version: Version,
    headers: &HeaderMap,
    protocol: Option<HeaderValue>,
) -> Response {
    let mut response = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if version <= Version::HTTP_11 => {
            let accept = ws_stream::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
            let h = r.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
            }
            r
        }
        _ => StatusCode::OK.into_response(),
    };
    if let Some(p) = protocol {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    response
}

/// A room and how many members it has across the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomCount {
    #[schema(example = "r1")]
    pub room: String,
    pub members: usize,
}

/// `GET /v1/admin/rooms`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomCount>,
}

/// A member as the admin views show it: the protocol's member plus its node.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomMember {
    #[schema(example = "c_1")]
    pub connection_id: String,
    pub handle: String,
    #[schema(example = "user:alice")]
    pub principal: String,
    pub role: String,
    /// The node the connection is on.
    #[schema(example = "node-1")]
    pub node: String,
}

/// `GET /v1/admin/rooms/{room}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub room: String,
    pub members: Vec<RoomMember>,
}

/// `GET /v1/admin/connections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<hub::ConnInfo>,
}

/// Rooms with members on any node (this node's alone without a Redis store).
#[utoipa::path(get, path = "/v1/admin/rooms", tag = "realtime", security(("api_key" = [])),
    responses(
        (status = 200, description = "Rooms and their member counts across the cluster", body = RoomList),
        AdminErrors,
    ))]
async fn admin_rooms(_: Reader, State(state): State<AppState>) -> Result<Json<RoomList>, ApiError> {
    let mut counts: BTreeMap<String, usize> = state
        .presence
        .remote_rooms()
        .await?
        .into_iter()
        .map(|(room, conns)| (room, conns.len()))
        .collect();
    // Other nodes' sets never hold this node's connections, so counts simply add up.
    for (room, n) in state.hub.rooms() {
        *counts.entry(room).or_default() += n;
    }
    let rooms = counts
        .into_iter()
        .map(|(room, members)| RoomCount { room, members })
        .collect();
    Ok(Json(RoomList { rooms }))
}

/// One room's members on any node: this node's in join order, then the others' in join
/// order; each names its `node`.
#[utoipa::path(get, path = "/v1/admin/rooms/{room}", tag = "realtime", security(("api_key" = [])),
    params(("room" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "The room and its members", body = RoomView),
        AdminErrors, NotFoundErrors,
    ))]
async fn admin_room(
    _: Reader,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<RoomView>, ApiError> {
    let local = state.hub.room_members(&room).unwrap_or_default();
    let remote = state.presence.remote_entries(&room).await?;
    if local.is_empty() && remote.is_empty() {
        return Err(ApiError::NotFound);
    }
    let mut seen = HashSet::new();
    let members = local
        .into_iter()
        .map(|m| (state.node_id.clone(), m))
        .chain(remote.into_iter().map(|e| (e.node, e.member)))
        .filter(|(_, m)| seen.insert(m.connection_id.clone()))
        .map(|(node, m)| RoomMember {
            connection_id: m.connection_id,
            handle: m.handle,
            principal: m.principal,
            role: m.role,
            node,
        })
        .collect();
    Ok(Json(RoomView { room, members }))
}

#[derive(serde::Deserialize)]
struct ConnectionsQuery {
    handle: Option<String>,
    limit: Option<usize>,
}

/// Live WebSocket connections on this node (of one session, or all), oldest first.
#[utoipa::path(get, path = "/v1/admin/connections", tag = "realtime", security(("api_key" = [])),
    params(
        ("handle" = Option<String>, Query, description = "Only this session's connections"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 1000, max 10000)"),
    ),
    responses(
        (status = 200, description = "The connections", body = ConnectionList),
        AdminErrors, InputErrors,
    ))]
async fn admin_connections(
    _: Reader,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConnectionsQuery>,
) -> Result<Json<ConnectionList>, ApiError> {
    let handle = match q.handle.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => Some(
            Handle::parse(h).ok_or_else(|| ApiError::invalid("handle is not a session handle"))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(1000).min(MAX_LISTED_CONNECTIONS);
    let connections = state.hub.connections(handle.as_ref(), limit);
    Ok(Json(ConnectionList { connections }))
}
