//! Room access, deny by default: the service that gathers the inputs of
//! [`sessiond_core::rooms::may_join`] (the role's patterns, the admin grant stored in the
//! session's data bag, a verified room token) and manages admin grants and room tokens.
//! The WebSocket `join`, the snapshot routes and the re-check after a lost grant all ask
//! [`Rooms::decide`]; nothing else decides.
//!
//! Admin grants live in the session's data bag under a reserved key per room
//! ([`sessiond_core::rooms::grant_key`]): every backend already stores it durably and
//! shares it across nodes, it ends and is purged with the session, and one key per room
//! makes grants and revokes single writes that never race each other. A grant "by
//! principal" is written to every live session of the principal.
//!
//! Room tokens are HS256 JWTs under the ticket secret with the audience
//! [`ROOM_TOKEN_AUD`] and a `room` claim, but no `sub`/`role`: a room token is never a
//! sign-in ticket, and a ticket never a room token.

use crate::bus::{Bus, Event};
use crate::config::Config;
use crate::error::ApiError;
use crate::sessions::{SessionError, SessionService};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sessiond_core::rooms::{grant_key, may_join, Grant, Grants};
use sessiond_core::store::SessionFilter;
use sessiond_core::{Handle, Session, Store, Timestamp};
use std::sync::Arc;

/// The audience of room tokens (tickets never carry it).
pub const ROOM_TOKEN_AUD: &str = "sessiond:room";
/// Longest room token accepted.
const MAX_TOKEN_LEN: usize = 4096;
/// Sessions written per store page by a grant or revoke by principal.
const PAGE: usize = 500;

