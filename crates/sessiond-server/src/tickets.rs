//! Sign-in tickets: short-lived JWTs minted by the app's backend (or `POST
//! /v1/admin/tickets`) that bind a user id and role to a session.
//!
//! HS256 tickets are checked against `tickets.hs256_secret`, EdDSA ones against
//! `tickets.ed25519_public_key`; each algorithm only ever meets its own key type, so an
//! `alg` switch in the header cannot downgrade the check. Expiry, `nbf` and age use the
//! server's clock (not the library's), so tests with a controlled clock see one time.
//!
//! A ticket must name this server as its audience (`aud`, `tickets.audience`), and its
//! issuer when `tickets.issuer` is set, so another service's JWT signed with the same
//! key is not a ticket. It must carry a `jti`: the session service accepts each one once
//! ([`Claims::single_use`]), remembered in the store until the ticket expires, so a
//! leaked ticket cannot sign in again, on this node or another.

use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::member_info::MemberInfo;
use crate::sessions::TicketUse;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sessiond_core::Timestamp;
use sha2::{Digest, Sha256};

/// Longest user id a ticket may carry.
pub const MAX_USER_ID: usize = 128;
/// Most rooms a ticket may restrict a session to (keeps session records small).
pub const MAX_ROOMS: usize = 256;
/// Longest ticket accepted (a JWT with a few hundred rooms stays far below this).
pub const MAX_TICKET_LEN: usize = 32 * 1024;
/// Longest `jti` accepted.
pub const MAX_JTI: usize = 256;

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
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Audience: a string or a list; checked by the JWT library against
    /// `tickets.audience` (kept here so minted tickets carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Issuer; checked against `tickets.issuer` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Unique ticket id (required): each is accepted once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Room patterns the session may join (a grant; absent: none from the ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// Member info presence shows for the user (see [`crate::member_info`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

impl Claims {
    /// The single use of a verified ticket: a store key from its issuer and `jti` (hashed,
    /// so any `jti` makes a short, safe key), remembered until the ticket has expired
    /// (`exp` plus leeway, after which [`Tickets::verify`] refuses it anyway).
    pub fn single_use(&self, leeway_s: i64) -> TicketUse {
        let mut h = Sha256::new();
        h.update(b"sessiond-ticket\0");
        h.update(self.iss.as_deref().unwrap_or("").as_bytes());
        h.update(b"\0");
        h.update(self.jti.as_deref().unwrap_or("").as_bytes());
        let until = self.exp.saturating_add(leeway_s).saturating_mul(1000);
        TicketUse {
            key: format!("ticket:{}", hex::encode(h.finalize())),
            until,
        }
    }
}

