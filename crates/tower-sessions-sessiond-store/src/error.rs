//! The crate's one error type, and its mapping onto tower-sessions' store error.

use sessiond_core::StoreError;
use tower_sessions_core::session_store;

/// What can go wrong opening a [`SessiondStore`](crate::SessiondStore) or using it.
///
/// Inside tower-sessions every variant surfaces as a
/// [`session_store::Error`]: [`Error::Corrupt`] as `Decode`, the rest as `Backend`
/// (the layer answers 500 when a save fails; a failed load reaches the handler as the
/// error of `Session::get`, which the application maps, e.g. to 503).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQLite store could not be opened (path, permissions, newer schema).
    #[error("sqlite store: {0}")]
    Sqlite(#[from] sessiond_store_sqlite::SqliteError),
    /// The Redis store could not be configured or reached at start-up.
    #[error("redis store: {0}")]
    Redis(#[from] sessiond_store_redis::RedisError),
    /// The store failed or could not be reached (an outage: retry later).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A setting was refused: an unknown role, invalid policies.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A stored record could not be decoded.
    #[error("stored session record is corrupt: {0}")]
    Corrupt(String),
    /// Concurrent saves of one session kept winning over this one; nothing was written.
    #[error("{attempts} attempts to save a session lost to concurrent saves; nothing was written")]
    Contended {
        /// How many compare-and-set attempts were made.
        attempts: usize,
    },
    /// No unused session id was found (the random 128-bit ids kept colliding).
    #[error("no free session id after {0} attempts")]
    IdExhausted(usize),
    /// The blocking task opening the SQLite store failed.
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<Error> for session_store::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Corrupt(m) => session_store::Error::Decode(m),
            other => session_store::Error::Backend(other.to_string()),
        }
    }
}
