//! The Redis store's error enum and its mapping into the core's [`StoreError`].

use sessiond_core::StoreError;
use std::time::Duration;

/// What can go wrong inside the Redis store.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The configuration cannot work (bad URL, bad prefix); found at start-up.
    #[error("invalid redis configuration: {0}")]
    Config(String),
    /// The driver failed: connection refused or lost, server error, script error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time (down, partitioned, overloaded).
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Fewer replicas than `min_replicas` acknowledged a write within the replica
    /// timeout; the primary may have applied it.
    #[error("{acked} of {wanted} replicas acknowledged the write in time")]
    Replicas { acked: i64, wanted: u32 },
    /// The keyspace was written with another key layout or bucket count; found at
    /// start-up, before anything is written.
    #[error("{0}")]
    Layout(String),
    /// A stored value could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A caller-supplied step (the sign-in merge rule) refused; passed through as is.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<serde_json::Error> for RedisError {
    fn from(e: serde_json::Error) -> Self {
        RedisError::Corrupt(e.to_string())
    }
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Store(e) => e,
            RedisError::Corrupt(m) => StoreError::Corrupt(m),
            // A reply of the wrong shape means the keyspace holds something we did not
            // write: corruption, not an outage.
            RedisError::Redis(e) if e.kind() == redis::ErrorKind::TypeError => {
                StoreError::Corrupt(e.to_string())
            }
            // Everything else (refused, reset, timed out, failing over, loading, OOM)
            // means "cannot serve now": answered with 503 at once.
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}