/// The ticket keys, parsed once at start.
pub struct Tickets {
    hs256: Option<(DecodingKey, EncodingKey)>,
    ed25519: Option<DecodingKey>,
    max_age_s: i64,
    leeway_s: i64,
    audience: String,
    /// `None`: any issuer (or none).
    issuer: Option<String>,
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
            max_age_s: i64::try_from(t.max_age.as_secs()).unwrap_or(i64::MAX),
            leeway_s: i64::try_from(t.leeway.as_secs()).unwrap_or(i64::MAX),
            audience: t.audience.clone(),
            issuer: (!t.issuer.is_empty()).then(|| t.issuer.clone()),
        })
    }

    /// Seconds of clock skew tolerated.
    pub fn leeway_s(&self) -> i64 {
        self.leeway_s
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
        v.validate_nbf = false;
        v.validate_aud = true;
        v.set_audience(&[&self.audience]);
        let mut required = vec!["exp", "sub", "aud"];
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(ticket, key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => bad("bad signature"),
                    K::InvalidAudience => bad("ticket is for another audience"),
                    K::InvalidIssuer => bad("ticket is from another issuer"),
                    K::MissingRequiredClaim(c) => bad(&format!("ticket without {c}")),
                    _ => bad("malformed ticket or claims"),
                }
            })?
            .claims;
        match &claims.jti {
            Some(j) if !j.is_empty() && j.len() <= MAX_JTI => {}
            Some(_) => return Err(bad("jti must be 1 to 256 characters")),
            None => return Err(bad("ticket without jti")),
        }
        // Checked arithmetic throughout: claims are attacker-chosen numbers, and an
        // overflow must refuse the ticket, never wrap into "valid" (or panic).
        let now_s = now.div_euclid(1000);
        let leeway = self.leeway_s;
        let limit = |x: i64, y: i64| {
            x.checked_add(y)
                .ok_or_else(|| bad("time claim out of range"))
        };
        if limit(claims.exp, leeway)? <= now_s {
            return Err(bad("ticket expired"));
        }
        if let Some(nbf) = claims.nbf {
            if nbf > limit(now_s, leeway)? {
                return Err(bad("ticket not yet valid (nbf)"));
            }
        }
        let max_age = limit(self.max_age_s, leeway)?;
        match claims.iat {
            Some(iat) if iat > limit(now_s, leeway)? => {
                return Err(bad("ticket issued in the future"))
            }
            Some(iat) => {
                let age = now_s
                    .checked_sub(iat)
                    .ok_or_else(|| bad("time claim out of range"))?;
                if age > max_age {
                    return Err(bad("ticket too old"));
                }
            }
            // Without iat, the ticket may not live longer than max_age from now.
            None => {
                let left = claims
                    .exp
                    .checked_sub(now_s)
                    .ok_or_else(|| bad("time claim out of range"))?;
                if left > max_age {
                    return Err(bad("ticket without iat lives longer than max_age"));
                }
            }
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
        if let Some(info) = &claims.info {
            MemberInfo::parse(info).map_err(|m| bad(&format!("invalid info claim: {m}")))?;
        }
        Ok(claims)
    }

    /// Mints an HS256 ticket valid for `ttl_s` seconds from `now`.
    pub fn mint(
        &self,
        user_id: &str,
        role: &str,
        rooms: Option<Vec<String>>,
        info: Option<&MemberInfo>,
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
            exp: now_s.saturating_add(ttl_s),
            iat: Some(now_s),
            nbf: None,
            aud: Some(serde_json::Value::String(self.audience.clone())),
            iss: self.issuer.clone(),
            // Fresh per ticket: each minted ticket signs in once.
            jti: Some(sessiond_core::token::random_id(16)),
            rooms,
            info: info.map(MemberInfo::to_value),
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
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// Valid claims for `dave` (viewer) at `now_s`, with aud and jti.
    fn claims(now_s: i64) -> Claims {
        Claims {
            sub: "dave".into(),
            role: "viewer".into(),
            exp: now_s + 60,
            iat: Some(now_s),
            nbf: None,
            aud: Some(serde_json::json!("sessiond")),
            iss: None,
            jti: Some("jti-1".into()),
            rooms: None,
            info: None,
        }
    }

    /// Signs any JSON claims with the test secret, as a careless or hostile app might.
    fn sign(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn refusal(t: &Tickets, jwt: &str) -> String {
        match t.verify(jwt, NOW, |_| true) {
            Err(ApiError::InvalidTicket(m)) => m,
            Err(e) => panic!("expected invalid_ticket, got {e:?}"),
            Ok(c) => panic!("accepted {c:?}"),
        }
    }

    #[test]
    fn audience_issuer_and_jti_are_required() {
        let t = tickets();
        let now_s = NOW / 1000;
        let base = serde_json::to_value(claims(now_s)).unwrap();
        assert!(t.verify(&sign(&base), NOW, |_| true).is_ok());
        // Another app's JWT signed with the same key: no aud, or another aud.
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove("aud");
        assert_eq!(refusal(&t, &sign(&v)), "ticket without aud");
        v["aud"] = serde_json::json!("billing");
        assert_eq!(refusal(&t, &sign(&v)), "ticket is for another audience");
        // A list naming us is fine.
        v["aud"] = serde_json::json!(["billing", "sessiond"]);
        assert!(t.verify(&sign(&v), NOW, |_| true).is_ok());
        // No jti: no single use, refused.
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove("jti");
        assert_eq!(refusal(&t, &sign(&v)), "ticket without jti");
        v["jti"] = serde_json::json!("");
        assert!(refusal(&t, &sign(&v)).contains("jti"));
        // A configured issuer must match.
        let c = Config::from_toml(&format!(
            "[tickets]\nhs256_secret = \"{SECRET}\"\naudience = \"app\"\nissuer = \"https://idp\""
        ))
        .unwrap();
        let strict = Tickets::from_config(&c).unwrap();
        let mut v = base.clone();
        v["aud"] = serde_json::json!("app");
        assert_eq!(refusal(&strict, &sign(&v)), "ticket without iss");
        v["iss"] = serde_json::json!("https://evil");
        assert_eq!(refusal(&strict, &sign(&v)), "ticket is from another issuer");
        v["iss"] = serde_json::json!("https://idp");
        assert!(strict.verify(&sign(&v), NOW, |_| true).is_ok());
        // Minted tickets carry what verification asks for, with a fresh jti each.
        let a = strict.mint("alice", "editor", None, None, 60, NOW).unwrap();
        let b = strict.mint("alice", "editor", None, None, 60, NOW).unwrap();
        let (ca, cb) = (
            strict.verify(&a, NOW, |_| true).unwrap(),
            strict.verify(&b, NOW, |_| true).unwrap(),
        );
        assert_ne!(ca.jti, cb.jti);
        assert_ne!(ca.single_use(5).key, cb.single_use(5).key);
        assert_eq!(ca.single_use(5).until, (NOW / 1000 + 65) * 1000);
    }

    #[test]
    fn nbf_is_honoured() {
        let t = tickets();
        let now_s = NOW / 1000;
        let mut c = claims(now_s);
        c.nbf = Some(now_s + 30);
        let jwt = sign(&serde_json::to_value(&c).unwrap());
        assert_eq!(refusal(&t, &jwt), "ticket not yet valid (nbf)");
        assert!(t.verify(&jwt, NOW + 30_000, |_| true).is_ok());
        // Within the leeway (5 s by default).
        c.nbf = Some(now_s + 4);
        assert!(t
            .verify(&sign(&serde_json::to_value(&c).unwrap()), NOW, |_| true)
            .is_ok());
    }

    #[test]
    fn extreme_time_claims_are_refused_without_overflow() {
        let t = tickets();
        let now_s = NOW / 1000;
        for (field, value) in [
            ("iat", i64::MIN),
            ("iat", i64::MAX),
            ("exp", i64::MAX),
            ("nbf", i64::MAX),
        ] {
            let mut v = serde_json::to_value(claims(now_s)).unwrap();
            v[field] = serde_json::json!(value);
            let m = refusal(&t, &sign(&v));
            assert!(!m.is_empty(), "{field}={value}");
        }
        // No iat and an exp far in the future.
        let mut v = serde_json::to_value(claims(now_s)).unwrap();
        v.as_object_mut().unwrap().remove("iat");
        v["exp"] = serde_json::json!(i64::MAX);
        refusal(&t, &sign(&v));
        v["exp"] = serde_json::json!(i64::MIN);
        refusal(&t, &sign(&v));
    }

    #[test]
    fn minted_ticket_verifies() {
        let t = tickets();
        let jwt = t
            .mint("alice", "editor", Some(vec!["r1".into()]), None, 60, NOW)
            .unwrap();
        let c = t.verify(&jwt, NOW + 1000, |r| r == "editor").unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.rooms, Some(vec!["r1".to_string()]));
    }

    #[test]
    fn expired_old_tampered_and_unknown_role_are_refused() {
        let t = tickets();
        let jwt = t.mint("alice", "editor", None, None, 60, NOW).unwrap();
        assert!(t.verify(&jwt, NOW + 120_000, |_| true).is_err(), "expired");
        assert!(
            t.verify(&jwt, NOW, |r| r == "viewer").is_err(),
            "unknown role"
        );
        let long = t.mint("alice", "editor", None, None, 3600, NOW).unwrap();
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
        let jwt = other
            .mint("mallory", "editor", None, None, 60, NOW)
            .unwrap();
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
            jti: Some("eddsa-1".into()),
            aud: Some(serde_json::json!("sessiond")),
            ..claims(now_s)
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        assert_eq!(t.verify(&jwt, NOW, |_| true).unwrap().sub, "dave");
        // An HS256 ticket is refused when only the EdDSA key is configured.
        let hs = tickets()
            .mint("dave", "viewer", None, None, 60, NOW)
            .unwrap();
        assert!(t.verify(&hs, NOW, |_| true).is_err());
        // A broken public key is a configuration error.
        let bad = Config::from_toml("[tickets]\ned25519_public_key = \"nonsense\"").unwrap();
        assert!(Tickets::from_config(&bad).is_err());
    }

    #[test]
    fn info_claim_is_validated_and_carried() {
        let t = tickets();
        let info =
            MemberInfo::parse(&serde_json::json!({"name": "Dave", "color": "#123abc"})).unwrap();
        let jwt = t
            .mint("dave", "viewer", None, Some(&info), 60, NOW)
            .unwrap();
        let ok = t.verify(&jwt, NOW, |_| true).unwrap();
        assert_eq!(
            ok.info,
            Some(serde_json::json!({"name": "Dave", "color": "#123abc"}))
        );
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        for bad in [
            serde_json::json!({"avatar_url": "javascript:alert(1)"}),
            serde_json::json!({"color": "blue"}),
            serde_json::json!("Dave"),
        ] {
            let c = Claims {
                info: Some(bad.clone()),
                ..claims(NOW / 1000)
            };
            let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, &key).unwrap();
            match t.verify(&jwt, NOW, |_| true) {
                Err(ApiError::InvalidTicket(m)) => {
                    assert!(m.starts_with("invalid info claim"), "{m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn user_ids() {
        assert!(validate_user_id("alice@example.com").is_ok());
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id("a b").is_err());
        assert!(validate_user_id("ünï").is_err());
        assert!(validate_user_id(&"x".repeat(129)).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A claim value: mostly plausible, sometimes extreme or of the wrong type.
        fn number() -> impl Strategy<Value = serde_json::Value> {
            let now_s = NOW / 1000;
            prop_oneof![
                (-400i64..400).prop_map(move |d| serde_json::json!(now_s + d)),
                any::<i64>().prop_map(|n| serde_json::json!(n)),
                Just(serde_json::json!(i64::MAX)),
                Just(serde_json::json!(i64::MIN)),
                Just(serde_json::json!(1.5)),
                Just(serde_json::json!("soon")),
                Just(serde_json::Value::Null),
            ]
        }

        fn text() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                "[ -~]{0,20}".prop_map(serde_json::Value::String),
                "(?s).{0,20}".prop_map(serde_json::Value::String),
                Just(serde_json::json!("x".repeat(300))),
                Just(serde_json::json!(7)),
            ]
        }

        fn rooms() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                proptest::collection::vec("[a-z*:.-]{0,6}", 0..4)
                    .prop_map(|v| serde_json::json!(v)),
                Just(serde_json::json!(vec!["r"; 300])),
                Just(serde_json::json!("lobby")),
            ]
        }

        /// Claims with every field present, absent or odd.
        fn claims_json() -> impl Strategy<Value = serde_json::Value> {
            let role = prop_oneof![Just(serde_json::json!("viewer")), text()];
            let aud = prop_oneof![
                Just(serde_json::json!("sessiond")),
                Just(serde_json::json!(["other", "sessiond"])),
                text(),
            ];
            (
                proptest::option::of(text()),
                proptest::option::of(role),
                proptest::option::of(number()),
                proptest::option::of(number()),
                proptest::option::of(number()),
                proptest::option::of(aud),
                proptest::option::of(text()),
                proptest::option::of(rooms()),
            )
                .prop_map(|(sub, role, exp, iat, nbf, aud, jti, rooms)| {
                    let mut m = serde_json::Map::new();
                    for (k, v) in [
                        ("sub", sub),
                        ("role", role),
                        ("exp", exp),
                        ("iat", iat),
                        ("nbf", nbf),
                        ("aud", aud),
                        ("jti", jti),
                        ("rooms", rooms),
                    ] {
                        if let Some(v) = v {
                            m.insert(k.to_owned(), v);
                        }
                    }
                    serde_json::Value::Object(m)
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn signed_claims_are_verified_by_every_rule(c in claims_json()) {
                let t = tickets();
                let now_s = NOW / 1000;
                let Ok(ok) = t.verify(&sign(&c), NOW, |r| r == "viewer") else {
                    return Ok(());
                };
                prop_assert!(validate_user_id(&ok.sub).is_ok());
                prop_assert_eq!(ok.role.as_str(), "viewer");
                prop_assert!(ok.jti.as_ref().is_some_and(|j| !j.is_empty() && j.len() <= MAX_JTI));
                prop_assert!(ok.exp + t.leeway_s() > now_s);
                prop_assert!(ok.nbf.is_none_or(|n| n <= now_s + t.leeway_s()));
                let age_ok = match ok.iat {
                    Some(iat) => iat <= now_s + t.leeway_s() && now_s - iat <= 300 + t.leeway_s(),
                    None => ok.exp - now_s <= 300 + t.leeway_s(),
                };
                prop_assert!(age_ok);
                if let Some(r) = &ok.rooms {
                    prop_assert!(r.len() <= MAX_ROOMS);
                    prop_assert!(r.iter().all(|p| sessiond_core::rooms::validate_pattern(p).is_ok()));
                }
                // The same user, role and rooms minted afresh verify again.
                let minted = t.mint(&ok.sub, &ok.role, ok.rooms.clone(), None, 60, NOW).unwrap();
                let again = t.verify(&minted, NOW, |r| r == "viewer").unwrap();
                prop_assert_eq!((again.sub, again.rooms), (ok.sub, ok.rooms));
            }

            #[test]
            fn arbitrary_text_is_a_malformed_ticket(s in "(?s).{0,200}", dots in "[A-Za-z0-9_.-]{0,120}") {
                for input in [s, dots] {
                    match tickets().verify(&input, NOW, |_| true) {
                        Err(ApiError::InvalidTicket(_)) => {}
                        other => prop_assert!(false, "{input:?} gave {:?}", other.map(|c| c.sub)),
                    }
                }
            }
        }
    }
}
