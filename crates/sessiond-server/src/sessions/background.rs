//! The service's background loop and its shutdown: scheduler ticks, activity flushes,
//! the due-session poll and the sweep of pending sign-in draft moves run until
//! cancelled; then pending activity is flushed once more so a clean stop loses nothing.

use super::SessionService;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often due warnings and endings are fired.
const TICK_EVERY: Duration = Duration::from_millis(100);
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
        let mut tick = interval(TICK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut flush = interval(flush_every);
        flush.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut reconcile = interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut moves = interval(DRAFT_MOVE_SWEEP_EVERY);
        moves.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.tick().await; }
                _ = flush.tick() => {
                    if let Err(e) = self.flush().await { tracing::warn!(error = %e, "activity flush failed"); }
                }
                _ = reconcile.tick() => {
                    if let Err(e) = self.reconcile_due().await { tracing::debug!(error = %e, "reconcile failed"); }
                }
                _ = moves.tick() => {
                    if let Err(e) = self.sweep_draft_moves().await { tracing::warn!(error = %e, "draft move sweep failed"); }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "final activity flush failed");
        }
    }
}
