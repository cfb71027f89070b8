//! `/v1/drafts`: unsent text and attachments per (principal, conversation).
//!
//! The principal always comes from the authenticated session, never from the request, so
//! another principal's drafts are simply absent (404). Every write names the seq it
//! replaces (`If-Match: "N"`, `?seq=N` or the JSON body); a stale one is answered 409
//! with the current draft and changes nothing.

use crate::auth::Authed;
use crate::config::DraftsConfig;
use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::edge;
use crate::routes::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::problems::{
    BodyErrors, ConflictErrors, InputErrors, MediaTypeErrors, NotFoundErrors, RateLimitErrors,
    ReadErrors, WriteErrors,
};
use crate::routes::schemas::Binary;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sessiond_core::clock::to_rfc3339;
use sessiond_core::draft::{
    validate_attachment_name, validate_conversation, AttachmentLimits, AttachmentMeta, Draft,
    DraftWrite,
};
use sessiond_core::store::AttachmentPut;
use sessiond_core::store::ByteStream;
use utoipa::ToSchema;

/// Longest `Content-Type` accepted for an attachment.
const MAX_CONTENT_TYPE: usize = 200;
/// Slack over `max_text_bytes` for the JSON around the text and its escapes.
const JSON_OVERHEAD: usize = 4096;

/// The routes, with their body limits: the JSON around the longest text for text writes;
/// attachments are streamed to the store, which enforces their size as they arrive.
pub fn router(cfg: &DraftsConfig) -> Router<AppState> {
    let text = Router::new().route("/v1/drafts", get(list)).route(
        "/v1/drafts/{conversation}",
        get(get_one).put(put_text).delete(delete),
    );
    let attachments = Router::new().route(
        "/v1/drafts/{conversation}/attachments/{name}",
        get(get_attachment)
            .put(put_attachment)
            .delete(delete_attachment),
    );
    let text_limit = cfg
        .max_text_bytes
        .saturating_mul(6)
        .saturating_add(JSON_OVERHEAD);
    edge::body_limit(text, text_limit).merge(edge::declared_length_limit(
        attachments,
        cfg.max_attachment_size,
    ))
}

/// `?seq=N` on writes.
#[derive(Debug, Deserialize, Default)]
pub struct SeqQuery {
    seq: Option<String>,
}

/// Body of `PUT /v1/drafts/{conversation}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutText {
    /// At most the configured `max_text_bytes`, no NUL.
    pub text: String,
    /// The seq this write replaces (or If-Match / `?seq=`).
    #[serde(default)]
    pub seq: Option<u64>,
}

/// The number in `If-Match` (`"N"`, `W/"N"` or `N`), if the header is present.
pub(crate) fn if_match(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let bad = || ApiError::invalid("If-Match must name a seq or version: \"N\"");
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| bad())?.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    v.parse::<u64>().map(Some).map_err(|_| bad())
}

/// The one precondition named by `If-Match`, the query and/or the body. Naming it is
/// mandatory (0 for a first write); naming two different values is an error.
pub(crate) fn precondition(
    headers: &HeaderMap,
    query: Option<&str>,
    body: Option<u64>,
    what: &str,
) -> ApiResult<u64> {
    let from_query = query
        .map(|q| {
            q.parse::<u64>()
                .map_err(|_| ApiError::invalid(format!("{what} must be a whole number")))
        })
        .transpose()?;
    let mut named = [if_match(headers)?, from_query, body].into_iter().flatten();
    let first = named.next().ok_or_else(|| {
        ApiError::invalid(format!("name the {what} this write replaces (If-Match: \"N\" or {what}; 0 for the first write)"))
    })?;
    if named.any(|s| s != first) {
        return Err(ApiError::invalid(format!(
            "If-Match and {what} name different values"
        )));
    }
    Ok(first)
}

fn expected_seq(headers: &HeaderMap, query: Option<&str>, body: Option<u64>) -> ApiResult<u64> {
    precondition(headers, query, body, "seq")
}

/// An attachment as clients see it (never where the store keeps it).
#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    #[schema(example = "a.png")]
    pub name: String,
    #[schema(example = "image/png")]
    pub content_type: String,
    pub size: u64,
}

impl From<&AttachmentMeta> for AttachmentView {
    fn from(a: &AttachmentMeta) -> Self {
        AttachmentView {
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
        }
    }
}

