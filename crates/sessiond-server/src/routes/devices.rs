//! `/v1/session/devices`: "my devices" for a signed-in principal. Lists its live
//! sessions (where each was last seen from, which one is this), ends one of them or all
//! the others. Only the caller's own principal's sessions are ever named: any other
//! handle is 404, exactly like one that does not exist, so handles cannot be probed.

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::routes::extract::ApiPath;
use crate::routes::problems::{ForbiddenErrors, NotFoundErrors, ReadErrors, WriteErrors};
use crate::routes::session::clear_cookie;
use crate::state::AppState;
use crate::useragent;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use sessiond_core::clock::to_rfc3339;
use sessiond_core::{Handle, Session};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/session/devices", get(list))
        .route("/v1/session/devices/{handle}", delete(end_one))
        .route("/v1/session/devices/end-others", post(end_others))
}

/// One live session of the signed-in principal.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    #[schema(example = "s_Q2xJb0p0Y2lVd1Rr")]
    pub handle: String,
    pub role: String,
    pub created_at: String,
    /// Last user activity (what resets the idle deadline).
    pub last_active_at: String,
    /// Client IP of its latest request (after trusted proxies).
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// Browser family and major version read from the user agent, e.g. `Firefox 133`.
    #[schema(example = "Firefox 133")]
    pub browser: Option<String>,
    /// Operating system family, e.g. `macOS`.
    #[schema(example = "macOS")]
    pub os: Option<String>,
    /// This is the session making the request.
    pub current: bool,
}

/// `{"devices": [...]}`: this session first, then by last activity.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

/// `{"ended": n}`: how many sessions this request ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    pub ended: usize,
}

fn view(s: &Session, me: &Handle) -> DeviceView {
    let d = s
        .user_agent
        .as_deref()
        .map(useragent::describe)
        .unwrap_or_default();
    DeviceView {
        handle: s.handle.to_string(),
        role: s.role.clone(),
        created_at: to_rfc3339(s.created_at),
        last_active_at: to_rfc3339(s.last_activity_at),
        client_ip: s.client_ip.clone(),
        user_agent: s.user_agent.as_deref().map(str::to_owned),
        browser: d.browser,
        os: d.os,
        current: s.handle == *me,
    }
}

/// The signed-in principal's live sessions (at most 100).
///
/// 403 `not_signed_in` for an anonymous session (it has no other devices).
#[utoipa::path(get, path = "/v1/session/devices", tag = "session",
    responses((status = 200, body = DeviceList), ReadErrors, ForbiddenErrors))]
pub async fn list(State(state): State<AppState>, a: Authed) -> ApiResult<Json<DeviceList>> {
    let me = state
        .sessions
        .cached(&a.session.handle)
        .unwrap_or(a.session);
    let devices = state.sessions.devices(&me).await?;
    Ok(Json(DeviceList {
        devices: devices.iter().map(|s| view(s, &me.handle)).collect(),
    }))
}

/// Ends one of the principal's sessions (`ended_by_user`; its connections are closed
/// with 4012 and its token stops working). This session's own handle signs it out
/// (`signed_out`, cookie cleared), like `DELETE /v1/session`.
///
/// 404 for a handle that is not a live session of this principal (another user's
/// included); 403 `not_signed_in` for an anonymous session.
#[utoipa::path(delete, path = "/v1/session/devices/{handle}", tag = "session",
    params(("handle" = String, Path, description = "A handle from the devices list")),
    responses((status = 204, description = "Ended"), WriteErrors, NotFoundErrors))]
pub async fn end_one(
    State(state): State<AppState>,
    a: Authed,
    ApiPath(handle): ApiPath<String>,
) -> ApiResult<Response> {
    let me = a.session;
    if me.principal.is_anonymous() {
        return Err(ApiError::NotSignedIn);
    }
    let handle = Handle::parse(&handle).ok_or(ApiError::NotFound)?;
    if handle == me.handle {
        state.sessions.sign_out(&me.handle).await?;
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut()
            .insert(header::SET_COOKIE, clear_cookie(&state));
        return Ok(r);
    }
    state.sessions.end_device(&me, &handle).await?;
    tracing::info!(handle = %handle, by = %me.handle, "device ended by its user");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Ends every other live session of the principal (`ended_by_user`); this one goes on.
///
/// 403 `not_signed_in` for an anonymous session.
#[utoipa::path(post, path = "/v1/session/devices/end-others", tag = "session",
    responses((status = 200, body = Ended), WriteErrors))]
pub async fn end_others(State(state): State<AppState>, a: Authed) -> ApiResult<Json<Ended>> {
    let ended = state.sessions.end_other_devices(&a.session).await?;
    tracing::info!(by = %a.session.handle, ended, "other devices ended by their user");
    Ok(Json(Ended { ended }))
}
