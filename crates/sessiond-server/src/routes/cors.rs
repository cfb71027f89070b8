//! CORS for the browser-facing API (`/v1/session…`, `/v1/drafts…`,
//! `/v1/rooms/{room}/snapshot`): a page on one of `allowed_origins` may call it with
//! credentials (the cookie, or `Authorization: Bearer` in the SDK's bearer mode) and read
//! the answers. Any other origin gets no CORS header at all, so the browser refuses it;
//! admin, forward-auth, metrics and the embedded pages never answer cross-origin.
//!
//! Hand-rolled rather than tower-http's `CorsLayer`: that layer answers every `OPTIONS`
//! as a preflight and sends the allowed methods and headers to any origin, where this
//! one answers only a real preflight (`Access-Control-Request-Method`) from a listed
//! origin and stays silent otherwise; and it compares origins the way [`crate::origin`]
//! does everywhere else (scheme, host and port), not as strings.

use crate::origin::WebOrigin;
use crate::state::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// Methods of the browser-facing routes.
const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE";
/// Request headers the SDK (or an app's own client) sends: the bearer token, JSON and
/// upload bodies, create's idempotency key, a room token on snapshot calls.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key, X-Room-Token";
/// Response headers a cross-origin page may read beyond the safelisted ones: the
/// snapshot's version and hash, how long to back off, the id to quote in a bug report.
const EXPOSE_HEADERS: &str = "ETag, X-Snapshot-Version, Retry-After, X-Request-Id";

/// Whether `path` belongs to the API a browser page calls itself. The WebSocket is not
/// here: browsers apply no CORS to it, the upgrade checks the origin itself.
pub fn is_browser_api(path: &str) -> bool {
    let under = |p: &str| path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    under("/v1/session")
        || under("/v1/drafts")
        || path
            .strip_prefix("/v1/rooms/")
            .and_then(|r| r.strip_suffix("/snapshot"))
            .is_some_and(|room| !room.is_empty() && !room.contains('/'))
}

/// The request's `Origin` when it is one of `allowed` (sent once, well formed), as the
/// value to echo.
fn listed_origin(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let mut all = headers.get_all(header::ORIGIN).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return None;
    };
    let o = WebOrigin::parse(v.to_str().ok()?)?;
    allowed
        .iter()
        .any(|a| WebOrigin::parse_configured(a).as_ref() == Some(&o))
        .then(|| v.clone())
}

/// What CORS does for one request to the browser API: answers a preflight from a
/// listed origin with 204 ([`Plan::preflight`]) and adds the CORS headers to every
/// answer (errors included) for such origins; `Vary: Origin` on every answer of these
/// routes, since what they carry depends on it ([`Plan::finish`]).
pub struct Plan {
    origin: Option<HeaderValue>,
    preflight: bool,
}

impl Plan {
    /// The plan for `req`; `None` off the browser API (no CORS header at all).
    pub fn of(state: &AppState, req: &Request) -> Option<Plan> {
        if !is_browser_api(req.uri().path()) {
            return None;
        }
        Some(Plan {
            origin: listed_origin(req.headers(), &state.config.allowed_origins),
            preflight: req.method() == Method::OPTIONS
                && req
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD),
        })
    }

    /// The answer to a listed origin's preflight. Anything else, including another
    /// origin's preflight, goes on as if CORS did not exist (a preflight then gets the
    /// router's 405): the browser refuses.
    pub fn preflight(&self, state: &AppState) -> Option<Response> {
        if !(self.preflight && self.origin.is_some()) {
            return None;
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(state.config.http.cors_max_age.as_secs()),
        );
        Some(r)
    }

    /// Adds the CORS headers to the answer.
    pub fn finish(self, res: &mut Response) {
        let h = res.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.preflight {
            h.append(
                header::VARY,
                HeaderValue::from_static(
                    "Access-Control-Request-Method, Access-Control-Request-Headers",
                ),
            );
        }
        if let Some(o) = self.origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            if !self.preflight {
                h.insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static(EXPOSE_HEADERS),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_browser_api_is_covered() {
        for p in [
            "/v1/session",
            "/v1/session/signin",
            "/v1/session/data/k",
            "/v1/drafts",
            "/v1/drafts/c1/attachments/a.png",
            "/v1/rooms/r1/snapshot",
        ] {
            assert!(is_browser_api(p), "{p}");
        }
        for p in [
            "/v1/sessionx",
            "/v1/draftsx",
            "/v1/admin/sessions",
            "/v1/admin/rooms/r1",
            "/v1/auth/verify",
            "/v1/ws",
            "/v1/rooms//snapshot",
            "/v1/rooms/a/b/snapshot",
            "/metrics",
            "/sdk/sessiond.js",
            "/openapi.json",
        ] {
            assert!(!is_browser_api(p), "{p}");
        }
    }

    #[test]
    fn only_a_listed_origin_sent_once_is_echoed() {
        let list = ["https://app.example/".to_owned()];
        let h = |vals: &[&str]| {
            let mut m = HeaderMap::new();
            for v in vals {
                m.append(header::ORIGIN, HeaderValue::from_str(v).unwrap());
            }
            m
        };
        assert_eq!(
            listed_origin(&h(&["https://app.example"]), &list),
            Some(HeaderValue::from_static("https://app.example"))
        );
        assert_eq!(
            listed_origin(&h(&["https://APP.example:443"]), &list),
            Some(HeaderValue::from_static("https://APP.example:443")),
            "compared as an origin, echoed as sent"
        );
        for bad in [
            &["http://app.example"][..],
            &["https://app.example:8443"],
            &["https://evil.example"],
            &["null"],
            &["https://app.example", "https://app.example"],
            &[],
        ] {
            assert_eq!(listed_origin(&h(bad), &list), None, "{bad:?}");
        }
        assert_eq!(listed_origin(&h(&["https://app.example"]), &[]), None);
    }
}
