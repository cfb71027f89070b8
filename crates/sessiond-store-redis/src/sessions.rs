//! Sessions, their indexes and their data: create (idempotent), lookups, token CAS,
//! touches, ending, listing, deadlines and purges.

use crate::audited::Change;
use crate::error::RedisError;
use crate::keys::{handle_from_hex, handle_hex};
use crate::scripts::*;
use crate::{cap, RedisStore};
use futures::future::{join_all, try_join_all};
use sessiond_core::audit::AuditEvent;
use sessiond_core::quota::DataUsage;
use sessiond_core::store::{CreateOutcome, DraftMove, Expiry, IdempotencyRecord, SessionFilter};
use sessiond_core::{EndReason, Handle, Session, SessionState, Timestamp, TokenHash};
use std::collections::{HashMap, HashSet};

use sessiond_core::store::{Result, SessionStore, Touch};

type R<T> = Result<T, RedisError>;

/// Rows fetched per round trip when scanning an index.
const SCAN_BATCH: usize = 256;
/// Bound on index passes in one `due_sessions` or purge call, so a keyspace full of
/// stale entries cannot keep one call busy for long.
const MAX_PASSES: usize = 16;
/// Touches flushed concurrently; bounds the requests in flight for one batch.
const TOUCH_CHUNK: usize = 512;
/// Shortest safety-net TTL of an active session beyond its retention.
const MIN_ACTIVE_TTL_MS: i64 = 60_000;

fn deadline_of(s: &Session) -> Timestamp {
    s.idle_expires_at.min(s.absolute_expires_at)
}

fn state_str(s: SessionState) -> &'static str {
    match s {
        SessionState::Active => "active",
        SessionState::Ended => "ended",
    }
}

/// The session's hash fields: the full record as JSON plus the fields scripts change.
fn session_fields(s: &Session) -> R<Vec<(&'static str, String)>> {
    Ok(vec![
        ("rec", serde_json::to_string(s)?),
        ("tok", s.token_hash.to_hex()),
        ("st", state_str(s.state).to_owned()),
        ("la", s.last_activity_at.to_string()),
        ("ls", s.last_seen_at.to_string()),
        ("ie", s.idle_expires_at.to_string()),
        ("ae", s.absolute_expires_at.to_string()),
        (
            "er",
            s.end_reason
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
        ),
        ("ea", s.ended_at.map(|t| t.to_string()).unwrap_or_default()),
        ("ip", present(&s.client_ip)),
        ("ua", present(&s.user_agent)),
    ])
}

/// An optional string as a script argument or hash field: `""` for `None`, otherwise
/// the value behind a `=` marker (so `Some("")` stays distinct from `None`).
fn present<S: std::fmt::Display>(v: &Option<S>) -> String {
    v.as_ref().map(|v| format!("={v}")).unwrap_or_default()
}

/// The inverse of [`present`] for a hash field; `None` when the field is absent (a record
/// written before the field existed: `rec` decides).
fn absent_or(m: &HashMap<String, String>, name: &str) -> Option<Option<String>> {
    m.get(name).map(|v| v.strip_prefix('=').map(str::to_owned))
}

fn field<'a>(m: &'a HashMap<String, String>, name: &str) -> R<&'a str> {
    m.get(name)
        .map(String::as_str)
        .ok_or_else(|| RedisError::Corrupt(format!("session field {name} missing")))
}

fn num(m: &HashMap<String, String>, name: &str) -> R<i64> {
    field(m, name)?
        .parse()
        .map_err(|_| RedisError::Corrupt(format!("session field {name} is not a number")))
}

