//! The single writer thread and its group commit: concurrent writes share one
//! transaction and one WAL fsync, and each caller is answered only after that commit.
//!
//! # Why a thread of its own
//!
//! With `synchronous=FULL` every commit waits for an fsync of the WAL, which costs far
//! more than the few row changes a write makes. One transaction per write therefore
//! caps writes at the disk's fsync rate, however many callers wait. The writer thread
//! instead takes every write queued while the previous commit was on its way to disk
//! (up to `SqliteOptions::max_group`), runs them in one `BEGIN IMMEDIATE` transaction
//! and commits once: the fsync is shared, the durability promise is not weakened
//! (nobody hears "done" before the commit that holds their write is on disk).
//!
//! - A write that fails (a constraint, a refusing trigger) is undone alone; the others
//!   in the group still commit. The writes first run bare; if one fails, the group is
//!   rolled back and runs again with a `SAVEPOINT` per write ([`commit_group`]).
//! - Should SQLite abandon the whole transaction (a full disk or an IO error does), every
//!   write of the group so far is answered `Unavailable` and the rest start a new one.
//! - A write that must act outside the database after its commit (unlinking attachment
//!   files) runs alone, in its own transaction, between groups ([`Job::Solo`]).
//! - The queue keeps the store's overload promise: at most `max_waiting` writes wait,
//!   and a write not started within the deadline is withdrawn and fails at once. Once
//!   taken into a group, a write runs to its end even if its caller has gone.

use crate::blobs::Blobs;
use crate::checkpointer::Signal;
use crate::error::SqliteError;
use rusqlite::Connection;
use sessiond_core::StoreError;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

/// A write that runs alone on the connection (answering its caller itself).
type SoloJob = Box<dyn FnOnce(&mut Connection, &Blobs) + Send>;

/// A write waiting for the writer thread.
enum Job {
    /// Shares the group transaction (see [`commit_group`]).
    Grouped(Box<dyn GroupedJob>),
    /// Runs alone on the connection, managing its own transaction.
    Solo(SoloJob),
}

trait GroupedJob: Send {
    /// Runs the write on the open group transaction and keeps its result for the
    /// answer; false if it failed. In a savepoint a failure undoes this write alone;
    /// bare (the fast path) it may leave part of the write, so the caller rolls back.
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool;
    /// Sends the write's result now that its transaction has committed (`Ok`) or not.
    fn settle(self: Box<Self>, commit: Result<(), &str>);
    /// Answers without running (the group transaction could not begin).
    fn fail(self: Box<Self>, why: &str);
}

struct Pending<T, F> {
    f: F,
    tx: oneshot::Sender<Result<T, StoreError>>,
    /// The last run's result (a write may run twice: see [`commit_group`]).
    result: Option<Result<T, SqliteError>>,
}

impl<T, F> GroupedJob for Pending<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T, SqliteError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection, savepoint: bool) -> bool {
        let result = if savepoint {
            in_savepoint(conn, &self.f)
        } else {
            guarded(conn, &self.f)
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn settle(self: Box<Self>, commit: Result<(), &str>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(SqliteError::Task("a write never ran".to_owned())));
        let answer = match (result, commit) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(why)) => Err(StoreError::Unavailable(why.to_owned())),
            // Rolled back already: its own error says why.
            (Err(e), _) => Err(e.into()),
        };
        // A caller that went away no longer needs the answer.
        let _ = self.tx.send(answer);
    }

    fn fail(self: Box<Self>, why: &str) {
        let _ = self.tx.send(Err(StoreError::Unavailable(why.to_owned())));
    }
}

/// Runs `f`, turning a panic into an error so that the writer thread survives it.
fn guarded<T>(
    conn: &Connection,
    f: impl Fn(&Connection) -> Result<T, SqliteError>,
) -> Result<T, SqliteError> {
    catch_unwind(AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(SqliteError::Task("a write panicked".to_owned())))
}

