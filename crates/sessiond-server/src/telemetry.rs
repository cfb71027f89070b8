//! What the server adds to OpenTelemetry traces (the exporter itself is the binary's):
//! the caller's W3C `traceparent` as the parent of a request's span, and [`traced`], a
//! store decorator giving every store call made within a request a span of its own.
//!
//! A decorator over the `Store` trait rather than instrumenting each backend keeps
//! `sessiond-core` and the backends free of tracing concerns, and covers every caller
//! (the session service, rooms, quotas, drafts) in one place.

use axum::http::HeaderMap;
use opentelemetry::propagation::Extractor;
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::clock::Timestamp;
use sessiond_core::draft::{AttachmentMeta, Draft, DraftWrite};
use sessiond_core::outbox::DeadLetter;
use sessiond_core::quota::{DataUsage, SnapshotUsage};
use sessiond_core::session::{EndReason, Principal, Session};
use sessiond_core::snapshot::{Snapshot, SnapshotWrite};
use sessiond_core::store::{
    AttachmentPut, AuditStore, ByteStream, CreateOutcome, DraftMove, DraftStore, Expiring, Expiry,
    IdempotencyRecord, MergeRule, Result, SessionFilter, SessionStore, SnapshotPut, SnapshotStore,
    Store, Touch,
};
use sessiond_core::token::{Handle, TokenHash};
use std::future::Future;
use std::sync::Arc;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Only the trace-context headers are handed to the propagator: it never sees cookies
/// or bearer tokens, whatever propagator is installed.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

struct TraceHeaders<'a>(&'a HeaderMap);

impl Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if !TRACE_HEADERS.contains(&key) {
            return None;
        }
        // A repeated header is ambiguous: ignored, so the request starts its own trace.
        let mut all = self.0.get_all(key).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => v.to_str().ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        TRACE_HEADERS
            .iter()
            .copied()
            .filter(|k| self.0.contains_key(*k))
            .collect()
    }
}

/// Makes the caller's trace (W3C `traceparent`, `tracestate`) the parent of `span`, so
/// sessiond's spans join the app's trace; forward-auth requests carry the header too
/// when the proxy passes the original request's headers. Does nothing unless the binary
/// installed the propagator (traces configured): a malformed header is ignored.
pub fn join_caller_trace(span: &Span, headers: &HeaderMap) {
    // A parsed name: looking up by `&str` would parse it on every request.
    static TRACEPARENT: axum::http::HeaderName = axum::http::HeaderName::from_static("traceparent");
    if !headers.contains_key(&TRACEPARENT) {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&TraceHeaders(headers)));
    // Fails only when no OpenTelemetry layer is installed; then there is nothing to join.
    let _ = span.set_parent(cx);
}

/// Gives `span` its OpenTelemetry name once routing has found it. Recording `otel.name`
/// is not enough: the OpenTelemetry layer ignores a new name once the span's context
/// exists (a caller's `traceparent` or an earlier child creates it).
pub fn rename(span: &Span, name: String) {
    span.record("otel.name", tracing::field::display(&name));
    use opentelemetry::trace::TraceContextExt;
    span.context().span().update_name(name);
}

/// `store` with a span around each call made inside a request (`store <operation>`,
/// with `db.operation.name` and `db.system.name` = `backend`). Calls made outside any
/// span (the scheduler, the flusher, retention) are not traced: an idle server sends
/// nothing. Arguments and results are never recorded (they hold token hashes and data).
pub fn traced(store: Arc<dyn Store>, backend: &'static str) -> Arc<dyn Store> {
    Arc::new(TracedStore {
        inner: store,
        backend,
    })
}

struct TracedStore {
    inner: Arc<dyn Store>,
    backend: &'static str,
}

impl TracedStore {
    async fn call<T>(&self, op: &'static str, fut: impl Future<Output = Result<T>>) -> Result<T> {
        if Span::current().is_none() {
            return fut.await;
        }
        let span = tracing::info_span!(
            "store",
            otel.name = %format_args!("store {op}"),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system.name = self.backend,
            db.operation.name = op,
            "error.type" = Empty,
        );
        let result = fut.instrument(span.clone()).await;
        if let Err(e) = &result {
            span.record("otel.status_code", "error");
            span.record("error.type", error_type(e));
        }
        result
    }
}

