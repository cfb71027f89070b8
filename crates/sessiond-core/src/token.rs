//! Secrets and public names: session tokens (secret), their hashes (stored) and handles (public).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes in a session token: a time-ordered prefix of [`ORDER_BYTES`] (a masked
/// millisecond, see [`time_ordered_bytes`]) and 232 random bits, well over the 128-bit
/// floor.
pub const TOKEN_BYTES: usize = 33;
/// Length of a token's URL-safe text form.
pub const TOKEN_LEN: usize = 44;
/// The time-ordered bytes at the head of a token, and so of its hash.
pub const ORDER_BYTES: usize = 4;
/// The earlier shape: 256 random bits, 43 characters. Sessions made before tokens took a
/// time prefix keep working: such a token still parses and hashes as it did (a plain
/// SHA-256), so an upgrade signs nobody out.
const LEGACY_BYTES: usize = 32;
const LEGACY_LEN: usize = 43;

/// The secret a browser holds (cookie or bearer). Never stored, never logged:
/// `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh token made at `now`: the time prefix, then random bytes from the OS CSPRNG.
    pub fn generate_at(now: crate::clock::Timestamp) -> Self {
        let mut b = [0u8; TOKEN_BYTES];
        b[..ORDER_BYTES].copy_from_slice(&time_prefix(now));
        OsRng.fill_bytes(&mut b[ORDER_BYTES..]);
        Token(URL_SAFE_NO_PAD.encode(b))
    }

    /// A fresh token made now (by the wall clock: the prefix orders storage, nothing
    /// reads a time from it).
    pub fn generate() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as crate::clock::Timestamp);
        Self::generate_at(now)
    }

    /// Accepts only the exact shapes the server issues; anything else (empty, truncated,
    /// padded, foreign alphabet) is not a token and can never map to a session.
    pub fn parse(s: &str) -> Option<Self> {
        shape(s).map(|_| Token(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of_presented(&self.0).expect("a token is well formed")
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What stores keep and index for a token: its time prefix, then the first 28 bytes of
/// the SHA-256 of its text (a legacy token: the whole SHA-256).
///
/// The prefix is for the stores. A token index keyed by a plain hash takes every new
/// session on a random B-tree leaf: on SQLite each create then wrote one more page to the
/// WAL and again at the checkpoint, and the disk bounded creation. With the prefix, the
/// creations of one group commit land on the same leaf, as their handles do. The
/// prefix is no secret (it is a masked millisecond); a high-entropy token needs no slow
/// hash, and 224 bits of SHA-256 keep a leaked store from resuming a session.
#[derive(Clone, Copy, Eq, Hash, PartialEq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(TokenHash(v.try_into().ok()?))
    }
    /// Constant-time equality, for comparing against a stored hash.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Eight bytes of the hash that are SHA-256 output in either shape (never the time
    /// prefix), for in-memory tables that want a uniform key.
    pub fn uniform_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[24..]);
        u64::from_le_bytes(b)
    }

    /// The hash of a token a request presents, `None` unless it is shaped like one
    /// (what [`Token::parse`] accepts): checked and hashed without copying it.
    pub fn of_presented(s: &str) -> Option<TokenHash> {
        let shape = shape(s)?;
        let digest: [u8; 32] = Sha256::digest(s.as_bytes()).into();
        Some(match shape {
            Shape::Ordered(prefix) => {
                let mut h = [0u8; 32];
                h[..ORDER_BYTES].copy_from_slice(&prefix);
                h[ORDER_BYTES..].copy_from_slice(&digest[..32 - ORDER_BYTES]);
                TokenHash(h)
            }
            Shape::Legacy => TokenHash(digest),
        })
    }
}

enum Shape {
    Ordered([u8; ORDER_BYTES]),
    Legacy,
}

/// Which shape the server issued `s` in, if any: [`TOKEN_LEN`] base64url characters
/// decoding to [`TOKEN_BYTES`] bytes (or the legacy 43 to 32), checked on the stack.
fn shape(s: &str) -> Option<Shape> {
    // One spare byte: a value decoding to more than a token's bytes is refused.
    let mut bytes = [0u8; TOKEN_BYTES + 1];
    match s.len() {
        TOKEN_LEN if URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) == Ok(TOKEN_BYTES) => {
            let mut prefix = [0u8; ORDER_BYTES];
            prefix.copy_from_slice(&bytes[..ORDER_BYTES]);
            Some(Shape::Ordered(prefix))
        }
        LEGACY_LEN if URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) == Ok(LEGACY_BYTES) => {
            Some(Shape::Legacy)
        }
        _ => None,
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// Bytes in a handle: 96 random bits, so handles never collide in practice.
pub const HANDLE_BYTES: usize = 12;

