//! The storage contract every backend implements (memory, SQLite, Redis), split by
//! capability: [`SessionStore`] (sessions, their data bag, idempotency), [`AuditStore`],
//! [`DraftStore`] and [`SnapshotStore`]. [`Store`] is their sum, so `Arc<dyn Store>`
//! stays the one handle the server passes around, while a decorator implements only
//! the capability it changes and takes the rest from [`StoreParts`].
//!
//! Every method is atomic on its own; conditional writes (idempotent create, token CAS,
//! draft seq, snapshot version, ending) are decided inside the store so that concurrent
//! callers, on one node or many, see exactly one winner. The conformance suite in
//! `sessiond-testkit` holds each backend to this contract.

mod audit;
mod drafts;
mod parts;
mod sessions;
mod snapshots;

pub use audit::AuditStore;
pub use drafts::{plain_merge, AttachmentPut, DraftStore, MergeRule};
pub use parts::StoreParts;
pub use sessions::{
    CreateOutcome, DraftMove, Expiring, Expiry, IdempotencyRecord, SessionFilter, SessionStore,
    Touch,
};
pub use snapshots::{SnapshotPut, SnapshotStore};

use crate::error::StoreError;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;

/// The four capability traits, so a caller brings every store method into scope with
/// one `use sessiond_core::store::prelude::*;`.
pub mod prelude {
    pub use super::{AuditStore, DraftStore, SessionStore, SnapshotStore, Store};
}

/// A streamed body (attachment upload or download). Bounded by the caller's limits.
pub type ByteStream =
    Pin<Box<dyn futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A whole store: every capability. Implemented for anything that has all four, so a
/// backend (or [`StoreParts`]) never implements it by hand.
pub trait Store: SessionStore + AuditStore + DraftStore + SnapshotStore {
    /// The store as its four capabilities, to replace some of them (see [`StoreParts`]).
    /// A method rather than trait upcasting because the workspace's MSRV (1.85)
    /// predates `Arc<dyn Store>` → `Arc<dyn SessionStore>` coercion.
    fn split(self: Arc<Self>) -> StoreParts;
}

impl<T: SessionStore + AuditStore + DraftStore + SnapshotStore> Store for T {
    fn split(self: Arc<Self>) -> StoreParts {
        StoreParts {
            sessions: self.clone(),
            audit: self.clone(),
            drafts: self.clone(),
            snapshots: self,
        }
    }
}
