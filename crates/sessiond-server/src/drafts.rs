//! Draft lifetime hooks: moving an anonymous principal's drafts on sign-in, and the
//! background job that purges drafts and snapshots whose retention has ended.

use crate::error::ApiResult;
use crate::state::AppState;
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::Principal;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows purged per store call; the job loops in batches of this size so one run never
/// holds the store for long, and stops after [`MAX_BATCHES_PER_RUN`] to stay bounded.
pub const PURGE_BATCH: usize = 1000;
/// Batches per run; what is left waits for the next run.
pub const MAX_BATCHES_PER_RUN: usize = 50;
/// How often the purge job runs.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Called by the sign-in handler after the token rotation, when the session's principal
/// changed from `from` (anonymous) to `to`: the anonymous drafts move to the user,
/// merged with [`sessiond_core::draft::merge_on_sign_in`] where both have one. Records
/// the audit event `drafts_restored` (detail: the conversations moved) and the metric
/// `sessiond_drafts_restored_total`. Returns the conversations moved. Does nothing when
/// `from` is not anonymous or equals `to`.
pub async fn on_sign_in(
    state: &AppState,
    from: &Principal,
    to: &Principal,
) -> ApiResult<Vec<String>> {
    if !from.is_anonymous() || from == to {
        return Ok(Vec::new());
    }
    let now = state.clock.now();
    let moved = state.store.move_drafts(from, to, now).await?;
    if !moved.is_empty() {
        metrics::counter!("sessiond_drafts_restored_total").increment(moved.len() as u64);
        let mut e =
            AuditEvent::new(now, AuditKind::DraftsRestored).with_detail(serde_json::json!({
                "from": from.as_str(),
                "conversations": moved,
            }));
        e.principal = Some(to.to_string());
        state.sessions.audit(e).await;
    }
    Ok(moved)
}

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
