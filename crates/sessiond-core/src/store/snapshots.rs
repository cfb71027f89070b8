//! The snapshot capability: one versioned blob per room.

use super::Result;
use crate::clock::Timestamp;
use crate::quota::SnapshotUsage;
use crate::snapshot::{Snapshot, SnapshotWrite};

/// A snapshot write (see [`SnapshotStore::put_snapshot`]).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPut<'a> {
    pub room: &'a str,
    /// The version the write expects (0 when there is none); it stores `+ 1`.
    pub expected_version: u64,
    pub data: &'a [u8],
    pub content_type: &'a str,
    /// Who wrote it (a principal): the record, and what [`SnapshotStore::snapshot_usage`]
    /// counts.
    pub by: Option<&'a str>,
    /// When it may be purged (`None`: keep while the room is in use).
    pub retain_until: Option<Timestamp>,
    pub now: Timestamp,
}

/// Room snapshots.
#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// The room's snapshot with its data.
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>>;
    /// Stores `put.data` as version `put.expected_version + 1` if `expected_version` is
    /// current (0 when none). Atomic: readers see the old or the new snapshot, never a mix.
    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<SnapshotWrite>;
    /// How many current snapshots were last written `by` (see [`SnapshotPut::by`]), and
    /// their total size, other than the one of `except_room`.
    async fn snapshot_usage(&self, by: &str, except_room: &str) -> Result<SnapshotUsage>;
    /// Sets when the snapshot may be purged (`None`: keep while the room is in use).
    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()>;
    /// Purges snapshots whose `retain_until` is `<= now`.
    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize>;
}
