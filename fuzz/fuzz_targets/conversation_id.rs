//! The opaque identifiers clients choose: conversation ids, attachment names, rooms,
//! room patterns and session-data keys, each against a reference model of its
//! documented rule (length and alphabet), so a validator can neither panic nor drift.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond_core::draft::{
    validate_attachment_name, validate_conversation, MAX_ATTACHMENT_NAME_LEN, MAX_CONVERSATION_LEN,
};
use sessiond_core::rooms::{pattern_matches, validate_pattern, RESERVED_DATA_PREFIX};
use sessiond_core::snapshot::{validate_room, MAX_ROOM_LEN};
use sessiond_server::routes::session::{validate_data_key, MAX_DATA_KEY};

/// `[A-Za-z0-9._:-]{1,max}`.
fn id_model(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(
        validate_conversation(s).is_ok(),
        id_model(s, MAX_CONVERSATION_LEN),
        "conversation {s:?}"
    );
    let name_model = !s.is_empty()
        && s.len() <= MAX_ATTACHMENT_NAME_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    assert_eq!(
        validate_attachment_name(s).is_ok(),
        name_model,
        "attachment {s:?}"
    );
    let room_ok = validate_room(s).is_ok();
    assert_eq!(room_ok, id_model(s, MAX_ROOM_LEN), "room {s:?}");
    let pattern_ok = validate_pattern(s).is_ok();
    let body = s.strip_suffix('*').unwrap_or(s);
    let pattern_model = s.len() <= MAX_ROOM_LEN
        && !s.is_empty()
        && (body.is_empty() || id_model(body, MAX_ROOM_LEN));
    assert_eq!(pattern_ok, pattern_model, "pattern {s:?}");
    // Every valid room is a pattern admitting exactly itself.
    if room_ok {
        assert!(pattern_ok && pattern_matches(s, s));
    }
    // `pattern|room`: a pattern admits a room only by equality or by its prefix.
    if let Some((p, room)) = s.split_once('|') {
        if pattern_matches(p, room) {
            match p.strip_suffix('*') {
                Some(prefix) => assert!(room.starts_with(prefix)),
                None => assert_eq!(p, room),
            }
        }
    }
    let key_model = id_model(s, MAX_DATA_KEY) && !s.starts_with(RESERVED_DATA_PREFIX);
    assert_eq!(validate_data_key(s).is_ok(), key_model, "data key {s:?}");
});
