//! The WAL checkpointer: copies committed pages from the WAL into the database file on a
//! thread and connection of its own, so the writer's commits do not wait for it.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses its threshold, on
//! the committing connection. With one writer that is every group commit's thread: each
//! checkpoint (a write of every page the WAL holds, then an fsync of the database file)
//! held up the group that triggered it and every write queued behind it. Here the writer
//! only flags that it committed; this thread runs a `PASSIVE` checkpoint (it never blocks
//! the writer or a reader) at most every `SqliteOptions::checkpoint_every`, on the other
//! core. Durability is unchanged: a write is acknowledged once its WAL frames are
//! fsynced, whether or not a checkpoint has copied them yet.
//!
//! Should this thread fall behind (or its connection fail), the writer's own automatic
//! checkpoint, set to [`FALLBACK_PAGES`], still bounds the WAL.

use crate::error::SqliteError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The writer's own automatic checkpoint threshold (pages) while this thread runs: ten
/// times SQLite's default, reached only if the checkpointer falls that far behind.
pub(crate) const FALLBACK_PAGES: i64 = 10_000;

/// What the writer and the thread share.
#[derive(Default)]
pub(crate) struct Signal {
    /// Set by the writer after a commit, cleared by the thread before it checkpoints.
    committed: AtomicBool,
    closed: Mutex<bool>,
    wake: Condvar,
    checkpoints: AtomicU64,
    /// The WAL's pages and how many of them were in the database file after the last
    /// checkpoint (packed: high 32 bits the first).
    #[cfg(test)]
    last: AtomicU64,
}

impl Signal {
    /// Called by the writer after each commit: wakes the thread if it was not already due.
    pub(crate) fn committed(&self) {
        if !self.committed.swap(true, Ordering::AcqRel) {
            // Taking the lock orders this with the thread's check-then-wait: without it the
            // wake-up could fall between the two and be lost, and with the flag left set
            // no later commit would send another.
            drop(self.closed.lock().unwrap_or_else(|e| e.into_inner()));
            self.wake.notify_one();
        }
    }

    /// Checkpoints run so far.
    #[cfg(test)]
    fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Acquire)
    }
}

/// The thread; dropping it stops the thread (after at most one checkpoint in progress).
pub(crate) struct Checkpointer {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the thread's connection to `db_path` and starts it.
    pub(crate) fn start(
        db_path: &Path,
        every: Duration,
        busy_timeout: Duration,
    ) -> Result<Checkpointer, SqliteError> {
        let conn = Connection::open(db_path)?;
        conn.busy_timeout(busy_timeout)?;
        // This connection never writes a row; it must not checkpoint on its own either.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let signal = Arc::new(Signal::default());
        let s = signal.clone();
        let thread = std::thread::Builder::new()
            .name("sessiond-sqlite-checkpoint".into())
            .spawn(move || run(&s, &conn, every))
            .map_err(SqliteError::io("sessiond-sqlite-checkpoint thread"))?;
        Ok(Checkpointer {
            signal,
            thread: Some(thread),
        })
    }

    pub(crate) fn signal(&self) -> Arc<Signal> {
        self.signal.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self.signal.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.signal.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(signal: &Signal, conn: &Connection, every: Duration) {
    let mut last = Instant::now();
    loop {
        // Sleep until the writer commits (or the store closes).
        {
            let mut closed = signal.closed.lock().unwrap_or_else(|e| e.into_inner());
            while !*closed && !signal.committed.load(Ordering::Acquire) {
                closed = signal.wake.wait(closed).unwrap_or_else(|e| e.into_inner());
            }
            if *closed {
                return;
            }
        }
        // At most one checkpoint per interval: the pages of many commits are copied (and
        // the database file fsynced) once.
        let due = last + every;
        let now = Instant::now();
        if due > now {
            let closed = signal.closed.lock().unwrap_or_else(|e| e.into_inner());
            let (closed, _) = signal
                .wake
                .wait_timeout_while(closed, due - now, |c| !*c)
                .unwrap_or_else(|e| e.into_inner());
            if *closed {
                return;
            }
        }
        signal.committed.store(false, Ordering::Release);
        last = Instant::now();
        checkpoint(signal, conn, last);
    }
}

/// One `PASSIVE` checkpoint: copies what no reader still needs from the WAL.
fn checkpoint(signal: &Signal, conn: &Connection, started: Instant) {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((_busy, _wal_pages, copied)) => {
            #[cfg(test)]
            signal.last.store(
                ((_wal_pages as u64) << 32) | (copied as u64 & 0xffff_ffff),
                Ordering::Release,
            );
            signal.checkpoints.fetch_add(1, Ordering::AcqRel);
            metrics::histogram!("sessiond_store_checkpoint_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("sessiond_store_checkpoint_pages_total")
                .increment(copied.max(0) as u64);
        }
        // The next commit brings the thread back; meanwhile the writer's own automatic
        // checkpoint bounds the WAL.
        Err(e) => tracing::warn!(error = %e, "sqlite checkpoint failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh database in WAL mode and a connection to it (the writer's part).
    fn wal_db() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        (dir, path, writer)
    }

    #[test]
    fn commits_are_checkpointed_by_the_thread_within_its_interval() {
        let (_dir, path, writer) = wal_db();
        writer
            .pragma_update(None, "wal_autocheckpoint", FALLBACK_PAGES)
            .unwrap();
        writer.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let cp =
            Checkpointer::start(&path, Duration::from_millis(20), Duration::from_secs(1)).unwrap();
        let signal = cp.signal();
        for _ in 0..50 {
            writer
                .execute("INSERT INTO t VALUES (randomblob(2000))", [])
                .unwrap();
            signal.committed();
        }
        let t0 = Instant::now();
        while signal.checkpoints() == 0 || signal.committed.load(Ordering::Acquire) {
            assert!(t0.elapsed() < Duration::from_secs(5), "no checkpoint ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(cp); // waits for a checkpoint in progress
        let last = signal.last.load(Ordering::Acquire);
        let (wal, copied) = (last >> 32, last & 0xffff_ffff);
        assert!(wal > 0, "the writes went to the WAL");
        assert_eq!(
            copied, wal,
            "the thread copied every committed page into the database"
        );
    }

    #[test]
    fn the_thread_sleeps_without_commits_and_stops_when_dropped() {
        let (_dir, path, _writer) = wal_db();
        let cp =
            Checkpointer::start(&path, Duration::from_millis(1), Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(cp.signal().checkpoints(), 0, "no commit, no checkpoint");
        let t0 = Instant::now();
        drop(cp);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
