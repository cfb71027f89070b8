//! SQLite-specific promises: durability across reopen and SIGKILL, idempotent
//! migrations, and the blob sweep and cleanup.

use bytes::Bytes;
use sessiond_core::draft::{AttachmentLimits, DraftWrite};
use sessiond_core::snapshot::{content_hash, SnapshotWrite};
use sessiond_core::store::prelude::*;
use sessiond_core::store::{ByteStream, CreateOutcome, IdempotencyRecord, SnapshotPut};
use sessiond_core::{Principal, StoreError};
use sessiond_store_sqlite::{
    schema::SCHEMA_VERSION, SqliteError, SqliteOptions, SqliteStore, DB_FILE,
};
use sessiond_testkit::conformance::{attachment, body, read_all, session};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIMITS: AttachmentLimits = AttachmentLimits {
    max_size: 1 << 20,
    quota: 1 << 22,
};

async fn open(dir: &Path) -> SqliteStore {
    open_with(dir, SqliteOptions::default()).await
}

async fn open_with(dir: &Path, opts: SqliteOptions) -> SqliteStore {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || SqliteStore::open_with(&dir, opts))
        .await
        .unwrap()
        .expect("open store")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn written(w: DraftWrite) -> sessiond_core::draft::Draft {
    match w {
        DraftWrite::Written(d) => d,
        other => panic!("expected Written, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = session("anon:x", "editor", 1_000);
    let p = Principal::user("alice");
    let clip: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    {
        let store = open(dir.path()).await;
        let rec = IdempotencyRecord {
            key_hash: "k".repeat(64),
            fingerprint: "f".into(),
            handle: s.handle,
            sealed_token: vec![9; 40],
            created_at: 1_000,
        };
        assert_eq!(
            store.create_session(&s, Some(&rec), &[]).await.unwrap(),
            CreateOutcome::Created
        );
        assert!(store
            .put_data(&s.handle, "k", &serde_json::json!({"a": 1}))
            .await
            .unwrap());
        store
            .append_audit(&sessiond_core::audit::AuditEvent::new(
                5,
                sessiond_core::audit::AuditKind::Created,
            ))
            .await
            .unwrap();
        let d = written(
            store
                .put_draft_text(&p, "c1", 0, "hello", 10)
                .await
                .unwrap(),
        );
        written(
            store
                .put_attachment(
                    attachment(&p, "c1", d.seq, "clip.webm", "audio/webm", LIMITS, 11),
                    body(&clip, 8192),
                )
                .await
                .unwrap(),
        );
        assert!(matches!(
            store
                .put_snapshot(SnapshotPut {
                    room: "room",
                    expected_version: 0,
                    data: b"state",
                    content_type: "text/plain",
                    by: None,
                    retain_until: None,
                    now: 12
                })
                .await
                .unwrap(),
            SnapshotWrite::Written(_)
        ));
    }
    let store = open(dir.path()).await;
    assert_eq!(store.get_session(&s.handle).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.get_session_by_token(&s.token_hash).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.get_data(&s.handle, "k").await.unwrap(),
        Some(serde_json::json!({"a": 1}))
    );
    let other = session("anon:y", "editor", 2_000);
    let rec2 = IdempotencyRecord {
        key_hash: "k".repeat(64),
        fingerprint: "f".into(),
        handle: other.handle,
        sealed_token: vec![],
        created_at: 2_000,
    };
    match store
        .create_session(&other, Some(&rec2), &[])
        .await
        .unwrap()
    {
        CreateOutcome::Existing(r) => {
            assert_eq!((r.handle, r.sealed_token), (s.handle, vec![9; 40]))
        }
        CreateOutcome::Created => panic!("idempotency record lost on reopen"),
    }
    let audit = store
        .query_audit(&sessiond_core::audit::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    let d = store.get_draft(&p, "c1").await.unwrap().unwrap();
    assert_eq!((d.text.as_str(), d.seq), ("hello", 2));
    let (meta, stream) = store
        .get_attachment(&p, "c1", "clip.webm")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.size, clip.len() as u64);
    assert!(read_all(stream).await == clip);
    assert_eq!(
        store.get_snapshot("room").await.unwrap().unwrap().data,
        b"state"
    );
    assert_eq!(store.sweep_stats().kept, 1);
    assert_eq!(store.sweep_stats().removed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_idempotent_and_refuse_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let version = |dir: &Path| -> i64 {
        let c = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    drop(open(dir.path()).await);
    assert_eq!(version(dir.path()), SCHEMA_VERSION);
    let store = open(dir.path()).await;
    store
        .put_draft_text(&Principal::user("a"), "c", 0, "kept", 1)
        .await
        .unwrap();
    drop(store);
    drop(open(dir.path()).await);
    assert_eq!(version(dir.path()), SCHEMA_VERSION);
    let store = open(dir.path()).await;
    assert_eq!(
        store
            .get_draft(&Principal::user("a"), "c")
            .await
            .unwrap()
            .unwrap()
            .text,
        "kept"
    );
    drop(store);

    let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(c);
    match SqliteStore::open(dir.path()) {
        Err(SqliteError::NewerSchema { found, known }) => {
            assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION))
        }
        Err(e) => panic!("expected NewerSchema, got {e}"),
        Ok(_) => panic!("opened a database from the future"),
    }
}

/// A database from before session versions (schema 1) opens: its sessions read as
/// version 0, and a rotation's version is then kept.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_of_a_schema_1_database_read_as_version_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session("anon:old", "editor", 1_000);
    let store = open(dir.path()).await;
    store.create_session(&s, None, &[]).await.unwrap();
    drop(store);
    // What schema 1 looked like: no version column.
    let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    c.execute_batch(
        "ALTER TABLE sessions DROP COLUMN version; DROP TABLE claims; DROP INDEX snapshots_by; DROP TABLE draft_moves; \
         DROP TABLE outbox_lease; DROP TABLE outbox_cursors; DROP TABLE dead_letters; \
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(c);
    let store = open(dir.path()).await;
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    s.version = 0;
    assert_eq!(got, s);
    let old = s.token_hash;
    let mut rotated = s.clone();
    let at = rotated.last_activity_at;
    sessiond_core::lifecycle::rotate(&mut rotated, at);
    assert!(store
        .update_session(&rotated, &old, &[], None)
        .await
        .unwrap());
    let got = store.get_session(&s.handle).await.unwrap().unwrap();
    assert_eq!(got.version, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_removes_orphans_and_keeps_referenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let p = Principal::user("alice");
    let blob_dir;
    {
        let store = open(dir.path()).await;
        blob_dir = store.blob_dir();
        written(
            store
                .put_attachment(
                    attachment(&p, "c1", 0, "a.bin", "x/y", LIMITS, 1),
                    body(b"referenced", 4),
                )
                .await
                .unwrap(),
        );
    }
    let referenced = files_under(&blob_dir);
    assert_eq!(referenced.len(), 1);
    // Crash leftovers: a renamed blob whose row never committed, and a half-written temp.
    std::fs::create_dir_all(blob_dir.join("zz")).unwrap();
    std::fs::write(blob_dir.join("zz").join("zzOrphanBlobId000000"), b"orphan").unwrap();
    std::fs::write(blob_dir.join("zz").join(".tmp-zzHalfWritten0000"), b"half").unwrap();

    // Young leftovers survive the default grace (they may be another process's uploads).
    let store = open(dir.path()).await;
    assert_eq!(
        (
            store.sweep_stats().kept,
            store.sweep_stats().removed,
            store.sweep_stats().young
        ),
        (1, 0, 2)
    );
    drop(store);
    assert_eq!(files_under(&blob_dir).len(), 3);

    let store = open_with(
        dir.path(),
        SqliteOptions {
            sweep_grace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (store.sweep_stats().kept, store.sweep_stats().removed),
        (1, 2)
    );
    assert_eq!(files_under(&blob_dir), referenced);
    let (_, s) = store
        .get_attachment(&p, "c1", "a.bin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_all(s).await, b"referenced");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_replaced_and_deleted_uploads_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let blob_dir = store.blob_dir();
    let p = Principal::user("alice");
    let small = AttachmentLimits {
        max_size: 100,
        quota: 1_000,
    };
    assert!(matches!(
        store
            .put_attachment(
                attachment(&p, "c", 0, "a", "x/y", small, 1),
                body(&[1; 500], 64)
            )
            .await,
        Err(StoreError::TooLarge { limit: 100 })
    ));
    let broken: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from_static(b"part")),
        Err(std::io::Error::other("reset")),
    ]));
    assert!(matches!(
        store
            .put_attachment(attachment(&p, "c", 0, "a", "x/y", small, 1), broken)
            .await,
        Err(StoreError::Body(_))
    ));
    assert!(
        files_under(&blob_dir).is_empty(),
        "failed uploads left files"
    );

    let d = written(
        store
            .put_attachment(
                attachment(&p, "c", 0, "a", "x/y", small, 1),
                body(b"one", 2),
            )
            .await
            .unwrap(),
    );
    let d = written(
        store
            .put_attachment(
                attachment(&p, "c", d.seq, "a", "x/y", small, 2),
                body(b"two", 2),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        files_under(&blob_dir).len(),
        1,
        "the replaced file is removed"
    );
    let d = written(
        store
            .put_attachment(
                attachment(&p, "c", d.seq, "b", "x/y", small, 3),
                body(b"three", 2),
            )
            .await
            .unwrap(),
    );
    assert_eq!(files_under(&blob_dir).len(), 2);
    let d = written(
        store
            .delete_attachment(&p, "c", d.seq, "b", None, 4)
            .await
            .unwrap(),
    );
    assert_eq!(files_under(&blob_dir).len(), 1);
    written(store.delete_draft(&p, "c", d.seq, 5).await.unwrap());
    assert!(
        files_under(&blob_dir).is_empty(),
        "a deleted draft's files are removed"
    );
    written(
        store
            .put_attachment(
                attachment(&p, "c2", 0, "a", "x/y", small, 6),
                body(b"old", 2),
            )
            .await
            .unwrap(),
    );
    assert_eq!(store.purge_drafts(100, 10).await.unwrap(), 2);
    assert!(
        files_under(&blob_dir).is_empty(),
        "purged drafts' files are removed"
    );
}

const CHILD_DIR_ENV: &str = "SESSIOND_SQLITE_KILL_TEST_DIR";

/// Not a test on its own: the body of the child process that
/// `sigkill_keeps_acknowledged_writes` starts and kills. It writes snapshots and drafts
/// forever, printing each acknowledged version.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "helper process for sigkill_keeps_acknowledged_writes"]
async fn kill_child_writer() {
    let dir = PathBuf::from(
        std::env::var(CHILD_DIR_ENV).expect("only run by sigkill_keeps_acknowledged_writes"),
    );
    let store = open(&dir).await;
    let p = Principal::user("alice");
    let mut out = std::io::stdout();
    // Bounded, and a write to a closed stdout ends it, should the parent die first.
    for v in 0u64..100_000 {
        let data = format!("snapshot version {} {}", v + 1, "x".repeat(4096));
        match store
            .put_snapshot(SnapshotPut {
                room: "room",
                expected_version: v,
                data: data.as_bytes(),
                content_type: "text/plain",
                by: None,
                retain_until: None,
                now: 1,
            })
            .await
            .unwrap()
        {
            SnapshotWrite::Written(_) => {}
            other => panic!("unexpected {other:?}"),
        }
        written(
            store
                .put_draft_text(&p, "c", v, &format!("draft {}", v + 1), 1)
                .await
                .unwrap(),
        );
        use std::io::Write;
        writeln!(out, "acked {}", v + 1).unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut last = 0u64;
        let start = Instant::now();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("acked ") {
                last = v.trim().parse().unwrap();
                if last >= 30 || start.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
        }
        last
    });
    let acked = reader.join().unwrap();
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no checkpoint.
    child.wait().unwrap();
    assert!(acked > 0, "the child never acknowledged a write");

    let store = open(dir.path()).await;
    let snap = store
        .get_snapshot("room")
        .await
        .unwrap()
        .expect("snapshot survives");
    assert!(
        snap.version >= acked,
        "acknowledged version {acked} lost (found {})",
        snap.version
    );
    assert_eq!(snap.hash, content_hash(&snap.data), "torn snapshot");
    assert!(String::from_utf8(snap.data)
        .unwrap()
        .starts_with(&format!("snapshot version {} ", snap.version)));
    let d = store
        .get_draft(&Principal::user("alice"), "c")
        .await
        .unwrap()
        .expect("draft survives");
    assert!(d.seq >= acked);
    assert_eq!(d.text, format!("draft {}", d.seq));
}

/// Polls `ok` every few milliseconds for at most five seconds.
async fn until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within 5 s");
        // Poll interval of a bounded wait (the state a spawned task reaches).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The writer stuck behind another process's write lock (a slow fsync looks the same
/// from here): a write that cannot start within the deadline fails with `Unavailable`
/// at once instead of queueing behind it; the write that had started completes when
/// the lock goes, so nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_that_cannot_start_within_the_deadline_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        SqliteOptions {
            deadline: Duration::from_millis(100),
            busy_timeout: Duration::from_secs(20),
            ..Default::default()
        },
    )
    .await;
    let other = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let first = session("anon:first", "editor", 1_000);
    let (s1, f1) = (store.clone(), first.clone());
    let started = tokio::spawn(async move { s1.create_session(&f1, None, &[]).await });
    until("the first write holds the writer", || store.writer_busy()).await;

    let t = Instant::now();
    let second = tokio::time::timeout(
        Duration::from_secs(5),
        store.create_session(&session("anon:second", "editor", 1_000), None, &[]),
    )
    .await
    .expect("answered, not queued behind the stuck write");
    assert!(
        matches!(second, Err(StoreError::Unavailable(_))),
        "{second:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Reads are not behind the writer.
    assert_eq!(store.count_active_sessions().await.unwrap(), 0);

    other.execute_batch("ROLLBACK").unwrap();
    assert!(matches!(
        started.await.unwrap().unwrap(),
        CreateOutcome::Created
    ));
    assert!(store.get_session(&first.handle).await.unwrap().is_some());
}

