//! Drafts: unsent work per (principal, conversation), with a sequence number per write.

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::session::Principal;
use serde::{Deserialize, Serialize};

/// Longest conversation id accepted.
pub const MAX_CONVERSATION_LEN: usize = 128;
/// Longest attachment name accepted.
pub const MAX_ATTACHMENT_NAME_LEN: usize = 64;

/// One attachment of a draft. Bytes live in the store under `blob_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Where the store keeps the bytes; never shown to clients.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub blob_id: String,
}

/// A draft. A deleted draft stays as a tombstone (`deleted`, no content) that keeps its
/// `seq`, so a slow tab naming a pre-delete seq is refused instead of reviving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub principal: Principal,
    pub conversation: String,
    pub text: String,
    /// Bumped by every write (text, attachment, delete). 0 means "no draft yet".
    pub seq: u64,
    pub updated_at: Timestamp,
    pub deleted: bool,
    pub attachments: Vec<AttachmentMeta>,
}

impl Draft {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.attachments.is_empty()
    }
    pub fn attachment(&self, name: &str) -> Option<&AttachmentMeta> {
        self.attachments.iter().find(|a| a.name == name)
    }
    /// Total attachment bytes held by this draft.
    pub fn attachment_bytes(&self) -> u64 {
        self.attachments.iter().map(|a| a.size).sum()
    }
}

/// The result of a conditional draft write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftWrite {
    /// Applied; the draft as stored now (a tombstone after a delete).
    Written(Draft),
    /// `expected_seq` was stale; nothing changed. Carries the current draft (`None` if
    /// there has never been one).
    Conflict(Option<Draft>),
    /// The attachment named does not exist (attachment delete only).
    NotFound,
}

/// Limits applied while an attachment streams in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// Largest single attachment.
    pub max_size: u64,
    /// Total attachment bytes one principal may hold across its drafts.
    pub quota: u64,
}

fn id_chars_ok(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Conversation ids are opaque to sessiond but must be 1–128 of `[A-Za-z0-9._:-]`.
pub fn validate_conversation(id: &str) -> Result<(), CoreError> {
    if id.is_empty() || id.len() > MAX_CONVERSATION_LEN || !id_chars_ok(id) {
        return Err(CoreError::Invalid {
            what: "conversation id",
            why: format!("must be 1-{MAX_CONVERSATION_LEN} characters of A-Z a-z 0-9 . _ : -"),
        });
    }
    Ok(())
}

/// Attachment names: 1–64 of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn validate_attachment_name(name: &str) -> Result<(), CoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ATTACHMENT_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(CoreError::Invalid {
            what: "attachment name",
            why: format!("must be 1-{MAX_ATTACHMENT_NAME_LEN} characters of A-Z a-z 0-9 . _ -, not starting with a dot"),
        });
    }
    Ok(())
}

/// The rule when an anonymous principal's draft meets the user's draft for the same
/// conversation on sign-in: nothing is lost. The user's text comes first, then a blank
/// line, then the anonymous text; attachments are combined, and an anonymous attachment
/// whose name is taken gets the suffix `-2`, `-3`, …; the seq is one past the larger.
pub fn merge_on_sign_in(user: &Draft, anon: &Draft, now: Timestamp) -> Draft {
    let text = match (user.text.is_empty(), anon.text.is_empty()) {
        (_, true) => user.text.clone(),
        (true, false) => anon.text.clone(),
        (false, false) => format!("{}\n\n{}", user.text, anon.text),
    };
    let mut attachments = user.attachments.clone();
    for a in &anon.attachments {
        let mut a = a.clone();
        if attachments.iter().any(|x| x.name == a.name) {
            let (stem, ext) = match a.name.rfind('.') {
                Some(i) if i > 0 => (a.name[..i].to_owned(), a.name[i..].to_owned()),
                _ => (a.name.clone(), String::new()),
            };
            let mut n = 2;
            while attachments
                .iter()
                .any(|x| x.name == format!("{stem}-{n}{ext}"))
            {
                n += 1;
            }
            a.name = format!("{stem}-{n}{ext}");
        }
        attachments.push(a);
    }
    Draft {
        principal: user.principal.clone(),
        conversation: user.conversation.clone(),
        text,
        seq: user.seq.max(anon.seq) + 1,
        updated_at: now,
        deleted: false,
        attachments,
    }
}

/// What a sign-in makes of an anonymous draft: merged with the user's row by
/// [`merge_on_sign_in`] where there is one (live or tombstone, so the seq moves past
/// both), else the anonymous draft relabelled to `to`.
pub fn move_on_sign_in(
    user: Option<&Draft>,
    anon: &Draft,
    to: &Principal,
    now: Timestamp,
) -> Draft {
    match user {
        Some(user) => merge_on_sign_in(user, anon, now),
        None => Draft {
            principal: to.clone(),
            updated_at: now,
            ..anon.clone()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(p: &str, text: &str, seq: u64, atts: &[&str]) -> Draft {
        Draft {
            principal: Principal(p.into()),
            conversation: "c1".into(),
            text: text.into(),
            seq,
            updated_at: 0,
            deleted: false,
            attachments: atts
                .iter()
                .map(|n| AttachmentMeta {
                    name: (*n).into(),
                    content_type: "audio/webm".into(),
                    size: 1,
                    sha256: String::new(),
                    blob_id: format!("b-{p}-{n}"),
                })
                .collect(),
        }
    }

    #[test]
    fn conversation_ids() {
        assert!(validate_conversation("conv-1:abc_2.x").is_ok());
        assert!(validate_conversation("").is_err());
        assert!(validate_conversation("a/b").is_err());
        assert!(validate_conversation(&"a".repeat(129)).is_err());
    }

    #[test]
    fn attachment_names() {
        assert!(validate_attachment_name("clip.webm").is_ok());
        assert!(validate_attachment_name(".hidden").is_err());
        assert!(validate_attachment_name("../x").is_err());
    }

    #[test]
    fn merge_keeps_both() {
        let u = d("user:a", "hello", 3, &["clip.webm"]);
        let a = d("anon:x", "world", 5, &["clip.webm", "pic.png"]);
        let m = merge_on_sign_in(&u, &a, 9);
        assert_eq!(m.text, "hello\n\nworld");
        assert_eq!(m.seq, 6);
        let names: Vec<_> = m.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["clip.webm", "clip-2.webm", "pic.png"]);
        assert_eq!(m.principal.0, "user:a");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn id_model(s: &str, max: usize) -> bool {
            !s.is_empty()
                && s.len() <= max
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn conversation_ids_follow_the_rule(s in prop_oneof!["(?s).{0,140}", "[A-Za-z0-9._:/ -]{0,140}"]) {
                prop_assert_eq!(validate_conversation(&s).is_ok(), id_model(&s, MAX_CONVERSATION_LEN));
                let name = !s.starts_with('.')
                    && !s.contains(':')
                    && id_model(&s, MAX_ATTACHMENT_NAME_LEN);
                prop_assert_eq!(validate_attachment_name(&s).is_ok(), name);
            }
        }
    }
}
