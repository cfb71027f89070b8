//! The lifecycle rules as pure functions: creation, activity, renewal, sign-in, expiry.

use crate::clock::Timestamp;
use crate::policy::Policy;
use crate::session::{EndReason, Principal, Session, SessionState};
use crate::token::{Handle, Token};

/// What the client sees: `warned` once inside the warning window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewState {
    Active,
    Warned,
    Ended,
}

/// Where the request came from, for the session record and the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<std::sync::Arc<str>>,
}

/// A new anonymous session and its token (the only time the token exists in clear).
pub fn new_session(
    now: Timestamp,
    role: &str,
    policy: &Policy,
    client: &ClientInfo,
) -> (Session, Token) {
    new_session_as(Handle::generate(), now, role, policy, client)
}

/// [`new_session`] under a handle the caller made (a time-ordered one, for stores that
/// want them: [`crate::store::SessionStore::time_ordered_handles`]).
pub fn new_session_as(
    handle: Handle,
    now: Timestamp,
    role: &str,
    policy: &Policy,
    client: &ClientInfo,
) -> (Session, Token) {
    let token = Token::generate_at(now);
    let absolute = now + policy.absolute_ms();
    let s = Session {
        handle,
        token_hash: token.hash(),
        principal: Principal::anonymous_at(now),
        user_id: None,
        role: role.to_owned(),
        state: SessionState::Active,
        end_reason: None,
        ended_at: None,
        created_at: now,
        last_activity_at: now,
        last_seen_at: now,
        idle_expires_at: (now + policy.idle_ms()).min(absolute),
        absolute_expires_at: absolute,
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        allowed_rooms: None,
        version: 0,
    };
    (s, token)
}

/// The reason a session must end at `now`, if any. Absolute wins over idle when both
/// have passed, because it is the harder limit.
pub fn due_reason(s: &Session, now: Timestamp) -> Option<EndReason> {
    if !s.is_active() {
        return None;
    }
    if now >= s.absolute_expires_at {
        Some(EndReason::AbsoluteTimeout)
    } else if now >= s.idle_expires_at {
        Some(EndReason::IdleTimeout)
    } else {
        None
    }
}

/// The next instant the scheduler must look at this session (its earliest deadline).
pub fn next_deadline(s: &Session) -> Timestamp {
    s.idle_expires_at.min(s.absolute_expires_at)
}

/// Records user activity: moves the idle deadline to `now + idle`, never past the
/// absolute deadline and never backwards. Returns whether the deadline moved.
pub fn touch(s: &mut Session, now: Timestamp, policy: &Policy) -> bool {
    if !s.is_active() || due_reason(s, now).is_some() {
        return false;
    }
    s.last_activity_at = s.last_activity_at.max(now);
    s.last_seen_at = s.last_seen_at.max(now);
    let idle = (now + policy.idle_ms()).min(s.absolute_expires_at);
    if idle > s.idle_expires_at {
        s.idle_expires_at = idle;
        true
    } else {
        false
    }
}

/// Renewal ("stay online") is activity the user asked for explicitly.
pub fn renew(s: &mut Session, now: Timestamp, policy: &Policy) -> bool {
    touch(s, now, policy)
}

/// Marks the session ended. Returns false if it had already ended (endings happen once).
pub fn end(s: &mut Session, now: Timestamp, reason: EndReason) -> bool {
    if !s.is_active() {
        return false;
    }
    s.state = SessionState::Ended;
    s.end_reason = Some(reason);
    s.ended_at = Some(now);
    true
}

/// Binds a user to the session, rotating its token (session fixation) and applying the
/// new role's policy: the idle and absolute deadlines restart from the sign-in, since a
/// fresh authentication is a new lifetime. Returns the new token.
pub fn sign_in(
    s: &mut Session,
    now: Timestamp,
    user_id: &str,
    role: &str,
    policy: &Policy,
    allowed_rooms: Option<Vec<String>>,
    client: &ClientInfo,
) -> Token {
    let token = rotate(s, now);
    s.user_id = Some(user_id.to_owned());
    s.principal = Principal::user(user_id);
    s.role = role.to_owned();
    s.absolute_expires_at = now + policy.absolute_ms();
    s.idle_expires_at = (now + policy.idle_ms()).min(s.absolute_expires_at);
    s.last_activity_at = now;
    s.last_seen_at = now;
    s.allowed_rooms = allowed_rooms;
    if client.ip.is_some() {
        s.client_ip = client.ip.clone();
    }
    if client.user_agent.is_some() {
        s.user_agent = client.user_agent.clone();
    }
    token
}

