//! Embedded mode: sessiond's session service runs in the app's process. Lookups and
//! actions are calls on the server's [`SessionService`](sessiond_server::sessions::SessionService)
//! (the same cache, scheduler and flusher its own routes use), and cookies are the ones
//! the server's own routes set.

use crate::error::{Error, Missing};
use crate::info::SessionInfo;
use crate::token::Presented;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use sessiond_core::lifecycle::ClientInfo;
use sessiond_core::{Handle, Token};
use sessiond_server::sessions::{Credential, SignIn, TicketUse};
use sessiond_server::state::AppState;

/// How long the one-time key of an embedded sign-in is remembered: a sign-in is decided
/// within one call, so the key only has to outlive that call.
const SIGN_IN_ONCE_MS: i64 = 60_000;

/// The embedded server's shared state.
#[derive(Clone)]
pub(crate) struct Embedded {
    pub(crate) state: AppState,
}

impl Embedded {
    pub(crate) fn cookie_name(&self) -> &str {
        &self.state.config.cookie.name
    }

    /// The live session of a request (activity recorded), under the server's origin
    /// rule for cookie-authenticated writes.
    pub(crate) async fn lookup(
        &self,
        parts: &Parts,
        presented: &Presented,
    ) -> Result<(SessionInfo, Credential), Error> {
        if presented.from_cookie {
            sessiond_server::auth::check_origin(&self.state, &parts.method, &parts.headers)?;
        }
        let hash = presented.hash().ok_or(Error::NoSession(Missing::Unknown))?;
        let s = self.state.sessions.authenticate(&hash, true).await?;
        Ok((SessionInfo::of(&s), Credential::of(&s)))
    }

    pub(crate) async fn renew(&self, who: &Credential) -> Result<SessionInfo, Error> {
        let s = self.state.sessions.renew(who).await?;
        Ok(SessionInfo::of(&s))
    }

    pub(crate) async fn sign_out(&self, who: &Credential) -> Result<HeaderValue, Error> {
        // The caller must still hold the current token: a request whose token was
        // rotated away since it authenticated does not end the new holder's session.
        self.state.sessions.current(who).await?;
        self.state.sessions.sign_out(&who.handle).await?;
        Ok(sessiond_server::routes::session::clear_cookie(&self.state))
    }

    /// Signs in as `user_id` with `role`, rotating the token of the presented session
    /// (or making a new one); returns the session, its new token and its cookie.
    pub(crate) async fn sign_in(
        &self,
        presented: Option<&Presented>,
        user_id: &str,
        role: &str,
        client: ClientInfo,
    ) -> Result<(SessionInfo, Token, HeaderValue), Error> {
        sessiond_server::tickets::validate_user_id(user_id).map_err(Error::Invalid)?;
        if self.state.sessions.policies().get(role).is_none() {
            return Err(Error::Invalid(format!("role {role:?} is not configured")));
        }
        let now = self.state.clock.now();
        // The app itself vouches for the user, so there is no ticket; the service still
        // wants a one-time key, and a fresh random one can never collide.
        let once = TicketUse {
            key: format!("sessiond-axum:{}", sessiond_core::token::random_id(16)),
            until: now.saturating_add(SIGN_IN_ONCE_MS),
        };
        let who = SignIn {
            user_id: user_id.to_owned(),
            role: role.to_owned(),
            rooms: None,
            once,
        };
        let current = presented.and_then(Presented::hash);
        let signed = self
            .state
            .sessions
            .sign_in(current.as_ref(), who, &client)
            .await?;
        let cookie = sessiond_server::routes::session::session_cookie(
            &self.state,
            &signed.token,
            &signed.session,
        );
        Ok((SessionInfo::of(&signed.session), signed.token, cookie))
    }

    pub(crate) async fn get_data(
        &self,
        who: &Credential,
        key: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        sessiond_server::routes::session::validate_data_key(key)?;
        self.state.sessions.current(who).await?;
        Ok(self.state.sessions.get_data(&who.handle, key).await?)
    }

    pub(crate) async fn put_data(
        &self,
        who: &Credential,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), Error> {
        sessiond_server::routes::session::validate_data_key(key)?;
        let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(0);
        if size > sessiond_server::routes::session::MAX_DATA_VALUE {
            return Err(Error::Invalid(format!(
                "a data value is at most {} bytes",
                sessiond_server::routes::session::MAX_DATA_VALUE
            )));
        }
        let session = self.state.sessions.current(who).await?;
        Ok(self.state.sessions.put_data(&session, key, value).await?)
    }

    pub(crate) async fn delete_data(&self, who: &Credential, key: &str) -> Result<bool, Error> {
        sessiond_server::routes::session::validate_data_key(key)?;
        self.state.sessions.current(who).await?;
        match self.state.sessions.delete_data(&who.handle, key).await {
            Ok(()) => Ok(true),
            Err(sessiond_server::sessions::SessionError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn revoke(&self, handle: &str) -> Result<(), Error> {
        let handle = Handle::parse(handle).ok_or(Error::NotFound)?;
        Ok(self.state.sessions.revoke(&handle).await?)
    }
}

/// The caller as the audit trail records it: peer address (when the app serves with
/// `ConnectInfo`, after the server's trusted proxies) and user agent.
pub(crate) fn client_info(state: &AppState, parts: &Parts) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    sessiond_server::client::client_info(peer, &parts.headers, &state.trusted_proxies)
}
