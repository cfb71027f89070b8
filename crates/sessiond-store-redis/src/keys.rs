//! The key layout. Everything one atomic script touches shares a hash tag (`{…}`),
//! so it lives in one Cluster slot:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P:s:<handle>}` | hash | the session: `rec` (JSON) plus its mutable fields `tok`, `st`, `la`, `ls`, `ie`, `ae`, `er`, `ea`, `idem` |
//! | `{P:s:<handle>}:d` | hash | session data, key → JSON |
//! | `{P:s:<handle>}:mv` | string | the session's pending sign-in draft move (JSON), written with the rotation |
//! | `P:moves` | zset | handles with a pending draft move, by when it was recorded |
//! | `P:t:<token hash>` | string | token index → handle; verified against the session on every read |
//! | `P:i:<key hash>` | hash | idempotency record (`h` handle, `rec` JSON) |
//! | `P:c:<claim key>` | string | one-time claim (a ticket's `jti`), with a TTL until it runs out |
//! | `P:deadlines` | zset | active handles by earliest deadline (candidates, verified on read) |
//! | `P:sessions` | zset (lex) | every handle, for listings ordered by handle |
//! | `P:ended` | zset | ended handles by `ended_at`, for purges |
//! | `{P:p:<principal>}:d` / `:q` / `:n` | hash / hash / string | drafts (conversation → JSON), their seqs, attachment bytes held |
//! | `{P:p:<principal>}:b:<blob id>` | string | attachment bytes |
//! | `{P:p:<principal>}:mv` | string | sign-in move lock |
//! | `P:draft-upd` | zset | `<principal> <conversation>` by last change, for purges |
//! | `{P:r:<room>}` | hash | snapshot: `v`, `meta` (JSON), `data`, `ret` |
//! | `P:snap-ret` | zset | rooms by `retain_until`, for purges |
//! | `P:sb:<writer>` | hash | room → size of the current snapshots a principal wrote last (its snapshot quota) |
//! | `{P:audit}:seq` / `:ev` / `:ids` / `:at` / `:h:<handle>` / `:p:<principal>` | | audit ids, events, and their indexes |
//! | `{P:outbox}:lease` | string | the webhook deliverer's lease, `<fence>:<holder>`, with a TTL |
//! | `{P:outbox}:fence` | string | the last fence handed out (INCR) |
//! | `{P:outbox}:cur` | hash | endpoint → last audit id delivered |
//! | `{P:outbox}:dl:<endpoint>` / `:dlz:<endpoint>` | hash / zset | dead letters: event id → JSON, and their ids in order |
//!
//! `P` is the configured prefix. Handles appear as hex (which sorts like the handle's
//! bytes); principals, rooms and audit handles as unpadded base64url, so no user-chosen
//! string can inject a brace (moving a key to another slot) or a separator.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sessiond_core::{Handle, Principal, TokenHash};

