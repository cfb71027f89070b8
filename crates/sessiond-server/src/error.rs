//! The server's error enum and its one mapping to RFC 9457 problem+json responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sessiond_core::{CoreError, EndReason, StoreError};

/// Everything a handler can fail with. Internal causes are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no valid session")]
    Unauthenticated,
    #[error("session ended: {0}")]
    SessionEnded(EndReason),
    #[error("request from a disallowed origin")]
    ForbiddenOrigin,
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An anonymous session asked for what only a signed-in principal has.
    #[error("the session is not signed in")]
    NotSignedIn,
    /// No grant admits the session to the room (or its room token was refused).
    #[error("room not allowed: {0}")]
    RoomNotAllowed(String),
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("invalid ticket: {0}")]
    InvalidTicket(String),
    #[error("not found")]
    NotFound,
    /// The path exists but not with this method (the router's own 405).
    #[error("method {0} is not allowed on this path")]
    MethodNotAllowed(String),
    /// A conditional write lost; `current` is what is stored now.
    #[error("conflict")]
    Conflict { current: serde_json::Value },
    #[error("idempotency key reused with a different request")]
    IdempotencyMismatch,
    #[error(
        "the Idempotency-Key was first used longer ago than the replay window; send a new key"
    )]
    IdempotencyExpired,
    #[error("{detail}")]
    TooLarge { code: &'static str, detail: String },
    /// A write would take usage over the storage quota `limit` (its configuration key),
    /// configured as `max`; nothing was written.
    #[error("quota {limit} ({max}) exceeded; nothing was written")]
    QuotaExceeded { limit: &'static str, max: u64 },
    #[error("unsupported content type {0}")]
    UnsupportedMediaType(String),
    #[error("store unavailable")]
    StoreUnavailable(String),
    /// More requests in flight than `http.max_in_flight`: refused before any work.
    #[error("the server is handling as many requests as it may; retry shortly")]
    Overloaded,
    /// Over a rate limit; `retry_after` in whole seconds (rounded up).
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// A stored value failed its integrity check (see `StoreError::Integrity`).
    #[error("store integrity")]
    StoreIntegrity(String),
    /// A manual webhook retry failed: the endpoint's status or the transport error.
    #[error("the webhook endpoint failed: {0}")]
    WebhookFailed(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            code: "invalid_request",
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::SessionEnded(_) | ApiError::InvalidTicket(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::ForbiddenOrigin
            | ApiError::Forbidden(_)
            | ApiError::NotSignedIn
            | ApiError::RoomNotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyExpired => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } | ApiError::QuotaExceeded { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::StoreUnavailable(_) | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::WebhookFailed(_) => StatusCode::BAD_GATEWAY,
            ApiError::StoreIntegrity(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::SessionEnded(_) => "session_expired",
            ApiError::ForbiddenOrigin => "forbidden_origin",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotSignedIn => "not_signed_in",
            ApiError::RoomNotAllowed(_) => "room_not_allowed",
            ApiError::Invalid { code, .. } => code,
            ApiError::InvalidTicket(_) => "invalid_ticket",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::IdempotencyMismatch => "idempotency_mismatch",
            ApiError::IdempotencyExpired => "idempotency_expired",
            ApiError::TooLarge { code, .. } => code,
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Overloaded => "overloaded",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::WebhookFailed(_) => "webhook_delivery_failed",
            ApiError::StoreIntegrity(_) => "store_integrity",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "Not signed in",
            ApiError::SessionEnded(_) => "Session expired",
            ApiError::ForbiddenOrigin => "Origin not allowed",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotSignedIn => "Not signed in",
            ApiError::RoomNotAllowed(_) => "Room not allowed",
            ApiError::Invalid { .. } => "Invalid request",
            ApiError::InvalidTicket(_) => "Invalid ticket",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::IdempotencyMismatch => "Idempotency key reused",
            ApiError::IdempotencyExpired => "Idempotency key expired",
            ApiError::TooLarge { .. } => "Payload too large",
            ApiError::QuotaExceeded { .. } => "Quota exceeded",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::StoreUnavailable(_) => "Store unavailable",
            ApiError::Overloaded => "Overloaded",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::WebhookFailed(_) => "Webhook delivery failed",
            ApiError::StoreIntegrity(_) => "Stored data failed its integrity check",
            ApiError::Internal(_) => "Internal error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                // Per-node store health (requests, scheduler, flusher alike).
                metrics::counter!("sessiond_store_errors_total").increment(1);
                ApiError::StoreUnavailable(m)
            }
            StoreError::Corrupt(m) => ApiError::Internal(m),
            StoreError::Integrity(m) => ApiError::StoreIntegrity(m),
            StoreError::TooLarge { limit } => ApiError::TooLarge {
                code: "payload_too_large",
                detail: format!("body exceeds the limit of {limit} bytes"),
            },
            // `drafts.quota_per_principal`, enforced by the store as the bytes stream in.
            StoreError::QuotaExceeded { quota } => ApiError::QuotaExceeded {
                limit: "attachment_bytes_per_principal",
                max: quota,
            },
            StoreError::Body(m) => ApiError::invalid(format!("request body failed: {m}")),
        }
    }
}

/// The one mapping of the session service's errors to HTTP.
impl From<crate::sessions::SessionError> for ApiError {
    fn from(e: crate::sessions::SessionError) -> Self {
        use crate::sessions::SessionError as E;
        match e {
            // The token presented was rotated away mid-request: it no longer names a session.
            E::Unauthenticated | E::Rotated => ApiError::Unauthenticated,
            E::NotFound => ApiError::NotFound,
            E::NotSignedIn => ApiError::NotSignedIn,
            E::Ended { reason } => ApiError::SessionEnded(reason),
            E::Conflict => ApiError::Conflict {
                current: serde_json::Value::Null,
            },
            E::IdempotencyMismatch => ApiError::IdempotencyMismatch,
            E::IdempotencyExpired => ApiError::IdempotencyExpired,
            E::TicketReused => ApiError::InvalidTicket("ticket already used".into()),
            // Counted as a store error where it arose (SessionError's From<StoreError>).
            E::Unavailable {
                source: StoreError::Unavailable(m),
            } => ApiError::StoreUnavailable(m),
            E::Unavailable { source } | E::Store { source } => ApiError::from(source),
            E::QuotaExceeded(q) => ApiError::QuotaExceeded {
                limit: q.limit,
                max: q.value,
            },
            E::EmptyAttachment => ApiError::Invalid {
                code: "empty_attachment",
                detail: "an attachment must have at least one byte".into(),
            },
            E::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid {
                what: "conversation id",
                why,
            } => ApiError::Invalid {
                code: "invalid_conversation",
                detail: format!("invalid conversation id: {why}"),
            },
            e => ApiError::invalid(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::StoreUnavailable(m) => tracing::warn!(cause = %m, "store unavailable"),
            ApiError::Internal(m) => tracing::error!(cause = %m, "internal error"),
            // The message names the ids (principal, conversation, room), never content.
            ApiError::StoreIntegrity(m) => tracing::error!(cause = %m, "store integrity error"),
            _ => {}
        }
        let detail = match &self {
            ApiError::StoreUnavailable(_) => {
                "the session store cannot be reached; retry shortly".to_owned()
            }
            ApiError::Internal(_) => "an internal error occurred".to_owned(),
            ApiError::StoreIntegrity(_) => {
                "a stored value failed its integrity check and was not served".to_owned()
            }
            e => e.to_string(),
        };
        let retry_after = match &self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        let mut body = Problem::new(status, self.code(), self.title(), detail);
        match self {
            ApiError::SessionEnded(r) => body.reason = Some(r.as_str().to_owned()),
            ApiError::Conflict { current } => body.current = Some(current),
            ApiError::QuotaExceeded { limit, max } => {
                body.limit = Some(limit.to_owned());
                body.max = Some(max);
            }
            _ => {}
        }
        let mut resp = body.into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The shape of every error body (RFC 9457): what [`ApiError`] renders, so the OpenAPI
/// document and the wire cannot disagree.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[schema(example = "about:blank")]
    pub r#type: &'static str,
    pub title: String,
    pub status: u16,
    /// Stable machine-readable code (see docs/protocol.md).
    #[schema(example = "session_expired")]
    pub code: String,
    pub detail: String,
    /// Why the session ended, for `session_expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "idle_timeout")]
    pub reason: Option<String>,
    /// For `conflict`: what is stored now (a draft, a snapshot's metadata, or null).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub current: Option<serde_json::Value>,
    /// For `not_found` on a deleted draft: the tombstone's seq, which the next write names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// For `quota_exceeded`: the limit the write would exceed, named as its key under
    /// `[quotas]` (or `attachment_bytes_per_principal`: `drafts.quota_per_principal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "data_keys_per_session")]
    pub limit: Option<String>,
    /// For `quota_exceeded`: the limit's value for this session (count or bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, title: &str, detail: String) -> Self {
        Problem {
            r#type: "about:blank",
            title: title.to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail,
            reason: None,
            current: None,
            seq: None,
            limit: None,
            max: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match serde_json::to_vec(&self) {
            Ok(body) => (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                )],
                body,
            )
                .into_response(),
            Err(_) => status.into_response(),
        }
    }
}
