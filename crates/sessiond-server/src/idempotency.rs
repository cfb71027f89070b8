//! Idempotent session creation: the `Idempotency-Key` header, the request fingerprint,
//! and the sealing of the session token under a key derived from the idempotency key.
//!
//! The store keeps only HMAC-SHA256(server secret, key) and the token sealed with
//! AES-256-GCM under HKDF-SHA256(salt = server secret, key): a repeated call (holding the
//! key) gets the same token back, while the stored record alone — even with a weak key —
//! reveals nothing without the server secret. The key must still be unguessable: within
//! the replay window ([`IdempotencyKeys::replay_open`]) it is as good as the session
//! token, which is why that window is short.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sessiond_core::{Timestamp, Token};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// HKDF `info` separating this use of the key from any other.
const HKDF_INFO: &[u8] = b"sessiond idempotency";
/// AES-GCM nonce length, prepended to the ciphertext.
const NONCE_LEN: usize = 12;
/// Shortest and longest accepted key.
pub const MIN_KEY_LEN: usize = 8;
pub const MAX_KEY_LEN: usize = 255;

/// Checks the header value: 8..=255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), String> {
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err(format!(
            "Idempotency-Key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} characters"
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("Idempotency-Key must be visible ASCII characters".into());
    }
    Ok(())
}

/// The server secret and replay window every idempotency record is made and read with.
pub struct IdempotencyKeys {
    secret: [u8; 32],
    replay_window_ms: i64,
}

impl IdempotencyKeys {
    pub fn new(secret: [u8; 32], replay_window: Duration) -> Self {
        IdempotencyKeys {
            secret,
            replay_window_ms: i64::try_from(replay_window.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// What the store indexes: HMAC-SHA256(server secret, key) in hex.
    pub fn key_hash(&self, key: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"sessiond-idempotency-key:");
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether a record made at `created_at` may still hand out its token at `now`.
    pub fn replay_open(&self, created_at: Timestamp, now: Timestamp) -> bool {
        now.saturating_sub(created_at) <= self.replay_window_ms
    }

    fn cipher(&self, key: &str) -> Aes256Gcm {
        let hk = Hkdf::<Sha256>::new(Some(&self.secret), key.as_bytes());
        let mut okm = [0u8; 32];
        hk.expand(HKDF_INFO, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Aes256Gcm::new(&okm.into())
    }

    /// Seals the token: `nonce || ciphertext+tag`.
    pub fn seal(&self, key: &str, token: &Token) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher(key)
            .encrypt(Nonce::from_slice(&nonce), token.as_str().as_bytes())
            .expect("AES-GCM encryption of a short plaintext cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a sealed token; `None` if the key or secret is wrong or the record was
    /// tampered with.
    pub fn unseal(&self, key: &str, sealed: &[u8]) -> Option<Token> {
        if sealed.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let plain = self
            .cipher(key)
            .decrypt(Nonce::from_slice(nonce), ct)
            .ok()?;
        Token::parse(std::str::from_utf8(&plain).ok()?)
    }
}

/// The fingerprint of a create request, from its canonical form (so `{}` and an empty
/// body, or different whitespace, are the same request).
pub fn fingerprint(bearer: bool) -> String {
    let canonical = format!("POST /v1/session\nbearer={bearer}\n");
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: u8) -> IdempotencyKeys {
        IdempotencyKeys::new([secret; 32], Duration::from_secs(60))
    }

    #[test]
    fn seal_round_trip_and_wrong_key() {
        let k = keys(1);
        let t = Token::generate();
        let sealed = k.seal("key-0123456789", &t);
        assert!(!sealed
            .windows(t.as_str().len())
            .any(|w| w == t.as_str().as_bytes()));
        assert_eq!(k.unseal("key-0123456789", &sealed), Some(t));
        assert_eq!(k.unseal("key-0123456780", &sealed), None);
        // Without the server secret the key alone opens nothing.
        assert_eq!(keys(2).unseal("key-0123456789", &sealed), None);
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(k.unseal("key-0123456789", &bad), None);
        assert_eq!(k.unseal("key-0123456789", &[]), None);
    }

    #[test]
    fn key_hash_mixes_in_the_server_secret() {
        let plain = hex::encode(Sha256::digest(b"abcdefgh"));
        assert_ne!(keys(1).key_hash("abcdefgh"), plain);
        assert_ne!(keys(1).key_hash("abcdefgh"), keys(2).key_hash("abcdefgh"));
        assert_eq!(keys(1).key_hash("abcdefgh"), keys(1).key_hash("abcdefgh"));
    }

    #[test]
    fn replay_window_is_inclusive_and_bounded() {
        let k = keys(1);
        assert!(k.replay_open(1_000, 1_000));
        assert!(k.replay_open(1_000, 61_000));
        assert!(!k.replay_open(1_000, 61_001));
        assert!(!k.replay_open(i64::MIN, i64::MAX));
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("abcdefgh").is_ok());
        assert!(validate_key("short").is_err());
        assert!(validate_key("has space in it").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
        assert!(validate_key("ünicode-key").is_err());
    }

    #[test]
    fn fingerprints_differ_by_request() {
        assert_eq!(fingerprint(false), fingerprint(false));
        assert_ne!(fingerprint(false), fingerprint(true));
        assert_ne!(keys(1).key_hash("abcdefgh"), keys(1).key_hash("abcdefgi"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn keys_follow_the_rule(key in prop_oneof!["(?s).{0,300}", "[!-~]{0,300}"]) {
                let model = (MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len())
                    && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
                prop_assert_eq!(validate_key(&key).is_ok(), model);
            }

            #[test]
            fn a_valid_key_seals_and_only_it_unseals(key in "[!-~]{8,255}", other in "[!-~]{8,40}", junk in proptest::collection::vec(any::<u8>(), 0..80)) {
                let k = keys(3);
                let t = Token::generate();
                let sealed = k.seal(&key, &t);
                prop_assert_eq!(k.unseal(&key, &sealed), Some(t));
                if other != key {
                    prop_assert_eq!(k.unseal(&other, &sealed), None);
                }
                prop_assert_eq!(k.unseal(&key, &junk), None);
            }
        }
    }
}