/// A draft as clients see it; a tombstone shows `deleted: true` and no content.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftView {
    #[schema(example = "c1")]
    pub conversation: String,
    pub seq: u64,
    #[schema(example = "2025-01-01T00:00:00Z")]
    pub updated_at: String,
    pub deleted: bool,
    pub text: String,
    pub attachments: Vec<AttachmentView>,
}

impl From<&Draft> for DraftView {
    fn from(d: &Draft) -> Self {
        DraftView {
            conversation: d.conversation.clone(),
            seq: d.seq,
            updated_at: to_rfc3339(d.updated_at),
            deleted: d.deleted,
            text: if d.deleted {
                String::new()
            } else {
                d.text.clone()
            },
            attachments: if d.deleted {
                Vec::new()
            } else {
                d.attachments.iter().map(AttachmentView::from).collect()
            },
        }
    }
}

/// A draft in the listing: its text's length instead of the text.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftSummary {
    pub conversation: String,
    pub seq: u64,
    pub updated_at: String,
    /// In characters.
    pub text_length: usize,
    pub attachments: Vec<AttachmentView>,
}

impl From<&Draft> for DraftSummary {
    fn from(d: &Draft) -> Self {
        DraftSummary {
            conversation: d.conversation.clone(),
            seq: d.seq,
            updated_at: to_rfc3339(d.updated_at),
            text_length: d.text.chars().count(),
            attachments: d.attachments.iter().map(AttachmentView::from).collect(),
        }
    }
}

/// `GET /v1/drafts`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftList {
    pub drafts: Vec<DraftSummary>,
}

/// The answer to deleting a draft: its tombstone's seq.
#[derive(Debug, Serialize, ToSchema)]
pub struct DraftDeleted {
    pub seq: u64,
}

/// A draft as JSON (the `current` of a conflict).
pub fn draft_json(d: &Draft) -> Value {
    serde_json::to_value(DraftView::from(d)).unwrap_or(Value::Null)
}

/// A JSON answer carrying the draft's seq as its ETag.
fn with_etag<T: Serialize>(seq: u64, body: T) -> Response {
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{seq}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// 404 for a deleted draft, carrying the tombstone's seq so the next write names it.
fn tombstone_not_found(seq: u64) -> Response {
    let mut p = Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        "this draft was deleted; a new draft names this seq".into(),
    );
    p.seq = Some(seq);
    p.into_response()
}

fn outcome(w: DraftWrite) -> ApiResult<Draft> {
    match w {
        DraftWrite::Written(d) => Ok(d),
        DraftWrite::Conflict(cur) => Err(ApiError::Conflict {
            current: cur.as_ref().map_or(Value::Null, draft_json),
        }),
        DraftWrite::NotFound => Err(ApiError::NotFound),
    }
}

/// Path parameters and their descriptions, shared by the operations.
const CONVERSATION: &str = "Conversation id (1..=128 of [A-Za-z0-9._:-])";

/// The signed-in principal's drafts (summaries, deleted ones left out).
#[utoipa::path(get, path = "/v1/drafts", tag = "drafts",
    responses((status = 200, description = "Draft summaries", body = DraftList), ReadErrors))]
async fn list(State(state): State<AppState>, auth: Authed) -> ApiResult<Json<DraftList>> {
    let drafts = state.store.list_drafts(&auth.session.principal).await?;
    let drafts = drafts
        .iter()
        .filter(|d| !d.deleted)
        .map(DraftSummary::from)
        .collect();
    Ok(Json(DraftList { drafts }))
}

/// One draft with its text and attachment list.
#[utoipa::path(get, path = "/v1/drafts/{conversation}", tag = "drafts",
    params(("conversation" = String, Path, description = CONVERSATION)),
    responses(
        (status = 200, description = "The draft", body = DraftView, headers(("ETag" = String, description = "The draft's seq, quoted: \"N\""))),
        ReadErrors, InputErrors, NotFoundErrors,
    ))]
async fn get_one(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath(conversation): ApiPath<String>,
) -> ApiResult<Response> {
    validate_conversation(&conversation)?;
    match state
        .store
        .get_draft(&auth.session.principal, &conversation)
        .await?
    {
        Some(d) if d.deleted => Ok(tombstone_not_found(d.seq)),
        Some(d) => Ok(with_etag(d.seq, DraftView::from(&d))),
        None => Err(ApiError::NotFound),
    }
}

