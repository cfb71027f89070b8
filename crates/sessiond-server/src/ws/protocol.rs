//! The WebSocket wire messages (JSON text frames tagged by `type`), the error codes and
//! the close codes; `docs/protocol.md` documents exactly these.

use serde::{Deserialize, Serialize};
pub use sessiond_core::cluster::{LeftReason, Member};
use sessiond_core::EndReason;

/// The subprotocol the server selects; a `bearer.<token>` entry may follow it.
pub const PROTOCOL: &str = "sessiond.v1";
/// Prefix of the subprotocol entry carrying a bearer token (browsers cannot set headers).
pub const BEARER_PREFIX: &str = "bearer.";

/// Close codes. 4000-4003 mirror the session's ending reason.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame that is not valid UTF-8 (RFC 6455 "invalid frame payload data").
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The connection sent more messages than `ws.message_rate`/`ws.message_burst` allow.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message over `max_message_size`, in one frame or assembled from fragments.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SIGNED_OUT: u16 = 4000;
    pub const IDLE_TIMEOUT: u16 = 4001;
    pub const ABSOLUTE_TIMEOUT: u16 = 4002;
    pub const REVOKED: u16 = 4003;
    pub const HEARTBEAT_LOST: u16 = 4004;
    pub const SLOW_CONSUMER: u16 = 4005;
    pub const UNAUTHENTICATED: u16 = 4008;
    pub const TOO_MANY_CONNECTIONS: u16 = 4009;
    /// The session's token was rotated (sign-in) after this connection authenticated:
    /// reconnect at once with the new cookie or token. The session goes on.
    pub const REAUTHENTICATE: u16 = 4010;
    /// An operator dropped this connection (admin API). The session goes on: reconnect.
    pub const DROPPED: u16 = 4011;
    /// The user ended this session from another of their devices.
    pub const ENDED_BY_USER: u16 = 4012;

    /// The close code for a session ending.
    pub fn for_reason(r: sessiond_core::EndReason) -> u16 {
        use sessiond_core::EndReason::*;
        match r {
            SignedOut => SIGNED_OUT,
            IdleTimeout => IDLE_TIMEOUT,
            AbsoluteTimeout => ABSOLUTE_TIMEOUT,
            Revoked => REVOKED,
            EndedByUser => ENDED_BY_USER,
        }
    }

    /// The close frame's reason text (short: a close reason is at most 123 bytes).
    pub fn reason_text(code: u16) -> &'static str {
        match code {
            NORMAL => "bye",
            GOING_AWAY => "server shutting down",
            INVALID_PAYLOAD => "invalid utf-8",
            POLICY_VIOLATION => "rate limit exceeded",
            MESSAGE_TOO_BIG => "message too big",
            SIGNED_OUT => "signed_out",
            IDLE_TIMEOUT => "idle_timeout",
            ABSOLUTE_TIMEOUT => "absolute_timeout",
            REVOKED => "revoked",
            ENDED_BY_USER => "ended_by_user",
            HEARTBEAT_LOST => "heartbeat_lost",
            SLOW_CONSUMER => "slow consumer",
            UNAUTHENTICATED => "unauthenticated",
            TOO_MANY_CONNECTIONS => "too many connections",
            REAUTHENTICATE => "reauthenticate",
            DROPPED => "dropped",
            _ => "internal error",
        }
    }
}

