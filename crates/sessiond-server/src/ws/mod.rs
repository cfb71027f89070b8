//! Real time: `GET /v1/ws` (heartbeats, activity, warnings, renewal, endings, presence
//! and room snapshots) and the admin views of rooms and connections.
//!
//! The upgrade authenticates first (cookie from an allowed origin, `Authorization:
//! Bearer`, or a `bearer.<token>` subprotocol entry) so an unauthenticated client never
//! gets a socket. Each connection is one task ([`conn`]); the [`hub::Hub`] keeps the
//! registry, the rooms and one heartbeat timer for all connections ([`tasks`]).

pub mod conn;
pub mod hub;
pub mod protocol;
pub mod tasks;

pub use hub::Hub;

use crate::auth::{self, Admin, TokenSource};
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::{BEARER_PREFIX, PROTOCOL};
use sessiond_core::Handle;
use std::collections::{BTreeMap, HashSet};

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
pub fn ws_token(headers: &HeaderMap, cookie_name: &str) -> Option<(String, TokenSource)> {
    let offered = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for p in offered {
        if let Some(t) = p.strip_prefix(BEARER_PREFIX) {
            return Some((t.to_owned(), TokenSource::Bearer));
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
        (status = 401, description = "unauthenticated or session_expired (checked before the upgrade)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden_origin: a cookie-authenticated upgrade from a disallowed Origin", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "store_unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some((token, source)) = ws_token(&headers, &state.config.cookie.name) else {
        return ApiError::Unauthenticated.into_response();
    };
    // A WebSocket is not covered by CORS: without this any site could open one with the cookie.
    if source == TokenSource::Cookie {
        if let Err(e) = auth::origin_allowed(&state, &headers) {
            return e.into_response();
        }
    }
    let session = match state.sessions.authenticate(&token, false).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    tasks::ensure_started(&state);
    let cfg = &state.config.ws;
    ws.protocols([PROTOCOL])
        .read_buffer_size(cfg.read_buffer)
        .write_buffer_size(0)
        .max_message_size(cfg.max_message_size)
        .max_frame_size(cfg.max_message_size)
        .on_upgrade(move |socket| conn::run(state, socket, session))
}

/// Rooms with members on any node (this node's alone without a Redis store).
#[utoipa::path(get, path = "/v1/admin/rooms", tag = "realtime", security(("api_key" = [])),
    responses(
        (status = 200, description = "Rooms and their member counts across the cluster", body = serde_json::Value,
         example = json!({"rooms": [{"room": "r1", "members": 2}]})),
        (status = 403, description = "forbidden: missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "store_unavailable: the cluster registry cannot be read", body = Problem, content_type = "application/problem+json"),
    ))]
async fn admin_rooms(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let rooms: Vec<serde_json::Value> = counts
        .into_iter()
        .map(|(room, n)| serde_json::json!({"room": room, "members": n}))
        .collect();
    Ok(Json(serde_json::json!({ "rooms": rooms })))
}

/// One room's members on any node: this node's in join order, then the others' in join
/// order; each names its `node`.
#[utoipa::path(get, path = "/v1/admin/rooms/{room}", tag = "realtime", security(("api_key" = [])),
    params(("room" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "The room and its members", body = serde_json::Value,
         example = json!({"room": "r1", "members": [{"connection_id": "c_1", "handle": "h_…", "principal": "user:alice", "role": "user", "node": "node-1"}]})),
        (status = 403, description = "forbidden: missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: nobody is in the room", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "store_unavailable: the cluster registry cannot be read", body = Problem, content_type = "application/problem+json"),
    ))]
async fn admin_room(
    _: Admin,
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let local = state.hub.room_members(&room).unwrap_or_default();
    let remote = state.presence.remote_entries(&room).await?;
    if local.is_empty() && remote.is_empty() {
        return Err(ApiError::NotFound);
    }
    let mut seen = HashSet::new();
    let members: Vec<serde_json::Value> = local
        .into_iter()
        .map(|m| (state.node_id.clone(), m))
        .chain(remote.into_iter().map(|e| (e.node, e.member)))
        .filter(|(_, m)| seen.insert(m.connection_id.clone()))
        .map(|(node, m)| member_json(m, node))
        .collect();
    Ok(Json(
        serde_json::json!({ "room": room, "members": members }),
    ))
}

/// A member as the admin views show it: the protocol's member plus its node.
fn member_json(m: protocol::Member, node: String) -> serde_json::Value {
    serde_json::json!({
        "connection_id": m.connection_id,
        "handle": m.handle,
        "principal": m.principal,
        "role": m.role,
        "node": node,
    })
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
        (status = 200, description = "The connections", body = serde_json::Value,
         example = json!({"connections": [{"connection_id": "c_1", "handle": "h_…", "principal": "user:alice", "role": "user", "rooms": ["r1"], "connected_at": "2025-01-01T00:00:00Z"}]})),
        (status = 400, description = "invalid_request: bad handle or limit", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: missing or invalid API key", body = Problem, content_type = "application/problem+json"),
    ))]
async fn admin_connections(
    _: Admin,
    State(state): State<AppState>,
    q: Result<Query<ConnectionsQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid(e.body_text()))?;
    let handle = match q.handle.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => Some(
            Handle::parse(h).ok_or_else(|| ApiError::invalid("handle is not a session handle"))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(1000).min(MAX_LISTED_CONNECTIONS);
    let connections = state.hub.connections(handle.as_ref(), limit);
    Ok(Json(serde_json::json!({ "connections": connections })))
}
