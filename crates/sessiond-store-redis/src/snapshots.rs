//! Room snapshots: one hash per room written whole by one script (never torn),
//! versioned by compare-and-set, with a retention index for purges.

use crate::error::RedisError;
use crate::keys::{dec, enc};
use crate::scripts::{PURGE_SNAPSHOT, PUT_SNAPSHOT, RETAIN_SNAPSHOT, ZREM_IF_LE};
use crate::{cap, RedisStore};
use sessiond_core::quota::SnapshotUsage;
use sessiond_core::snapshot::{content_hash, Snapshot, SnapshotWrite};
use sessiond_core::Timestamp;
use std::collections::HashMap;

use sessiond_core::store::{Result, SnapshotPut, SnapshotStore};

type R<T> = Result<T, RedisError>;

const MAX_PASSES: usize = 16;
const PURGE_BATCH: usize = 256;

fn bulk(v: Option<&redis::Value>) -> Option<&[u8]> {
    match v {
        Some(redis::Value::BulkString(b)) => Some(b),
        _ => None,
    }
}

fn utf8(b: &[u8]) -> R<&str> {
    std::str::from_utf8(b).map_err(|e| RedisError::Corrupt(e.to_string()))
}

fn parse_retain(s: &str) -> R<Option<Timestamp>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| RedisError::Corrupt(format!("bad retain_until {s:?}")))
}

/// The snapshot's metadata with the separately stored retention applied.
fn decode_meta(meta: &[u8], ret: &[u8]) -> R<Snapshot> {
    let mut s: Snapshot = serde_json::from_slice(meta)?;
    s.retain_until = parse_retain(utf8(ret)?)?;
    Ok(s)
}

impl RedisStore {
    async fn index_retention(&self, room: &str, until: Option<Timestamp>) -> R<()> {
        let index = self
            .keys
            .snapshot_retention(self.keys.buckets.of_name(room));
        let mut c = match until {
            Some(t) => {
                let mut c = redis::cmd("ZADD");
                c.arg(index).arg(t);
                c
            }
            None => {
                let mut c = redis::cmd("ZREM");
                c.arg(index);
                c
            }
        };
        c.arg(enc(room));
        self.q::<i64>(&c).await.map(drop)
    }
}

impl RedisStore {
    /// Moves `room` in the per-writer size index from its previous writer to `by` (or
    /// just out, after a purge). Written after the snapshot's own script: a room's key
    /// and a writer's index live in different Cluster slots, so no one script can hold
    /// both. A crash in between leaves the index one write behind until that room is
    /// next written or purged; the quota it feeds is bounded by one snapshot either way.
    async fn index_writer(
        &self,
        room: &str,
        previous: Option<String>,
        by: Option<&str>,
        size: u64,
    ) -> R<()> {
        if let Some(prev) = previous.filter(|p| Some(p.as_str()) != by) {
            let mut c = redis::cmd("HDEL");
            c.arg(self.keys.snapshot_bytes(&prev)).arg(enc(room));
            self.q::<i64>(&c).await?;
        }
        if let Some(by) = by {
            let mut c = redis::cmd("HSET");
            c.arg(self.keys.snapshot_bytes(by)).arg(enc(room)).arg(size);
            self.q::<i64>(&c).await?;
        }
        Ok(())
    }
}

/// The writer recorded in a snapshot's previous metadata (`''`: there was none).
fn previous_writer(meta: Option<&redis::Value>) -> R<Option<String>> {
    match bulk(meta) {
        Some(m) if !m.is_empty() => Ok(serde_json::from_slice::<Snapshot>(m)?.updated_by),
        _ => Ok(None),
    }
}

