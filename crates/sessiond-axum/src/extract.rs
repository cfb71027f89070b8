//! The extractors: [`Session`] (a live session, else a 401 problem with the reason) and
//! [`MaybeSession`] (a live session or why there is none), and the actions a handler
//! takes on them: renew, sign in, sign out, session data. Both modes answer the same.

use crate::error::{Error, Missing};
use crate::info::SessionInfo;
use crate::layer::RequestContext;
use crate::token::Presented;
use crate::Backend;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sessiond_core::lifecycle::ClientInfo;
use sessiond_server::sessions::Credential;

/// A live session: the request's cookie or bearer token names one that has not ended.
///
/// Extracting it counts the request as user activity (the idle deadline moves; writes
/// are coalesced by sessiond). Without a session the handler is not called and the
/// answer is 401 problem+json: `unauthenticated` with `reason` `absent` or `unknown`,
/// or `session_expired` with the ending's `reason`. A store outage is 503
/// `store_unavailable` (see [`Error`]).
///
/// It dereferences to [`SessionInfo`]:
///
/// ```
/// use sessiond_axum::Session;
///
/// async fn whoami(session: Session) -> String {
///     format!("{} ({}) as {}", session.principal, session.handle, session.role)
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(whoami);
/// ```
#[derive(Clone)]
pub struct Session {
    info: SessionInfo,
    request: Request,
    /// Embedded mode: the credential the service checks each action against.
    credential: Option<Credential>,
    presented: Presented,
}

/// What an action needs of its request, whether or not it has a session.
#[derive(Clone)]
struct Request {
    ctx: RequestContext,
    /// Embedded mode: who is calling, for the audit trail of a sign-in.
    client: ClientInfo,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("info", &self.info).finish()
    }
}

impl std::ops::Deref for Session {
    type Target = SessionInfo;
    fn deref(&self) -> &SessionInfo {
        &self.info
    }
}

/// A successful sign-in: the session and its new token.
///
/// The token is already in the response's `Set-Cookie`; hand it to a client that
/// authenticates with `Authorization: Bearer` instead. Never log it (`Debug` hides it).
#[derive(Clone)]
#[non_exhaustive]
pub struct SignedIn {
    /// The signed-in session (the same handle when a live session was kept).
    pub info: SessionInfo,
    /// The new session token; the previous one no longer works.
    pub token: String,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("info", &self.info)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Session {
    /// The session's fields (also reachable through `Deref`).
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// "Stay signed in": restarts the idle deadline (never past the absolute one) and
    /// tells every open tab of the session (`renewed`). Returns the new deadlines.
    pub async fn renew(&mut self) -> Result<&SessionInfo, Error> {
        self.info = match &self.request.ctx.0.sessiond.backend {
            Backend::Embedded(e) => e.renew(self.credential()?).await?,
            Backend::Remote(r) => r.renew(&self.presented).await?,
        };
        Ok(&self.info)
    }

    /// Signs `user_id` in with `role` (a configured role), rotating the token: the
    /// session is kept (same handle and data) when it is anonymous or already this
    /// user's; another user's session is signed out and a new one made. The response
    /// carries the new cookie; the old token stops working at once (open WebSockets of
    /// the session reconnect with the new one).
    pub async fn sign_in(&self, user_id: &str, role: &str) -> Result<SignedIn, Error> {
        self.request
            .sign_in(Some(&self.presented), user_id, role)
            .await
    }

    /// Signs out: the session ends with `signed_out` (audited; every tab is told) and the
    /// response clears the cookie.
    pub async fn sign_out(self) -> Result<(), Error> {
        let cookie = match &self.request.ctx.0.sessiond.backend {
            Backend::Embedded(e) => e.sign_out(self.credential()?).await?,
            Backend::Remote(r) => r.sign_out(&self.presented).await?,
        };
        self.request.ctx.set_cookie(cookie);
        Ok(())
    }

    /// The session-data value under `key` (`None` if absent). Keys are 1 to 128 of
    /// `A-Z a-z 0-9 . _ : -`, not starting with `sessiond:`.
    pub async fn data<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let v = match &self.request.ctx.0.sessiond.backend {
            Backend::Embedded(e) => e.get_data(self.credential()?, key).await?,
            Backend::Remote(r) => r.get_data(&self.presented, key).await?,
        };
        v.map(|v| {
            serde_json::from_value(v)
                .map_err(|e| Error::Invalid(format!("session data {key:?} has another shape: {e}")))
        })
        .transpose()
    }

