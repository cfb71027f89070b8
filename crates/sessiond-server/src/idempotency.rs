//! Idempotent session creation: the `Idempotency-Key` header, the request fingerprint,
//! and the sealing of the session token under a key derived from the idempotency key.
//!
//! The store keeps only `sha256(key)` and the token sealed with AES-256-GCM under
//! HKDF-SHA256(key): a repeated call (holding the key) gets the same token back, while
//! the stored record alone reveals nothing. This is why the key must be unguessable: it
//! is, for the lifetime of the record, as good as the session token.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sessiond_core::Token;
use sha2::{Digest, Sha256};

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

/// What the store indexes: `sha256(key)` in hex.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The fingerprint of a create request, from its canonical form (so `{}` and an empty
/// body, or different whitespace, are the same request).
pub fn fingerprint(bearer: bool) -> String {
    let canonical = format!("POST /v1/session\nbearer={bearer}\n");
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn cipher(key: &str) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(None, key.as_bytes());
    let mut okm = [0u8; 32];
    hk.expand(HKDF_INFO, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new(&okm.into())
}

/// Seals the token: `nonce || ciphertext+tag`.
pub fn seal(key: &str, token: &Token) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher(key)
        .encrypt(Nonce::from_slice(&nonce), token.as_str().as_bytes())
        .expect("AES-GCM encryption of a short plaintext cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

/// Opens a sealed token; `None` if the key is wrong or the record was tampered with.
pub fn unseal(key: &str, sealed: &[u8]) -> Option<Token> {
    if sealed.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let plain = cipher(key).decrypt(Nonce::from_slice(nonce), ct).ok()?;
    Token::parse(std::str::from_utf8(&plain).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_wrong_key() {
        let t = Token::generate();
        let sealed = seal("key-0123456789", &t);
        assert!(!sealed
            .windows(t.as_str().len())
            .any(|w| w == t.as_str().as_bytes()));
        assert_eq!(unseal("key-0123456789", &sealed), Some(t));
        assert_eq!(unseal("key-0123456780", &sealed), None);
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(unseal("key-0123456789", &bad), None);
        assert_eq!(unseal("key-0123456789", &[]), None);
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
        assert_ne!(key_hash("abcdefgh"), key_hash("abcdefgi"));
    }
}
