//! The webhook outbox's stored state: which audit events each endpoint has been sent
//! (a cursor per endpoint), who delivers (one lease, fenced), and the events that ran out
//! of attempts ([`DeadLetter`]). The audit trail itself is the queue, so the outbox holds
//! no copy of an event until it is dead-lettered.

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// An event an endpoint refused (or never answered) until its attempts or its age ran
/// out. Keyed by `(endpoint, event.id)`; it carries the event itself, so a retry works
/// after the audit trail's retention has purged it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The configured endpoint's `id`.
    pub endpoint: String,
    pub event: AuditEvent,
    /// Delivery attempts so far (the deliverer's, then any manual retries).
    pub attempts: u32,
    /// The last HTTP status the endpoint answered, if it answered at all.
    pub last_status: Option<u16>,
    /// What went wrong last: the status line or the transport error (never a secret).
    pub last_error: String,
    pub first_attempt_at: Timestamp,
    /// When it was dead-lettered (or last retried by hand).
    pub dead_at: Timestamp,
}
