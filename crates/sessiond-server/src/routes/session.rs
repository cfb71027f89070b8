//! `/v1/session`: get-or-create (idempotent), read, activity, renewal, sign-out,
//! sign-in with a ticket (token rotation), session data, and the local-copy key.
//!
//! Handlers never see a token except to hand a new one out once (cookie, or body when
//! a bearer token was asked for); logs name the handle.

use crate::auth::{self, Authed, TokenSource};
use crate::client::Client;
use crate::error::{ApiError, ApiResult};
use crate::idempotency;
use crate::routes::extract::{ApiJson, ApiPath};
use crate::routes::problems::{
    BodyErrors, ConflictErrors, IdempotencyErrors, InputErrors, NotFoundErrors, RateLimitErrors,
    ReadErrors, WriteErrors,
};
use crate::sessions::{Credential, Idempotency, Obtained, SignIn};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sessiond_core::clock::to_rfc3339;
use sessiond_core::lifecycle::{self, ViewState};
use sessiond_core::{Session, Token};
use utoipa::ToSchema;

/// Largest serialized session-data value.
pub const MAX_DATA_VALUE: usize = 64 * 1024;
/// Longest session-data key.
pub const MAX_DATA_KEY: usize = 128;
/// Largest request body on these routes (JSON of create and sign-in, a data value): the
/// router's limit, set by layer in [`crate::routes::app`].
pub const MAX_BODY: usize = MAX_DATA_VALUE;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/session", post(create).get(read).delete(sign_out))
        .route("/v1/session/activity", post(activity))
        .route("/v1/session/renew", post(renew))
        .route("/v1/session/signin", post(sign_in))
        .route("/v1/session/local-key", get(local_key))
        .route(
            "/v1/session/data/{key}",
            get(get_data).put(put_data).delete(delete_data),
        )
}

/// A role's policy in whole seconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    pub idle_timeout: u64,
    pub absolute_timeout: u64,
    pub warn_before: u64,
    pub heartbeat_interval: u64,
    pub heartbeat_misses: u32,
}

/// A session as clients and admins see it. Never carries the token, except `token` on
/// creation or sign-in when the client asked for a bearer token.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    #[schema(example = "s_Q2xJb0p0Y2lVd1Rr")]
    pub handle: String,
    #[schema(example = "anon:AbCdEf123456")]
    pub principal: String,
    pub user_id: Option<String>,
    pub role: String,
    /// `active`, `warned` (inside the warning window) or `ended`.
    #[schema(value_type = String, example = "active")]
    pub state: ViewState,
    pub created_at: String,
    pub last_activity_at: String,
    pub idle_expires_at: String,
    pub absolute_expires_at: String,
    pub seconds_left: i64,
    pub policy: PolicyView,
    /// Why it ended (ended sessions, admin views).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Rooms a ticket restricted the session to (absent: any room).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_rooms: Option<Vec<String>>,
    /// Admin views: where the session was created or signed in from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Admin views: open WebSocket connections on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// Only on creation or sign-in with `{"bearer": true}` (or a bearer-authenticated sign-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The client's view of a session at the current time.
pub fn session_view(state: &AppState, s: &Session) -> SessionView {
    let now = state.clock.now();
    let policy = state.sessions.policy(&s.role);
    let ended = !s.is_active();
    SessionView {
        handle: s.handle.to_string(),
        principal: s.principal.to_string(),
        user_id: s.user_id.clone(),
        role: s.role.clone(),
        state: lifecycle::view_state(s, now, policy),
        created_at: to_rfc3339(s.created_at),
        last_activity_at: to_rfc3339(s.last_activity_at),
        idle_expires_at: to_rfc3339(s.idle_expires_at),
        absolute_expires_at: to_rfc3339(s.absolute_expires_at),
        seconds_left: if ended {
            0
        } else {
            lifecycle::seconds_left(s, now)
        },
        policy: PolicyView {
            idle_timeout: policy.idle_timeout.as_secs(),
            absolute_timeout: policy.absolute_timeout.as_secs(),
            warn_before: policy.warn_before.as_secs(),
            heartbeat_interval: policy.heartbeat_interval.as_secs(),
            heartbeat_misses: policy.heartbeat_misses,
        },
        reason: s.end_reason.map(|r| r.as_str().to_owned()),
        ended_at: s.ended_at.map(to_rfc3339),
        allowed_rooms: s.allowed_rooms.clone(),
        client_ip: None,
        user_agent: None,
        connections: None,
        token: None,
    }
}

