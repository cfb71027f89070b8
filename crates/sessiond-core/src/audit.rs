//! Audit events: the append-only record of every start, sign-in, renewal and ending.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// What happened. Stored and queried by its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Created,
    SignedIn,
    TokenRotated,
    Renewed,
    Ended,
    ConnectionLost,
    /// An operator dropped one connection; the session goes on.
    ConnectionDropped,
    DraftsRestored,
    DraftsPurged,
    SnapshotRestored,
    /// An operator retried a webhook dead letter by hand (`detail`: endpoint, event id,
    /// key, whether it was delivered).
    DeadLetterRetried,
    /// An operator deleted a webhook dead letter (`detail`: endpoint, event id, key).
    DeadLetterDeleted,
}

impl AuditKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditKind::Created => "created",
            AuditKind::SignedIn => "signed_in",
            AuditKind::TokenRotated => "token_rotated",
            AuditKind::Renewed => "renewed",
            AuditKind::Ended => "ended",
            AuditKind::ConnectionLost => "connection_lost",
            AuditKind::ConnectionDropped => "connection_dropped",
            AuditKind::DraftsRestored => "drafts_restored",
            AuditKind::DraftsPurged => "drafts_purged",
            AuditKind::SnapshotRestored => "snapshot_restored",
            AuditKind::DeadLetterRetried => "dead_letter_retried",
            AuditKind::DeadLetterDeleted => "dead_letter_deleted",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [AuditKind; 12] = [
        AuditKind::Created,
        AuditKind::SignedIn,
        AuditKind::TokenRotated,
        AuditKind::Renewed,
        AuditKind::Ended,
        AuditKind::ConnectionLost,
        AuditKind::ConnectionDropped,
        AuditKind::DraftsRestored,
        AuditKind::DraftsPurged,
        AuditKind::SnapshotRestored,
        AuditKind::DeadLetterRetried,
        AuditKind::DeadLetterDeleted,
    ];

    /// The event's type on a webhook: `session.<kind>` for what happened to a session,
    /// `webhook.<kind>` for an operator's action on the webhook outbox.
    pub fn webhook_type(&self) -> String {
        match self {
            AuditKind::DeadLetterRetried | AuditKind::DeadLetterDeleted => {
                format!("webhook.{}", self.as_str())
            }
            _ => format!("session.{}", self.as_str()),
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// One audit record. `id` is assigned by the store (monotonic per store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(default)]
    pub id: i64,
    pub at: Timestamp,
    pub kind: AuditKind,
    /// Session handle (never the token).
    pub handle: Option<String>,
    pub principal: Option<String>,
    pub role: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub last_activity_at: Option<Timestamp>,
    /// Ending reason (`signed_out`, `idle_timeout`, …, `heartbeat_lost`) where relevant.
    pub reason: Option<String>,
    /// Kind-specific details: what was kept or purged, connection id, room, counts.
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(at: Timestamp, kind: AuditKind) -> Self {
        AuditEvent {
            id: 0,
            at,
            kind,
            handle: None,
            principal: None,
            role: None,
            client_ip: None,
            user_agent: None,
            last_activity_at: None,
            reason: None,
            detail: serde_json::Value::Null,
        }
    }

    /// An event about a session, filled from its record.
    pub fn for_session(at: Timestamp, kind: AuditKind, s: &crate::session::Session) -> Self {
        AuditEvent {
            handle: Some(s.handle.to_string()),
            principal: Some(s.principal.to_string()),
            role: Some(s.role.clone()),
            client_ip: s.client_ip.clone(),
            user_agent: s.user_agent.as_deref().map(str::to_owned),
            last_activity_at: Some(s.last_activity_at),
            ..AuditEvent::new(at, kind)
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Audit query; every field narrows. Results are newest first, paged by `before_id`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub handle: Option<String>,
    pub kind: Option<AuditKind>,
    pub reason: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only events with `id < before_id` (pagination cursor).
    pub before_id: Option<i64>,
    /// Only events with `id > after_id` (for `--follow`); results then oldest first.
    pub after_id: Option<i64>,
    pub limit: usize,
}

impl AuditFilter {
    /// Whether an event passes this filter (ignores paging); stores without a query
    /// language use it.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| e.principal.as_ref() == Some(p))
            && self
                .handle
                .as_ref()
                .is_none_or(|h| e.handle.as_ref() == Some(h))
            && self.kind.is_none_or(|k| e.kind == k)
            && self
                .reason
                .as_ref()
                .is_none_or(|r| e.reason.as_ref() == Some(r))
            && self.since.is_none_or(|t| e.at >= t)
            && self.until.is_none_or(|t| e.at < t)
            && self.before_id.is_none_or(|id| e.id < id)
            && self.after_id.is_none_or(|id| e.id > id)
    }
}
