//! Row <-> domain type mapping and the small SQL building blocks the store reuses.

use crate::error::SqliteError;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::draft::{AttachmentMeta, Draft};
use sessiond_core::snapshot::Snapshot;
use sessiond_core::{EndReason, Handle, Principal, Session, SessionState, TokenHash};

pub(crate) const SESSION_COLS: &str = "handle, token_hash, principal, user_id, role, state, end_reason, ended_at, \
     created_at, last_activity_at, last_seen_at, idle_expires_at, absolute_expires_at, client_ip, user_agent, \
     allowed_rooms, version";

fn bad(idx: usize, ty: Type, msg: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, msg.to_owned().into())
}

pub(crate) fn handle_from(idx: usize, v: Vec<u8>) -> rusqlite::Result<Handle> {
    Ok(Handle(v.try_into().map_err(|_| {
        bad(idx, Type::Blob, "handle is not 12 bytes")
    })?))
}

fn state_str(s: SessionState) -> &'static str {
    match s {
        SessionState::Active => "active",
        SessionState::Ended => "ended",
    }
}

pub(crate) fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    let token: Vec<u8> = r.get(1)?;
    let state = match r.get_ref(5)?.as_str()? {
        "active" => SessionState::Active,
        "ended" => SessionState::Ended,
        _ => return Err(bad(5, Type::Text, "unknown session state")),
    };
    let end_reason = match r.get::<_, Option<String>>(6)? {
        Some(s) => {
            Some(EndReason::parse(&s).ok_or_else(|| bad(6, Type::Text, "unknown end reason"))?)
        }
        None => None,
    };
    let allowed_rooms = match r.get::<_, Option<String>>(15)? {
        Some(j) => Some(
            serde_json::from_str(&j)
                .map_err(|_| bad(15, Type::Text, "allowed_rooms is not a JSON list"))?,
        ),
        None => None,
    };
    Ok(Session {
        handle: handle_from(0, r.get(0)?)?,
        token_hash: TokenHash(
            token
                .try_into()
                .map_err(|_| bad(1, Type::Blob, "token hash is not 32 bytes"))?,
        ),
        principal: Principal(r.get(2)?),
        user_id: r.get(3)?,
        role: r.get(4)?,
        state,
        end_reason,
        ended_at: r.get(7)?,
        created_at: r.get(8)?,
        last_activity_at: r.get(9)?,
        last_seen_at: r.get(10)?,
        idle_expires_at: r.get(11)?,
        absolute_expires_at: r.get(12)?,
        client_ip: r.get(13)?,
        user_agent: r.get(14)?,
        allowed_rooms,
        version: r
            .get::<_, i64>(16)?
            .try_into()
            .map_err(|_| bad(16, Type::Integer, "negative version"))?,
    })
}

fn rooms_json(s: &Session) -> Result<Option<String>, SqliteError> {
    Ok(match &s.allowed_rooms {
        Some(r) => Some(serde_json::to_string(r)?),
        None => None,
    })
}

/// The rotation counter as SQLite's signed integer (a counter never gets near 2^63).
fn version_col(s: &Session) -> Result<i64, SqliteError> {
    i64::try_from(s.version).map_err(|_| SqliteError::Corrupt("session version overflows".into()))
}

/// Inserts a new session row.
pub(crate) fn insert_session(conn: &Connection, s: &Session) -> Result<(), SqliteError> {
    let mut st = conn.prepare_cached(&format!(
        "INSERT INTO sessions ({SESSION_COLS}, next_deadline) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
    ))?;
    st.execute(params![
        &s.handle.0[..],
        &s.token_hash.0[..],
        s.principal.as_str(),
        s.user_id,
        s.role,
        state_str(s.state),
        s.end_reason.map(|r| r.as_str()),
        s.ended_at,
        s.created_at,
        s.last_activity_at,
        s.last_seen_at,
        s.idle_expires_at,
        s.absolute_expires_at,
        s.client_ip,
        s.user_agent,
        rooms_json(s)?,
        version_col(s)?,
        s.idle_expires_at.min(s.absolute_expires_at),
    ])?;
    Ok(())
}

/// Overwrites every column of an existing session row.
pub(crate) fn replace_session(conn: &Connection, s: &Session) -> Result<usize, SqliteError> {
    let mut st = conn.prepare_cached(
        "UPDATE sessions SET token_hash = ?2, principal = ?3, user_id = ?4, role = ?5, state = ?6, \
         end_reason = ?7, ended_at = ?8, created_at = ?9, last_activity_at = ?10, last_seen_at = ?11, \
         idle_expires_at = ?12, absolute_expires_at = ?13, client_ip = ?14, user_agent = ?15, \
         allowed_rooms = ?16, version = ?17, next_deadline = ?18 WHERE handle = ?1",
    )?;
    Ok(st.execute(params![
        &s.handle.0[..],
        &s.token_hash.0[..],
        s.principal.as_str(),
        s.user_id,
        s.role,
        state_str(s.state),
        s.end_reason.map(|r| r.as_str()),
        s.ended_at,
        s.created_at,
        s.last_activity_at,
        s.last_seen_at,
        s.idle_expires_at,
        s.absolute_expires_at,
        s.client_ip,
        s.user_agent,
        rooms_json(s)?,
        version_col(s)?,
        s.idle_expires_at.min(s.absolute_expires_at),
    ])?)
}

