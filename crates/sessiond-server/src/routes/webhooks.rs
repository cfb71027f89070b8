//! `/v1/admin/webhooks*`: the configured endpoints with their progress, and the dead
//! letters (list with a read key; retry or delete with an admin key, both audited).

use crate::auth::{Admin, Reader};
use crate::error::{ApiError, ApiResult};
use crate::routes::admin::AuditView;
use crate::routes::extract::{ApiPath, ApiQuery};
use crate::routes::problems::{AdminErrors, InputErrors, NotFoundErrors, WebhookErrors};
use crate::state::AppState;
use crate::webhooks::deliver::{Attempt, Endpoint};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessiond_core::audit::{AuditEvent, AuditFilter, AuditKind};
use sessiond_core::clock::to_rfc3339;
use sessiond_core::outbox::DeadLetter;
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/webhooks", get(list_endpoints))
        .route("/v1/admin/webhooks/dead-letters", get(list_dead_letters))
        .route(
            "/v1/admin/webhooks/dead-letters/{endpoint}/{event_id}",
            delete(delete_dead_letter),
        )
        .route(
            "/v1/admin/webhooks/dead-letters/{endpoint}/{event_id}/retry",
            post(retry_dead_letter),
        )
}

/// A configured endpoint and where its delivery stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    /// Credentials in the URL are redacted.
    pub url: String,
    /// Event types sent; empty: every `session.*` type.
    pub events: Vec<String>,
    /// The id of the last audit event delivered or dead-lettered; null before the
    /// endpoint's first delivery round.
    pub cursor: Option<i64>,
    /// Audit events after the cursor (the newest id minus the cursor).
    pub lag: i64,
    pub dead_letters: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
    /// The answering node's id.
    pub node: String,
    /// Whether the answering node is the cluster's deliverer now (holds the lease).
    pub delivering: bool,
}

/// The configured webhook endpoints with their cursor, lag and dead-letter count.
#[utoipa::path(get, path = "/v1/admin/webhooks", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = EndpointList), AdminErrors))]
pub async fn list_endpoints(
    _: Reader,
    State(state): State<AppState>,
) -> ApiResult<Json<EndpointList>> {
    let newest = state
        .store
        .query_audit(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await?
        .first()
        .map_or(0, |e| e.id);
    let mut endpoints = Vec::new();
    for ep in state.webhooks.endpoints() {
        let cursor = state.store.outbox_cursor(&ep.id).await?;
        endpoints.push(EndpointView {
            id: ep.id.clone(),
            url: ep.url_for_display(),
            events: ep.types(),
            cursor,
            lag: cursor.map_or(0, |c| newest.saturating_sub(c)),
            dead_letters: state.store.count_dead_letters(&ep.id).await?,
        });
    }
    Ok(Json(EndpointList {
        endpoints,
        node: state.node_id.clone(),
        delivering: state.webhooks.is_delivering(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// One endpoint's dead letters (paged with `after`); absent: every endpoint's, up to
    /// `limit` each.
    endpoint: Option<String>,
    /// Event ids above this one (the `next` of the previous page); needs `endpoint`.
    after: Option<i64>,
    limit: Option<usize>,
}

/// A dead letter on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub endpoint: String,
    pub event_id: i64,
    /// The webhook's `type` (`session.ended`, …).
    pub r#type: String,
    /// The `webhook-id` every attempt carried.
    pub webhook_id: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: String,
    pub first_attempt_at: String,
    pub dead_at: String,
    pub event: AuditView,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        DeadLetterView {
            endpoint: d.endpoint,
            event_id: d.event.id,
            r#type: d.event.kind.webhook_type(),
            webhook_id: crate::webhooks::deliver::message_id(d.event.id),
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            first_attempt_at: to_rfc3339(d.first_attempt_at),
            dead_at: to_rfc3339(d.dead_at),
            event: AuditView::from(d.event),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetterView>,
    /// Pass back as `after` (with the same `endpoint`); null on the last page.
    pub next: Option<i64>,
}

fn endpoint<'a>(state: &'a AppState, id: &str) -> ApiResult<&'a Endpoint> {
    state.webhooks.endpoint(id).ok_or(ApiError::NotFound)
}

/// Dead letters by endpoint and event id.
#[utoipa::path(get, path = "/v1/admin/webhooks/dead-letters", tag = "admin",
    params(DeadLettersQuery), security(("api_key" = [])),
    responses((status = 200, body = DeadLetterPage), AdminErrors, InputErrors))]
pub async fn list_dead_letters(
    _: Reader,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeadLettersQuery>,
) -> ApiResult<Json<DeadLetterPage>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    match q.endpoint.filter(|e| !e.is_empty()) {
        Some(id) => {
            let ep = state
                .webhooks
                .endpoint(&id)
                .ok_or_else(|| ApiError::invalid(format!("no webhook endpoint {id:?}")))?;
            let found = state
                .store
                .list_dead_letters(&ep.id, q.after, limit)
                .await?;
            let next = (found.len() == limit)
                .then(|| found.last().map(|d| d.event.id))
                .flatten();
            Ok(Json(DeadLetterPage {
                dead_letters: found.into_iter().map(DeadLetterView::from).collect(),
                next,
            }))
        }
        None if q.after.is_some() => Err(ApiError::invalid("after needs endpoint")),
        None => {
            let mut all = Vec::new();
            for ep in state.webhooks.endpoints() {
                all.extend(state.store.list_dead_letters(&ep.id, None, limit).await?);
            }
            Ok(Json(DeadLetterPage {
                dead_letters: all.into_iter().map(DeadLetterView::from).collect(),
                next: None,
            }))
        }
    }
}

