//! Lifecycle changes with their audit events. Standalone and Sentinel: one script does
//! both (the `*_AUDITED` twins in [`crate::scripts`]), so a change and its record commit
//! together or not at all, and a failed append fails the change.
//!
//! Cluster: the audit events live in their buckets (with their id counter in a slot of
//! its own, see [`crate::audit`]), and a session's keys in theirs, so no script can hold
//! both. There the
//! change script runs first and the events are appended right after it; a failed append
//! fails the call (the caller answers 503 and the change stands), and a crash between
//! the two loses that record. Operators who need the audit guarantee run standalone or
//! Sentinel (docs/scaling.md).

use crate::error::RedisError;
use crate::RedisStore;
use redis::{FromRedisValue, Script};
use sessiond_core::audit::AuditEvent;
use sessiond_core::store::AuditStore;

type R<T> = Result<T, RedisError>;

/// One change script call: its keys and args, in the plain script's layout.
pub(crate) struct Change<'a> {
    pub plain: &'a Script,
    pub audited: &'a Script,
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl RedisStore {
    /// Runs `c` and appends `audit` with it when `applied` says the change applied.
    pub(crate) async fn change<T: FromRedisValue>(
        &self,
        c: Change<'_>,
        audit: &[AuditEvent],
        applied: impl Fn(&T) -> bool,
    ) -> R<T> {
        if audit.is_empty() || self.is_cluster() {
            let mut inv = c.plain.prepare_invoke();
            for k in &c.keys {
                inv.key(k);
            }
            for a in &c.args {
                inv.arg(a);
            }
            let out: T = self.eval(&inv).await?;
            if applied(&out) {
                for e in audit {
                    self.append_audit(e).await.map_err(RedisError::from)?;
                }
            }
            return Ok(out);
        }
        let mut inv = c.audited.prepare_invoke();
        for k in &c.keys {
            inv.key(k);
        }
        inv.key(self.keys.audit_seq());
        for e in audit {
            for k in self.audit_keys(e) {
                inv.key(k);
            }
        }
        inv.arg(c.keys.len()).arg(c.args.len());
        for a in &c.args {
            inv.arg(a);
        }
        inv.arg(audit.len());
        for e in audit {
            // The id is the hash field; the stored JSON carries 0.
            inv.arg(serde_json::to_string(&AuditEvent { id: 0, ..e.clone() })?)
                .arg(e.at)
                .arg(usize::from(e.handle.is_some()) + usize::from(e.principal.is_some()));
        }
        self.eval(&inv).await
    }
}
