//! Standard Webhooks signing (<https://www.standardwebhooks.com>): the
//! `webhook-signature` header is `v1,` and the standard base64 of
//! HMAC-SHA256(secret, `"{webhook-id}.{webhook-timestamp}.{body}"`), where the secret is
//! the bytes after `whsec_`. Any verifier library for the specification accepts it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One endpoint's signing key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// From a `whsec_<base64>` secret (validated by the configuration).
    pub fn new(secret: &str) -> Result<Self, String> {
        Ok(Signer {
            key: crate::config::webhook_secret_bytes(secret)?,
        })
    }

    /// The `webhook-signature` value for a message: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp_s: i64, body: &[u8]) -> String {
        use base64::Engine;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector the specification's reference libraries test against (e.g.
    /// standard-webhooks/libraries, `javascript/src/index.test.ts`): a signer that
    /// disagreed with it would be refused by every verifier.
    #[test]
    fn matches_the_reference_libraries_vector() {
        let s = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_part_is_signed() {
        let s = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = s.sign("evt_1", 1_700_000_000, b"{}");
        assert_ne!(base, s.sign("evt_2", 1_700_000_000, b"{}"));
        assert_ne!(base, s.sign("evt_1", 1_700_000_001, b"{}"));
        assert_ne!(base, s.sign("evt_1", 1_700_000_000, b"{ }"));
        let other = Signer::new("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_ne!(base, other.sign("evt_1", 1_700_000_000, b"{}"));
        assert!(!format!("{s:?}").contains("MfKQ"));
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        assert!(Signer::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Signer::new("whsec_not base64!").is_err());
        assert!(Signer::new("whsec_AAAA").is_err(), "3 bytes");
    }
}
