//! Secrets and public names: session tokens (secret), their hashes (stored) and handles (public).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of entropy in a session token: 256 bits, well over the 128-bit floor.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token's URL-safe text form.
pub const TOKEN_LEN: usize = 43;

/// The secret a browser holds (cookie or bearer). Never stored, never logged:
/// `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut b = [0u8; TOKEN_BYTES];
        OsRng.fill_bytes(&mut b);
        Token(URL_SAFE_NO_PAD.encode(b))
    }

    /// Accepts only the exact shape the server issues; anything else (empty, truncated,
    /// padded, foreign alphabet) is not a token and can never map to a session.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != TOKEN_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
        (bytes.len() == TOKEN_BYTES).then(|| Token(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of a token: what stores keep and index. A high-entropy token needs no
/// slow hash; a leaked store still cannot resume a session.
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
    pub fn generate() -> Self {
        let mut b = [0u8; HANDLE_BYTES];
        OsRng.fill_bytes(&mut b);
        Handle(b)
    }
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("s_")?;
        let v = URL_SAFE_NO_PAD.decode(rest).ok()?;
        Some(Handle(v.try_into().ok()?))
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s_{}", URL_SAFE_NO_PAD.encode(self.0))
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
    fn tokens_are_unique_and_round_trip() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), TOKEN_LEN);
        assert_eq!(Token::parse(a.as_str()), Some(a.clone()));
        assert!(format!("{a:?}").contains("redacted"));
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
    fn handle_round_trip() {
        let h = Handle::generate();
        assert_eq!(Handle::parse(&h.to_string()), Some(h));
        assert!(Handle::parse("x").is_none());
    }

    proptest! {
        #[test]
        fn token_parse_never_panics(s in ".{0,64}") {
            let _ = Token::parse(&s);
            let _ = Handle::parse(&s);
        }
    }
}
