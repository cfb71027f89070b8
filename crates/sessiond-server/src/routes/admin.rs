//! `/v1/admin/*` for the app's backend and operators (API key): list, inspect and revoke
//! sessions, sign a principal out everywhere, read the audit trail, mint sign-in tickets.

use crate::auth::{Admin, Reader, TicketMinter};
use crate::error::{ApiError, ApiResult};
use crate::member_info::MemberInfo;
use crate::routes::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::problems::{AdminErrors, BodyErrors, InputErrors, NotFoundErrors};
use crate::routes::session::{session_view, SessionView};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
use sessiond_core::clock::to_rfc3339;
use sessiond_core::store::SessionFilter;
use sessiond_core::{EndReason, Handle, Session, Timestamp};
use utoipa::{IntoParams, ToSchema};

/// Page size when none is asked for, and the largest page.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Sessions ended per store page by "sign out everywhere".
const END_PAGE: usize = 500;
/// Default lifetime of a minted ticket.
const DEFAULT_TICKET_TTL: i64 = 60;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/sessions", get(list_sessions))
        .route(
            "/v1/admin/sessions/{handle}",
            get(get_session).delete(revoke_session),
        )
        .route("/v1/admin/principals/{id}/sessions", delete(end_principal))
        .route("/v1/admin/principals/{id}/info", put(put_member_info))
        .route("/v1/admin/audit", get(audit))
        .route("/v1/admin/tickets", post(mint_ticket))
}

fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

fn parse_handle(s: &str) -> ApiResult<Handle> {
    Handle::parse(s).ok_or_else(|| ApiError::invalid("not a session handle"))
}

/// An admin's view: the client's view plus origin and live connections. Cached activity
/// (not yet flushed) wins over the stored record.
fn admin_view(state: &AppState, s: &Session) -> SessionView {
    let s = state
        .sessions
        .cached(&s.handle)
        .unwrap_or_else(|| s.clone());
    let mut v = session_view(state, &s);
    v.client_ip = s.client_ip.clone();
    v.user_agent = s.user_agent.as_deref().map(str::to_owned);
    v.connections = Some(state.hub.connection_count(&s.handle));
    v
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// Exact principal, e.g. `user:alice`.
    principal: Option<String>,
    role: Option<String>,
    /// `active` (default) or `all`.
    state: Option<String>,
    /// Cursor: the `next` of the previous page.
    after: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    /// Pass back as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// Sessions ordered by handle, filtered and paged.
#[utoipa::path(get, path = "/v1/admin/sessions", tag = "admin", params(SessionsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = SessionPage), AdminErrors, InputErrors))]
pub async fn list_sessions(
    _: Reader,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SessionsQuery>,
) -> ApiResult<Json<SessionPage>> {
    let active_only = match q.state.as_deref() {
        None | Some("") | Some("active") => true,
        Some("all") => false,
        Some(_) => return Err(ApiError::invalid("state must be active or all")),
    };
    let limit = page_limit(q.limit);
    let filter = SessionFilter {
        principal: q.principal.filter(|p| !p.is_empty()),
        role: q.role.filter(|r| !r.is_empty()),
        active_only,
        after: q
            .after
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(parse_handle)
            .transpose()?,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut found = state.store.list_sessions(&filter).await?;
    let next = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|s| s.handle.to_string())
    } else {
        None
    };
    let sessions = found.iter().map(|s| admin_view(&state, s)).collect();
    Ok(Json(SessionPage { sessions, next }))
}

/// One session by handle (ended ones included).
#[utoipa::path(get, path = "/v1/admin/sessions/{handle}", tag = "admin",
    params(("handle" = String, Path)), security(("api_key" = [])),
    responses((status = 200, body = SessionView), AdminErrors, NotFoundErrors))]
pub async fn get_session(
    _: Reader,
    State(state): State<AppState>,
    ApiPath(handle): ApiPath<String>,
) -> ApiResult<Json<SessionView>> {
    let h = parse_handle(&handle).map_err(|_| ApiError::NotFound)?;
    let s = state.sessions.get(&h).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(admin_view(&state, &s)))
}

/// Revokes a session: it ends with reason `revoked`; its connections are told and closed.
#[utoipa::path(delete, path = "/v1/admin/sessions/{handle}", tag = "admin",
    params(("handle" = String, Path)), security(("api_key" = [])),
    responses((status = 204, description = "Revoked (or had already ended)"), AdminErrors, NotFoundErrors))]