/// Rebuilds a session from its hash; the script-maintained fields win over `rec`.
pub(crate) fn decode_session(m: &HashMap<String, String>) -> R<Option<Session>> {
    if m.is_empty() {
        return Ok(None);
    }
    let mut s: Session = serde_json::from_str(field(m, "rec")?)?;
    s.token_hash = TokenHash::from_hex(field(m, "tok")?)
        .ok_or_else(|| RedisError::Corrupt("bad token hash".into()))?;
    s.state = match field(m, "st")? {
        "active" => SessionState::Active,
        "ended" => SessionState::Ended,
        other => {
            return Err(RedisError::Corrupt(format!(
                "unknown session state {other:?}"
            )))
        }
    };
    s.last_activity_at = num(m, "la")?;
    s.last_seen_at = num(m, "ls")?;
    s.idle_expires_at = num(m, "ie")?;
    s.absolute_expires_at = num(m, "ae")?;
    s.end_reason = match m.get("er").map(String::as_str) {
        None | Some("") => None,
        Some(r) => Some(
            EndReason::parse(r)
                .ok_or_else(|| RedisError::Corrupt(format!("unknown end reason {r:?}")))?,
        ),
    };
    s.ended_at = match m.get("ea").map(String::as_str) {
        None | Some("") => None,
        Some(_) => Some(num(m, "ea")?),
    };
    // Touches update these after creation or sign-in.
    if let Some(ip) = absent_or(m, "ip") {
        s.client_ip = ip;
    }
    if let Some(ua) = absent_or(m, "ua") {
        s.user_agent = ua.map(Into::into);
    }
    Ok(Some(s))
}

/// The idempotency record as stored (the core type has no serde).
#[derive(serde::Serialize, serde::Deserialize)]
struct IdemJson {
    key_hash: String,
    fingerprint: String,
    handle: Handle,
    /// Hex.
    sealed_token: String,
    created_at: Timestamp,
}

fn idem_to_json(r: &IdempotencyRecord) -> R<String> {
    Ok(serde_json::to_string(&IdemJson {
        key_hash: r.key_hash.clone(),
        fingerprint: r.fingerprint.clone(),
        handle: r.handle,
        sealed_token: hex::encode(&r.sealed_token),
        created_at: r.created_at,
    })?)
}

fn idem_from_json(s: &str) -> R<IdempotencyRecord> {
    let j: IdemJson = serde_json::from_str(s)?;
    Ok(IdempotencyRecord {
        key_hash: j.key_hash,
        fingerprint: j.fingerprint,
        handle: j.handle,
        sealed_token: hex::decode(&j.sealed_token)
            .map_err(|e| RedisError::Corrupt(e.to_string()))?,
        created_at: j.created_at,
    })
}

impl RedisStore {
    /// Safety-net TTL for a session's keys: its remaining lifetime plus the retention.
    fn session_ttl(&self, s: &Session) -> i64 {
        let lifetime = if s.is_active() {
            (s.absolute_expires_at - s.created_at.max(s.last_activity_at)).max(MIN_ACTIVE_TTL_MS)
        } else {
            0
        };
        lifetime.saturating_add(self.retention_ms())
    }

    fn cmd(name: &str) -> redis::Cmd {
        redis::cmd(name)
    }

    async fn zadd(
        &self,
        key: impl redis::ToRedisArgs + Send + Sync,
        opts: &[&str],
        score: i64,
        member: &str,
    ) -> R<()> {
        let mut c = Self::cmd("ZADD");
        c.arg(key).arg(opts).arg(score).arg(member);
        self.q::<redis::Value>(&c).await.map(drop)
    }

    async fn zrem(&self, key: impl redis::ToRedisArgs + Send + Sync, member: &str) -> R<()> {
        let mut c = Self::cmd("ZREM");
        c.arg(key).arg(member);
        self.q::<i64>(&c).await.map(drop)
    }

    async fn pexpire(&self, key: impl redis::ToRedisArgs + Send + Sync, ms: i64) -> R<()> {
        let mut c = Self::cmd("PEXPIRE");
        c.arg(key).arg(ms.max(1));
        self.q::<i64>(&c).await.map(drop)
    }

    pub(crate) async fn del_if_eq(
        &self,
        key: impl redis::ToRedisArgs + Send + Sync,
        value: &str,
    ) -> R<()> {
        let mut inv = DEL_IF_EQ.prepare_invoke();
        inv.key(key).arg(value);
        self.eval::<i64>(&inv).await.map(drop)
    }

    pub(crate) async fn session_map(&self, h: &Handle) -> R<HashMap<String, String>> {
        let mut c = Self::cmd("HGETALL");
        c.arg(self.keys.session(h));
        self.q(&c).await
    }