/// Writes a draft's text (conditional on the seq it replaces).
#[utoipa::path(put, path = "/v1/drafts/{conversation}", tag = "drafts",
    params(("conversation" = String, Path, description = CONVERSATION), ("If-Match" = Option<String>, Header, description = "The seq this write replaces: \"N\" (0 for the first write); or use ?seq=N"), ("seq" = Option<u64>, Query, description = "The seq this write replaces, instead of If-Match")),
    request_body(content = PutText, content_type = "application/json"),
    responses(
        (status = 200, description = "Written; the new seq", body = DraftView, headers(("ETag" = String, description = "The draft's seq, quoted: \"N\""))),
        WriteErrors, BodyErrors, NotFoundErrors, ConflictErrors, RateLimitErrors,
    ))]
async fn put_text(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath(conversation): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PutText>,
) -> ApiResult<Response> {
    validate_conversation(&conversation)?;
    let max = state.config.drafts.max_text_bytes;
    if req.text.len() > max {
        return Err(ApiError::TooLarge {
            code: "payload_too_large",
            detail: format!("draft text is limited to {max} bytes"),
        });
    }
    if req.text.contains('\0') {
        return Err(ApiError::invalid(
            "draft text may not contain NUL characters",
        ));
    }
    let seq = expected_seq(&headers, q.seq.as_deref(), req.seq)?;
    let now = state.clock.now();
    let d = outcome(
        state
            .quotas
            .put_draft_text(&auth.session, &conversation, seq, &req.text, now)
            .await?,
    )?;
    metrics::counter!("sessiond_draft_writes_total", "kind" => "text").increment(1);
    Ok(with_etag(d.seq, DraftView::from(&d)))
}

/// Deletes a draft and its attachments, leaving a tombstone with the next seq.
#[utoipa::path(delete, path = "/v1/drafts/{conversation}", tag = "drafts",
    params(("conversation" = String, Path, description = CONVERSATION), ("If-Match" = Option<String>, Header, description = "The seq this write replaces: \"N\" (0 for the first write); or use ?seq=N"), ("seq" = Option<u64>, Query, description = "The seq this write replaces, instead of If-Match")),
    responses(
        (status = 200, description = "Deleted; the tombstone's seq", body = DraftDeleted, headers(("ETag" = String, description = "The draft's seq, quoted: \"N\""))),
        WriteErrors, NotFoundErrors, ConflictErrors, RateLimitErrors,
    ))]
async fn delete(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath(conversation): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    validate_conversation(&conversation)?;
    let seq = expected_seq(&headers, q.seq.as_deref(), None)?;
    let now = state.clock.now();
    let d = outcome(
        state
            .store
            .delete_draft(&auth.session.principal, &conversation, seq, now)
            .await?,
    )?;
    metrics::counter!("sessiond_draft_writes_total", "kind" => "delete").increment(1);
    Ok(with_etag(d.seq, DraftDeleted { seq: d.seq }))
}

/// The allow-listed content type of an upload, as it will be stored.
fn upload_content_type(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let refuse = |ct: &str| {
        ApiError::UnsupportedMediaType(format!(
            "{ct:?} (allowed: {})",
            state.config.drafts.allowed_content_types.join(", ")
        ))
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // `sessiond-enc` parameters mark encrypted data (see crate::crypto); clients may not send them.
    if ct.is_empty()
        || ct.len() > MAX_CONTENT_TYPE
        || ct.to_ascii_lowercase().contains("sessiond-enc")
        || !ct.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        || !state
            .config
            .drafts
            .allowed_content_types
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&essence))
    {
        return Err(refuse(ct));
    }
    Ok(ct.to_owned())
}

/// Uploads (or replaces) an attachment, streamed; size and per-principal quota are enforced.
#[utoipa::path(put, path = "/v1/drafts/{conversation}/attachments/{name}", tag = "drafts",
    params(("conversation" = String, Path, description = CONVERSATION), ("name" = String, Path, description = "Attachment name"), ("If-Match" = Option<String>, Header, description = "The seq this write replaces: \"N\" (0 for the first write); or use ?seq=N"), ("seq" = Option<u64>, Query, description = "The seq this write replaces, instead of If-Match")),
    request_body(content = inline(Binary), content_type = "application/octet-stream",
        description = "The raw bytes; Content-Type must be one of the configured allowed types"),
    responses(
        (status = 200, description = "Stored; the draft with its new seq", body = DraftView, headers(("ETag" = String, description = "The draft's seq, quoted: \"N\""))),
        WriteErrors, BodyErrors, NotFoundErrors, ConflictErrors, MediaTypeErrors, RateLimitErrors,
    ))]
