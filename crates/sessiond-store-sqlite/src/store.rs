//! The four store capabilities for [`SqliteStore`]: every read is one blocking-pool job, and every
//! write runs on the single writer: most in their own savepoint of a shared group
//! transaction (`write_grouped`, see [`crate::writer`]), the few that unlink files after
//! their commit alone in their own `BEGIN IMMEDIATE` transaction (`write`). A lifecycle
//! write inserts its audit rows in the same savepoint: both commit or neither.

use crate::error::SqliteError;
use crate::rows::{
    audit_from_row, delete_draft_row, draft_from_row, held_bytes, insert_session, load_draft,
    load_session, replace_session, session_from_row, snapshot_from_row, upsert_draft, AUDIT_COLS,
    DRAFT_COLS, SESSION_COLS, SNAPSHOT_COLS,
};
use crate::SqliteStore;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, TransactionBehavior};
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::draft::{AttachmentMeta, Draft, DraftWrite};
use sessiond_core::outbox::DeadLetter;
use sessiond_core::quota::{DataUsage, SnapshotUsage};
use sessiond_core::snapshot::{content_hash, Snapshot, SnapshotWrite};
use sessiond_core::store::{
    AttachmentPut, AuditStore, ByteStream, CreateOutcome, DraftMove, DraftStore, Expiry,
    IdempotencyRecord, MergeRule, Result, SessionFilter, SessionStore, SnapshotPut, SnapshotStore,
    Touch,
};
use sessiond_core::{EndReason, Handle, Principal, Session, StoreError, Timestamp, TokenHash};

const IMMEDIATE: TransactionBehavior = TransactionBehavior::Immediate;

/// SQLite reads a negative LIMIT as "no limit"; the store contract reads 0 that way.
fn sql_limit(limit: usize) -> i64 {
    if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX)
    }
}

fn seq_of(d: &Option<Draft>) -> u64 {
    d.as_ref().map_or(0, |d| d.seq)
}

fn tombstone(p: &Principal, conversation: &str, seq: u64, now: Timestamp) -> Draft {
    Draft {
        principal: p.clone(),
        conversation: conversation.to_owned(),
        text: String::new(),
        seq,
        updated_at: now,
        deleted: true,
        attachments: Vec::new(),
    }
}

fn blob_ids(atts: &[AttachmentMeta]) -> Vec<String> {
    atts.iter().map(|a| a.blob_id.clone()).collect()
}

