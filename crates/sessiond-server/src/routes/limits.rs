//! The rate-limit middleware: classifies a request ([`Scope::of`]), reads the client IP
//! (trusted-proxy aware) and the presented session credential, and answers 429
//! `rate_limited` before the handler when either is over its limit (the policy and the
//! limiters are in [`crate::ratelimit`]).

use crate::auth::request_token;
use crate::ratelimit::Scope;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use sessiond_core::TokenHash;
use std::net::{IpAddr, SocketAddr};

/// What a request asks of the rate limits: its scope, client IP and credential (read
/// before any await, so the request itself is not held across one).
pub struct Ask {
    scope: Scope,
    ip: Option<IpAddr>,
    presented: Option<TokenHash>,
}

impl Ask {
    /// `None` when limits are off or the request is in no limited scope.
    pub fn of(state: &AppState, req: &Request) -> Option<Ask> {
        if !state.rate_limits.enabled() {
            return None;
        }
        let scope = Scope::of(req.method(), req.uri().path())?;
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let ip = crate::client::client_ip(peer, req.headers(), &state.trusted_proxies);
        // The upgrade may carry its token in `Sec-WebSocket-Protocol` (browsers cannot
        // set `Authorization`): read it the way the upgrade does.
        let cookie = &state.config.cookie.name;
        let presented = if scope == Scope::Ws {
            crate::ws::ws_token(req.headers(), cookie)
        } else {
            request_token(req.headers(), cookie)
        }
        .and_then(|p| p.hash);
        Some(Ask {
            scope,
            ip,
            presented,
        })
    }

    /// The 429 to answer before the handler when the request is over a limit.
    pub async fn check(self, state: &AppState) -> Result<(), Response> {
        let limits = &state.rate_limits;
        if self.scope == Scope::Create {
            // Only a create that makes a session counts: a caller with a live session
            // gets that session back, which costs nothing durable.
            if let Some(h) = &self.presented {
                if state.sessions.authenticate(h, false).await.is_ok() {
                    return Ok(());
                }
            }
            return limits
                .check(self.scope, self.ip, None)
                .map_err(|e| e.into_response());
        }
        limits
            .check(self.scope, self.ip, self.presented.as_ref())
            .map_err(|e| e.into_response())
    }
}
