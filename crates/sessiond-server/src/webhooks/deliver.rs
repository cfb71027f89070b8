//! The outbox deliverer. The audit trail is the queue: each endpoint has a cursor in the
//! store (the last audit id it was sent), so after a restart, a crash or a hand-over the
//! next deliverer starts where the last one's cursor stands. An event is sent, then the
//! cursor moves past it: a crash in between sends it again (at least once, same
//! `webhook-id`), never skips it.
//!
//! Order: per endpoint, events go out one at a time in id order, and a failing event
//! holds back the endpoint's later ones until it is delivered or dead-lettered
//! (`max_attempts` or `max_age`). That keeps every session's events in order without
//! tracking sessions, at the price of one slow endpoint waiting on its own failures;
//! other endpoints are not held back (each has its own task).
//!
//! One deliverer per cluster: a node delivers only while it holds the store's outbox
//! lease (renewed every third of `lease_ttl`), and it moves a cursor only with the
//! lease's fence, so a node that lost the lease without knowing it (paused, cut off)
//! cannot overwrite its successor's progress.

use super::sign::Signer;
use crate::config::{redact_url, Config, WebhookDelivery};
use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
use sessiond_core::clock::to_rfc3339;
use sessiond_core::outbox::DeadLetter;
use sessiond_core::{Clock, Store};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bytes of an endpoint's answer kept for the error message; the rest is never read.
const MAX_RESPONSE_BYTES: usize = 512;
/// Pause after a store error before the deliverer tries again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// One configured endpoint, ready to send to.
#[derive(Debug)]
pub struct Endpoint {
    pub id: String,
    url: String,
    signer: Signer,
    /// Event types sent; `None` sends every `session.*` type.
    types: Option<BTreeSet<String>>,
    pub timeout: Duration,
}

impl Endpoint {
    /// The URL with any credentials redacted (for the admin API and logs).
    pub fn url_for_display(&self) -> String {
        redact_url(&self.url)
    }

    pub fn types(&self) -> Vec<String> {
        self.types.iter().flatten().cloned().collect()
    }

    /// Without an `events` list, every `session.*` type: the `webhook.*` ones (an
    /// operator's retry or delete) only when listed, so a failing endpoint's retries do
    /// not queue more events to the same failing endpoint.
    fn wants(&self, kind: AuditKind) -> bool {
        let t = kind.webhook_type();
        match &self.types {
            Some(types) => types.contains(&t),
            None => t.starts_with("session."),
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered { status: u16 },
    Failed { status: Option<u16>, error: String },
}

/// How an event's delivery ended (while this node kept the lease).
enum Finished {
    Delivered,
    DeadLettered,
}

/// The webhook deliverer of this node (idle when no endpoint is configured).
pub struct Webhooks {
    endpoints: Vec<Endpoint>,
    settings: WebhookDelivery,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    node_id: String,
    /// Whether this node holds the lease now (the admin API shows it).
    delivering: std::sync::atomic::AtomicBool,
}

/// The JSON body of a webhook: `{type, timestamp, data}`, `data` being the audit event
/// as `GET /v1/admin/audit` shows it.
pub fn payload(e: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "type": e.kind.webhook_type(),
        "timestamp": to_rfc3339(e.at),
        "data": {
            "id": e.id,
            "at": to_rfc3339(e.at),
            "kind": e.kind.as_str(),
            "handle": e.handle,
            "principal": e.principal,
            "role": e.role,
            "client_ip": e.client_ip,
            "user_agent": e.user_agent,
            "last_activity_at": e.last_activity_at.map(to_rfc3339),
            "reason": e.reason,
            "detail": e.detail,
        }
    })
}

/// The `webhook-id` of an event: the same for every attempt and every endpoint.
pub fn message_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

/// A wait drawn uniformly from zero to `base · 2^(attempt-1)`, capped at `max` (full
/// jitter), so endpoints that failed together do not retry together.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let ms = ceiling.as_millis().min(u64::MAX as u128) as u64;
    Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ms))
}

