//! Cluster mode: other nodes change the same sessions, so cached entries are trusted
//! only briefly and re-read from the store, merging this node's unwritten activity.

use super::cache::Entry;
use super::types::ClusterMode;
use super::{SessionResult, SessionService};
use crate::bus::Event;
use sessiond_core::{EndReason, Handle, Session, Timestamp};
use std::time::Duration;

impl SessionService {
    /// Switches on cluster mode (see [`ClusterMode`]); `flush_every` is the activity
    /// flush interval, which sizes the urgent-write window.
    pub fn enable_cluster_mode(&self, flush_every: Duration) {
        let flush_ms = i64::try_from(flush_every.as_millis()).unwrap_or(i64::MAX / 4);
        let _ = self.cluster.set(ClusterMode {
            revalidate_ms: 1000,
            urgent_ms: 2 * flush_ms + 1000,
        });
    }

    pub fn cluster_mode(&self) -> Option<ClusterMode> {
        self.cluster.get().copied()
    }

    /// Whether a cached entry must be re-read before use (cluster mode only).
    pub(super) fn is_stale(&self, e: &Entry, now: Timestamp) -> bool {
        self.cluster
            .get()
            .is_some_and(|m| now.saturating_sub(e.validated_at) > m.revalidate_ms)
    }

    /// Marks a cached session for re-reading (another node changed it).
    pub fn invalidate(&self, handle: &Handle) {
        if let Some(e) = self.lock().by_handle.get_mut(handle) {
            e.validated_at = Timestamp::MIN;
        }
    }

    /// Marks every cached session for re-reading (events from other nodes may be lost).
    pub fn invalidate_all(&self) {
        for e in self.lock().by_handle.values_mut() {
            e.validated_at = Timestamp::MIN;
        }
    }

    /// Drops a session from the cache (another node changed it; the store is the truth).
    pub fn forget(&self, handle: &Handle) {
        self.lock().remove(handle);
    }

    /// Re-reads a session from the store into the cache, keeping this node's unwritten
    /// activity (touches only move deadlines forward). Returns the merged record.
    pub async fn refresh(&self, handle: &Handle) -> SessionResult<Option<Session>> {
        let fresh = self.store.get_session(handle).await?;
        let now = self.now();
        let mut c = self.lock();
        let Some(mut fresh) = fresh else {
            c.remove(handle);
            c.timers.cancel(handle);
            return Ok(None);
        };
        if let Some(e) = c.by_handle.get(handle) {
            if fresh.is_older_than(&e.session) {
                // Read before a rotation or ending on this node committed: the cache is newer.
                return Ok(Some(e.session.clone()));
            }
            if fresh.version > e.session.version {
                // Rotated on another node and the event may never come: this node's
                // connections authenticated with the old token must reauthenticate.
                self.bus.deliver_local(Event::SessionRotated {
                    handle: *handle,
                    version: fresh.version,
                });
            }
        }
        let (dirty, warned) = match c.by_handle.get(handle) {
            Some(e) if fresh.is_active() => {
                let old = &e.session;
                let dirty = e.dirty && old.last_activity_at > fresh.last_activity_at;
                if dirty {
                    fresh.last_activity_at = fresh.last_activity_at.max(old.last_activity_at);
                    fresh.last_seen_at = fresh.last_seen_at.max(old.last_seen_at);
                    fresh.idle_expires_at = fresh.idle_expires_at.max(old.idle_expires_at);
                }
                // A deadline moved by another node makes the warning sent for the old one moot.
                (
                    dirty,
                    e.warned && fresh.idle_expires_at <= old.idle_expires_at,
                )
            }
            Some(e) if e.session.is_active() => {
                // Ended elsewhere and the event may never come: tell this node's connections.
                self.bus.deliver_local(Event::SessionEnded {
                    handle: *handle,
                    principal: fresh.principal.to_string(),
                    reason: fresh.end_reason.unwrap_or(EndReason::Revoked),
                });
                (false, false)
            }
            _ => (false, false),
        };
        let timer = fresh.is_active().then(|| self.timer_for(&fresh, warned));
        let _ = c.insert(fresh.clone(), dirty, timer, now);
        if let Some(e) = c.by_handle.get_mut(handle) {
            e.warned = warned;
        }
        Ok(Some(fresh))
    }
}
