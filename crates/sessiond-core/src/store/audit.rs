//! The audit capability: an append-only event log.

use super::Result;
use crate::audit::{AuditEvent, AuditFilter};
use crate::clock::Timestamp;

/// The audit log.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends an event and returns its id (monotonic per store).
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64>;
    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>>;
    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize>;
}
