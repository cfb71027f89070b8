//! Snapshot checks: version compare-and-set, retention, purges and concurrent puts.

use super::pattern;
use sessiond_core::snapshot::{content_hash, SnapshotWrite};
use sessiond_core::store::prelude::*;
use sessiond_core::store::SnapshotPut;
use std::sync::Arc;

pub async fn check_snapshots(store: Arc<dyn Store>) {
    assert_eq!(store.get_snapshot("room-1").await.unwrap(), None);
    let data1 = pattern(70_000, 5);
    let s1 = match store
        .put_snapshot(SnapshotPut {
            room: "room-1",
            expected_version: 0,
            data: &data1,
            content_type: "application/json",
            by: Some("s_abc"),
            retain_until: None,
            now: 100,
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
        .put_snapshot(SnapshotPut {
            room: "room-1",
            expected_version: 1,
            data: &data2,
            content_type: "application/json",
            by: None,
            retain_until: None,
            now: 200,
        })
        .await
        .unwrap()
    {
        SnapshotWrite::Written(s) => s,
        other => panic!("expected Written, got {other:?}"),
    };
    assert_eq!(s2.version, 2);
    // A writer naming an old version is refused and shown the current one, without data.
    match store
        .put_snapshot(SnapshotPut {
            room: "room-1",
            expected_version: 1,
            data: b"stale",
            content_type: "application/json",
            by: None,
            retain_until: None,
            now: 300,
        })
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
        .put_snapshot(SnapshotPut {
            room: "room-1",
            expected_version: 0,
            data: b"stale",
            content_type: "application/json",
            by: None,
            retain_until: None,
            now: 300,
        })
        .await
        .unwrap()
    {
        SnapshotWrite::Conflict(Some(cur)) => assert_eq!(cur.version, 2),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store
        .put_snapshot(SnapshotPut {
            room: "room-2",
            expected_version: 3,
            data: b"x",
            content_type: "text/plain",
            by: None,
            retain_until: None,
            now: 300,
        })
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
            room: "room-3",
            expected_version: 0,
            data: b"kept",
            content_type: "text/plain",
            by: None,
            retain_until: Some(10_000),
            now: 300,
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
        store.put_snapshot(SnapshotPut { room: "room-1", expected_version: 0, data: b"new", content_type: "text/plain", by: None, retain_until: None, now: 2_000 }).await.unwrap(),
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
                    .put_snapshot(SnapshotPut {
                        room: "room",
                        expected_version: 0,
                        data: &data,
                        content_type: "application/octet-stream",
                        by: None,
                        retain_until: None,
                        now: 10,
                    })
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
