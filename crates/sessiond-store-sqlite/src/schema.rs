//! Schema migrations, applied on open and tracked in `PRAGMA user_version`.

use crate::error::SqliteError;
use rusqlite::{Connection, TransactionBehavior};

/// Migration `i` brings the schema from version `i` to `i + 1`. Append only: a shipped
/// migration is never edited, because databases in the field already ran it.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sessions (
    handle              BLOB PRIMARY KEY,
    token_hash          BLOB NOT NULL,
    principal           TEXT NOT NULL,
    user_id             TEXT,
    role                TEXT NOT NULL,
    state               TEXT NOT NULL,
    end_reason          TEXT,
    ended_at            INTEGER,
    created_at          INTEGER NOT NULL,
    last_activity_at    INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    idle_expires_at     INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    -- min(idle, absolute): what the expiry scan orders by.
    next_deadline       INTEGER NOT NULL,
    client_ip           TEXT,
    user_agent          TEXT,
    -- JSON array of room names, NULL for "any room".
    allowed_rooms       TEXT
) WITHOUT ROWID;
CREATE UNIQUE INDEX sessions_token ON sessions(token_hash);
CREATE INDEX sessions_principal ON sessions(principal, handle);
CREATE INDEX sessions_due ON sessions(next_deadline) WHERE state = 'active';
CREATE INDEX sessions_ended ON sessions(ended_at) WHERE state = 'ended';

CREATE TABLE session_data (
    handle BLOB NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (handle, key)
) WITHOUT ROWID;

CREATE TABLE idempotency (
    key_hash     TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    handle       BLOB NOT NULL,
    sealed_token BLOB NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_handle ON idempotency(handle);

CREATE TABLE audit (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at               INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    handle           TEXT,
    principal        TEXT,
    role             TEXT,
    client_ip        TEXT,
    user_agent       TEXT,
    last_activity_at INTEGER,
    reason           TEXT,
    detail           TEXT NOT NULL
);
CREATE INDEX audit_principal ON audit(principal, id);
CREATE INDEX audit_handle ON audit(handle, id);
CREATE INDEX audit_at ON audit(at);

CREATE TABLE drafts (
    principal        TEXT NOT NULL,
    conversation     TEXT NOT NULL,
    text             TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    deleted          INTEGER NOT NULL,
    -- JSON array of AttachmentMeta; the bytes live in blob files.
    attachments      TEXT NOT NULL,
    -- Sum of attachment sizes, so quota checks need no JSON parsing.
    attachment_bytes INTEGER NOT NULL,
    PRIMARY KEY (principal, conversation)
) WITHOUT ROWID;
CREATE INDEX drafts_updated ON drafts(updated_at);

CREATE TABLE snapshots (
    room         TEXT PRIMARY KEY,
    version      INTEGER NOT NULL,
    hash         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data         BLOB NOT NULL,
    size         INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    updated_by   TEXT,
    retain_until INTEGER
) WITHOUT ROWID;
CREATE INDEX snapshots_retain ON snapshots(retain_until) WHERE retain_until IS NOT NULL;
"#,
    // 1 → 2: the session's rotation counter (`Session::version`); existing rows are 0.
    r#"
ALTER TABLE sessions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
"#,
    // 2 → 3: one-time claims (a sign-in ticket's jti).
    r#"
-- One-time claims (a sign-in ticket's jti), kept until the ticket expires.
CREATE TABLE claims (
    key   TEXT PRIMARY KEY,
    until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX claims_until ON claims(until);
"#,
    // 3 → 4: snapshots by writer, for the per-principal snapshot quota.
    r#"
CREATE INDEX snapshots_by ON snapshots(updated_by) WHERE updated_by IS NOT NULL;
"#,
    // 4 → 5: sign-in draft moves, recorded with the rotation, removed once done.
    r#"
CREATE TABLE draft_moves (
    from_principal TEXT PRIMARY KEY,
    to_principal   TEXT NOT NULL,
    handle         BLOB NOT NULL,
    at             INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 5 → 6: the webhook outbox: the deliverer's lease, per-endpoint cursors, dead letters.
    r#"
-- One row at most (name 'outbox'); fence counts hand-overs and survives releases.
CREATE TABLE outbox_lease (
    name      TEXT PRIMARY KEY,
    holder    TEXT,
    fence     INTEGER NOT NULL,
    until     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE outbox_cursors (
    endpoint  TEXT PRIMARY KEY,
    last_id   INTEGER NOT NULL
) WITHOUT ROWID;
-- The whole DeadLetter as JSON (it carries its audit event, which retention may purge).
CREATE TABLE dead_letters (
    endpoint  TEXT NOT NULL,
    event_id  INTEGER NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (endpoint, event_id)
) WITHOUT ROWID;
"#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`]. Each migration runs in its own
/// transaction together with its `user_version` bump, so a crash mid-migration leaves
/// the previous version intact and the next open simply retries.
pub fn migrate(conn: &mut Connection) -> Result<i64, SqliteError> {
    let mut version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    while version < SCHEMA_VERSION {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Re-read inside the lock: another process may have migrated meanwhile.
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current == version {
            tx.execute_batch(MIGRATIONS[version as usize])?;
            tx.pragma_update(None, "user_version", version + 1)?;
        }
        tx.commit()?;
        version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    }
    Ok(version)
}