#[async_trait::async_trait]
impl SessionStore for SqliteStore {
    /// Yes: sessions, their principal index and the audit trail by handle are B-trees,
    /// and a group commit of new sessions with time-ordered handles writes a few leaves
    /// of each instead of one random page per session.
    fn time_ordered_handles(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c, _| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(drop)?)
        })
        .await
    }

    // ---- sessions

    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
        audit: &[AuditEvent],
    ) -> Result<CreateOutcome> {
        let (s, idem, audit) = (s.clone(), idem.cloned(), audit.to_vec());
        self.write_grouped(move |tx| {
            if let Some(rec) = &idem {
                let existing = tx
                    .query_row(
                        "SELECT fingerprint, handle, sealed_token, created_at FROM idempotency WHERE key_hash = ?1",
                        [&rec.key_hash],
                        |r| {
                            Ok(IdempotencyRecord {
                                key_hash: rec.key_hash.clone(),
                                fingerprint: r.get(0)?,
                                handle: crate::rows::handle_from(1, r.get(1)?)?,
                                sealed_token: r.get(2)?,
                                created_at: r.get(3)?,
                            })
                        },
                    )
                    .optional()?;
                if let Some(existing) = existing {
                    return Ok(CreateOutcome::Existing(existing));
                }
                tx.execute(
                    "INSERT INTO idempotency (key_hash, fingerprint, handle, sealed_token, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![rec.key_hash, rec.fingerprint, &s.handle.0[..], rec.sealed_token, rec.created_at],
                )?;
            }
            insert_session(tx, &s)?;
            insert_audit(tx, &audit)?;
            Ok(CreateOutcome::Created)
        })
        .await
    }

    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>> {
        let h = *handle;
        self.read(move |c, _| load_session(c, &h)).await
    }

    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>> {
        let hash = *hash;
        self.read(move |c, _| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SESSION_COLS} FROM sessions WHERE token_hash = ?1"
            ))?;
            Ok(st.query_row([&hash.0[..]], session_from_row).optional()?)
        })
        .await
    }

    async fn update_session(
        &self,
        s: &Session,
        expected_token: &TokenHash,
        audit: &[AuditEvent],
        draft_move: Option<&DraftMove>,
    ) -> Result<bool> {
        let (s, expected, audit, mv) = (
            s.clone(),
            *expected_token,
            audit.to_vec(),
            draft_move.cloned(),
        );
        self.write_grouped(move |tx| {
            let ok = load_session(tx, &s.handle)?
                .is_some_and(|cur| cur.is_active() && cur.token_hash.ct_eq(&expected));
            if ok {
                replace_session(tx, &s)?;
                insert_audit(tx, &audit)?;
                if let Some(m) = &mv {
                    tx.execute(
                        "INSERT OR REPLACE INTO draft_moves (from_principal, to_principal, handle, at) \
                         VALUES (?1, ?2, ?3, ?4)",
                        params![m.from.as_str(), m.to.as_str(), &m.handle.0[..], m.at],
                    )?;
                }
            }
            Ok(ok)
        })
        .await
    }

    async fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool> {
        let (t, audit) = (t.clone(), audit.to_vec());
        self.write_grouped(move |tx| {
            let applied = touch(tx, &t)? == 1;
            if applied {
                insert_audit(tx, &audit)?;
            }
            Ok(applied)
        })
        .await
    }

    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()> {
        if touches.is_empty() {
            return Ok(());
        }
        let touches = touches.to_vec();
        self.write_grouped(move |tx| {
            // One transaction: one WAL fsync for the whole batch instead of one per touch.
            for t in &touches {
                touch(tx, t)?;
            }
            Ok(())
        })
        .await
    }

    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        let (h, audit) = (*handle, audit.to_vec());
        self.write_grouped(move |tx| {
            let ended = {
                let mut st = tx.prepare_cached(&format!(
                    "UPDATE sessions SET state = 'ended', end_reason = ?2, ended_at = ?3 \
                     WHERE handle = ?1 AND state = 'active' RETURNING {SESSION_COLS}"
                ))?;
                st.query_row(params![&h.0[..], reason.as_str(), now], session_from_row)
                    .optional()?
            };
            if ended.is_some() {
                insert_audit(tx, &audit)?;
            }
            Ok(ended)
        })
        .await
    }

    async fn expire_session(
        &self,
        seen: &Expiry,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        if seen.idle_expires_at.min(seen.absolute_expires_at) > now {
            // Not due on the record it was decided on: whatever is stored, nothing ends.
            return Ok(None);
        }
        let (seen, audit) = (*seen, audit.to_vec());
        self.write_grouped(move |tx| {
            let ended = {
                let mut st = tx.prepare_cached(&format!(
                    "UPDATE sessions SET state = 'ended', end_reason = ?2, ended_at = ?3 \
                     WHERE handle = ?1 AND state = 'active' AND token_hash = ?4 \
                     AND last_activity_at = ?5 AND idle_expires_at = ?6 \
                     AND absolute_expires_at = ?7 \
                     RETURNING {SESSION_COLS}"
                ))?;
                st.query_row(
                    params![
                        &seen.handle.0[..],
                        reason.as_str(),
                        now,
                        &seen.token_hash.0[..],
                        seen.last_activity_at,
                        seen.idle_expires_at,
                        seen.absolute_expires_at
                    ],
                    session_from_row,
                )
                .optional()?
            };
            if ended.is_some() {
                insert_audit(tx, &audit)?;
            }
            Ok(ended)
        })
        .await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let f = filter.clone();
        self.read(move |c, _| {
            let mut sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            if let Some(p) = f.principal {
                sql.push_str(" AND principal = ?");
                args.push(p.into());
            }
            if let Some(r) = f.role {
                sql.push_str(" AND role = ?");
                args.push(r.into());
            }
            if f.active_only {
                sql.push_str(" AND state = 'active'");
            }
            if let Some(after) = f.after {
                sql.push_str(" AND handle > ?");
                args.push(after.0.to_vec().into());
            }
            sql.push_str(" ORDER BY handle LIMIT ?");
            args.push(sql_limit(f.limit).into());
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params_from_iter(args), session_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>> {
        self.read(move |c, _| {
            // Served by the partial index `sessions_due`.
            let mut st = c.prepare_cached(
                "SELECT handle FROM sessions WHERE state = 'active' AND next_deadline <= ?1 \
                 ORDER BY next_deadline LIMIT ?2",
            )?;
            let rows = st.query_map(params![now, sql_limit(limit)], |r| {
                crate::rows::handle_from(0, r.get(0)?)
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize> {
        self.write_grouped(move |tx| {
            let handles: Vec<Vec<u8>> = {
                let mut st = tx.prepare_cached(
                    "SELECT handle FROM sessions WHERE state = 'ended' AND ended_at < ?1 LIMIT ?2",
                )?;
                let rows = st.query_map(params![ended_before, sql_limit(limit)], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for h in &handles {
                tx.execute("DELETE FROM session_data WHERE handle = ?1", [h])?;
                tx.execute("DELETE FROM idempotency WHERE handle = ?1", [h])?;
                tx.execute("DELETE FROM sessions WHERE handle = ?1", [h])?;
            }
            Ok(handles.len())
        })
        .await
    }

    async fn count_active_sessions(&self) -> Result<u64> {
        self.read(|c, _| {
            Ok(c.query_row(
                "SELECT count(*) FROM sessions WHERE state = 'active'",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }

    async fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>> {
        self.read(move |c, _| {
            let mut st = c.prepare_cached(
                "SELECT from_principal, to_principal, handle, at FROM draft_moves ORDER BY at LIMIT ?1",
            )?;
            let rows = st.query_map([sql_limit(limit)], |r| {
                Ok(DraftMove {
                    from: Principal(r.get(0)?),
                    to: Principal(r.get(1)?),
                    handle: crate::rows::handle_from(2, r.get(2)?)?,
                    at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool> {
        let (m, audit) = (m.clone(), audit.to_vec());
        self.write_grouped(move |tx| {
            let n = tx.execute(
                "DELETE FROM draft_moves WHERE from_principal = ?1 AND to_principal = ?2 AND handle = ?3 AND at = ?4",
                params![m.from.as_str(), m.to.as_str(), &m.handle.0[..], m.at],
            )?;
            if n == 1 {
                insert_audit(tx, &audit)?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        let key = key.to_owned();
        self.write_grouped(move |conn| {
            // One statement on the single writer: inserts, or takes over a claim that has
            // run out; a standing claim makes the update's WHERE false (0 rows changed).
            let n = conn.execute(
                "INSERT INTO claims (key, until) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET until = excluded.until WHERE claims.until <= ?3",
                params![key, until, now],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn purge_claims(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.write_grouped(move |conn| {
            Ok(conn.execute(
                "DELETE FROM claims WHERE key IN \
                 (SELECT key FROM claims WHERE until <= ?1 LIMIT ?2)",
                params![now, sql_limit(limit)],
            )?)
        })
        .await
    }

    // ---- session data

    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>> {
        let (h, key) = (*handle, key.to_owned());
        self.read(move |c, _| {
            let mut st =
                c.prepare_cached("SELECT value FROM session_data WHERE handle = ?1 AND key = ?2")?;
            match st
                .query_row(params![&h.0[..], key], |r| r.get::<_, String>(0))
                .optional()?
            {
                Some(v) => Ok(Some(serde_json::from_str(&v)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_data(
        &self,
        handle: &Handle,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<bool> {
        let (h, key) = (*handle, key.to_owned());
        let value = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write_grouped(move |conn| {
            // One statement: the existence check and the write cannot be split by an ending.
            let mut st = conn.prepare_cached(
                "INSERT INTO session_data (handle, key, value) SELECT ?1, ?2, ?3 \
                 WHERE EXISTS (SELECT 1 FROM sessions WHERE handle = ?1 AND state = 'active') \
                 ON CONFLICT (handle, key) DO UPDATE SET value = excluded.value",
            )?;
            Ok(st.execute(params![&h.0[..], key, value])? == 1)
        })
        .await
    }

    async fn put_data_if(
        &self,
        handle: &Handle,
        key: &str,
        expected: Option<&serde_json::Value>,
        value: &serde_json::Value,
    ) -> Result<bool> {
        let (h, key, expected) = (*handle, key.to_owned(), expected.cloned());
        let value = serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write_grouped(move |tx| {
            // Compared as JSON values, not text, so formatting never decides a conflict;
            // The group transaction holds the write lock from the read to the write,
            // across processes.
            let active = tx
                .query_row(
                    "SELECT 1 FROM sessions WHERE handle = ?1 AND state = 'active'",
                    params![&h.0[..]],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !active {
                return Ok(false);
            }
            let current = tx
                .query_row(
                    "SELECT value FROM session_data WHERE handle = ?1 AND key = ?2",
                    params![&h.0[..], key],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .map(|v| serde_json::from_str::<serde_json::Value>(&v))
                .transpose()?;
            if current != expected {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO session_data (handle, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (handle, key) DO UPDATE SET value = excluded.value",
                params![&h.0[..], key, value],
            )?;
            Ok(true)
        })
        .await
    }

    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool> {
        let (h, key) = (*handle, key.to_owned());
        self.write_grouped(move |conn| {
            Ok(conn.execute(
                "DELETE FROM session_data WHERE handle = ?1 AND key = ?2",
                params![&h.0[..], key],
            )? > 0)
        })
        .await
    }

    async fn data_usage(&self, handle: &Handle, key: &str) -> Result<DataUsage> {
        let (h, key) = (*handle, key.to_owned());
        self.read(move |c, _| {
            // Bytes, not characters: both columns are measured as blobs.
            let mut st = c.prepare_cached(
                "SELECT count(*) FILTER (WHERE key <> ?2), \
                 coalesce(sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))) FILTER (WHERE key <> ?2), 0), \
                 sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))) FILTER (WHERE key = ?2) \
                 FROM session_data WHERE handle = ?1",
            )?;
            Ok(st.query_row(params![&h.0[..], key], |r| {
                Ok(DataUsage {
                    keys: r.get::<_, i64>(0)? as u64,
                    bytes: r.get::<_, i64>(1)? as u64,
                    current: r.get::<_, Option<i64>>(2)?.map(|b| b as u64),
                })
            })?)
        })
        .await
    }

    // ---- audit
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        let e = e.clone();
        self.write_grouped(move |conn| insert_audit(conn, std::slice::from_ref(&e)))
            .await
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let f = f.clone();
        self.read(move |c, _| {
            let mut sql = format!("SELECT {AUDIT_COLS} FROM audit WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            let mut cond = |clause: &str, v: Value| {
                sql.push_str(clause);
                args.push(v);
            };
            if let Some(p) = f.principal {
                cond(" AND principal = ?", p.into());
            }
            if let Some(h) = f.handle {
                cond(" AND handle = ?", h.into());
            }
            if let Some(k) = f.kind {
                cond(" AND kind = ?", k.as_str().to_owned().into());
            }
            if let Some(r) = f.reason {
                cond(" AND reason = ?", r.into());
            }
            if let Some(t) = f.since {
                cond(" AND at >= ?", t.into());
            }
            if let Some(t) = f.until {
                cond(" AND at < ?", t.into());
            }
            if let Some(id) = f.before_id {
                cond(" AND id < ?", id.into());
            }
            if let Some(id) = f.after_id {
                cond(" AND id > ?", id.into());
            }
            // Following (`after_id`) reads forwards; browsing reads newest first.
            let order = if f.after_id.is_some() { "ASC" } else { "DESC" };
            cond(
                &format!(" ORDER BY id {order} LIMIT ?"),
                sql_limit(f.limit).into(),
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params_from_iter(args), audit_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.write_grouped(move |conn| {
            Ok(conn.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 ORDER BY at LIMIT ?2)",
                params![before, sql_limit(limit)],
            )?)
        })
        .await
    }

    async fn acquire_outbox_lease(
        &self,
        holder: &str,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<u64>> {
        let holder = holder.to_owned();
        let until = now.saturating_add(ttl_ms.max(1));
        self.write_grouped(move |c| {
            let cur: Option<(Option<String>, i64, i64)> = c
                .query_row(
                    "SELECT holder, fence, until FROM outbox_lease WHERE name = 'outbox'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let fence = match cur {
                Some((Some(h), fence, _)) if h == holder => fence,
                Some((Some(_), _, running)) if running > now => return Ok(None),
                Some((_, fence, _)) => fence + 1,
                None => 1,
            };
            c.execute(
                "INSERT INTO outbox_lease (name, holder, fence, until) VALUES ('outbox', ?1, ?2, ?3) \
                 ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, fence = excluded.fence, until = excluded.until",
                params![holder, fence, until],
            )?;
            Ok(Some(fence as u64))
        })
        .await
    }

    async fn release_outbox_lease(&self, holder: &str) -> Result<()> {
        let holder = holder.to_owned();
        self.write_grouped(move |c| {
            // The row stays (with its fence), so the next holder's fence is still larger.
            c.execute(
                "UPDATE outbox_lease SET holder = NULL, until = 0 WHERE name = 'outbox' AND holder = ?1",
                params![holder],
            )?;
            Ok(())
        })
        .await
    }

    async fn outbox_cursor(&self, endpoint: &str) -> Result<Option<i64>> {
        let endpoint = endpoint.to_owned();
        self.read(move |c, _| {
            Ok(c.query_row(
                "SELECT last_id FROM outbox_cursors WHERE endpoint = ?1",
                params![endpoint],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn advance_outbox_cursor(
        &self,
        endpoint: &str,
        fence: u64,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool> {
        let endpoint = endpoint.to_owned();
        self.write_grouped(move |c| {
            let current: Option<i64> = c
                .query_row(
                    "SELECT fence FROM outbox_lease WHERE name = 'outbox'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if current != Some(fence as i64) {
                return Ok(false);
            }
            let n = match from {
                None => c.execute(
                    "INSERT INTO outbox_cursors (endpoint, last_id) VALUES (?1, ?2) ON CONFLICT(endpoint) DO NOTHING",
                    params![endpoint, to],
                )?,
                Some(from) => c.execute(
                    "UPDATE outbox_cursors SET last_id = ?3 WHERE endpoint = ?1 AND last_id = ?2",
                    params![endpoint, from, to],
                )?,
            };
            Ok(n == 1)
        })
        .await
    }

    async fn put_dead_letter(&self, d: &DeadLetter) -> Result<()> {
        let (endpoint, id) = (d.endpoint.clone(), d.event.id);
        let body = serde_json::to_string(d).map_err(SqliteError::from)?;
        self.write_grouped(move |c| {
            c.execute(
                "INSERT INTO dead_letters (endpoint, event_id, body) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(endpoint, event_id) DO UPDATE SET body = excluded.body",
                params![endpoint, id, body],
            )?;
            Ok(())
        })
        .await
    }

    async fn get_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<Option<DeadLetter>> {
        let endpoint = endpoint.to_owned();
        self.read(move |c, _| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM dead_letters WHERE endpoint = ?1 AND event_id = ?2",
                    params![endpoint, event_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        endpoint: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let endpoint = endpoint.to_owned();
        self.read(move |c, _| {
            let mut st = c.prepare_cached(
                "SELECT body FROM dead_letters WHERE endpoint = ?1 AND event_id > ?2 ORDER BY event_id LIMIT ?3",
            )?;
            let rows = st.query_map(
                params![endpoint, after_id.unwrap_or(i64::MIN), sql_limit(limit)],
                |r| r.get::<_, String>(0),
            )?;
            let mut out = Vec::new();
            for body in rows {
                out.push(serde_json::from_str(&body?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<bool> {
        let endpoint = endpoint.to_owned();
        self.write_grouped(move |c| {
            Ok(c.execute(
                "DELETE FROM dead_letters WHERE endpoint = ?1 AND event_id = ?2",
                params![endpoint, event_id],
            )? == 1)
        })
        .await
    }

    async fn count_dead_letters(&self, endpoint: &str) -> Result<u64> {
        let endpoint = endpoint.to_owned();
        self.read(move |c, _| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM dead_letters WHERE endpoint = ?1",
                params![endpoint],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    // ---- drafts
}

#[async_trait::async_trait]
impl DraftStore for SqliteStore {
    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        let (p, c) = (p.clone(), conversation.to_owned());
        self.read(move |conn, _| load_draft(conn, &p, &c)).await
    }

    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        let p = p.clone();
        self.read(move |conn, _| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {DRAFT_COLS} FROM drafts WHERE principal = ?1 AND deleted = 0 ORDER BY conversation"
            ))?;
            let rows = st.query_map([p.as_str()], draft_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        let (p, c, text) = (p.clone(), conversation.to_owned(), text.to_owned());
        self.write_grouped(move |tx| {
            let cur = load_draft(tx, &p, &c)?;
            if seq_of(&cur) != expected_seq {
                return Ok(DraftWrite::Conflict(cur));
            }
            let attachments = cur
                .filter(|d| !d.deleted)
                .map(|d| d.attachments)
                .unwrap_or_default();
            let mut d = Draft {
                principal: p.clone(),
                conversation: c.clone(),
                text: text.clone(),
                seq: expected_seq + 1,
                updated_at: now,
                deleted: false,
                attachments,
            };
            d.deleted = d.is_empty();
            upsert_draft(tx, &d)?;
            Ok(DraftWrite::Written(d))
        })
        .await
    }

    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        let (p, c) = (p.clone(), conversation.to_owned());
        self.write(move |conn, blobs| {
            let tx = conn.transaction_with_behavior(IMMEDIATE)?;
            let cur = load_draft(&tx, &p, &c)?;
            if seq_of(&cur) != expected_seq {
                return Ok(DraftWrite::Conflict(cur));
            }
            let t = tombstone(&p, &c, expected_seq + 1, now);
            upsert_draft(&tx, &t)?;
            tx.commit()?;
            // Only after the commit: a crash before it must leave the bytes readable.
            blobs.remove_all(
                blob_ids(&cur.map(|d| d.attachments).unwrap_or_default())
                    .iter()
                    .map(String::as_str),
            );
            Ok(DraftWrite::Written(t))
        })
        .await
    }

    async fn put_attachment(&self, put: AttachmentPut<'_>, body: ByteStream) -> Result<DraftWrite> {
        let AttachmentPut {
            principal: p,
            conversation,
            expected_seq,
            name,
            content_type,
            limits,
            now,
            text,
            content_sha256,
        } = put;
        let text = text.map(str::to_owned);
        let (p, c, name) = (p.clone(), conversation.to_owned(), name.to_owned());
        let (p2, c2, name2) = (p.clone(), c.clone(), name.clone());
        // Seqs only grow, so a seq that is stale now is stale at commit too: refuse
        // before reading the body. Also learn the quota already used.
        let pre = self
            .read(move |conn, _| {
                let cur = load_draft(conn, &p2, &c2)?;
                if seq_of(&cur) != expected_seq {
                    return Ok(Err(cur));
                }
                let replaced = cur
                    .as_ref()
                    .filter(|d| !d.deleted)
                    .and_then(|d| d.attachment(&name2))
                    .map_or(0, |a| a.size);
                Ok(Ok(held_bytes(conn, &p2)?.saturating_sub(replaced)))
            })
            .await?;
        let held = match pre {
            Ok(held) => held,
            Err(cur) => return Ok(DraftWrite::Conflict(cur)),
        };
        let (pending, size, sha256) = self
            .blobs()
            .receive(body, limits.max_size, held, limits.quota)
            .await?;
        let sha256 = content_sha256
            .and_then(|c| c.get().cloned())
            .unwrap_or(sha256);
        let meta = AttachmentMeta {
            name: name.clone(),
            content_type: content_type.to_owned(),
            size,
            sha256,
            blob_id: pending.id.clone(),
        };
        // `pending` moves into the blocking job, so the file's fate is decided there
        // even if this future is dropped mid-commit.
        let outcome = self
            .write(move |conn, blobs| {
                let tx = conn.transaction_with_behavior(IMMEDIATE)?;
                let cur = load_draft(&tx, &p, &c)?;
                if seq_of(&cur) != expected_seq {
                    return Ok(Ok(DraftWrite::Conflict(cur)));
                }
                let mut d = match cur {
                    Some(d) if !d.deleted => d,
                    _ => tombstone(&p, &c, expected_seq, now),
                };
                let replaced = d
                    .attachments
                    .iter()
                    .position(|a| a.name == name)
                    .map(|i| d.attachments.remove(i));
                // Other uploads may have committed while this body streamed.
                let held_now =
                    held_bytes(&tx, &p)?.saturating_sub(replaced.as_ref().map_or(0, |a| a.size));
                if held_now + meta.size > limits.quota {
                    return Ok(Err(StoreError::QuotaExceeded {
                        quota: limits.quota,
                    }));
                }
                d.attachments.push(meta);
                if let Some(t) = text {
                    d.text = t;
                }
                d.seq = expected_seq + 1;
                d.updated_at = now;
                d.deleted = false;
                upsert_draft(&tx, &d)?;
                tx.commit()?;
                pending.keep();
                if let Some(r) = replaced {
                    blobs.remove_all([r.blob_id.as_str()]);
                }
                Ok(Ok(DraftWrite::Written(d)))
            })
            .await?;
        outcome
    }

    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>> {
        let (p, c, name) = (p.clone(), conversation.to_owned(), name.to_owned());
        let found = self
            .read(move |conn, blobs| {
                // A concurrent replace or delete may unlink the file between reading the
                // row and opening it; the row read again then tells the truth.
                for _ in 0..3 {
                    let meta = load_draft(conn, &p, &c)?
                        .filter(|d| !d.deleted)
                        .and_then(|d| d.attachment(&name).cloned());
                    let Some(meta) = meta else { return Ok(None) };
                    if let Some(file) = blobs.open(&meta.blob_id)? {
                        return Ok(Some((meta, file)));
                    }
                }
                Err(SqliteError::Corrupt(format!(
                    "attachment {name} has no bytes on disk"
                )))
            })
            .await?;
        Ok(found.map(|(meta, file)| (meta, crate::blobs::file_stream(file))))
    }

    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        let (p, c, name) = (p.clone(), conversation.to_owned(), name.to_owned());
        let text = text.map(str::to_owned);
        self.write(move |conn, blobs| {
            let tx = conn.transaction_with_behavior(IMMEDIATE)?;
            let cur = load_draft(&tx, &p, &c)?;
            if seq_of(&cur) != expected_seq {
                return Ok(DraftWrite::Conflict(cur));
            }
            let Some(mut d) = cur.filter(|d| !d.deleted) else {
                return Ok(DraftWrite::NotFound);
            };
            let Some(i) = d.attachments.iter().position(|a| a.name == name) else {
                return Ok(DraftWrite::NotFound);
            };
            let removed = d.attachments.remove(i);
            if let Some(t) = text {
                d.text = t;
            }
            d.seq += 1;
            d.updated_at = now;
            d.deleted = d.is_empty();
            upsert_draft(&tx, &d)?;
            tx.commit()?;
            blobs.remove_all([removed.blob_id.as_str()]);
            Ok(DraftWrite::Written(d))
        })
        .await
    }

    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
        merge: &MergeRule,
    ) -> Result<Vec<String>> {
        if from == to {
            return Ok(Vec::new());
        }
        let (from, to, merge) = (from.clone(), to.clone(), merge.clone());
        self.write_grouped(move |tx| {
            let live: Vec<Draft> = {
                let mut st = tx.prepare_cached(&format!(
                    "SELECT {DRAFT_COLS} FROM drafts WHERE principal = ?1 AND deleted = 0"
                ))?;
                let rows = st.query_map([from.as_str()], draft_from_row)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut moved = Vec::with_capacity(live.len());
            for anon in live {
                // Blob ids travel with the metadata, so no bytes are copied or lost.
                // A merge that fails rolls the whole move back: nothing leaves `from`.
                let user = load_draft(tx, &to, &anon.conversation)?;
                let d = merge(user.as_ref(), &anon, &to, now)?;
                upsert_draft(tx, &d)?;
                delete_draft_row(tx, &from, &anon.conversation)?;
                moved.push(anon.conversation);
            }
            Ok(moved)
        })
        .await
    }

    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.write(move |conn, blobs| {
            let tx = conn.transaction_with_behavior(IMMEDIATE)?;
            let doomed: Vec<Draft> = {
                let mut st = tx.prepare_cached(&format!(
                    "SELECT {DRAFT_COLS} FROM drafts WHERE updated_at < ?1 ORDER BY updated_at LIMIT ?2"
                ))?;
                let rows = st.query_map(params![before, sql_limit(limit)], draft_from_row)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for d in &doomed {
                delete_draft_row(&tx, &d.principal, &d.conversation)?;
            }
            tx.commit()?;
            let ids: Vec<String> = doomed.iter().flat_map(|d| blob_ids(&d.attachments)).collect();
            blobs.remove_all(ids.iter().map(String::as_str));
            Ok(doomed.len())
        })
        .await
    }

    // ---- snapshots
}

#[async_trait::async_trait]
impl SnapshotStore for SqliteStore {
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        let room = room.to_owned();
        self.read(move |c, _| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SNAPSHOT_COLS}, data FROM snapshots WHERE room = ?1"
            ))?;
            Ok(st
                .query_row([room], |r| {
                    Ok(Snapshot {
                        data: r.get(8)?,
                        ..snapshot_from_row(r)?
                    })
                })
                .optional()?)
        })
        .await
    }

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
        // The answer carries no data (the caller has it, and it may be megabytes), so
        // the bytes travel beside the record.
        let bytes = data.to_vec();
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
        self.write_grouped(move |tx| {
            // One transaction: readers see the old row or the new one, never a mix,
            // and a crash mid-write rolls back to the old one.
            let cur = tx
                .query_row(&format!("SELECT {SNAPSHOT_COLS} FROM snapshots WHERE room = ?1"), [&s.room], snapshot_from_row)
                .optional()?;
            if cur.as_ref().map_or(0, |c| c.version) != expected_version {
                return Ok(SnapshotWrite::Conflict(cur));
            }
            tx.execute(
                "INSERT OR REPLACE INTO snapshots (room, version, hash, content_type, data, size, updated_at, \
                 updated_by, retain_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    s.room,
                    s.version as i64,
                    s.hash,
                    s.content_type,
                    bytes,
                    s.size as i64,
                    s.updated_at,
                    s.updated_by,
                    s.retain_until
                ],
            )?;
            Ok(SnapshotWrite::Written(s.clone()))
        })
        .await
    }

    async fn snapshot_usage(&self, by: &str, except_room: &str) -> Result<SnapshotUsage> {
        let (by, room) = (by.to_owned(), except_room.to_owned());
        self.read(move |c, _| {
            let mut st = c.prepare_cached(
                "SELECT count(*), coalesce(sum(size), 0) FROM snapshots \
                 WHERE updated_by = ?1 AND room <> ?2",
            )?;
            Ok(st.query_row(params![by, room], |r| {
                Ok(SnapshotUsage {
                    rooms: r.get::<_, i64>(0)? as u64,
                    bytes: r.get::<_, i64>(1)? as u64,
                })
            })?)
        })
        .await
    }

    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        let room = room.to_owned();
        self.write_grouped(move |conn| {
            conn.execute(
                "UPDATE snapshots SET retain_until = ?2 WHERE room = ?1",
                params![room, until],
            )?;
            Ok(())
        })
        .await
    }

    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.write_grouped(move |conn| {
            Ok(conn.execute(
                "DELETE FROM snapshots WHERE room IN (SELECT room FROM snapshots \
                 WHERE retain_until IS NOT NULL AND retain_until <= ?1 LIMIT ?2)",
                params![now, sql_limit(limit)],
            )?)
        })
        .await
    }
}

/// The activity update: one UPDATE, moving each field forward only.
/// Inserts audit events (on the caller's transaction, if any); returns the last id.
fn insert_audit(conn: &rusqlite::Connection, events: &[AuditEvent]) -> Result<i64, SqliteError> {
    let mut st = conn.prepare_cached(
        "INSERT INTO audit (at, kind, handle, principal, role, client_ip, user_agent, last_activity_at, \
         reason, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for e in events {
        let detail = serde_json::to_string(&e.detail)?;
        st.execute(params![
            e.at,
            e.kind.as_str(),
            e.handle,
            e.principal,
            e.role,
            e.client_ip,
            e.user_agent,
            e.last_activity_at,
            e.reason,
            detail
        ])?;
    }
    Ok(conn.last_insert_rowid())
}

fn touch(conn: &rusqlite::Connection, t: &Touch) -> Result<usize, SqliteError> {
    let mut st = conn.prepare_cached(
        "UPDATE sessions SET last_activity_at = max(last_activity_at, ?2), last_seen_at = max(last_seen_at, ?3), \
         idle_expires_at = max(idle_expires_at, ?4), \
         next_deadline = min(max(idle_expires_at, ?4), absolute_expires_at), \
         client_ip = coalesce(?5, client_ip), user_agent = coalesce(?6, user_agent) \
         WHERE handle = ?1 AND state = 'active'",
    )?;
    Ok(st.execute(params![
        &t.handle.0[..],
        t.last_activity_at,
        t.last_seen_at,
        t.idle_expires_at,
        t.client_ip,
        t.user_agent
    ])?)
}
