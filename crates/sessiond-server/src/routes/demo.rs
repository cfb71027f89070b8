//! Dev-mode demo endpoints (mounted only with `dev = true`): sign-in tickets for any user
//! and a tiny in-memory message list, so the demo page can show sending without a
//! separate app backend.

use crate::auth::Authed;
pub use crate::demo_messages::{Message, Messages, MAX_MESSAGES};
use crate::error::{ApiError, ApiResult, JsonBody, Problem};
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use sessiond_core::clock::to_rfc3339;

/// Longest message text.
const MAX_TEXT: usize = 64 * 1024;
/// Most attachment names per message.
const MAX_ATTACHMENTS: usize = 16;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/demo/api/ticket", post(ticket))
        .route("/demo/api/messages", post(send).get(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketRequest {
    user_id: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

/// A sign-in ticket for anyone: dev mode only.
#[utoipa::path(post, path = "/demo/api/ticket", tag = "demo (dev only)",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "`user_id`, optional `role` (default: the configured default role) and `rooms`",
        example = json!({"user_id": "alice", "role": "user", "rooms": ["r1"]})),
    responses(
        (status = 200, description = "A sign-in ticket", body = serde_json::Value, example = json!({"ticket": "eyJ…"})),
        (status = 400, description = "invalid_request (unknown role, no ticket secret configured, bad body)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ticket(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<TicketRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let role = req
        .role
        .unwrap_or_else(|| state.config.default_role.clone());
    let ticket = crate::routes::admin::mint(&state, &req.user_id, &role, req.rooms, None)?;
    Ok(Json(serde_json::json!({ "ticket": ticket })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    conversation: String,
    text: String,
    #[serde(default)]
    attachments: Vec<String>,
}

/// "Sends" a message: needs a live session (401 with the reason otherwise).
#[utoipa::path(post, path = "/demo/api/messages", tag = "demo (dev only)",
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "`conversation`, `text` (at most 64 KiB) and up to 16 `attachments` names",
        example = json!({"conversation": "c1", "text": "hello", "attachments": []})),
    responses(
        (status = 201, description = "Sent", body = serde_json::Value, example = json!({"id": "m_1"})),
        (status = 400, description = "invalid_request or invalid_conversation", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthenticated or session_expired", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large", body = Problem, content_type = "application/problem+json"),
    ))]
async fn send(
    State(state): State<AppState>,
    a: Authed,
    JsonBody(req): JsonBody<SendRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    sessiond_core::draft::validate_conversation(&req.conversation)?;
    if req.text.len() > MAX_TEXT {
        return Err(ApiError::TooLarge {
            code: "payload_too_large",
            detail: "message text too long".into(),
        });
    }
    if req.attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::invalid("too many attachments"));
    }
    for n in &req.attachments {
        sessiond_core::draft::validate_attachment_name(n)?;
    }
    let id = state.demo.push(Message {
        id: String::new(),
        conversation: req.conversation,
        principal: a.session.principal.to_string(),
        text: req.text,
        attachments: req.attachments,
        created_at: to_rfc3339(state.clock.now()),
    });
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    conversation: String,
}

/// A conversation's messages, oldest first.
#[utoipa::path(get, path = "/demo/api/messages", tag = "demo (dev only)",
    params(("conversation" = String, Query, description = "Conversation id")),
    responses(
        (status = 200, description = "The conversation's messages, oldest first", body = serde_json::Value,
         example = json!({"messages": [{"id": "m_1", "conversation": "c1", "principal": "user:alice", "text": "hello", "attachments": [], "created_at": "2025-01-01T00:00:00Z"}]})),
        (status = 400, description = "invalid_request or invalid_conversation", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q.map_err(|e| ApiError::invalid(e.body_text()))?;
    sessiond_core::draft::validate_conversation(&q.conversation)?;
    Ok(Json(
        serde_json::json!({ "messages": state.demo.in_conversation(&q.conversation) }),
    ))
}
