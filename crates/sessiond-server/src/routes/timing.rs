//! Request duration by route template: `sessiond_http_request_duration_seconds`, labelled
//! with axum's [`MatchedPath`] (so `/v1/sessions/{handle}`, never a real handle, keeps the
//! label set bounded), the method and the status class; and [`RouteTag`], which tells
//! the layers outside the router which route answered ([`Answered`]).

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use metrics::Histogram;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

/// The route that answered, on its answer: axum's template. (A route the front layer
/// answers itself without routing, [`super::verify::direct`], is named to
/// [`Timer::record`] directly.)
#[derive(Clone)]
pub struct Answered(MatchedPath);

/// Route label of requests no route matched (404s, the web pages' fallback).
const UNMATCHED: &str = "unmatched";

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

thread_local! {
    /// The histogram of each (route, method, status class) this worker thread has
    /// recorded, so the hot path neither allocates its labels nor looks the key up in
    /// the recorder's shared registry on every request. Bounded: routes are the router's
    /// templates, methods and statuses the fixed lists above.
    static HISTOGRAMS: RefCell<HashMap<String, Vec<Option<Histogram>>>> =
        RefCell::new(HashMap::new());
}

/// Times the handler up to its response head (a streamed body or a WebSocket goes on
/// after it and is not counted).
pub struct Timer {
    started: Instant,
    method: usize,
}

impl Timer {
    /// The timer of `req`, which reached the server at `started`.
    pub fn start(req: &Request, started: Instant) -> Timer {
        Timer {
            started,
            method: method_index(req.method()),
        }
    }

    /// Records the request's duration under the route that answered `res`: `fixed` for
    /// one answered without routing, else the template its [`RouteTag`] set on it.
    pub fn record(self, res: &Response, fixed: Option<&'static str>) {
        let method = self.method;
        let status = match res.status().as_u16() {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        let route = fixed
            .or_else(|| res.extensions().get::<Answered>().map(|a| a.0.as_str()))
            .unwrap_or(UNMATCHED);
        let elapsed = self.started.elapsed().as_secs_f64();
        HISTOGRAMS.with_borrow_mut(|cache| {
            // One lookup on the hot path; the route's slots are made on its first answer.
            let slots = match cache.get_mut(route) {
                Some(slots) => slots,
                None => cache
                    .entry(route.to_owned())
                    .or_insert_with(|| vec![None; METHODS.len() * STATUSES.len()]),
            };
            slots[method * STATUSES.len() + status]
                .get_or_insert_with(|| {
                    metrics::histogram!(
                        "sessiond_http_request_duration_seconds",
                        "route" => route.to_owned(),
                        "method" => METHODS[method],
                        "status" => STATUSES[status]
                    )
                })
                .record(elapsed);
        });
    }
}

/// Standard methods by name; anything else folds into one label, so a client cannot
/// grow the label set.
fn method_index(m: &axum::http::Method) -> usize {
    use axum::http::Method;
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// Marks each route's answer with its route template (and names the request's span
/// after it): the cross-cutting layers wrap the router as a whole, outside routing, so
/// they learn the template from the answer. Applied to every route by
/// [`super::app`]; a tower layer rather than `from_fn`, which would clone the route's
/// whole service stack on every request.
#[derive(Clone, Copy)]
pub struct RouteTagLayer;

impl<S> tower::Layer<S> for RouteTagLayer {
    type Service = RouteTag<S>;

    fn layer(&self, inner: S) -> RouteTag<S> {
        RouteTag(inner)
    }
}

#[derive(Clone)]
pub struct RouteTag<S>(S);

impl<S> tower::Service<Request> for RouteTag<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Tagged<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        if let Some(r) = &route {
            name_span(&tracing::Span::current(), req.method(), r.as_str());
        }
        Tagged {
            fut: self.0.call(req),
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// [`RouteTag`]'s future: the route's answer with its template in its extensions. A
    /// named future rather than a boxed `async` block, which cost an allocation per
    /// request.
    pub struct Tagged<F> {
        #[pin]
        fut: F,
        route: Option<MatchedPath>,
    }
}

impl<F> std::future::Future for Tagged<F>
where
    F: std::future::Future<Output = Result<Response, std::convert::Infallible>>,
{
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.fut.poll(cx))?;
        if let Some(r) = this.route.take() {
            res.extensions_mut().insert(Answered(r));
        }
        std::task::Poll::Ready(Ok(res))
    }
}

/// Names the request's span after the route that answers it (`METHOD /route`).
pub fn name_span(span: &tracing::Span, method: &axum::http::Method, route: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("route", tracing::field::display(route));
    crate::telemetry::rename(span, format!("{method} {route}"));
}
