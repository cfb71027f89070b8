//! The crate's one error enum and its default HTTP mapping: RFC 9457 problem+json with
//! sessiond's stable codes, so an app that returns it answers like sessiond itself.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sessiond_core::EndReason;

/// Why a request has no session although it needed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The request carries no session token (no cookie, no `Authorization: Bearer`).
    Absent,
    /// It carries a token that names no session (malformed, unknown, or rotated away
    /// by a sign-in).
    Unknown,
}

impl Missing {
    /// `absent` or `unknown`: the `reason` of the 401 problem.
    pub fn as_str(&self) -> &'static str {
        match self {
            Missing::Absent => "absent",
            Missing::Unknown => "unknown",
        }
    }
}

/// Everything the extractors and actions of this crate can fail with.
///
/// It implements [`IntoResponse`] (problem+json; internal causes are logged, never
/// sent), so handlers may simply use `?`; an app that wants other answers matches on it.
///
/// | variant | status | `code` |
/// |---|---|---|
/// | [`Error::NoSession`] | 401 | `unauthenticated`, `reason` `absent` or `unknown` |
/// | [`Error::Ended`] | 401 | `session_expired`, `reason` `idle_timeout`, `absolute_timeout`, `signed_out` or `revoked` |
/// | [`Error::ForbiddenOrigin`] | 403 | `forbidden_origin` |
/// | [`Error::Invalid`] | 400 | `invalid_request` |
/// | [`Error::NotFound`] | 404 | `not_found` |
/// | [`Error::Conflict`] | 409 | `conflict` |
/// | [`Error::RateLimited`] | 429 | `rate_limited` |
/// | [`Error::Unavailable`] | 503 | `store_unavailable` (with `Retry-After: 1`) |
/// | [`Error::Unsupported`] | 501 | `unsupported` |
/// | [`Error::MissingLayer`], [`Error::Internal`] | 500 | `internal` |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request has no session.
    #[error("no session ({})", .0.as_str())]
    NoSession(Missing),
    /// The request's session has ended, for `reason`.
    #[error("session ended: {reason}")]
    Ended { reason: EndReason },
    /// A cookie-authenticated state-changing request from another origin (CSRF), under
    /// sessiond's origin rule (docs/protocol.md, "The origin check").
    #[error("request from a disallowed origin")]
    ForbiddenOrigin,
    /// Bad input to an action (a data key, a role that is not configured, a user id).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The named session or data key does not exist.
    #[error("not found")]
    NotFound,
    /// The session changed concurrently (a sign-in raced another rotation); retry.
    #[error("the session changed concurrently")]
    Conflict,
    /// The remote sessiond server refused the call as over a rate limit.
    #[error("rate limited; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The session store (embedded) or the sessiond server (remote) cannot be reached or
    /// did not answer in time. Nothing was decided; the caller may retry.
    #[error("session store unavailable")]
    Unavailable(String),
    /// The action has no equivalent in this mode (see the crate guide, "Remote mode").
    #[error("not supported here: {0}")]
    Unsupported(&'static str),
    /// An extractor ran on a route without [`crate::SessiondLayer`].
    #[error("the sessiond layer is not installed on this route")]
    MissingLayer,
    /// An unexpected failure (a malformed answer from the server, a broken invariant).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status of the default response.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoSession(_) | Error::Ended { .. } => StatusCode::UNAUTHORIZED,
            Error::ForbiddenOrigin => StatusCode::FORBIDDEN,
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Conflict => StatusCode::CONFLICT,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            Error::MissingLayer | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable `code` of the default response.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoSession(_) => "unauthenticated",
            Error::Ended { .. } => "session_expired",
            Error::ForbiddenOrigin => "forbidden_origin",
            Error::Invalid(_) => "invalid_request",
            Error::NotFound => "not_found",
            Error::Conflict => "conflict",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) => "store_unavailable",
            Error::Unsupported(_) => "unsupported",
            Error::MissingLayer | Error::Internal(_) => "internal",
        }
    }

    /// Why there is no session: `absent`, `unknown`, or the ending's reason.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Error::NoSession(m) => Some(m.as_str()),
            Error::Ended { reason } => Some(reason.as_str()),
            _ => None,
        }
    }
}

/// The problem+json body (RFC 9457).
#[derive(serde::Serialize)]
struct Problem<'a> {
    r#type: &'static str,
    title: &'static str,
    status: u16,
    code: &'static str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Error::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "session store unavailable");
                "the session store cannot be reached; retry shortly".to_owned()
            }
            Error::Internal(cause) => {
                tracing::error!(cause = %cause, "sessiond-axum internal error");
                "an internal error occurred".to_owned()
            }
            Error::MissingLayer => {
                tracing::error!("a sessiond extractor ran without SessiondLayer");
                "an internal error occurred".to_owned()
            }
            e => e.to_string(),
        };
        let title = match &self {
            Error::NoSession(_) => "Not signed in",
            Error::Ended { .. } => "Session expired",
            Error::ForbiddenOrigin => "Origin not allowed",
            Error::Invalid(_) => "Invalid request",
            Error::NotFound => "Not found",
            Error::Conflict => "Conflict",
            Error::RateLimited { .. } => "Too many requests",
            Error::Unavailable(_) => "Store unavailable",
            Error::Unsupported(_) => "Not supported",
            Error::MissingLayer | Error::Internal(_) => "Internal error",
        };
        let body = Problem {
            r#type: "about:blank",
            title,
            status: status.as_u16(),
            code: self.code(),
            detail: &detail,
            reason: self.reason(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut r = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            bytes,
        )
            .into_response();
        match self {
            Error::Unavailable(_) => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::RateLimited { retry_after } => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        r
    }
}

/// The embedded server's errors, mapped once.
impl From<sessiond_server::error::ApiError> for Error {
    fn from(e: sessiond_server::error::ApiError) -> Self {
        use sessiond_server::error::ApiError as A;
        match e {
            A::Unauthenticated => Error::NoSession(Missing::Unknown),
            A::SessionEnded(reason) => Error::Ended { reason },
            A::ForbiddenOrigin => Error::ForbiddenOrigin,
            A::NotFound => Error::NotFound,
            A::Conflict { .. } => Error::Conflict,
            A::StoreUnavailable(m) => Error::Unavailable(m),
            A::RateLimited { retry_after } => Error::RateLimited { retry_after },
            A::Invalid { detail, .. } | A::TooLarge { detail, .. } => Error::Invalid(detail),
            A::InvalidTicket(m) => Error::Invalid(m),
            other => Error::Internal(other.to_string()),
        }
    }
}

/// The session service's errors (embedded actions).
impl From<sessiond_server::sessions::SessionError> for Error {
    fn from(e: sessiond_server::sessions::SessionError) -> Self {
        Error::from(sessiond_server::error::ApiError::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ended_session_is_a_401_problem_with_its_reason() {
        let r = Error::Ended {
            reason: EndReason::Revoked,
        }
        .into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "session_expired");
        assert_eq!(v["reason"], "revoked");
    }

    #[tokio::test]
    async fn an_outage_is_a_503_that_hides_its_cause() {
        let r = Error::Unavailable("redis at 10.0.0.7 refused".into()).into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "store_unavailable");
        assert!(!v["detail"].as_str().unwrap().contains("10.0.0.7"));
    }
}