async fn put_attachment(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath((conversation, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<SeqQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    validate_conversation(&conversation)?;
    validate_attachment_name(&name)?;
    let content_type = upload_content_type(&state, &headers)?;
    let limits = AttachmentLimits {
        max_size: state.config.drafts.max_attachment_size,
        quota: state.config.drafts.quota_per_principal,
    };
    let seq = expected_seq(&headers, q.seq.as_deref(), None)?;
    // Nothing to stream: refused before the store is asked (a chunked empty body is
    // refused by the quota gate when it ends).
    if headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0")
    {
        return Err(crate::sessions::SessionError::EmptyAttachment.into());
    }
    // Streamed to the store chunk by chunk; the store enforces size and quota as it reads
    // (a declared length over the limit was refused by the router's layer).
    let stream: ByteStream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let now = state.clock.now();
    let w = state
        .quotas
        .put_attachment(
            &auth.session,
            AttachmentPut {
                principal: &auth.session.principal,
                conversation: &conversation,
                expected_seq: seq,
                name: &name,
                content_type: &content_type,
                limits,
                now,
                text: None,
                content_sha256: None,
            },
            stream,
        )
        .await?;
    let d = outcome(w)?;
    metrics::counter!("sessiond_draft_writes_total", "kind" => "attachment").increment(1);
    Ok(with_etag(d.seq, DraftView::from(&d)))
}

/// An attachment's bytes, served with its stored Content-Type, `nosniff` and a sandbox CSP.
#[utoipa::path(get, path = "/v1/drafts/{conversation}/attachments/{name}", tag = "drafts",
    params(("conversation" = String, Path, description = CONVERSATION), ("name" = String, Path, description = "Attachment name")),
    responses(
        (status = 200, description = "The attachment's bytes, with its stored Content-Type", body = inline(Binary), content_type = "application/octet-stream"),
        ReadErrors, InputErrors, NotFoundErrors,
    ))]
async fn get_attachment(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath((conversation, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    validate_conversation(&conversation)?;
    validate_attachment_name(&name)?;
    let (meta, stream) = state
        .store
        .get_attachment(&auth.session.principal, &conversation, &name)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&meta.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    // Uploaded bytes are served from the API's own origin: never let a browser run them.
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

/// Removes one attachment from a draft.
#[utoipa::path(delete, path = "/v1/drafts/{conversation}/attachments/{name}", tag = "drafts",
    params(("conversation" = String, Path, description = CONVERSATION), ("name" = String, Path, description = "Attachment name"), ("If-Match" = Option<String>, Header, description = "The seq this write replaces: \"N\" (0 for the first write); or use ?seq=N"), ("seq" = Option<u64>, Query, description = "The seq this write replaces, instead of If-Match")),
    responses(
        (status = 200, description = "Removed; the draft with its new seq", body = DraftView, headers(("ETag" = String, description = "The draft's seq, quoted: \"N\""))),
        WriteErrors, NotFoundErrors, ConflictErrors, RateLimitErrors,
    ))]
async fn delete_attachment(
    State(state): State<AppState>,
    auth: Authed,
    ApiPath((conversation, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<SeqQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    validate_conversation(&conversation)?;
    validate_attachment_name(&name)?;
    let seq = expected_seq(&headers, q.seq.as_deref(), None)?;
    let now = state.clock.now();
    let w = state
        .store
        .delete_attachment(
            &auth.session.principal,
            &conversation,
            seq,
            &name,
            None,
            now,
        )
        .await?;
    let d = outcome(w)?;
    metrics::counter!("sessiond_draft_writes_total", "kind" => "attachment_delete").increment(1);
    Ok(with_etag(d.seq, DraftView::from(&d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn seq_sources() {
        assert_eq!(expected_seq(&h("\"7\""), None, None).unwrap(), 7);
        assert_eq!(expected_seq(&h("W/\"7\""), Some("7"), Some(7)).unwrap(), 7);
        assert_eq!(expected_seq(&HeaderMap::new(), Some("0"), None).unwrap(), 0);
        assert_eq!(expected_seq(&HeaderMap::new(), None, Some(3)).unwrap(), 3);
        assert!(expected_seq(&HeaderMap::new(), None, None).is_err());
        assert!(expected_seq(&h("\"7\""), None, Some(8)).is_err());
        assert!(expected_seq(&h("*"), None, None).is_err());
        assert!(expected_seq(&HeaderMap::new(), Some("-1"), None).is_err());
    }
}
