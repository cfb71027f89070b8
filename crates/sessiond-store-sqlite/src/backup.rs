//! Online backup of a data directory: a consistent copy of the database, the attachment
//! files it names and the server secret, taken while a server may be writing.
//!
//! # Why `VACUUM INTO` and not the backup API
//!
//! `VACUUM INTO` copies the database inside one read transaction, so in WAL mode the copy
//! is an exact snapshot that never blocks the running server's writer and never has to
//! restart (the backup API restarts its copy whenever another process writes, which under
//! a steady write load may never finish). It also compacts the copy. It needs no extra
//! rusqlite feature.
//!
//! # Why a directory
//!
//! A database alone is not a backup: attachment bytes live in `blobs/` and the generated
//! `server-secret` derives the keys of browsers' local draft copies. The backup is a
//! directory laid out like `data_dir`, so restoring is replacing one with the other.
//! It is built under a temporary name next to the target, verified
//! (`PRAGMA integrity_check`, every named attachment present) and only then renamed into
//! place: the target path holds a complete, checked backup or nothing.

use crate::blobs::sync_dir;
use crate::error::SqliteError;
use crate::{referenced_blobs, DB_FILE};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The generated secret's file name (see the server's builder); copied when present.
const SECRET_FILE: &str = "server-secret";
/// A draft deleted between the database snapshot and the copy of its attachments takes
/// its files with it; the backup then starts over from a fresh snapshot, this many times.
const ATTEMPTS: usize = 5;
/// How long the backup waits for a lock another process holds (a checkpoint, a
/// migration) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The finished backup directory.
    pub path: PathBuf,
    /// Size of the copied database file.
    pub db_bytes: u64,
    /// The copy's schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    /// Sessions in the copy (ended ones included).
    pub sessions: u64,
    /// Attachment files copied, and their bytes.
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Whether `server-secret` was copied (absent when `server_secret` is configured).
    pub secret: bool,
}

/// Backs up `data_dir` (a store's data directory, possibly in use by a running server)
/// into the new directory `to`, which must not exist yet. Blocking.
pub fn backup(data_dir: &Path, to: &Path) -> Result<BackupReport, SqliteError> {
    let src_db = data_dir.join(DB_FILE);
    if !src_db.is_file() {
        return Err(SqliteError::Backup(format!(
            "no database at {} (is data_dir right?)",
            src_db.display()
        )));
    }
    if to.symlink_metadata().is_ok() {
        return Err(SqliteError::Backup(format!(
            "{} already exists; a backup never overwrites anything",
            to.display()
        )));
    }
    let name = to
        .file_name()
        .ok_or_else(|| SqliteError::Backup(format!("{} names no directory", to.display())))?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(SqliteError::Backup(format!(
            "{} is not a directory",
            parent.display()
        )));
    }
    let tmp = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = build(data_dir, &src_db, &tmp).and_then(|report| {
        std::fs::rename(&tmp, to).map_err(SqliteError::io(to))?;
        sync_dir(&parent)?;
        Ok(BackupReport {
            path: to.to_path_buf(),
            ..report
        })
    });
    if result.is_err() {
        // Best effort: a partial directory is only ever under the temporary name.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Fills `tmp` with a verified copy; retries when attachments vanish under it.
fn build(data_dir: &Path, src_db: &Path, tmp: &Path) -> Result<BackupReport, SqliteError> {
    let mut last_missing = String::new();
    for _ in 0..ATTEMPTS {
        match std::fs::remove_dir_all(tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SqliteError::io(tmp)(e))
            }
            _ => {}
        }
        std::fs::create_dir(tmp).map_err(SqliteError::io(tmp))?;
        let db = tmp.join(DB_FILE);
        snapshot(src_db, &db)?;
        let (schema_version, sessions, ids) = verify(&db)?;
        match copy_blobs(&data_dir.join("blobs"), &tmp.join("blobs"), &ids)? {
            Ok((blobs, blob_bytes)) => {
                let secret = copy_secret(data_dir, tmp)?;
                sync_dir(tmp)?;
                let db_bytes = std::fs::metadata(&db).map_err(SqliteError::io(&db))?.len();
                return Ok(BackupReport {
                    path: tmp.to_path_buf(),
                    db_bytes,
                    schema_version,
                    sessions,
                    blobs,
                    blob_bytes,
                    secret,
                });
            }
            Err(missing) => {
                tracing::info!(blob = %missing, "attachment deleted during the backup; starting over");
                last_missing = missing;
            }
        }
    }
    Err(SqliteError::Backup(format!(
        "attachments kept disappearing during the backup ({ATTEMPTS} attempts, last {last_missing}); retry when drafts are written less"
    )))
}