/// Rotates the token without other changes (privilege change without sign-in), and
/// counts the rotation in `version`.
pub fn rotate(s: &mut Session, now: Timestamp) -> Token {
    let token = Token::generate_at(now);
    s.token_hash = token.hash();
    s.version += 1;
    token
}

/// The state as the client should see it at `now`.
pub fn view_state(s: &Session, now: Timestamp, policy: &Policy) -> ViewState {
    if !s.is_active() || due_reason(s, now).is_some() {
        ViewState::Ended
    } else if now >= next_deadline(s) - policy.warn_ms() {
        ViewState::Warned
    } else {
        ViewState::Active
    }
}

/// Whole seconds left until the session's earliest deadline (0 once passed).
pub fn seconds_left(s: &Session, now: Timestamp) -> i64 {
    ((next_deadline(s) - now).max(0) + 999) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> Policy {
        let mut p = Policy::new(10, 60);
        p.warn_before = std::time::Duration::from_secs(3);
        p
    }

    #[test]
    fn idle_then_touch_then_absolute() {
        let p = policy();
        let (mut s, _) = new_session(0, "editor", &p, &ClientInfo::default());
        assert_eq!(s.idle_expires_at, 10_000);
        assert_eq!(due_reason(&s, 9_999), None);
        assert!(touch(&mut s, 5_000, &p));
        assert_eq!(s.idle_expires_at, 15_000);
        assert_eq!(due_reason(&s, 15_000), Some(EndReason::IdleTimeout));
        // Renewals never pass the absolute deadline.
        for t in (0..60_000).step_by(5_000) {
            renew(&mut s, t, &p);
        }
        assert_eq!(s.idle_expires_at, 60_000);
        assert_eq!(due_reason(&s, 60_000), Some(EndReason::AbsoluteTimeout));
    }

    #[test]
    fn touch_after_expiry_does_not_resurrect() {
        let p = policy();
        let (mut s, _) = new_session(0, "editor", &p, &ClientInfo::default());
        assert!(!touch(&mut s, 10_000, &p));
        assert_eq!(s.idle_expires_at, 10_000);
    }

    #[test]
    fn end_happens_once() {
        let p = policy();
        let (mut s, _) = new_session(0, "editor", &p, &ClientInfo::default());
        assert!(end(&mut s, 1, EndReason::Revoked));
        assert!(!end(&mut s, 2, EndReason::SignedOut));
        assert_eq!(s.end_reason, Some(EndReason::Revoked));
    }

    #[test]
    fn sign_in_rotates_token() {
        let p = policy();
        let (mut s, t0) = new_session(0, "public", &p, &ClientInfo::default());
        let t1 = sign_in(
            &mut s,
            1_000,
            "alice",
            "editor",
            &p,
            None,
            &ClientInfo::default(),
        );
        assert_ne!(t0, t1);
        assert!(s.token_hash.ct_eq(&t1.hash()));
        assert_eq!(s.principal, Principal::user("alice"));
    }

    #[test]
    fn warned_inside_window() {
        let p = policy();
        let (s, _) = new_session(0, "editor", &p, &ClientInfo::default());
        assert_eq!(view_state(&s, 6_999, &p), ViewState::Active);
        assert_eq!(view_state(&s, 7_000, &p), ViewState::Warned);
        assert_eq!(view_state(&s, 10_000, &p), ViewState::Ended);
        assert_eq!(seconds_left(&s, 7_500), 3);
    }

    proptest! {
        #[test]
        fn deadlines_never_pass_absolute(steps in proptest::collection::vec(0i64..20_000, 1..50)) {
            let p = policy();
            let (mut s, _) = new_session(0, "editor", &p, &ClientInfo::default());
            let mut now = 0;
            for d in steps {
                now += d;
                touch(&mut s, now, &p);
                prop_assert!(s.idle_expires_at <= s.absolute_expires_at);
            }
        }
    }
}