/// The error's kind, never its message (which may name ids).
fn error_type(e: &sessiond_core::StoreError) -> &'static str {
    use sessiond_core::StoreError as E;
    match e {
        E::Unavailable(_) => "unavailable",
        E::Corrupt(_) => "corrupt",
        E::Integrity(_) => "integrity",
        E::TooLarge { .. } => "too_large",
        E::QuotaExceeded { .. } => "quota_exceeded",
        E::Body(_) => "body",
    }
}

#[async_trait::async_trait]
impl SessionStore for TracedStore {
    async fn ping(&self) -> Result<()> {
        self.call("ping", self.inner.ping()).await
    }
    async fn create_session(
        &self,
        s: &Session,
        idem: Option<&IdempotencyRecord>,
        audit: &[AuditEvent],
    ) -> Result<CreateOutcome> {
        self.call("create_session", self.inner.create_session(s, idem, audit))
            .await
    }
    async fn get_session(&self, handle: &Handle) -> Result<Option<Session>> {
        self.call("get_session", self.inner.get_session(handle))
            .await
    }
    async fn get_session_by_token(&self, hash: &TokenHash) -> Result<Option<Session>> {
        self.call(
            "get_session_by_token",
            self.inner.get_session_by_token(hash),
        )
        .await
    }
    async fn update_session(
        &self,
        s: &Session,
        expected_token: &TokenHash,
        audit: &[AuditEvent],
        draft_move: Option<&DraftMove>,
    ) -> Result<bool> {
        self.call(
            "update_session",
            self.inner
                .update_session(s, expected_token, audit, draft_move),
        )
        .await
    }
    async fn touch_session(&self, t: &Touch, audit: &[AuditEvent]) -> Result<bool> {
        self.call("touch_session", self.inner.touch_session(t, audit))
            .await
    }
    async fn touch_sessions(&self, touches: &[Touch]) -> Result<()> {
        self.call("touch_sessions", self.inner.touch_sessions(touches))
            .await
    }
    async fn end_session(
        &self,
        handle: &Handle,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        self.call(
            "end_session",
            self.inner.end_session(handle, reason, now, audit),
        )
        .await
    }
    async fn expire_session(
        &self,
        seen: &Expiry,
        reason: EndReason,
        now: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<Option<Session>> {
        self.call(
            "expire_session",
            self.inner.expire_session(seen, reason, now, audit),
        )
        .await
    }
    /// Not traced: only the scheduler calls it, outside any request's span.
    async fn expire_sessions(
        &self,
        batch: Vec<Expiring>,
        now: Timestamp,
    ) -> Vec<Result<Option<Session>>> {
        self.inner.expire_sessions(batch, now).await
    }
    fn time_ordered_handles(&self) -> bool {
        self.inner.time_ordered_handles()
    }
    async fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        self.call("list_sessions", self.inner.list_sessions(filter))
            .await
    }
    async fn due_sessions(&self, now: Timestamp, limit: usize) -> Result<Vec<Handle>> {
        self.call("due_sessions", self.inner.due_sessions(now, limit))
            .await
    }
    async fn purge_ended_sessions(&self, ended_before: Timestamp, limit: usize) -> Result<usize> {
        self.call(
            "purge_ended_sessions",
            self.inner.purge_ended_sessions(ended_before, limit),
        )
        .await
    }
    async fn count_active_sessions(&self) -> Result<u64> {
        self.call("count_active_sessions", self.inner.count_active_sessions())
            .await
    }
    async fn pending_draft_moves(&self, limit: usize) -> Result<Vec<DraftMove>> {
        self.call("pending_draft_moves", self.inner.pending_draft_moves(limit))
            .await
    }
    async fn finish_draft_move(&self, m: &DraftMove, audit: &[AuditEvent]) -> Result<bool> {
        self.call("finish_draft_move", self.inner.finish_draft_move(m, audit))
            .await
    }
    async fn claim_once(&self, key: &str, until: Timestamp, now: Timestamp) -> Result<bool> {
        self.call("claim_once", self.inner.claim_once(key, until, now))
            .await
    }
    async fn purge_claims(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.call("purge_claims", self.inner.purge_claims(now, limit))
            .await
    }
    async fn get_data(&self, handle: &Handle, key: &str) -> Result<Option<serde_json::Value>> {
        self.call("get_data", self.inner.get_data(handle, key))
            .await
    }
    async fn put_data(
        &self,
        handle: &Handle,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<bool> {
        self.call("put_data", self.inner.put_data(handle, key, value))
            .await
    }
    async fn put_data_if(
        &self,
        handle: &Handle,
        key: &str,
        expected: Option<&serde_json::Value>,
        value: &serde_json::Value,
    ) -> Result<bool> {
        self.call(
            "put_data_if",
            self.inner.put_data_if(handle, key, expected, value),
        )
        .await
    }
    async fn delete_data(&self, handle: &Handle, key: &str) -> Result<bool> {
        self.call("delete_data", self.inner.delete_data(handle, key))
            .await
    }
    async fn data_usage(&self, handle: &Handle, key: &str) -> Result<DataUsage> {
        self.call("data_usage", self.inner.data_usage(handle, key))
            .await
    }
}

#[async_trait::async_trait]
impl AuditStore for TracedStore {
    async fn append_audit(&self, e: &AuditEvent) -> Result<i64> {
        self.call("append_audit", self.inner.append_audit(e)).await
    }
    async fn query_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.call("query_audit", self.inner.query_audit(f)).await
    }
    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.call("purge_audit", self.inner.purge_audit(before, limit))
            .await
    }

    async fn acquire_outbox_lease(
        &self,
        holder: &str,
        now: Timestamp,
        ttl_ms: i64,
    ) -> Result<Option<u64>> {
        self.call(
            "acquire_outbox_lease",
            self.inner.acquire_outbox_lease(holder, now, ttl_ms),
        )
        .await
    }
    async fn release_outbox_lease(&self, holder: &str) -> Result<()> {
        self.call(
            "release_outbox_lease",
            self.inner.release_outbox_lease(holder),
        )
        .await
    }
    async fn outbox_cursor(&self, endpoint: &str) -> Result<Option<i64>> {
        self.call("outbox_cursor", self.inner.outbox_cursor(endpoint))
            .await
    }
    async fn advance_outbox_cursor(
        &self,
        endpoint: &str,
        fence: u64,
        from: Option<i64>,
        to: i64,
    ) -> Result<bool> {
        self.call(
            "advance_outbox_cursor",
            self.inner.advance_outbox_cursor(endpoint, fence, from, to),
        )
        .await
    }
    async fn put_dead_letter(&self, d: &DeadLetter) -> Result<()> {
        self.call("put_dead_letter", self.inner.put_dead_letter(d))
            .await
    }
    async fn get_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<Option<DeadLetter>> {
        self.call(
            "get_dead_letter",
            self.inner.get_dead_letter(endpoint, event_id),
        )
        .await
    }
    async fn list_dead_letters(
        &self,
        endpoint: &str,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.call(
            "list_dead_letters",
            self.inner.list_dead_letters(endpoint, after_id, limit),
        )
        .await
    }
    async fn delete_dead_letter(&self, endpoint: &str, event_id: i64) -> Result<bool> {
        self.call(
            "delete_dead_letter",
            self.inner.delete_dead_letter(endpoint, event_id),
        )
        .await
    }
    async fn count_dead_letters(&self, endpoint: &str) -> Result<u64> {
        self.call(
            "count_dead_letters",
            self.inner.count_dead_letters(endpoint),
        )
        .await
    }
}

