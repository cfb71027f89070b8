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
//! - **one writer connection** on a thread of its own ([`writer`]): SQLite allows one
//!   writer at a time anyway, and serialising writes in-process means conditional writes
//!   (idempotent create, token CAS, draft seq, snapshot version) are decided inside one
//!   `BEGIN IMMEDIATE` transaction with no `SQLITE_BUSY` retries. Writes that queue up
//!   while a commit is on its way to disk share the next transaction and its fsync
//!   (group commit; a write that fails is undone alone), and each caller is answered
//!   only after the commit that holds its write;
//! - **a few read-only connections** (WAL mode lets them read while the writer writes);
//! - **a checkpoint thread** with a connection of its own, which copies committed pages
//!   from the WAL into the database file at most every
//!   [`SqliteOptions::checkpoint_every`], so no commit waits for a checkpoint (SQLite's
//!   automatic one runs inside the committing `COMMIT`, on the writer's thread);
//! - **a bounded queue with a deadline** in front of both ([`SqliteOptions::deadline`],
//!   [`SqliteOptions::max_waiting`]): callers wait for a connection as async tasks (not
//!   blocking threads, so the blocking pool holds at most one writer and the readers), in
//!   FIFO order; a call that cannot start within the deadline, or finds the queue full,
//!   fails at once with `StoreError::Unavailable` (503) instead of waiting behind a write
//!   flood or a slow fsync. A call that has started always runs to its end, so nothing
//!   acknowledged is lost and nothing is half-done;
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
//! No session token is ever stored, only its hash (a time prefix, then SHA-256:
//! [`sessiond_core::TokenHash`]). [`backup()`] copies the whole
//! directory consistently while a server runs (`sessiond backup`).

pub mod backup;
pub mod blobs;
mod checkpointer;
mod error;
mod rows;
pub mod schema;
mod store;
mod writer;