/// `VACUUM INTO` from a connection that cannot write: a consistent snapshot of the
/// source, then fsynced (SQLite does not sync the file it vacuums into).
fn snapshot(src_db: &Path, dst: &Path) -> Result<(), SqliteError> {
    // Read-write without CREATE, so a missing file is an error and not a new empty
    // database, and a source with no server running (no `-shm`) is left as found: the
    // last connection to close removes the `-wal` and `-shm` it made, where a read-only
    // one would leave them behind owned by whoever ran the backup. The only statement
    // run is the VACUUM INTO (`query_only` would refuse even that).
    let src = Connection::open_with_flags(
        src_db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(BUSY_TIMEOUT)?;
    let dst_text = dst
        .to_str()
        .ok_or_else(|| SqliteError::Backup(format!("{} is not UTF-8", dst.display())))?;
    src.execute("VACUUM INTO ?1", [dst_text])?;
    drop(src);
    std::fs::File::open(dst)
        .and_then(|f| f.sync_all())
        .map_err(SqliteError::io(dst))
}

/// `PRAGMA integrity_check` on the copy, and what the rest of the backup needs from it.
fn verify(db: &Path) -> Result<(i64, u64, Vec<String>), SqliteError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut st = conn.prepare("PRAGMA integrity_check")?;
    let problems: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    drop(st);
    if problems != ["ok"] {
        return Err(SqliteError::Backup(format!(
            "the copy fails PRAGMA integrity_check: {}",
            problems.join("; ")
        )));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let sessions: i64 = conn.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))?;
    let mut ids: Vec<String> = referenced_blobs(&conn)?.into_iter().collect();
    ids.sort();
    Ok((version, u64::try_from(sessions).unwrap_or(0), ids))
}

/// Copies each named attachment file; `Ok(Err(id))` names one that no longer exists.
fn copy_blobs(
    src_root: &Path,
    dst_root: &Path,
    ids: &[String],
) -> Result<Result<(usize, u64), String>, SqliteError> {
    let src_blobs = crate::blobs::Blobs::new(src_root.to_path_buf());
    let dst_blobs = crate::blobs::Blobs::new(dst_root.to_path_buf());
    std::fs::create_dir_all(dst_root).map_err(SqliteError::io(dst_root))?;
    let mut dirs = std::collections::BTreeSet::new();
    let mut bytes = 0u64;
    for id in ids {
        let from = src_blobs.path(id)?;
        let to = dst_blobs.path(id)?;
        let dir = to.parent().expect("blob paths have a parent").to_path_buf();
        if dirs.insert(dir.clone()) {
            std::fs::create_dir_all(&dir).map_err(SqliteError::io(&dir))?;
        }
        match std::fs::copy(&from, &to) {
            Ok(n) => bytes += n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(id.clone())),
            Err(e) => return Err(SqliteError::io(&from)(e)),
        }
        std::fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(SqliteError::io(&to))?;
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    sync_dir(dst_root)?;
    Ok(Ok((ids.len(), bytes)))
}

/// Copies `server-secret` keeping it private (mode 0600); `false` when there is none.
fn copy_secret(data_dir: &Path, tmp: &Path) -> Result<bool, SqliteError> {
    let from = data_dir.join(SECRET_FILE);
    let bytes = match std::fs::read(&from) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(SqliteError::io(&from)(e)),
    };
    let to = tmp.join(SECRET_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = options.open(&to)?;
        f.write_all(&bytes)?;
        f.sync_all()
    };
    write().map_err(SqliteError::io(&to))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    fn seeded() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        drop(store);
        std::fs::write(dir.path().join(SECRET_FILE), [7u8; 32]).unwrap();
        dir
    }

    #[test]
    fn copies_a_checked_database_and_the_secret() {
        let src = seeded();
        let out = tempfile::tempdir().unwrap();
        let to = out.path().join("b1");
        let r = backup(src.path(), &to).unwrap();
        assert_eq!(r.path, to);
        assert!(r.secret);
        assert_eq!(r.sessions, 0);
        assert_eq!(r.schema_version, crate::schema::SCHEMA_VERSION);
        assert!(to.join(DB_FILE).is_file());
        assert_eq!(std::fs::read(to.join(SECRET_FILE)).unwrap(), [7u8; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(to.join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing but the finished backup is left next to it.
        let names: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("b1")]);
        // The backup itself: the database (no -wal or -shm beside it), blobs, the secret.
        let mut inside: Vec<String> = std::fs::read_dir(&to)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        inside.sort();
        assert_eq!(inside, ["blobs", SECRET_FILE, DB_FILE]);
        // The backup opens as a store.
        SqliteStore::open(&to).unwrap();
    }

    #[test]
    fn refuses_to_overwrite_or_to_invent_a_database() {
        let src = seeded();
        let out = tempfile::tempdir().unwrap();
        let err = backup(src.path(), out.path()).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = backup(empty.path(), &out.path().join("b")).unwrap_err();
        assert!(err.to_string().contains("no database"), "{err}");
        // Nothing was created in the empty directory.
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
        assert!(!out.path().join("b").exists());
        let err = backup(src.path(), &out.path().join("no/such/dir/b")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn a_corrupt_source_leaves_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DB_FILE),
            b"this is not a database, just bytes",
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let to = out.path().join("b");
        assert!(backup(dir.path(), &to).is_err());
        assert!(!to.exists());
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }
}
