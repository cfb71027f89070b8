//! `Idempotency-Key` parsing as `POST /v1/session` does it (header value, then the key
//! rule), against a reference model of the rule; an accepted key seals and unseals a
//! token, and unsealing arbitrary bytes never panics nor opens anything.
#![no_main]

use axum::http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use sessiond_core::Token;
use sessiond_server::idempotency::{validate_key, IdempotencyKeys, MAX_KEY_LEN, MIN_KEY_LEN};
use std::sync::OnceLock;
use std::time::Duration;

fn keys() -> &'static IdempotencyKeys {
    static K: OnceLock<IdempotencyKeys> = OnceLock::new();
    K.get_or_init(|| IdempotencyKeys::new([7; 32], Duration::from_secs(60)))
}

fn token() -> &'static Token {
    static T: OnceLock<Token> = OnceLock::new();
    T.get_or_init(Token::generate)
}

fuzz_target!(|data: &[u8]| {
    // The route reads the header as visible ASCII, then applies the key rule.
    let from_header = HeaderValue::from_bytes(data)
        .ok()
        .and_then(|v| v.to_str().ok().map(str::to_owned));
    if let Some(k) = &from_header {
        let _ = validate_key(k);
    }
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let model = (MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    assert_eq!(validate_key(key).is_ok(), model, "{key:?}");
    let k = keys();
    let hash = k.key_hash(key);
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    // The input as a sealed record: nothing opens without the right seal.
    assert_eq!(k.unseal("key-0123456789", data), None);
    if model {
        // Every accepted key also passes the header reading unchanged.
        assert_eq!(from_header.as_deref(), Some(key));
        let sealed = k.seal(key, token());
        assert_eq!(k.unseal(key, &sealed).as_ref(), Some(token()));
    }
});
