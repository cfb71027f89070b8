//! Forward-auth for reverse proxies (nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz`): 200 with the session's identity in headers, 401 without a live session,
//! 403 for a cross-site unsafe request. Every method is answered, since Envoy forwards
//! the original one.

use crate::auth;
use crate::client::client_seen;
use crate::error::{ApiError, ApiResult};
use crate::routes::problems::{ForbiddenErrors, InputErrors, ReadErrors};
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use std::net::SocketAddr;

/// The route's path.
pub const PATH: &str = "/v1/auth/verify";

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, any(verify))
}

/// Answers a request for [`PATH`] without the router: the front layer calls it for the
/// proxies' hot path, where routing (matching, the route's boxed services, a boxed
/// future per level) cost as much as the answer. It applies what the routed path gets
/// from its edge ([`super::edge::api`]): the route's name on the span (the front layer
/// times the answer under it), the refusal of a doubled session cookie,
/// `Cache-Control: no-store`. Every method is the route's (`any`), so no 405 is lost.
pub async fn direct(state: AppState, req: Request) -> Response {
    super::timing::name_span(&tracing::Span::current(), req.method(), PATH);
    let refused = super::edge::duplicate_cookie_refusal(req.headers(), &state.config.cookie.name);
    let mut res = match refused {
        Some(refusal) => refusal,
        None => verify(State(state), req).await.into_response(),
    };
    res.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Set by the proxy configuration, never read from the query string: a query parameter
/// rides along with the client's own URL (Envoy appends it), a header the proxy sets
/// replaces the client's copy.
const TOUCH: HeaderName = HeaderName::from_static("x-sessiond-touch");

/// Every identity header, always present (empty when the session has no such value), so
/// a proxy that copies them onto the upstream request overwrites whatever the client sent.
pub const IDENTITY_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-session-principal"),
    HeaderName::from_static("x-session-role"),
    HeaderName::from_static("x-session-handle"),
    HeaderName::from_static("x-session-user"),
];

/// The identity headers' values: taken under the cache's lock straight from the cached
/// record, with no copy of the session in between.
fn identity(s: &sessiond_core::Session) -> [HeaderValue; 4] {
    let value =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    [
        value(s.principal.as_str()),
        value(s.role.as_str()),
        value(s.handle.text().as_str()),
        match s.user_id.as_deref() {
            Some(u) => value(u),
            None => HeaderValue::from_static(""),
        },
    ]
}

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
    let client = client_seen(peer, headers, &state.trusted_proxies);
    let touch = touch(headers)?;
    let values =
        auth::authenticate_forwarded(&state, method, headers, &client, touch, identity).await?;
    let mut r = StatusCode::OK.into_response();
    // Room for the identity headers and the ones the edge adds, allocated once.
    let h = r.headers_mut();
    h.reserve(IDENTITY_HEADERS.len() + 4);
    for (name, v) in IDENTITY_HEADERS.into_iter().zip(values) {
        h.insert(name, v);
    }
    Ok(r)
}
