//! A store that fails: every request answers 503 `store_unavailable` at once, no
//! session is expired because of it, and service resumes when the store is back.

use crate::common::*;
use reqwest::Client;
use serde_json::Value;
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::draft::{AttachmentLimits, AttachmentMeta, Draft, DraftWrite};
use sessiond_core::snapshot::{Snapshot, SnapshotWrite};
use sessiond_core::store::{ByteStream, CreateOutcome, IdempotencyRecord, Result, SessionFilter};
use sessiond_core::{
    EndReason, Handle, Principal, Session, Store, StoreError, SystemClock, Timestamp, TokenHash,
};
use sessiond_server::config::Config;
use sessiond_testkit::inproc::TestServer;
use sessiond_testkit::wait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The memory store behind a switch that makes every call fail as unreachable.
struct Flaky {
    inner: sessiond_store_memory::MemoryStore,
    down: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn ping(&self) -> Result<()> {
        self.check()?;
        self.inner.ping().await
    }

    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
    ) -> Result<CreateOutcome> {
        self.check()?;
        self.inner.create_session(s, idem).await
    }

    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>> {
        self.check()?;
        self.inner.get_session(handle).await
    }

    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>> {
        self.check()?;
        self.inner.get_session_by_token(hash).await
    }

    async fn update_session(&self, s: &Session, expected_token: &TokenHash) -> Result<bool> {
        self.check()?;
        self.inner.update_session(s, expected_token).await
    }

    async fn touch_session(
        &self,
        handle: &Handle,
        last_activity_at: Timestamp,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool> {
        self.check()?;
        self.inner
            .touch_session(handle, last_activity_at, last_seen_at, idle_expires_at)
            .await
    }

    async fn touch_sessions(
        &self,
        touches: &[(Handle, Timestamp, Timestamp, Timestamp)],
    ) -> Result<()> {
        self.check()?;
        self.inner.touch_sessions(touches).await
    }

    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
    ) -> Result<Option<Session>> {
        self.check()?;
        self.inner.end_session(handle, reason, now).await
    }

    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        self.check()?;
        self.inner.list_sessions(filter).await
    }

    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>> {
        self.check()?;
        self.inner.due_sessions(now, limit).await
    }

    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize> {
        self.check()?;
        self.inner.purge_ended_sessions(ended_before, limit).await
    }

    async fn count_active_sessions(&self) -> Result<u64> {
        self.check()?;
        self.inner.count_active_sessions().await
    }

    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>> {
        self.check()?;
        self.inner.get_data(handle, key).await
    }

    async fn put_data(
        &self,
        handle: &Handle,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<bool> {
        self.check()?;
        self.inner.put_data(handle, key, value).await
    }

    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool> {
        self.check()?;
        self.inner.delete_data(handle, key).await
    }

    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        self.check()?;
        self.inner.append_audit(e).await
    }

    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.check()?;
        self.inner.query_audit(f).await
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.check()?;
        self.inner.purge_audit(before, limit).await
    }

    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        self.check()?;
        self.inner.get_draft(p, conversation).await
    }

    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        self.check()?;
        self.inner.list_drafts(p).await
    }

    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.check()?;
        self.inner
            .put_draft_text(p, conversation, expected_seq, text, now)
            .await
    }

    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.check()?;
        self.inner
            .delete_draft(p, conversation, expected_seq, now)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        content_type: &str,
        body: ByteStream,
        limits: AttachmentLimits,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.check()?;
        self.inner
            .put_attachment(
                p,
                conversation,
                expected_seq,
                name,
                content_type,
                body,
                limits,
                now,
            )
            .await
    }

    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>> {
        self.check()?;
        self.inner.get_attachment(p, conversation, name).await
    }

    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.check()?;
        self.inner
            .delete_attachment(p, conversation, expected_seq, name, now)
            .await
    }

    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
    ) -> Result<Vec<String>> {
        self.check()?;
        self.inner.move_drafts(from, to, now).await
    }

    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.check()?;
        self.inner.purge_drafts(before, limit).await
    }

    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        self.check()?;
        self.inner.get_snapshot(room).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_snapshot(
        &self,
        room: &str,
        expected_version: u64,
        data: &[u8],
        content_type: &str,
        by: Option<&str>,
        retain_until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<SnapshotWrite> {
        self.check()?;
        self.inner
            .put_snapshot(
                room,
                expected_version,
                data,
                content_type,
                by,
                retain_until,
                now,
            )
            .await
    }

    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        self.check()?;
        self.inner.retain_snapshot(room, until).await
    }

    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.check()?;
        self.inner.purge_snapshots(now, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_503_at_once_and_expires_nobody() {
    let store = Arc::new(Flaky {
        inner: sessiond_store_memory::MemoryStore::new(),
        down: AtomicBool::new(false),
    });
    let config = Config::from_toml(&format!(
        "store = \"memory\"\ndev = true\napi_keys = [\"{ADMIN_KEY}\"]\n[roles.editor]\nidle_timeout = \"2s\"\nwarn_before = \"1s\""
    ))
    .unwrap();
    let served = store.clone();
    let server = TestServer::spawn(&DataDir::new(), move |listener, shutdown| {
        sessiond_server::run_with_store(config, listener, shutdown, Arc::new(SystemClock), served)
    })
    .await;
    let url = server.url.clone();
    let c = Client::new();
    let r = c.post(format!("{url}/v1/session")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let token = token_of(r.headers()).unwrap();
    let handle = r.json::<Value>().await.unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();

    store.down.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let r = c.post(format!("{url}/v1/session")).send().await.unwrap();
    let p = problem(r, 503, "store_unavailable").await;
    assert!(
        p["detail"]
            .as_str()
            .is_some_and(|d| !d.contains("switched off")),
        "internal cause not sent"
    );
    let r = c.get(format!("{url}/readyz")).send().await.unwrap();
    problem(r, 503, "store_unavailable").await;
    let r = c
        .get(format!("{url}/v1/admin/sessions"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let retry = r.headers().get("retry-after").cloned();
    problem(r, 503, "store_unavailable").await;
    assert_eq!(retry.unwrap(), "1");
    assert!(start.elapsed() < Duration::from_secs(1), "answered at once");
    // Past the idle deadline while the store is down: the session is not ended blindly.
    // Real-time smoke test: the idle deadline must pass on the wall clock during the outage.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = get(&format!("{url}/v1/session"), &token).await;
    assert!(r.status() == 503 || r.status() == 401, "{}", r.status());

    store.down.store(false, Ordering::SeqCst);
    let (c_ref, url_ref) = (&c, &url);
    wait::until(
        wait::DEFAULT,
        "service to resume by itself",
        move || async move {
            let r = c_ref
                .post(format!("{url_ref}/v1/session"))
                .send()
                .await
                .unwrap();
            r.status() == 201
        },
    )
    .await;
    let (inner, handle) = (&store.inner, Handle::parse(&handle).unwrap());
    let handle = &handle;
    let ended = wait::until_some(wait::DEFAULT, "the session to end", move || async move {
        inner
            .get_session(handle)
            .await
            .unwrap()
            .filter(|s| s.end_reason.is_some())
    })
    .await;
    assert_eq!(
        ended.end_reason,
        Some(EndReason::IdleTimeout),
        "ended once the store answered"
    );
    server.stop().await;
}