/// Stable `error.code` values.
pub mod code {
    pub const BAD_MESSAGE: &str = "bad_message";
    pub const UNKNOWN_TYPE: &str = "unknown_type";
    pub const BINARY_NOT_SUPPORTED: &str = "binary_not_supported";
    pub const INVALID_ROOM: &str = "invalid_room";
    pub const ROOM_NOT_ALLOWED: &str = "room_not_allowed";
    /// A room token was presented on `join` but is forged, expired or for another room.
    pub const INVALID_ROOM_TOKEN: &str = "invalid_room_token";
    /// The connection was removed from a room because its session lost the grant.
    pub const ROOM_ACCESS_REVOKED: &str = "room_access_revoked";
    pub const TOO_MANY_ROOMS: &str = "too_many_rooms";
    /// The room has `ws.max_room_members` members already; the join changed nothing.
    pub const ROOM_FULL: &str = "room_full";
    pub const NOT_JOINED: &str = "not_joined";
    pub const CONFLICT: &str = "conflict";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const STORE_UNAVAILABLE: &str = "store_unavailable";
    /// A snapshot would take the principal over a storage quota (`limit`, `max`); nothing
    /// was written.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
    /// A stored value (a sealed snapshot) failed its integrity check; not served.
    pub const STORE_INTEGRITY: &str = "store_integrity";
    pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";
    pub const INTERNAL: &str = "internal";
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Application ping; answered with `pong` carrying the same `id`. Never counts as activity.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    /// The user did something: resets the idle deadline.
    Activity,
    /// "Stay signed in": resets the idle deadline and tells every connection.
    Renew,
    Join {
        room: String,
        /// A room token (share link) naming this room; never needed with another grant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The snapshot version the client already holds: `presence` carries the
        /// snapshot only when the stored one is newer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        have_version: Option<u64>,
    },
    Leave {
        room: String,
    },
    /// Saves the room's snapshot; `version` is the version the client replaces (0: none).
    Snapshot {
        room: String,
        version: u64,
        /// Standard base64 (with padding) of the bytes.
        data: String,
        #[serde(default = "default_content_type")]
        content_type: String,
    },
}

fn default_content_type() -> String {
    "application/octet-stream".into()
}

/// The `type` values a client may send (anything else is `unknown_type`).
pub const CLIENT_TYPES: &[&str] = &["ping", "activity", "renew", "join", "leave", "snapshot"];

/// A room's stored snapshot as handed to a joiner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub version: u64,
    pub hash: String,
    pub content_type: String,
    /// Standard base64 of the bytes.
    pub data: String,
    pub updated_at: String,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Hello {
        connection_id: String,
        handle: String,
        principal: String,
        role: String,
        idle_expires_at: String,
        absolute_expires_at: String,
        /// Seconds (rounded up); `heartbeat_interval_ms` is exact.
        heartbeat_interval: u64,
        heartbeat_interval_ms: u64,
        heartbeat_misses: u32,
        warn_before: u64,
        max_message_size: usize,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    ExpiryWarning {
        seconds_left: i64,
        idle_expires_at: String,
    },
    Renewed {
        idle_expires_at: String,
        absolute_expires_at: String,
    },
    SessionEnded {
        reason: EndReason,
    },
    Presence {
        room: String,
        members: Vec<Member>,
        snapshot: Option<SnapshotBody>,
        /// Set (with `snapshot: null`) when the joiner already holds the stored snapshot,
        /// this version: it was sent to (or saved by) this connection since it joined the
        /// room, or the join named it in `have_version`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot_version: Option<u64>,
    },
    MemberJoined {
        room: String,
        member: Member,
    },
    MemberLeft {
        room: String,
        member: Member,
        reason: LeftReason,
    },
    SnapshotSaved {
        room: String,
        version: u64,
        hash: String,
    },
    SnapshotUpdated {
        room: String,
        version: u64,
        hash: String,
        /// Handle of the session that wrote it.
        by: Option<String>,
    },
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// With `conflict`: the stored version (0: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_version: Option<u64>,
        /// With `quota_exceeded`: the limit's name (its key under `[quotas]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<String>,
        /// With `quota_exceeded`: the limit's value for this session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
}

impl ServerMsg {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code: code.to_owned(),
            message: message.into(),
            room: None,
            current_version: None,
            limit: None,
            max: None,
        }
    }
    pub fn room_error(code: &str, room: &str, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code: code.to_owned(),
            message: message.into(),
            room: Some(room.to_owned()),
            current_version: None,
            limit: None,
            max: None,
        }
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// Why a text frame could not be understood: the `error` to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub code: &'static str,
    pub message: String,
}

/// Longest `Rejected::message`, in bytes. serde's errors quote the offending value, so a
/// large string in the wrong field would otherwise be echoed back whole.
pub const MAX_REJECTED_MESSAGE: usize = 200;

/// `message` cut to [`MAX_REJECTED_MESSAGE`] bytes on a character boundary, marked `…`.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_REJECTED_MESSAGE {
        let mut end = MAX_REJECTED_MESSAGE - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// Parses a client text frame: malformed JSON or a missing/invalid field is
