//! The audit capability: an append-only event log, and the webhook outbox that reads it
//! (per-endpoint cursors, the deliverer's lease, dead letters).

use super::Result;
use crate::audit::{AuditEvent, AuditFilter};
use crate::clock::Timestamp;
use crate::outbox::DeadLetter;

/// The audit log and its outbox.
///
/// The outbox methods exist so that exactly one node delivers webhooks and a crash loses
/// nothing: the deliverer holds the lease (renewed well inside its time to live), reads
/// events after its endpoint's cursor, and advances the cursor only with the fence its
/// lease was granted. A node that lost the lease (paused, partitioned) can no longer move
/// a cursor, so the new holder's view of what was delivered is never overwritten.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends an event and returns its id (monotonic per store).
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64>;
    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>>;
    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize>;

    /// Takes or renews the outbox lease for `holder` until `now + ttl_ms`. Returns the
    /// lease's fence when `holder` holds it afterwards, `None` when another holder's
    /// lease is still running. The fence grows each time the lease changes hands (and
    /// stays the same on a renewal by the same holder).
    async fn acquire_outbox_lease(
        &self,
        holder: &str,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<u64>>;
    /// Gives the lease up if `holder` holds it (a clean shutdown), so another node takes
    /// over without waiting out the time to live.
    async fn release_outbox_lease(&self, holder: &str) -> Result<()>;
    /// The id of the last event delivered (or dead-lettered) to `endpoint`; `None` before
    /// the endpoint's first event.
    async fn outbox_cursor(&self, endpoint: &str) -> Result<Option<i64>>;
    /// Moves `endpoint`'s cursor from `from` to `to` if it still reads `from` and `fence`
    /// is the lease's current fence. `false` (nothing written) otherwise.
    async fn advance_outbox_cursor(
        &self,
        endpoint: &str,
        fence: u64,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool>;
    /// Inserts or replaces the dead letter `(d.endpoint, d.event.id)`.
    async fn put_dead_letter(&self, d: &DeadLetter) -> Result<()>;
    /// One dead letter.
    async fn get_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<Option<DeadLetter>>;
    /// `endpoint`'s dead letters with an event id above `after_id`, by event id, at most
    /// `limit` (0: no limit).
    async fn list_dead_letters(
        &self,
        endpoint: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>>;
    /// Removes a dead letter; `true` when it existed.
    async fn delete_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<bool>;
    /// How many dead letters `endpoint` has.
    async fn count_dead_letters(&self, endpoint: &str) -> Result<u64>;
}
