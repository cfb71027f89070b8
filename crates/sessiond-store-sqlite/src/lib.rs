//! The embedded SQLite store: sessiond's default single-node backend.
//!
//! # Why rusqlite and not sqlx
//!
//! SQLite is an embedded, synchronous C library: there is no server to talk to and no
//! socket to wait on, so an async driver buys nothing. sqlx's SQLite driver itself runs
//! the library on a background thread per connection and adds a layer of channels.
//! rusqlite calls the library directly (statically linked with the `bundled` feature,
//! so the SQLite version is pinned and needs nothing from the host), and we decide the
//! threading ourselves:
//!
//! - every database call runs on tokio's blocking pool (`spawn_blocking`), never on an
//!   async worker thread;
//! - **one writer connection** behind a mutex: SQLite allows one writer at a time
//!   anyway, and serialising writes in-process means conditional writes (idempotent
//!   create, token CAS, draft seq, snapshot version) are decided inside one `BEGIN
//!   IMMEDIATE` transaction with no `SQLITE_BUSY` retries;
//! - **a few read-only connections** (WAL mode lets them read while the writer writes);
//! - `synchronous=FULL`, so a write is on disk (WAL fsynced) before it is acknowledged
//!   and survives SIGKILL or power loss; `busy_timeout` bounds the wait should another
//!   process hold the lock, after which the caller gets `StoreError::Unavailable` (503)
//!   rather than a hang.
//!
//! # Layout of `data_dir`
//!
//! - `sessiond.db` (+ `-wal`, `-shm`): every table; schema migrated on open
//!   ([`schema`], tracked in `PRAGMA user_version`).
//! - `blobs/<2-char prefix>/<blob_id>`: attachment bytes, written before the draft row
//!   that names them (see [`blobs`]); unreferenced leftovers are swept on open.
//!
//! No session token is ever stored, only its SHA-256.

pub mod blobs;
mod error;
mod rows;
pub mod schema;
mod store;

pub use blobs::SweepStats;
pub use error::SqliteError;

use blobs::Blobs;
use rusqlite::{Connection, OpenFlags};
use sessiond_core::StoreError;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "sessiond.db";

/// Tuning knobs for [`SqliteStore::open_with`]; [`SqliteStore::open`] uses the defaults.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Read-only connections (reads run in parallel on the blocking pool).
    pub readers: usize,
    /// How long a statement waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// Unreferenced blob files younger than this survive the open-time sweep (they may
    /// be uploads in flight in another process using the same directory).
    pub sweep_grace: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            busy_timeout: Duration::from_secs(2),
            sweep_grace: Duration::from_secs(600),
        }
    }
}

/// The SQLite-backed [`sessiond_core::Store`]. Clones share the same connections.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
    swept: SweepStats,
}

pub(crate) struct Db {
    /// The only connection that writes. A std mutex: it is held only on blocking-pool
    /// threads, for one transaction, never across an `.await`.
    writer: Mutex<Connection>,
    /// Read-only connections, picked round-robin; each behind its own mutex because a
    /// rusqlite `Connection` is not `Sync`.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    blobs: Blobs,
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic inside a transaction rolls it back when the Transaction drops, so the
    // connection itself is still sound.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn configure(conn: &Connection, opts: &SqliteOptions) -> Result<(), SqliteError> {
    conn.busy_timeout(opts.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrates the schema and
    /// sweeps crash leftovers from the blob directory. Blocking: from async code, call
    /// it inside `tokio::task::spawn_blocking`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, SqliteError> {
        Self::open_with(data_dir, SqliteOptions::default())
    }

    /// [`SqliteStore::open`] with explicit options.
    pub fn open_with(data_dir: &Path, opts: SqliteOptions) -> Result<SqliteStore, SqliteError> {
        let blob_root = data_dir.join("blobs");
        std::fs::create_dir_all(&blob_root).map_err(SqliteError::io(&blob_root))?;
        let db_path = data_dir.join(DB_FILE);

        let mut writer = Connection::open(&db_path)?;
        configure(&writer, &opts)?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(SqliteError::Corrupt(format!(
                "could not enable WAL mode (got {mode})"
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut writer)?;

        let readers = (0..opts.readers.max(1))
            .map(|_| {
                let c = Connection::open_with_flags(
                    &db_path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                configure(&c, &opts)?;
                Ok(Mutex::new(c))
            })
            .collect::<Result<Vec<_>, SqliteError>>()?;

        let blobs = Blobs::new(blob_root);
        let referenced = referenced_blobs(&writer)?;
        let swept = blobs.sweep(&referenced, opts.sweep_grace)?;
        if swept.removed > 0 {
            tracing::info!(
                removed = swept.removed,
                kept = swept.kept,
                "swept leftover attachment files"
            );
        }
        Ok(SqliteStore {
            db: Arc::new(Db {
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                blobs,
            }),
            swept,
        })
    }

    /// What the open-time blob sweep did.
    pub fn sweep_stats(&self) -> SweepStats {
        self.swept
    }

    /// Where attachment bytes live (for operators and tests).
    pub fn blob_dir(&self) -> PathBuf {
        self.db.blobs.root().to_path_buf()
    }

    /// Runs `f` on the writer connection on the blocking pool.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Blobs) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        blocking(move || f(&mut lock(&db.writer), &db.blobs)).await
    }

    /// Runs `f` on a reader connection on the blocking pool.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Blobs) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let i = db.next_reader.fetch_add(1, Ordering::Relaxed) % db.readers.len();
            f(&lock(&db.readers[i]), &db.blobs)
        })
        .await
    }

    pub(crate) fn blobs(&self) -> &Blobs {
        &self.db.blobs
    }
}

/// Every blob id some draft row names.
fn referenced_blobs(conn: &Connection) -> Result<HashSet<String>, SqliteError> {
    let mut st = conn.prepare("SELECT attachments FROM drafts WHERE attachments != '[]'")?;
    let mut ids = HashSet::new();
    for json in st.query_map([], |r| r.get::<_, String>(0))? {
        let atts: Vec<sessiond_core::draft::AttachmentMeta> = serde_json::from_str(&json?)?;
        ids.extend(atts.into_iter().map(|a| a.blob_id));
    }
    Ok(ids)
}

/// Runs blocking work on tokio's blocking pool, mapping errors into the core's terms.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SqliteError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(StoreError::from),
        Err(e) => Err(SqliteError::Task(e.to_string()).into()),
    }
}