/// The claims of a room token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomClaims {
    /// The one room the token opens.
    pub room: String,
    /// Always [`ROOM_TOKEN_AUD`].
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// Why a session may not use a room.
#[derive(Debug, thiserror::Error)]
pub enum RoomDenied {
    /// No grant admits the session.
    #[error("no grant admits this session to the room")]
    NoGrant,
    /// A room token was presented but is forged, expired, or for another room.
    #[error("room token refused: {0}")]
    BadToken(&'static str),
    /// The admin grants could not be read (or the session ended).
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<RoomDenied> for ApiError {
    fn from(e: RoomDenied) -> Self {
        match e {
            RoomDenied::NoGrant => {
                ApiError::RoomNotAllowed("no grant admits this session to this room".into())
            }
            RoomDenied::BadToken(why) => {
                ApiError::RoomNotAllowed(format!("room token refused: {why}"))
            }
            RoomDenied::Session(e) => e.into(),
        }
    }
}

/// Room access for one server.
pub struct Rooms {
    sessions: Arc<SessionService>,
    store: Arc<dyn Store>,
    bus: Bus,
    key: Option<(DecodingKey, EncodingKey)>,
    token_max_age_s: i64,
    leeway_s: i64,
}

impl Rooms {
    pub fn new(
        config: &Config,
        sessions: Arc<SessionService>,
        store: Arc<dyn Store>,
        bus: Bus,
    ) -> Rooms {
        let secret = config.tickets.hs256_secret.as_bytes();
        Rooms {
            sessions,
            store,
            bus,
            key: (!secret.is_empty()).then(|| {
                (
                    DecodingKey::from_secret(secret),
                    EncodingKey::from_secret(secret),
                )
            }),
            token_max_age_s: i64::try_from(config.rooms.token_max_age.as_secs())
                .unwrap_or(i64::MAX)
                .max(1),
            leeway_s: i64::try_from(config.tickets.leeway.as_secs()).unwrap_or(0),
        }
    }

    /// Whether `session` may use `room` now: presenting `token` (a room token), or having
    /// joined earlier with one naming this room that expires at `token_exp` (ms).
    pub async fn decide(
        &self,
        session: &Session,
        room: &str,
        token: Option<&str>,
        token_exp: Option<Timestamp>,
    ) -> Result<Grant, RoomDenied> {
        let now = self.sessions.now();
        let policy = self.sessions.policy(&session.role);
        let mut grants = Grants {
            role: &policy.rooms,
            admin: false,
            token_room: token_exp.filter(|e| *e > now).map(|_| room),
        };
        if let Some(g) = may_join(session, room, &grants) {
            return Ok(g);
        }
        if !session.is_active() {
            return Err(RoomDenied::NoGrant);
        }
        let mut bad_token = None;
        if let Some(t) = token {
            match self.verify_token(t, now) {
                Ok(c) if c.room == room => {
                    grants.token_room = Some(room);
                    if let Some(g) = may_join(session, room, &grants) {
                        return Ok(g);
                    }
                }
                Ok(_) => bad_token = Some("the token is for another room"),
                Err(e) => bad_token = Some(e),
            }
        }
        grants.admin = self
            .sessions
            .get_data(&session.handle, &grant_key(room))
            .await?
            .is_some();
        match may_join(session, room, &grants) {
            Some(g) => Ok(g),
            None => Err(bad_token.map_or(RoomDenied::NoGrant, RoomDenied::BadToken)),
        }
    }

    /// Verifies a room token at `now`; the error says why (never echoing the token).
    pub fn verify_token(&self, token: &str, now: Timestamp) -> Result<RoomClaims, &'static str> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err("malformed room token");
        }
        let (key, _) = self
            .key
            .as_ref()
            .ok_or("room tokens need tickets.hs256_secret")?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed room token")?;
        // HS256 only: the one key room tokens are signed with, so `alg` cannot switch it.
        if header.alg != Algorithm::HS256 {
            return Err("unsupported room token algorithm");
        }
        let mut v = Validation::new(Algorithm::HS256);
        // Time is checked below against the server clock.
        v.validate_exp = false;
        v.set_audience(&[ROOM_TOKEN_AUD]);
        v.set_required_spec_claims(&["exp", "aud"]);
        let claims = jsonwebtoken::decode::<RoomClaims>(token, key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad room token signature",
                _ => "malformed room token or claims",
            })?
            .claims;
        let now_s = now.div_euclid(1000);
        if claims.exp.saturating_add(self.leeway_s) <= now_s {
            return Err("room token expired");
        }
        let issued = claims.iat.unwrap_or(now_s);
        if issued > now_s.saturating_add(self.leeway_s)
            || claims.exp.saturating_sub(issued)
                > self.token_max_age_s.saturating_add(self.leeway_s)
        {
            return Err("room token lives longer than rooms.token_max_age");
        }
        Ok(claims)
    }

    /// Mints a room token for `room`, valid `ttl_s` seconds (clamped to
    /// `rooms.token_max_age`). Returns the token and its expiry (ms).
    pub fn mint_token(
        &self,
        room: &str,
        ttl_s: i64,
        now: Timestamp,
    ) -> Result<(String, Timestamp), String> {
        let (_, key) = self
            .key
            .as_ref()
            .ok_or("no tickets.hs256_secret is configured, so room tokens cannot be minted")?;
        let now_s = now.div_euclid(1000);
        let claims = RoomClaims {
            room: room.to_owned(),
            aud: ROOM_TOKEN_AUD.to_owned(),
            exp: now_s.saturating_add(ttl_s.clamp(1, self.token_max_age_s)),
            iat: Some(now_s),
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| format!("room token signing failed: {e}"))?;
        Ok((jwt, claims.exp.saturating_mul(1000)))
    }

    /// Longest room-token lifetime, seconds.
    pub fn token_max_age_s(&self) -> i64 {
        self.token_max_age_s
    }

    /// Grants `room` to a live session.
    pub async fn grant(&self, handle: &Handle, room: &str) -> Result<(), SessionError> {
        let v = serde_json::json!({ "granted_at": self.sessions.now() });
        self.sessions
            .put_server_data(handle, &grant_key(room), &v)
            .await
    }

    /// Revokes the admin grant of `room`; the session's connections on every node are
    /// re-checked at once (and leave the room if no other grant holds). Returns whether
    /// a grant existed.
    pub async fn revoke(&self, handle: &Handle, room: &str) -> Result<bool, SessionError> {
        let existed = match self.sessions.delete_data(handle, &grant_key(room)).await {
            Ok(()) => true,
            Err(SessionError::NotFound) => false,
            Err(e) => return Err(e),
        };
        // Published even without a stored grant: re-checking is harmless and idempotent.
        self.access_changed(*handle);
        Ok(existed)
    }

    /// Tells every node to re-check the rooms of `handle`'s connections.
    pub fn access_changed(&self, handle: Handle) {
        self.bus.publish(Event::RoomAccessChanged { handle });
    }

    /// Grants (`grant`) or revokes `room` for every live session of `principal`; returns
    /// how many sessions were changed.
    pub async fn by_principal(
        &self,
        principal: &str,
        room: &str,
        grant: bool,
    ) -> Result<usize, SessionError> {
        let mut filter = SessionFilter {
            principal: Some(principal.to_owned()),
            active_only: true,
            limit: PAGE,
            ..Default::default()
        };
        let mut n = 0;
        loop {
            let page = self.store.list_sessions(&filter).await?;
            for s in &page {
                let changed = if grant {
                    match self.grant(&s.handle, room).await {
                        Ok(()) => true,
                        // Ended meanwhile: nothing to grant.
                        Err(SessionError::Ended { .. } | SessionError::Unauthenticated) => false,
                        Err(e) => return Err(e),
                    }
                } else {
                    self.revoke(&s.handle, room).await?
                };
                n += usize::from(changed);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => filter.after = Some(last.handle),
                _ => return Ok(n),
            }
        }
    }
}
