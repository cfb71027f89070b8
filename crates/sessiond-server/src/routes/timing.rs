//! Request duration by route template: `sessiond_http_request_duration_seconds`, labelled
//! with axum's [`MatchedPath`] (so `/v1/sessions/{handle}`, never a real handle, keeps the
//! label set bounded), the method and the status class.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::Histogram;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

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
pub async fn layer(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_index(req.method());
    let res = next.run(req).await;
    let status = match res.status().as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    };
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let elapsed = started.elapsed().as_secs_f64();
    HISTOGRAMS.with_borrow_mut(|cache| {
        if !cache.contains_key(route) {
            cache.insert(route.to_owned(), vec![None; METHODS.len() * STATUSES.len()]);
        }
        let slots = cache.get_mut(route).expect("inserted above");
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
    res
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