/// Encodes user-chosen names for use inside keys and index members.
pub(crate) fn enc(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

pub(crate) fn dec(s: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()
}

pub fn handle_hex(h: &Handle) -> String {
    hex::encode(h.0)
}

pub fn handle_from_hex(s: &str) -> Option<Handle> {
    Some(Handle(hex::decode(s).ok()?.try_into().ok()?))
}

/// Key builder for one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    p: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            p: prefix.to_owned(),
        }
    }

    pub(crate) fn session(&self, h: &Handle) -> String {
        format!("{{{}:s:{}}}", self.p, handle_hex(h))
    }
    /// The session key's text around the hex handle (for scripts that build it).
    pub(crate) fn session_key_parts(&self) -> (String, String) {
        (format!("{{{}:s:", self.p), "}".to_owned())
    }
    pub(crate) fn session_data(&self, h: &Handle) -> String {
        format!("{{{}:s:{}}}:d", self.p, handle_hex(h))
    }
    pub(crate) fn draft_move(&self, h: &Handle) -> String {
        format!("{{{}:s:{}}}:mv", self.p, handle_hex(h))
    }
    pub(crate) fn draft_moves(&self) -> String {
        format!("{}:moves", self.p)
    }
    pub(crate) fn token(&self, t: &TokenHash) -> String {
        format!("{}:t:{}", self.p, t.to_hex())
    }
    pub(crate) fn token_hex(&self, hex: &str) -> String {
        format!("{}:t:{hex}", self.p)
    }
    pub(crate) fn idem(&self, key_hash: &str) -> String {
        format!("{}:i:{key_hash}", self.p)
    }
    pub(crate) fn claim(&self, key: &str) -> String {
        format!("{}:c:{}", self.p, enc(key))
    }
    pub(crate) fn deadlines(&self) -> String {
        format!("{}:deadlines", self.p)
    }
    pub(crate) fn sessions(&self) -> String {
        format!("{}:sessions", self.p)
    }
    pub(crate) fn ended(&self) -> String {
        format!("{}:ended", self.p)
    }

    fn principal_tag(&self, p: &Principal) -> String {
        format!("{{{}:p:{}}}", self.p, enc(p.as_str()))
    }
    pub(crate) fn drafts(&self, p: &Principal) -> String {
        format!("{}:d", self.principal_tag(p))
    }
    pub(crate) fn draft_seqs(&self, p: &Principal) -> String {
        format!("{}:q", self.principal_tag(p))
    }
    pub(crate) fn held_bytes(&self, p: &Principal) -> String {
        format!("{}:n", self.principal_tag(p))
    }
    pub(crate) fn blob(&self, p: &Principal, blob_id: &str) -> String {
        format!("{}:b:{blob_id}", self.principal_tag(p))
    }
    pub(crate) fn move_lock(&self, p: &Principal) -> String {
        format!("{}:mv", self.principal_tag(p))
    }
    pub(crate) fn draft_updates(&self) -> String {
        format!("{}:draft-upd", self.p)
    }
    pub(crate) fn draft_member(p: &Principal, conversation: &str) -> String {
        format!("{} {conversation}", enc(p.as_str()))
    }

    pub(crate) fn snapshot(&self, room: &str) -> String {
        format!("{{{}:r:{}}}", self.p, enc(room))
    }
    pub(crate) fn snapshot_bytes(&self, by: &str) -> String {
        format!("{}:sb:{}", self.p, enc(by))
    }
    pub(crate) fn snapshot_retention(&self) -> String {
        format!("{}:snap-ret", self.p)
    }

    fn audit_tag(&self) -> String {
        format!("{{{}:audit}}", self.p)
    }
    pub(crate) fn audit_seq(&self) -> String {
        format!("{}:seq", self.audit_tag())
    }
    pub(crate) fn audit_events(&self) -> String {
        format!("{}:ev", self.audit_tag())
    }
    pub(crate) fn audit_ids(&self) -> String {
        format!("{}:ids", self.audit_tag())
    }
    pub(crate) fn audit_at(&self) -> String {
        format!("{}:at", self.audit_tag())
    }
    pub(crate) fn audit_by_handle(&self, handle: &str) -> String {
        format!("{}:h:{}", self.audit_tag(), enc(handle))
    }
    pub(crate) fn audit_by_principal(&self, principal: &str) -> String {
        format!("{}:p:{}", self.audit_tag(), enc(principal))
    }
    fn outbox_tag(&self) -> String {
        format!("{{{}:outbox}}", self.p)
    }
    pub(crate) fn outbox_lease(&self) -> String {
        format!("{}:lease", self.outbox_tag())
    }
    pub(crate) fn outbox_fence(&self) -> String {
        format!("{}:fence", self.outbox_tag())
    }
    pub(crate) fn outbox_cursors(&self) -> String {
        format!("{}:cur", self.outbox_tag())
    }
    pub(crate) fn dead_letters(&self, endpoint: &str) -> String {
        format!("{}:dl:{}", self.outbox_tag(), enc(endpoint))
    }
    pub(crate) fn dead_letter_ids(&self, endpoint: &str) -> String {
        format!("{}:dlz:{}", self.outbox_tag(), enc(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of a key Redis Cluster hashes.
    fn tag(key: &str) -> &str {
        match key.find('{') {
            Some(i) => match key[i + 1..].find('}') {
                Some(j) if j > 0 => &key[i + 1..i + 1 + j],
                _ => key,
            },
            None => key,
        }
    }

    #[test]
    fn atomic_groups_share_a_slot() {
        let k = Keys::new("sd");
        let h = Handle::generate();
        assert_eq!(tag(&k.session(&h)), tag(&k.session_data(&h)));
        assert_eq!(tag(&k.session(&h)), tag(&k.draft_move(&h)));
        let (before, after) = k.session_key_parts();
        assert_eq!(format!("{before}{}{after}", handle_hex(&h)), k.session(&h));
        let p = Principal("user:}{evil".into());
        let d = k.drafts(&p);
        for other in [
            k.draft_seqs(&p),
            k.held_bytes(&p),
            k.blob(&p, "x"),
            k.move_lock(&p),
        ] {
            assert_eq!(tag(&d), tag(&other));
        }
        assert!(!tag(&d).contains("evil"), "user text never shapes the tag");
        assert_eq!(tag(&k.audit_seq()), tag(&k.audit_by_principal("a}b")));
        assert_ne!(
            tag(&k.drafts(&Principal("user:a".into()))),
            tag(&k.drafts(&Principal("user:b".into())))
        );
    }

    #[test]
    fn hex_handles_sort_like_handles() {
        let mut hs: Vec<Handle> = (0..50).map(|_| Handle::generate()).collect();
        let mut hexes: Vec<String> = hs.iter().map(handle_hex).collect();
        hs.sort();
        hexes.sort();
        assert_eq!(hexes, hs.iter().map(handle_hex).collect::<Vec<_>>());
        assert_eq!(handle_from_hex(&hexes[0]), Some(hs[0]));
        assert_eq!(dec(&enc("anon:x y")), Some("anon:x y".into()));
    }
}