/// Runs `f` between `SAVEPOINT` and `RELEASE`, undoing only its own changes on error
/// (or panic).
fn in_savepoint<T>(
    conn: &Connection,
    f: impl Fn(&Connection) -> Result<T, SqliteError>,
) -> Result<T, SqliteError> {
    conn.execute_batch("SAVEPOINT w")?;
    match guarded(conn, f) {
        Ok(v) => {
            if let Err(e) = conn.execute_batch("RELEASE w") {
                undo(conn);
                return Err(e.into());
            }
            Ok(v)
        }
        Err(e) => {
            undo(conn);
            Err(e)
        }
    }
}

fn undo(conn: &Connection) {
    // Fails only when SQLite already dropped the whole transaction; the group loop
    // sees that (autocommit is back on) and answers the group accordingly.
    let _ = conn.execute_batch("ROLLBACK TO w; RELEASE w");
}

struct Queued {
    state: Arc<AtomicU8>,
    job: Job,
}

struct Shared {
    queue: Mutex<Inner>,
    max_group: usize,
    ready: Condvar,
    /// Writes queued and not yet taken or withdrawn.
    waiting: AtomicUsize,
    busy: AtomicBool,
    commits: AtomicU64,
}

struct Inner {
    jobs: VecDeque<Queued>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing runs under this lock that can panic halfway through a change.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_depth(&self, depth: usize) {
        metrics::gauge!("sessiond_store_queue_depth", "queue" => "writer").set(depth as f64);
    }

    /// Takes a write out of the queue count, for whoever wins it (writer or caller).
    fn claim(&self, state: &AtomicU8, to: u8) -> bool {
        let won = state
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if won {
            let depth = self.waiting.fetch_sub(1, Ordering::AcqRel) - 1;
            self.set_depth(depth);
        }
        won
    }
}

/// The handle the store keeps; dropping it lets the thread finish the queue and exit.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    deadline: Duration,
    max_waiting: usize,
}

impl Writer {
    /// `after_commit` (the checkpointer's) hears of every transaction the thread ends.
    pub(crate) fn start(
        conn: Connection,
        blobs: Blobs,
        opts: &crate::SqliteOptions,
        after_commit: Option<Arc<Signal>>,
    ) -> Result<Writer, SqliteError> {
        let shared = Arc::new(Shared {
            max_group: opts.max_group.max(1),
            queue: Mutex::new(Inner {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            waiting: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sessiond-sqlite-writer".into())
            .spawn(move || run(&s, conn, &blobs, after_commit.as_deref()))
            .map_err(SqliteError::io("sessiond-sqlite-writer thread"))?;
        Ok(Writer {
            shared,
            thread: Some(thread),
            deadline: opts.deadline,
            max_waiting: opts.max_waiting.max(1),
        })
    }

    /// Queues a write that shares the group transaction and waits for its answer.
    pub(crate) async fn grouped<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job = Pending {
            f,
            tx,
            result: None,
        };
        self.submit(Job::Grouped(Box::new(job)), rx).await
    }

    /// Queues a write that runs alone (its own transaction) and waits for its answer.
    pub(crate) async fn solo<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Blobs) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Solo(Box::new(move |conn, blobs| {
            let r = catch_unwind(AssertUnwindSafe(|| f(conn, blobs)))
                .unwrap_or_else(|_| Err(SqliteError::Task("a write panicked".to_owned())));
            let _ = tx.send(r.map_err(StoreError::from));
        }));
        self.submit(job, rx).await
    }

    async fn submit<T>(
        &self,
        job: Job,
        mut rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let s = &self.shared;
        let depth = s.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        s.set_depth(depth);
        if depth > self.max_waiting {
            let depth = s.waiting.fetch_sub(1, Ordering::AcqRel) - 1;
            s.set_depth(depth);
            return Err(reject("full", format!("{} waiting", self.max_waiting)));
        }
        let state = Arc::new(AtomicU8::new(QUEUED));
        // Withdraws the write if the caller goes away before the writer takes it.
        let ticket = Ticket {
            shared: s,
            state: state.clone(),
        };
        {
            let mut q = s.lock();
            // Withdrawn writes stay in the line until the writer passes them; while it
            // is stalled, drop them here so the line stays bounded.
            if q.jobs.len() >= 2 * self.max_waiting {
                q.jobs.retain(|j| j.state.load(Ordering::Acquire) == QUEUED);
            }
            q.jobs.push_back(Queued { state, job });
        }
        s.ready.notify_one();
        let answer = match tokio::time::timeout(self.deadline, &mut rx).await {
            Ok(answer) => answer,
            Err(_) => {
                if s.claim(&ticket.state, WITHDRAWN) {
                    return Err(reject(
                        "deadline",
                        format!("not started within {:?}", self.deadline),
                    ));
                }
                // Already taken: it runs to its end, so its answer is the truth.
                rx.await
            }
        };
        drop(ticket);
        answer.unwrap_or_else(|_| Err(SqliteError::Task("the writer thread stopped".into()).into()))
    }

    /// Writes queued and not yet started.
    pub(crate) fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// Whether a group (or a solo write) is running now.
    pub(crate) fn busy(&self) -> bool {
        self.shared.busy.load(Ordering::Acquire)
    }

    /// Transactions committed so far by the writer.
    pub(crate) fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Acquire)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
        if let Some(t) = self.thread.take() {
            // Joined so that the connection is closed (and the WAL checkpointed) when
            // the store is gone, as it was when the connection lived in the store.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

struct Ticket<'a> {
    shared: &'a Shared,
    state: Arc<AtomicU8>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.shared.claim(&self.state, WITHDRAWN);
    }
}

