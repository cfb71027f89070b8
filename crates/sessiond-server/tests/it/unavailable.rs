//! A store that fails: every request answers 503 `store_unavailable` at once, no
//! session is expired because of it, and service resumes when the store is back.

use crate::common::*;
use reqwest::Client;
use serde_json::Value;
use sessiond_core::audit::AuditEvent;
use sessiond_core::quota::DataUsage;
use sessiond_core::store::{
    CreateOutcome, DraftMove, Expiry, IdempotencyRecord, Result, SessionFilter, SessionStore,
    Store, Touch,
};
use sessiond_core::{EndReason, Handle, Session, StoreError, SystemClock, Timestamp, TokenHash};
use sessiond_server::config::Config;
use sessiond_store_memory::MemoryStore;
use sessiond_testkit::inproc::TestServer;
use sessiond_testkit::wait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The memory store's sessions behind a switch that makes every session call fail as
/// unreachable. Only sessions are switched: the outage the test drives is seen through
/// them (create, readiness, admin listing, expiry), so audit, drafts and snapshots stay
/// the memory store's own.
struct Flaky {
    inner: Arc<MemoryStore>,
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

/// Implements `SessionStore` for `Flaky`: each method checks the switch, then calls the
/// memory store's method of the same name.
macro_rules! switched_sessions {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        #[async_trait::async_trait]
        impl SessionStore for Flaky {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.check()?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

switched_sessions! {
    fn ping(&self) -> Result<()>;
    fn create_session(&self, s: &Session, idem: Option<&IdempotencyRecord>, audit: &[AuditEvent]) -> Result<CreateOutcome>;
    fn get_session(&self, handle: &Handle) -> Result<Option<Session>>;
    fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>>;
    fn update_session(&self, s: &Session, expected_token: &TokenHash, audit: &[AuditEvent], draft_move: Option<&DraftMove>) -> Result<bool>;
    fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool>;
    fn touch_sessions(&self, touches: &[Touch]) -> Result<()>;
    fn end_session(&self, handle: &Handle, reason: EndReason, now: Timestamp, audit: &[AuditEvent]) -> Result<Option<Session>>;
    fn expire_session(&self, seen: &Expiry, reason: EndReason, now: Timestamp, audit: &[AuditEvent]) -> Result<Option<Session>>;
    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>>;
    fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>>;
    fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize>;
    fn count_active_sessions(&self) -> Result<u64>;
    fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>>;
    fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool>;
    fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool>;
    fn purge_claims(&self, now: Timestamp, limit: usize) -> Result<usize>;
    fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>>;
    fn put_data(&self, handle: &Handle, key: &str, value: &serde_json::Value) -> Result<bool>;
    fn put_data_if(&self, handle: &Handle, key: &str, expected: Option<&serde_json::Value>, value: &serde_json::Value) -> Result<bool>;
    fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool>;
    fn data_usage(&self, handle: &Handle, key: &str) -> Result<DataUsage>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_is_503_at_once_and_expires_nobody() {
    let store = Arc::new(Flaky {
        inner: Arc::new(MemoryStore::new()),
        down: AtomicBool::new(false),
    });
    let whole: Arc<dyn Store> = Arc::new(store.inner.clone().split().with_sessions(store.clone()));
    let config = Config::from_toml(&format!(
        "store = \"memory\"\ndev = true\napi_keys = [\"{ADMIN_KEY}\"]\n[roles.editor]\nidle_timeout = \"2s\"\nwarn_before = \"1s\""
    ))
    .unwrap();
    let server = TestServer::spawn(&DataDir::new(), move |listener, shutdown| async move {
        sessiond_server::ServerBuilder::new(config)
            .store(whole)
            .clock(Arc::new(SystemClock))
            .build()
            .await?
            .serve(listener, shutdown)
            .await
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
