//! The split between the public listener (browsers, apps) and the optional internal one
//! (`internal_listen`: operators, Prometheus, load balancers): which paths belong where,
//! and the security headers of the embedded HTML pages.

use crate::state::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderValue};

/// The listener a request came in on, set by the serving loop as a request extension. A
/// router served without one (an embedder's own loop) counts as public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Public,
    Internal,
}

/// Whether `path` is for operators: the admin API and page, metrics and readiness.
pub fn is_internal_path(path: &str) -> bool {
    path == "/metrics"
        || path == "/readyz"
        || path == "/admin"
        || path.starts_with("/admin/")
        || path == "/v1/admin"
        || path.starts_with("/v1/admin/")
}

/// The side a request came in on.
pub fn side(req_extensions: &axum::http::Extensions) -> Side {
    req_extensions
        .get::<Side>()
        .copied()
        .unwrap_or(Side::Public)
}

/// With `internal_listen` set, operators' paths are refused (404) on the public listener
/// and everything but them (and `/healthz`) on the internal one, so neither listener
/// shows the other's surface.
pub fn refused(state: &AppState, req: &Request) -> bool {
    if state.config.internal_listen.is_none() {
        return false;
    }
    let path = req.uri().path();
    let internal = is_internal_path(path);
    match side(req.extensions()) {
        Side::Public => internal,
        Side::Internal => !internal && path != "/healthz",
    }
}

/// The Content-Security-Policy of the embedded pages: their own scripts and styles only,
/// never framed (the admin page's buttons cannot be clickjacked), no plugins, forms and
/// `<base>` pinned to this origin. `blob:` for media and fetches: the demo plays back the
/// voice clips it recorded from object URLs it made itself.
pub const HTML_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob:; connect-src 'self' blob:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers every HTML page carries.
pub fn html_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(HTML_CSP),
    );
    // For browsers that predate `frame-ancestors`.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_paths() {
        for p in [
            "/metrics",
            "/readyz",
            "/admin",
            "/admin/",
            "/admin/admin.js",
            "/v1/admin/sessions",
        ] {
            assert!(is_internal_path(p), "{p}");
        }
        for p in [
            "/healthz",
            "/v1/session",
            "/demo/",
            "/administrator",
            "/v1/adminx",
            "/sdk/sessiond.js",
        ] {
            assert!(!is_internal_path(p), "{p}");
        }
    }
}