fn reject(why: &'static str, detail: String) -> StoreError {
    metrics::counter!("sessiond_store_rejected_total", "queue" => "writer", "reason" => why)
        .increment(1);
    StoreError::Unavailable(format!("sqlite writer queue: {detail}"))
}

/// What the thread takes from the queue in one go.
enum Work {
    Group(Vec<Box<dyn GroupedJob>>),
    Solo(SoloJob),
}

/// Waits for writes; returns `None` once the store is dropped and the queue is empty.
fn next(shared: &Shared) -> Option<Work> {
    let mut q = shared.lock();
    loop {
        let mut group = Vec::new();
        while let Some(front) = q.jobs.front() {
            // A solo write ends the group; it goes next, on its own.
            if matches!(front.job, Job::Solo(_)) && !group.is_empty() {
                break;
            }
            let Queued { state, job } = q.jobs.pop_front().expect("front exists");
            if !shared.claim(&state, TAKEN) {
                continue; // withdrawn by its caller
            }
            match job {
                Job::Solo(f) => return Some(Work::Solo(f)),
                Job::Grouped(j) => group.push(j),
            }
            if group.len() >= shared.max_group {
                break;
            }
        }
        if !group.is_empty() {
            return Some(Work::Group(group));
        }
        if q.closed {
            return None;
        }
        q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

fn run(shared: &Shared, mut conn: Connection, blobs: &Blobs, after_commit: Option<&Signal>) {
    while let Some(work) = next(shared) {
        shared.busy.store(true, Ordering::Release);
        match work {
            Work::Solo(f) => f(&mut conn, blobs),
            Work::Group(jobs) => {
                let started = Instant::now();
                let size = jobs.len();
                if commit_group(&conn, jobs) {
                    shared.commits.fetch_add(1, Ordering::AcqRel);
                    metrics::counter!("sessiond_store_group_commits_total").increment(1);
                    metrics::histogram!("sessiond_store_group_size").record(size as f64);
                    metrics::histogram!("sessiond_store_group_commit_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
            }
        }
        shared.busy.store(false, Ordering::Release);
        if let Some(signal) = after_commit {
            signal.committed();
        }
    }
}

/// Runs a group in one transaction and answers every write in it; true if it committed.
///
/// First every write runs bare: a savepoint per write costs a copy of every page it
/// touches (the sub-journal), about a seventh of the writer's time in `create`. Writes
/// fail only on an SQLite error (a conflict is an answer, not a failure), so almost
/// every group commits this way. Should one fail, the whole transaction is rolled back
/// and the group runs again with a savepoint per write, so that only the failing write
/// is undone: each write is a function of its arguments and the database, and the
/// database is as it was before the first run.
fn commit_group(conn: &Connection, mut jobs: Vec<Box<dyn GroupedJob>>) -> bool {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let why = format!("sqlite: {e}");
        jobs.into_iter().for_each(|j| j.fail(&why));
        return false;
    }
    let clean = jobs
        .iter_mut()
        .all(|j| j.run(conn, false) && !conn.is_autocommit());
    if clean {
        return commit(conn, jobs);
    }
    metrics::counter!("sessiond_store_group_reruns_total").increment(1);
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    commit_in_savepoints(conn, jobs)
}

/// The slow path: a savepoint per write, so that a failing write is undone alone.
fn commit_in_savepoints(conn: &Connection, jobs: Vec<Box<dyn GroupedJob>>) -> bool {
    let mut jobs = jobs.into_iter();
    let mut ran: Vec<Box<dyn GroupedJob>> = Vec::new();
    'tx: loop {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let why = format!("sqlite: {e}");
            jobs.for_each(|j| j.fail(&why));
            return false;
        }
        for mut job in jobs.by_ref() {
            job.run(conn, true);
            ran.push(job);
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (IO error, full disk): the
                // writes before this one are gone too. Answer them; go on with the rest.
                tracing::warn!("sqlite rolled back a group transaction; its writes fail");
                let why = "sqlite: the transaction was rolled back by an IO error";
                ran.drain(..).for_each(|a| a.settle(Err(why)));
                continue 'tx;
            }
        }
        break;
    }
    commit(conn, ran)
}

