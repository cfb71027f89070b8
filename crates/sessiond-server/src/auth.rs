//! Request authentication: the session token from `Authorization: Bearer` or the cookie,
//! the cross-origin check for cookie-authenticated writes (own routes and forward-auth),
//! and the admin API key.

use crate::client::Seen;
use crate::config::KeyScope;
use crate::error::ApiError;
use crate::origin;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use sessiond_core::{Session, TokenHash};
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
            hash: TokenHash::of_presented(raw),
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
    cookie_str(headers, cookie_name).map(|t| PresentedToken::parse(t, TokenSource::Cookie))
}

/// The value of cookie `name`. A request carrying it twice never gets here: the edge
/// refuses it ([`crate::routes::edge::api`]).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie_str(headers, name).map(str::to_owned)
}

/// [`cookie_value`] borrowed from the headers.
pub fn cookie_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
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
pub async fn authenticate_forwarded<R>(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client: &Seen<'_>,
    touch: bool,
    view: impl Fn(&Session) -> R,
) -> Result<R, ApiError> {
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
    Ok(state
        .sessions
        .authenticate_view(&hash, touch, client, view)
        .await?)
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
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        let client = crate::client::client_seen(peer, &parts.headers, &state.trusted_proxies);
        authenticate(state, &parts.method, &parts.headers, &client, false).await
    }
}

/// The live session of a request, recording activity if `touch` (one cache lookup, so
/// the hot path does not validate twice) and where it came from (`client`: written
/// with the activity when it changed). Cookie-authenticated writes must pass the
/// origin check first.
pub async fn authenticate(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    client: &Seen<'_>,
    touch: bool,
) -> Result<Authed, ApiError> {
    let presented =
        request_token(headers, &state.config.cookie.name).ok_or(ApiError::Unauthenticated)?;
    if presented.source == TokenSource::Cookie {
        check_origin(state, method, headers)?;
    }
    let hash = presented.hash.ok_or(ApiError::Unauthenticated)?;
    let session = state
        .sessions
        .authenticate_from(&hash, touch, client)
        .await?;
    Ok(Authed {
        session,
        source: presented.source,
    })
}

/// The API key a request presents, matched against every configured key in constant
/// time (SHA-256 digests compared with `subtle`; every key is compared, so timing says
/// neither whether nor which one matched). Errors are 403 `forbidden`.
fn presented_key(parts: &Parts, state: &AppState) -> Result<(String, KeyScope), ApiError> {
    use sha2::{Digest, Sha256};
    let key = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Forbidden("an API key is required".into()))?;
    let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
    let mut found: Option<(String, KeyScope)> = None;
    for k in state.config.resolved_keys() {
        if bool::from(k.digest.ct_eq(&digest)) && found.is_none() {
            found = Some((k.id, k.scope));
        }
    }
    found.ok_or_else(|| ApiError::Forbidden("invalid API key".into()))
}

/// Refuses a key whose scope is not among `allowed`.
fn require(
    parts: &Parts,
    state: &AppState,
    allowed: &[KeyScope],
    what: &str,
) -> Result<(String, KeyScope), ApiError> {
    let (id, scope) = presented_key(parts, state)?;
    if allowed.contains(&scope) {
        Ok((id, scope))
    } else {
        Err(ApiError::Forbidden(format!(
            "this key's scope ({}) does not allow {what}",
            scope.as_str()
        )))
    }
}

/// A caller holding an `admin` key; `key` is its id (for the audit trail).
pub struct Admin {
    pub key: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (key, _) = require(parts, state, &[KeyScope::Admin], "changes")?;
        Ok(Admin { key })
    }
}

/// A caller holding an `admin` or `read` key: reading sessions, audit, rooms.
pub struct Reader {
    pub key: String,
    pub scope: KeyScope,
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (key, scope) = require(parts, state, &[KeyScope::Admin, KeyScope::Read], "reading")?;
        Ok(Reader { key, scope })
    }
}

