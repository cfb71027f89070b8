//! Draft lifetime: the background job that purges drafts and snapshots whose retention
//! has ended. (Moving an anonymous principal's drafts on sign-in is part of the sign-in,
//! in [`crate::sessions::SessionService::sign_in`].)

use crate::error::ApiResult;
use crate::state::AppState;
use sessiond_core::audit::{AuditEvent, AuditKind};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows purged per store call; the job loops in batches of this size so one run never
/// holds the store for long, and stops after [`MAX_BATCHES_PER_RUN`] to stay bounded.
pub const PURGE_BATCH: usize = 1000;
/// Batches per run; what is left waits for the next run.
pub const MAX_BATCHES_PER_RUN: usize = 50;
/// How often the purge job runs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// What one purge run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub drafts: usize,
    pub snapshots: usize,
}

/// One bounded purge run: drafts (and tombstones) unchanged for `drafts.retention`, and
/// snapshots whose `retain_until` has passed. Counts go to the metrics
/// `sessiond_drafts_purged_total` / `sessiond_snapshots_purged_total` and, when
/// anything was removed, to the audit event `drafts_purged`.
pub async fn purge_once(state: &AppState) -> ApiResult<Purged> {
    let now = state.clock.now();
    let retention = i64::try_from(state.config.drafts.retention.as_millis()).unwrap_or(i64::MAX);
    let before = now.saturating_sub(retention);
    let mut out = Purged::default();
    for _ in 0..MAX_BATCHES_PER_RUN {
        let n = state.store.purge_drafts(before, PURGE_BATCH).await?;
        out.drafts += n;
        if n < PURGE_BATCH {
            break;
        }
    }
    for _ in 0..MAX_BATCHES_PER_RUN {
        let n = state.store.purge_snapshots(now, PURGE_BATCH).await?;
        out.snapshots += n;
        if n < PURGE_BATCH {
            break;
        }
    }
    metrics::counter!("sessiond_drafts_purged_total").increment(out.drafts as u64);
    metrics::counter!("sessiond_snapshots_purged_total").increment(out.snapshots as u64);
    if out.drafts > 0 || out.snapshots > 0 {
        let e = AuditEvent::new(now, AuditKind::DraftsPurged).with_detail(serde_json::json!({
            "drafts": out.drafts,
            "snapshots": out.snapshots,
            "changed_before": before,
        }));
        state.sessions.audit(e).await;
    }
    Ok(out)
}

/// Starts the purge job: a run right away, then every [`PURGE_INTERVAL`], until `shutdown`.
pub fn spawn_purger(state: AppState, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if let Err(e) = purge_once(&state).await {
                        tracing::warn!(error = %e, "draft/snapshot purge failed; retrying next run");
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
    })
}