/// A session's public name, for logs, admin pages and presence. Knowing it grants nothing.
#[derive(Clone, Copy, Eq, Hash, PartialEq, Ord, PartialOrd)]
pub struct Handle(pub [u8; HANDLE_BYTES]);

impl Handle {
    /// A handle of 96 random bits.
    pub fn generate() -> Self {
        let mut b = [0u8; HANDLE_BYTES];
        OsRng.fill_bytes(&mut b);
        Handle(b)
    }

    /// A handle made at `now` that shares a prefix with the others made then (see
    /// [`time_ordered_bytes`]), for stores that keep sessions in a B-tree by handle
    /// ([`crate::store::SessionStore::time_ordered_handles`]).
    pub fn generate_at(now: crate::clock::Timestamp) -> Self {
        Handle(time_ordered_bytes(now))
    }
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("s_")?;
        let v = URL_SAFE_NO_PAD.decode(rest).ok()?;
        Some(Handle(v.try_into().ok()?))
    }
}

/// Hashes keys that are already uniformly random and chosen by the server (session
/// handles, token-hash prefixes) by folding their bytes: a lookup skips SipHash. Flooding
/// a table needs keys that collide in it, and no client picks these (handles come from
/// the OS's generator, token hashes from SHA-256 of server-made tokens); a key a client
/// names only ever looks up. Never for keys a client chooses.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomKeys;

impl std::hash::BuildHasher for RandomKeys {
    type Hasher = RandomKeyHasher;
    fn build_hasher(&self) -> RandomKeyHasher {
        RandomKeyHasher(0)
    }
}

/// [`RandomKeys`]' hasher.
#[derive(Debug, Default)]
pub struct RandomKeyHasher(u64);

impl std::hash::Hasher for RandomKeyHasher {
    fn finish(&self) -> u64 {
        // A multiply carries every bit into the top seven (hashbrown's tag): handles made
        // in one millisecond share their first bytes (`Handle::generate_at`), which the
        // rotations alone left in those bits.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, n: u64) {
        // A rotation keeps every random bit of earlier words in play (hashbrown takes
        // the bucket from the low bits and a tag from the top seven).
        self.0 = self.0.rotate_left(29) ^ n;
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A handle's text (`s_` and 16 base64url characters), on the stack: the hot path's
/// answers and every log line name a session without allocating.
pub struct HandleText([u8; HANDLE_TEXT]);

/// Length of a handle's text.
const HANDLE_TEXT: usize = 2 + HANDLE_BYTES / 3 * 4;

impl HandleText {
    pub fn as_str(&self) -> &str {
        // Only `s_` and base64url characters are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Handle {
    /// The handle's text without allocating (what `Display` writes).
    pub fn text(&self) -> HandleText {
        let mut b = [0u8; HANDLE_TEXT];
        b[..2].copy_from_slice(b"s_");
        // 12 bytes always encode to exactly 16 characters.
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut b[2..])
            .unwrap_or_default();
        debug_assert_eq!(n + 2, HANDLE_TEXT);
        HandleText(b)
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text().as_str())
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Handle::parse(&s).ok_or_else(|| serde::de::Error::custom("invalid handle"))
    }
}

/// Twelve bytes: the low 32 bits of `now` (milliseconds, big-endian, masked) and 64
/// random bits, so values made close in time share a prefix.
///
/// A B-tree keeps keys that share a prefix in one leaf, so a group commit of many new
/// sessions writes a few pages of each index instead of one random page per session.
/// The time is XORed with a random mask drawn once per process: values made in the
/// same millisecond still share their first four bytes (and those made within 256 ms
/// their first three), while whoever sees one (room members see handles and
/// principals) cannot read from it when it was made. Two values can only collide
/// within one millisecond (of a 49-day cycle), and 64 random bits make that as
/// unlikely as 96 random bits over all time.
pub fn time_ordered_bytes(now: crate::clock::Timestamp) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..ORDER_BYTES].copy_from_slice(&time_prefix(now));
    OsRng.fill_bytes(&mut b[ORDER_BYTES..]);
    b
}

