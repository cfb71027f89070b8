//! Retention: ended sessions (with their data and idempotency records), old audit
//! events and run-out one-time claims are purged in bounded batches, now and every
//! [`RETENTION_INTERVAL`].

use super::types::RETENTION_INTERVAL;
use super::{SessionResult, SessionService};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows per purge call, and calls per run: one run stays short; the rest waits.
const RETENTION_BATCH: usize = 1000;
const RETENTION_MAX_BATCHES: usize = 50;

impl SessionService {
    /// One bounded retention pass: sessions that ended before `retention` ago (with
    /// their data and idempotency records) and audit events older than that.
    pub async fn purge_retention(&self, retention: Duration) -> SessionResult<(usize, usize)> {
        let before = self
            .now()
            .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let (mut sessions, mut events) = (0, 0);
        for _ in 0..RETENTION_MAX_BATCHES {
            let n = self
                .store
                .purge_ended_sessions(before, RETENTION_BATCH)
                .await?;
            sessions += n;
            if n < RETENTION_BATCH {
                break;
            }
        }
        for _ in 0..RETENTION_MAX_BATCHES {
            let n = self.store.purge_audit(before, RETENTION_BATCH).await?;
            events += n;
            if n < RETENTION_BATCH {
                break;
            }
        }
        // One-time claims (used ticket ids) are only needed until their ticket expires.
        let mut claims = 0;
        for _ in 0..RETENTION_MAX_BATCHES {
            let n = self.store.purge_claims(self.now(), RETENTION_BATCH).await?;
            claims += n;
            if n < RETENTION_BATCH {
                break;
            }
        }
        if sessions + events + claims > 0 {
            tracing::info!(sessions, events, claims, "retention purge");
        }
        metrics::counter!("sessiond_sessions_purged_total").increment(sessions as u64);
        metrics::counter!("sessiond_audit_purged_total").increment(events as u64);
        Ok((sessions, events))
    }

    /// Runs [`SessionService::purge_retention`] now and every [`RETENTION_INTERVAL`]
    /// until `shutdown` is cancelled.
    pub async fn run_retention(self: Arc<Self>, retention: Duration, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(RETENTION_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = self.purge_retention(retention).await {
                        tracing::warn!(error = %e, "retention purge failed; retrying next run");
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }
}
