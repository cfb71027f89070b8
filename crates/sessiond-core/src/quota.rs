//! Storage quotas: how much one session or principal may keep, and the pure checks that
//! decide whether a write stays within them. Usage comes from the store; the server
//! serialises check and write per session or principal (see `sessiond-server`'s
//! `quotas` module).

use crate::draft::Draft;
use serde::Serialize;

/// The limits of one role, for its signed-in or its anonymous sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quotas {
    /// Session-data keys one session may hold.
    pub data_keys_per_session: u64,
    /// Session-data bytes one session may hold (each key's length plus its compact JSON).
    pub data_bytes_per_session: u64,
    /// Live drafts (tombstones not counted) one principal may hold.
    pub drafts_per_principal: u64,
    /// Draft text bytes one principal may hold across its live drafts.
    pub draft_text_bytes_per_principal: u64,
    /// Attachments one draft may hold.
    pub attachments_per_draft: u64,
    /// Snapshot bytes one principal may hold: the sizes of the rooms' current snapshots
    /// it wrote last.
    pub snapshot_bytes_per_principal: u64,
}

impl Quotas {
    /// Signed-in sessions, unless configured otherwise.
    pub const SIGNED_IN: Quotas = Quotas {
        data_keys_per_session: 256,
        data_bytes_per_session: 1024 * 1024,
        drafts_per_principal: 200,
        draft_text_bytes_per_principal: 8 * 1024 * 1024,
        attachments_per_draft: 20,
        snapshot_bytes_per_principal: 64 * 1024 * 1024,
    };
    /// Anonymous sessions (anyone can get one), unless configured otherwise.
    pub const ANONYMOUS: Quotas = Quotas {
        data_keys_per_session: 32,
        data_bytes_per_session: 256 * 1024,
        drafts_per_principal: 20,
        draft_text_bytes_per_principal: 1024 * 1024,
        attachments_per_draft: 5,
        snapshot_bytes_per_principal: 10 * 1024 * 1024,
    };
}

/// A write refused because it would take usage over `limit` (named as its configuration
/// key), whose configured value is `value`. Nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quota {limit} ({value}) exceeded")]
pub struct QuotaExceeded {
    pub limit: &'static str,
    pub value: u64,
}

/// One session's data as stored, apart from the key being written (see
/// [`crate::store::SessionStore::data_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataUsage {
    /// Keys other than the one asked about.
    pub keys: u64,
    /// Bytes of the other keys: each key's length plus its value's compact JSON.
    pub bytes: u64,
    /// Bytes of the key asked about (key plus value), `None` when it is not stored.
    pub current: Option<u64>,
}

/// The current snapshots one writer wrote last, apart from one room (see
/// [`crate::store::SnapshotStore::snapshot_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotUsage {
    pub rooms: u64,
    /// Their sizes (as [`crate::snapshot::Snapshot::size`] reports them).
    pub bytes: u64,
}

/// The rule every check shares: a write is refused when usage after it exceeds the limit
/// and is larger than before, so a write that shrinks (or keeps) usage always passes, even
/// after a limit was lowered or a sign-in merged drafts past it. Deletes are never checked.
fn over(limit: &'static str, value: u64, before: u64, after: u64) -> Result<(), QuotaExceeded> {
    if after > value && after > before {
        Err(QuotaExceeded { limit, value })
    } else {
        Ok(())
    }
}

impl Quotas {
    /// Writing `key_len + value_len` bytes under one key of a session using `u`.
    pub fn check_data(&self, u: DataUsage, entry_bytes: u64) -> Result<(), QuotaExceeded> {
        let keys_before = u.keys + u64::from(u.current.is_some());
        over(
            "data_keys_per_session",
            self.data_keys_per_session,
            keys_before,
            u.keys + 1,
        )?;
        over(
            "data_bytes_per_session",
            self.data_bytes_per_session,
            u.bytes.saturating_add(u.current.unwrap_or(0)),
            u.bytes.saturating_add(entry_bytes),
        )
    }

    /// A draft write in `conversation` by a principal whose live drafts are `live`, with
    /// `reserved` more being created by uploads still streaming: `text` is the text the
    /// draft will have (`None`: unchanged), `attachment` the name of an attachment added
    /// or replaced.
    pub fn check_draft(
        &self,
        live: &[Draft],
        reserved: u64,
        conversation: &str,
        text: Option<&str>,
        attachment: Option<&str>,
    ) -> Result<(), QuotaExceeded> {
        let current = live.iter().find(|d| d.conversation == conversation);
        let before = live.len() as u64 + reserved;
        let after = match current {
            Some(_) => before,
            // A write that leaves nothing (empty text, no attachment) makes a tombstone.
            None if text.is_none_or(str::is_empty) && attachment.is_none() => before,
            None => before + 1,
        };
        over(
            "drafts_per_principal",
            self.drafts_per_principal,
            before,
            after,
        )?;
        if let Some(text) = text {
            let text_before: u64 = live.iter().map(|d| d.text.len() as u64).sum();
            let text_after =
                text_before - current.map_or(0, |d| d.text.len() as u64) + text.len() as u64;
            over(
                "draft_text_bytes_per_principal",
                self.draft_text_bytes_per_principal,
                text_before,
                text_after,
            )?;
        }
        if let Some(name) = attachment {
            let before = current.map_or(0, |d| d.attachments.len() as u64);
            let after = before + u64::from(current.and_then(|d| d.attachment(name)).is_none());
            over(
                "attachments_per_draft",
                self.attachments_per_draft,
                before,
                after,
            )?;
        }
        Ok(())
    }

