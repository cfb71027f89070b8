//! The service's plain values (inputs and answers of its calls, settings): a leaf the
//! service's files import, so the folder's files never import each other in a circle.

use sessiond_core::lifecycle::ClientInfo;
use sessiond_core::{Handle, Session, Timestamp, Token, TokenHash};
use std::net::IpAddr;
use std::time::Duration;

/// What a caller (a WebSocket connection, a request) authenticated as: the session's
/// handle and the token hash it presented. Operations on a session's behalf take it, not
/// a bare handle, so a caller whose token was rotated away since it authenticated is
/// refused ([`super::SessionError::Rotated`]) instead of acting for whoever holds the
/// new token.
#[derive(Debug, Clone, Copy)]
pub struct Credential {
    pub handle: Handle,
    pub token_hash: TokenHash,
}

impl Credential {
    /// The credential a lookup by token just returned `s` for.
    pub fn of(s: &Session) -> Credential {
        Credential {
            handle: s.handle,
            token_hash: s.token_hash,
        }
    }
}

/// An idempotent create: the client's key (validated at the edge) and the fingerprint
/// of its request (`crate::idempotency::fingerprint`).
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub fingerprint: String,
}

/// What `SessionService::get_or_create` found or made.
pub enum Obtained {
    /// The presented token names a live session (its activity was recorded).
    Current(Session),
    /// A new session; `token` is the only clear copy of its token.
    Created { session: Session, token: Token },
    /// A repeated idempotent create: the session the first call made, and its token.
    Replayed { session: Session, token: Token },
}

/// Who signs in: a verified ticket's claims.
pub struct SignIn {
    pub user_id: String,
    /// A configured role.
    pub role: String,
    /// Rooms the session is restricted to (`None`: any room).
    pub rooms: Option<Vec<String>>,
    /// The ticket's one-time use, claimed in the store before anything changes.
    pub once: TicketUse,
}

/// A ticket's identity for its single use (`crate::tickets::Claims::single_use`): the
/// store remembers `key` until `until` (ms), when the ticket has expired anyway.
#[derive(Debug, Clone)]
pub struct TicketUse {
    pub key: String,
    pub until: Timestamp,
}

/// The signed-in session and its new token.
pub struct SignedIn {
    pub session: Session,
    /// The rotated token (the old one stopped working).
    pub token: Token,
    /// A new session was made (no live one was presented, or it was another user's).
    pub created: bool,
    /// The request presented the token of a live session (even one that was ended
    /// because it belonged to another user).
    pub presented_live: bool,
}

/// Cluster mode (Redis store, several nodes): other nodes change the same sessions, so
/// the cache is only trusted briefly and timeouts are re-checked against the store.
#[derive(Debug, Clone, Copy)]
pub struct ClusterMode {
    /// A cached entry older than this is re-read from the store before use, which
    /// bounds how long a session revoked or renewed elsewhere is seen stale here.
    pub revalidate_ms: i64,
    /// Activity on a session whose idle deadline is closer than this is written at once
    /// instead of coalesced, so another node never sees a stored deadline pass while
    /// newer activity waits in this node's cache.
    pub urgent_ms: i64,
}

/// How often ended sessions and old audit events are purged.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// Where a request came from, borrowed from it: what a lookup compares with the session's
/// record, allocating (formatting the address, copying the agent) only when it changed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    pub ip: Option<IpAddr>,
    /// At most [`crate::client::client_seen`]'s limit of characters.
    pub user_agent: Option<&'a str>,
}

impl Seen<'_> {
    /// The owned form stored on a session.
    pub fn info(&self) -> ClientInfo {
        ClientInfo {
            ip: self.ip.map(|i| i.to_string()),
            user_agent: self.user_agent.map(Into::into),
        }
    }

    /// Whether `stored` (a session's client IP) names another address than this one.
    pub fn ip_differs(&self, stored: Option<&str>) -> bool {
        match self.ip {
            None => false,
            Some(ip) => stored.and_then(|s| s.parse::<IpAddr>().ok()) != Some(ip),
        }
    }

    /// Whether `stored` (a session's user agent) differs from this one.
    pub fn user_agent_differs(&self, stored: Option<&str>) -> bool {
        self.user_agent.is_some() && stored != self.user_agent
    }
}

impl<'a> From<&'a ClientInfo> for Seen<'a> {
    fn from(c: &'a ClientInfo) -> Self {
        Seen {
            ip: c.ip.as_deref().and_then(|s| s.parse().ok()),
            user_agent: c.user_agent.as_deref(),
        }
    }
}
