//! `/v1/rooms/{room}/snapshot`: a room's latest state blob over HTTP, versioned and
//! content-hashed; the WebSocket `snapshot` message is the other way in.
//!
//! Deny by default, the same rule as `join` ([`crate::rooms::Rooms::decide`]): a grant
//! (role patterns, ticket claim, admin grant, or a room token in `X-Room-Token` /
//! `?room_token=`) admits the session; so does holding a WebSocket connection that joined
//! the room (on any node), since that join was admitted and is removed when the grant
//! is lost.

use super::drafts::precondition;
use crate::auth::Authed;
use crate::config::SnapshotsConfig;
use crate::error::{ApiError, ApiResult};
use crate::routes::edge;
use crate::routes::extract::{ApiBytes, ApiPath, ApiQuery};
use crate::routes::problems::{
    BodyErrors, ConflictErrors, ForbiddenErrors, InputErrors, MediaTypeErrors, NotFoundErrors,
    RateLimitErrors, ReadErrors, WriteErrors,
};
use crate::routes::schemas::Binary;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sessiond_core::clock::to_rfc3339;
use sessiond_core::snapshot::{validate_room, Snapshot, SnapshotWrite};
use sessiond_core::store::SnapshotPut;
use sessiond_core::Session;
use utoipa::ToSchema;

const MAX_CONTENT_TYPE: usize = 200;
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The route, limited to the configured snapshot size: a declared length over it is
/// refused up front, a body that grows over it while read fails its extractor.
pub fn router(cfg: &SnapshotsConfig) -> Router<AppState> {
    let r = Router::new().route(
        "/v1/rooms/{room}/snapshot",
        get(get_snapshot).put(put_snapshot),
    );
    edge::declared_length_limit(edge::body_limit(r, cfg.max_size), cfg.max_size as u64)
}

#[derive(Debug, Deserialize, Default)]
pub struct VersionQuery {
    version: Option<String>,
    /// A room token, for clients that cannot set `X-Room-Token`.
    room_token: Option<String>,
}

/// The header carrying a room token.
pub const ROOM_TOKEN_HEADER: &str = "x-room-token";

/// The room token of a request: the header, else the query parameter.
fn room_token<'a>(headers: &'a HeaderMap, q: &'a VersionQuery) -> Option<&'a str> {
    headers
        .get(ROOM_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(q.room_token.as_deref())
}

/// Snapshot metadata as the API shows it (no data).
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotMeta {
    #[schema(example = "r1")]
    pub room: String,
    pub version: u64,
    /// SHA-256 of the bytes, hex (also the ETag).
    pub hash: String,
    pub size: u64,
    #[schema(example = "application/octet-stream")]
    pub content_type: String,
    #[schema(example = "2025-01-01T00:00:00Z")]
    pub updated_at: String,
}

impl From<&Snapshot> for SnapshotMeta {
    fn from(s: &Snapshot) -> Self {
        SnapshotMeta {
            room: s.room.clone(),
            version: s.version,
            hash: s.hash.clone(),
            size: s.size,
            content_type: s.content_type.clone(),
            updated_at: to_rfc3339(s.updated_at),
        }
    }
}

/// Snapshot metadata as JSON (the `current` of a conflict).
pub fn meta_json(s: &Snapshot) -> Value {
    serde_json::to_value(SnapshotMeta::from(s)).unwrap_or(Value::Null)
}

/// Whether `session` may use `room`'s snapshot over HTTP (see the module docs). Also
/// returns whether the room has members anywhere (for the retention of HTTP writes).
pub async fn authorize(
    state: &AppState,
    session: &Session,
    room: &str,
    token: Option<&str>,
) -> ApiResult<bool> {
    validate_room(room)?;
    let handle = session.handle.to_string();
    let local = state.hub.room_members(room).unwrap_or_default();
    // Cluster mode: members connected to other nodes count too (empty on a single node).
    let remote = state.presence.remote_members(room).await?;
    let occupied = !local.is_empty() || !remote.is_empty();
    let joined = session.is_active() && local.iter().chain(&remote).any(|m| m.handle == handle);
    if !joined {
        state.rooms.decide(session, room, token, None).await?;
    }
    Ok(occupied)
}

/// The room's latest snapshot: its bytes with the stored Content-Type.
#[utoipa::path(get, path = "/v1/rooms/{room}/snapshot", tag = "snapshots",
    params(("room" = String, Path, description = "Room id"),
           ("X-Room-Token" = Option<String>, Header, description = "A room token naming this room (share link)"),
           ("room_token" = Option<String>, Query, description = "A room token, instead of X-Room-Token")),
    responses(
        (status = 200, description = "The snapshot's bytes, with its stored Content-Type", body = inline(Binary), content_type = "application/octet-stream",
         headers(("ETag" = String, description = "The content hash, quoted"),
                 ("X-Snapshot-Version" = u64, description = "The snapshot's version"))),
        ReadErrors, InputErrors, ForbiddenErrors, NotFoundErrors,
    ))]