/// `Set-Cookie` for a session token. By default a browser-session cookie (no Max-Age):
/// the server's deadlines end the session, and the browser forgets the token when it
/// closes. With `cookie.persistent`, Max-Age reaches past the absolute deadline (rounded
/// up, plus [`COOKIE_GRACE_S`]), so the browser never drops the cookie before the server
/// ends the session: the user is told `session_expired`, not `unauthenticated`. The
/// token is worthless after the deadline, so the extra minute exposes nothing.
pub fn session_cookie(state: &AppState, token: &Token, s: &Session) -> HeaderValue {
    let max_age = state
        .config
        .cookie
        .persistent
        .then(|| persistent_max_age(s.absolute_expires_at - state.clock.now()));
    cookie(state, token.as_str(), max_age)
}

/// How long a persistent cookie outlives the absolute deadline: long enough for the
/// client's next request (a poll, a reconnect) to hear why the session ended.
pub const COOKIE_GRACE_S: i64 = 60;

/// Max-Age of a persistent cookie: whole seconds covering `remaining_ms` (rounded up;
/// never negative) plus [`COOKIE_GRACE_S`].
pub fn persistent_max_age(remaining_ms: i64) -> i64 {
    (remaining_ms.max(0).saturating_add(999) / 1000).saturating_add(COOKIE_GRACE_S)
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(state: &AppState) -> HeaderValue {
    cookie(state, "", Some(0))
}

fn cookie(state: &AppState, value: &str, max_age: Option<i64>) -> HeaderValue {
    let c = &state.config;
    let mut v = format!(
        "{}={value}; HttpOnly; SameSite={}; Path=/",
        c.cookie.name,
        c.cookie.same_site.as_str()
    );
    if let Some(max_age) = max_age {
        v.push_str(&format!("; Max-Age={max_age}"));
    }
    if c.cookie_secure() {
        v.push_str("; Secure");
    }
    if !c.cookie.domain.is_empty() {
        v.push_str("; Domain=");
        v.push_str(&c.cookie.domain);
    }
    HeaderValue::from_str(&v).expect("cookie name and domain are validated header-safe")
}

/// A session response: JSON with an optional cookie (`no-store` is the router's layer).
fn respond(status: StatusCode, view: SessionView, cookie: Option<HeaderValue>) -> Response {
    let mut r = (status, Json(view)).into_response();
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// Body of `POST /v1/session`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Also return the token in the body (for clients that send `Authorization: Bearer`).
    #[serde(default)]
    pub bearer: bool,
}

/// Get-or-create this browser's session.
///
/// With a valid token of a live session: 200 and that session. Otherwise a new session:
/// 201 with the cookie. With `Idempotency-Key` (8 to 255 visible ASCII characters,
/// which must be unguessable: it returns the session's token to whoever repeats it),
/// concurrent and repeated calls get the same session; the same key with a different
/// request is 422.
#[utoipa::path(post, path = "/v1/session", tag = "session",
    params(("Idempotency-Key" = Option<String>, Header, description = "8..=255 visible ASCII characters; must be unguessable")),
    request_body(content = Option<CreateRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; Set-Cookie carries the token", body = SessionView),
        (status = 200, description = "Existing session", body = SessionView),
        WriteErrors, BodyErrors, IdempotencyErrors, RateLimitErrors,
    ))]
pub async fn create(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Option<ApiJson<CreateRequest>>,
) -> ApiResult<Response> {
    // The response sets a cookie, so a foreign page may not trigger it.
    auth::origin_allowed(&state, &headers)?;
    let req = body.map(|ApiJson(r)| r).unwrap_or_default();
    let idem_key = match headers.get("idempotency-key") {
        Some(v) => {
            let k = v.to_str().map_err(|_| {
                ApiError::invalid("Idempotency-Key must be visible ASCII characters")
            })?;
            idempotency::validate_key(k).map_err(ApiError::invalid)?;
            Some(k.to_owned())
        }
        None => None,
    };
    let current = auth::request_token(&headers, &state.config.cookie.name).and_then(|p| p.hash);
    let idem = idem_key.as_deref().map(|key| Idempotency {
        key,
        fingerprint: idempotency::fingerprint(req.bearer),
    });
    let (status, s, token) = match state
        .sessions
        .get_or_create(current.as_ref(), idem, &client)
        .await?
    {
        Obtained::Current(s) => return Ok(respond(StatusCode::OK, session_view(&state, &s), None)),
        Obtained::Created { session, token } => (StatusCode::CREATED, session, token),
        Obtained::Replayed { session, token } => (StatusCode::OK, session, token),
    };
    let cookie = session_cookie(&state, &token, &s);
    let mut view = session_view(&state, &s);
    if req.bearer {
        view.token = Some(token.as_str().to_owned());
    }
    Ok(respond(status, view, Some(cookie)))
}

