//! `/v1/admin/.../rooms/...`: the app's backend grants and revokes rooms while sessions
//! live (by session handle or by principal) and mints room tokens (share links). The
//! rules are [`crate::rooms`]'s; these handlers only translate HTTP.

use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::routes::extract::{ApiJson, ApiPath};
use crate::routes::problems::{AdminErrors, BodyErrors, InputErrors, NotFoundErrors};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessiond_core::clock::to_rfc3339;
use sessiond_core::snapshot::validate_room;
use sessiond_core::Handle;
use utoipa::ToSchema;

/// Default lifetime of a minted room token, seconds.
const DEFAULT_TOKEN_TTL: i64 = 3600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/admin/sessions/{handle}/rooms/{room}",
            put(grant_session).delete(revoke_session),
        )
        .route(
            "/v1/admin/principals/{id}/rooms/{room}",
            put(grant_principal).delete(revoke_principal),
        )
        .route("/v1/admin/rooms/{room}/tokens", post(mint_room_token))
}

/// A live session's handle (404 for an unknown or ended one, so a grant never lands on
/// a session that cannot use it).
async fn live_handle(state: &AppState, handle: &str) -> ApiResult<Handle> {
    let h = Handle::parse(handle).ok_or_else(|| ApiError::invalid("not a session handle"))?;
    match state.sessions.get(&h).await? {
        Some(s) if s.is_active() => Ok(h),
        _ => Err(ApiError::NotFound),
    }
}

fn principal(id: &str) -> ApiResult<&str> {
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::invalid("principal must be 1 to 256 characters"));
    }
    Ok(id)
}

/// Grants `room` to one live session: it may join at once (until revoked or the session ends).
#[utoipa::path(put, path = "/v1/admin/sessions/{handle}/rooms/{room}", tag = "admin",
    params(("handle" = String, Path, description = "Session handle"), ("room" = String, Path, description = "Room id (exact, not a pattern)")),
    security(("api_key" = [])),
    responses((status = 204, description = "Granted"), AdminErrors, InputErrors, NotFoundErrors))]
pub async fn grant_session(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((handle, room)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    validate_room(&room)?;
    let h = live_handle(&state, &handle).await?;
    state.rooms.grant(&h, &room).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a session's admin grant of `room`. Its connections in the room (on every node)
/// are removed at once, told `room_access_revoked`, and the room gets `member_left` with
/// `access_revoked` — unless another grant (role, ticket, room token) still admits it.
#[utoipa::path(delete, path = "/v1/admin/sessions/{handle}/rooms/{room}", tag = "admin",
    params(("handle" = String, Path, description = "Session handle"), ("room" = String, Path, description = "Room id")),
    security(("api_key" = [])),
    responses((status = 204, description = "Revoked (also when there was no grant)"), AdminErrors, InputErrors, NotFoundErrors))]
pub async fn revoke_session(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((handle, room)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    validate_room(&room)?;
    let h = live_handle(&state, &handle).await?;
    state.rooms.revoke(&h, &room).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantedSessions {
    /// Live sessions of the principal this call changed.
    pub sessions: usize,
}

/// Grants `room` to every live session of a principal (sessions made later need their
/// own grant, or a ticket `rooms` claim).
#[utoipa::path(put, path = "/v1/admin/principals/{id}/rooms/{room}", tag = "admin",
    params(("id" = String, Path, description = "The principal, e.g. user:alice"), ("room" = String, Path, description = "Room id")),
    security(("api_key" = [])),
    responses((status = 200, body = GrantedSessions), AdminErrors, InputErrors))]
pub async fn grant_principal(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((id, room)): ApiPath<(String, String)>,
) -> ApiResult<Json<GrantedSessions>> {
    validate_room(&room)?;
    let n = state
        .rooms
        .by_principal(principal(&id)?, &room, true)
        .await?;
    Ok(Json(GrantedSessions { sessions: n }))
}

/// Revokes `room` from every live session of a principal (their members leave at once).
#[utoipa::path(delete, path = "/v1/admin/principals/{id}/rooms/{room}", tag = "admin",
    params(("id" = String, Path, description = "The principal, e.g. user:alice"), ("room" = String, Path, description = "Room id")),
    security(("api_key" = [])),
    responses((status = 200, body = GrantedSessions), AdminErrors, InputErrors))]
pub async fn revoke_principal(
    _: Admin,
    State(state): State<AppState>,
    ApiPath((id, room)): ApiPath<(String, String)>,
) -> ApiResult<Json<GrantedSessions>> {
    validate_room(&room)?;
    let n = state
        .rooms
        .by_principal(principal(&id)?, &room, false)
        .await?;
    Ok(Json(GrantedSessions { sessions: n }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomTokenRequest {
    /// Seconds the token is valid (default 3600, at most `rooms.token_max_age`).
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomTokenResponse {
    /// The room token: `join` with `token`, or `X-Room-Token` on snapshot requests.
    pub token: String,
    pub room: String,
    #[schema(example = "2025-01-01T00:00:00Z")]
    pub expires_at: String,
}

/// Mints a room token (HS256, the ticket secret): any session presenting it may join
/// `room` (and use its snapshot) until it expires. 400 without `tickets.hs256_secret`.
#[utoipa::path(post, path = "/v1/admin/rooms/{room}/tokens", tag = "admin",
    params(("room" = String, Path, description = "Room id")),
    request_body = RoomTokenRequest, security(("api_key" = [])),
    responses((status = 200, body = RoomTokenResponse), AdminErrors, BodyErrors))]
pub async fn mint_room_token(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
    ApiJson(req): ApiJson<RoomTokenRequest>,
) -> ApiResult<Json<RoomTokenResponse>> {
    validate_room(&room)?;
    let ttl = req
        .ttl_seconds
        .unwrap_or(DEFAULT_TOKEN_TTL.min(state.rooms.token_max_age_s()));
    if ttl < 1 || ttl > state.rooms.token_max_age_s() {
        return Err(ApiError::invalid(format!(
            "ttl_seconds must be 1 to {}",
            state.rooms.token_max_age_s()
        )));
    }
    let (token, exp) = state
        .rooms
        .mint_token(&room, ttl, state.clock.now())
        .map_err(ApiError::invalid)?;
    Ok(Json(RoomTokenResponse {
        token,
        room,
        expires_at: to_rfc3339(exp),
    }))
}