/// More callers waiting for the writer than `max_waiting`: the next one is refused at
/// once; those admitted all complete once the writer is free.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_writer_queue_refuses_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        SqliteOptions {
            deadline: Duration::from_secs(20),
            busy_timeout: Duration::from_secs(20),
            max_waiting: 1,
            ..Default::default()
        },
    )
    .await;
    let other = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let (a, b) = (
        session("anon:a", "editor", 1_000),
        session("anon:b", "editor", 1_000),
    );
    let (s1, a1) = (store.clone(), a.clone());
    let first = tokio::spawn(async move { s1.create_session(&a1, None, &[]).await });
    until("the first write holds the writer", || store.writer_busy()).await;
    let (s2, b2) = (store.clone(), b.clone());
    let queued = tokio::spawn(async move { s2.create_session(&b2, None, &[]).await });
    until("one write waits", || store.writers_waiting() == 1).await;

    let t = Instant::now();
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        store.create_session(&session("anon:c", "editor", 1_000), None, &[]),
    )
    .await
    .expect("answered at once");
    assert!(
        matches!(third, Err(StoreError::Unavailable(_))),
        "{third:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    other.execute_batch("ROLLBACK").unwrap();
    for (task, s) in [(first, &a), (queued, &b)] {
        assert!(matches!(
            task.await.unwrap().unwrap(),
            CreateOutcome::Created
        ));
        assert!(store.get_session(&s.handle).await.unwrap().is_some());
    }
}