    /// Writing a `size`-byte snapshot by a principal whose other rooms' snapshots hold
    /// `others` bytes.
    pub fn check_snapshot(&self, others: u64, size: u64) -> Result<(), QuotaExceeded> {
        over(
            "snapshot_bytes_per_principal",
            self.snapshot_bytes_per_principal,
            others,
            others.saturating_add(size),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draft::AttachmentMeta;
    use crate::session::Principal;

    fn draft(conv: &str, text: &str, atts: usize) -> Draft {
        Draft {
            principal: Principal("anon:x".into()),
            conversation: conv.into(),
            text: text.into(),
            seq: 1,
            updated_at: 0,
            deleted: false,
            attachments: (0..atts)
                .map(|i| AttachmentMeta {
                    name: format!("a{i}"),
                    content_type: "image/png".into(),
                    size: 1,
                    sha256: String::new(),
                    blob_id: String::new(),
                })
                .collect(),
        }
    }

    fn q() -> Quotas {
        Quotas {
            data_keys_per_session: 2,
            data_bytes_per_session: 100,
            drafts_per_principal: 2,
            draft_text_bytes_per_principal: 10,
            attachments_per_draft: 1,
            snapshot_bytes_per_principal: 50,
        }
    }

    #[test]
    fn data_keys_and_bytes() {
        let u = |keys, bytes, current| DataUsage {
            keys,
            bytes,
            current,
        };
        assert!(q().check_data(u(1, 10, None), 10).is_ok());
        let e = q().check_data(u(2, 10, None), 10).unwrap_err();
        assert_eq!((e.limit, e.value), ("data_keys_per_session", 2));
        // Overwriting a key adds none.
        assert!(q().check_data(u(1, 10, Some(5)), 10).is_ok());
        let e = q().check_data(u(1, 60, None), 41).unwrap_err();
        assert_eq!(e.limit, "data_bytes_per_session");
        // Over the limit already (lowered since): shrinking passes, growing does not.
        assert!(q().check_data(u(1, 200, Some(50)), 10).is_ok());
        assert!(q().check_data(u(1, 200, Some(50)), 51).is_err());
    }

    #[test]
    fn drafts_text_and_attachments() {
        let live = [draft("a", "12345", 1), draft("b", "", 0)];
        let e = q().check_draft(&live, 0, "c", Some("x"), None).unwrap_err();
        assert_eq!(e.limit, "drafts_per_principal");
        // An empty first write is a tombstone: it adds no draft.
        assert!(q().check_draft(&live, 0, "c", Some(""), None).is_ok());
        assert!(q().check_draft(&live, 0, "b", Some("12345"), None).is_ok());
        let e = q()
            .check_draft(&live, 0, "b", Some("123456"), None)
            .unwrap_err();
        assert_eq!(e.limit, "draft_text_bytes_per_principal");
        // Replacing an attachment adds none; a new name does.
        assert!(q().check_draft(&live, 0, "a", None, Some("a0")).is_ok());
        let e = q().check_draft(&live, 0, "a", None, Some("z")).unwrap_err();
        assert_eq!((e.limit, e.value), ("attachments_per_draft", 1));
        let e = q().check_draft(&live, 0, "c", None, Some("z")).unwrap_err();
        assert_eq!(e.limit, "drafts_per_principal");
        // An upload still streaming holds its place.
        let one = [draft("a", "", 1)];
        assert!(q().check_draft(&one, 0, "c", Some("x"), None).is_ok());
        assert!(q().check_draft(&one, 1, "c", Some("x"), None).is_err());
    }

    #[test]
    fn snapshots() {
        assert!(q().check_snapshot(0, 50).is_ok());
        let e = q().check_snapshot(10, 41).unwrap_err();
        assert_eq!((e.limit, e.value), ("snapshot_bytes_per_principal", 50));
    }

    #[test]
    fn anonymous_defaults_are_smaller() {
        let (a, s) = (Quotas::ANONYMOUS, Quotas::SIGNED_IN);
        assert!(a.data_keys_per_session < s.data_keys_per_session);
        assert!(a.data_bytes_per_session < s.data_bytes_per_session);
        assert!(a.drafts_per_principal < s.drafts_per_principal);
        assert!(a.draft_text_bytes_per_principal < s.draft_text_bytes_per_principal);
        assert!(a.attachments_per_draft < s.attachments_per_draft);
        assert!(a.snapshot_bytes_per_principal < s.snapshot_bytes_per_principal);
    }
}
