//! The HTTP edge as tower layers, so handlers only translate HTTP: request ids, one trace
//! span per request, `Cache-Control: no-store` on API answers, body limits, and the
//! refusal of a request carrying the session cookie twice.
//!
//! The request id and the span are made around the whole app, outside routing
//! ([`super::front::Edge`]), so every answer (a refusal before any route included)
//! carries a request id and a span, which the route that answers names
//! ([`super::timing::name_span`]); [`api`] applies the others to each API router in
//! [`super::app`].

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Response};
use axum::response::IntoResponse;
use axum::Router;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tracing::field::Empty;
use tracing::Span;

/// The request id header: taken from the caller when usable, generated otherwise, and
/// always returned.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest caller-supplied request id kept.
const MAX_REQUEST_ID: usize = 128;

/// Whether a caller's request id may be kept (and logged): 1..=128 of `[A-Za-z0-9._:-]`,
/// so it can neither forge log lines nor smuggle much data.
pub fn usable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// A new request id: a random (v4) UUID, written on the stack rather than through
/// `Display` and a `String`, since every request without an id of its own makes one.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

/// The request's id: the caller's `x-request-id` when it sent exactly one and it is
/// usable ([`usable_request_id`]), a new one otherwise.
pub(super) fn request_id(req: &Request) -> HeaderValue {
    let mut ids = req.headers().get_all(&REQUEST_ID).iter();
    match (ids.next(), ids.next()) {
        (Some(v), None) if usable_request_id(v) => v.clone(),
        _ => new_request_id(),
    }
}

/// The request's span: route template (never the raw URI, whose query could carry
/// secrets), method and id; status and latency are recorded when the answer is ready.
/// Headers are never recorded (cookies and bearer tokens live there). As an
/// OpenTelemetry span it is a server span named `METHOD /route`, child of the caller's
/// `traceparent` when one came.
pub(super) fn make_span(req: &Request, id: &HeaderValue) -> Span {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = Empty,
        request_id = Empty,
        status = Empty,
        latency_ms = Empty,
        otel.name = Empty,
        otel.kind = "server",
        otel.status_code = Empty,
    );
    if span.is_disabled() {
        // No subscriber wants it: nothing below would be kept.
        return span;
    }
    // Named by the method until the route that answers names it
    // ([`super::timing::name_span`]); an
    // unmatched path keeps the method alone (the raw path is the caller's text).
    span.record("otel.name", tracing::field::display(req.method()));
    if let Ok(id) = id.to_str() {
        span.record("request_id", tracing::field::display(id));
    }
    crate::telemetry::join_caller_trace(&span, req.headers());
    span
}

pub(super) fn on_response(res: &Response<Body>, latency: Duration, span: &Span) {
    if span.is_disabled() && !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let _entered = span.enter();
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    span.record("status", res.status().as_u16());
    // A server span is in error for 5xx only: a 4xx is the caller's mistake.
    if res.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    span.record("latency_ms", latency_ms);
    tracing::debug!(status = res.status().as_u16(), latency_ms, "answered");
}

/// What an API router's answers carry and what its requests may bring.
#[derive(Clone, Copy)]
pub struct Api {
    /// `Cache-Control` of every answer (unless a handler set one): session state,
    /// identities and drafts must never be stored by a browser or proxy.
    pub cache: Option<&'static str>,
    /// The limit of the buffered bodies (JSON, snapshots): an overflow fails the
    /// extractor, which answers 413 `payload_too_large`.
    pub body_limit: Option<usize>,
}

/// Wraps every route of an API router in its edge, outermost first: the route's tag
/// ([`super::timing::RouteTag`]), the refusal of a doubled session cookie named `cookie`
/// ([`duplicate_cookie`]), `Cache-Control`, the body limit.
///
/// One `Router::layer` call with the whole stack, not one call per concern: each call
/// wraps every route in another boxed service that the router clones (with every level
/// inside it) and calls through a boxed future on each request.
pub fn api<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    cookie: &str,
    api: Api,
) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(super::timing::RouteTagLayer)
            .layer(duplicate_cookie(cookie.to_owned()))
            .option_layer(api.cache.map(|v| {
                SetResponseHeaderLayer::if_not_present(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(v),
                )
            }))
            .option_layer(api.body_limit.map(DefaultBodyLimit::max)),
    )
}