/// The current session (does not count as activity).
#[utoipa::path(get, path = "/v1/session", tag = "session",
    responses((status = 200, body = SessionView), ReadErrors))]
pub async fn read(State(state): State<AppState>, a: Authed) -> Response {
    respond(StatusCode::OK, session_view(&state, &a.session), None)
}

/// Records user activity: the idle deadline restarts (never past the absolute one).
#[utoipa::path(post, path = "/v1/session/activity", tag = "session",
    responses((status = 200, body = SessionView), WriteErrors))]
pub async fn activity(
    State(state): State<AppState>,
    Client(client): Client,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let a = auth::authenticate(&state, &method, &headers, &(&client).into(), true).await?;
    Ok(respond(
        StatusCode::OK,
        session_view(&state, &a.session),
        None,
    ))
}

/// "Stay online": an explicit, audited renewal, announced to every connection.
#[utoipa::path(post, path = "/v1/session/renew", tag = "session",
    responses((status = 200, body = SessionView), WriteErrors, RateLimitErrors))]
pub async fn renew(State(state): State<AppState>, a: Authed) -> ApiResult<Response> {
    let s = state.sessions.renew(&Credential::of(&a.session)).await?;
    Ok(respond(StatusCode::OK, session_view(&state, &s), None))
}

/// Signs out: the session ends with `signed_out` and the cookie is cleared.
#[utoipa::path(delete, path = "/v1/session", tag = "session",
    responses((status = 204, description = "Ended; cookie cleared"), WriteErrors))]
pub async fn sign_out(State(state): State<AppState>, a: Authed) -> ApiResult<Response> {
    state.sessions.sign_out(&a.session.handle).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&state));
    Ok(r)
}

/// Body of `POST /v1/session/signin`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// A JWT (HS256 or EdDSA) with `sub`, `role`, `exp`, optional `iat`, `rooms` and `info`.
    pub ticket: String,
    #[serde(default)]
    pub bearer: bool,
}

/// Signs the session in with a ticket, rotating its token.
///
/// On a live session of the same (or an anonymous) principal the session is kept (same
/// handle and data; 200). Without a live session, or when another user's session is
/// live in this browser (which is signed out first), a new signed-in session is made (201).
#[utoipa::path(post, path = "/v1/session/signin", tag = "session",
    request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in; new token in Set-Cookie", body = SessionView),
        (status = 201, description = "A new signed-in session", body = SessionView),
        WriteErrors, BodyErrors, ConflictErrors, RateLimitErrors,
    ))]
pub async fn sign_in(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SignInRequest>,
) -> ApiResult<Response> {
    auth::origin_allowed(&state, &headers)?;
    let now = state.clock.now();
    let claims = state.tickets.verify(&req.ticket, now, |r| {
        state.sessions.policies().get(r).is_some()
    })?;
    let presented = auth::request_token(&headers, &state.config.cookie.name);
    let once = claims.single_use(state.tickets.leeway_s());
    let info = claims.info;
    let who = SignIn {
        user_id: claims.sub,
        role: claims.role,
        rooms: claims.rooms,
        once,
    };
    let current = presented.and_then(|p| p.hash);
    let signed = state
        .sessions
        .sign_in(current.as_ref(), who, &client)
        .await?;
    // The service closed the connections opened with the old token (close 4010).
    let s = &signed.session;
    if let Some(info) = info {
        // Stored before the answer carries the new token, so the connections it opens
        // carry the name. A failure costs the name, not the sign-in (the ticket is spent).
        if let Err(e) = state
            .sessions
            .put_server_data(&s.handle, crate::member_info::DATA_KEY, &info)
            .await
        {
            tracing::warn!(handle = %s.handle, error = %e, "member info from the ticket not stored");
        }
    }
    // A bearer-authenticated sign-in gets its new token back the same way.
    let bearer = req.bearer
        || (signed.presented_live && presented.is_some_and(|p| p.source == TokenSource::Bearer));
    let status = if signed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let cookie = session_cookie(&state, &signed.token, s);
    let mut view = session_view(&state, s);
    if bearer {
        view.token = Some(signed.token.as_str().to_owned());
    }
    Ok(respond(status, view, Some(cookie)))
}