/// Commits the open transaction and answers its writes; true if it committed.
fn commit(conn: &Connection, ran: Vec<Box<dyn GroupedJob>>) -> bool {
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            ran.into_iter().for_each(|a| a.settle(Ok(())));
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "sqlite group commit failed");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let why = format!("sqlite: commit failed: {e}");
            ran.into_iter().for_each(|a| a.settle(Err(&why)));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut st = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    async fn until(what: &str, ok: impl Fn() -> bool) {
        sessiond_testkit::wait::until(Duration::from_secs(10), what, || {
            let done = ok();
            async move { done }
        })
        .await
    }

    /// The fast path runs a group's writes without savepoints; a write that fails after
    /// changing something (here: its insert went in, its second statement fails) must
    /// still be undone alone, and the rest of its group commit, in one transaction.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_write_failing_halfway_is_undone_alone_and_its_group_still_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (v INTEGER PRIMARY KEY);")
            .unwrap();
        let opts = crate::SqliteOptions {
            deadline: Duration::from_secs(20),
            ..Default::default()
        };
        let writer = Arc::new(
            Writer::start(conn, Blobs::new(dir.path().join("blobs")), &opts, None).unwrap(),
        );

        // Hold the writer in a solo write until every grouped write has queued.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let w = writer.clone();
        let stall = tokio::spawn(async move {
            w.solo(move |_, _| {
                held.recv().ok();
                Ok(())
            })
            .await
        });
        until("the writer is held", || writer.busy()).await;
        let mut tasks = Vec::new();
        for v in 1..=5i64 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.grouped(move |c| {
                    c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                    if v == 3 {
                        c.execute("INSERT INTO missing_table VALUES (1)", [])?;
                    }
                    Ok(v)
                })
                .await
            }));
            until("the write queues", || writer.waiting() == v as usize).await;
        }
        let before = writer.commits();
        release.send(()).unwrap();
        stall.await.unwrap().unwrap();

        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap();
            if i == 2 {
                assert!(r.is_err(), "the halfway write fails: {r:?}");
            } else {
                assert_eq!(r.unwrap(), i as i64 + 1);
            }
        }
        assert_eq!(writer.commits() - before, 1, "one group, one commit");
        let check = Connection::open(&path).unwrap();
        assert_eq!(
            rows(&check),
            vec![1, 2, 4, 5],
            "the failing write left nothing"
        );
    }
}
