//! The session token a request presents: `Authorization: Bearer`, else the session
//! cookie. Kept only for the request's lifetime; its `Debug` never shows it.

use axum::http::{header, HeaderMap};
use sessiond_core::{Token, TokenHash};

/// A presented token (not yet checked).
#[derive(Clone)]
pub(crate) struct Presented {
    /// The clear token: the remote mode forwards it to the server as a bearer token.
    raw: String,
    /// Whether it came from the cookie: such requests need the origin check (CSRF).
    pub(crate) from_cookie: bool,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("raw", &"<redacted>")
            .field("from_cookie", &self.from_cookie)
            .finish()
    }
}

impl Presented {
    /// The token of `headers`, if any: bearer first, then cookie `cookie_name`.
    pub(crate) fn of(headers: &HeaderMap, cookie_name: &str) -> Option<Presented> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        if let Some(t) = bearer {
            return Some(Presented {
                raw: t.trim().to_owned(),
                from_cookie: false,
            });
        }
        sessiond_server::auth::cookie_value(headers, cookie_name).map(|raw| Presented {
            raw,
            from_cookie: true,
        })
    }

    /// The token's hash; `None` when it is not shaped like a token (it names nothing).
    pub(crate) fn hash(&self) -> Option<TokenHash> {
        Token::parse(&self.raw).map(|t| t.hash())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_wins_over_the_cookie_and_debug_hides_the_token() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; sessiond=from-cookie".parse().unwrap());
        let p = Presented::of(&h, "sessiond").unwrap();
        assert!(p.from_cookie);
        assert_eq!(p.as_str(), "from-cookie");
        h.insert(header::AUTHORIZATION, "Bearer from-header".parse().unwrap());
        let p = Presented::of(&h, "sessiond").unwrap();
        assert!(!p.from_cookie);
        assert_eq!(p.as_str(), "from-header");
        assert!(!format!("{p:?}").contains("from-header"));
        assert!(Presented::of(&HeaderMap::new(), "sessiond").is_none());
    }
}