async fn audit(state: &AppState, kind: AuditKind, detail: serde_json::Value) -> ApiResult<()> {
    let e = AuditEvent::new(state.clock.now(), kind).with_detail(detail);
    state.store.append_audit(&e).await?;
    Ok(())
}

/// The outcome of a manual retry that reached the endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryResult {
    pub delivered: bool,
    /// The endpoint's HTTP status.
    pub status: u16,
}

/// Sends a dead letter once more, now (same `webhook-id`, a fresh timestamp and
/// signature). Delivered: the dead letter is removed (200). Refused again: it stays with
/// its attempts, status and error updated (502 `webhook_delivery_failed`). Audited as
/// `dead_letter_retried`. The event goes out of order: later events of its session were
/// delivered when it was dead-lettered.
#[utoipa::path(post, path = "/v1/admin/webhooks/dead-letters/{endpoint}/{event_id}/retry", tag = "admin",
    params(("endpoint" = String, Path), ("event_id" = i64, Path)), security(("api_key" = [])),
    responses((status = 200, body = RetryResult), AdminErrors, InputErrors, NotFoundErrors, WebhookErrors))]
pub async fn retry_dead_letter(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath((endpoint_id, event_id)): ApiPath<(String, i64)>,
) -> ApiResult<Json<RetryResult>> {
    let ep = endpoint(&state, &endpoint_id)?;
    let mut d = state
        .store
        .get_dead_letter(&ep.id, event_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let attempt = state.webhooks.send(ep, &d.event).await;
    let delivered = matches!(attempt, Attempt::Delivered { .. });
    metrics::counter!("sessiond_webhook_deliveries_total",
        "endpoint" => ep.id.clone(),
        "result" => if delivered { "retried_delivered" } else { "retried_failed" })
    .increment(1);
    let detail = |delivered: bool| {
        serde_json::json!({
            "endpoint": ep.id, "event_id": event_id, "key": admin.key, "delivered": delivered,
        })
    };
    match attempt {
        Attempt::Delivered { status } => {
            state.store.delete_dead_letter(&ep.id, event_id).await?;
            state.webhooks.record_dead_letters(ep).await;
            audit(&state, AuditKind::DeadLetterRetried, detail(true)).await?;
            Ok(Json(RetryResult {
                delivered: true,
                status,
            }))
        }
        Attempt::Failed { status, error } => {
            d.attempts = d.attempts.saturating_add(1);
            d.last_status = status;
            d.last_error = error.clone();
            d.dead_at = state.clock.now();
            state.store.put_dead_letter(&d).await?;
            audit(&state, AuditKind::DeadLetterRetried, detail(false)).await?;
            Err(ApiError::WebhookFailed(error))
        }
    }
}

/// Deletes a dead letter (the event stays in the audit trail). Audited as
/// `dead_letter_deleted`.
#[utoipa::path(delete, path = "/v1/admin/webhooks/dead-letters/{endpoint}/{event_id}", tag = "admin",
    params(("endpoint" = String, Path), ("event_id" = i64, Path)), security(("api_key" = [])),
    responses((status = 204, description = "Deleted"), AdminErrors, InputErrors, NotFoundErrors))]
pub async fn delete_dead_letter(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath((endpoint_id, event_id)): ApiPath<(String, i64)>,
) -> ApiResult<StatusCode> {
    let ep = endpoint(&state, &endpoint_id)?;
    if !state.store.delete_dead_letter(&ep.id, event_id).await? {
        return Err(ApiError::NotFound);
    }
    state.webhooks.record_dead_letters(ep).await;
    audit(
        &state,
        AuditKind::DeadLetterDeleted,
        serde_json::json!({"endpoint": ep.id, "event_id": event_id, "key": admin.key}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A webhook's `data` is the audit event exactly as the admin API shows it.
    #[test]
    fn webhook_data_is_the_audit_view() {
        let mut e = AuditEvent::new(1_700_000_000_000, AuditKind::SignedIn);
        e.id = 7;
        e.handle = Some("h".into());
        e.principal = Some("user:alice".into());
        e.last_activity_at = Some(1_700_000_000_500);
        e.detail = serde_json::json!({"from": "anon:x"});
        let view = serde_json::to_value(AuditView::from(e.clone())).unwrap();
        assert_eq!(crate::webhooks::deliver::payload(&e)["data"], view);
    }
}
