//! Audit checks: append ids, filters, paging and purges; the webhook outbox's lease,
//! cursors and dead letters.

use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
use sessiond_core::outbox::DeadLetter;
use sessiond_core::store::prelude::*;
use std::sync::Arc;

pub async fn check_audit(store: Arc<dyn Store>) {
    let ev = |at, kind, principal: &str, handle: &str, reason: Option<&str>| {
        let mut e = AuditEvent::new(at, kind);
        e.principal = Some(principal.into());
        e.handle = Some(handle.into());
        e.reason = reason.map(str::to_owned);
        e.client_ip = Some("192.0.2.1".into());
        e.detail = serde_json::json!({"at": at});
        e
    };
    let events = vec![
        ev(100, AuditKind::Created, "anon:a", "s_1", None),
        ev(200, AuditKind::SignedIn, "user:u", "s_1", None),
        ev(300, AuditKind::Created, "anon:b", "s_2", None),
        ev(400, AuditKind::Ended, "user:u", "s_1", Some("idle_timeout")),
        ev(500, AuditKind::Ended, "anon:b", "s_2", Some("signed_out")),
    ];
    let mut ids = Vec::new();
    for e in &events {
        ids.push(store.append_audit(e).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let stored: Vec<AuditEvent> = events
        .iter()
        .zip(&ids)
        .map(|(e, id)| AuditEvent {
            id: *id,
            ..e.clone()
        })
        .collect();
    let q = |f: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .query_audit(&AuditFilter {
                    limit: if f.limit == 0 { 100 } else { f.limit },
                    ..f
                })
                .await
                .unwrap()
        }
    };
    let newest_first: Vec<_> = stored.iter().rev().cloned().collect();
    assert_eq!(q(AuditFilter::default()).await, newest_first);
    let ids_of = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids_of(
            q(AuditFilter {
                principal: Some("user:u".into()),
                ..Default::default()
            })
            .await
        ),
        [ids[3], ids[1]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                handle: Some("s_2".into()),
                ..Default::default()
            })
            .await
        ),
        [ids[4], ids[2]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                kind: Some(AuditKind::Created),
                ..Default::default()
            })
            .await
        ),
        [ids[2], ids[0]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                reason: Some("idle_timeout".into()),
                ..Default::default()
            })
            .await
        ),
        [ids[3]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                since: Some(200),
                until: Some(400),
                ..Default::default()
            })
            .await
        ),
        [ids[2], ids[1]],
        "since is inclusive, until exclusive"
    );
    // Newest first, paged by before_id.
    let page1 = q(AuditFilter {
        limit: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(ids_of(page1.clone()), [ids[4], ids[3]]);
    let page2 = q(AuditFilter {
        limit: 2,
        before_id: Some(page1[1].id),
        ..Default::default()
    })
    .await;
    assert_eq!(ids_of(page2.clone()), [ids[2], ids[1]]);
    let page3 = q(AuditFilter {
        limit: 2,
        before_id: Some(page2[1].id),
        ..Default::default()
    })
    .await;
    assert_eq!(ids_of(page3), [ids[0]]);
    // Following: oldest first after a cursor.
    assert_eq!(
        ids_of(
            q(AuditFilter {
                after_id: Some(ids[1]),
                ..Default::default()
            })
            .await
        ),
        [ids[2], ids[3], ids[4]]
    );
    assert_eq!(
        ids_of(
            q(AuditFilter {
                after_id: Some(ids[1]),
                limit: 1,
                ..Default::default()
            })
            .await
        ),
        [ids[2]]
    );

    assert_eq!(store.purge_audit(300, 100).await.unwrap(), 2);
    assert_eq!(
        ids_of(q(AuditFilter::default()).await),
        [ids[4], ids[3], ids[2]]
    );
    let next = store
        .append_audit(&ev(600, AuditKind::Renewed, "user:u", "s_1", None))
        .await
        .unwrap();
    assert!(next > ids[4], "ids never repeat, even after a purge");
}

/// One holder at a time; renewals keep the fence; a lapsed or released lease goes to
/// the next holder with a larger fence. (Redis times the lease itself, so the check
/// really waits for it to lapse.)
pub async fn check_outbox_lease(store: Arc<dyn Store>) {
    let now = super::sessions::wall_ms();
    let a = store
        .acquire_outbox_lease("node-a", now, 300)
        .await
        .unwrap();
    let fa = a.expect("a free lease is taken");
    assert!(fa >= 1);
    assert_eq!(
        store
            .acquire_outbox_lease("node-b", now, 300)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .acquire_outbox_lease("node-a", now + 10, 300)
            .await
            .unwrap(),
        Some(fa),
        "a renewal keeps the fence"
    );
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let fb = store
        .acquire_outbox_lease("node-b", now + 450, 300)
        .await
        .unwrap()
        .expect("a lapsed lease is taken over");
    assert!(fb > fa, "fence grows on a hand-over: {fa} → {fb}");
    assert_eq!(
        store
            .acquire_outbox_lease("node-a", now + 460, 300)
            .await
            .unwrap(),
        None
    );
    // Releasing someone else's lease does nothing; the holder's own release frees it.
    store.release_outbox_lease("node-a").await.unwrap();
    assert_eq!(
        store
            .acquire_outbox_lease("node-a", now + 470, 300)
            .await
            .unwrap(),
        None
    );
    store.release_outbox_lease("node-b").await.unwrap();
    let fa2 = store
        .acquire_outbox_lease("node-a", now + 480, 60_000)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert!(fa2 > fb);
    // Many contenders at once: exactly one wins.
    store.release_outbox_lease("node-a").await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .acquire_outbox_lease(&format!("racer-{i}"), now + 500, 60_000)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(won, 1, "one holder");
}

/// Cursors start unset, move only from the value they hold and only with the newest
/// fence, and are kept per endpoint.
pub async fn check_outbox_cursor(store: Arc<dyn Store>) {
    let now = super::sessions::wall_ms();
    let f1 = store
        .acquire_outbox_lease("node-a", now, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.outbox_cursor("crm").await.unwrap(), None);
    assert!(store
        .advance_outbox_cursor("crm", f1, None, 5)
        .await
        .unwrap());
    assert_eq!(store.outbox_cursor("crm").await.unwrap(), Some(5));
    assert!(
        !store
            .advance_outbox_cursor("crm", f1, None, 9)
            .await
            .unwrap(),
        "from must match"
    );
    assert!(!store
        .advance_outbox_cursor("crm", f1, Some(4), 9)
        .await
        .unwrap());
    assert!(store
        .advance_outbox_cursor("crm", f1, Some(5), 9)
        .await
        .unwrap());
    assert_eq!(store.outbox_cursor("crm").await.unwrap(), Some(9));
    assert_eq!(
        store.outbox_cursor("billing").await.unwrap(),
        None,
        "per endpoint"
    );
    assert!(!store
        .advance_outbox_cursor("crm", f1 + 1, Some(9), 10)
        .await
        .unwrap());
    // Another holder takes over: the old fence no longer moves anything.
    store.release_outbox_lease("node-a").await.unwrap();
    let f2 = store
        .acquire_outbox_lease("node-b", now + 1, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert!(f2 > f1);
    assert!(!store
        .advance_outbox_cursor("crm", f1, Some(9), 12)
        .await
        .unwrap());
    assert_eq!(store.outbox_cursor("crm").await.unwrap(), Some(9));
    assert!(store
        .advance_outbox_cursor("crm", f2, Some(9), 12)
        .await
        .unwrap());
    assert!(store
        .advance_outbox_cursor("billing", f2, None, 1)
        .await
        .unwrap());
    assert_eq!(store.outbox_cursor("crm").await.unwrap(), Some(12));
    assert_eq!(store.outbox_cursor("billing").await.unwrap(), Some(1));
    // Racing writers from the same value: one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .advance_outbox_cursor("crm", f2, Some(12), 100 + i)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

/// Dead letters: upsert by (endpoint, event id), read back whole, listed by event id
/// per endpoint and paged, counted, deleted once.
pub async fn check_dead_letters(store: Arc<dyn Store>) {
    let dl = |endpoint: &str, id: i64, attempts: u32| {
        let mut event = AuditEvent::new(1_000 + id, AuditKind::Ended);
        event.id = id;
        event.handle = Some(format!("s_{id}"));
        event.reason = Some("revoked".into());
        event.detail = serde_json::json!({"key": "ops"});
        DeadLetter {
            endpoint: endpoint.to_owned(),
            event,
            attempts,
            last_status: Some(500),
            last_error: "HTTP 500".into(),
            first_attempt_at: 2_000,
            dead_at: 3_000 + id,
        }
    };
    assert_eq!(store.list_dead_letters("crm", None, 10).await.unwrap(), []);
    assert_eq!(store.count_dead_letters("crm").await.unwrap(), 0);
    for id in [30, 10, 20] {
        store.put_dead_letter(&dl("crm", id, 5)).await.unwrap();
    }
    store.put_dead_letter(&dl("billing", 10, 1)).await.unwrap();
    let ids = |v: Vec<DeadLetter>| v.into_iter().map(|d| d.event.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_dead_letters("crm", None, 10).await.unwrap()),
        [10, 20, 30]
    );
    assert_eq!(
        ids(store.list_dead_letters("crm", None, 2).await.unwrap()),
        [10, 20]
    );
    assert_eq!(
        ids(store.list_dead_letters("crm", Some(20), 10).await.unwrap()),
        [30]
    );
    assert_eq!(store.count_dead_letters("crm").await.unwrap(), 3);
    assert_eq!(store.count_dead_letters("billing").await.unwrap(), 1);
    assert_eq!(
        store.get_dead_letter("crm", 20).await.unwrap(),
        Some(dl("crm", 20, 5)),
        "read back whole"
    );
    assert_eq!(store.get_dead_letter("crm", 21).await.unwrap(), None);
    // Upsert: a manual retry that failed again replaces the record.
    let mut again = dl("crm", 20, 6);
    again.last_status = None;
    again.last_error = "connection refused".into();
    store.put_dead_letter(&again).await.unwrap();
    assert_eq!(store.get_dead_letter("crm", 20).await.unwrap(), Some(again));
    assert_eq!(store.count_dead_letters("crm").await.unwrap(), 3);
    assert!(store.delete_dead_letter("crm", 20).await.unwrap());
    assert!(!store.delete_dead_letter("crm", 20).await.unwrap());
    assert_eq!(
        ids(store.list_dead_letters("crm", None, 10).await.unwrap()),
        [10, 30]
    );
    assert_eq!(
        ids(store.list_dead_letters("billing", None, 10).await.unwrap()),
        [10],
        "per endpoint"
    );
}