#[async_trait::async_trait]
impl SnapshotStore for RedisStore {
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        let mut c = redis::cmd("HGETALL");
        c.arg(self.keys.snapshot(room));
        let m: HashMap<String, Vec<u8>> = self.q(&c).await?;
        if m.is_empty() {
            return Ok(None);
        }
        let field = |f: &str| {
            m.get(f)
                .ok_or_else(|| RedisError::Corrupt(format!("snapshot field {f} missing")))
        };
        let mut s = decode_meta(field("meta")?, field("ret")?)?;
        s.data = field("data")?.clone();
        Ok(Some(s))
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<SnapshotWrite> {
        let SnapshotPut {
            room,
            expected_version,
            data,
            content_type,
            by,
            retain_until,
            now,
        } = put;
        let s = Snapshot {
            room: room.to_owned(),
            version: expected_version + 1,
            hash: content_hash(data),
            content_type: content_type.to_owned(),
            data: Vec::new(),
            size: data.len() as u64,
            updated_at: now,
            updated_by: by.map(str::to_owned),
            retain_until,
        };
        let mut inv = PUT_SNAPSHOT.prepare_invoke();
        inv.key(self.keys.snapshot(room))
            .arg(expected_version)
            .arg(s.version)
            .arg(serde_json::to_string(&s).map_err(RedisError::from)?)
            .arg(data)
            .arg(retain_until.map(|t| t.to_string()).unwrap_or_default());
        let reply: Vec<redis::Value> = self.eval(&inv).await?;
        if let Some(redis::Value::Int(1)) = reply.first() {
            self.index_retention(room, retain_until).await?;
            self.index_writer(room, previous_writer(reply.get(1))?, by, s.size)
                .await?;
            self.replicated(&[&self.keys.snapshot(room)]).await?;
            return Ok(SnapshotWrite::Written(s));
        }
        match (bulk(reply.get(1)), bulk(reply.get(2))) {
            (Some(meta), Some(ret)) => Ok(SnapshotWrite::Conflict(Some(decode_meta(meta, ret)?))),
            _ => Ok(SnapshotWrite::Conflict(None)),
        }
    }

    async fn snapshot_usage(&self, by: &str, except_room: &str) -> Result<SnapshotUsage> {
        let mut c = redis::cmd("HGETALL");
        c.arg(self.keys.snapshot_bytes(by));
        let m: HashMap<String, u64> = self.q(&c).await?;
        let except = enc(except_room);
        Ok(m.iter().filter(|(room, _)| **room != except).fold(
            SnapshotUsage::default(),
            |u, (_, size)| SnapshotUsage {
                rooms: u.rooms + 1,
                bytes: u.bytes + size,
            },
        ))
    }

    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        let mut inv = RETAIN_SNAPSHOT.prepare_invoke();
        inv.key(self.keys.snapshot(room))
            .arg(until.map(|t| t.to_string()).unwrap_or_default());
        if self.eval::<i64>(&inv).await? == 1 {
            self.index_retention(room, until).await?;
        }
        Ok(())
    }

    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        let limit = cap(limit);
        let n = self.keys.buckets.len();
        let start = self.rotate();
        let mut purged = 0;
        for k in 0..n {
            let index = self.keys.snapshot_retention((start + k) % n);
            if purged >= limit {
                break;
            }
            self.purge_snapshot_bucket(&index, now, limit, &mut purged)
                .await?;
        }
        Ok(purged)
    }
}

impl RedisStore {
    /// Purges from one bucket of the retention index, adding to `purged` up to `limit`.
    async fn purge_snapshot_bucket(
        &self,
        index: &str,
        now: Timestamp,
        limit: usize,
        purged: &mut usize,
    ) -> R<()> {
        for _ in 0..MAX_PASSES {
            let want = (limit - *purged).min(PURGE_BATCH);
            if want == 0 {
                break;
            }
            let mut range = redis::cmd("ZRANGEBYSCORE");
            range
                .arg(index)
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(want);
            let members: Vec<String> = self.q(&range).await?;
            for m in &members {
                let Some(room) = dec(m) else {
                    self.q::<i64>(redis::cmd("ZREM").arg(index).arg(m)).await?;
                    continue;
                };
                let mut inv = PURGE_SNAPSHOT.prepare_invoke();
                inv.key(self.keys.snapshot(&room)).arg(now);
                let reply: Vec<redis::Value> = self.eval(&inv).await?;
                let done = matches!(reply.first(), Some(redis::Value::Int(1)));
                if done {
                    self.index_writer(&room, previous_writer(reply.get(1))?, None, 0)
                        .await?;
                }
                // Purged: the second item is the metadata (above); kept: the retention.
                let kept_until = match bulk(reply.get(1)) {
                    Some(r) if !done => parse_retain(utf8(r)?)?,
                    _ => None,
                };
                match (done, kept_until) {
                    (false, Some(t)) => {
                        self.q::<i64>(redis::cmd("ZADD").arg(index).arg(t).arg(m))
                            .await?;
                    }
                    _ => {
                        // A concurrent put may have re-noted the room with a later
                        // retention; that entry stays.
                        let mut z = ZREM_IF_LE.prepare_invoke();
                        z.key(index).arg(m).arg(now);
                        self.eval::<i64>(&z).await?;
                    }
                }
                if done {
                    *purged += 1;
                }
            }
            if members.len() < want {
                break;
            }
        }
        Ok(())
    }
}
