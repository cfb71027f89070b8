//! Audit checks: append ids, filters, paging and purges.

use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
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
