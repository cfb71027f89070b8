//! HTTP side of the integration harness: a browser-like client with its own cookie jar,
//! cookie and problem+json helpers, and sign-in tickets signed like an identity provider
//! would sign them.

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest any single test request may take (a hang fails the test, not the suite).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client without cookies and with [`REQUEST_TIMEOUT`].
pub fn client() -> Client {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("http client")
}

/// The session token in a response's `Set-Cookie`, if any (cookie `sessiond` of dev
/// mode, or `__Host-sessiond` of a Secure server).
pub fn token_of(h: &HeaderMap) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix("sessiond=")
                .or_else(|| v.strip_prefix("__Host-sessiond="))
        })
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .filter(|t| !t.is_empty())
}

/// The raw `Set-Cookie` header.
pub fn set_cookie(h: &HeaderMap) -> String {
    h.get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The `Cookie` header value carrying a session token.
pub fn cookie(token: &str) -> String {
    format!("sessiond={token}")
}

/// GET with a session cookie.
pub async fn get(url: &str, token: &str) -> Response {
    client()
        .get(url)
        .header("cookie", cookie(token))
        .send()
        .await
        .expect("request")
}

/// POST (empty body) with a session cookie.
pub async fn post(url: &str, token: &str) -> Response {
    client()
        .post(url)
        .header("cookie", cookie(token))
        .send()
        .await
        .expect("request")
}

/// Asserts a problem+json answer with `status` and `code`; returns the body.
pub async fn problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let v: Value = r.json().await.expect("problem json");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status);
    v
}

/// The audience test servers expect (`tickets.audience`'s default).
pub const TICKET_AUDIENCE: &str = "sessiond";

/// A sign-in ticket for `user` signed with `secret` (HS256, valid two minutes, audience
/// [`TICKET_AUDIENCE`], a fresh `jti`: it signs in once), as the application's identity
/// provider would mint it; `rooms` restricts the rooms.
pub fn hs256_ticket(secret: &str, user: &str, role: &str, rooms: Option<&[&str]>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = json!({
        "sub": user, "role": role, "iat": now, "exp": now + 120,
        "aud": TICKET_AUDIENCE, "jti": sessiond_core::token::random_id(16),
    });
    hs256_claims(secret, claims, rooms)
}

/// Signs arbitrary `claims` (plus `rooms` when given) with `secret`: for tests that
/// forge, replay or bend a ticket.
pub fn hs256_claims(secret: &str, mut claims: Value, rooms: Option<&[&str]>) -> String {
    if let Some(r) = rooms {
        claims["rooms"] = json!(r);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign ticket")
}

/// A whole answer, read at once.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The problem+json `code`, or "".
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

/// One browser tab: a client over a cookie jar (tabs of one browser share the jar).
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    jar: Arc<Jar>,
    http: Client,
}

impl Browser {
    /// A browser with an empty cookie jar, talking to `base` (`http://host:port`).
    pub fn new(base: &str) -> Browser {
        Self::with_jar(base, Arc::new(Jar::default()))
    }

    fn with_jar(base: &str, jar: Arc<Jar>) -> Browser {
        let http = Client::builder()
            .cookie_provider(jar.clone())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("client");
        Browser {
            base: base.to_owned(),
            jar,
            http,
        }
    }

    /// Another tab of the same browser (same cookies, its own connection pool).
    pub fn tab(&self) -> Browser {
        Browser::with_jar(&self.base, self.jar.clone())
    }

    /// The underlying client (cookies included), for requests the helpers do not cover.
    pub fn http(&self) -> &Client {
        &self.http
    }

    /// Sends a request; `body` is (content type, bytes); `if_match` a version.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        if_match: Option<u64>,
    ) -> Resp {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some((ct, bytes)) = body {
            rb = rb.header("content-type", ct).body(bytes);
        }
        if let Some(m) = if_match {
            rb = rb.header("if-match", format!("\"{m}\""));
        }
        let r = rb.send().await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Sends a JSON body.
    pub async fn json_req(&self, method: Method, path: &str, v: Value) -> Resp {
        self.send(
            method,
            path,
            Some(("application/json", v.to_string().into_bytes())),
            None,
        )
        .await
    }

    /// Creates an anonymous session (its cookie lands in the jar).
    pub async fn new_session(&self) {
        let r = self.json_req(Method::POST, "/v1/session", json!({})).await;
        assert!(
            r.status.is_success(),
            "create session: {} {}",
            r.status,
            r.json()
        );
    }

    /// The principal of the current session.
    pub async fn principal(&self) -> String {
        let r = self.send(Method::GET, "/v1/session", None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        r.json()["principal"]
            .as_str()
            .expect("principal")
            .to_owned()
    }

    /// Signs in with `ticket` and checks the session now names `user`.
    pub async fn sign_in_with(&self, ticket: &str, user: &str) {
        let r = self
            .json_req(
                Method::POST,
                "/v1/session/signin",
                json!({"ticket": ticket}),
            )
            .await;
        assert!(r.status.is_success(), "sign in: {} {}", r.status, r.json());
        assert_eq!(r.json()["principal"], format!("user:{user}"));
    }

    /// Signs out (ends the session).
    pub async fn sign_out(&self) {
        let r = self.send(Method::DELETE, "/v1/session", None, None).await;
        assert!(r.status.is_success(), "sign out: {}", r.status);
    }

    /// The `Cookie` header this browser sends to its server.
    pub fn cookie_header(&self) -> String {
        let url = self.base.parse().expect("url");
        self.jar
            .cookies(&url)
            .expect("cookie")
            .to_str()
            .expect("ascii")
            .to_owned()
    }
}
