//! Snapshots: the latest saved state of a room, versioned and content-hashed.

use crate::clock::Timestamp;
use crate::error::CoreError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest room name accepted.
pub const MAX_ROOM_LEN: usize = 128;

/// A room's stored state. `data` is opaque bytes; `hash` is SHA-256 of them (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub room: String,
    /// Bumped by every write; 0 means "no snapshot yet".
    pub version: u64,
    pub hash: String,
    pub content_type: String,
    #[serde(skip)]
    pub data: Vec<u8>,
    pub size: u64,
    pub updated_at: Timestamp,
    /// The principal that wrote it (see [`crate::store::SnapshotPut::by`]).
    pub updated_by: Option<String>,
    /// When it may be purged; `None` while the room is in use.
    pub retain_until: Option<Timestamp>,
}

/// The result of a conditional snapshot write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotWrite {
    Written(Snapshot),
    /// `expected_version` was stale; carries the current snapshot (without data), if any.
    Conflict(Option<Snapshot>),
}

pub fn content_hash(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Room names are opaque but must be 1–128 of `[A-Za-z0-9._:-]`.
pub fn validate_room(room: &str) -> Result<(), CoreError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !ok {
        return Err(CoreError::Invalid {
            what: "room",
            why: format!("must be 1-{MAX_ROOM_LEN} characters of A-Z a-z 0-9 . _ : -"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            content_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
