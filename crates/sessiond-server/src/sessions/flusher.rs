//! Coalesced activity writes: touches only mark a cached record dirty; the flusher
//! writes every dirty record in one batch per interval, keeping the latest deadline.

use super::{SessionResult, SessionService};
use sessiond_core::audit::AuditEvent;
use sessiond_core::store::Touch;
use sessiond_core::Handle;

/// The most sessions one store call of a flush writes. After thousands of connections
/// arrive together (a deploy, a reconnect storm) every one of their sessions is dirty at
/// once: in batches the flush's copies of them, and the store's transaction, stay small
/// (a few hundred KiB) rather than growing with the number of sessions, while a batch
/// still shares one commit among many.
pub const FLUSH_BATCH: usize = 1024;

impl SessionService {
    /// Cluster mode: writes activity near the deadline at once (see
    /// [`super::ClusterMode::urgent_ms`]). A failure leaves the entry dirty for the flusher.
    pub(super) async fn flush_urgent(&self, handle: &Handle) {
        if let Err(e) = self.flush_one(handle).await {
            tracing::debug!(handle = %handle, error = %e, "urgent activity write deferred");
        }
    }

    /// Writes one session's pending activity now.
    pub async fn flush_one(&self, handle: &Handle) -> SessionResult<()> {
        self.flush_one_audited(handle, &[]).await
    }

    /// Writes one session's activity now with `audit` (a renewal), together; with
    /// events it writes even when nothing is pending.
    pub(super) async fn flush_one_audited(
        &self,
        handle: &Handle,
        audit: &[AuditEvent],
    ) -> SessionResult<()> {
        let pending = {
            let mut c = self.lock();
            match c.by_handle.get_mut(handle) {
                Some(e) if e.dirty || !audit.is_empty() => {
                    e.dirty = false;
                    Some(e.session.clone())
                }
                _ => None,
            }
        };
        if let Some(s) = pending {
            if let Err(err) = self.store.touch_session(&Touch::of(&s), audit).await {
                self.mark_dirty(&s.handle);
                return Err(err.into());
            }
        }
        Ok(())
    }

    fn mark_dirty(&self, handle: &Handle) {
        self.lock().mark_dirty(handle);
    }

    /// Writes all pending activity, in store calls of at most [`FLUSH_BATCH`] sessions
    /// each (activity seen while it writes waits for the next flush). On failure the
    /// entries not written stay dirty.
    pub async fn flush(&self) -> SessionResult<usize> {
        let listed = self.lock().dirty_listed();
        let mut written = 0;
        for _ in 0..listed.div_ceil(FLUSH_BATCH) {
            let batch: Vec<Touch> = self.lock().take_dirty(FLUSH_BATCH, Touch::of);
            if batch.is_empty() {
                continue;
            }
            if let Err(err) = self.store.touch_sessions(&batch).await {
                for t in &batch {
                    self.mark_dirty(&t.handle);
                }
                return Err(err.into());
            }
            metrics::counter!("sessiond_activity_flushed_total").increment(batch.len() as u64);
            written += batch.len();
        }
        Ok(written)
    }
}
