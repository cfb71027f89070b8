//! The audit trail, partitioned into the store's buckets with one global id counter.
//!
//! - **Ids**: one counter, `{P:audit}:seq`, the only key every append touches (a few
//!   bytes): ids stay totally ordered and are never reused. On Cluster appends made at
//!   the same moment share one `INCRBY` ([`crate::audit_ids`]).
//! - **Events and indexes**: an event goes to the bucket of its handle (else of its
//!   principal, else of its time), with its id, time, handle and principal index
//!   entries, all written by one script in that bucket's slot. A session's events thus
//!   share one bucket: reads by handle touch one bucket; reads by id, principal or time
//!   merge every bucket in id order (a k-way merge over sorted sets); purges walk the
//!   buckets by time.
//! - **Standalone and Sentinel** run the counter and the bucket write as one script (and
//!   with the change they record, see [`crate::audited`]), so an id is visible once
//!   taken. **Cluster** takes the id first and writes the event right after, in another
//!   slot: for a moment a higher id can be visible while a lower one is still on its
//!   way. Readers that follow the trail forward (`after_id`) must never pass such a gap
//!   (their cursor would skip the late event), so on Cluster a forward read passes an
//!   event only if every id between the last one passed and it is present (one `ZCOUNT`
//!   per bucket: the counts add up), or if it was written more than a settle time ago
//!   (the command timeout plus a second, both times read on its bucket master's clock:
//!   every lower id was taken before it was written, so that write has landed or failed
//!   for good). A gap that never fills (a writer that died between the two steps, or
//!   purged events under an old cursor) thus delays a follower by the settle time, never
//!   forever. Newest-first reads (`before_id`, the default) need neither.
//! - **Webhook outbox** (lease, cursors, dead letters): a few small keys under one hash
//!   tag of their own (`{P:outbox}`), so each of its scripts runs on one Cluster slot.
//!   It never reads events itself: the deliverer follows the trail with
//!   [`AuditStore::query_audit`] and `after_id`, the gap-safe forward read above, so a
//!   cursor never moves past an id still on its way. The lease's time to live is
//!   Redis's own (`PX`): the caller's `now` is not needed.

use crate::error::RedisError;
use crate::scripts::{
    ACQUIRE_OUTBOX_LEASE, ADVANCE_OUTBOX_CURSOR, APPEND_AUDIT, APPEND_AUDIT_BUCKET,
    DELETE_DEAD_LETTER, PUT_DEAD_LETTER, READ_AUDIT_BUCKET, RELEASE_OUTBOX_LEASE,
};
use crate::{cap, RedisStore};
use futures::future::try_join_all;
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::outbox::DeadLetter;
use sessiond_core::Timestamp;
use std::collections::{HashMap, VecDeque};

use sessiond_core::store::{AuditStore, Result};

type R<T> = Result<T, RedisError>;

/// Ids read per round trip while scanning one index.
const SCAN_BATCH: usize = 256;
/// Ids read per bucket per round trip while merging several buckets.
const MERGE_BATCH: usize = 64;
/// Added to the command timeout to give the settle time of forward reads on Cluster.
const SETTLE_MARGIN_MS: i64 = 1_000;
/// Gap checks one forward read may make before it stops and leaves the rest to the
/// follower's next poll (each costs a round trip to every bucket).
const MAX_GAP_CHECKS: usize = 8;

/// An event as stored: `<ms written> <JSON>` (the JSON carries id 0; the id is the field).
fn decode_stored(id: i64, stored: &str) -> R<(AuditEvent, i64)> {
    let (alloc, json) = match stored.split_once(' ') {
        Some((a, j)) if !a.starts_with('{') => (
            a.parse()
                .map_err(|_| RedisError::Corrupt(format!("audit event {id}: bad time {a:?}")))?,
            j,
        ),
        _ => (0, stored),
    };
    Ok((
        AuditEvent {
            id,
            ..serde_json::from_str(json)?
        },
        alloc,
    ))
}

