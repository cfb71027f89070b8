//! The rate-limit middleware: classifies a request ([`Scope::of`]), reads the client IP
//! (trusted-proxy aware) and the presented session credential, and answers 429
//! `rate_limited` before the handler when either is over its limit (the policy and the
//! limiters are in [`crate::ratelimit`]).

use crate::auth::request_token;
use crate::ratelimit::Scope;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The middleware: answers 429 before the handler when the request is over a limit.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.rate_limits;
    if !limits.enabled() {
        return next.run(req).await;
    }
    let Some(scope) = Scope::of(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = crate::client::client_ip(peer, req.headers(), &state.trusted_proxies);
    // The upgrade may carry its token in `Sec-WebSocket-Protocol` (browsers cannot set
    // `Authorization`): read it the way the upgrade does.
    let cookie = &state.config.cookie.name;
    let presented = if scope == Scope::Ws {
        crate::ws::ws_token(req.headers(), cookie)
    } else {
        request_token(req.headers(), cookie)
    }
    .and_then(|p| p.hash);
    if scope == Scope::Create {
        // Only a create that makes a session counts: a caller with a live session gets
        // that session back, which costs nothing durable.
        if let Some(h) = &presented {
            if state.sessions.authenticate(h, false).await.is_ok() {
                return next.run(req).await;
            }
        }
        if let Err(e) = limits.check(scope, ip, None) {
            return e.into_response();
        }
        return next.run(req).await;
    }
    if let Err(e) = limits.check(scope, ip, presented.as_ref()) {
        return e.into_response();
    }
    next.run(req).await
}