    /// Stores `value` (at most 64 KiB of JSON) under `key`; the last write wins.
    pub async fn set_data<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let v = serde_json::to_value(value)
            .map_err(|e| Error::Invalid(format!("session data is not JSON: {e}")))?;
        match &self.request.ctx.0.sessiond.backend {
            Backend::Embedded(e) => e.put_data(self.credential()?, key, &v).await,
            Backend::Remote(r) => r.put_data(&self.presented, key, &v).await,
        }
    }

    /// Removes the value under `key`; `false` if there was none.
    pub async fn remove_data(&self, key: &str) -> Result<bool, Error> {
        match &self.request.ctx.0.sessiond.backend {
            Backend::Embedded(e) => e.delete_data(self.credential()?, key).await,
            Backend::Remote(r) => r.delete_data(&self.presented, key).await,
        }
    }

    fn credential(&self) -> Result<&Credential, Error> {
        self.credential
            .as_ref()
            .ok_or_else(|| Error::Internal("embedded session without a credential".into()))
    }
}

impl Request {
    async fn sign_in(
        &self,
        presented: Option<&Presented>,
        user_id: &str,
        role: &str,
    ) -> Result<SignedIn, Error> {
        let (info, token, cookie) = match &self.ctx.0.sessiond.backend {
            Backend::Embedded(e) => {
                let (info, token, cookie) = e
                    .sign_in(presented, user_id, role, self.client.clone())
                    .await?;
                (info, token.as_str().to_owned(), cookie)
            }
            Backend::Remote(r) => r.sign_in(presented, user_id, role).await?,
        };
        self.ctx.set_cookie(cookie);
        Ok(SignedIn { info, token })
    }
}

/// A live session, or why there is none: for pages that serve anonymous visitors too
/// and for sign-in handlers.
///
/// Rejected only when sessiond cannot answer (503 on a store outage) or for a
/// cookie-authenticated write from another origin (403); an absent, unknown or ended
/// session is `None` with its reason.
///
/// ```
/// use sessiond_axum::{MaybeSession, SignedIn};
///
/// async fn login(maybe: MaybeSession) -> Result<String, sessiond_axum::Error> {
///     // The app checked the password; sessiond makes (or keeps) the session.
///     let SignedIn { info, .. } = maybe.sign_in("alice", "editor").await?;
///     Ok(format!("signed in as {}", info.principal))
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::post(login);
/// ```
pub struct MaybeSession {
    session: Option<Session>,
    why_none: Option<Error>,
    request: Request,
    presented: Option<Presented>,
}

impl std::fmt::Debug for MaybeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaybeSession")
            .field("session", &self.session)
            .field("why_none", &self.why_none)
            .finish()
    }
}

impl MaybeSession {
    /// The live session, if any.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The live session, if any, by value (to call [`Session::sign_out`]).
    pub fn into_session(self) -> Option<Session> {
        self.session
    }

    /// Why there is no session: [`Error::NoSession`] (`absent`, `unknown`) or
    /// [`Error::Ended`] with its reason. `None` when there is one.
    pub fn why_none(&self) -> Option<&Error> {
        self.why_none.as_ref()
    }

    /// Signs `user_id` in with `role`, like [`Session::sign_in`]; without a live session
    /// (none, or an ended one) a new signed-in session is made.
    pub async fn sign_in(&self, user_id: &str, role: &str) -> Result<SignedIn, Error> {
        self.request
            .sign_in(self.presented.as_ref(), user_id, role)
            .await
    }
}

/// Looks the request's session up: the session, or why there is none (`Err` only for
/// what must reject the request whatever the extractor).
async fn resolve(parts: &Parts) -> Result<MaybeSession, Error> {
    let ctx = parts
        .extensions
        .get::<RequestContext>()
        .cloned()
        .ok_or(Error::MissingLayer)?;
    let sessiond = ctx.0.sessiond.clone();
    let client = match &sessiond.backend {
        Backend::Embedded(e) => crate::embedded::client_info(&e.state, parts),
        Backend::Remote(_) => ClientInfo::default(),
    };
    let request = Request { ctx, client };
    let presented = Presented::of(&parts.headers, sessiond.cookie_name());
    let looked = match &presented {
        None => Err(Error::NoSession(Missing::Absent)),
        Some(p) => match &sessiond.backend {
            Backend::Embedded(e) => e
                .lookup(parts, p)
                .await
                .map(|(info, cred)| (info, Some(cred))),
            Backend::Remote(r) => r.lookup(parts, p).await.map(|info| (info, None)),
        },
    };
    match looked {
        Ok((info, credential)) => Ok(MaybeSession {
            session: Some(Session {
                info,
                request: request.clone(),
                credential,
                presented: presented.clone().expect("a session came from a token"),
            }),
            why_none: None,
            request,
            presented,
        }),
        Err(e @ (Error::NoSession(_) | Error::Ended { .. })) => Ok(MaybeSession {
            session: None,
            why_none: Some(e),
            request,
            presented,
        }),
        Err(e) => Err(e),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let m = resolve(parts).await?;
        match (m.session, m.why_none) {
            (Some(s), _) => Ok(s),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::NoSession(Missing::Absent)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        resolve(parts).await
    }
}