pub use backup::{backup, BackupReport};
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
use tokio::sync::Semaphore;

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
    /// Longest wait for a connection (the writer, or a free reader); a call that
    /// cannot start within it fails with `StoreError::Unavailable`.
    pub deadline: Duration,
    /// Calls that may wait for a connection at once (writers and readers counted
    /// apart); one more fails at once with `StoreError::Unavailable`.
    pub max_waiting: usize,
    /// Most writes one group transaction takes (they share its commit and fsync); it
    /// bounds how long the first of them waits for its answer. 1: one transaction per
    /// write, as without group commit (the benchmarks compare the two).
    pub max_group: usize,
    /// Shortest time between two WAL checkpoints, which a thread of their own runs after
    /// commits (the `checkpointer` module). `None`: SQLite checkpoints inside the commits that
    /// cross its default 1000-page threshold, on the writer's thread.
    pub checkpoint_every: Option<Duration>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            busy_timeout: Duration::from_secs(2),
            sweep_grace: Duration::from_secs(600),
            deadline: Duration::from_secs(1),
            max_waiting: 1024,
            max_group: 256,
            checkpoint_every: Some(Duration::from_millis(100)),
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
    /// The thread that owns the only connection that writes.
    writer: writer::Writer,
    /// Copies the WAL into the database file off the writer's thread. Declared after the
    /// writer, so it is dropped (and its thread joined) after the writer's last commit.
    _checkpointer: Option<checkpointer::Checkpointer>,
    /// Read-only connections; each behind its own mutex because a rusqlite
    /// `Connection` is not `Sync`. `reader_slots` has one permit per reader, so a job
    /// holding a permit always finds one of them free.
    readers: Vec<Mutex<Connection>>,
    reader_slots: Arc<Semaphore>,
    next_reader: AtomicUsize,
    readers_waiting: AtomicUsize,
    deadline: Duration,
    max_waiting: usize,
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
        // A write run in a savepoint (see `writer`) has a sub-journal holding a copy of
        // each page it touches: in memory that is a copy; in a temp file it was two
        // syscalls a page. It lives for one savepoint, so it stays small.
        writer.pragma_update(None, "temp_store", "MEMORY")?;
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
        let reader_slots = Arc::new(Semaphore::new(readers.len()));
        let checkpointer = match opts.checkpoint_every {
            Some(every) => {
                writer.pragma_update(None, "wal_autocheckpoint", checkpointer::FALLBACK_PAGES)?;
                Some(checkpointer::Checkpointer::start(
                    &db_path,
                    every,
                    opts.busy_timeout,
                )?)
            }
            None => None,
        };
        let signal = checkpointer.as_ref().map(|c| c.signal());
        let writer = writer::Writer::start(writer, blobs.clone(), &opts, signal)?;
        Ok(SqliteStore {
            db: Arc::new(Db {
                writer,
                _checkpointer: checkpointer,
                readers,
                reader_slots,
                next_reader: AtomicUsize::new(0),
                readers_waiting: AtomicUsize::new(0),
                deadline: opts.deadline,
                max_waiting: opts.max_waiting.max(1),
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

    /// Runs `f` alone on the writer connection (it manages its own transaction), once
    /// the writer takes it (within the deadline). For writes with effects outside the
    /// database that must wait for their own commit.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Blobs) -> Result<T, SqliteError> + Send + 'static,
    {
        let timer = CallTimer::start::<F>();
        timer.done(self.db.writer.solo(f).await)
    }

    /// Runs `f` in the writer's next group transaction: it shares that commit (and
    /// fsync) with the writes queued beside it, and returns once the commit is on disk.
    /// An error from `f` undoes `f`'s changes only. `f` may run twice (a failing write
    /// in its group sends the group round again, each write in a savepoint), so it must
    /// depend only on its arguments and the database.
    pub(crate) async fn write_grouped<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, SqliteError> + Send + 'static,
    {
        let timer = CallTimer::start::<F>();
        timer.done(self.db.writer.grouped(f).await)
    }

    /// Runs `f` on a free reader connection on the blocking pool (within the deadline).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Blobs) -> Result<T, SqliteError> + Send + 'static,
    {
        let timer = CallTimer::start::<F>();
        timer.done(self.read_now(f).await)
    }

    async fn read_now<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Blobs) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let slots = db.reader_slots.clone().acquire_owned();
        let permit = Queue::Reader
            .admit(&db, async move {
                slots.await.expect("reader slots never close")
            })
            .await?;
        blocking(move || {
            let n = db.readers.len();
            let start = db.next_reader.fetch_add(1, Ordering::Relaxed);
            // The permit guarantees a free reader; try_lock finds it without blocking.
            let conn = (0..n)
                .find_map(|k| db.readers[(start + k) % n].try_lock().ok())
                .unwrap_or_else(|| lock(&db.readers[start % n]));
            let r = f(&conn, &db.blobs);
            drop(conn);
            drop(permit);
            r
        })
        .await
    }

    /// Calls waiting for the writer now (for tests and operators).
    pub fn writers_waiting(&self) -> usize {
        self.db.writer.waiting()
    }

    /// Whether a write is running now (for tests and operators).
    pub fn writer_busy(&self) -> bool {
        self.db.writer.busy()
    }

    /// Group transactions the writer has committed since open (for tests and
    /// operators; `sessiond_store_group_commits_total` counts the same in metrics).
    pub fn group_commits(&self) -> u64 {
        self.db.writer.commits()
    }

    pub(crate) fn blobs(&self) -> &Blobs {
        &self.db.blobs
    }
}

/// The waiting line in front of the read connections (the writer's is in [`writer`]).
#[derive(Clone, Copy)]
enum Queue {
    Reader,
}

impl Queue {
    fn name(self) -> &'static str {
        match self {
            Queue::Reader => "reader",
        }
    }

    fn waiting(self, db: &Db) -> &AtomicUsize {
        match self {
            Queue::Reader => &db.readers_waiting,
        }
    }

    /// Waits for `acquire` (a connection) at most the deadline, as one of at most
    /// `max_waiting` waiters; otherwise fails at once with `Unavailable`.
    async fn admit<G>(
        self,
        db: &Db,
        acquire: impl std::future::Future<Output = G>,
    ) -> Result<G, StoreError> {
        let waiting = self.waiting(db);
        let depth = waiting.fetch_add(1, Ordering::AcqRel) + 1;
        // Decremented on every exit, the caller's cancellation included.
        let _left = Leave(waiting, self);
        metrics::gauge!("sessiond_store_queue_depth", "queue" => self.name()).set(depth as f64);
        if depth > db.max_waiting {
            return Err(self.reject("full", format!("{} waiting", db.max_waiting)));
        }
        match tokio::time::timeout(db.deadline, acquire).await {
            Ok(g) => Ok(g),
            Err(_) => Err(self.reject("deadline", format!("not started within {:?}", db.deadline))),
        }
    }

    fn reject(self, why: &'static str, detail: String) -> StoreError {
        metrics::counter!("sessiond_store_rejected_total", "queue" => self.name(), "reason" => why)
            .increment(1);
        StoreError::Unavailable(format!("sqlite {} queue: {detail}", self.name()))
    }
}

