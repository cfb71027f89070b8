//! Snapshot checks: version compare-and-set, retention, purges and concurrent puts.

use super::pattern;
use sessiond_core::snapshot::{content_hash, SnapshotWrite};
use sessiond_core::store::prelude::*;
use sessiond_core::store::SnapshotPut;
use sessiond_core::Timestamp;
use std::sync::Arc;

/// A snapshot write with no author and no retention deadline.
fn put<'a>(
    room: &'a str,
    expected_version: u64,
    data: &'a [u8],
    content_type: &'a str,
    now: Timestamp,
) -> SnapshotPut<'a> {
    SnapshotPut {
        room,
        expected_version,
        data,
        content_type,
        by: None,
        retain_until: None,
        now,
    }
}

pub async fn check_snapshots(store: Arc<dyn Store>) {
    assert_eq!(store.get_snapshot("room-1").await.unwrap(), None);
    let data1 = pattern(70_000, 5);
    let s1 = match store
        .put_snapshot(SnapshotPut {
            by: Some("s_abc"),
            ..put("room-1", 0, &data1, "application/json", 100)
        })
        .await
        .unwrap()
    {
        SnapshotWrite::Written(s) => s,
        other => panic!("expected Written, got {other:?}"),
    };
    assert_eq!(s1.version, 1);
    assert_eq!(s1.hash, content_hash(&data1));
    assert_eq!(s1.size, data1.len() as u64);
    let got = store.get_snapshot("room-1").await.unwrap().expect("stored");
    assert!(got.data == data1, "snapshot bytes differ");
    assert_eq!(
        (
            got.version,
            got.hash.as_str(),
            got.content_type.as_str(),
            got.updated_by.as_deref(),
            got.updated_at,
            got.retain_until
        ),
        (
            1,
            content_hash(&data1).as_str(),
            "application/json",
            Some("s_abc"),
            100,
            None
        )
    );

    let data2 = b"{\"v\":2}".to_vec();
    let s2 = match store
        .put_snapshot(put("room-1", 1, &data2, "application/json", 200))
        .await
        .unwrap()
    {
        SnapshotWrite::Written(s) => s,
        other => panic!("expected Written, got {other:?}"),
    };
    assert_eq!(s2.version, 2);
    // A writer naming an old version is refused and shown the current one, without data.
    match store
        .put_snapshot(put("room-1", 1, b"stale", "application/json", 300))
        .await
        .unwrap()
    {
        SnapshotWrite::Conflict(Some(cur)) => {
            assert_eq!(
                (cur.version, cur.hash.as_str()),
                (2, content_hash(&data2).as_str())
            );
            assert!(cur.data.is_empty());
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store
        .put_snapshot(put("room-1", 0, b"stale", "application/json", 300))
        .await
        .unwrap()
    {
        SnapshotWrite::Conflict(Some(cur)) => assert_eq!(cur.version, 2),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store
        .put_snapshot(put("room-2", 3, b"x", "text/plain", 300))
        .await
        .unwrap()
    {
        SnapshotWrite::Conflict(None) => {}
        other => panic!("expected Conflict(None), got {other:?}"),
    }
    assert_eq!(store.get_snapshot("room-2").await.unwrap(), None);
    let got = store.get_snapshot("room-1").await.unwrap().unwrap();
    assert_eq!((got.version, got.data.as_slice()), (2, data2.as_slice()));

    // Retention: purged once `retain_until <= now`; `None` keeps it.
    match store
        .put_snapshot(SnapshotPut {
            retain_until: Some(10_000),
            ..put("room-3", 0, b"kept", "text/plain", 300)
        })
        .await
        .unwrap()
    {
        SnapshotWrite::Written(s) => assert_eq!(s.retain_until, Some(10_000)),
        other => panic!("expected Written, got {other:?}"),
    }
    store.retain_snapshot("room-3", None).await.unwrap();
    store.retain_snapshot("room-1", Some(1_000)).await.unwrap();
    store
        .retain_snapshot("no-such-room", Some(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_snapshot("room-1")
            .await
            .unwrap()
            .unwrap()
            .retain_until,
        Some(1_000)
    );
    assert_eq!(store.purge_snapshots(999, 10).await.unwrap(), 0);
    assert_eq!(store.purge_snapshots(1_000, 10).await.unwrap(), 1);
    assert_eq!(store.get_snapshot("room-1").await.unwrap(), None);
    assert_eq!(store.purge_snapshots(1_000_000, 10).await.unwrap(), 0);
    assert!(store.get_snapshot("room-3").await.unwrap().is_some());
    // A purged room starts again at version 1.
    assert!(matches!(
        store.put_snapshot(put("room-1", 0, b"new", "text/plain", 2_000)).await.unwrap(),
        SnapshotWrite::Written(s) if s.version == 1
    ));
}

pub async fn check_concurrent_snapshot_put(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let data = vec![i; 1_000];
            (
                i,
                store
                    .put_snapshot(put("room", 0, &data, "application/octet-stream", 10))
                    .await
                    .unwrap(),
            )
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, SnapshotWrite::Written(s)) => winners.push((i, s)),
            (_, SnapshotWrite::Conflict(Some(cur))) => assert_eq!(cur.version, 1),
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins version 1");
    let got = store.get_snapshot("room").await.unwrap().unwrap();
    assert_eq!(
        got.data,
        vec![winners[0].0; 1_000],
        "the stored bytes are the winner's, whole"
    );
    assert_eq!(got.hash, winners[0].1.hash);
}

/// `snapshot_usage` sums the current snapshots a writer wrote last, apart from one room:
/// a room overwritten by someone else, or purged, no longer counts.
pub async fn check_snapshot_usage(store: Arc<dyn Store>) {
    let write =
        |room: &'static str, v: u64, size: usize, by: &'static str, retain: Option<Timestamp>| {
            let store = store.clone();
            async move {
                let data = pattern(size, 3);
                match store
                    .put_snapshot(SnapshotPut {
                        by: Some(by),
                        retain_until: retain,
                        ..put(room, v, &data, "application/octet-stream", 100)
                    })
                    .await
                    .unwrap()
                {
                    SnapshotWrite::Written(_) => {}
                    other => panic!("expected Written, got {other:?}"),
                }
            }
        };
    assert_eq!(usage(&store, "user:a", "r0").await, (0, 0));
    write("r1", 0, 1_000, "user:a", None).await;
    write("r2", 0, 2_000, "user:a", Some(500)).await;
    write("r3", 0, 4_000, "user:b", None).await;
    assert_eq!(usage(&store, "user:a", "r0").await, (2, 3_000));
    assert_eq!(usage(&store, "user:a", "r1").await, (1, 2_000));
    assert_eq!(usage(&store, "user:b", "r0").await.1, 4_000);
    // Rewritten smaller by the same writer: the new size counts.
    write("r1", 1, 100, "user:a", None).await;
    assert_eq!(usage(&store, "user:a", "r0").await.1, 2_100);
    // Taken over by another writer: it moves to them.
    write("r1", 2, 300, "user:b", None).await;
    assert_eq!(usage(&store, "user:a", "r0").await.1, 2_000);
    assert_eq!(usage(&store, "user:b", "r0").await.1, 4_300);
    // Purged: it counts for nobody.
    assert_eq!(store.purge_snapshots(1_000, 100).await.unwrap(), 1);
    assert_eq!(usage(&store, "user:a", "r0").await.1, 0);
    assert_eq!(usage(&store, "user:b", "r0").await.1, 4_300);
}

async fn usage(store: &Arc<dyn Store>, by: &str, except_room: &str) -> (u64, u64) {
    let u = store.snapshot_usage(by, except_room).await.unwrap();
    (u.rooms, u.bytes)
}
