//! The session service's own error: what a lifecycle operation can fail with, in domain
//! terms. HTTP (`crate::error`) and WebSocket (`crate::ws::conn`) each map it once.

use sessiond_core::quota::QuotaExceeded;
use sessiond_core::{EndReason, StoreError};

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The token (or handle) names no session.
    #[error("no valid session")]
    Unauthenticated,
    /// The session's token was rotated (sign-in) after this caller authenticated with
    /// the old one: it must authenticate again (WebSocket close 4010).
    #[error("the session's token was rotated; authenticate again")]
    Rotated,
    /// The session named by an operator (handle) or a data key does not exist.
    #[error("not found")]
    NotFound,
    /// An anonymous session asked for what only a signed-in principal has (its devices).
    #[error("the session is not signed in")]
    NotSignedIn,
    /// The session has ended (now or before), for `reason`.
    #[error("session ended: {reason}")]
    Ended { reason: EndReason },
    /// A conditional write lost against a concurrent change (sign-in raced a rotation).
    #[error("the session changed concurrently")]
    Conflict,
    /// An idempotency key was reused with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyMismatch,
    /// An idempotency key was repeated after its replay window: the token is not
    /// handed out again.
    #[error("idempotency key replayed after its replay window")]
    IdempotencyExpired,
    /// A sign-in ticket (its `jti`) was already used, here or on another node.
    #[error("ticket already used")]
    TicketReused,
    /// The store cannot be reached; nothing was decided, the caller may retry.
    #[error("store unavailable")]
    Unavailable {
        #[source]
        source: StoreError,
    },
    /// The store answered with something other than an outage (corrupt data, a limit).
    #[error("store failed")]
    Store {
        #[source]
        source: StoreError,
    },
    /// A write would take usage over a storage quota; nothing was written.
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
    /// An attachment with no bytes (the smallest is one byte); nothing was written.
    #[error("an attachment must have at least one byte")]
    EmptyAttachment,
    /// An invariant broke (a sealed record that cannot be opened, ...).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for SessionError {
    fn from(source: StoreError) -> Self {
        match source {
            StoreError::Unavailable(_) => {
                // Per-node store health (requests, scheduler, flusher alike).
                metrics::counter!("sessiond_store_errors_total").increment(1);
                SessionError::Unavailable { source }
            }
            source => SessionError::Store { source },
        }
    }
}

/// Result of a session operation.
pub type SessionResult<T> = Result<T, SessionError>;