#[async_trait::async_trait]
impl DraftStore for TracedStore {
    async fn get_draft(&self, p: &Principal, conversation: &str) -> Result<Option<Draft>> {
        self.call("get_draft", self.inner.get_draft(p, conversation))
            .await
    }
    async fn list_drafts(&self, p: &Principal) -> Result<Vec<Draft>> {
        self.call("list_drafts", self.inner.list_drafts(p)).await
    }
    async fn put_draft_text(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        text: &str,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.call(
            "put_draft_text",
            self.inner
                .put_draft_text(p, conversation, expected_seq, text, now),
        )
        .await
    }
    async fn delete_draft(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.call(
            "delete_draft",
            self.inner.delete_draft(p, conversation, expected_seq, now),
        )
        .await
    }
    async fn put_attachment(&self, put: AttachmentPut<'_>, body: ByteStream) -> Result<DraftWrite> {
        self.call("put_attachment", self.inner.put_attachment(put, body))
            .await
    }
    async fn get_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        name: &str,
    ) -> Result<Option<(AttachmentMeta, ByteStream)>> {
        self.call(
            "get_attachment",
            self.inner.get_attachment(p, conversation, name),
        )
        .await
    }
    async fn delete_attachment(
        &self,
        p: &Principal,
        conversation: &str,
        expected_seq: u64,
        name: &str,
        text: Option<&str>,
        now: Timestamp,
    ) -> Result<DraftWrite> {
        self.call(
            "delete_attachment",
            self.inner
                .delete_attachment(p, conversation, expected_seq, name, text, now),
        )
        .await
    }
    async fn move_drafts(
        &self,
        from: &Principal,
        to: &Principal,
        now: Timestamp,
        merge: &MergeRule,
    ) -> Result<Vec<String>> {
        self.call("move_drafts", self.inner.move_drafts(from, to, now, merge))
            .await
    }
    async fn purge_drafts(&self, before: Timestamp, limit: usize) -> Result<usize> {
        self.call("purge_drafts", self.inner.purge_drafts(before, limit))
            .await
    }
}

