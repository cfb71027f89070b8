//! Member info: a small JSON object per principal (display name, avatar URL, colour)
//! that presence carries so a who-is-here list can show people, not ids. It comes from
//! a sign-in ticket's `info` claim or from the app's backend through the admin API, is
//! validated here once, and is kept in each live session's data under a reserved key
//! (clients cannot write it) where the WebSocket picks it up when a connection opens.

use axum::http::Uri;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Reserved session-data key of a session's member info.
pub const DATA_KEY: &str = "sessiond:info";
/// Largest member info, as compact JSON.
pub const MAX_BYTES: usize = 1024;
/// Longest display name, in characters.
pub const MAX_NAME: usize = 64;
/// Longest avatar URL, in bytes.
pub const MAX_URL: usize = 512;

/// What presence shows of a member. Every field is optional; unknown fields are refused
/// (so a typo is an error, not a silently missing name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberInfo {
    /// Display name: 1 to 64 characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Alice Martin")]
    pub name: Option<String>,
    /// An `http` or `https` URL of at most 512 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "https://cdn.example.com/a/alice.png")]
    pub avatar_url: Option<String>,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "#1f5fbf")]
    pub color: Option<String>,
}

impl MemberInfo {
    /// Parses and validates a JSON value (a ticket claim or a request body); the error
    /// says what is wrong, for a 400 (or the ticket's 401) detail.
    pub fn parse(v: &serde_json::Value) -> Result<MemberInfo, String> {
        if v.to_string().len() > MAX_BYTES {
            return Err(format!("member info is larger than {MAX_BYTES} bytes"));
        }
        let info: MemberInfo =
            serde_json::from_value(v.clone()).map_err(|e| format!("member info: {e}"))?;
        info.validate()?;
        Ok(info)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(n) = &self.name {
            let len = n.chars().count();
            if n.trim().is_empty() || len > MAX_NAME {
                return Err(format!(
                    "member info name must be 1 to {MAX_NAME} characters"
                ));
            }
            if n.chars().any(char::is_control) {
                return Err("member info name must not contain control characters".into());
            }
        }
        if let Some(u) = &self.avatar_url {
            if u.len() > MAX_URL {
                return Err(format!(
                    "member info avatar_url is longer than {MAX_URL} bytes"
                ));
            }
            let ok = u.parse::<Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some_and(|a| !a.host().is_empty())
            });
            if !ok {
                return Err("member info avatar_url must be an absolute http or https URL".into());
            }
        }
        if let Some(c) = &self.color {
            let ok =
                c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err("member info color must be #rrggbb".into());
            }
        }
        Ok(())
    }

    /// The stored and carried form.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("member info serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_info_round_trips() {
        let v = json!({"name": "Zoë <b>", "avatar_url": "https://cdn.example.com/a.png?s=64", "color": "#A1b2C3"});
        let info = MemberInfo::parse(&v).unwrap();
        assert_eq!(info.to_value(), v);
        assert_eq!(
            MemberInfo::parse(&json!({})).unwrap(),
            MemberInfo::default()
        );
        assert!(MemberInfo::parse(&json!({"avatar_url": "http://localhost:8080/x"})).is_ok());
    }

    #[test]
    fn invalid_info_is_refused_with_a_reason() {
        let cases = [
            json!({"name": ""}),
            json!({"name": "   "}),
            json!({"name": "x".repeat(65)}),
            json!({"name": "a\u{0007}b"}),
            json!({"avatar_url": "javascript:alert(1)"}),
            json!({"avatar_url": "data:image/png;base64,AAAA"}),
            json!({"avatar_url": "//cdn.example.com/a.png"}),
            json!({"avatar_url": "ftp://cdn.example.com/a.png"}),
            json!({"avatar_url": format!("https://x.example/{}", "a".repeat(600))}),
            json!({"color": "red"}),
            json!({"color": "#12345g"}),
            json!({"color": "#1234567"}),
            json!({"nmae": "typo"}),
            json!({"name": 5}),
            json!("alice"),
            json!({"name": "a", "extra": "x".repeat(1100)}),
        ];
        for c in cases {
            assert!(MemberInfo::parse(&c).is_err(), "{c}");
        }
        // 64 characters of several bytes each are fine.
        assert!(MemberInfo::parse(&json!({"name": "é".repeat(64)})).is_ok());
    }
}
