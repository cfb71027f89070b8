//! Draft checks: text seq compare-and-set, attachments and their limits, sign-in
//! moves, purges, and isolation between principals (fixed cases and a property).

use super::{attachment, body, pattern, read_all};
use bytes::Bytes;
use proptest::prelude::*;
use sessiond_core::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use sessiond_core::store::prelude::*;
use sessiond_core::store::ByteStream;
use sessiond_core::store::{plain_merge, AttachmentPut, MergeRule};
use sessiond_core::{Principal, StoreError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Generous limits for checks that are not about limits.
const ROOMY: AttachmentLimits = AttachmentLimits {
    max_size: 1 << 24,
    quota: 1 << 26,
};

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[track_caller]
fn written(w: DraftWrite) -> Draft {
    match w {
        DraftWrite::Written(d) => d,
        other => panic!("expected Written, got {other:?}"),
    }
}

#[track_caller]
fn conflict(w: DraftWrite) -> Option<Draft> {
    match w {
        DraftWrite::Conflict(d) => d,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

async fn attach(
    store: &dyn Store,
    p: &Principal,
    conv: &str,
    seq: u64,
    name: &str,
    data: &[u8],
    limits: AttachmentLimits,
) -> Result<DraftWrite, StoreError> {
    store
        .put_attachment(
            attachment(p, conv, seq, name, "audio/webm", limits, 10),
            body(data, 4096),
        )
        .await
}

async fn attachment_bytes(
    store: &dyn Store,
    p: &Principal,
    conv: &str,
    name: &str,
) -> Option<(AttachmentMeta, Vec<u8>)> {
    match store.get_attachment(p, conv, name).await.unwrap() {
        Some((meta, s)) => Some((meta, read_all(s).await)),
        None => None,
    }
}

pub async fn check_draft_text_seq(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), None);
    assert_eq!(
        conflict(store.put_draft_text(&p, "c1", 1, "x", 10).await.unwrap()),
        None,
        "first write needs seq 0"
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), None);

    let d1 = written(
        store
            .put_draft_text(&p, "c1", 0, "hello", 10)
            .await
            .unwrap(),
    );
    assert_eq!(
        (d1.seq, d1.text.as_str(), d1.deleted, d1.updated_at),
        (1, "hello", false, 10)
    );
    assert_eq!(d1.principal, p);
    assert_eq!(d1.conversation, "c1");
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d1.clone()));

    // Stale seq: refused with the current draft, nothing changes.
    let cur = conflict(
        store
            .put_draft_text(&p, "c1", 0, "other tab", 11)
            .await
            .unwrap(),
    );
    assert_eq!(cur, Some(d1.clone()));
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d1.clone()));

    let d2 = written(
        store
            .put_draft_text(&p, "c1", 1, "hello world", 12)
            .await
            .unwrap(),
    );
    assert_eq!((d2.seq, d2.text.as_str()), (2, "hello world"));
    written(
        store
            .put_draft_text(&p, "c2", 0, "second", 12)
            .await
            .unwrap(),
    );
    let listed: Vec<_> = store
        .list_drafts(&p)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.conversation)
        .collect();
    assert_eq!(listed, ["c1", "c2"]);

    // Emptying the draft tombstones it.
    let t = written(store.put_draft_text(&p, "c1", 2, "", 13).await.unwrap());
    assert!(t.deleted);
    assert_eq!(t.seq, 3);
    assert!(t.text.is_empty() && t.attachments.is_empty());
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(t.clone()));
    let listed: Vec<_> = store
        .list_drafts(&p)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.conversation)
        .collect();
    assert_eq!(listed, ["c2"], "tombstones are not listed");

    // A slow tab naming the pre-delete seq cannot revive it.
    assert_eq!(
        conflict(
            store
                .put_draft_text(&p, "c1", 2, "revived?", 14)
                .await
                .unwrap()
        ),
        Some(t.clone())
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(t.clone()));
    // A write naming the tombstone's seq starts again.
    let d4 = written(
        store
            .put_draft_text(&p, "c1", 3, "again", 15)
            .await
            .unwrap(),
    );
    assert_eq!((d4.seq, d4.deleted, d4.text.as_str()), (4, false, "again"));

    // Delete: stale refused, current applied.
    assert_eq!(
        conflict(store.delete_draft(&p, "c1", 3, 16).await.unwrap()),
        Some(d4.clone())
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d4.clone()));
    let t5 = written(store.delete_draft(&p, "c1", 4, 17).await.unwrap());
    assert!(t5.deleted);
    assert_eq!(t5.seq, 5);
    assert_eq!(t5.updated_at, 17);
    assert_eq!(
        conflict(
            store
                .put_draft_text(&p, "c1", 4, "late save", 18)
                .await
                .unwrap()
        ),
        Some(t5)
    );
}

