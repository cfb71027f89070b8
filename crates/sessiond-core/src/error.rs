//! The core's error types. Backends map their driver errors into [`StoreError`].

/// What can go wrong in a store, in the core's own terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or failed; callers answer 503 at once.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A sealed (encrypted) value failed authentication, or is not bound to where it was
    /// found (copied under another owner, replayed at another seq or version), or is
    /// unencrypted where encryption is required. Never served. The message names ids,
    /// never content.
    #[error("store integrity: {0}")]
    Integrity(String),
    /// A streamed body exceeded its size limit; nothing was written.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// A principal's attachment quota would be exceeded; nothing was written.
    #[error("quota of {quota} bytes exceeded")]
    QuotaExceeded { quota: u64 },
    /// The body stream failed (client went away); nothing was written.
    #[error("body stream failed: {0}")]
    Body(String),
}

/// Domain rule violations (bad input), independent of storage.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}
