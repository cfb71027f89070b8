//! Forward-auth for reverse proxies (nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz`): 200 with the session's identity in headers, or a 401 problem.

use crate::auth;
use crate::error::ApiResult;
use crate::routes::extract::ApiQuery;
use crate::routes::problems::{InputErrors, ReadErrors};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use utoipa::IntoParams;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/auth/verify", get(verify))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// `false`: check only, without counting the request as user activity.
    touch: Option<bool>,
}

/// Checks the request's session (cookie or bearer token). The proxied request counts as
/// activity unless `?touch=false`.
#[utoipa::path(get, path = "/v1/auth/verify", tag = "forward-auth", params(VerifyQuery),
    responses(
        (status = 200, description = "Live session",
         headers(("X-Session-Principal" = String), ("X-Session-Role" = String), ("X-Session-Handle" = String))),
        ReadErrors, InputErrors,
    ))]
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> ApiResult<Response> {
    let touch = q.touch.unwrap_or(true);
    // A GET: the origin check (writes only) does not apply; the proxy guards the method.
    let a = auth::authenticate(&state, &Method::GET, &headers, touch).await?;
    let s = &a.session;
    let mut r = StatusCode::OK.into_response();
    let h = r.headers_mut();
    let value =
        |v: &str| HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    h.insert("x-session-principal", value(s.principal.as_str()));
    h.insert("x-session-role", value(&s.role));
    h.insert("x-session-handle", value(&s.handle.to_string()));
    if let Some(u) = &s.user_id {
        h.insert("x-session-user", value(u));
    }
    Ok(r)
}
