//! Forward-auth for reverse proxies (nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz`): 200 with the session's identity in headers, 401 without a live session,
//! 403 for a cross-site unsafe request. Every method is answered, since Envoy forwards
//! the original one.

use crate::auth;
use crate::client::client_info;
use crate::error::{ApiError, ApiResult};
use crate::routes::problems::{ForbiddenErrors, InputErrors, ReadErrors};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use std::net::SocketAddr;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/auth/verify", any(verify))
}

/// Set by the proxy configuration, never read from the query string: a query parameter
/// rides along with the client's own URL (Envoy appends it), a header the proxy sets
/// replaces the client's copy.
const TOUCH: HeaderName = HeaderName::from_static("x-sessiond-touch");

/// Every identity header, always present (empty when the session has no such value), so
/// a proxy that copies them onto the upstream request overwrites whatever the client sent.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-session-principal",
    "x-session-role",
    "x-session-handle",
    "x-session-user",
];

/// `X-Sessiond-Touch`: absent, `1` or `true` counts the request as activity; `0` or
/// `false` only checks.
fn touch(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut all = headers.get_all(&TOUCH).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return if headers.contains_key(&TOUCH) {
            Err(ApiError::invalid("X-Sessiond-Touch must appear once"))
        } else {
            Ok(true)
        };
    };
    match v.to_str().map(str::trim) {
        Ok("1") | Ok("true") => Ok(true),
        Ok("0") | Ok("false") => Ok(false),
        _ => Err(ApiError::invalid(
            "X-Sessiond-Touch must be 1, 0, true or false",
        )),
    }
}

/// Checks the request's session (cookie or bearer token). The original method comes from
/// `X-Forwarded-Method` (nginx, Traefik) or is this request's own (Envoy); the proxied
/// app's origin from `X-Forwarded-Proto` and `X-Forwarded-Host` (else `Host`). A
/// cookie-authenticated unsafe request from another origin is refused (403
/// `forbidden_origin`). Counts as activity unless `X-Sessiond-Touch: 0`.
#[utoipa::path(method(get, head, post, put, patch, delete, options), path = "/v1/auth/verify",
    tag = "forward-auth",
    params(
        ("X-Sessiond-Touch" = Option<String>, Header,
         description = "`0`: check only, without counting the request as user activity (set by the proxy)"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "The original request's method"),
        ("X-Forwarded-Proto" = Option<String>, Header, description = "The original request's scheme"),
        ("X-Forwarded-Host" = Option<String>, Header, description = "The original request's Host"),
    ),
    responses(
        (status = 200, description = "Live session; every header is always present (empty when not applicable)",
         headers(("X-Session-Principal" = String), ("X-Session-Role" = String), ("X-Session-Handle" = String),
                 ("X-Session-User" = String, description = "The signed-in user id; empty for an anonymous session"))),
        ReadErrors, InputErrors, ForbiddenErrors,
    ))]
pub async fn verify(State(state): State<AppState>, req: Request) -> ApiResult<Response> {
    // The request itself rather than `HeaderMap` and `Method` extractors, which would
    // copy the headers on every call of the hot path.
    let (method, headers) = (req.method(), req.headers());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = client_info(peer, headers, &state.trusted_proxies);
    let touch = touch(headers)?;
    let a = auth::authenticate_forwarded(&state, method, headers, &client, touch).await?;
    let s = &a.session;
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    let value =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    let handle = s.handle.to_string();
    let values = [
        s.principal.as_str(),
        s.role.as_str(),
        handle.as_str(),
        s.user_id.as_deref().unwrap_or(""),
    ];
    for (name, v) in IDENTITY_HEADERS.into_iter().zip(values) {
        h.insert(name, value(v));
    }
    Ok(r)
}