pub async fn revoke_session(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(handle): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let h = parse_handle(&handle).map_err(|_| ApiError::NotFound)?;
    state.sessions.revoke_by(&h, Some(&admin.key)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ended {
    /// Sessions this call ended.
    pub ended: usize,
}

/// Signs a principal out everywhere: every active session ends with reason `revoked`.
#[utoipa::path(delete, path = "/v1/admin/principals/{id}/sessions", tag = "admin",
    params(("id" = String, Path, description = "The principal, e.g. user:alice")), security(("api_key" = [])),
    responses((status = 200, body = Ended), AdminErrors, InputErrors))]
pub async fn end_principal(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Ended>> {
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::invalid("principal must be 1 to 256 characters"));
    }
    let mut filter = SessionFilter {
        principal: Some(id),
        active_only: true,
        limit: END_PAGE,
        ..Default::default()
    };
    let mut ended = 0;
    loop {
        let page = state.store.list_sessions(&filter).await?;
        for s in &page {
            if state
                .sessions
                .end_by(&s.handle, EndReason::Revoked, Some(&admin.key))
                .await?
                .is_some()
            {
                ended += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() == END_PAGE => filter.after = Some(last.handle),
            _ => break,
        }
    }
    Ok(Json(Ended { ended }))
}

/// `{"sessions": n}`: how many live sessions took the member info.
#[derive(Debug, Serialize, ToSchema)]
pub struct InfoSet {
    pub sessions: usize,
}

/// Sets a principal's member info (name, avatar URL, colour; at most 1 KiB) in every
/// one of its live sessions: connections opened from then on carry it on presence
/// lists and join events. A sign-in ticket's `info` claim sets it for the session it
/// signs in. 400 for invalid info (the `detail` says what), nothing is changed then.
#[utoipa::path(put, path = "/v1/admin/principals/{id}/info", tag = "admin",
    params(("id" = String, Path, description = "The principal, e.g. user:alice")),
    request_body = MemberInfo, security(("api_key" = [])),
    responses((status = 200, body = InfoSet), AdminErrors, BodyErrors))]
pub async fn put_member_info(
    _: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<InfoSet>> {
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::invalid("principal must be 1 to 256 characters"));
    }
    let info = MemberInfo::parse(&body).map_err(ApiError::invalid)?;
    let sessions = state
        .sessions
        .put_principal_data(&id, crate::member_info::DATA_KEY, &info.to_value())
        .await?;
    Ok(Json(InfoSet { sessions }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    principal: Option<String>,
    handle: Option<String>,
    /// `created`, `signed_in`, `token_rotated`, `renewed`, `ended`, …
    kind: Option<String>,
    /// `signed_out`, `idle_timeout`, `absolute_timeout`, `revoked`, `heartbeat_lost`.
    reason: Option<String>,
    /// RFC 3339 time or milliseconds since the epoch (inclusive).
    since: Option<String>,
    /// RFC 3339 time or milliseconds since the epoch (exclusive).
    until: Option<String>,
    /// Events with a smaller id (newest first): the `next` of the previous page.
    before: Option<i64>,
    /// Events with a larger id, oldest first (following the trail).
    after: Option<i64>,
    limit: Option<usize>,
}

/// An audit event on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub handle: Option<String>,
    pub principal: Option<String>,
    pub role: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub last_activity_at: Option<String>,
    pub reason: Option<String>,
    /// The event's own details; `null` for events that have none.
    #[schema(value_type = Option<Object>)]
    pub detail: serde_json::Value,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> Self {
        AuditView {
            id: e.id,
            at: to_rfc3339(e.at),
            kind: e.kind.as_str().to_owned(),
            handle: e.handle,
            principal: e.principal,
            role: e.role,
            client_ip: e.client_ip,
            user_agent: e.user_agent,
            last_activity_at: e.last_activity_at.map(to_rfc3339),
            reason: e.reason,
            detail: e.detail,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditView>,
    /// The cursor for the next page (`before`, or `after` when following); null when done.
    pub next: Option<i64>,
}

/// The audit trail, newest first (oldest first with `after`), filtered and paged.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(AuditQuery), security(("api_key" = [])),
    responses((status = 200, body = AuditPage), AdminErrors, InputErrors))]