async fn get_snapshot(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&state, &auth.session, &room, room_token(&headers, &q)).await?;
    let s = state
        .store
        .get_snapshot(&room)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut resp = Body::from(s.data).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&s.content_type)
            .unwrap_or(HeaderValue::from_static(DEFAULT_CONTENT_TYPE)),
    );
    h.insert("x-snapshot-version", HeaderValue::from(s.version));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", s.hash)) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    Ok(resp)
}

/// Replaces the room's snapshot (conditional on the version it replaces); members are told over WebSocket.
#[utoipa::path(put, path = "/v1/rooms/{room}/snapshot", tag = "snapshots",
    params(("room" = String, Path, description = "Room id"), ("If-Match" = Option<String>, Header, description = "The version this write replaces: \"N\" (0 for the first write); or use ?version=N"), ("version" = Option<u64>, Query, description = "The version this write replaces, instead of If-Match"),
           ("X-Room-Token" = Option<String>, Header, description = "A room token naming this room (share link)"),
           ("room_token" = Option<String>, Query, description = "A room token, instead of X-Room-Token")),
    request_body(content = inline(Binary), content_type = "application/octet-stream",
        description = "The snapshot's bytes (at most the configured max_size); any Content-Type is kept"),
    responses(
        (status = 200, description = "Written", body = SnapshotMeta,
         headers(("ETag" = String, description = "The content hash, quoted"),
                 ("X-Snapshot-Version" = u64, description = "The new version"))),
        WriteErrors, BodyErrors, ConflictErrors, MediaTypeErrors, RateLimitErrors,
    ))]
async fn put_snapshot(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    headers: HeaderMap,
    // Snapshots are written atomically as one value, so the (bounded) body is read whole.
    ApiBytes(data): ApiBytes,
) -> ApiResult<Response> {
    let occupied = authorize(&state, &auth.session, &room, room_token(&headers, &q)).await?;
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => DEFAULT_CONTENT_TYPE.to_owned(),
        Some(v) => {
            let ct = v.to_str().unwrap_or("").trim();
            // `sessiond-enc` parameters mark encrypted data (see crate::crypto).
            if ct.is_empty()
                || ct.len() > MAX_CONTENT_TYPE
                || ct.to_ascii_lowercase().contains("sessiond-enc")
                || !ct.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            {
                return Err(ApiError::UnsupportedMediaType(format!("{ct:?}")));
            }
            ct.to_owned()
        }
    };
    let version = precondition(&headers, q.version.as_deref(), None, "version")?;
    let now = state.clock.now();
    let retention = i64::try_from(state.config.snapshots.retention.as_millis()).unwrap_or(i64::MAX);
    // Nobody is in the room to keep it alive: start its retention right away.
    let retain_until = (!occupied).then(|| now.saturating_add(retention));
    let by = auth.session.handle.to_string();
    match state
        .quotas
        .put_snapshot(
            &auth.session,
            SnapshotPut {
                room: &room,
                expected_version: version,
                data: &data,
                content_type: &content_type,
                // The gate records the principal.
                by: None,
                retain_until,
                now,
            },
        )
        .await?
    {
        SnapshotWrite::Written(s) => {
            metrics::counter!("sessiond_snapshot_writes_total", "via" => "http").increment(1);
            let fx = state
                .hub
                .snapshot_written(&room, s.version, &s.hash, Some(&by), None);
            crate::ws::tasks::apply(&state, fx);
            let mut resp = Json(SnapshotMeta::from(&s)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", s.hash)) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            resp.headers_mut()
                .insert("x-snapshot-version", HeaderValue::from(s.version));
            Ok(resp)
        }
        SnapshotWrite::Conflict(cur) => Err(ApiError::Conflict {
            current: cur.as_ref().map_or(Value::Null, meta_json),
        }),
    }
}
