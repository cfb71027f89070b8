//! The SQLite store's error enum and its mapping into the core's [`StoreError`].

use sessiond_core::StoreError;
use std::path::PathBuf;

/// What can go wrong inside the SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored value could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A caller-supplied step (the sign-in merge rule) refused; passed through as is.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The database was written by a newer sessiond; refusing to touch it.
    #[error("database schema version {found} is newer than this build supports ({known})")]
    NewerSchema { found: i64, known: i64 },
    /// An online backup refused or failed (the reason is for the operator).
    #[error("backup: {0}")]
    Backup(String),
    /// A blocking worker thread panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Task(String),
}

impl SqliteError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SqliteError {
        let path = path.into();
        move |source| SqliteError::Io { path, source }
    }
}

impl From<serde_json::Error> for SqliteError {
    fn from(e: serde_json::Error) -> Self {
        SqliteError::Corrupt(e.to_string())
    }
}

impl From<SqliteError> for StoreError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Store(e) => e,
            // Undecodable rows are corruption; everything else (busy/locked database,
            // disk full, IO failure, a dead worker) means "cannot serve now": 503.
            SqliteError::Corrupt(m) => StoreError::Corrupt(m),
            SqliteError::Sqlite(
                e @ (rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)),
            ) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}
