//! Remote mode: sessiond runs as its own service and the app asks it over HTTP. A
//! lookup is `GET /v1/auth/verify` with the user's token (the forward-auth contract:
//! counts as activity unless turned off) and then `GET /v1/admin/sessions/{handle}` for
//! the deadlines; its answer is kept in a small cache, bounded in entries and in age, so
//! a burst of requests costs the server one lookup. Actions use the server's documented
//! API: the session routes with the user's token as a bearer token (renew, sign-out,
//! data), an admin-minted ticket for sign-in, and the admin API for revocation.

use crate::error::{Error, Missing};
use crate::info::SessionInfo;
use crate::token::Presented;
use axum::http::{HeaderMap, HeaderValue, Method};
use moka::sync::Cache;
use sessiond_core::{EndReason, TokenHash};
use std::sync::Arc;
use std::time::Duration;

/// Settings of [`crate::Sessiond::remote`]. Defaults suit a sessiond server reached over
/// a private network next to the app.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    base_url: String,
    api_key: String,
    /// `None`: the server's default for `cookie_secure` (see [`RemoteConfig::cookie_name`]).
    cookie_name: Option<String>,
    cookie_secure: bool,
    allowed_origins: Vec<String>,
    cache_ttl: Duration,
    cache_capacity: u64,
    timeout: Duration,
    touch: bool,
}

impl RemoteConfig {
    /// The server at `base_url` (e.g. `http://127.0.0.1:7400`, or with a path prefix
    /// when sessiond sits under one), and one of its `api_keys` (the admin API: session
    /// deadlines, sign-in tickets, revocation).
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        RemoteConfig {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key: api_key.into(),
            cookie_name: None,
            cookie_secure: true,
            allowed_origins: Vec::new(),
            cache_ttl: Duration::from_secs(1),
            cache_capacity: 10_000,
            timeout: Duration::from_secs(2),
            touch: true,
        }
    }

    /// The session cookie's name: the server's `cookie.name`. By default the server's
    /// own default: `__Host-sessiond` with a `Secure` cookie, `sessiond` without (dev
    /// mode); set it when the server sets `cookie.name` or `cookie.domain` (then
    /// `sessiond`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = Some(name.into());
        self
    }

    /// Whether the cookie this app sets after a sign-in is `Secure` (default `true`;
    /// `false` only for plain-HTTP development). It also decides the scheme of the app's
    /// own origin in the origin check.
    pub fn cookie_secure(mut self, secure: bool) -> Self {
        self.cookie_secure = secure;
        self
    }

    /// Other origins whose pages may send cookie-authenticated writes (the server's
    /// `allowed_origins` rule; default none: only the app's own origin).
    pub fn allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = origins;
        self
    }

    /// How long a lookup's answer is reused (default 1 s). A revocation or expiry
    /// elsewhere is seen at most this late; `Duration::ZERO` asks the server every time.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// At most this many sessions are cached (default 10 000).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// Each call to the server fails with [`Error::Unavailable`] after this long
    /// (default 2 s): an unreachable server is an error, never a hang.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether a lookup counts as user activity (default `true`; `false` sends
    /// `X-Sessiond-Touch: 0`). With the cache, at most one touch per session per TTL.
    pub fn touch(mut self, touch: bool) -> Self {
        self.touch = touch;
        self
    }
}

/// A cached lookup: the session, or the reason it ended (endings are final).
type Looked = Result<SessionInfo, EndReason>;

/// The client of one sessiond server.
pub(crate) struct Remote {
    config: RemoteConfig,
    http: reqwest::Client,
    /// Lookups by token hash (never the token itself), bounded in entries and age.
    cache: Option<Cache<TokenHash, Looked>>,
}

impl Remote {
    pub(crate) fn new(config: RemoteConfig) -> Result<Remote, Error> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(Error::Invalid(format!(
                "the sessiond base URL must start with http:// or https://, not {:?}",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        let cache = (!config.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(config.cache_capacity)
                .time_to_live(config.cache_ttl)
                .build()
        });
        Ok(Remote {
            config,
            http,
            cache,
        })
    }

    pub(crate) fn cookie_name(&self) -> &str {
        match &self.config.cookie_name {
            Some(name) => name,
            None if self.config.cookie_secure => "__Host-sessiond",
            None => "sessiond",
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url)
    }

    /// The live session of a request: the origin check for cookie-authenticated
    /// writes here, then the cache, then the server.
    pub(crate) async fn lookup(
        &self,
        parts: &axum::http::request::Parts,
        presented: &Presented,
    ) -> Result<SessionInfo, Error> {
        if presented.from_cookie {
            self.check_origin(&parts.method, &parts.headers)?;
        }
        let hash = presented.hash().ok_or(Error::NoSession(Missing::Unknown))?;
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(&hash)) {
            return hit.map_err(|reason| Error::Ended { reason });
        }
        let looked = self.ask(presented).await;
        let cacheable = match &looked {
            Ok(info) => Some(Ok(info.clone())),
            Err(Error::Ended { reason }) => Some(Err(*reason)),
            _ => None,
        };
        if let (Some(cache), Some(v)) = (&self.cache, cacheable) {
            cache.insert(hash, v);
        }
        looked
    }

