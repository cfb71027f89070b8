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
use crate::error::ApiError;
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

async fn admin_rooms(_: Admin, State(state): State<AppState>) -> Json<serde_json::Value> {
    let rooms: Vec<serde_json::Value> = state
        .hub
        .rooms()
        .into_iter()
        .map(|(room, n)| serde_json::json!({"room": room, "members": n}))
        .collect();
    Json(serde_json::json!({ "rooms": rooms }))
}

async fn admin_room(
    _: Admin,
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let members = state.hub.room_members(&room).ok_or(ApiError::NotFound)?;
    Ok(Json(
        serde_json::json!({ "room": room, "members": members }),
    ))
}

#[derive(serde::Deserialize)]
struct ConnectionsQuery {
    handle: Option<String>,
    limit: Option<usize>,
}

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
