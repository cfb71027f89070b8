//! Cookie and token parsing: `Cookie` headers (one or several), `Authorization: Bearer`
//! and the WebSocket `bearer.<token>` subprotocol entry. The reader never panics, the
//! duplicate-cookie guard counts every cookie the reader could pick, and a value is a
//! token exactly when it is the 43-character unpadded base64url form of 32 bytes.
#![no_main]

use axum::http::header::{AUTHORIZATION, COOKIE, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use sessiond_core::{Handle, Token};
use sessiond_server::auth::{cookie_value, request_token, TokenSource};
use sessiond_server::routes::edge::cookie_count;
use sessiond_server::ws::ws_token;

const NAMES: [&str; 3] = ["sessiond", "__Host-sessiond", "s"];

fn check_token(s: &str) {
    match Token::parse(s) {
        Some(t) => {
            assert_eq!(t.as_str(), s);
            let bytes = URL_SAFE_NO_PAD.decode(s).expect("a parsed token decodes");
            assert_eq!(bytes.len(), 32);
            assert_eq!(URL_SAFE_NO_PAD.encode(&bytes), s, "one text form per token");
        }
        None => {
            let canonical = URL_SAFE_NO_PAD
                .decode(s)
                .is_ok_and(|b| b.len() == 32 && URL_SAFE_NO_PAD.encode(&b) == s);
            assert!(!canonical, "a token refused: {s:?}");
        }
    }
    if let Some(h) = Handle::parse(s) {
        assert_eq!(h.to_string(), s, "one text form per handle");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(sel) % NAMES.len()];
    // Parts separated by NUL (never valid in a header value): the kind of each part is
    // its first byte.
    let mut headers = HeaderMap::new();
    for part in rest.split(|b| *b == 0) {
        let Some((&kind, value)) = part.split_first() else {
            continue;
        };
        if let Ok(s) = std::str::from_utf8(value) {
            check_token(s);
        }
        let Ok(v) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let h = match kind % 4 {
            0 | 1 => COOKIE,
            2 => AUTHORIZATION,
            _ => SEC_WEBSOCKET_PROTOCOL,
        };
        headers.append(h, v);
    }
    let count = cookie_count(&headers, name);
    let value = cookie_value(&headers, name);
    if let Some(v) = &value {
        assert!(
            count >= 1,
            "the reader picked {v:?} but the guard counted none"
        );
        check_token(v);
    }
    if count == 0 {
        assert!(value.is_none());
    }
    for presented in [request_token(&headers, name), ws_token(&headers, name)]
        .into_iter()
        .flatten()
    {
        if presented.source == TokenSource::Cookie {
            let v = value
                .as_deref()
                .expect("a cookie token comes from the cookie");
            assert_eq!(presented.hash, Token::parse(v).map(|t| t.hash()));
        }
    }
});
