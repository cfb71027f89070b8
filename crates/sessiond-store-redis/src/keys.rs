//! The key layout. Everything one atomic script touches shares a hash tag (`{…}`),
//! so it lives in one Cluster slot:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P:s:<handle>}` | hash | the session: `rec` (JSON) plus its mutable fields `tok`, `st`, `la`, `ls`, `ie`, `ae`, `er`, `ea`, `idem` |
//! | `{P:s:<handle>}:d` | hash | session data, key → JSON |
//! | `{P:s:<handle>}:mv` | string | the session's pending sign-in draft move (JSON), written with the rotation |
//! | `{B}:moves` | zset | handles of the bucket with a pending draft move, by when it was recorded |
//! | `P:t:<token hash>` | string | token index → handle; verified against the session on every read |
//! | `P:i:<key hash>` | hash | idempotency record (`h` handle, `rec` JSON) |
//! | `P:c:<claim key>` | string | one-time claim (a ticket's `jti`), with a TTL until it runs out |
//! | `{B}:deadlines` | zset | active handles of the bucket by earliest deadline (candidates, verified on read) |
//! | `{B}:sessions` | zset (lex) | every handle of the bucket, for listings ordered by handle |
//! | `{B}:ended` | zset | ended handles of the bucket by `ended_at`, for purges |
//! | `{P:p:<principal>}:d` / `:q` / `:n` | hash / hash / string | drafts (conversation → JSON), their seqs, attachment bytes held |
//! | `{P:p:<principal>}:b:<blob id>` | string | attachment bytes |
//! | `{P:p:<principal>}:mv` | string | sign-in move lock |
//! | `{B}:draft-upd` | zset | `<principal> <conversation>` by last change, for purges (bucket of the principal) |
//! | `{P:r:<room>}` | hash | snapshot: `v`, `meta` (JSON), `data`, `ret` |
//! | `{B}:snap-ret` | zset | rooms by `retain_until`, for purges (bucket of the room) |
//! | `P:sb:<writer>` | hash | room → size of the current snapshots a principal wrote last (its snapshot quota) |
//! | `{P:audit}:seq` | string | the audit id counter (the one global key: one INCR per event) |
//! | `{B}:aev` / `:aids` / `:aat` / `:ah:<handle>` / `:ap:<principal>` | hash / zsets | audit events of the bucket (`<alloc ms> <JSON>` by id) and their id, time, handle and principal indexes |
//! | `{P:outbox}:lease` | string | the webhook deliverer's lease, `<fence>:<holder>`, with a TTL |
//! | `{P:outbox}:fence` | string | the last fence handed out (INCR) |
//! | `{P:outbox}:cur` | hash | endpoint → last audit id delivered |
//! | `{P:outbox}:dl:<endpoint>` / `:dlz:<endpoint>` | hash / zset | dead letters: event id → JSON, and their ids in order |
//! | `P:layout` | string | the key layout and bucket count this store was written with (checked at start) |
//!
//! `{B}` is one of the bucket hash tags (module `buckets`): every global index is split into
//! `buckets` parts, each under its own tag, so the indexes spread over the cluster's
//! slots (see that module for which bucket an entry goes to).
//!
//! `P` is the configured prefix. Handles appear as hex (which sorts like the handle's
//! bytes); principals, rooms and audit handles as unpadded base64url, so no user-chosen
//! string can inject a brace (moving a key to another slot) or a separator.

use crate::buckets::Buckets;
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
    pub(crate) buckets: Buckets,
}

impl Keys {
    pub(crate) fn new(prefix: &str, buckets: usize) -> Self {
        Keys {
            p: prefix.to_owned(),
            buckets: Buckets::new(prefix, buckets),
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
    pub(crate) fn draft_member(p: &Principal, conversation: &str) -> String {
        format!("{} {conversation}", enc(p.as_str()))
    }

    pub(crate) fn snapshot(&self, room: &str) -> String {
        format!("{{{}:r:{}}}", self.p, enc(room))
    }
    pub(crate) fn snapshot_bytes(&self, by: &str) -> String {
        format!("{}:sb:{}", self.p, enc(by))
    }

    pub(crate) fn audit_seq(&self) -> String {
        format!("{{{}:audit}}:seq", self.p)
    }

    /// The webhook outbox: a few small keys under one tag of their own (not partitioned:
    /// one lease, one cursor per endpoint, dead letters an operator clears).
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

/// The partitioned global indexes: each takes a bucket number (see the `buckets` module
/// for which bucket an entry belongs to).
impl Keys {
    /// The store's key layout and bucket count (`P:layout`).
    pub(crate) fn layout(&self) -> String {
        format!("{}:layout", self.p)
    }
    /// The single-slot indexes of the layout before buckets: their presence means the
    /// store was written by an older sessiond.
    pub(crate) fn legacy_indexes(&self) -> Vec<String> {
        let p = &self.p;
        vec![
            format!("{p}:deadlines"),
            format!("{p}:sessions"),
            format!("{p}:ended"),
            format!("{p}:moves"),
            format!("{p}:draft-upd"),
            format!("{p}:snap-ret"),
            format!("{{{p}:audit}}:ids"),
        ]
    }
    pub(crate) fn deadlines(&self, b: usize) -> String {
        format!("{}:deadlines", self.buckets.tag(b))
    }
    pub(crate) fn sessions(&self, b: usize) -> String {
        format!("{}:sessions", self.buckets.tag(b))
    }
    pub(crate) fn ended(&self, b: usize) -> String {
        format!("{}:ended", self.buckets.tag(b))
    }
    pub(crate) fn draft_moves(&self, b: usize) -> String {
        format!("{}:moves", self.buckets.tag(b))
    }
    pub(crate) fn draft_updates(&self, b: usize) -> String {
        format!("{}:draft-upd", self.buckets.tag(b))
    }
    pub(crate) fn snapshot_retention(&self, b: usize) -> String {
        format!("{}:snap-ret", self.buckets.tag(b))
    }
    pub(crate) fn audit_events(&self, b: usize) -> String {
        format!("{}:aev", self.buckets.tag(b))
    }
    pub(crate) fn audit_ids(&self, b: usize) -> String {
        format!("{}:aids", self.buckets.tag(b))
    }
    pub(crate) fn audit_at(&self, b: usize) -> String {
        format!("{}:aat", self.buckets.tag(b))
    }
    pub(crate) fn audit_by_handle(&self, b: usize, handle: &str) -> String {
        format!("{}:ah:{}", self.buckets.tag(b), enc(handle))
    }
    pub(crate) fn audit_by_principal(&self, b: usize, principal: &str) -> String {
        format!("{}:ap:{}", self.buckets.tag(b), enc(principal))
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
        let k = Keys::new("sd", 16);
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
        let b = k.buckets.of_name("h");
        assert_eq!(
            tag(&k.audit_events(b)),
            tag(&k.audit_by_principal(b, "a}b"))
        );
        assert_eq!(tag(&k.audit_events(b)), tag(&k.audit_by_handle(b, "h")));
        assert_ne!(tag(&k.deadlines(0)), tag(&k.deadlines(1)));
        // Each outbox script touches only outbox keys: they share one tag, whatever
        // the endpoint's name, and none of them sits in a bucket.
        let lease = k.outbox_lease();
        for other in [
            k.outbox_fence(),
            k.outbox_cursors(),
            k.dead_letters("ep}{x"),
            k.dead_letter_ids("ep}{x"),
        ] {
            assert_eq!(tag(&lease), tag(&other));
        }
        assert!((0..16).all(|b| tag(&k.audit_ids(b)) != tag(&lease)));
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
