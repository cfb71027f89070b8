//! The backend conformance suite: one behaviour contract for every `sessiond_core::Store`.
//!
//! The checks follow the store's capability seams, one module each: [`sessions`],
//! [`audit`], [`drafts`], [`snapshots`]. Each check is a
//! `pub async fn check_xxx(store: Arc<dyn Store>)` that expects a fresh, empty store
//! and panics on the first broken promise. A backend (or a decorator such as the
//! server's encrypting store) runs all of them with one macro invocation in its tests:
//!
//! ```
//! use sessiond_core::Store;
//! use sessiond_store_memory::MemoryStore;
//! use std::sync::Arc;
//!
//! // The expression is pasted into every generated test and must evaluate to a future
//! // yielding either `Arc<dyn Store>` or `(Arc<dyn Store>, guard)`; the guard (a temp
//! // dir, a redis-server process, ...) is kept alive until the check returns.
//! sessiond_testkit::conformance_suite!(async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
//! # fn main() {}
//! ```
//!
//! With a guard, as the SQLite backend's `tests/conformance.rs` does:
//!
//! ```text
//! sessiond_testkit::conformance_suite!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let path = dir.path().to_path_buf();
//!     let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await.unwrap().unwrap();
//!     (Arc::new(store) as Arc<dyn Store>, dir)
//! });
//! ```
//!
//! The macro expands to a module `conformance_suite` (which glob-imports its parent, so
//! the expression may name the parent's items) with one submodule per capability
//! holding one `#[tokio::test(flavor = "multi_thread")]` per check, named after the
//! check, so a failure names the capability and the broken promise
//! (`conformance_suite::drafts::check_move_drafts`). The invoking crate needs `tokio` as a
//! dev-dependency. The tests run on a multi-threaded runtime because the concurrency
//! checks are only meaningful when callers really race.
//!
//! # Contract details the checks pin down
//!
//! Where the `Store` docs leave room, the suite settles it (so every backend agrees):
//! - A draft delete, or a write leaving no text and no attachments, leaves a tombstone
//!   (`deleted`, empty, seq + 1); only a write naming the tombstone's seq revives it.
//!   `put_attachment` with seq 0 on no draft creates one.
//! - `delete_attachment`: a stale seq is `Conflict`; with the current seq, a missing
//!   name (or no live draft) is `NotFound`.
//! - Attachment limits: exactly `max_size` bytes is allowed; the quota counts the
//!   principal's live drafts, minus the attachment being replaced.
//! - `move_drafts` removes the source rows; where the target has a row (live or
//!   tombstone) the result is `merge_on_sign_in(target, source)`, otherwise the draft
//!   keeps its seq; the source's tombstones stay behind. The draft written is the one
//!   the given `MergeRule` returns; a rule that fails moves nothing of that conversation.
//! - `AttachmentPut::text` / `delete_attachment`'s `text` replace the text in the same
//!   commit as the attachment change (not on a conflict or `NotFound`);
//!   `AttachmentPut::content_sha256`, once filled, is the `sha256` recorded.
//! - Audit `since` is inclusive, `until` exclusive; `after_id` reads oldest first.
//! - The outbox lease's fence is at least 1, stays the same on a renewal by its holder
//!   and grows when the lease changes hands; a cursor moves only with the newest fence
//!   (a holder that lost the lease cannot move it) and from the value it still has.
//! - `limit: 0` is not used by the checks (the bundled stores read it as "no limit").

pub mod audit;
pub mod drafts;
pub mod sessions;
pub mod snapshots;

use bytes::Bytes;
use futures::StreamExt;
use sessiond_core::draft::AttachmentLimits;
use sessiond_core::store::{AttachmentPut, ByteStream};
use sessiond_core::{Handle, Principal, Session, SessionState, Store, Timestamp, Token};
use std::sync::Arc;

/// What a conformance factory may yield: the store, optionally with a guard that must
/// outlive the check (temp directory, child process).
pub trait Fixture: Send {
    fn store(&self) -> Arc<dyn Store>;
}

impl Fixture for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        self.clone()
    }
}

impl<G: Send> Fixture for (Arc<dyn Store>, G) {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
}