    /// sessiond's origin rule (docs/protocol.md), with this app as the own origin.
    fn check_origin(&self, method: &Method, headers: &HeaderMap) -> Result<(), Error> {
        use sessiond_server::origin;
        if !origin::is_unsafe(method) {
            return Ok(());
        }
        let own = origin::own_origin(headers, origin::default_scheme(self.config.cookie_secure));
        if origin::allowed(headers, own.as_ref(), &self.config.allowed_origins) {
            Ok(())
        } else {
            Err(Error::ForbiddenOrigin)
        }
    }

    /// One uncached lookup: verify (the handle), then the admin view (the deadlines).
    async fn ask(&self, presented: &Presented) -> Result<SessionInfo, Error> {
        let r = self
            .http
            .get(self.url("/v1/auth/verify"))
            .bearer_auth(presented.as_str())
            .header(
                "x-sessiond-touch",
                if self.config.touch { "1" } else { "0" },
            )
            .send()
            .await
            .map_err(unreachable)?;
        if !r.status().is_success() {
            return Err(problem(r).await);
        }
        let handle = r
            .headers()
            .get("x-session-handle")
            .and_then(|v| v.to_str().ok())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Internal("verify answered without X-Session-Handle".into()))?
            .to_owned();
        let view = self.admin_session(&handle).await?;
        match view.get("reason").and_then(|r| r.as_str()) {
            // Ended between the two calls.
            Some(reason) => Err(Error::Ended {
                reason: EndReason::parse(reason).unwrap_or(EndReason::Revoked),
            }),
            None => SessionInfo::from_view(&view)
                .ok_or_else(|| Error::Internal("malformed session view".into())),
        }
    }

    async fn admin_session(&self, handle: &str) -> Result<serde_json::Value, Error> {
        let r = self
            .http
            .get(self.url(&format!("/v1/admin/sessions/{handle}")))
            .bearer_auth(&self.config.api_key)
            .send()
            .await
            .map_err(unreachable)?;
        json(r).await
    }

    /// Forgets the cached lookup of a token (after an action changed its session).
    fn forget(&self, presented: &Presented) {
        if let (Some(cache), Some(hash)) = (&self.cache, presented.hash()) {
            cache.invalidate(&hash);
        }
    }

    pub(crate) async fn renew(&self, presented: &Presented) -> Result<SessionInfo, Error> {
        let r = self
            .http
            .post(self.url("/v1/session/renew"))
            .bearer_auth(presented.as_str())
            .send()
            .await
            .map_err(unreachable)?;
        let view = json(r).await;
        self.forget(presented);
        SessionInfo::from_view(&view?)
            .ok_or_else(|| Error::Internal("malformed session view".into()))
    }

    pub(crate) async fn sign_out(&self, presented: &Presented) -> Result<HeaderValue, Error> {
        let r = self
            .http
            .delete(self.url("/v1/session"))
            .bearer_auth(presented.as_str())
            .send()
            .await
            .map_err(unreachable)?;
        self.forget(presented);
        if !r.status().is_success() {
            return Err(problem(r).await);
        }
        Ok(self.cookie("", Some(0)))
    }

    /// Mints a ticket through the admin API and signs in with it, rotating the token of
    /// the presented session (or making a new one). Returns the session, the new token
    /// and its cookie.
    pub(crate) async fn sign_in(
        &self,
        presented: Option<&Presented>,
        user_id: &str,
        role: &str,
    ) -> Result<(SessionInfo, String, HeaderValue), Error> {
        let r = self
            .http
            .post(self.url("/v1/admin/tickets"))
            .bearer_auth(&self.config.api_key)
            .json(&serde_json::json!({"user_id": user_id, "role": role}))
            .send()
            .await
            .map_err(unreachable)?;
        let ticket = match json(r).await {
            Ok(v) => v
                .get("ticket")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
                .ok_or_else(|| Error::Internal("ticket answer without a ticket".into()))?,
            Err(Error::Invalid(detail)) if detail.contains("hs256_secret") => {
                return Err(Error::Unsupported(
                    "remote sign-in needs tickets.hs256_secret on the sessiond server",
                ))
            }
            Err(e) => return Err(e),
        };
        let mut req = self
            .http
            .post(self.url("/v1/session/signin"))
            .json(&serde_json::json!({"ticket": ticket, "bearer": true}));
        if let Some(p) = presented {
            req = req.bearer_auth(p.as_str());
        }
        let view = json(req.send().await.map_err(unreachable)?).await;
        if let Some(p) = presented {
            self.forget(p);
        }
        let view = view?;
        let token = view
            .get("token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::Internal("sign-in answer without a token".into()))?
            .to_owned();
        let info = SessionInfo::from_view(&view)
            .ok_or_else(|| Error::Internal("malformed session view".into()))?;
        let cookie = self.cookie(&token, None);
        Ok((info, token, cookie))
    }

    pub(crate) async fn get_data(
        &self,
        presented: &Presented,
        key: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        let r = self
            .http
            .get(self.data_url(key)?)
            .bearer_auth(presented.as_str())
            .send()
            .await
            .map_err(unreachable)?;
        match json(r).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn put_data(
        &self,
        presented: &Presented,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), Error> {
        let r = self
            .http
            .put(self.data_url(key)?)
            .bearer_auth(presented.as_str())
            .json(value)
            .send()
            .await
            .map_err(unreachable)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(problem(r).await)
        }
    }

    pub(crate) async fn delete_data(
        &self,
        presented: &Presented,
        key: &str,
    ) -> Result<bool, Error> {
        let r = self
            .http
            .delete(self.data_url(key)?)
            .bearer_auth(presented.as_str())
            .send()
            .await
            .map_err(unreachable)?;
        if r.status().is_success() {
            return Ok(true);
        }
        match problem(r).await {
            Error::NotFound => Ok(false),
            e => Err(e),
        }
    }

    pub(crate) async fn revoke(&self, handle: &str) -> Result<(), Error> {
        if sessiond_core::Handle::parse(handle).is_none() {
            return Err(Error::NotFound);
        }
        let r = self
            .http
            .delete(self.url(&format!("/v1/admin/sessions/{handle}")))
            .bearer_auth(&self.config.api_key)
            .send()
            .await
            .map_err(unreachable)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(problem(r).await)
        }
    }

    /// A data key's URL; the key is checked here as the server would (it is a path
    /// segment, so nothing else may reach the URL).
    fn data_url(&self, key: &str) -> Result<String, Error> {
        sessiond_server::routes::session::validate_data_key(key)?;
        Ok(self.url(&format!("/v1/session/data/{key}")))
    }

    /// The session cookie as this app sets it: like the server's (HttpOnly, Lax, `/`).
    fn cookie(&self, value: &str, max_age: Option<i64>) -> HeaderValue {
        let mut v = format!(
            "{}={value}; HttpOnly; SameSite=Lax; Path=/",
            self.cookie_name()
        );
        if let Some(m) = max_age {
            v.push_str(&format!("; Max-Age={m}"));
        }
        if self.config.cookie_secure {
            v.push_str("; Secure");
        }
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A transport failure (refused, reset, timed out): the server cannot be reached.
fn unreachable(e: reqwest::Error) -> Error {
    Error::Unavailable(format!("sessiond server: {e}"))
}

/// The JSON body of a successful answer, or the error its problem names.
async fn json(r: reqwest::Response) -> Result<serde_json::Value, Error> {
    if !r.status().is_success() {
        return Err(problem(r).await);
    }
    r.json()
        .await
        .map_err(|e| Error::Internal(format!("malformed answer from sessiond: {e}")))
}

/// The error a sessiond problem+json answer stands for.
async fn problem(r: reqwest::Response) -> Error {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let field = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    match (status, field("code").as_str()) {
        (401, "session_expired") => Error::Ended {
            reason: EndReason::parse(&field("reason")).unwrap_or(EndReason::Revoked),
        },
        (401, "unauthenticated") => Error::NoSession(Missing::Unknown),
        (403, "forbidden_origin") => Error::ForbiddenOrigin,
        (400, _) | (401, "invalid_ticket") | (413, _) => Error::Invalid(field("detail")),
        (404, _) => Error::NotFound,
        (409, _) => Error::Conflict,
        (429, _) => Error::RateLimited { retry_after },
        (502..=504, _) => Error::Unavailable(format!("sessiond answered {status}")),
        (403, "forbidden") => Error::Internal("the sessiond server refused the API key".into()),
        (_, code) => Error::Internal(format!("sessiond answered {status} {code}")),
    }
}

/// The remote client, shared by every clone of [`crate::Sessiond`].
pub(crate) type Shared = Arc<Remote>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_follows_the_servers_defaults() {
        let secure = Remote::new(RemoteConfig::new("http://127.0.0.1:7400", "k")).unwrap();
        assert_eq!(secure.cookie_name(), "__Host-sessiond");
        let c = secure.cookie("t", None);
        assert_eq!(
            c.to_str().unwrap(),
            "__Host-sessiond=t; HttpOnly; SameSite=Lax; Path=/; Secure"
        );
        let dev = RemoteConfig::new("http://127.0.0.1:7400/", "k").cookie_secure(false);
        let dev = Remote::new(dev).unwrap();
        assert_eq!(dev.cookie_name(), "sessiond");
        assert_eq!(
            dev.url("/v1/auth/verify"),
            "http://127.0.0.1:7400/v1/auth/verify"
        );
        let named = RemoteConfig::new("https://s.example", "k").cookie_name("sid");
        assert_eq!(Remote::new(named).unwrap().cookie_name(), "sid");
    }
}
