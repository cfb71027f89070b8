//! The audit trail: events in one hash tag, appended by one script that assigns the
//! id and updates the id, time, handle and principal indexes together; and the webhook
//! outbox (lease, cursors, dead letters), all in one hash tag of its own (`{P:outbox}`)
//! so each of its scripts runs on one Cluster slot. The lease's time to live is Redis's
//! own (`PX`): the caller's `now` is not needed.

use crate::error::RedisError;
use crate::scripts::{
    ACQUIRE_OUTBOX_LEASE, ADVANCE_OUTBOX_CURSOR, APPEND_AUDIT, DELETE_DEAD_LETTER, PUT_DEAD_LETTER,
    RELEASE_OUTBOX_LEASE,
};
use crate::{cap, RedisStore};
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::outbox::DeadLetter;
use sessiond_core::Timestamp;

use sessiond_core::store::{AuditStore, Result};

type R<T> = Result<T, RedisError>;

/// Ids read per round trip while scanning an index.
const SCAN_BATCH: usize = 256;

impl RedisStore {
    async fn audit_events(&self, ids: &[i64]) -> R<Vec<AuditEvent>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = redis::cmd("HMGET");
        c.arg(self.keys.audit_events()).arg(ids);
        let jsons: Vec<Option<String>> = self.q(&c).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, j) in ids.iter().zip(jsons) {
            // Missing: purged between the index read and this one.
            if let Some(j) = j {
                out.push(AuditEvent {
                    id: *id,
                    ..serde_json::from_str(&j)?
                });
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl AuditStore for RedisStore {
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        let mut inv = APPEND_AUDIT.prepare_invoke();
        inv.key(self.keys.audit_seq())
            .key(self.keys.audit_events())
            .key(self.keys.audit_ids())
            .key(self.keys.audit_at());
        if let Some(h) = &e.handle {
            inv.key(self.keys.audit_by_handle(h));
        }
        if let Some(p) = &e.principal {
            inv.key(self.keys.audit_by_principal(p));
        }
        // The id is the hash field; the stored JSON carries 0.
        inv.arg(
            serde_json::to_string(&AuditEvent { id: 0, ..e.clone() }).map_err(RedisError::from)?,
        )
        .arg(e.at);
        Ok(self.eval(&inv).await?)
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let limit = cap(f.limit);
        // The most selective index available; the filter checks the rest.
        let index = match (&f.handle, &f.principal) {
            (Some(h), _) => self.keys.audit_by_handle(h),
            (None, Some(p)) => self.keys.audit_by_principal(p),
            (None, None) => self.keys.audit_ids(),
        };
        let ascending = f.after_id.is_some();
        let mut out = Vec::new();
        let mut lo = f
            .after_id
            .map_or_else(|| "-inf".to_owned(), |id| format!("({id}"));
        let mut hi = f
            .before_id
            .map_or_else(|| "+inf".to_owned(), |id| format!("({id}"));
        loop {
            let mut c = if ascending {
                let mut c = redis::cmd("ZRANGEBYSCORE");
                c.arg(&index).arg(&lo).arg(&hi);
                c
            } else {
                let mut c = redis::cmd("ZREVRANGEBYSCORE");
                c.arg(&index).arg(&hi).arg(&lo);
                c
            };
            c.arg("LIMIT").arg(0).arg(SCAN_BATCH);
            let ids: Vec<i64> = self.q(&c).await?;
            for e in self.audit_events(&ids).await? {
                if f.matches(&e) {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            match ids.last() {
                Some(last) if ids.len() == SCAN_BATCH => {
                    if ascending {
                        lo = format!("({last}");
                    } else {
                        hi = format!("({last}");
                    }
                }
                _ => return Ok(out),
            }
        }
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        let limit = cap(limit);
        let mut purged = 0;
        while purged < limit {
            let want = (limit - purged).min(SCAN_BATCH);
            let mut range = redis::cmd("ZRANGEBYSCORE");
            range
                .arg(self.keys.audit_at())
                .arg("-inf")
                .arg(format!("({before}"))
                .arg("LIMIT")
                .arg(0)
                .arg(want);
            let ids: Vec<i64> = self.q(&range).await?;
            if ids.is_empty() {
                break;
            }
            let events = self.audit_events(&ids).await?;
            // Index entries first, the event last: an interrupted purge leaves index
            // entries pointing at nothing (skipped by queries), never the reverse.
            for e in &events {
                if let Some(h) = &e.handle {
                    self.q::<i64>(
                        redis::cmd("ZREM")
                            .arg(self.keys.audit_by_handle(h))
                            .arg(e.id),
                    )
                    .await?;
                }
                if let Some(p) = &e.principal {
                    self.q::<i64>(
                        redis::cmd("ZREM")
                            .arg(self.keys.audit_by_principal(p))
                            .arg(e.id),
                    )
                    .await?;
                }
            }
            self.q::<i64>(redis::cmd("ZREM").arg(self.keys.audit_ids()).arg(&ids))
                .await?;
            let removed: i64 = self
                .q(redis::cmd("HDEL").arg(self.keys.audit_events()).arg(&ids))
                .await?;
            self.q::<i64>(redis::cmd("ZREM").arg(self.keys.audit_at()).arg(&ids))
                .await?;
            purged += removed.max(0) as usize;
            if ids.len() < want {
                break;
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