pub async fn check_concurrent_draft_create(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            store
                .put_draft_text(&p, "c1", 0, &format!("tab {i}"), 10)
                .await
        }));
    }
    let mut wins = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            DraftWrite::Written(d) => wins.push(d),
            DraftWrite::Conflict(Some(d)) => assert_eq!(d.seq, 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one tab wins seq 0");
    assert_eq!(
        store.get_draft(&p, "c1").await.unwrap(),
        Some(wins[0].clone())
    );
}

pub async fn check_attachment_roundtrip(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(
        store
            .put_draft_text(&p, "c1", 0, "with clip", 10)
            .await
            .unwrap(),
    );
    let data = pattern(200 * 1024, 7);
    let w = store
        .put_attachment(
            attachment(&p, "c1", d1.seq, "clip.webm", "audio/webm", ROOMY, 20),
            body(&data, 30_000),
        )
        .await
        .unwrap();
    let d2 = written(w);
    assert_eq!(d2.seq, d1.seq + 1);
    assert_eq!(d2.text, "with clip");
    assert_eq!(d2.updated_at, 20);
    let meta = d2
        .attachment("clip.webm")
        .expect("attachment listed")
        .clone();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.sha256, sha_hex(&data));
    assert_eq!(meta.content_type, "audio/webm");
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d2.clone()));

    let (got_meta, bytes) = attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .expect("readable");
    assert_eq!(got_meta, meta);
    assert!(bytes == data, "bytes differ");
    assert!(attachment_bytes(&*store, &p, "c1", "nope.webm")
        .await
        .is_none());

    // Replacing under the same name keeps one entry with the new bytes.
    let data2 = pattern(5_000, 99);
    let d3 = written(
        store
            .put_attachment(
                attachment(&p, "c1", d2.seq, "clip.webm", "audio/ogg", ROOMY, 30),
                body(&data2, 999),
            )
            .await
            .unwrap(),
    );
    assert_eq!(d3.seq, d2.seq + 1);
    assert_eq!(d3.attachments.len(), 1);
    let (m, b) = attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .unwrap();
    assert_eq!(
        (m.size, m.sha256.as_str(), m.content_type.as_str()),
        (5_000, sha_hex(&data2).as_str(), "audio/ogg")
    );
    assert!(b == data2);

    // An attachment alone makes a draft (seq 0 creates it); a stale seq is refused.
    let d = written(
        attach(&*store, &p, "c2", 0, "a.bin", b"abc", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!((d.seq, d.text.as_str(), d.attachments.len()), (1, "", 1));
    let cur = conflict(
        attach(&*store, &p, "c2", 0, "b.bin", b"def", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(cur, Some(d.clone()));
    assert!(attachment_bytes(&*store, &p, "c2", "b.bin").await.is_none());
    // A zero-byte attachment is still an attachment.
    let d = written(
        attach(&*store, &p, "c2", 1, "empty.bin", b"", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(d.attachments.len(), 2);
    let (m, b) = attachment_bytes(&*store, &p, "c2", "empty.bin")
        .await
        .unwrap();
    assert_eq!((m.size, b.len()), (0, 0));
}

pub async fn check_attachment_limits(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let small = AttachmentLimits {
        max_size: 1_000,
        quota: 3_000,
    };
    match attach(
        &*store,
        &p,
        "c1",
        d1.seq,
        "big.bin",
        &pattern(1_500, 1),
        small,
    )
    .await
    {
        Err(StoreError::TooLarge { limit }) => assert_eq!(limit, 1_000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(
        store.get_draft(&p, "c1").await.unwrap(),
        Some(d1.clone()),
        "nothing written"
    );
    assert!(attachment_bytes(&*store, &p, "c1", "big.bin")
        .await
        .is_none());
    // Exactly max_size is allowed.
    let d2 = written(
        attach(
            &*store,
            &p,
            "c1",
            d1.seq,
            "a.bin",
            &pattern(1_000, 2),
            small,
        )
        .await
        .unwrap(),
    );
    let d3 = written(
        attach(
            &*store,
            &p,
            "c1",
            d2.seq,
            "b.bin",
            &pattern(1_000, 3),
            small,
        )
        .await
        .unwrap(),
    );
    // 2_000 held; another 1_000 in another conversation reaches the quota exactly.
    let e = written(
        attach(&*store, &p, "c2", 0, "c.bin", &pattern(1_000, 4), small)
            .await
            .unwrap(),
    );
    // One more byte anywhere for this principal is over quota.
    match attach(&*store, &p, "c3", 0, "d.bin", &pattern(10, 5), small).await {
        Err(StoreError::QuotaExceeded { quota }) => assert_eq!(quota, 3_000),
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(store.get_draft(&p, "c3").await.unwrap(), None);
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d3.clone()));
    // Replacing an attachment counts only the difference.
    let d4 = written(
        attach(&*store, &p, "c1", d3.seq, "a.bin", &pattern(900, 6), small)
            .await
            .unwrap(),
    );
    assert_eq!(d4.attachment_bytes(), 1_900);
    // Another principal has its own quota.
    let q = Principal::user("bob");
    written(
        attach(&*store, &q, "c1", 0, "x.bin", &pattern(1_000, 7), small)
            .await
            .unwrap(),
    );
    assert_eq!(store.get_draft(&p, "c2").await.unwrap(), Some(e));
}

pub async fn check_attachment_body_error(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(pattern(50_000, 1))),
        Ok(Bytes::from(pattern(50_000, 2))),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let broken: ByteStream = Box::pin(futures::stream::iter(chunks));
    match store
        .put_attachment(
            attachment(&p, "c1", d1.seq, "clip.webm", "audio/webm", ROOMY, 20),
            broken,
        )
        .await
    {
        Err(StoreError::Body(_)) => {}
        other => panic!("expected Body error, got {other:?}"),
    }
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d1.clone()));
    assert!(attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .is_none());
    // The failure left nothing that blocks a retry.
    written(
        attach(&*store, &p, "c1", d1.seq, "clip.webm", b"ok", ROOMY)
            .await
            .unwrap(),
    );
}

pub async fn check_delete_attachment(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let d2 = written(
        attach(&*store, &p, "c1", d1.seq, "a.bin", b"aaa", ROOMY)
            .await
            .unwrap(),
    );
    let d3 = written(
        attach(&*store, &p, "c1", d2.seq, "b.bin", b"bbb", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(
        store
            .delete_attachment(&p, "c1", d3.seq, "zzz.bin", None, 20)
            .await
            .unwrap(),
        DraftWrite::NotFound
    );
    assert_eq!(
        conflict(
            store
                .delete_attachment(&p, "c1", d2.seq, "a.bin", None, 20)
                .await
                .unwrap()
        ),
        Some(d3.clone())
    );
    assert_eq!(store.get_draft(&p, "c1").await.unwrap(), Some(d3.clone()));
    let d4 = written(
        store
            .delete_attachment(&p, "c1", d3.seq, "a.bin", None, 21)
            .await
            .unwrap(),
    );
    assert_eq!(d4.seq, d3.seq + 1);
    assert!(d4.attachment("a.bin").is_none());
    assert!(!d4.deleted);
    assert!(attachment_bytes(&*store, &p, "c1", "a.bin").await.is_none());
    assert_eq!(
        attachment_bytes(&*store, &p, "c1", "b.bin")
            .await
            .unwrap()
            .1,
        b"bbb"
    );
    assert_eq!(
        store
            .delete_attachment(&p, "c9", 0, "a.bin", None, 22)
            .await
            .unwrap(),
        DraftWrite::NotFound,
        "no draft, no attachment"
    );
}

pub async fn check_deleted_draft_hides_attachments(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let d1 = written(store.put_draft_text(&p, "c1", 0, "text", 10).await.unwrap());
    let d2 = written(
        attach(
            &*store,
            &p,
            "c1",
            d1.seq,
            "clip.webm",
            &pattern(10_000, 3),
            ROOMY,
        )
        .await
        .unwrap(),
    );
    let t = written(store.delete_draft(&p, "c1", d2.seq, 20).await.unwrap());
    assert!(t.deleted && t.attachments.is_empty() && t.text.is_empty());
    assert!(attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .is_none());
    // Starting the draft again does not bring the old clip back.
    let d = written(
        store
            .put_draft_text(&p, "c1", t.seq, "fresh", 30)
            .await
            .unwrap(),
    );
    assert!(d.attachments.is_empty());
    assert!(attachment_bytes(&*store, &p, "c1", "clip.webm")
        .await
        .is_none());
    // The deleted bytes no longer count against the quota.
    let tight = AttachmentLimits {
        max_size: 10_000,
        quota: 10_000,
    };
    written(
        attach(
            &*store,
            &p,
            "c1",
            d.seq,
            "new.webm",
            &pattern(10_000, 4),
            tight,
        )
        .await
        .unwrap(),
    );
}

pub async fn check_move_drafts(store: Arc<dyn Store>) {
    let anon = Principal("anon:shared-browser".into());
    let user = Principal::user("alice");
    let a1 = written(
        store
            .put_draft_text(&anon, "c1", 0, "anon text", 10)
            .await
            .unwrap(),
    );
    let anon_clip = pattern(20_000, 1);
    let a1 = written(
        attach(&*store, &anon, "c1", a1.seq, "clip.webm", &anon_clip, ROOMY)
            .await
            .unwrap(),
    );
    let a2 = written(
        store
            .put_draft_text(&anon, "c2", 0, "only anon", 11)
            .await
            .unwrap(),
    );
    let a2 = written(
        attach(&*store, &anon, "c2", a2.seq, "pic.png", b"png-bytes", ROOMY)
            .await
            .unwrap(),
    );
    // A deleted anonymous draft is not live and does not move.
    let a3 = written(
        store
            .put_draft_text(&anon, "c3", 0, "gone", 12)
            .await
            .unwrap(),
    );
    written(store.delete_draft(&anon, "c3", a3.seq, 13).await.unwrap());

    let u1 = written(
        store
            .put_draft_text(&user, "c1", 0, "user text", 5)
            .await
            .unwrap(),
    );
    let user_clip = pattern(3_000, 2);
    let u1 = written(
        attach(&*store, &user, "c1", u1.seq, "clip.webm", &user_clip, ROOMY)
            .await
            .unwrap(),
    );
    let u4 = written(
        store
            .put_draft_text(&user, "c4", 0, "untouched", 6)
            .await
            .unwrap(),
    );

    let mut moved = store
        .move_drafts(&anon, &user, 100, &plain_merge())
        .await
        .unwrap();
    moved.sort();
    assert_eq!(moved, ["c1", "c2"]);

    let expected = sessiond_core::draft::merge_on_sign_in(&u1, &a1, 100);
    let m1 = store
        .get_draft(&user, "c1")
        .await
        .unwrap()
        .expect("merged draft");
    assert_eq!(m1.text, "user text\n\nanon text");
    assert_eq!(m1.seq, expected.seq);
    assert!(!m1.deleted);
    let names: Vec<_> = m1.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["clip.webm", "clip-2.webm"]);
    assert_eq!(
        attachment_bytes(&*store, &user, "c1", "clip.webm")
            .await
            .unwrap()
            .1,
        user_clip
    );
    let (meta, bytes) = attachment_bytes(&*store, &user, "c1", "clip-2.webm")
        .await
        .unwrap();
    assert!(bytes == anon_clip);
    assert_eq!(meta.sha256, sha_hex(&anon_clip));

    let m2 = store
        .get_draft(&user, "c2")
        .await
        .unwrap()
        .expect("moved draft");
    assert_eq!(
        (m2.text.as_str(), m2.principal.clone(), m2.deleted),
        ("only anon", user.clone(), false)
    );
    assert!(m2.seq >= a2.seq);
    assert_eq!(
        attachment_bytes(&*store, &user, "c2", "pic.png")
            .await
            .unwrap()
            .1,
        b"png-bytes"
    );
    assert_eq!(store.get_draft(&user, "c4").await.unwrap(), Some(u4));
    assert!(store
        .get_draft(&user, "c3")
        .await
        .unwrap()
        .is_none_or(|d| d.deleted));

    // Nothing stays readable under the anonymous principal.
    assert!(store.list_drafts(&anon).await.unwrap().is_empty());
    for c in ["c1", "c2"] {
        assert!(store
            .get_draft(&anon, c)
            .await
            .unwrap()
            .is_none_or(|d| d.deleted));
    }
    assert!(attachment_bytes(&*store, &anon, "c1", "clip.webm")
        .await
        .is_none());
    assert!(attachment_bytes(&*store, &anon, "c2", "pic.png")
        .await
        .is_none());
    let listed: Vec<_> = store
        .list_drafts(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.conversation)
        .collect();
    assert_eq!(listed, ["c1", "c2", "c4"]);

    // Writes continue from the merged seq; moving again moves nothing.
    written(
        store
            .put_draft_text(&user, "c1", m1.seq, "edited", 101)
            .await
            .unwrap(),
    );
    assert!(store
        .move_drafts(&anon, &user, 102, &plain_merge())
        .await
        .unwrap()
        .is_empty());
}

pub async fn check_purge_drafts(store: Arc<dyn Store>) {
    let p = Principal::user("alice");
    let old = written(
        store
            .put_draft_text(&p, "old", 0, "old text", 100)
            .await
            .unwrap(),
    );
    written(
        store
            .put_attachment(
                attachment(&p, "old", old.seq, "a.bin", "x/y", ROOMY, 100),
                body(b"old bytes", 3),
            )
            .await
            .unwrap(),
    );
    let t = written(
        store
            .put_draft_text(&p, "tomb", 0, "soon gone", 120)
            .await
            .unwrap(),
    );
    written(store.delete_draft(&p, "tomb", t.seq, 150).await.unwrap());
    let fresh = written(
        store
            .put_draft_text(&p, "fresh", 0, "keep me", 1_000)
            .await
            .unwrap(),
    );

    assert_eq!(store.purge_drafts(500, 100).await.unwrap(), 2);
    assert_eq!(store.get_draft(&p, "old").await.unwrap(), None);
    assert_eq!(store.get_draft(&p, "tomb").await.unwrap(), None);
    assert!(attachment_bytes(&*store, &p, "old", "a.bin")
        .await
        .is_none());
    assert_eq!(store.get_draft(&p, "fresh").await.unwrap(), Some(fresh));
    // After a purge the conversation starts from seq 0 again.
    written(
        store
            .put_draft_text(&p, "old", 0, "new life", 2_000)
            .await
            .unwrap(),
    );
    // The purged bytes no longer count against the quota.
    let tight = AttachmentLimits {
        max_size: 100,
        quota: 9,
    };
    written(
        attach(&*store, &p, "fresh", 1, "b.bin", b"123456789", tight)
            .await
            .unwrap(),
    );
    // `limit` bounds one pass.
    let q = Principal::user("bob");
    for c in ["x1", "x2", "x3"] {
        written(store.put_draft_text(&q, c, 0, "t", 1).await.unwrap());
    }
    assert_eq!(store.purge_drafts(5, 2).await.unwrap(), 2);
    assert_eq!(store.purge_drafts(5, 2).await.unwrap(), 1);
    assert_eq!(store.purge_drafts(5, 2).await.unwrap(), 0);
}

pub async fn check_principal_isolation(store: Arc<dyn Store>) {
    let a = Principal::user("alice");
    let b = Principal::user("bob");
    let d = written(
        store
            .put_draft_text(&a, "c1", 0, "alice secret", 10)
            .await
            .unwrap(),
    );
    let d = written(
        attach(&*store, &a, "c1", d.seq, "clip.webm", b"alice audio", ROOMY)
            .await
            .unwrap(),
    );

    assert_eq!(store.get_draft(&b, "c1").await.unwrap(), None);
    assert!(store.list_drafts(&b).await.unwrap().is_empty());
    assert!(attachment_bytes(&*store, &b, "c1", "clip.webm")
        .await
        .is_none());
    // B naming A's seq gets B's own (absent) draft back, never A's.
    assert_eq!(
        conflict(
            store
                .put_draft_text(&b, "c1", d.seq, "bob", 11)
                .await
                .unwrap()
        ),
        None
    );
    assert_eq!(
        conflict(store.delete_draft(&b, "c1", d.seq, 11).await.unwrap()),
        None
    );
    assert!(matches!(
        store
            .delete_attachment(&b, "c1", d.seq, "clip.webm", None, 11)
            .await
            .unwrap(),
        DraftWrite::NotFound | DraftWrite::Conflict(None)
    ));

    let bd = written(
        store
            .put_draft_text(&b, "c1", 0, "bob text", 12)
            .await
            .unwrap(),
    );
    assert_eq!(bd.principal, b);
    assert_eq!(
        store
            .delete_attachment(&b, "c1", bd.seq, "clip.webm", None, 13)
            .await
            .unwrap(),
        DraftWrite::NotFound
    );
    written(store.delete_draft(&b, "c1", bd.seq, 14).await.unwrap());
    assert_eq!(store.get_draft(&a, "c1").await.unwrap(), Some(d.clone()));
    assert_eq!(
        attachment_bytes(&*store, &a, "c1", "clip.webm")
            .await
            .unwrap()
            .1,
        b"alice audio"
    );
    assert!(
        attachment_bytes(&*store, &a, "c2", "clip.webm")
            .await
            .is_none(),
        "attachments are per conversation"
    );
}

// ---------------------------------------------------------------- property: isolation

#[derive(Debug, Clone)]
enum Op {
    Write {
        p: usize,
        c: usize,
        empty: bool,
        stale: bool,
    },
    Delete {
        p: usize,
        c: usize,
    },
    Attach {
        p: usize,
        c: usize,
        name: usize,
    },
    DeleteAttachment {
        p: usize,
        c: usize,
        name: usize,
    },
    Move {
        from: usize,
        to: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, prop::bool::weighted(0.15), prop::bool::weighted(0.2))
            .prop_map(|(p, c, empty, stale)| Op::Write { p, c, empty, stale }),
        1 => (0..3usize, 0..3usize).prop_map(|(p, c)| Op::Delete { p, c }),
        2 => (0..3usize, 0..3usize, 0..2usize).prop_map(|(p, c, name)| Op::Attach { p, c, name }),
        1 => (0..3usize, 0..3usize, 0..2usize).prop_map(|(p, c, name)| Op::DeleteAttachment { p, c, name }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Move { from, to }),
    ]
}

/// Everything a principal may legitimately see in one conversation: what it wrote
/// there, plus what was moved to it from other principals' same conversation.
#[derive(Default)]
struct Allowed {
    texts: HashMap<(usize, usize), HashSet<String>>,
    blobs: HashMap<(usize, usize), HashSet<Vec<u8>>>,
}

async fn run_isolation_case(
    store: &dyn Store,
    case: usize,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let principals: Vec<Principal> = (0..3)
        .map(|i| Principal(format!("anon:case{case}-p{i}")))
        .collect();
    let convs = ["conv-a", "conv-b", "conv-c"];
    let names = ["one.bin", "two.bin"];
    let mut allowed = Allowed::default();
    let su = |e: StoreError| TestCaseError::fail(format!("store error: {e}"));
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Write { p, c, empty, stale } => {
                let cur = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?;
                let seq = cur.map_or(0, |d| d.seq);
                let seq = if stale { seq.saturating_sub(1) } else { seq };
                let text = if empty {
                    String::new()
                } else {
                    format!("case{case}|p{p}|{}|op{n}", convs[c])
                };
                if !text.is_empty() {
                    allowed
                        .texts
                        .entry((p, c))
                        .or_default()
                        .insert(text.clone());
                }
                store
                    .put_draft_text(&principals[p], convs[c], seq, &text, n as i64)
                    .await
                    .map_err(su)?;
            }
            Op::Delete { p, c } => {
                let seq = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?
                    .map_or(0, |d| d.seq);
                store
                    .delete_draft(&principals[p], convs[c], seq, n as i64)
                    .await
                    .map_err(su)?;
            }
            Op::Attach { p, c, name } => {
                let seq = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?
                    .map_or(0, |d| d.seq);
                let data = format!("case{case}|p{p}|{}|op{n}", convs[c]).into_bytes();
                allowed
                    .blobs
                    .entry((p, c))
                    .or_default()
                    .insert(data.clone());
                store
                    .put_attachment(
                        attachment(
                            &principals[p],
                            convs[c],
                            seq,
                            names[name],
                            "x/y",
                            ROOMY,
                            n as i64,
                        ),
                        body(&data, 7),
                    )
                    .await
                    .map_err(su)?;
            }
            Op::DeleteAttachment { p, c, name } => {
                let seq = store
                    .get_draft(&principals[p], convs[c])
                    .await
                    .map_err(su)?
                    .map_or(0, |d| d.seq);
                store
                    .delete_attachment(&principals[p], convs[c], seq, names[name], None, n as i64)
                    .await
                    .map_err(su)?;
            }
            Op::Move { from, to } => {
                if from != to {
                    for c in 0..convs.len() {
                        let t: Vec<String> = allowed
                            .texts
                            .get(&(from, c))
                            .into_iter()
                            .flatten()
                            .cloned()
                            .collect();
                        allowed.texts.entry((to, c)).or_default().extend(t);
                        let b: Vec<Vec<u8>> = allowed
                            .blobs
                            .get(&(from, c))
                            .into_iter()
                            .flatten()
                            .cloned()
                            .collect();
                        allowed.blobs.entry((to, c)).or_default().extend(b);
                    }
                    store
                        .move_drafts(&principals[from], &principals[to], n as i64, &plain_merge())
                        .await
                        .map_err(su)?;
                }
            }
        }
        // After every step, every principal reads only what it may see.
        for (p, principal) in principals.iter().enumerate() {
            for d in store.list_drafts(principal).await.map_err(su)? {
                prop_assert_eq!(&d.principal, principal);
                prop_assert!(!d.deleted, "list_drafts returned a tombstone");
            }
            for (c, conv) in convs.iter().enumerate() {
                let Some(d) = store.get_draft(principal, conv).await.map_err(su)? else {
                    continue;
                };
                prop_assert_eq!(&d.principal, principal);
                prop_assert_eq!(&d.conversation, conv);
                let ok_texts = allowed.texts.get(&(p, c));
                for seg in d.text.split("\n\n").filter(|s| !s.is_empty()) {
                    prop_assert!(
                        ok_texts.is_some_and(|t| t.contains(seg)),
                        "{} in {} read foreign text {:?}",
                        principal,
                        conv,
                        seg
                    );
                }
                for a in &d.attachments {
                    let Some((meta, s)) = store
                        .get_attachment(principal, conv, &a.name)
                        .await
                        .map_err(su)?
                    else {
                        return Err(TestCaseError::fail(format!(
                            "listed attachment {} unreadable",
                            a.name
                        )));
                    };
                    let bytes = read_all(s).await;
                    prop_assert_eq!(&meta.sha256, &sha_hex(&bytes));
                    prop_assert!(
                        allowed
                            .blobs
                            .get(&(p, c))
                            .is_some_and(|b| b.contains(&bytes)),
                        "{} in {} read foreign attachment {:?}",
                        principal,
                        conv,
                        String::from_utf8_lossy(&bytes)
                    );
                }
            }
        }
    }
    Ok(())
}

/// Random interleavings of draft writes, deletes, attachments and sign-in moves across
/// 3 principals x 3 conversations never let a principal read outside its own scope.
pub async fn check_random_draft_isolation(store: Arc<dyn Store>) {
    let rt = tokio::runtime::Handle::current();
    let case = std::sync::atomic::AtomicUsize::new(0);
    // proptest's runner is synchronous; block_in_place lets it drive the async store
    // from inside this multi-threaded test runtime.
    tokio::task::block_in_place(|| {
        let config = ProptestConfig {
            cases: 32,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let result = runner.run(&prop::collection::vec(op_strategy(), 1..40), |ops| {
            // Each case (and each shrink step) uses fresh principals in the shared store.
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(run_isolation_case(&*store, n, &ops))
        });
        if let Err(e) = result {
            panic!("draft isolation violated: {e}");
        }
    });
}

/// Attachment writes may carry the draft's new text ([`AttachmentPut::text`],
/// `delete_attachment`'s `text`), committed with them or not at all; `move_drafts`
/// builds each moved draft with the rule it is given, and a rule that fails moves
/// nothing of that conversation (an encrypting decorator re-seals through both).
pub async fn check_write_hooks(store: Arc<dyn Store>) {
    let p = Principal::user("hooks");
    let d = written(store.put_draft_text(&p, "c", 0, "before", 1).await.unwrap());
    let put = AttachmentPut {
        text: Some("with the clip"),
        ..attachment(&p, "c", d.seq, "a.bin", "audio/webm", ROOMY, 2)
    };
    let d = written(store.put_attachment(put, body(b"abc", 2)).await.unwrap());
    assert_eq!((d.text.as_str(), d.seq), ("with the clip", 2));
    let d = written(
        attach(&*store, &p, "c", d.seq, "b.bin", b"x", ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(d.text, "with the clip", "no text given: the text stays");
    let d = written(
        store
            .delete_attachment(&p, "c", d.seq, "a.bin", Some("clip gone"), 4)
            .await
            .unwrap(),
    );
    assert_eq!((d.text.as_str(), d.seq), ("clip gone", 4));
    let r = store
        .delete_attachment(&p, "c", d.seq, "zzz.bin", Some("not this"), 5)
        .await
        .unwrap();
    assert_eq!(r, DraftWrite::NotFound);
    let stale = AttachmentPut {
        text: Some("stale"),
        ..attachment(&p, "c", 1, "c.bin", "audio/webm", ROOMY, 6)
    };
    let r = store.put_attachment(stale, body(b"x", 1)).await.unwrap();
    assert!(matches!(r, DraftWrite::Conflict(_)), "{r:?}");
    let d = store.get_draft(&p, "c").await.unwrap().unwrap();
    assert_eq!((d.text.as_str(), d.seq), ("clip gone", 4));

    let anon = Principal("anon:hooks".into());
    written(
        store
            .put_draft_text(&anon, "m1", 0, "anon one", 7)
            .await
            .unwrap(),
    );
    let rule: MergeRule = Arc::new(|user, anon, to, now| {
        let mut d = sessiond_core::draft::move_on_sign_in(user, anon, to, now);
        d.text = format!("[{}]", d.text);
        Ok(d)
    });
    let moved = store.move_drafts(&anon, &p, 8, &rule).await.unwrap();
    assert_eq!(moved, ["m1"]);
    let m1 = store.get_draft(&p, "m1").await.unwrap().unwrap();
    assert_eq!(m1.text, "[anon one]");
    written(
        store
            .put_draft_text(&anon, "m2", 0, "kept", 9)
            .await
            .unwrap(),
    );
    let refuse: MergeRule =
        Arc::new(|_, _, _, _| Err(StoreError::Integrity("refused by the test".into())));
    let r = store.move_drafts(&anon, &p, 10, &refuse).await;
    assert!(matches!(r, Err(StoreError::Integrity(_))), "{r:?}");
    let kept = store.get_draft(&anon, "m2").await.unwrap().unwrap();
    assert_eq!((kept.text.as_str(), kept.deleted), ("kept", false));
    assert!(store.get_draft(&p, "m2").await.unwrap().is_none());
}

/// With [`AttachmentPut::content_sha256`], the hash recorded is the one the cell holds
/// when the body ends (filled by whoever produced the body), not the store's own; an
/// empty cell leaves the store's. (An encrypting decorator fills that cell itself, with
/// the plaintext's hash, so this promise is checked on backends.)
pub async fn check_attachment_content_hash(store: Arc<dyn Store>) {
    let p = Principal::user("hash");
    let marker = "ab".repeat(32);
    let cell = Arc::new(std::sync::OnceLock::new());
    let (fill, value) = (cell.clone(), marker.clone());
    // The cell is set only as the stream ends, as a decorator hashing while it streams does.
    let stream: ByteStream = Box::pin(futures::stream::unfold(0u8, move |step| {
        let (fill, value) = (fill.clone(), value.clone());
        async move {
            if step == 0 {
                Some((Ok(Bytes::from_static(b"abcdef")), 1))
            } else {
                let _ = fill.set(value);
                None
            }
        }
    }));
    let put = AttachmentPut {
        content_sha256: Some(&cell),
        ..attachment(&p, "c", 0, "a.bin", "audio/webm", ROOMY, 1)
    };
    let d = written(store.put_attachment(put, stream).await.unwrap());
    assert_eq!(d.attachments[0].sha256, marker);
    let d = store.get_draft(&p, "c").await.unwrap().unwrap();
    assert_eq!(d.attachments[0].sha256, marker);
    let empty = std::sync::OnceLock::new();
    let put = AttachmentPut {
        content_sha256: Some(&empty),
        ..attachment(&p, "c", d.seq, "b.bin", "audio/webm", ROOMY, 2)
    };
    let d = written(store.put_attachment(put, body(b"xyz", 2)).await.unwrap());
    assert_eq!(d.attachment("b.bin").unwrap().sha256, sha_hex(b"xyz"));
}