/// The masked millisecond at the head of [`time_ordered_bytes`] and of tokens.
fn time_prefix(now: crate::clock::Timestamp) -> [u8; ORDER_BYTES] {
    static MASK: std::sync::OnceLock<[u8; ORDER_BYTES]> = std::sync::OnceLock::new();
    let mask = MASK.get_or_init(|| {
        let mut m = [0u8; ORDER_BYTES];
        OsRng.fill_bytes(&mut m);
        m
    });
    // Wraps every 49.7 days: only nearness matters.
    let mut p = (now as u32).to_be_bytes();
    for (x, m) in p.iter_mut().zip(mask) {
        *x ^= m;
    }
    p
}

/// [`time_ordered_bytes`] as URL-safe text (16 characters).
pub fn time_ordered_id(now: crate::clock::Timestamp) -> String {
    URL_SAFE_NO_PAD.encode(time_ordered_bytes(now))
}

/// Random URL-safe identifier with `bytes` bytes of entropy (anonymous principals,
/// connection ids, blob ids).
pub fn random_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn time_ordered_ids_share_a_prefix_within_a_millisecond_and_differ_within_one() {
        let decode = |id: &str| URL_SAFE_NO_PAD.decode(id).unwrap();
        // 1_700_000_000_000 is 0x018B_CFE5_6800 (low 32 bits CFE5_6800): the next
        // millisecond changes the last of the four time bytes only, 256 ms later the
        // last two.
        let a = decode(&time_ordered_id(1_700_000_000_000));
        let a2 = decode(&time_ordered_id(1_700_000_000_000));
        let b = decode(&time_ordered_id(1_700_000_000_001));
        let c = decode(&time_ordered_id(1_700_000_000_256));
        assert_eq!(a.len(), 12);
        assert_eq!(a[..4], a2[..4], "one millisecond, one prefix");
        assert_ne!(a[4..], a2[4..]);
        assert_eq!(a[..3], b[..3]);
        assert_ne!(a[3], b[3]);
        assert_eq!(a[..2], c[..2]);
        assert_ne!(a[2], c[2]);
        // The mask is drawn from the OS; equal to zero once in 2^32 runs.
        assert_ne!(a[..4], [0xCF, 0xE5, 0x68, 0x00], "the time is masked");
        let h = Handle::generate_at(1_700_000_000_000);
        assert_eq!(h.0[..4], a[..4], "handles take the same prefix");
        let same: std::collections::HashSet<String> = (0..1000)
            .map(|_| time_ordered_id(1_700_000_000_000))
            .collect();
        assert_eq!(
            same.len(),
            1000,
            "64 random bits keep one millisecond's ids apart"
        );
        let p = crate::Principal::anonymous_at(1_700_000_000_000);
        assert!(p.is_anonymous());
        assert_eq!(p.as_str().len(), "anon:".len() + 16);
    }

    #[test]
    fn tokens_are_unique_and_round_trip() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), TOKEN_LEN);
        assert_eq!(Token::parse(a.as_str()), Some(a.clone()));
        assert!(format!("{a:?}").contains("redacted"));
    }

    #[test]
    fn tokens_of_one_millisecond_hash_to_neighbouring_keys() {
        let at = 1_700_000_000_000;
        let (a, b) = (Token::generate_at(at), Token::generate_at(at));
        let (ha, hb) = (a.hash(), b.hash());
        assert_eq!(ha.0[..ORDER_BYTES], hb.0[..ORDER_BYTES], "one prefix");
        assert_eq!(ha.0[..ORDER_BYTES], time_ordered_bytes(at)[..ORDER_BYTES]);
        assert_ne!(ha.0[ORDER_BYTES..], hb.0[ORDER_BYTES..]);
        // The rest of the hash is the SHA-256 of the text, and the uniform key comes
        // from it alone.
        let full: [u8; 32] = Sha256::digest(a.as_str().as_bytes()).into();
        assert_eq!(ha.0[ORDER_BYTES..], full[..32 - ORDER_BYTES]);
        assert_eq!(
            ha.uniform_u64(),
            u64::from_le_bytes(full[24 - ORDER_BYTES..32 - ORDER_BYTES].try_into().unwrap())
        );
        // A token a millisecond later keeps the first three bytes (see time_ordered_id).
        let c = Token::generate_at(at + 1).hash();
        assert_eq!(ha.0[..3], c.0[..3]);
    }

    #[test]
    fn legacy_tokens_still_parse_and_hash_as_before() {
        let mut b = [0u8; LEGACY_BYTES];
        rand::RngCore::fill_bytes(&mut OsRng, &mut b);
        let text = URL_SAFE_NO_PAD.encode(b);
        assert_eq!(text.len(), LEGACY_LEN);
        let t = Token::parse(&text).expect("a legacy token parses");
        let full: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        assert_eq!(t.hash(), TokenHash(full));
        assert_eq!(TokenHash::of_presented(&text), Some(TokenHash(full)));
        // 44 characters that decode to 33 bytes are the current shape, never legacy;
        // 43 with trailing bits set are neither.
        let mut off = text.clone().into_bytes();
        off[LEGACY_LEN - 1] = if off[LEGACY_LEN - 1] == b'B' {
            b'C'
        } else {
            b'B'
        };
        let off = String::from_utf8(off).unwrap();
        assert_eq!(Token::parse(&off), None, "non-canonical trailing bits");
    }

    #[test]
    fn presented_tokens_hash_as_parsed_ones() {
        let t = Token::generate();
        assert_eq!(TokenHash::of_presented(t.as_str()), Some(t.hash()));
        for bad in [
            String::new(),
            // (Its first 43 characters may well be a legacy-shaped token: one that names
            // no session, which the server's tests check.)
            t.as_str()[..42].to_owned(),
            format!("{}=", t.as_str()),
            "!".repeat(TOKEN_LEN),
        ] {
            assert_eq!(TokenHash::of_presented(&bad), None, "{bad:?}");
            assert_eq!(Token::parse(&bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn presented_and_parsed_agree(s in "[A-Za-z0-9_=!-]{40,47}") {
            prop_assert_eq!(
                TokenHash::of_presented(&s),
                Token::parse(&s).map(|t| t.hash())
            );
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let t = Token::generate();
        assert!(Token::parse("").is_none());
        assert!(Token::parse(&t.as_str()[..42]).is_none());
        assert!(Token::parse(&format!("{}=", t.as_str())).is_none());
        assert!(Token::parse(&"!".repeat(TOKEN_LEN)).is_none());
    }

    #[test]
    fn random_keys_spread_handles() {
        use std::hash::BuildHasher;
        // Handles that differ in any one byte hash apart, in the bucket bits and the tag.
        let base = Handle([7; HANDLE_BYTES]);
        let h0 = RandomKeys.hash_one(base);
        for i in 0..HANDLE_BYTES {
            let mut b = base;
            b.0[i] ^= 0x5a;
            assert_ne!(RandomKeys.hash_one(b), h0, "byte {i}");
        }
        // Random handles fill the low and high bits alike.
        let (mut low, mut high) = (0u64, 0u64);
        for _ in 0..64 {
            let h = RandomKeys.hash_one(Handle::generate());
            low |= h & 0xff;
            high |= h >> 56;
        }
        assert_eq!((low, high), (0xff, 0xff));
        // So do handles made in the same millisecond.
        let (mut low, mut high) = (0u64, 0u64);
        for _ in 0..64 {
            let h = RandomKeys.hash_one(Handle::generate_at(1_700_000_000_000));
            low |= h & 0xff;
            high |= h >> 56;
        }
        assert_eq!((low, high), (0xff, 0xff));
    }

    #[test]
    fn handle_round_trip() {
        let h = Handle::generate();
        assert_eq!(Handle::parse(&h.to_string()), Some(h));
        assert!(Handle::parse("x").is_none());
        // The stack text is the allocated one: `s_` and the bytes in base64url.
        assert_eq!(
            h.text().as_str(),
            format!("s_{}", URL_SAFE_NO_PAD.encode(h.0))
        );
        let all_ones = Handle([0xff; HANDLE_BYTES]);
        assert_eq!(all_ones.text().as_str(), format!("s_{}", "_".repeat(16)));
    }

    proptest! {
        #[test]
        fn token_parse_never_panics(s in ".{0,64}") {
            let _ = Token::parse(&s);
            let _ = Handle::parse(&s);
        }
    }
}
