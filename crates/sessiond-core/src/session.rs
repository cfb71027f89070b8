//! The session record, its principal, states and ending reasons.

use crate::clock::Timestamp;
use crate::token::{time_ordered_id, Handle, TokenHash};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who owns a session's work: `anon:<random>` before sign-in, `user:<id>` after.
/// Drafts are keyed by principal, so an anonymous principal's work can move to the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Principal(pub String);

impl Principal {
    /// A new anonymous principal (created now, by the wall clock).
    pub fn anonymous() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Timestamp);
        Self::anonymous_at(now)
    }

    /// A new anonymous principal created at `now`: `anon:` and 16 base64url characters,
    /// from [`crate::token::time_ordered_bytes`]: a (masked) creation millisecond, then
    /// 64 random bits.
    ///
    /// The time prefix is for the stores: principals index the audit trail and the
    /// session listing, and keys made in the same millisecond land in the same B-tree
    /// leaf, so a group commit of many creations writes a few pages of those indexes
    /// instead of one random page per creation (SQLite creations ran about 1.3x faster
    /// with it). Knowing a principal grants nothing; 64 random bits within a millisecond
    /// keep two of them from colliding (their drafts would be shared) and a stranger
    /// from listing them.
    pub fn anonymous_at(now: Timestamp) -> Self {
        Principal(format!("anon:{}", time_ordered_id(now)))
    }
    pub fn user(id: &str) -> Self {
        Principal(format!("user:{id}"))
    }
    pub fn is_anonymous(&self) -> bool {
        self.0.starts_with("anon:")
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stored state. "Warned" is not stored: it is derived from the clock (see
/// [`crate::lifecycle::view_state`]) so that it can never disagree with the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Active,
    Ended,
}

/// Why a session ended. `heartbeat_lost` is a connection's ending, not a session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    SignedOut,
    IdleTimeout,
    AbsoluteTimeout,
    Revoked,
    /// The user ended it from another of their sessions ("my devices").
    EndedByUser,
}

impl EndReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::SignedOut => "signed_out",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::AbsoluteTimeout => "absolute_timeout",
            EndReason::Revoked => "revoked",
            EndReason::EndedByUser => "ended_by_user",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "signed_out" => EndReason::SignedOut,
            "idle_timeout" => EndReason::IdleTimeout,
            "absolute_timeout" => EndReason::AbsoluteTimeout,
            "revoked" => EndReason::Revoked,
            "ended_by_user" => EndReason::EndedByUser,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One browser's session. Holds only the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub handle: Handle,
    pub token_hash: TokenHash,
    pub principal: Principal,
    /// The signed-in user's id, `None` while anonymous.
    pub user_id: Option<String>,
    pub role: String,
    pub state: SessionState,
    pub end_reason: Option<EndReason>,
    pub ended_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Last user activity (pointer, keys, explicit activity call); resets the idle deadline.
    pub last_activity_at: Timestamp,
    /// Last time anything was heard from the session (including heartbeats).
    pub last_seen_at: Timestamp,
    pub idle_expires_at: Timestamp,
    pub absolute_expires_at: Timestamp,
    /// Client IP as seen after trusted proxies, as of the last request that saw it change.
    pub client_ip: Option<String>,
    /// Shared (`Arc`): a server holds many sessions of few distinct browsers, and a cache
    /// interns them so a million sessions do not keep a million copies of ~110 bytes.
    pub user_agent: Option<Arc<str>>,
    /// Room patterns the sign-in ticket grants (its `rooms` claim); `None`: no room.
    pub allowed_rooms: Option<Vec<String>>,
    /// Grows by one with every token rotation (sign-in). Records written before versions
    /// existed read as 0. A cache compares it (see [`Session::is_older_than`]) so a read
    /// that raced a rotation never puts the pre-rotation record (and its token) back.
    #[serde(default)]
    pub version: u64,
}

impl Session {
    pub fn is_active(&self) -> bool {
        self.state == SessionState::Active
    }
    /// Whether `self` is an older state of the same session than `other`: an earlier
    /// rotation, or the same one still active while `other` has ended (a session only
    /// ever moves active → ended). Activity is not ordered here: touches only move
    /// deadlines forward and are merged, not compared.
    pub fn is_older_than(&self, other: &Session) -> bool {
        (self.version, !self.is_active()) < (other.version, !other.is_active())
    }

    /// Whether the sign-in ticket's `rooms` claim grants `room` (deny when absent);
    /// only one input of [`crate::rooms::may_join`].
    pub fn ticket_grants(&self, room: &str) -> bool {
        self.allowed_rooms
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|p| crate::rooms::pattern_matches(p, room)))
    }
}

// TokenHash travels through serde as hex (stores that keep JSON, e.g. Redis).
impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TokenHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid token hash"))
    }
}