/// A caller holding an `admin` or `tickets` key: minting sign-in tickets.
pub struct TicketMinter {
    pub key: String,
}

impl FromRequestParts<AppState> for TicketMinter {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (key, _) = require(
            parts,
            state,
            &[KeyScope::Admin, KeyScope::Tickets],
            "minting tickets",
        )?;
        Ok(TicketMinter { key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::edge::cookie_count;
    use axum::http::HeaderValue;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;
    use sessiond_core::Token;

    fn headers(cookies: &[String], authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append(header::COOKIE, v);
            }
        }
        if let Some(a) = authorization.and_then(|a| HeaderValue::from_str(a).ok()) {
            h.insert(header::AUTHORIZATION, a);
        }
        h
    }

    /// A cookie pair as browsers and attackers write them: the session cookie's name,
    /// with stray spaces, or another name.
    fn pair() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("sid".to_owned()),
            Just(" sid".to_owned()),
            Just("sid ".to_owned()),
            "[a-z]{1,4}",
        ];
        let value = prop_oneof![
            any::<[u8; 32]>().prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
            "[ -~]{0,50}",
        ];
        (name, value).prop_map(|(n, v)| format!("{n}={v}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_reader_picks_only_cookies_the_duplicate_guard_counts(
            cookies in proptest::collection::vec(
                proptest::collection::vec(pair(), 0..4).prop_map(|v| v.join("; ")),
                0..3,
            ),
            raw in "(?s).{0,80}",
        ) {
            let mut all = cookies.clone();
            all.push(raw);
            let h = headers(&all, None);
            let count = cookie_count(&h, "sid");
            match cookie_value(&h, "sid") {
                Some(v) => {
                    prop_assert!(count >= 1);
                    let t = request_token(&h, "sid").expect("a cookie is presented");
                    prop_assert_eq!(t.source, TokenSource::Cookie);
                    prop_assert_eq!(t.hash, Token::parse(&v).map(|t| t.hash()));
                }
                None => prop_assert!(request_token(&h, "sid").is_none()),
            }
        }

        #[test]
        fn a_bearer_header_wins_and_is_a_token_only_in_canonical_form(
            // 33 bytes is the current shape, 32 the legacy one: both are tokens.
            bytes in proptest::collection::vec(any::<u8>(), 32..=33),
            garbage in "[ -~]{0,60}",
            prefix in prop_oneof![Just("Bearer "), Just("bearer ")],
        ) {
            let token = URL_SAFE_NO_PAD.encode(bytes);
            let cookie = [format!("sid={token}")];
            let h = headers(&cookie, Some(&format!("{prefix}{token}")));
            let t = request_token(&h, "sid").unwrap();
            prop_assert_eq!(t.source, TokenSource::Bearer);
            prop_assert_eq!(t.hash, Token::parse(&token).map(|t| t.hash()));
            prop_assert!(t.hash.is_some());
            let h = headers(&[], Some(&format!("Bearer {garbage}")));
            let t = request_token(&h, "sid").unwrap();
            let canonical = URL_SAFE_NO_PAD
                .decode(garbage.trim())
                .is_ok_and(|b| b.len() == 32 || b.len() == 33);
            prop_assert_eq!(t.hash.is_some(), canonical);
        }
    }

    #[test]
    fn a_cookie_is_found_among_others_and_never_by_prefix() {
        let token = Token::generate();
        let t = token.as_str();
        let h = headers(&[format!("a=1; sid={t}; b=2")], None);
        assert_eq!(cookie_value(&h, "sid").as_deref(), Some(t));
        let h = headers(&[format!("sidx={t}; xsid={t}")], None);
        assert_eq!(cookie_value(&h, "sid"), None);
        assert!(request_token(&h, "sid").is_none());
        // A value that is not a token is presented but names no session.
        let h = headers(&["sid=nope".to_owned()], None);
        let p = request_token(&h, "sid").unwrap();
        assert!(p.hash.is_none() && p.source == TokenSource::Cookie);
    }
}
