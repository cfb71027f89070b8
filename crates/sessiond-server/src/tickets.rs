//! Sign-in tickets: short-lived JWTs minted by the app's backend (or `POST
//! /v1/admin/tickets`) that bind a user id and role to a session.
//!
//! HS256 tickets are checked against `tickets.hs256_secret`, EdDSA ones against
//! `tickets.ed25519_public_key`; each algorithm only ever meets its own key type, so an
//! `alg` switch in the header cannot downgrade the check. Expiry and age use the server's
//! clock (not the library's), so tests with a controlled clock see one time.

use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sessiond_core::Timestamp;

/// Longest user id a ticket may carry.
pub const MAX_USER_ID: usize = 128;
/// Most rooms a ticket may restrict a session to (keeps session records small).
pub const MAX_ROOMS: usize = 256;
/// Longest ticket accepted (a JWT with a few hundred rooms stays far below this).
pub const MAX_TICKET_LEN: usize = 32 * 1024;

/// The claims of a sign-in ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (becomes the principal `user:<sub>`).
    pub sub: String,
    /// A configured role.
    pub role: String,
    /// Expiry, seconds since the epoch (required).
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Room patterns the session may join (a grant; absent: none from the ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

/// The ticket keys, parsed once at start.
pub struct Tickets {
    hs256: Option<(DecodingKey, EncodingKey)>,
    ed25519: Option<DecodingKey>,
    max_age_s: i64,
    leeway_s: i64,
}

impl Tickets {
    pub fn from_config(config: &Config) -> Result<Tickets, ConfigError> {
        let t = &config.tickets;
        let hs256 = (!t.hs256_secret.is_empty()).then(|| {
            let s = t.hs256_secret.as_bytes();
            (DecodingKey::from_secret(s), EncodingKey::from_secret(s))
        });
        let ed25519 = if t.ed25519_public_key.trim().is_empty() {
            None
        } else {
            let key = DecodingKey::from_ed_pem(t.ed25519_public_key.as_bytes())
                .map_err(|e| ConfigError::Invalid(format!("tickets.ed25519_public_key: {e}")))?;
            Some(key)
        };
        Ok(Tickets {
            hs256,
            ed25519,
            max_age_s: t.max_age.as_secs() as i64,
            leeway_s: t.leeway.as_secs() as i64,
        })
    }

    /// Whether `POST /v1/admin/tickets` can mint (an HS256 secret is configured).
    pub fn can_mint(&self) -> bool {
        self.hs256.is_some()
    }

    /// Verifies a ticket at `now` and checks its role against `is_role`.
    pub fn verify(
        &self,
        ticket: &str,
        now: Timestamp,
        is_role: impl Fn(&str) -> bool,
    ) -> Result<Claims, ApiError> {
        let bad = |m: &str| ApiError::InvalidTicket(m.to_owned());
        if ticket.is_empty() || ticket.len() > MAX_TICKET_LEN {
            return Err(bad("malformed ticket"));
        }
        let header = jsonwebtoken::decode_header(ticket).map_err(|_| bad("malformed ticket"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().map(|(d, _)| d),
            Algorithm::EdDSA => self.ed25519.as_ref(),
            _ => None,
        }
        .ok_or_else(|| bad("unsupported ticket algorithm"))?;
        let mut v = Validation::new(header.alg);
        // Time is checked below against the server clock.
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(ticket, key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => bad("bad signature"),
                _ => bad("malformed ticket or claims"),
            })?
            .claims;
        let now_s = now.div_euclid(1000);
        if claims.exp + self.leeway_s <= now_s {
            return Err(bad("ticket expired"));
        }
        match claims.iat {
            Some(iat) if iat > now_s + self.leeway_s => {
                return Err(bad("ticket issued in the future"))
            }
            Some(iat) if now_s - iat > self.max_age_s + self.leeway_s => {
                return Err(bad("ticket too old"))
            }
            // Without iat, the ticket may not live longer than max_age from now.
            None if claims.exp - now_s > self.max_age_s + self.leeway_s => {
                return Err(bad("ticket without iat lives longer than max_age"))
            }
            _ => {}
        }
        validate_user_id(&claims.sub).map_err(|m| bad(&m))?;
        if !is_role(&claims.role) {
            return Err(bad("unknown role"));
        }
        if let Some(rooms) = &claims.rooms {
            if rooms.len() > MAX_ROOMS
                || rooms
                    .iter()
                    .any(|r| sessiond_core::rooms::validate_pattern(r).is_err())
            {
                return Err(bad("invalid rooms claim"));
            }
        }
        Ok(claims)
    }

    /// Mints an HS256 ticket valid for `ttl_s` seconds from `now`.
    pub fn mint(
        &self,
        user_id: &str,
        role: &str,
        rooms: Option<Vec<String>>,
        ttl_s: i64,
        now: Timestamp,
    ) -> Result<String, ApiError> {
        let (_, key) = self.hs256.as_ref().ok_or_else(|| {
            ApiError::invalid("no tickets.hs256_secret is configured, so tickets cannot be minted")
        })?;
        let now_s = now.div_euclid(1000);
        let claims = Claims {
            sub: user_id.to_owned(),
            role: role.to_owned(),
            exp: now_s + ttl_s,
            iat: Some(now_s),
            rooms,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| ApiError::Internal(format!("ticket signing failed: {e}")))
    }

    /// Longest ticket lifetime worth minting (older tickets are refused anyway).
    pub fn max_ttl_s(&self) -> i64 {
        self.max_age_s.max(1)
    }
}

/// A user id: 1..=128 visible ASCII characters (it travels in principals, logs and
/// forward-auth headers, which must stay unambiguous).
pub fn validate_user_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_USER_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("user id must be 1 to 128 visible ASCII characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tickets() -> Tickets {
        let c = Config::from_toml(
            "[tickets]\nhs256_secret = \"0123456789abcdef0123456789abcdef\"\nmax_age = \"5m\"",
        )
        .expect("config");
        Tickets::from_config(&c).expect("tickets")
    }

    const NOW: Timestamp = 1_800_000_000_000;

    #[test]
    fn minted_ticket_verifies() {
        let t = tickets();
        let jwt = t
            .mint("alice", "editor", Some(vec!["r1".into()]), 60, NOW)
            .unwrap();
        let c = t.verify(&jwt, NOW + 1000, |r| r == "editor").unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.rooms, Some(vec!["r1".to_string()]));
    }

    #[test]
    fn expired_old_tampered_and_unknown_role_are_refused() {
        let t = tickets();
        let jwt = t.mint("alice", "editor", None, 60, NOW).unwrap();
        assert!(t.verify(&jwt, NOW + 120_000, |_| true).is_err(), "expired");
        assert!(
            t.verify(&jwt, NOW, |r| r == "viewer").is_err(),
            "unknown role"
        );
        let long = t.mint("alice", "editor", None, 3600, NOW).unwrap();
        assert!(
            t.verify(&long, NOW + 10 * 60_000, |_| true).is_err(),
            "older than max_age"
        );
        let mut tampered = jwt.clone();
        tampered.pop();
        tampered.push(if jwt.ends_with('A') { 'B' } else { 'A' });
        assert!(t.verify(&tampered, NOW, |_| true).is_err(), "bad signature");
        assert!(t.verify("", NOW, |_| true).is_err());
        assert!(t.verify("a.b.c", NOW, |_| true).is_err());
    }

    #[test]
    fn other_secret_is_refused() {
        let other =
            Config::from_toml("[tickets]\nhs256_secret = \"ffffffffffffffffffffffffffffffff\"")
                .unwrap();
        let other = Tickets::from_config(&other).unwrap();
        let jwt = other.mint("mallory", "editor", None, 60, NOW).unwrap();
        assert!(tickets().verify(&jwt, NOW, |_| true).is_err());
    }

    /// A throwaway Ed25519 key pair made for this test only.
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEING22TGViYAbh5XK5RxOZz5Jd/iPMeANZuq13Exz2jea\n-----END PRIVATE KEY-----\n";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAoQzkUztyp3uQCwuR7yoE5/z3fVv2sBoXJx+TF+Kvp5Q=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn eddsa_tickets_verify_with_the_public_key_only() {
        let c = Config::from_toml(&format!(
            "[tickets]\ned25519_public_key = \"\"\"\n{ED_PUBLIC}\"\"\""
        ))
        .unwrap();
        let t = Tickets::from_config(&c).unwrap();
        assert!(!t.can_mint());
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        let now_s = NOW / 1000;
        let claims = Claims {
            sub: "dave".into(),
            role: "viewer".into(),
            exp: now_s + 60,
            iat: Some(now_s),
            rooms: None,
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        assert_eq!(t.verify(&jwt, NOW, |_| true).unwrap().sub, "dave");
        // An HS256 ticket is refused when only the EdDSA key is configured.
        let hs = tickets().mint("dave", "viewer", None, 60, NOW).unwrap();
        assert!(t.verify(&hs, NOW, |_| true).is_err());
        // A broken public key is a configuration error.
        let bad = Config::from_toml("[tickets]\ned25519_public_key = \"nonsense\"").unwrap();
        assert!(Tickets::from_config(&bad).is_err());
    }

    #[test]
    fn user_ids() {
        assert!(validate_user_id("alice@example.com").is_ok());
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id("a b").is_err());
        assert!(validate_user_id("ünï").is_err());
        assert!(validate_user_id(&"x".repeat(129)).is_err());
    }
}