/// `{"principal","key"}` of the local-copy key.
#[derive(Debug, Serialize, ToSchema)]
pub struct LocalKey {
    pub principal: String,
    /// Standard base64 of 32 bytes: HMAC-SHA256(server secret, "sessiond-local-key:" + principal).
    pub key: String,
}

/// The key the browser SDK encrypts its local draft copies with: stable per principal,
/// handed only to that principal's live sessions.
#[utoipa::path(get, path = "/v1/session/local-key", tag = "session",
    responses((status = 200, body = LocalKey), ReadErrors))]
pub async fn local_key(State(state): State<AppState>, a: Authed) -> Response {
    let principal = a.session.principal.to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&state.server_secret)
        .expect("HMAC takes any key length");
    mac.update(b"sessiond-local-key:");
    mac.update(principal.as_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Json(LocalKey { principal, key }).into_response()
}

/// A session-data key: 1..=128 of `[A-Za-z0-9._:-]`, not under the reserved `sessiond:`
/// prefix (where the server keeps admin room grants, which a client must not forge).
pub fn validate_data_key(key: &str) -> ApiResult<()> {
    if key.starts_with(sessiond_core::rooms::RESERVED_DATA_PREFIX) {
        return Err(ApiError::invalid(
            "data keys starting with \"sessiond:\" are reserved for the server",
        ));
    }
    let ok = !key.is_empty()
        && key.len() <= MAX_DATA_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "data key must be 1 to 128 characters of A-Z a-z 0-9 . _ : -",
        ))
    }
}

/// One session-data value (the raw JSON value).
#[utoipa::path(get, path = "/v1/session/data/{key}", tag = "session",
    params(("key" = String, Path, description = "1..=128 of [A-Za-z0-9._:-]")),
    responses((status = 200, description = "The stored JSON value (any JSON)", body = serde_json::Value),
              ReadErrors, InputErrors, NotFoundErrors))]
pub async fn get_data(
    State(state): State<AppState>,
    a: Authed,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<Response> {
    validate_data_key(&key)?;
    let v = state
        .sessions
        .get_data(&a.session.handle, &key)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(v).into_response())
}

/// Stores one JSON value (at most 64 KiB) under `key`; the last write wins.
#[utoipa::path(put, path = "/v1/session/data/{key}", tag = "session",
    params(("key" = String, Path, description = "1..=128 of [A-Za-z0-9._:-]")),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 204, description = "Stored"), WriteErrors, BodyErrors, RateLimitErrors))]
pub async fn put_data(
    State(state): State<AppState>,
    a: Authed,
    ApiPath(key): ApiPath<String>,
    ApiJson(value): ApiJson<serde_json::Value>,
) -> ApiResult<StatusCode> {
    validate_data_key(&key)?;
    state.sessions.put_data(&a.session, &key, &value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes one value.
#[utoipa::path(delete, path = "/v1/session/data/{key}", tag = "session",
    params(("key" = String, Path, description = "1..=128 of [A-Za-z0-9._:-]")),
    responses((status = 204, description = "Removed"), WriteErrors, NotFoundErrors, RateLimitErrors))]
pub async fn delete_data(
    State(state): State<AppState>,
    a: Authed,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<StatusCode> {
    validate_data_key(&key)?;
    state.sessions.delete_data(&a.session.handle, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_max_age_never_ends_before_the_deadline() {
        for remaining in [0, 1, 999, 1000, 1001, 4_999, 5_000, 43_200_000] {
            let max_age = persistent_max_age(remaining);
            assert!(
                max_age * 1000 >= remaining + COOKIE_GRACE_S * 1000,
                "{remaining}"
            );
            assert!(
                max_age * 1000 < remaining + COOKIE_GRACE_S * 1000 + 1000,
                "{remaining}"
            );
        }
        assert_eq!(persistent_max_age(-5_000), COOKIE_GRACE_S);
        // Saturates instead of overflowing.
        assert_eq!(
            persistent_max_age(i64::MAX),
            i64::MAX / 1000 + COOKIE_GRACE_S
        );
    }
}
