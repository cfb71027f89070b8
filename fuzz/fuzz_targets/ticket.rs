//! Sign-in ticket parsing and verification with a fixed HS256 key. Half the inputs are
//! raw tickets; the other half are a header and claims that the target signs with the
//! key, so the fuzzer reaches the claim checks behind the signature. Whatever comes in,
//! verification never panics, and what it accepts satisfies every documented rule.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sessiond_server::config::Config;
use sessiond_server::tickets::{validate_user_id, Tickets, MAX_JTI, MAX_ROOMS};
use sha2::Sha256;
use std::sync::OnceLock;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// A fixed "now" (ms): 2027-01-15.
const NOW: i64 = 1_800_000_000_000;
const ROLES: [&str; 3] = ["anonymous", "editor", "viewer"];

fn tickets() -> &'static Tickets {
    static T: OnceLock<Tickets> = OnceLock::new();
    T.get_or_init(|| {
        let c =
            Config::from_toml(&format!("[tickets]\nhs256_secret = \"{SECRET}\"")).expect("config");
        Tickets::from_config(&c).expect("tickets")
    })
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

fn is_role(r: &str) -> bool {
    ROLES.contains(&r)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let t = tickets();
    let ticket = if sel % 2 == 0 {
        let Ok(s) = std::str::from_utf8(rest) else {
            return;
        };
        s.to_owned()
    } else {
        // `header NUL claims`, or just the claims under the usual header.
        match rest.iter().position(|b| *b == 0) {
            Some(i) => sign(&rest[..i], &rest[i + 1..]),
            None => sign(br#"{"alg":"HS256","typ":"JWT"}"#, rest),
        }
    };
    let Ok(claims) = t.verify(&ticket, NOW, is_role) else {
        return;
    };
    // What was accepted obeys the rules.
    let now_s = NOW / 1000;
    assert!(
        validate_user_id(&claims.sub).is_ok(),
        "sub {:?}",
        claims.sub
    );
    assert!(is_role(&claims.role));
    let jti = claims.jti.as_deref().expect("jti is required");
    assert!(!jti.is_empty() && jti.len() <= MAX_JTI);
    assert!(claims
        .exp
        .checked_add(t.leeway_s())
        .is_some_and(|e| e > now_s));
    if let Some(rooms) = &claims.rooms {
        assert!(rooms.len() <= MAX_ROOMS);
        for r in rooms {
            assert!(
                sessiond_core::rooms::validate_pattern(r).is_ok(),
                "room {r:?}"
            );
        }
    }
    let single = claims.single_use(t.leeway_s());
    assert!(single.key.starts_with("ticket:"));
    // The same user, role and rooms minted afresh verify too.
    let ttl = 1 + i64::from(sel) % t.max_ttl_s();
    let minted = t
        .mint(&claims.sub, &claims.role, claims.rooms.clone(), ttl, NOW)
        .expect("mint");
    let again = t
        .verify(&minted, NOW, is_role)
        .expect("a minted ticket verifies");
    assert_eq!(
        (&again.sub, &again.role, &again.rooms),
        (&claims.sub, &claims.role, &claims.rooms)
    );
});
