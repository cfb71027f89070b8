//! The service's background loop and its shutdown: the expiry scheduler, activity flushes,
//! the due-session poll and the sweep of pending sign-in draft moves run until
//! cancelled; then pending activity is flushed once more so a clean stop loses nothing.

use super::SessionService;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the store is polled for deadlines this node's timer does not hold.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How often pending sign-in draft moves (failed or interrupted) are retried.
pub const DRAFT_MOVE_SWEEP_EVERY: Duration = Duration::from_secs(10);

impl SessionService {
    /// Runs the scheduler, flusher and reconciler until `shutdown`, then flushes.
    pub async fn run_background(
        self: Arc<Self>,
        flush_every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut scheduler = tokio::spawn(Arc::clone(&self).run_scheduler(shutdown.clone()));
        let mut flush = interval(flush_every);
        flush.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut reconcile = interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut moves = interval(DRAFT_MOVE_SWEEP_EVERY);
        moves.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    if let Err(e) = self.flush().await { tracing::warn!(error = %e, "activity flush failed"); }
                }
                _ = reconcile.tick() => {
                    if let Err(e) = self.reconcile_due().await { tracing::debug!(error = %e, "reconcile failed"); }
                }
                _ = moves.tick() => {
                    if let Err(e) = self.sweep_draft_moves().await { tracing::warn!(error = %e, "draft move sweep failed"); }
                }
                // It returns only on shutdown: before that, a panic (sessions would no
                // longer end) is this loop's own.
                r = &mut scheduler => {
                    super::scheduler::settled(r);
                    break;
                }
                _ = shutdown.cancelled() => {
                    // Endings in flight finish before the last flush.
                    super::scheduler::settled(scheduler.await);
                    break;
                }
            }
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final activity flush failed");
        }
    }
}