pub(crate) fn load_session(conn: &Connection, h: &Handle) -> Result<Option<Session>, SqliteError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLS} FROM sessions WHERE handle = ?1"
    ))?;
    Ok(st.query_row([&h.0[..]], session_from_row).optional()?)
}

// ---- drafts

pub(crate) const DRAFT_COLS: &str =
    "principal, conversation, text, seq, updated_at, deleted, attachments";

pub(crate) fn draft_from_row(r: &Row<'_>) -> rusqlite::Result<Draft> {
    let atts: String = r.get(6)?;
    let attachments: Vec<AttachmentMeta> = serde_json::from_str(&atts)
        .map_err(|_| bad(6, Type::Text, "attachments are not JSON metadata"))?;
    Ok(Draft {
        principal: Principal(r.get(0)?),
        conversation: r.get(1)?,
        text: r.get(2)?,
        seq: r.get::<_, i64>(3)? as u64,
        updated_at: r.get(4)?,
        deleted: r.get(5)?,
        attachments,
    })
}

pub(crate) fn load_draft(
    conn: &Connection,
    p: &Principal,
    conversation: &str,
) -> Result<Option<Draft>, SqliteError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {DRAFT_COLS} FROM drafts WHERE principal = ?1 AND conversation = ?2"
    ))?;
    Ok(st
        .query_row(params![p.as_str(), conversation], draft_from_row)
        .optional()?)
}

pub(crate) fn upsert_draft(conn: &Connection, d: &Draft) -> Result<(), SqliteError> {
    let mut st = conn.prepare_cached(
        "INSERT INTO drafts (principal, conversation, text, seq, updated_at, deleted, attachments, attachment_bytes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (principal, conversation) DO UPDATE SET text = excluded.text, seq = excluded.seq, \
         updated_at = excluded.updated_at, deleted = excluded.deleted, attachments = excluded.attachments, \
         attachment_bytes = excluded.attachment_bytes",
    )?;
    st.execute(params![
        d.principal.as_str(),
        d.conversation,
        d.text,
        d.seq as i64,
        d.updated_at,
        d.deleted,
        serde_json::to_string(&d.attachments)?,
        d.attachment_bytes() as i64,
    ])?;
    Ok(())
}

pub(crate) fn delete_draft_row(
    conn: &Connection,
    p: &Principal,
    conversation: &str,
) -> Result<(), SqliteError> {
    let mut st =
        conn.prepare_cached("DELETE FROM drafts WHERE principal = ?1 AND conversation = ?2")?;
    st.execute(params![p.as_str(), conversation])?;
    Ok(())
}

/// Attachment bytes the principal holds in live drafts.
pub(crate) fn held_bytes(conn: &Connection, p: &Principal) -> Result<u64, SqliteError> {
    let mut st = conn
        .prepare_cached("SELECT COALESCE(SUM(attachment_bytes), 0) FROM drafts WHERE principal = ?1 AND deleted = 0")?;
    Ok(st.query_row([p.as_str()], |r| r.get::<_, i64>(0))? as u64)
}

// ---- snapshots

pub(crate) const SNAPSHOT_COLS: &str =
    "room, version, hash, content_type, size, updated_at, updated_by, retain_until";

/// A snapshot row without its data (callers add it when asked).
pub(crate) fn snapshot_from_row(r: &Row<'_>) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        room: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        hash: r.get(2)?,
        content_type: r.get(3)?,
        data: Vec::new(),
        size: r.get::<_, i64>(4)? as u64,
        updated_at: r.get(5)?,
        updated_by: r.get(6)?,
        retain_until: r.get(7)?,
    })
}

// ---- audit

pub(crate) const AUDIT_COLS: &str =
    "id, at, kind, handle, principal, role, client_ip, user_agent, last_activity_at, reason, detail";

pub(crate) fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    let kind = AuditKind::parse(r.get_ref(2)?.as_str()?)
        .ok_or_else(|| bad(2, Type::Text, "unknown audit kind"))?;
    let detail: String = r.get(10)?;
    Ok(AuditEvent {
        id: r.get(0)?,
        at: r.get(1)?,
        kind,
        handle: r.get(3)?,
        principal: r.get(4)?,
        role: r.get(5)?,
        client_ip: r.get(6)?,
        user_agent: r.get(7)?,
        last_activity_at: r.get(8)?,
        reason: r.get(9)?,
        detail: serde_json::from_str(&detail)
            .map_err(|_| bad(10, Type::Text, "audit detail is not JSON"))?,
    })
}
