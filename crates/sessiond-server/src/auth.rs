//! Request authentication: the session token from `Authorization: Bearer` or the cookie,
//! the cross-origin check for cookie-authenticated writes (own routes and forward-auth),
//! and the admin API key.

use crate::error::ApiError;
use crate::origin;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use sessiond_core::{Session, Token, TokenHash};
use subtle::ConstantTimeEq;

/// Where the token came from; cookies need CSRF protection, bearer tokens do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Bearer,
    Cookie,
}

/// A session token presented by a request, parsed once here at the edge: only its hash
/// travels on, so the clear token is never copied or held past this point.
#[derive(Clone, Copy)]
pub struct PresentedToken {
    /// `None` when the value is not a token at all (it can never name a session).
    pub hash: Option<TokenHash>,
    pub source: TokenSource,
}

impl PresentedToken {
    pub fn parse(raw: &str, source: TokenSource) -> Self {
        PresentedToken {
            hash: Token::parse(raw).map(|t| t.hash()),
            source,
        }
    }
}

/// The token the request presents, if any: `Authorization: Bearer`, then the cookie.
pub fn request_token(headers: &HeaderMap, cookie_name: &str) -> Option<PresentedToken> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(PresentedToken::parse(t.trim(), TokenSource::Bearer));
        }
    }
    cookie_value(headers, cookie_name).map(|t| PresentedToken::parse(&t, TokenSource::Cookie))
}

/// The value of cookie `name`. A request carrying it twice never gets here: the edge
/// refuses it ([`crate::routes::edge::single_session_cookie`]).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// Refuses state-changing cookie-authenticated requests from another origin (the rule is
/// [`crate::origin::allowed`]).
pub fn check_origin(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !origin::is_unsafe(method) {
        return Ok(());
    }
    origin_allowed(state, headers)
}

/// Whether the request comes from this server's own origin (scheme, `Host`, port) or an
/// allowed one; anything unreadable is refused.
pub fn origin_allowed(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let own = origin::own_origin(
        headers,
        origin::default_scheme(state.config.cookie_secure()),
    );
    if origin::allowed(headers, own.as_ref(), &state.config.allowed_origins) {
        Ok(())
    } else {
        Err(ApiError::ForbiddenOrigin)
    }
}

/// Forward-auth: the live session behind a request a reverse proxy asks about. A
/// cookie-authenticated request whose original method is unsafe must come from the
/// proxied application's own origin (from `X-Forwarded-Proto`/`X-Forwarded-Host`) or an
/// allowed one: the CSRF protection of the app behind the proxy.
pub async fn authenticate_forwarded(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    touch: bool,
) -> Result<Authed, ApiError> {
    let presented =
        request_token(headers, &state.config.cookie.name).ok_or(ApiError::Unauthenticated)?;
    if presented.source == TokenSource::Cookie && origin::forwarded_unsafe(method, headers) {
        let app = origin::forwarded_origin(
            headers,
            origin::default_scheme(state.config.cookie_secure()),
        );
        if !origin::allowed(headers, app.as_ref(), &state.config.allowed_origins) {
            return Err(ApiError::ForbiddenOrigin);
        }
    }
    let hash = presented.hash.ok_or(ApiError::Unauthenticated)?;
    let session = state.sessions.authenticate(&hash, touch).await?;
    Ok(Authed {
        session,
        source: presented.source,
    })
}

/// A live session (validated, not touched). Use [`crate::sessions::SessionService`] to
/// record activity where a request counts as such.
pub struct Authed {
    pub session: Session,
    pub source: TokenSource,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.method, &parts.headers, false).await
    }
}

/// The live session of a request, recording activity if `touch` (one cache lookup, so
/// the hot path does not validate twice). Cookie-authenticated writes must pass the
/// origin check first.
pub async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    touch: bool,
) -> Result<Authed, ApiError> {
    let presented =
        request_token(headers, &state.config.cookie.name).ok_or(ApiError::Unauthenticated)?;
    if presented.source == TokenSource::Cookie {
        check_origin(state, method, headers)?;
    }
    let hash = presented.hash.ok_or(ApiError::Unauthenticated)?;
    let session = state.sessions.authenticate(&hash, touch).await?;
    Ok(Authed {
        session,
        source: presented.source,
    })
}

/// A caller holding one of the configured API keys.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Forbidden("an API key is required".into()))?;
        let mut ok = false;
        for k in &state.config.api_keys {
            // Constant time per key; every key is compared so timing does not say which.
            ok |= bool::from(k.as_bytes().ct_eq(key.as_bytes()));
        }
        if ok {
            Ok(Admin)
        } else {
            Err(ApiError::Forbidden("invalid API key".into()))
        }
    }
}