#[async_trait::async_trait]
impl SnapshotStore for TracedStore {
    async fn get_snapshot(&self, room: &str) -> Result<Option<Snapshot>> {
        self.call("get_snapshot", self.inner.get_snapshot(room))
            .await
    }
    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<SnapshotWrite> {
        self.call("put_snapshot", self.inner.put_snapshot(put))
            .await
    }
    async fn snapshot_usage(&self, by: &str, except_room: &str) -> Result<SnapshotUsage> {
        self.call("snapshot_usage", self.inner.snapshot_usage(by, except_room))
            .await
    }
    async fn retain_snapshot(&self, room: &str, until: Option<Timestamp>) -> Result<()> {
        self.call("retain_snapshot", self.inner.retain_snapshot(room, until))
            .await
    }
    async fn purge_snapshots(&self, now: Timestamp, limit: usize) -> Result<usize> {
        self.call("purge_snapshots", self.inner.purge_snapshots(now, limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_trace_headers_reach_the_propagator() {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("sid=secret"));
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let x = TraceHeaders(&h);
        assert_eq!(x.get("cookie"), None);
        assert_eq!(x.get("authorization"), None);
        assert!(x.get("traceparent").is_some());
        assert_eq!(x.keys(), vec!["traceparent"]);
        h.append("traceparent", HeaderValue::from_static("00-other"));
        assert_eq!(TraceHeaders(&h).get("traceparent"), None);
    }

    /// A span's name and its parent's name.
    type Named = (String, Option<String>);

    /// The spans opened, in order.
    #[derive(Clone, Default)]
    struct Opened(Arc<std::sync::Mutex<Vec<Named>>>);

    impl<S> tracing_subscriber::Layer<S> for Opened
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            _attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let span = ctx.span(id).expect("new span");
            let parent = span.parent().map(|p| p.name().to_owned());
            self.0
                .lock()
                .unwrap()
                .push((span.name().to_owned(), parent));
        }
    }

    #[tokio::test]
    async fn store_calls_get_a_span_inside_a_request_only() {
        use tracing_subscriber::layer::SubscriberExt;
        let opened = Opened::default();
        let subscriber = tracing_subscriber::registry().with(opened.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        let store = traced(
            Arc::new(sessiond_store_memory::MemoryStore::new()),
            "memory",
        );
        assert_eq!(store.count_active_sessions().await.unwrap(), 0);
        assert!(
            opened.0.lock().unwrap().is_empty(),
            "no span outside a request"
        );
        let n = store
            .count_active_sessions()
            .instrument(tracing::info_span!("request"))
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(
            *opened.0.lock().unwrap(),
            vec![
                ("request".to_owned(), None),
                ("store".to_owned(), Some("request".to_owned()))
            ]
        );
    }
}
