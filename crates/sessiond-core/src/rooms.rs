//! Who may be in a room: deny by default. A session may join a room, and read or write
//! its snapshot, only through a grant ([`Grant`]); [`may_join`] is the one decision,
//! used by the WebSocket `join`, the snapshot routes and the re-check after a grant is
//! lost. Gathering the inputs (the role's patterns, the admin grant in the store, a
//! verified room token) is the server's; deciding is here, without IO.
//!
//! A pattern is a room id (`lobby`), a prefix ending in `*` (`public:*`), or `*` (every
//! room). Nothing else is special, so a pattern can never match more than it says.

use crate::session::Session;

/// Prefix of the session-data keys that hold admin grants (one key per room, so two
/// grants never overwrite each other); clients may not read or write keys under it.
pub const RESERVED_DATA_PREFIX: &str = "sessiond:";
/// The session-data key of the admin grant of `room`.
pub fn grant_key(room: &str) -> String {
    format!("{RESERVED_DATA_PREFIX}room:{room}")
}

/// Why a session may be in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The role's configured patterns (`[roles.X] rooms`).
    Role,
    /// The sign-in ticket's `rooms` claim.
    Ticket,
    /// Granted by the app's backend through the admin API (to the session or its principal).
    Admin,
    /// A signed room token naming this room (share link).
    Token,
}

/// What the caller found out about a session and a room before deciding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Grants<'a> {
    /// The patterns of the session's role.
    pub role: &'a [String],
    /// Whether an admin grant for this room is stored for the session.
    pub admin: bool,
    /// The room a presented, verified and unexpired room token names.
    pub token_room: Option<&'a str>,
}

/// Whether `pattern` admits `room` (exact, `prefix*`, or `*`).
pub fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

/// Checks a configured or claimed pattern: a room id, optionally ending in one `*`.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    let ok = pattern.len() <= crate::snapshot::MAX_ROOM_LEN
        && !pattern.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "room pattern {:?}: a room id of A-Z a-z 0-9 . _ : -, optionally ending in *",
            pattern.chars().take(40).collect::<String>()
        ))
    }
}

/// The one decision: the first grant that admits `session` to `room`, `None` (refused)
/// when there is none. An ended session is never admitted.
pub fn may_join(session: &Session, room: &str, grants: &Grants<'_>) -> Option<Grant> {
    if !session.is_active() {
        return None;
    }
    if grants.role.iter().any(|p| pattern_matches(p, room)) {
        return Some(Grant::Role);
    }
    if session.ticket_grants(room) {
        return Some(Grant::Ticket);
    }
    if grants.admin {
        return Some(Grant::Admin);
    }
    if grants.token_room == Some(room) {
        return Some(Grant::Token);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::new_session;
    use crate::policy::Policy;
    use proptest::prelude::*;

    fn session(rooms: Option<Vec<String>>) -> Session {
        let p = Policy::new(60, 600);
        let (mut s, _) = new_session(0, "editor", &p, &Default::default());
        s.allowed_rooms = rooms;
        s
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("lobby", "lobby"));
        assert!(!pattern_matches("lobby", "lobby2"));
        assert!(pattern_matches("public:*", "public:a"));
        assert!(!pattern_matches("public:*", "publix:a"));
        assert!(pattern_matches("*", "anything"));
        assert!(validate_pattern("public:*").is_ok());
        assert!(validate_pattern("a*b").is_err());
        assert!(validate_pattern("").is_err());
        assert!(validate_pattern("**").is_err());
    }

    #[test]
    fn each_grant_admits_and_nothing_else_does() {
        let s = session(None);
        assert_eq!(may_join(&s, "r", &Grants::default()), None);
        let role = vec!["r".to_owned()];
        let g = Grants {
            role: &role,
            ..Default::default()
        };
        assert_eq!(may_join(&s, "r", &g), Some(Grant::Role));
        let t = session(Some(vec!["team:*".into()]));
        assert_eq!(
            may_join(&t, "team:1", &Grants::default()),
            Some(Grant::Ticket)
        );
        assert_eq!(may_join(&t, "other", &Grants::default()), None);
        let a = Grants {
            admin: true,
            ..Default::default()
        };
        assert_eq!(may_join(&s, "r", &a), Some(Grant::Admin));
        let tok = Grants {
            token_room: Some("a"),
            ..Default::default()
        };
        assert_eq!(may_join(&s, "a", &tok), Some(Grant::Token));
        assert_eq!(may_join(&s, "b", &tok), None, "a token opens its room only");
        let mut ended = s.clone();
        ended.state = crate::SessionState::Ended;
        assert_eq!(may_join(&ended, "r", &g), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Without a grant no room id is ever admitted, whatever its shape.
        #[test]
        fn no_grant_no_room(room in "[A-Za-z0-9._:*-]{1,40}", other in "[a-z]{1,8}") {
            let s = session(None);
            prop_assert_eq!(may_join(&s, &room, &Grants::default()), None);
            let tok = Grants { token_room: Some(&other), ..Default::default() };
            if other != room {
                prop_assert_eq!(may_join(&s, &room, &tok), None);
            }
        }
    }
}
