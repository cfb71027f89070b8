//! # sessiond-axum
//!
//! Session lifecycle for axum apps, from [sessiond]: idle *and* absolute timeouts, a
//! warning before expiry, renewal, sign-in with token rotation, sign-out, revocation
//! and an audit trail, behind two extractors.
//!
//! - [`Session`]: the request's live session (handle, principal, user id, role,
//!   deadlines; session data; the actions renew, sign in, sign out). Without one the
//!   handler is not called and the client gets a 401 problem+json naming the reason:
//!   `absent`, `unknown`, `idle_timeout`, `absolute_timeout`, `signed_out`, `revoked`.
//! - [`MaybeSession`]: the session or why there is none (pages for anonymous visitors,
//!   sign-in handlers).
//!
//! Both work with any router state: they find sessiond through [`SessiondLayer`], which
//! also writes the cookie a sign-in or sign-out sets. [`Sessiond`] itself can live in
//! the app's state (`FromRef`) for operator actions such as [`Sessiond::revoke`].
//!
//! ## Two modes, one API
//!
//! **Embedded**: sessiond runs inside the app's process. Build it with
//! [`sessiond_server::ServerBuilder`]; the [`ServerGuard`](sessiond_server::ServerGuard)
//! it returns owns the expiry scheduler, the activity flusher and the purgers (keep it
//! alive as long as the app serves; [`ServerGuard::shutdown`](sessiond_server::ServerGuard::shutdown)
//! flushes pending activity). Nest sessiond's own HTTP and WebSocket API under any path
//! so the browser SDK and the admin API work unchanged: point the SDK's `baseUrl` at
//! that path, as an absolute URL (`new Sessiond({ baseUrl: location.origin +
//! "/sessiond" })`: the SDK derives its WebSocket URL, `ws(s)://…/sessiond/v1/ws`, from
//! it). The nested API serves the SDK itself at `/sessiond/sdk/sessiond.js`, the admin
//! API at `/sessiond/v1/admin/…`. The cookie has `Path=/`, so the app's own routes see
//! it. Serve the app with `ConnectInfo<SocketAddr>` so the audit trail and the rate
//! limits know the client's address.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use sessiond_axum::{Session, Sessiond};
//! use sessiond_server::{config::Config, ServerBuilder};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml("store = \"sqlite\"\ndata_dir = \"./data\"")?;
//! let server = ServerBuilder::new(config).build().await?;
//! let sessiond = Sessiond::embedded(&server);
//! let (api, guard) = server.into_parts();
//! let app = Router::new()
//!     .route("/me", get(|s: Session| async move { s.principal.clone() }))
//!     .nest_service("/sessiond", api)
//!     .layer(sessiond.layer());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(
//!     listener,
//!     app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
//! )
//! .await?;
//! guard.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! **Remote**: sessiond runs as a service next to the app, which asks it over HTTP
//! (`/v1/auth/verify`, then the admin API for the deadlines) and keeps each answer in a
//! small cache (1 s, 10 000 sessions by default; see [`RemoteConfig`]). Actions use the
//! server's documented API: renew, sign-out and session data with the user's token,
//! sign-in with a ticket minted through the admin API (the server needs
//! `tickets.hs256_secret`, else [`Error::Unsupported`]), revocation through the admin
//! API. Every call is bounded by a timeout: an unreachable server is
//! [`Error::Unavailable`] (503), never a hang.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use sessiond_axum::{RemoteConfig, Session, Sessiond};
//!
//! # fn app() -> Result<Router, sessiond_axum::Error> {
//! let sessiond = Sessiond::remote(RemoteConfig::new("http://127.0.0.1:7400", "api-key"))?;
//! Ok(Router::new()
//!     .route("/me", get(|s: Session| async move { s.principal.clone() }))
//!     .layer(sessiond.layer()))
//! # }
//! ```
//!
//! ## Actions
//!
//! ```
//! use axum::Json;
//! use sessiond_axum::{Error, MaybeSession, Session};
//!
//! /// The app checked the password; sessiond rotates the token and sets the cookie.
//! async fn login(maybe: MaybeSession) -> Result<String, Error> {
//!     Ok(maybe.sign_in("alice", "editor").await?.info.principal)
//! }
//!
//! /// "Stay signed in" from an expiry warning.
//! async fn stay(mut s: Session) -> Result<String, Error> {
//!     let info = s.renew().await?;
//!     Ok(format!("{:?}", info.idle_expires_at))
//! }
//!
//! async fn theme(s: Session, Json(theme): Json<String>) -> Result<(), Error> {
//!     s.set_data("theme", &theme).await
//! }
//!
//! async fn logout(s: Session) -> Result<(), Error> {
//!     s.sign_out().await
//! }
//! # let _: axum::Router = axum::Router::new()
//! #     .route("/login", axum::routing::post(login))
//! #     .route("/stay", axum::routing::post(stay))
//! #     .route("/theme", axum::routing::put(theme))
//! #     .route("/logout", axum::routing::post(logout));
//! ```
//!
//! ## Errors
//!
//! [`Error`] is one enum for everything; it renders as sessiond's problem+json (401 with
//! the reason for a missing or ended session, 503 `store_unavailable` when the store or
//! the server cannot be reached). Cookie-authenticated writes (`POST`, `PUT`, `DELETE`,
//! …) must come from the app's own origin or an allowed one, as on sessiond itself (403
//! `forbidden_origin`).
//!
//! [sessiond]: https://github.com/sessiond/sessiond