impl Webhooks {
    /// From the configuration (validated: secrets decode, URLs are http(s)).
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        node_id: &str,
    ) -> Result<Self, String> {
        let s = &config.webhook_delivery;
        let endpoints = config
            .webhooks
            .iter()
            .map(|w| {
                Ok(Endpoint {
                    id: w.id.clone(),
                    url: w.url.clone(),
                    signer: Signer::new(&w.secret)
                        .map_err(|e| format!("webhooks.{}: {e}", w.id))?,
                    types: (!w.events.is_empty()).then(|| w.events.iter().cloned().collect()),
                    timeout: w.timeout.unwrap_or(s.timeout),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let client = reqwest::Client::builder()
            .connect_timeout(s.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(2)
            .user_agent(concat!("sessiond-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Webhooks {
            endpoints,
            settings: s.clone(),
            store,
            clock,
            client,
            node_id: node_id.to_owned(),
            delivering: Default::default(),
        })
    }

    /// Whether this node is the cluster's deliverer right now.
    pub fn is_delivering(&self) -> bool {
        self.delivering.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    /// One signed POST of `e` to `ep`, bounded by the endpoint's timeout; the answer's
    /// body is read up to [`MAX_RESPONSE_BYTES`] for the error message only.
    pub async fn send(&self, ep: &Endpoint, e: &AuditEvent) -> Attempt {
        let body = serde_json::to_vec(&payload(e)).expect("a JSON value serializes");
        let id = message_id(e.id);
        let ts = self.clock.now().div_euclid(1000);
        let signature = ep.signer.sign(&id, ts, &body);
        let req = self
            .client
            .post(&ep.url)
            .timeout(ep.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body);
        let mut resp = match req.send().await {
            Ok(r) => r,
            // Without the URL: it may carry a token in its query.
            Err(err) => {
                return Attempt::Failed {
                    status: None,
                    error: err.without_url().to_string(),
                }
            }
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Attempt::Delivered { status };
        }
        let mut snippet = Vec::new();
        let read = tokio::time::timeout(ep.timeout, async {
            while snippet.len() < MAX_RESPONSE_BYTES {
                match resp.chunk().await {
                    Ok(Some(c)) => snippet.extend_from_slice(&c),
                    _ => break,
                }
            }
        });
        let _ = read.await;
        snippet.truncate(MAX_RESPONSE_BYTES);
        let text: String = String::from_utf8_lossy(&snippet)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        let text = text.trim();
        Attempt::Failed {
            status: Some(status),
            error: if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            },
        }
    }

    /// Starts the deliverer (nothing when no endpoint is configured). It stops, giving
    /// the lease up, when `shutdown` is cancelled.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> Option<JoinHandle<()>> {
        if self.endpoints.is_empty() {
            return None;
        }
        Some(tokio::spawn(async move { self.run(shutdown).await }))
    }

    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let ttl = self.settings.lease_ttl;
        let ttl_ms = ttl.as_millis().min(i64::MAX as u128) as i64;
        let renew_every = ttl / 3;
        metrics::gauge!("sessiond_webhook_deliverer", "node" => self.node_id.clone()).set(0.0);
        loop {
            let got = self
                .store
                .acquire_outbox_lease(&self.node_id, self.clock.now(), ttl_ms)
                .await;
            match got {
                Ok(Some(fence)) => {
                    tracing::info!(node = %self.node_id, fence, "webhook deliverer: took the lease");
                    metrics::gauge!("sessiond_webhook_deliverer", "node" => self.node_id.clone())
                        .set(1.0);
                    self.delivering
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    self.clone().lead(fence, &shutdown).await;
                    self.delivering
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    metrics::gauge!("sessiond_webhook_deliverer", "node" => self.node_id.clone())
                        .set(0.0);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "webhook deliverer: lease check failed"),
            }
            if shutdown.is_cancelled() {
                if let Err(e) = self.store.release_outbox_lease(&self.node_id).await {
                    tracing::warn!(error = %e, "webhook deliverer: could not release the lease");
                }
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(renew_every) => {}
            }
        }
    }

    /// Delivers while this node holds the lease: one task per endpoint, and the renewal
    /// here. Returns when the lease is lost (or could not be renewed for its whole time
    /// to live) or on shutdown; the endpoint tasks are stopped before it returns.
    async fn lead(self: Arc<Self>, fence: u64, shutdown: &CancellationToken) {
        let lost = shutdown.child_token();
        let tasks: Vec<_> = (0..self.endpoints.len())
            .map(|i| {
                let me = self.clone();
                let lost = lost.clone();
                tokio::spawn(async move { me.endpoint_loop(i, fence, lost).await })
            })
            .collect();
        let ttl = self.settings.lease_ttl;
        let ttl_ms = ttl.as_millis().min(i64::MAX as u128) as i64;
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = lost.cancelled() => break,
                () = tokio::time::sleep(ttl / 3) => {}
            }
            match self
                .store
                .acquire_outbox_lease(&self.node_id, self.clock.now(), ttl_ms)
                .await
            {
                Ok(Some(f)) if f == fence => renewed = tokio::time::Instant::now(),
                Ok(_) => {
                    tracing::warn!(node = %self.node_id, "webhook deliverer: lost the lease");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook deliverer: lease renewal failed");
                    // Another node may take the lease once it lapses: stop before that.
                    if renewed.elapsed() >= ttl.mul_f64(0.9) {
                        break;
                    }
                }
            }
        }
        lost.cancel();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Sleeps `d` unless `stop` comes first; `false` when stopped.
    async fn pause(d: Duration, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    /// The newest audit id (0 on an empty trail).
    async fn newest_id(&self) -> sessiond_core::store::Result<i64> {
        let newest = self
            .store
            .query_audit(&AuditFilter {
                limit: 1,
                ..Default::default()
            })
            .await?;
        Ok(newest.first().map_or(0, |e| e.id))
    }

    async fn endpoint_loop(&self, index: usize, fence: u64, stop: CancellationToken) {
        let ep = &self.endpoints[index];
        let mut cursor = loop {
            match self.start_cursor(ep, fence).await {
                Ok(Some(c)) => break c,
                // The fence is stale: the lease moved on.
                Ok(None) => {
                    stop.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %ep.id, error = %e, "webhook cursor unavailable");
                    if !Self::pause(STORE_RETRY, &stop).await {
                        return;
                    }
                }
            }
        };
        self.record_dead_letters(ep).await;
        while !stop.is_cancelled() {
            let events = match self
                .store
                .query_audit(&AuditFilter {
                    after_id: Some(cursor),
                    limit: self.settings.batch,
                    ..Default::default()
                })
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(endpoint = %ep.id, error = %e, "webhook: reading the audit trail failed");
                    if !Self::pause(STORE_RETRY, &stop).await {
                        return;
                    }
                    continue;
                }
            };
            if let Ok(newest) = self.newest_id().await {
                metrics::gauge!("sessiond_webhook_lag_events", "endpoint" => ep.id.clone())
                    .set(newest.saturating_sub(cursor) as f64);
            }
            if events.is_empty() {
                if !Self::pause(self.settings.poll_interval, &stop).await {
                    return;
                }
                continue;
            }
            for e in &events {
                // Types the endpoint does not want are passed over without a write of
                // their own: the next delivered event (or the batch's end) moves the
                // cursor past them.
                if !ep.wants(e.kind) {
                    continue;
                }
                match self.deliver(ep, e, &stop).await {
                    Some(Finished::Delivered) | Some(Finished::DeadLettered) => {}
                    None => return,
                }
                if !self.advance(ep, fence, cursor, e.id, &stop).await {
                    return;
                }
                cursor = e.id;
            }
            let last = events.last().map_or(cursor, |e| e.id);
            if last > cursor {
                if !self.advance(ep, fence, cursor, last, &stop).await {
                    return;
                }
                cursor = last;
            }
        }
    }

    /// The endpoint's cursor; a new endpoint starts at the newest event (it is sent what
    /// happens from now on, not the trail's history). `None`: the fence is stale.
    async fn start_cursor(
        &self,
        ep: &Endpoint,
        fence: u64,
    ) -> sessiond_core::store::Result<Option<i64>> {
        if let Some(c) = self.store.outbox_cursor(&ep.id).await? {
            return Ok(Some(c));
        }
        let newest = self.newest_id().await?;
        if self
            .store
            .advance_outbox_cursor(&ep.id, fence, None, newest)
            .await?
        {
            tracing::info!(endpoint = %ep.id, from = newest, "webhook endpoint starts after the newest event");
            return Ok(Some(newest));
        }
        // Only a newer fence could have set it meanwhile: this node is no longer the holder.
        Ok(None)
    }

    /// Moves the cursor from `from` to `to`, retrying store errors; `false` when the
    /// lease was lost (stale fence or the cursor moved under us) or on stop.
    async fn advance(
        &self,
        ep: &Endpoint,
        fence: u64,
        from: i64,
        to: i64,
        stop: &CancellationToken,
    ) -> bool {
        loop {
            match self
                .store
                .advance_outbox_cursor(&ep.id, fence, Some(from), to)
                .await
            {
                Ok(moved) => {
                    if !moved {
                        tracing::warn!(endpoint = %ep.id, "webhook cursor moved by another deliverer; stepping down");
                        stop.cancel();
                    }
                    return moved;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %ep.id, error = %e, "webhook cursor update failed; retrying");
                    if !Self::pause(STORE_RETRY, stop).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Attempts `e` until it is delivered or dead-lettered; `None` when stopped first
    /// (the event stays ahead of the cursor, so the next deliverer sends it).
    async fn deliver(
        &self,
        ep: &Endpoint,
        e: &AuditEvent,
        stop: &CancellationToken,
    ) -> Option<Finished> {
        let s = &self.settings;
        let first = self.clock.now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let attempt = tokio::select! {
                () = stop.cancelled() => return None,
                a = self.send(ep, e) => a,
            };
            let (status, error) = match attempt {
                Attempt::Delivered { .. } => {
                    metrics::counter!("sessiond_webhook_deliveries_total",
                        "endpoint" => ep.id.clone(), "result" => "delivered")
                    .increment(1);
                    return Some(Finished::Delivered);
                }
                Attempt::Failed { status, error } => (status, error),
            };
            metrics::counter!("sessiond_webhook_deliveries_total",
                "endpoint" => ep.id.clone(), "result" => "failed")
            .increment(1);
            let age = self.clock.now().saturating_sub(first);
            let out_of_time = age >= s.max_age.as_millis().min(i64::MAX as u128) as i64;
            if attempts >= s.max_attempts || out_of_time {
                let d = DeadLetter {
                    endpoint: ep.id.clone(),
                    event: e.clone(),
                    attempts,
                    last_status: status,
                    last_error: error,
                    first_attempt_at: first,
                    dead_at: self.clock.now(),
                };
                // The dead letter must be stored before the cursor passes the event.
                loop {
                    match self.store.put_dead_letter(&d).await {
                        Ok(()) => break,
                        Err(err) => {
                            tracing::warn!(endpoint = %ep.id, error = %err, "storing a webhook dead letter failed; retrying");
                            if !Self::pause(STORE_RETRY, stop).await {
                                return None;
                            }
                        }
                    }
                }
                tracing::warn!(endpoint = %ep.id, event = e.id, attempts, error = %d.last_error, "webhook dead-lettered");
                metrics::counter!("sessiond_webhook_deliveries_total",
                    "endpoint" => ep.id.clone(), "result" => "dead_lettered")
                .increment(1);
                self.record_dead_letters(ep).await;
                return Some(Finished::DeadLettered);
            }
            tracing::info!(endpoint = %ep.id, event = e.id, attempts, error = %error, "webhook attempt failed; will retry");
            let wait = backoff(s.backoff_base, s.backoff_max, attempts);
            if !Self::pause(wait, stop).await {
                return None;
            }
        }
    }

    /// Sets the dead-letter gauge of `ep` from the store.
    pub async fn record_dead_letters(&self, ep: &Endpoint) {
        if let Ok(n) = self.store.count_dead_letters(&ep.id).await {
            metrics::gauge!("sessiond_webhook_dead_letters", "endpoint" => ep.id.clone())
                .set(n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 1..=8u32 {
            let cap = (100u64 << (attempt - 1)).min(1000);
            let mut seen_high = false;
            for _ in 0..200 {
                let d = backoff(base, max, attempt).as_millis() as u64;
                assert!(d <= cap, "attempt {attempt}: {d} > {cap}");
                seen_high |= d > cap / 2;
            }
            assert!(seen_high, "attempt {attempt} draws across the range");
        }
        assert!(
            backoff(base, max, 200) <= max,
            "no overflow on many attempts"
        );
    }

    #[test]
    fn payload_is_type_timestamp_and_the_audit_view() {
        let mut e = AuditEvent::new(1_700_000_000_123, AuditKind::Ended).with_reason("revoked");
        e.id = 42;
        e.handle = Some("h".into());
        let p = payload(&e);
        assert_eq!(p["type"], "session.ended");
        assert_eq!(p["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(p["data"]["id"], 42);
        assert_eq!(p["data"]["reason"], "revoked");
        assert_eq!(p["data"]["kind"], "ended");
        assert_eq!(message_id(42), "evt_42");
    }
}