/// One bucket's index while merging: the ids read but not yet passed on, and how far
/// the reads got.
struct Source {
    bucket: usize,
    key: String,
    /// Score bounds of the next read (`(id` exclusive, `-inf`/`+inf`).
    lo: String,
    hi: String,
    buf: VecDeque<i64>,
    done: bool,
}

impl RedisStore {
    /// The bucket an event lives in: its handle's, else its principal's, else its time's.
    pub(crate) fn audit_bucket(&self, e: &AuditEvent) -> usize {
        let b = &self.keys.buckets;
        match (&e.handle, &e.principal) {
            (Some(h), _) => b.of_name(h),
            (None, Some(p)) => b.of_name(p),
            (None, None) => b.of_time(e.at),
        }
    }

    /// The keys one event's append writes: its bucket's events hash, id index and time
    /// index, then its handle and principal indexes.
    pub(crate) fn audit_keys(&self, e: &AuditEvent) -> Vec<String> {
        let b = self.audit_bucket(e);
        let mut keys = vec![
            self.keys.audit_events(b),
            self.keys.audit_ids(b),
            self.keys.audit_at(b),
        ];
        if let Some(h) = &e.handle {
            keys.push(self.keys.audit_by_handle(b, h));
        }
        if let Some(p) = &e.principal {
            keys.push(self.keys.audit_by_principal(b, p));
        }
        keys
    }

    /// Events of bucket `b` by id, each with when it was written; ids whose event is
    /// gone (purged between the index read and this one) are left out. With `clock`,
    /// also the latest write time (on the bucket master's clock) that counts as settled.
    async fn audit_events(
        &self,
        b: usize,
        ids: &[i64],
        clock: bool,
    ) -> R<(Vec<(AuditEvent, i64)>, Option<i64>)> {
        if ids.is_empty() {
            return Ok((Vec::new(), None));
        }
        let (stored, settled) = if clock {
            let mut inv = READ_AUDIT_BUCKET.prepare_invoke();
            inv.key(self.keys.audit_events(b)).arg(ids);
            let mut reply: Vec<Option<String>> = self.eval(&inv).await?;
            let now = match reply.first() {
                Some(Some(t)) => t
                    .parse::<i64>()
                    .map_err(|_| RedisError::Corrupt(format!("bucket time {t:?}")))?,
                _ => return Err(RedisError::Corrupt("bucket read without a time".into())),
            };
            reply.remove(0);
            let settle = self.cfg.command_timeout.as_millis().min(i64::MAX as u128) as i64;
            (reply, Some(now - settle - SETTLE_MARGIN_MS))
        } else {
            let mut c = redis::cmd("HMGET");
            c.arg(self.keys.audit_events(b)).arg(ids);
            (self.q::<Vec<Option<String>>>(&c).await?, None)
        };
        let events = ids
            .iter()
            .zip(stored)
            .filter_map(|(id, s)| s.map(|s| decode_stored(*id, &s)))
            .collect::<R<Vec<_>>>()?;
        Ok((events, settled))
    }

    /// Whether every id strictly between `lo` and `hi` has its event's index entry (ids
    /// are unique and each lives in one bucket, so the per-bucket counts add up).
    async fn ids_present_between(&self, lo: i64, hi: i64) -> R<bool> {
        let want = hi.saturating_sub(lo).saturating_sub(1);
        if want <= 0 {
            return Ok(true);
        }
        let counts = try_join_all((0..self.keys.buckets.len()).map(|b| async move {
            let mut c = redis::cmd("ZCOUNT");
            c.arg(self.keys.audit_ids(b))
                .arg(format!("({lo}"))
                .arg(format!("({hi}"));
            self.q::<i64>(&c).await
        }))
        .await?;
        Ok(counts.into_iter().sum::<i64>() >= want)
    }