/// A router outside the API (the web pages): only tagged with the route that answers.
pub fn tagged<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(super::timing::RouteTagLayer)
}

/// How many cookies named `name` the request carries (over every `Cookie` header).
pub fn cookie_count(headers: &axum::http::HeaderMap, name: &str) -> usize {
    headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| {
            v.as_bytes()
                .split(|b| *b == b';')
                .filter_map(|kv| {
                    let eq = kv.iter().position(|b| *b == b'=')?;
                    Some(kv[..eq].trim_ascii())
                })
                .filter(|k| *k == name.as_bytes())
                .count()
        })
        .sum()
}

/// Refuses (400 `duplicate_cookie`) a request carrying the session cookie `name` more
/// than once. A browser sends two when another cookie of that name was set for a
/// narrower path or a parent domain (tossed from a sibling subdomain); picking either
/// could act as the attacker's session, so none is picked. Covers every API route,
/// the WebSocket upgrade included.
// The validator's `Result<(), Response>` shape is tower-http's, not ours to box.
#[allow(clippy::result_large_err)]
fn duplicate_cookie(
    name: String,
) -> ValidateRequestHeaderLayer<
    impl FnMut(&mut Request) -> Result<(), Response<Body>> + Clone + Send + Sync + 'static,
> {
    ValidateRequestHeaderLayer::custom(move |req: &mut Request| -> Result<(), Response<Body>> {
        match duplicate_cookie_refusal(req.headers(), &name) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    })
}

/// The 400 `duplicate_cookie` answer to a request carrying the cookie `name` more than
/// once ([`duplicate_cookie`]); `None` when it carries it at most once.
pub fn duplicate_cookie_refusal(
    headers: &axum::http::HeaderMap,
    name: &str,
) -> Option<Response<Body>> {
    if cookie_count(headers, name) <= 1 {
        return None;
    }
    Some(
        ApiError::Invalid {
            code: "duplicate_cookie",
            detail: format!(
                "the request carries the cookie {name} more than once; \
                 remove the extra cookie (see the browser's cookies for this site)"
            ),
        }
        .into_response(),
    )
}

/// The limit of the buffered bodies (JSON, snapshots) of a router: an overflow fails the
/// extractor, which answers 413 `payload_too_large`.
pub fn body_limit<S: Clone + Send + Sync + 'static>(router: Router<S>, limit: usize) -> Router<S> {
    router.layer(DefaultBodyLimit::max(limit))
}

/// Refuses a request whose declared `Content-Length` exceeds `limit` before any handler
/// runs (413 `payload_too_large`). For streamed uploads, whose reader enforces the same
/// limit on what actually arrives.
// The validator's `Result<(), Response>` shape is tower-http's, not ours to box.
#[allow(clippy::result_large_err)]
pub fn declared_length_limit<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limit: u64,
) -> Router<S> {
    router.layer(ValidateRequestHeaderLayer::custom(
        move |req: &mut Request| -> Result<(), Response<Body>> {
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            match declared {
                Some(n) if n > limit => {
                    Err(
                        ApiError::from(sessiond_core::StoreError::TooLarge { limit })
                            .into_response(),
                    )
                }
                _ => Ok(()),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_v4_uuids() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        let id = uuid::Uuid::parse_str(a.to_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert!(usable_request_id(&a));
    }

    #[test]
    fn a_callers_request_id_is_kept_only_when_usable_and_alone() {
        let with = |ids: &[&str]| {
            let mut req = Request::new(Body::empty());
            for id in ids {
                req.headers_mut()
                    .append(&REQUEST_ID, HeaderValue::from_str(id).unwrap());
            }
            request_id(&req)
        };
        assert_eq!(with(&["it-1"]), "it-1");
        for ids in [&[][..], &["has space"], &["a", "b"]] {
            let id = with(ids);
            assert!(
                uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok(),
                "{ids:?}"
            );
        }
    }

    #[test]
    fn request_ids_are_checked() {
        for ok in ["a", "0f8fad5b-d9cb-469f-a165-70867728950e", "req_1.2:3"] {
            assert!(usable_request_id(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        for bad in ["", "has space", "new\tline", "ü", long.as_str()] {
            let v = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(!usable_request_id(&v), "{bad:?}");
        }
    }
}
