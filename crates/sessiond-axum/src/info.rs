//! What a handler learns about its session: the same fields in both modes, built from
//! the stored record (embedded) or from the server's session view (remote).

use std::time::{Duration, SystemTime};

/// A live session as a handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's public id (`s_…`): log it, show it to admins, revoke by it. Never
    /// the token.
    pub handle: String,
    /// Who owns the session's work: `anon:<random>` before sign-in, `user:<id>` after.
    pub principal: String,
    /// The signed-in user's id; `None` for an anonymous session.
    pub user_id: Option<String>,
    /// The session's role (its policy: timeouts, warning, rooms).
    pub role: String,
    /// When the session ends without activity.
    pub idle_expires_at: SystemTime,
    /// When the session ends whatever happens.
    pub absolute_expires_at: SystemTime,
}

impl SessionInfo {
    /// Whether nobody has signed in on this session yet.
    pub fn is_anonymous(&self) -> bool {
        self.user_id.is_none()
    }

    /// The earlier of the two deadlines: when the session ends unless renewed.
    pub fn expires_at(&self) -> SystemTime {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// The record of the embedded service.
    pub(crate) fn of(s: &sessiond_core::Session) -> SessionInfo {
        SessionInfo {
            handle: s.handle.to_string(),
            principal: s.principal.to_string(),
            user_id: s.user_id.clone(),
            role: s.role.clone(),
            idle_expires_at: at_ms(s.idle_expires_at),
            absolute_expires_at: at_ms(s.absolute_expires_at),
        }
    }

    /// The session view of the server's HTTP API (`GET /v1/admin/sessions/{handle}`,
    /// renewal, sign-in); `None` if a field is missing or malformed.
    pub(crate) fn from_view(v: &serde_json::Value) -> Option<SessionInfo> {
        let text = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        let time = |k: &str| humantime::parse_rfc3339(v.get(k)?.as_str()?).ok();
        Some(SessionInfo {
            handle: text("handle")?,
            principal: text("principal")?,
            user_id: text("user_id"),
            role: text("role")?,
            idle_expires_at: time("idle_expires_at")?,
            absolute_expires_at: time("absolute_expires_at")?,
        })
    }
}

/// A sessiond timestamp (ms since the Unix epoch) as a `SystemTime`.
fn at_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_view_parses_and_a_broken_one_does_not() {
        let v = serde_json::json!({
            "handle": "s_Q2xJb0p0Y2lVd1Rr", "principal": "user:alice", "user_id": "alice",
            "role": "editor", "idle_expires_at": "2026-11-21T19:15:00.000Z",
            "absolute_expires_at": "2026-11-22T07:00:00.000Z"
        });
        let info = SessionInfo::from_view(&v).unwrap();
        assert_eq!(info.user_id.as_deref(), Some("alice"));
        assert_eq!(
            info.idle_expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_288_500)
        );
        assert_eq!(info.expires_at(), info.idle_expires_at);
        let mut broken = v.clone();
        broken["idle_expires_at"] = "yesterday".into();
        assert!(SessionInfo::from_view(&broken).is_none());
    }
}