/// Expands to one named `#[tokio::test]` per conformance check, grouped by capability;
/// see the module docs. `conformance_suite!(factory)` runs every check;
/// `conformance_suite!(factory; sessions, drafts: [check_move_drafts])` runs whole
/// groups by name and, for a group given with a list, only the checks listed.
#[macro_export]
macro_rules! conformance_suite {
    // Internal rules come first: an `@` token must never reach the `$factory:expr`
    // rules below, whose expression parser cannot backtrack.
    (@items $factory:expr; $group:ident: [$($check:ident),* $(,)?] $(, $($rest:tt)*)?) => {
        $crate::conformance_suite!(@group $factory; $group: $($check),*);
        $($crate::conformance_suite!(@items $factory; $($rest)*);)?
    };
    (@items $factory:expr; $group:ident $(, $($rest:tt)*)?) => {
        $crate::conformance_suite!(@all $factory; $group);
        $($crate::conformance_suite!(@items $factory; $($rest)*);)?
    };
    (@items $factory:expr;) => {};
    (@all $factory:expr; sessions) => {
        $crate::conformance_suite!(@group $factory; sessions:
            check_create_and_get,
            check_idempotent_create,
            check_existence_independent_of_data,
            check_put_data_needs_active_session,
            check_concurrent_put_data,
            check_data_usage,
            check_put_data_if,
            check_update_session_cas,
            check_touch_session,
            check_touch_updates_client,
            check_touch_sessions_batch,
            check_end_session_once,
            check_expire_session,
            check_expire_sessions_batch,
            check_due_sessions,
            check_list_sessions,
            check_purge_ended_sessions,
            check_count_active_sessions,
            check_claim_once,
            check_audit_with_change,
            check_draft_moves,
        );
    };
    (@all $factory:expr; audit) => {
        $crate::conformance_suite!(@group $factory; audit:
            check_audit,
            check_outbox_lease,
            check_outbox_cursor,
            check_dead_letters,
        );
    };
    (@all $factory:expr; drafts) => {
        $crate::conformance_suite!(@group $factory; drafts:
            check_draft_text_seq,
            check_concurrent_draft_create,
            check_attachment_roundtrip,
            check_attachment_limits,
            check_attachment_body_error,
            check_delete_attachment,
            check_deleted_draft_hides_attachments,
            check_move_drafts,
            check_purge_drafts,
            check_principal_isolation,
            check_random_draft_isolation,
            check_write_hooks,
            check_attachment_content_hash,
        );
    };
    (@all $factory:expr; snapshots) => {
        $crate::conformance_suite!(@group $factory; snapshots:
            check_snapshots,
            check_concurrent_snapshot_put,
            check_snapshot_usage,
        );
    };
    (@group $factory:expr; $group:ident: $($check:ident),* $(,)?) => {
        mod $group {
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let fixture = $factory.await;
                    let store = $crate::conformance::Fixture::store(&fixture);
                    $crate::conformance::$group::$check(store).await;
                    drop(fixture);
                }
            )*
        }
    };
    ($factory:expr; $($items:tt)+) => {
        #[allow(unused_imports)]
        mod conformance_suite {
            use super::*;
            $crate::conformance_suite!(@items $factory; $($items)+);
        }
    };
    ($factory:expr) => {
        $crate::conformance_suite!($factory; sessions, audit, drafts, snapshots);
    };
}

// ---------------------------------------------------------------- shared helpers

pub(crate) const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// An active session created at `now`, idle 1 min, absolute 1 h, with its token hash.
pub fn session(principal: &str, role: &str, now: Timestamp) -> Session {
    Session {
        handle: Handle::generate(),
        token_hash: Token::generate().hash(),
        principal: Principal(principal.to_owned()),
        user_id: principal.strip_prefix("user:").map(str::to_owned),
        role: role.to_owned(),
        state: SessionState::Active,
        end_reason: None,
        ended_at: None,
        created_at: now,
        last_activity_at: now,
        last_seen_at: now,
        idle_expires_at: now + MINUTE,
        absolute_expires_at: now + HOUR,
        client_ip: Some("192.0.2.7".into()),
        user_agent: Some("conformance/1".into()),
        allowed_rooms: Some(vec!["room-1".into()]),
        // Not 0, so a backend that drops the field fails the round trips.
        version: 3,
    }
}

/// An attachment write of `name` into (`p`, `conversation`), for backends' own tests.
pub fn attachment<'a>(
    p: &'a Principal,
    conversation: &'a str,
    expected_seq: u64,
    name: &'a str,
    content_type: &'a str,
    limits: AttachmentLimits,
    now: Timestamp,
) -> AttachmentPut<'a> {
    AttachmentPut {
        principal: p,
        conversation,
        expected_seq,
        name,
        content_type,
        limits,
        now,
        text: None,
        content_sha256: None,
    }
}

/// A body stream that yields `data` in chunks of `chunk` bytes.
pub fn body(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Collects a byte stream, failing the check on a stream error.
pub async fn read_all(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("attachment stream failed"));
    }
    out
}

pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
