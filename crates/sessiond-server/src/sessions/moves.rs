//! Sign-in draft moves that cannot go missing: a sign-in records "move the anonymous
//! principal's drafts to the user" with its rotation (one store write); the move is
//! tried at once, and, if that fails, again on the session's next request on this node
//! and by the background sweep on any node, until it is done. Moving is idempotent (what
//! already moved is not there to move again), so a retry after a partial failure or a
//! crash is safe; the record and the `drafts_restored` event are written together.

use super::{SessionResult, SessionService};
use sessiond_core::audit::{AuditEvent, AuditKind};
use sessiond_core::store::{plain_merge, DraftMove};
use sessiond_core::Handle;
use std::sync::atomic::Ordering;

/// Pending moves finished per sweep.
const SWEEP_BATCH: usize = 100;

impl SessionService {
    /// Moves `m`'s drafts (merged with [`sessiond_core::draft::merge_on_sign_in`] where
    /// the user has one too) and removes the pending record with the `drafts_restored`
    /// event (detail: the conversations moved). Returns the conversations moved.
    pub async fn finish_draft_move(&self, m: &DraftMove) -> SessionResult<Vec<String>> {
        let now = self.now();
        let moved = self
            .store
            .move_drafts(&m.from, &m.to, now, &plain_merge())
            .await?;
        let mut events = Vec::new();
        if !moved.is_empty() {
            let mut e =
                AuditEvent::new(now, AuditKind::DraftsRestored).with_detail(serde_json::json!({
                    "from": m.from.as_str(),
                    "conversations": moved,
                }));
            e.principal = Some(m.to.to_string());
            e.handle = Some(m.handle.to_string());
            events.push(e);
        }
        self.store.finish_draft_move(m, &events).await?;
        self.forget_move(&m.handle);
        if !moved.is_empty() {
            metrics::counter!("sessiond_drafts_restored_total").increment(moved.len() as u64);
        }
        Ok(moved)
    }

    /// Remembers a move that failed on this node, for the session's next request.
    pub(super) fn remember_move(&self, m: DraftMove) {
        let mut moves = self.moves();
        moves.insert(m.handle, m);
        self.any_pending_move.store(true, Ordering::Release);
    }

    fn forget_move(&self, handle: &Handle) {
        if !self.any_pending_move.load(Ordering::Acquire) {
            return;
        }
        let mut moves = self.moves();
        moves.remove(handle);
        if moves.is_empty() {
            self.any_pending_move.store(false, Ordering::Release);
        }
    }

    fn moves(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Handle, DraftMove>> {
        self.pending_moves.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's next request: finishes its pending move first (a failure is logged
    /// and left to the next request or the sweep; the request itself goes on).
    pub(super) async fn finish_move_of(&self, handle: &Handle) {
        if !self.any_pending_move.load(Ordering::Acquire) {
            return;
        }
        let m = self.moves().get(handle).cloned();
        if let Some(m) = m {
            if let Err(e) = self.finish_draft_move(&m).await {
                tracing::warn!(handle = %handle, error = %e, "pending draft move failed again");
            }
        }
    }

    /// One background pass: finishes pending moves recorded by any node (after a failed
    /// attempt or a crash), oldest first. Returns how many were finished.
    pub async fn sweep_draft_moves(&self) -> SessionResult<usize> {
        let mut done = 0;
        for m in self.store.pending_draft_moves(SWEEP_BATCH).await? {
            match self.finish_draft_move(&m).await {
                Ok(_) => done += 1,
                Err(e) => {
                    tracing::warn!(handle = %m.handle, error = %e, "pending draft move failed again");
                }
            }
        }
        if done > 0 {
            metrics::counter!("sessiond_draft_moves_retried_total").increment(done as u64);
        }
        Ok(done)
    }
}