#![forbid(unsafe_code)]

mod embedded;
mod error;
mod extract;
mod info;
mod layer;
mod remote;
mod token;

pub use error::{Error, Missing};
pub use extract::{MaybeSession, Session, SignedIn};
pub use info::SessionInfo;
pub use layer::{SessiondLayer, SessiondService};
pub use remote::RemoteConfig;
pub use sessiond_core::EndReason;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;

/// A handle on sessiond, embedded or remote; cheap to clone.
///
/// Make one with [`Sessiond::embedded`] or [`Sessiond::remote`], install
/// [`Sessiond::layer`] on the router, and use the extractors in handlers. It may also
/// live in the app's state, where handlers extract it (`FromRef`) for operator actions.
#[derive(Clone)]
pub struct Sessiond {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Embedded(embedded::Embedded),
    Remote(remote::Shared),
}

/// Which mode a [`Sessiond`] runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In this process (a [`sessiond_server::Server`]).
    Embedded,
    /// Over HTTP, against a sessiond server.
    Remote,
}

impl Sessiond {
    /// Sessiond inside this process: the session service of `server` (built with
    /// [`sessiond_server::ServerBuilder`]). Keep the server's guard alive while serving
    /// (see the crate guide): it runs the expiry scheduler, flusher and purgers.
    pub fn embedded(server: &sessiond_server::Server) -> Sessiond {
        Sessiond {
            backend: Backend::Embedded(embedded::Embedded {
                state: server.state().clone(),
            }),
        }
    }

    /// Sessiond as a service, reached over HTTP. Fails only on a malformed base URL.
    pub fn remote(config: RemoteConfig) -> Result<Sessiond, Error> {
        Ok(Sessiond {
            backend: Backend::Remote(std::sync::Arc::new(remote::Remote::new(config)?)),
        })
    }

    /// The layer that gives the routes under it the extractors.
    pub fn layer(&self) -> SessiondLayer {
        SessiondLayer {
            sessiond: self.clone(),
        }
    }

    /// Embedded or remote.
    pub fn mode(&self) -> Mode {
        match self.backend {
            Backend::Embedded(_) => Mode::Embedded,
            Backend::Remote(_) => Mode::Remote,
        }
    }

    /// Ends the session `handle` names with `revoked` (an operator's action: a stolen
    /// laptop, a fired employee). Every open tab is told at once. [`Error::NotFound`]
    /// if no session has that handle; revoking an ended session changes nothing.
    ///
    /// ```
    /// use axum::extract::{Path, State};
    /// use sessiond_axum::{Error, Sessiond};
    ///
    /// async fn revoke(State(sessiond): State<Sessiond>, Path(h): Path<String>) -> Result<(), Error> {
    ///     sessiond.revoke(&h).await
    /// }
    /// # let _: axum::Router<Sessiond> = axum::Router::new()
    /// #     .route("/admin/sessions/{h}", axum::routing::delete(revoke));
    /// ```
    pub async fn revoke(&self, handle: &str) -> Result<(), Error> {
        match &self.backend {
            Backend::Embedded(e) => e.revoke(handle).await,
            Backend::Remote(r) => r.revoke(handle).await,
        }
    }

    fn cookie_name(&self) -> &str {
        match &self.backend {
            Backend::Embedded(e) => e.cookie_name(),
            Backend::Remote(r) => r.cookie_name(),
        }
    }
}

impl std::fmt::Debug for Sessiond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessiond")
            .field("mode", &self.mode())
            .finish()
    }
}

/// `Sessiond` straight from the app's state, whatever its type.
impl<S> FromRequestParts<S> for Sessiond
where
    Sessiond: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Sessiond::from_ref(state))
    }
}