pub async fn audit(
    _: Reader,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let time = |s: Option<String>, what: &str| -> ApiResult<Option<Timestamp>> {
        nonempty(s)
            .map(|s| {
                parse_time(&s).ok_or_else(|| {
                    ApiError::invalid(format!("{what} must be RFC 3339 or milliseconds"))
                })
            })
            .transpose()
    };
    let kind = nonempty(q.kind)
        .map(|k| {
            AuditKind::parse(&k)
                .ok_or_else(|| ApiError::invalid(format!("unknown audit kind {k:?}")))
        })
        .transpose()?;
    let limit = page_limit(q.limit);
    let filter = AuditFilter {
        principal: nonempty(q.principal),
        handle: nonempty(q.handle),
        kind,
        reason: nonempty(q.reason),
        since: time(q.since, "since")?,
        until: time(q.until, "until")?,
        before_id: q.before,
        after_id: q.after,
        limit,
    };
    let events = state.store.query_audit(&filter).await?;
    let next = if events.len() == limit {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        events: events.into_iter().map(AuditView::from).collect(),
        next,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    pub user_id: String,
    pub role: String,
    #[serde(default)]
    pub rooms: Option<Vec<String>>,
    /// Seconds the ticket is valid (default 60, at most `tickets.max_age`).
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    /// Member info carried as the ticket's `info` claim (presence shows it).
    #[serde(default)]
    pub info: Option<MemberInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketResponse {
    pub ticket: String,
}

/// Mints an HS256 sign-in ticket with the configured secret (400 if none is configured).
#[utoipa::path(post, path = "/v1/admin/tickets", tag = "admin", request_body = TicketRequest,
    security(("api_key" = [])),
    responses((status = 200, body = TicketResponse), AdminErrors, BodyErrors))]
pub async fn mint_ticket(
    _: TicketMinter,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TicketRequest>,
) -> ApiResult<Json<TicketResponse>> {
    Ok(Json(TicketResponse {
        ticket: mint(
            &state,
            &req.user_id,
            &req.role,
            req.rooms,
            req.info,
            req.ttl_seconds,
        )?,
    }))
}

/// Validates a ticket request and mints it (shared with the dev demo endpoint).
pub fn mint(
    state: &AppState,
    user_id: &str,
    role: &str,
    rooms: Option<Vec<String>>,
    info: Option<MemberInfo>,
    ttl: Option<i64>,
) -> ApiResult<String> {
    crate::tickets::validate_user_id(user_id).map_err(ApiError::invalid)?;
    if let Some(info) = &info {
        MemberInfo::parse(&info.to_value()).map_err(ApiError::invalid)?;
    }
    if state.sessions.policies().get(role).is_none() {
        return Err(ApiError::invalid(format!("unknown role {role:?}")));
    }
    if let Some(rooms) = &rooms {
        if rooms.len() > crate::tickets::MAX_ROOMS
            || rooms
                .iter()
                .any(|r| sessiond_core::rooms::validate_pattern(r).is_err())
        {
            return Err(ApiError::invalid(
                "rooms must be at most 256 room patterns (a room id, optionally ending in *)",
            ));
        }
    }
    let ttl = ttl.unwrap_or(DEFAULT_TICKET_TTL);
    if ttl < 1 || ttl > state.tickets.max_ttl_s() {
        return Err(ApiError::invalid(format!(
            "ttl_seconds must be 1 to {}",
            state.tickets.max_ttl_s()
        )));
    }
    state
        .tickets
        .mint(user_id, role, rooms, info.as_ref(), ttl, state.clock.now())
}

/// Parses milliseconds since the epoch or an RFC 3339 time (`Z` or `±HH:MM` offset,
/// optional fraction).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && rest.is_ascii()
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant), the inverse of the core's formatter.
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_time_accepts_rfc3339_and_ms() {
        assert_eq!(parse_time("0"), Some(0));
        assert_eq!(parse_time("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(
            parse_time("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("2000-02-29T00:00:00.000Z"),
            Some(951_782_400_000)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500)
        );
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn parse_time_inverts_the_formatter() {
        for t in [
            0i64,
            86_399_999,
            951_782_400_000,
            1_700_000_000_123,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_time(&to_rfc3339(t)), Some(t));
        }
    }
}