/// `bad_message`, a `type` the server does not know is `unknown_type`.
pub fn parse_client(text: &str) -> Result<ClientMsg, Rejected> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Rejected {
        code: code::BAD_MESSAGE,
        message: bounded(format!("malformed JSON: {e}")),
    })?;
    let ty = match v.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => {
            return Err(Rejected {
                code: code::BAD_MESSAGE,
                message: "a message is a JSON object with a string \"type\"".into(),
            })
        }
    };
    if !CLIENT_TYPES.contains(&ty.as_str()) {
        let shown: String = ty.chars().take(40).collect();
        return Err(Rejected {
            code: code::UNKNOWN_TYPE,
            // Debug-escaped, 40 characters can still be 400 bytes.
            message: bounded(format!("unknown message type {shown:?}")),
        });
    }
    serde_json::from_value(v).map_err(|e| Rejected {
        code: code::BAD_MESSAGE,
        message: bounded(format!("invalid {ty}: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any client message the protocol can express.
    fn client_msg() -> impl Strategy<Value = ClientMsg> {
        let text = ".{0,40}";
        let id = prop_oneof![
            Just(None),
            any::<i64>().prop_map(|n| Some(n.into())),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(|n| Some(serde_json::Value::Number(n)))),
            text.prop_map(|s| Some(serde_json::Value::String(s))),
        ];
        prop_oneof![
            id.prop_map(|id| ClientMsg::Ping { id }),
            Just(ClientMsg::Activity),
            Just(ClientMsg::Renew),
            (
                text,
                proptest::option::of(text),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(room, token, have_version)| ClientMsg::Join {
                    room,
                    token,
                    have_version
                }),
            text.prop_map(|room| ClientMsg::Leave { room }),
            (text, any::<u64>(), "[A-Za-z0-9+/=]{0,40}", text).prop_map(
                |(room, version, data, content_type)| ClientMsg::Snapshot {
                    room,
                    version,
                    data,
                    content_type
                }
            ),
        ]
    }

    fn check_rejection(r: &Rejected) -> Result<(), TestCaseError> {
        prop_assert!(r.code == code::BAD_MESSAGE || r.code == code::UNKNOWN_TYPE);
        prop_assert!(
            r.message.len() <= MAX_REJECTED_MESSAGE,
            "{} bytes",
            r.message.len()
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_decodes_or_is_rejected_with_a_stable_code(text in "(?s).{0,300}") {
            if let Err(r) = parse_client(&text) {
                check_rejection(&r)?;
            }
        }

        #[test]
        fn json_objects_decode_or_are_rejected_with_a_stable_code(
            ty in prop_oneof![Just("join".to_owned()), Just("snapshot".to_owned()), ".{0,300}"],
            field in "[a-z_]{1,12}",
            value in prop_oneof![
                ".{0,400}".prop_map(serde_json::Value::String),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ],
        ) {
            let text = serde_json::json!({"type": ty, field: value}).to_string();
            if let Err(r) = parse_client(&text) {
                check_rejection(&r)?;
            }
        }

        #[test]
        fn every_client_message_round_trips(m in client_msg()) {
            let text = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(parse_client(&text), Ok(m));
        }
    }

    /// Found by the `ws_message` fuzz target: a float id was parsed inexactly, so the
    /// `pong` carried another number than the `ping` and a client could not match them.
    #[test]
    fn a_ping_id_comes_back_exactly() {
        for id in [
            "2e-24",
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
            "123456.789",
        ] {
            let Ok(ClientMsg::Ping { id: Some(v) }) =
                parse_client(&format!(r#"{{"type":"ping","id":{id}}}"#))
            else {
                panic!("ping {id} not parsed");
            };
            let pong = ServerMsg::Pong { id: Some(v) }.to_json();
            let back: f64 = serde_json::from_str::<serde_json::Value>(&pong).unwrap()["id"]
                .as_f64()
                .unwrap();
            assert_eq!(back, id.parse::<f64>().unwrap(), "{pong}");
        }
    }

    #[test]
    fn a_rejection_never_echoes_a_large_value() {
        // serde quotes the offending string; it must not come back whole.
        let big = "x".repeat(60_000);
        let r = parse_client(&format!(
            r#"{{"type":"join","room":"a","have_version":"{big}"}}"#
        ))
        .unwrap_err();
        assert_eq!(r.code, code::BAD_MESSAGE);
        assert!(
            r.message.len() <= MAX_REJECTED_MESSAGE,
            "{}",
            r.message.len()
        );
        assert!(
            r.message.starts_with("invalid join: invalid type: string"),
            "{}",
            r.message
        );
        assert!(r.message.ends_with('…'));
        // Multi-byte characters are cut on a boundary.
        let wide = "é".repeat(300);
        let r = parse_client(&format!(
            r#"{{"type":"snapshot","room":"a","version":"{wide}","data":""}}"#
        ))
        .unwrap_err();
        assert!(
            r.message.len() <= MAX_REJECTED_MESSAGE,
            "{}",
            r.message.len()
        );
        assert!(
            r.message.contains("éé") && r.message.ends_with('…'),
            "{}",
            r.message
        );
        // An unknown type is shown escaped: 40 astral characters are 400 bytes of escapes
        // (found by the property test below).
        let r = parse_client(&format!(r#"{{"type":"{}"}}"#, "\u{18cd6}".repeat(50))).unwrap_err();
        assert_eq!(r.code, code::UNKNOWN_TYPE);
        assert!(
            r.message.len() <= MAX_REJECTED_MESSAGE,
            "{}",
            r.message.len()
        );
    }

    #[test]
    fn parses_every_client_type() {
        assert_eq!(
            parse_client(r#"{"type":"ping","id":7}"#).unwrap(),
            ClientMsg::Ping { id: Some(7.into()) }
        );
        assert_eq!(
            parse_client(r#"{"type":"ping"}"#).unwrap(),
            ClientMsg::Ping { id: None }
        );
        assert_eq!(
            parse_client(r#"{"type":"activity"}"#).unwrap(),
            ClientMsg::Activity
        );
        assert_eq!(
            parse_client(r#"{"type":"renew","extra":1}"#).unwrap(),
            ClientMsg::Renew
        );
        assert_eq!(
            parse_client(r#"{"type":"join","room":"a"}"#).unwrap(),
            ClientMsg::Join {
                room: "a".into(),
                token: None,
                have_version: None
            }
        );
        assert_eq!(
            parse_client(r#"{"type":"leave","room":"a"}"#).unwrap(),
            ClientMsg::Leave { room: "a".into() }
        );
        let s =
            parse_client(r#"{"type":"snapshot","room":"a","version":0,"data":"AA=="}"#).unwrap();
        assert!(
            matches!(s, ClientMsg::Snapshot { ref content_type, .. } if content_type == "application/octet-stream")
        );
    }

    #[test]
    fn rejects_with_stable_codes() {
        assert_eq!(parse_client("{nope").unwrap_err().code, "bad_message");
        assert_eq!(parse_client("[1,2]").unwrap_err().code, "bad_message");
        assert_eq!(
            parse_client(r#"{"type":3}"#).unwrap_err().code,
            "bad_message"
        );
        assert_eq!(
            parse_client(r#"{"type":"join"}"#).unwrap_err().code,
            "bad_message"
        );
        assert_eq!(
            parse_client(r#"{"type":"dance"}"#).unwrap_err().code,
            "unknown_type"
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let m = ServerMsg::MemberLeft {
            room: "r".into(),
            member: Member {
                connection_id: "n-1".into(),
                handle: "s_x".into(),
                principal: "anon:x".into(),
                role: "editor".into(),
                info: None,
            },
            reason: LeftReason::SessionEnded,
        };
        let j = m.to_json();
        assert!(j.contains(r#""type":"member_left""#) && j.contains(r#""reason":"session_ended""#));
        assert_eq!(serde_json::from_str::<ServerMsg>(&j).unwrap(), m);
        let e = ServerMsg::SessionEnded {
            reason: EndReason::IdleTimeout,
        }
        .to_json();
        assert_eq!(e, r#"{"type":"session_ended","reason":"idle_timeout"}"#);
        assert_eq!(close::for_reason(EndReason::Revoked), 4003);
    }
}