/// Leaves a queue when dropped.
struct Leave<'a>(&'a AtomicUsize, Queue);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let depth = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("sessiond_store_queue_depth", "queue" => self.1.name()).set(depth as f64);
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

/// Times one store call, queue wait included, into `sessiond_store_call_seconds`
/// labelled with the store method's name.
struct CallTimer {
    op: &'static str,
    started: std::time::Instant,
}

impl CallTimer {
    /// `F` is the closure a store method hands to `read`/`write`; its type name is the
    /// method's path (`...::SqliteStore>::create_session::{{closure}}::{{closure}}`),
    /// so every method, including ones added later, is labelled without naming itself
    /// twice. The label set stays bounded: one per method.
    fn start<F>() -> CallTimer {
        CallTimer {
            op: op_name(std::any::type_name::<F>()),
            started: std::time::Instant::now(),
        }
    }

    fn done<T>(self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        metrics::histogram!("sessiond_store_call_seconds", "backend" => "sqlite", "op" => self.op)
            .record(self.started.elapsed().as_secs_f64());
        r
    }
}

/// The method name in a closure's type name: the last path segment that is a plain
/// identifier once its generic arguments are cut (closure and async-block segments, `{{closure}}` or `{closure#0}`
/// depending on the compiler, are skipped).
fn op_name(type_name: &'static str) -> &'static str {
    type_name
        .rsplit("::")
        .find(|seg| !seg.starts_with('{'))
        // The method's generic (lifetime) arguments, `create_session<'_, '_>`.
        .and_then(|seg| seg.split('<').next())
        .filter(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or("other")
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

#[cfg(test)]
mod tests {
    use super::op_name;

    #[test]
    fn op_names_come_from_the_store_method() {
        assert_eq!(
            op_name("sessiond_store_sqlite::store::<impl sessiond_core::store::sessions::SessionStore for sessiond_store_sqlite::SqliteStore>::create_session::{{closure}}::{{closure}}"),
            "create_session"
        );
        assert_eq!(op_name("a::b::ping::{{closure}}"), "ping");
        assert_eq!(
            op_name("s::<impl a::AuditStore for s::SqliteStore>::append_audit<'_, '_, '_>::{{closure}}::{{closure}}"),
            "append_audit"
        );
        assert_eq!(op_name("a::b::touch::{closure#0}::{closure#0}"), "touch");
        assert_eq!(op_name("{{closure}}"), "other");
        assert_eq!(op_name("a::<b as c>::{{closure}}"), "other");
    }
}
