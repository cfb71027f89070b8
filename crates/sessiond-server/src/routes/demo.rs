//! Dev-mode demo endpoints (mounted only with `dev = true`): sign-in tickets for any user
//! and a tiny in-memory message list, so the demo page can show sending without a
//! separate app backend.

use crate::auth::Authed;
pub use crate::demo_messages::{Message, Messages, MAX_MESSAGES};
use crate::error::{ApiError, ApiResult};
use crate::routes::admin::TicketResponse;
use crate::routes::extract::{ApiJson, ApiQuery};
use crate::routes::problems::{BodyErrors, InputErrors, ReadErrors};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessiond_core::clock::to_rfc3339;
use utoipa::ToSchema;

/// Longest message text.
const MAX_TEXT: usize = 64 * 1024;
/// Most attachment names per message.
const MAX_ATTACHMENTS: usize = 16;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/demo/api/ticket", post(ticket))
        .route("/demo/api/messages", post(send).get(list))
}

/// Body of `POST /demo/api/ticket`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoTicketRequest {
    #[schema(example = "alice")]
    pub user_id: String,
    /// Default: the configured default role.
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub rooms: Option<Vec<String>>,
    /// Member info for the ticket's `info` claim (name, avatar URL, colour).
    #[serde(default)]
    pub info: Option<crate::member_info::MemberInfo>,
}

/// A sign-in ticket for anyone: dev mode only.
#[utoipa::path(post, path = "/demo/api/ticket", tag = "demo (dev only)",
    request_body(content = DemoTicketRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A sign-in ticket", body = TicketResponse),
        BodyErrors,
    ))]
async fn ticket(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DemoTicketRequest>,
) -> ApiResult<Json<TicketResponse>> {
    let role = req
        .role
        .unwrap_or_else(|| state.config.default_role.clone());
    let ticket =
        crate::routes::admin::mint(&state, &req.user_id, &role, req.rooms, req.info, None)?;
    Ok(Json(TicketResponse { ticket }))
}

/// Body of `POST /demo/api/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    #[schema(example = "c1")]
    pub conversation: String,
    /// At most 64 KiB.
    pub text: String,
    /// Up to 16 attachment names.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// The id of a sent message.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sent {
    #[schema(example = "m_1")]
    pub id: String,
}

/// A conversation's messages, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<Message>,
}

/// "Sends" a message: needs a live session (401 with the reason otherwise).
#[utoipa::path(post, path = "/demo/api/messages", tag = "demo (dev only)",
    request_body(content = SendRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Sent", body = Sent),
        ReadErrors, BodyErrors,
    ))]
async fn send(
    State(state): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<SendRequest>,
) -> ApiResult<(StatusCode, Json<Sent>)> {
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
    Ok((StatusCode::CREATED, Json(Sent { id })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    conversation: String,
}

/// A conversation's messages, oldest first.
#[utoipa::path(get, path = "/demo/api/messages", tag = "demo (dev only)",
    params(("conversation" = String, Query, description = "Conversation id")),
    responses(
        (status = 200, description = "The conversation's messages, oldest first", body = MessageList),
        InputErrors,
    ))]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<MessageList>> {
    sessiond_core::draft::validate_conversation(&q.conversation)?;
    Ok(Json(MessageList {
        messages: state.demo.in_conversation(&q.conversation),
    }))
}
