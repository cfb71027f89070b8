//! The cross-cutting checks in front of routing, in one layer: the in-flight bound, the
//! listener split, the request timer, CORS, the rate limits and the body idle timer.
//!
//! One `from_fn` rather than one each: every `from_fn` layer boxes the service it calls
//! and the future it returns on each request, and on the hot path (a verify answered
//! from the cache) those allocations and the nesting cost more than the checks.

use super::{cors, inflight, limits, listeners, timing, verify};
use crate::error::ApiError;
use crate::serve::BodyIdleTimer;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The layer, outermost check first.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Every body (uploads included) is timed before any limit reads it.
    let (req, body_idle) = BodyIdleTimer::wrap(state.config.http.body_idle_timeout, req);
    // A shed request costs a counter and its answer.
    let _place = match inflight::admit(&state, req.uri().path()) {
        Ok(place) => place,
        Err(shed) => return body_idle.finish(shed.into_response()),
    };
    // With `internal_listen`, each listener shows only its own paths.
    if listeners::refused(&state, &req) {
        return body_idle.finish(ApiError::NotFound.into_response());
    }
    let timer = timing::Timer::start(&req);
    // CORS outside the rate limits: a preflight costs nothing, and a 429 carries the
    // CORS headers so a cross-origin page can read it.
    let cors = cors::Plan::of(&state, &req);
    let mut res = match cors.as_ref().and_then(|c| c.preflight(&state)) {
        Some(answer) => answer,
        // Rate limits sit in front of every handler, so a request over a limit writes
        // nothing.
        None => match limits::Ask::of(&state, &req) {
            Some(ask) => match ask.check(&state).await {
                Err(refused) => refused,
                Ok(()) => route(&state, req, next).await,
            },
            None => route(&state, req, next).await,
        },
    };
    if let Some(c) = cors {
        c.finish(&mut res);
    }
    timer.record(&res);
    body_idle.finish(res)
}

/// The router, or for the forward-auth path (every proxied request of an app behind a
/// proxy asks it) its answer directly ([`verify::direct`]).
async fn route(state: &AppState, req: Request, next: Next) -> Response {
    if req.uri().path() == verify::PATH {
        verify::direct(state.clone(), req).await
    } else {
        next.run(req).await
    }
}