/// A failing audit insert (a trigger refusing it, as a full disk or a broken table
/// would) rolls back the change it records: the two share one transaction.
#[tokio::test]
async fn a_failing_audit_insert_fails_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()).await);
    let db = dir.path().join(DB_FILE);
    sessiond_testkit::conformance::sessions::check_failed_audit_fails_change(
        store as std::sync::Arc<dyn Store>,
        || async move {
            let c = rusqlite::Connection::open(db).unwrap();
            c.execute_batch(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit \
                 BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END;",
            )
            .unwrap();
        },
    )
    .await;
}

/// Group commit: writes that queue while the writer is busy share one transaction (and
/// its fsync) instead of one each; every one is answered only after that commit and is
/// readable then. A write that fails inside the group (here a duplicate handle) is
/// rolled back alone: the others in its transaction still commit.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_share_a_commit_and_a_failing_one_fails_alone() {
    const N: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        SqliteOptions {
            busy_timeout: Duration::from_secs(20),
            // Queued writes wait for the stalled writer as long as the test needs.
            deadline: Duration::from_secs(20),
            ..Default::default()
        },
    )
    .await;
    let existing = session("anon:existing", "editor", 1_000);
    store.create_session(&existing, None, &[]).await.unwrap();

    // The writer answers a write before it marks itself idle: wait for idle, so "busy"
    // below means it took the first write (else a stale "busy" lets the first write and
    // the next one be taken together, and the queue count below is never seen).
    until("the writer is idle", || !store.writer_busy()).await;
    // Another process holds the write lock: the first write stalls in BEGIN, the rest queue.
    let other = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let first = session("anon:first", "editor", 1_000);
    let (s1, f1) = (store.clone(), first.clone());
    let stalled = tokio::spawn(async move { s1.create_session(&f1, None, &[]).await });
    until("the first write holds the writer", || store.writer_busy()).await;

    let mut sessions: Vec<_> = (0..N)
        .map(|i| session(&format!("anon:{i}"), "editor", 1_000))
        .collect();
    // Same handle as a committed session: the primary key refuses it.
    let mut duplicate = session("anon:duplicate", "editor", 1_000);
    duplicate.handle = existing.handle;
    sessions.insert(N / 2, duplicate);
    let mut tasks = Vec::new();
    for (i, s) in sessions.iter().cloned().enumerate() {
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            st.create_session(&s, None, &[]).await
        }));
        until("the write queues", || store.writers_waiting() == i + 1).await;
    }
    let before = store.group_commits();
    other.execute_batch("ROLLBACK").unwrap();

    assert!(matches!(
        stalled.await.unwrap().unwrap(),
        CreateOutcome::Created
    ));
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        if i == N / 2 {
            assert!(r.is_err(), "the duplicate handle is refused: {r:?}");
        } else {
            assert!(matches!(r.unwrap(), CreateOutcome::Created));
            let got = store.get_session(&sessions[i].handle).await.unwrap();
            assert_eq!(
                got.unwrap().principal,
                sessions[i].principal,
                "readable once answered"
            );
        }
    }
    let commits = store.group_commits() - before;
    // The stalled write's own transaction, then the queued ones (in groups of at most 256).
    assert!(
        (1..=2).contains(&commits),
        "{} writes took {commits} commits",
        N + 2
    );
    let kept = store.get_session(&existing.handle).await.unwrap().unwrap();
    assert_eq!(
        kept.principal, existing.principal,
        "the duplicate changed nothing"
    );
    // The one committed before, the stalled one and the N queued ones.
    assert_eq!(store.count_active_sessions().await.unwrap(), N as u64 + 2);
}