    /// The index bucket of a handle (deadlines, listing, ended, draft moves).
    fn bucket(&self, h: &Handle) -> usize {
        self.keys.buckets.of_handle(h)
    }

    /// Puts an active session on the deadline index, an ended one on the ended index.
    async fn index_state(&self, s: &Session) -> R<()> {
        let hex = handle_hex(&s.handle);
        let b = self.bucket(&s.handle);
        match (s.state, s.ended_at) {
            (SessionState::Active, _) => {
                self.zadd(&self.keys.deadlines(b), &[], deadline_of(s), &hex)
                    .await
            }
            (SessionState::Ended, ended_at) => {
                // Both in the bucket's slot: one round trip.
                let mut p = redis::pipe();
                p.cmd("ZREM")
                    .arg(self.keys.deadlines(b))
                    .arg(&hex)
                    .ignore()
                    .cmd("ZADD")
                    .arg(self.keys.ended(b))
                    .arg(ended_at.unwrap_or(s.created_at))
                    .arg(&hex)
                    .ignore();
                self.pipe(&p).await
            }
        }
    }

    /// An ending, unconditional (`end_session`) or on the record `seen`
    /// (`expire_session`): the script decides and ends in one step; then the indexes and
    /// the retention TTLs of the keys in other slots follow.
    async fn end(
        &self,
        h: &Handle,
        seen: Option<&Expiry>,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> R<Option<Session>> {
        let retention = self.retention_ms();
        let mut args = vec![
            reason.as_str().to_owned(),
            now.to_string(),
            retention.to_string(),
        ];
        if let Some(seen) = seen {
            args.extend([
                seen.token_hash.to_hex(),
                seen.last_activity_at.to_string(),
                seen.idle_expires_at.to_string(),
                seen.absolute_expires_at.to_string(),
            ]);
        }
        let end = Change {
            plain: &END_SESSION,
            audited: &END_SESSION_AUDITED,
            keys: vec![self.keys.session(h), self.keys.session_data(h)],
            args,
        };
        let Some(fields) = self
            .change::<Option<HashMap<String, String>>>(end, audit, Option::is_some)
            .await?
        else {
            return Ok(None);
        };
        let s = decode_session(&fields)?
            .ok_or_else(|| RedisError::Corrupt("ended session has no fields".into()))?;
        let idem = fields
            .get("idem")
            .filter(|k| !k.is_empty())
            .map(|k| self.keys.idem(k));
        // The handle listing is left alone: the create wrote its entry, and only a purge
        // (or a listing that finds the session gone) removes it.
        let (a, b, c) = futures::join!(
            self.index_state(&s),
            self.pexpire(self.keys.token(&s.token_hash), retention),
            async {
                match &idem {
                    Some(k) => self.pexpire(k, retention).await,
                    None => Ok(()),
                }
            },
        );
        a.and(b).and(c)?;
        self.replicated(&[&self.keys.session(h)]).await?;
        Ok(Some(s))
    }

    /// Removes a session that lost an idempotency race (it was never referenced).
    async fn unwind_create(&self, s: &Session) -> R<()> {
        let hex = handle_hex(&s.handle);
        let b = self.bucket(&s.handle);
        let mut del = Self::cmd("DEL");
        del.arg(self.keys.session(&s.handle))
            .arg(self.keys.session_data(&s.handle));
        self.q::<i64>(&del).await?;
        let (r1, r2, r3, r4) = futures::join!(
            self.del_if_eq(self.keys.token(&s.token_hash), &hex),
            self.zrem(self.keys.deadlines(b), &hex),
            self.zrem(self.keys.sessions(b), &hex),
            self.zrem(self.keys.ended(b), &hex),
        );
        r1.and(r2).and(r3).and(r4)
    }

    /// Purges one ended session (an entry of bucket `b`'s ended index) with its data,
    /// token index and idempotency record, or repairs its index entries if it is not
    /// (or no longer) purgeable.
    async fn purge_one(&self, b: usize, hex: &str, ended_before: Timestamp) -> R<bool> {
        let Some(h) = handle_from_hex(hex) else {
            self.zrem(&self.keys.ended(b), hex).await?;
            return Ok(false);
        };
        let mut inv = PURGE_SESSION.prepare_invoke();
        inv.key(self.keys.session(&h))
            .key(self.keys.session_data(&h))
            .arg(ended_before);
        let purged = self.eval::<Option<(String, String)>>(&inv).await?;
        let Some((tok, idem)) = purged else {
            let mut get = Self::cmd("HMGET");
            get.arg(self.keys.session(&h)).arg("st").arg("ea");
            let (st, ea): (Option<String>, Option<i64>) = self.q(&get).await?;
            match (st.as_deref(), ea) {
                (Some("ended"), Some(ea)) => self.zadd(&self.keys.ended(b), &[], ea, hex).await?,
                (Some(_), _) => self.zrem(&self.keys.ended(b), hex).await?,
                (None, _) => {
                    self.zrem(&self.keys.ended(b), hex).await?;
                    self.zrem(&self.keys.sessions(b), hex).await?;
                }
            }
            return Ok(false);
        };
        if !tok.is_empty() {
            self.del_if_eq(&self.keys.token_hex(&tok), hex).await?;
        }
        if !idem.is_empty() {
            let mut release = IDEM_RELEASE.prepare_invoke();
            release.key(self.keys.idem(&idem)).arg(hex);
            self.eval::<i64>(&release).await?;
        }
        self.zrem(&self.keys.deadlines(b), hex).await?;
        self.zrem(&self.keys.sessions(b), hex).await?;
        self.zrem(&self.keys.ended(b), hex).await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn ping(&self) -> Result<()> {
        let _: String = self.q(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
        audit: &[AuditEvent],
    ) -> Result<CreateOutcome> {
        let hex = handle_hex(&s.handle);
        let ttl = self.session_ttl(s);
        let mut fields = session_fields(s)?;
        if let Some(rec) = idem {
            fields.push(("idem", rec.key_hash.clone()));
        }
        let mut args = vec![ttl.to_string()];
        for (k, v) in fields {
            args.push(k.to_owned());
            args.push(v);
        }
        // With an idempotency key the claim is the commit point (a session that loses
        // the race is unwound), so the events go with the claim, not the insert.
        let create = Change {
            plain: &CREATE_SESSION,
            audited: &CREATE_SESSION_AUDITED,
            keys: vec![self.keys.session(&s.handle)],
            args,
        };
        let events = if idem.is_some() { &[][..] } else { audit };
        if self.change::<i64>(create, events, |n| *n == 1).await? == 0 {
            return Err(RedisError::Corrupt(format!("session {} already exists", s.handle)).into());
        }
        let mut set_token = Self::cmd("SET");
        set_token
            .arg(self.keys.token(&s.token_hash))
            .arg(&hex)
            .arg("PX")
            .arg(ttl);
        let (a, b, c) = futures::join!(
            self.q::<redis::Value>(&set_token),
            self.index_state(s),
            self.zadd(self.keys.sessions(self.bucket(&s.handle)), &[], 0, &hex),
        );
        a?;
        b?;
        c?;
        let Some(rec) = idem else {
            return Ok(CreateOutcome::Created);
        };
        let claim = Change {
            plain: &IDEM_CLAIM,
            audited: &IDEM_CLAIM_AUDITED,
            keys: vec![self.keys.idem(&rec.key_hash)],
            args: vec![hex.clone(), idem_to_json(rec)?, ttl.to_string()],
        };
        let claimed = self
            .change(claim, audit, |r: &(i64, String)| r.0 == 1)
            .await;
        let (won, existing): (i64, String) = match claimed {
            Ok(r) => r,
            Err(e) => {
                // Neither the claim nor its events were written: the session was never
                // handed out, so it goes (a crash here leaves it unreachable, never
                // announced, until its TTL).
                // (On Cluster the claim itself may stand, the events failing after it:
                // then the session stays, as the claim names it.)
                if !self.is_cluster() {
                    let _ = self.unwind_create(s).await;
                }
                return Err(e.into());
            }
        };
        if won == 1 {
            return Ok(CreateOutcome::Created);
        }
        self.unwind_create(s).await?;
        Ok(CreateOutcome::Existing(idem_from_json(&existing)?))
    }

    async fn get_session(&self, h: &Handle) -> Result<Option<Session>> {
        Ok(decode_session(&self.session_map(h).await?)?)
    }

    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>> {
        if !self.is_cluster() {
            // The hot path (every request validates its cookie): one round trip.
            let (before, after) = self.keys.session_key_parts();
            let mut inv = TOKEN_LOOKUP.prepare_invoke();
            inv.key(self.keys.token(hash)).arg(before).arg(after);
            let Some((_, fields)) = self
                .eval::<Option<(String, HashMap<String, String>)>>(&inv)
                .await?
            else {
                return Ok(None);
            };
            // The index is only a hint: the session itself must carry this token.
            return Ok(decode_session(&fields)?.filter(|s| s.token_hash.ct_eq(hash)));
        }
        let mut get = Self::cmd("GET");
        get.arg(self.keys.token(hash));
        let Some(hex) = self.q::<Option<String>>(&get).await? else {
            return Ok(None);
        };
        let Some(h) = handle_from_hex(&hex) else {
            return Ok(None);
        };
        // The index is only a hint: the session itself must carry this token.
        Ok(self
            .get_session(&h)
            .await?
            .filter(|s| s.token_hash.ct_eq(hash)))
    }

    async fn update_session(
        &self,
        s: &Session,
        expected: &TokenHash,
        audit: &[AuditEvent],
        draft_move: Option<&DraftMove>,
    ) -> Result<bool> {
        let hex = handle_hex(&s.handle);
        let ttl = self.session_ttl(s);
        let rotated = !s.token_hash.ct_eq(expected);
        if s.is_active() {
            // Pull an existing deadline entry earlier first, so a crash after the
            // update can only make the timer look too early (it re-checks), never late.
            self.zadd(
                &self.keys.deadlines(self.bucket(&s.handle)),
                &["XX", "LT"],
                deadline_of(s),
                &hex,
            )
            .await?;
        }
        if rotated {
            // The new index entry goes first; until the update applies it is a hint
            // that fails verification.
            let mut set = Self::cmd("SET");
            set.arg(self.keys.token(&s.token_hash))
                .arg(&hex)
                .arg("PX")
                .arg(ttl);
            self.q::<redis::Value>(&set).await?;
        }
        let move_json = match draft_move {
            Some(m) => {
                // Indexed first: a crash after the update leaves an entry the sweep
                // follows; one whose update never applied is dropped by the sweep.
                self.zadd(
                    &self.keys.draft_moves(self.bucket(&s.handle)),
                    &[],
                    m.at,
                    &hex,
                )
                .await?;
                serde_json::to_string(m).map_err(RedisError::from)?
            }
            None => String::new(),
        };
        let mut args = vec![expected.to_hex(), ttl.to_string(), move_json];
        for (k, v) in session_fields(s)? {
            args.push(k.to_owned());
            args.push(v);
        }
        let update = Change {
            plain: &UPDATE_SESSION,
            audited: &UPDATE_SESSION_AUDITED,
            keys: vec![
                self.keys.session(&s.handle),
                self.keys.session_data(&s.handle),
                self.keys.draft_move(&s.handle),
            ],
            args,
        };
        let (applied, current): (i64, String) = self
            .change(update, audit, |r: &(i64, String)| r.0 == 1)
            .await?;
        if applied == 1 {
            if rotated {
                self.del_if_eq(&self.keys.token(expected), &hex).await?;
            }
            self.index_state(s).await?;
            self.replicated(&[&self.keys.session(&s.handle)]).await?;
            return Ok(true);
        }
        if rotated && current != s.token_hash.to_hex() {
            self.del_if_eq(&self.keys.token(&s.token_hash), &hex)
                .await?;
        }
        Ok(false)
    }

    async fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool> {
        let h = &t.handle;
        let touch = Change {
            plain: &TOUCH_SESSION,
            audited: &TOUCH_SESSION_AUDITED,
            keys: vec![self.keys.session(h)],
            args: vec![
                t.last_activity_at.to_string(),
                t.last_seen_at.to_string(),
                t.idle_expires_at.to_string(),
                present(&t.client_ip),
                present(&t.user_agent),
            ],
        };
        let Some(deadline) = self
            .change::<Option<i64>>(touch, audit, Option::is_some)
            .await?
        else {
            return Ok(false);
        };
        // GT: concurrent touches may land in any order; the entry only moves later.
        self.zadd(
            &self.keys.deadlines(self.bucket(h)),
            &["GT"],
            deadline,
            &handle_hex(h),
        )
        .await?;
        Ok(true)
    }

    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()> {
        for chunk in touches.chunks(TOUCH_CHUNK) {
            // Concurrent requests share the multiplexed socket: one round trip per chunk.
            try_join_all(chunk.iter().map(|t| self.touch_session(t, &[]))).await?;
        }
        Ok(())
    }

    async fn end_session(
        &self,
        h: &Handle,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        Ok(self.end(h, None, reason, now, audit).await?)
    }

    async fn expire_session(
        &self,
        seen: &Expiry,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        Ok(self
            .end(&seen.handle, Some(seen), reason, now, audit)
            .await?)
    }

    async fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>> {
        let last = cap(limit).min(isize::MAX as usize) as isize - 1;
        // The oldest `limit` over every bucket: each bucket's oldest, merged by time.
        let lists = try_join_all((0..self.keys.buckets.len()).map(|b| async move {
            let mut range = Self::cmd("ZRANGE");
            range
                .arg(self.keys.draft_moves(b))
                .arg(0)
                .arg(last)
                .arg("WITHSCORES");
            let v: Vec<(String, f64)> = self.q(&range).await?;
            Ok::<_, RedisError>(v.into_iter().map(move |(hex, at)| (at as i64, b, hex)))
        }))
        .await?;
        let mut entries: Vec<(i64, usize, String)> = lists.into_iter().flatten().collect();
        entries.sort_unstable();
        entries.truncate(cap(limit));
        let mut out = Vec::new();
        let mut cutoff = None;
        for (_, b, hex) in entries {
            let json = match handle_from_hex(&hex) {
                Some(h) => {
                    let mut get = Self::cmd("GET");
                    get.arg(self.keys.draft_move(&h));
                    self.q::<Option<String>>(&get).await?
                }
                None => None,
            };
            match json {
                Some(j) => out.push(serde_json::from_str(&j).map_err(RedisError::from)?),
                None => {
                    // The rotation it was indexed for never applied (or the move was
                    // finished): drop the entry, unless it is younger than a minute
                    // (its rotation may be in flight: the entry is written before it).
                    let cutoff = match cutoff {
                        Some(c) => c,
                        None => {
                            let (secs, _): (i64, i64) = self.q(&Self::cmd("TIME")).await?;
                            *cutoff.insert(secs.saturating_mul(1000) - MIN_ACTIVE_TTL_MS)
                        }
                    };
                    let mut inv = ZREM_IF_LE.prepare_invoke();
                    inv.key(self.keys.draft_moves(b)).arg(&hex).arg(cutoff);
                    self.eval::<i64>(&inv).await?;
                }
            }
        }
        Ok(out)
    }

    async fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool> {
        let finish = Change {
            plain: &FINISH_MOVE,
            audited: &FINISH_MOVE_AUDITED,
            keys: vec![self.keys.draft_move(&m.handle)],
            args: vec![serde_json::to_string(m).map_err(RedisError::from)?],
        };
        let done = self.change::<i64>(finish, audit, |n| *n == 1).await? == 1;
        if done {
            let mut inv = ZREM_IF_LE.prepare_invoke();
            inv.key(self.keys.draft_moves(self.bucket(&m.handle)))
                .arg(handle_hex(&m.handle))
                .arg(m.at);
            self.eval::<i64>(&inv).await?;
        }
        Ok(done)
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let limit = cap(filter.limit);
        let mut out = Vec::new();
        // Buckets are ranges of handles in order: read them one after the other.
        let first = filter.after.map_or(0, |h| self.bucket(&h));
        let mut cursor = filter.after.map(|h| handle_hex(&h));
        for b in first..self.keys.buckets.len() {
            loop {
                let start = cursor
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |c| format!("({c}"));
                let mut range = Self::cmd("ZRANGEBYLEX");
                range
                    .arg(self.keys.sessions(b))
                    .arg(start)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(SCAN_BATCH);
                let hexes: Vec<String> = self.q(&range).await?;
                let maps = try_join_all(hexes.iter().map(|hex| async move {
                    match handle_from_hex(hex) {
                        Some(h) => self.session_map(&h).await,
                        None => Ok(HashMap::new()),
                    }
                }))
                .await?;
                for (hex, m) in hexes.iter().zip(&maps) {
                    match decode_session(m)? {
                        // Expired by its safety-net TTL: drop the dangling index entry.
                        None => self.zrem(&self.keys.sessions(b), hex).await?,
                        Some(s) if filter.matches(&s) => {
                            out.push(s);
                            if out.len() >= limit {
                                return Ok(out);
                            }
                        }
                        Some(_) => {}
                    }
                }
                if hexes.len() < SCAN_BATCH {
                    break;
                }
                cursor = hexes.last().cloned();
            }
            cursor = None;
        }
        Ok(out)
    }

    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>> {
        let limit = cap(limit);
        let n = self.keys.buckets.len();
        let mut out: Vec<(i64, Handle)> = Vec::new();
        let mut seen = HashSet::new();
        // Per bucket: entries confirmed so far (they stay in front of its range; skip
        // them), and the buckets that may hold more.
        let mut confirmed = vec![0usize; n];
        let mut open: Vec<usize> = (0..n).collect();
        for _ in 0..MAX_PASSES {
            let left = limit.saturating_sub(out.len());
            if left == 0 || open.is_empty() {
                break;
            }
            // An even share of what is left from each open bucket (handles spread evenly);
            // a bucket holding more is read again in the next pass.
            let share = left.div_ceil(open.len()).clamp(1, SCAN_BATCH * 4);
            let found = try_join_all(open.iter().map(|&b| {
                let skip = confirmed[b];
                async move {
                    let mut range = Self::cmd("ZRANGEBYSCORE");
                    range
                        .arg(self.keys.deadlines(b))
                        .arg("-inf")
                        .arg(now)
                        .arg("LIMIT")
                        .arg(skip)
                        .arg(share);
                    let hexes: Vec<String> = self.q(&range).await?;
                    let states = try_join_all(hexes.iter().map(|hex| async move {
                        let Some(h) = handle_from_hex(hex) else {
                            return Ok(None);
                        };
                        let mut get = Self::cmd("HMGET");
                        get.arg(self.keys.session(&h)).arg("st").arg("ie").arg("ae");
                        let v: (Option<String>, Option<i64>, Option<i64>) = self.q(&get).await?;
                        Ok::<_, RedisError>(Some((h, v)))
                    }))
                    .await?;
                    Ok::<_, RedisError>((b, hexes, states))
                }
            }))
            .await?;
            let mut fixes = Vec::new();
            open.clear();
            for (b, hexes, states) in found {
                if hexes.len() == share {
                    open.push(b);
                }
                for (hex, state) in hexes.into_iter().zip(states) {
                    match state {
                        Some((h, (Some(st), Some(ie), Some(ae)))) if st == "active" => {
                            let deadline = ie.min(ae);
                            if deadline <= now {
                                confirmed[b] += 1;
                                if seen.insert(h) {
                                    out.push((deadline, h));
                                }
                            } else {
                                fixes.push((b, hex, Some(deadline)));
                            }
                        }
                        // Ended, purged or unreadable: not a candidate any more.
                        _ => fixes.push((b, hex, None)),
                    }
                }
            }
            join_all(fixes.into_iter().map(|(b, hex, d)| async move {
                match d {
                    Some(d) => self.zadd(&self.keys.deadlines(b), &[], d, &hex).await,
                    None => self.zrem(&self.keys.deadlines(b), &hex).await,
                }
            }))
            .await
            .into_iter()
            .collect::<R<Vec<()>>>()?;
        }
        // Earliest first across the buckets.
        out.sort_unstable_by_key(|(d, h)| (*d, *h));
        out.truncate(limit);
        Ok(out.into_iter().map(|(_, h)| h).collect())
    }

    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize> {
        let limit = cap(limit);
        let n = self.keys.buckets.len();
        let start = self.rotate();
        let mut purged = 0;
        for k in 0..n {
            let b = (start + k) % n;
            for _ in 0..MAX_PASSES {
                let want = (limit - purged).min(SCAN_BATCH);
                if want == 0 {
                    break;
                }
                let mut range = Self::cmd("ZRANGEBYSCORE");
                range
                    .arg(self.keys.ended(b))
                    .arg("-inf")
                    .arg(format!("({ended_before}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(want);
                let hexes: Vec<String> = self.q(&range).await?;
                if hexes.is_empty() {
                    break;
                }
                for hex in &hexes {
                    if self.purge_one(b, hex, ended_before).await? {
                        purged += 1;
                    }
                }
                if hexes.len() < want {
                    break;
                }
            }
            if purged >= limit {
                break;
            }
        }
        Ok(purged)
    }

    async fn count_active_sessions(&self) -> Result<u64> {
        let counts = try_join_all((0..self.keys.buckets.len()).map(|b| async move {
            let mut c = Self::cmd("ZCARD");
            c.arg(self.keys.deadlines(b));
            self.q::<u64>(&c).await
        }))
        .await?;
        Ok(counts.into_iter().sum())
    }

    async fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        // SET NX decides the one winner across nodes; the TTL drops the claim at `until`,
        // so no purge is needed (a TTL must be positive: a claim already due lasts 1 ms).
        let mut c = Self::cmd("SET");
        c.arg(self.keys.claim(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(until.saturating_sub(now).max(1));
        Ok(self.q::<Option<String>>(&c).await?.is_some())
    }

    async fn purge_claims(&self, _now: Timestamp, _limit: usize) -> Result<usize> {
        Ok(0)
    }

    async fn get_data(&self, h: &Handle, key: &str) -> Result<Option<serde_json::Value>> {
        let mut c = Self::cmd("HGET");
        c.arg(self.keys.session_data(h)).arg(key);
        match self.q::<Option<String>>(&c).await? {
            Some(v) => Ok(Some(serde_json::from_str(&v).map_err(RedisError::from)?)),
            None => Ok(None),
        }
    }

    async fn put_data(&self, h: &Handle, key: &str, value: &serde_json::Value) -> Result<bool> {
        let mut inv = PUT_DATA.prepare_invoke();
        inv.key(self.keys.session(h))
            .key(self.keys.session_data(h))
            .arg(key)
            .arg(serde_json::to_string(value).map_err(RedisError::from)?);
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    async fn put_data_if(
        &self,
        h: &Handle,
        key: &str,
        expected: Option<&serde_json::Value>,
        value: &serde_json::Value,
    ) -> Result<bool> {
        // Compared as text: the stored text is what `to_string` wrote, and a value read
        // back and serialized again gives the same text (serde_json round-trips).
        let expected = expected
            .map(serde_json::to_string)
            .transpose()
            .map_err(RedisError::from)?;
        let mut inv = PUT_DATA_IF.prepare_invoke();
        inv.key(self.keys.session(h))
            .key(self.keys.session_data(h))
            .arg(key)
            .arg(serde_json::to_string(value).map_err(RedisError::from)?)
            .arg(u8::from(expected.is_some()))
            .arg(expected.unwrap_or_default());
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    async fn delete_data(&self, h: &Handle, key: &str) -> Result<bool> {
        let mut c = Self::cmd("HDEL");
        c.arg(self.keys.session_data(h)).arg(key);
        Ok(self.q::<i64>(&c).await? > 0)
    }

    async fn data_usage(&self, h: &Handle, key: &str) -> Result<DataUsage> {
        let mut inv = DATA_USAGE.prepare_invoke();
        inv.key(self.keys.session_data(h)).arg(key);
        let r: Vec<i64> = self.eval(&inv).await?;
        let n = |i: usize| r.get(i).map(|v| (*v).max(0) as u64);
        Ok(DataUsage {
            keys: n(0).unwrap_or(0),
            bytes: n(1).unwrap_or(0),
            current: n(2),
        })
    }
}
