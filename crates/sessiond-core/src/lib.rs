//! sessiond's domain core: the session model and its rules, with no IO.
//!
//! Backends (`sessiond-store-*`) implement the [`store`] capability traits; the server
//! drives the lifecycle with the pure functions in [`lifecycle`] and the timer in
//! [`timer`].
//! Time always comes from a [`clock::Clock`] so tests can control it.

pub mod audit;
pub mod clock;
pub mod cluster;
pub mod draft;
pub mod error;
pub mod intern;
pub mod lifecycle;
pub mod outbox;
pub mod policy;
pub mod quota;
pub mod rooms;
pub mod session;
pub mod snapshot;
pub mod store;
pub mod timer;
pub mod token;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{CoreError, StoreError};
pub use session::{EndReason, Principal, Session, SessionState};
pub use store::{AuditStore, DraftStore, SessionStore, SnapshotStore, Store};
pub use token::{Handle, Token, TokenHash};