const CREATE_CHILD_DIR_ENV: &str = "SESSIOND_SQLITE_KILL_CREATE_DIR";

/// Not a test on its own: the body of the child process that
/// `sigkill_keeps_acknowledged_group_commits` starts and kills. Many tasks create
/// sessions at once (so their writes share commits), printing each acknowledged handle.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "helper process for sigkill_keeps_acknowledged_group_commits"]
async fn kill_child_creator() {
    let dir = PathBuf::from(
        std::env::var(CREATE_CHILD_DIR_ENV)
            .expect("only run by sigkill_keeps_acknowledged_group_commits"),
    );
    let store = open(&dir).await;
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, out) = (store.clone(), out.clone());
            tokio::spawn(async move {
                // Bounded, and a write to a closed stdout ends it, should the parent die.
                for _ in 0..10_000 {
                    let s = session("anon:kill", "editor", 1_000);
                    store.create_session(&s, None, &[]).await.unwrap();
                    use std::io::Write;
                    let mut o = out.lock().unwrap();
                    writeln!(o, "created {}", s.handle).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every create answered before a SIGKILL is there after it, though the writes were
/// committed in groups.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_keeps_acknowledged_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child_creator",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CREATE_CHILD_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let start = Instant::now();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(h) = line.strip_prefix("created ") {
                acked.push(sessiond_core::Handle::parse(h.trim()).expect("a handle"));
                if acked.len() >= 500 || start.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
        }
        acked
    });
    let acked = reader.join().unwrap();
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no checkpoint.
    child.wait().unwrap();
    assert!(!acked.is_empty(), "the child never acknowledged a create");

    let store = open(dir.path()).await;
    for h in &acked {
        assert!(
            store.get_session(h).await.unwrap().is_some(),
            "acknowledged create {h} lost ({} acknowledged)",
            acked.len()
        );
    }
    // Unacknowledged creates in the last group may have landed too, never fewer.
    let total = store.count_active_sessions().await.unwrap();
    assert!(total >= acked.len() as u64);
}
