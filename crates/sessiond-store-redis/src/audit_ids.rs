//! Audit ids on Cluster, taken in batches: appends waiting at the same moment share one
//! `INCRBY` of the counter instead of an `INCR` each. Every append paid that extra
//! round trip (and a command on the one master holding the counter) before its event
//! could be written, which was a sixth of an ending's commands.
//!
//! One task per store takes the requests queued while its previous `INCRBY` was out and
//! hands each caller one id of the new range, in queue order; so a caller's later
//! append still gets a higher id than its earlier one. An id whose caller gave up after
//! the range was taken stays unused, exactly like an `INCR` whose event write failed:
//! forward readers on Cluster already wait such a gap out (see [`crate::audit`]).

use crate::conn::{bounded, Conn};
use crate::error::RedisError;
use sessiond_core::StoreError;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Appends waiting for an id; beyond it, callers wait for room.
const QUEUE: usize = 4096;
/// Most ids one `INCRBY` takes.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<i64, StoreError>>;

/// The id allocator of one store (Cluster only).
pub(crate) struct AuditIds {
    key: String,
    conn: Conn,
    timeout: Duration,
    /// The running task's queue. Replaced when the task is gone (its runtime shut
    /// down, as between two tests or two runtimes of one process).
    tx: Mutex<Option<mpsc::Sender<Reply>>>,
}

impl AuditIds {
    /// `key` is the counter; each `INCRBY` is bounded by `timeout`.
    pub(crate) fn new(key: String, conn: Conn, timeout: Duration) -> Self {
        AuditIds {
            key,
            conn,
            timeout,
            tx: Mutex::new(None),
        }
    }

    /// The next id, never handed out before.
    pub(crate) async fn next(&self) -> Result<i64, RedisError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || RedisError::Store(StoreError::Unavailable("audit id task stopped".into()));
        self.queue().send(reply).await.map_err(|_| stopped())?;
        match answer.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(RedisError::Store(e)),
            Err(_) => Err(stopped()),
        }
    }

    fn queue(&self) -> mpsc::Sender<Reply> {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tx.as_ref().filter(|t| !t.is_closed()) {
            return t.clone();
        }
        let (t, rx) = mpsc::channel(QUEUE);
        tokio::spawn(allocate(
            rx,
            self.conn.clone(),
            self.key.clone(),
            self.timeout,
        ));
        *tx = Some(t.clone());
        t
    }
}

/// The allocator task: one `INCRBY` per batch of queued requests, until every sender
/// is gone.
async fn allocate(mut rx: mpsc::Receiver<Reply>, mut conn: Conn, key: String, timeout: Duration) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A caller that gave up already takes no id (no gap for readers to wait out).
        batch.retain(|r: &Reply| !r.is_closed());
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as i64;
        let mut incr = redis::cmd("INCRBY");
        incr.arg(&key).arg(n);
        let taken: Result<i64, RedisError> =
            bounded(timeout, async { Ok(incr.query_async(&mut conn).await?) }).await;
        match taken {
            Ok(last) => {
                for (i, reply) in (0..).zip(batch.drain(..)) {
                    let _ = reply.send(Ok(last - n + 1 + i));
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                for reply in batch.drain(..) {
                    let _ = reply.send(Err(same(&e)));
                }
            }
        }
    }
}

/// A copy of `e` for each caller of a failed batch (the error type is not `Clone`).
fn same(e: &StoreError) -> StoreError {
    match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        other => StoreError::Unavailable(other.to_string()),
    }
}