    /// Reads the next batch of every source that has run dry.
    async fn refill(&self, sources: &mut [Source], ascending: bool, batch: usize) -> R<()> {
        let dry: Vec<usize> = (0..sources.len())
            .filter(|&i| sources[i].buf.is_empty() && !sources[i].done)
            .collect();
        let reads = try_join_all(dry.iter().map(|&i| {
            let s = &sources[i];
            let mut c = if ascending {
                let mut c = redis::cmd("ZRANGEBYSCORE");
                c.arg(&s.key).arg(&s.lo).arg(&s.hi);
                c
            } else {
                let mut c = redis::cmd("ZREVRANGEBYSCORE");
                c.arg(&s.key).arg(&s.hi).arg(&s.lo);
                c
            };
            c.arg("LIMIT").arg(0).arg(batch);
            async move { self.q::<Vec<i64>>(&c).await }
        }))
        .await?;
        for (i, ids) in dry.into_iter().zip(reads) {
            let s = &mut sources[i];
            s.done = ids.len() < batch;
            if let Some(last) = ids.last() {
                if ascending {
                    s.lo = format!("({last}");
                } else {
                    s.hi = format!("({last}");
                }
            }
            s.buf.extend(ids);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl AuditStore for RedisStore {
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        // The id is the hash field; the stored JSON carries 0.
        let json =
            serde_json::to_string(&AuditEvent { id: 0, ..e.clone() }).map_err(RedisError::from)?;
        if !self.is_cluster() {
            let mut inv = APPEND_AUDIT.prepare_invoke();
            inv.key(self.keys.audit_seq());
            for k in self.audit_keys(e) {
                inv.key(k);
            }
            inv.arg(json).arg(e.at);
            return Ok(self.eval(&inv).await?);
        }
        // An id from the one global counter (shared INCRBYs), then everything else in
        // the bucket.
        let id = match &self.audit_ids {
            Some(ids) => ids.next().await?,
            None => {
                let mut incr = redis::cmd("INCR");
                incr.arg(self.keys.audit_seq());
                self.q(&incr).await?
            }
        };
        let mut inv = APPEND_AUDIT_BUCKET.prepare_invoke();
        for k in self.audit_keys(e) {
            inv.key(k);
        }
        inv.arg(id).arg(json).arg(e.at);
        self.eval::<i64>(&inv).await?;
        Ok(id)
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let limit = cap(f.limit);
        let n = self.keys.buckets.len();
        // The most selective index available; the filter checks the rest.
        let indexes: Vec<(usize, String)> = match (&f.handle, &f.principal) {
            (Some(h), _) => {
                let b = self.keys.buckets.of_name(h);
                vec![(b, self.keys.audit_by_handle(b, h))]
            }
            (None, Some(p)) => (0..n)
                .map(|b| (b, self.keys.audit_by_principal(b, p)))
                .collect(),
            (None, None) => (0..n).map(|b| (b, self.keys.audit_ids(b))).collect(),
        };
        let ascending = f.after_id.is_some();
        // Forward reads on Cluster check for ids still on their way (module note).
        let clock = ascending && self.is_cluster();
        let lo = f
            .after_id
            .map_or_else(|| "-inf".to_owned(), |id| format!("({id}"));
        let hi = f
            .before_id
            .map_or_else(|| "+inf".to_owned(), |id| format!("({id}"));
        // When the index alone decides which events match (no kind, reason or time to
        // check), no bucket can contribute more than `limit` of them: reading more per
        // round only to drop them would make small reads (the newest id the webhook
        // deliverer asks for on every poll, a page of the admin list) read thousands.
        let exact = f.kind.is_none()
            && f.reason.is_none()
            && f.since.is_none()
            && f.until.is_none()
            && (f.handle.is_none() || f.principal.is_none());
        let batch = if indexes.len() == 1 {
            SCAN_BATCH
        } else if exact {
            MERGE_BATCH.min(limit)
        } else {
            MERGE_BATCH
        };
        let mut sources: Vec<Source> = indexes
            .into_iter()
            .map(|(bucket, key)| Source {
                bucket,
                key,
                lo: lo.clone(),
                hi: hi.clone(),
                buf: VecDeque::new(),
                done: false,
            })
            .collect();
        let mut out = Vec::new();
        // Forward reads on Cluster: the last id passed on, every id up to which is known
        // present, and the gap checks made.
        let mut last = f.after_id.unwrap_or(0);
        let mut safe_upto = last;
        let mut checks = 0;
        loop {
            self.refill(&mut sources, ascending, batch).await?;
            // Every id up to the horizon (the nearest last-read id among the sources
            // that may hold more) is known: those can be passed on in order.
            let horizon = sources
                .iter()
                .filter(|s| !s.done)
                .filter_map(|s| s.buf.back().copied())
                .reduce(|a, b| if ascending { a.min(b) } else { a.max(b) });
            let mut taken: Vec<(i64, usize)> = Vec::new();
            for s in &mut sources {
                while let Some(&id) = s.buf.front() {
                    let within = match horizon {
                        None => true,
                        Some(h) if ascending => id <= h,
                        Some(h) => id >= h,
                    };
                    if !within {
                        break;
                    }
                    s.buf.pop_front();
                    taken.push((id, s.bucket));
                }
            }
            if taken.is_empty() {
                return Ok(out);
            }
            if ascending {
                taken.sort_unstable();
            } else {
                taken.sort_unstable_by(|a, b| b.cmp(a));
            }
            let mut per_bucket: HashMap<usize, Vec<i64>> = HashMap::new();
            for (id, b) in &taken {
                per_bucket.entry(*b).or_default().push(*id);
            }
            let read = try_join_all(
                per_bucket
                    .iter()
                    .map(|(b, ids)| async move { self.audit_events(*b, ids, clock).await }),
            )
            .await?;
            let mut events: HashMap<i64, (AuditEvent, i64, Option<i64>)> = read
                .into_iter()
                .flat_map(|(evs, settled)| {
                    evs.into_iter()
                        .map(move |(e, written)| (e.id, (e, written, settled)))
                })
                .collect();
            let top = taken.last().map_or(0, |t| t.0);
            for (id, _) in taken {
                let Some((e, written, settled)) = events.remove(&id) else {
                    continue;
                };
                if let Some(until) = settled {
                    if written > until && id > safe_upto {
                        // Taken recently: lower ids may still be on their way. Pass it
                        // only if none is missing (checking up to the batch's last id
                        // first, to clear the whole batch with one check).
                        checks += 1;
                        if checks > MAX_GAP_CHECKS {
                            return Ok(out);
                        }
                        if top > id && self.ids_present_between(last, top).await? {
                            safe_upto = top;
                        } else if self.ids_present_between(last, id).await? {
                            safe_upto = id;
                        } else {
                            return Ok(out);
                        }
                    }
                    last = id;
                }
                if f.matches(&e) {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        let limit = cap(limit);
        let n = self.keys.buckets.len();
        let start = self.rotate();
        let mut purged = 0;
        for k in 0..n {
            let b = (start + k) % n;
            while purged < limit {
                let want = (limit - purged).min(SCAN_BATCH);
                let mut range = redis::cmd("ZRANGEBYSCORE");
                range
                    .arg(self.keys.audit_at(b))
                    .arg("-inf")
                    .arg(format!("({before}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(want);
                let ids: Vec<i64> = self.q(&range).await?;
                if ids.is_empty() {
                    break;
                }
                let (events, _) = self.audit_events(b, &ids, false).await?;
                // Index entries first, the event last: an interrupted purge leaves index
                // entries pointing at nothing (skipped by queries), never the reverse.
                for (e, _) in &events {
                    if let Some(h) = &e.handle {
                        self.q::<i64>(
                            redis::cmd("ZREM")
                                .arg(self.keys.audit_by_handle(b, h))
                                .arg(e.id),
                        )
                        .await?;
                    }
                    if let Some(p) = &e.principal {
                        self.q::<i64>(
                            redis::cmd("ZREM")
                                .arg(self.keys.audit_by_principal(b, p))
                                .arg(e.id),
                        )
                        .await?;
                    }
                }
                self.q::<i64>(redis::cmd("ZREM").arg(self.keys.audit_ids(b)).arg(&ids))
                    .await?;
                let removed: i64 = self
                    .q(redis::cmd("HDEL").arg(self.keys.audit_events(b)).arg(&ids))
                    .await?;
                self.q::<i64>(redis::cmd("ZREM").arg(self.keys.audit_at(b)).arg(&ids))
                    .await?;
                purged += removed.max(0) as usize;
                if ids.len() < want {
                    break;
                }
            }
        }
        Ok(purged)
    }

    async fn acquire_outbox_lease(
        &self,
        holder: &str,
        _now: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<u64>> {
        let mut inv = ACQUIRE_OUTBOX_LEASE.prepare_invoke();
        inv.key(self.keys.outbox_lease())
            .key(self.keys.outbox_fence())
            .arg(holder)
            .arg(ttl_ms.max(1));
        Ok(self.eval(&inv).await?)
    }

    async fn release_outbox_lease(&self, holder: &str) -> Result<()> {
        let mut inv = RELEASE_OUTBOX_LEASE.prepare_invoke();
        inv.key(self.keys.outbox_lease()).arg(holder);
        self.eval::<i64>(&inv).await?;
        Ok(())
    }

    async fn outbox_cursor(&self, endpoint: &str) -> Result<Option<i64>> {
        let mut c = redis::cmd("HGET");
        c.arg(self.keys.outbox_cursors()).arg(endpoint);
        Ok(self.q(&c).await?)
    }

    async fn advance_outbox_cursor(
        &self,
        endpoint: &str,
        fence: u64,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool> {
        let mut inv = ADVANCE_OUTBOX_CURSOR.prepare_invoke();
        inv.key(self.keys.outbox_cursors())
            .key(self.keys.outbox_fence())
            .arg(fence.to_string())
            .arg(endpoint)
            .arg(from.map(|f| f.to_string()).unwrap_or_default())
            .arg(to.to_string());
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    async fn put_dead_letter(&self, d: &DeadLetter) -> Result<()> {
        let mut inv = PUT_DEAD_LETTER.prepare_invoke();
        inv.key(self.keys.dead_letters(&d.endpoint))
            .key(self.keys.dead_letter_ids(&d.endpoint))
            .arg(d.event.id)
            .arg(serde_json::to_string(d).map_err(RedisError::from)?);
        self.eval::<i64>(&inv).await?;
        Ok(())
    }

    async fn get_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<Option<DeadLetter>> {
        let mut c = redis::cmd("HGET");
        c.arg(self.keys.dead_letters(endpoint)).arg(event_id);
        let json: Option<String> = self.q(&c).await?;
        Ok(json
            .map(|j| serde_json::from_str(&j))
            .transpose()
            .map_err(RedisError::from)?)
    }

    async fn list_dead_letters(
        &self,
        endpoint: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let mut c = redis::cmd("ZRANGEBYSCORE");
        c.arg(self.keys.dead_letter_ids(endpoint))
            .arg(after_id.map_or_else(|| "-inf".to_owned(), |a| format!("({a}")))
            .arg("+inf");
        if limit > 0 {
            c.arg("LIMIT").arg(0).arg(limit);
        }
        let ids: Vec<i64> = self.q(&c).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("HMGET");
        get.arg(self.keys.dead_letters(endpoint)).arg(&ids);
        let jsons: Vec<Option<String>> = self.q(&get).await?;
        let mut out = Vec::with_capacity(jsons.len());
        // Missing: deleted between the two reads.
        for j in jsons.into_iter().flatten() {
            out.push(serde_json::from_str(&j).map_err(RedisError::from)?);
        }
        Ok(out)
    }

    async fn delete_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<bool> {
        let mut inv = DELETE_DEAD_LETTER.prepare_invoke();
        inv.key(self.keys.dead_letters(endpoint))
            .key(self.keys.dead_letter_ids(endpoint))
            .arg(event_id);
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    async fn count_dead_letters(&self, endpoint: &str) -> Result<u64> {
        let mut c = redis::cmd("ZCARD");
        c.arg(self.keys.dead_letter_ids(endpoint));
        Ok(self.q(&c).await?)
    }
}
