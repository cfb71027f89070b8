//! Request duration by route template: `sessiond_http_request_duration_seconds`, labelled
//! with axum's [`MatchedPath`] (so `/v1/sessions/{handle}`, never a real handle, keeps the
//! label set bounded), the method and the status class.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// Route label of requests no route matched (404s, the web pages' fallback).
const UNMATCHED: &str = "unmatched";

/// Times the handler up to its response head (a streamed body or a WebSocket goes on
/// after it and is not counted).
pub async fn layer(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let res = next.run(req).await;
    let status = match res.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::histogram!(
        "sessiond_http_request_duration_seconds",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .record(started.elapsed().as_secs_f64());
    res
}

/// Standard methods by name; anything else folds into one label, so a client cannot
/// grow the label set.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
