//! The app as one service in front of routing ([`Edge`]): the request id and span, then
//! the cross-cutting checks in one function ([`layer`]): the in-flight bound, the
//! listener split, the request timer, CORS, the rate limits and the body idle timer.
//!
//! One service and one function rather than a layer each: every `from_fn` layer boxes
//! the service it calls and the future it returns on each request, and on the hot path
//! (a verify answered from the cache) those allocations and the nesting cost more than
//! the checks.

use super::{cors, edge, inflight, limits, listeners, timing, verify};
use crate::error::ApiError;
use crate::serve::BodyIdleTimer;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Span;

/// The edge around the whole app ([`with_edges`]): the request id (the caller's when
/// usable, else a new one; always returned) and one trace span per request (entered
/// while the request is handled; status and latency recorded on the answer), both made
/// by [`edge`]; inside them the cross-cutting checks ([`layer`]) in front of the router.
///
/// One hand-written service with one boxed future per request, rather than tower-http's
/// request-id, propagate and trace layers around a `from_fn` layer: each of those wraps
/// the future (and the trace layer the body) once more, and the request-id layers copy
/// the id into the request's headers and extensions, which nothing here reads. On the
/// forward-auth hot path that nesting cost a tenth of the request.
#[derive(Clone)]
pub struct Edge {
    state: AppState,
    router: Router,
}

/// The whole app behind its edge ([`Edge`]): what [`super::service`] serves.
pub fn with_edges(state: AppState, router: Router) -> Edge {
    Edge { state, router }
}

impl tower::Service<Request> for Edge {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = EdgeFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A router is always ready; the front layer's checks wait inside the future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> EdgeFuture {
        let started = Instant::now();
        let id = edge::request_id(&req);
        let span = edge::make_span(&req, &id);
        let handled = {
            let _entered = span.enter();
            Box::pin(layer(self.state.clone(), req, self.router.clone(), started))
        };
        EdgeFuture {
            handled,
            span,
            started,
            id: Some(id),
        }
    }
}

/// The checks' future, boxed once where it is made (it holds every path's state, so each
/// move of it would copy all of that), with the span entered while it runs.
type Handled = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// [`Edge`]'s future: the request handled inside its span, then the id on the answer.
pub struct EdgeFuture {
    handled: Handled,
    span: Span,
    started: Instant,
    id: Option<HeaderValue>,
}

impl Future for EdgeFuture {
    type Output = Result<Response<Body>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is `Unpin` (the handling is boxed).
        let this = self.get_mut();
        let mut res = {
            let _entered = this.span.enter();
            std::task::ready!(this.handled.as_mut().poll(cx))
        };
        edge::on_response(&res, this.started.elapsed(), &this.span);
        if let Some(id) = this.id.take() {
            res.headers_mut().insert(edge::REQUEST_ID.clone(), id);
        }
        Poll::Ready(Ok(res))
    }
}

/// The checks, outermost first, then `router` (or the verify answer); `started` is when
/// the request reached the edge.
pub async fn layer(state: AppState, req: Request, router: Router, started: Instant) -> Response {
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
    let timer = timing::Timer::start(&req, started);
    // CORS outside the rate limits: a preflight costs nothing, and a 429 carries the
    // CORS headers so a cross-origin page can read it.
    let cors = cors::Plan::of(&state, &req);
    let (mut res, fixed) = match cors.as_ref().and_then(|c| c.preflight(&state)) {
        Some(answer) => (answer, None),
        // Rate limits sit in front of every handler, so a request over a limit writes
        // nothing.
        None => match limits::Ask::of(&state, &req) {
            Some(ask) => match ask.check(&state).await {
                Err(refused) => (refused, None),
                Ok(()) => route(&state, req, router).await,
            },
            None => route(&state, req, router).await,
        },
    };
    if let Some(c) = cors {
        c.finish(&mut res);
    }
    timer.record(&res, fixed);
    body_idle.finish(res)
}

/// The router, or for the forward-auth path (every proxied request of an app behind a
/// proxy asks it) its answer directly ([`verify::direct`]), with that route's template
/// (a routed answer carries its own, [`timing::Answered`]).
async fn route(
    state: &AppState,
    req: Request,
    mut router: Router,
) -> (Response, Option<&'static str>) {
    if req.uri().path() == verify::PATH {
        (verify::direct(state.clone(), req).await, Some(verify::PATH))
    } else {
        match tower::Service::call(&mut router, req).await {
            Ok(res) => (res, None),
            Err(never) => match never {},
        }
    }
}
