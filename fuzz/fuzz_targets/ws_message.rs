//! The WebSocket client-message decoder: any text frame decodes to a message or to a
//! `bad_message`/`unknown_type` rejection with a bounded message, and a decoded message
//! re-encodes to JSON that decodes to the same message.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use sessiond_server::ws::protocol::{code, parse_client, ClientMsg, MAX_REJECTED_MESSAGE};

fuzz_target!(|data: &[u8]| {
    // The connection refuses invalid UTF-8 (close 1007) before the decoder runs.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_client(text) {
        Ok(msg) => {
            let again = serde_json::to_string(&msg).expect("a client message serializes");
            assert_eq!(
                parse_client(&again).as_ref(),
                Ok(&msg),
                "round trip of {again}"
            );
            match &msg {
                ClientMsg::Join { room, .. } | ClientMsg::Leave { room } => {
                    let _ = sessiond_core::snapshot::validate_room(room);
                }
                ClientMsg::Snapshot { room, data, .. } => {
                    let _ = sessiond_core::snapshot::validate_room(room);
                    let _ = STANDARD.decode(data.as_bytes());
                }
                ClientMsg::Ping { .. } | ClientMsg::Activity | ClientMsg::Renew => {}
            }
        }
        Err(r) => {
            assert!(
                r.code == code::BAD_MESSAGE || r.code == code::UNKNOWN_TYPE,
                "unexpected code {}",
                r.code
            );
            assert!(
                r.message.len() <= MAX_REJECTED_MESSAGE,
                "rejection message of {} bytes",
                r.message.len()
            );
        }
    }
});
