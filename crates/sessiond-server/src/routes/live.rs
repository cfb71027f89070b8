//! Operators' live views: the audit trail as a server-sent-events stream, the cluster's
//! nodes, and dropping one WebSocket connection (on whichever node holds it).
//!
//! The stream reads the store, not the bus: the trail is numbered by the store in commit
//! order, so following it with `after` gives every node's events exactly once and in
//! order, across restarts and resumes (`Last-Event-ID`), with nothing to reconcile.

use crate::auth::{Admin, Reader};
use crate::bus::Event;
use crate::error::{ApiError, ApiResult};
use crate::routes::admin::AuditView;
use crate::routes::extract::{ApiPath, ApiQuery};
use crate::routes::problems::{AdminErrors, InputErrors, NotFoundErrors, RateLimitErrors};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sessiond_core::audit::{AuditEvent, AuditFilter};
use sessiond_core::clock::to_rfc3339;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

/// Events read from the store per poll; a full page is followed at once by the next.
const PAGE: usize = 200;
/// What a client's `EventSource` waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/audit/stream", get(audit_stream))
        .route("/v1/admin/nodes", get(nodes))
        .route("/v1/admin/key", get(whoami))
        .route("/v1/admin/connections/{id}", delete(drop_connection))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this event id (`Last-Event-ID` wins when both are given). Without
    /// either the stream starts with the next event.
    after: Option<i64>,
    /// Only this session's events.
    handle: Option<String>,
}

fn parse_cursor(headers: &HeaderMap, after: Option<i64>) -> ApiResult<Option<i64>> {
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .map(str::trim)
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| ApiError::invalid("Last-Event-ID must be an audit event id"))
        })
        .transpose()?;
    match header.or(after) {
        Some(id) if id < 0 => Err(ApiError::invalid("after must be an audit event id")),
        c => Ok(c),
    }
}

fn sse_event(e: AuditEvent) -> SseEvent {
    let id = e.id;
    let kind = e.kind.as_str();
    let data = serde_json::to_string(&AuditView::from(e)).unwrap_or_else(|_| "{}".into());
    SseEvent::default()
        .id(id.to_string())
        .event(kind)
        .data(data)
}

/// The audit trail as server-sent events: `id:` the event id, `event:` its kind,
/// `data:` the event as `GET /v1/admin/audit` shows it. Resumes after `Last-Event-ID`
/// (or `after`): the missed events from the store, then live ones, none twice. Idle
/// streams get keep-alive comments; a client that stops reading is disconnected.
#[utoipa::path(get, path = "/v1/admin/audit/stream", tag = "admin", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of audit events", content_type = "text/event-stream", body = String),
        AdminErrors, InputErrors, RateLimitErrors))]
pub async fn audit_stream(
    _: Reader,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let cursor = parse_cursor(&headers, q.after)?;
    let handle = q.handle.filter(|h| !h.is_empty());
    let permit = state
        .audit_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::RateLimited { retry_after: 5 })?;
    // Read before answering, so a store failure is a 503 now rather than an empty stream.
    let (last, first) = match cursor {
        Some(after) => (after, backlog(&state, handle.clone(), after).await?),
        None => {
            let newest = state
                .store
                .query_audit(&AuditFilter {
                    handle: handle.clone(),
                    limit: 1,
                    ..Default::default()
                })
                .await?;
            (newest.first().map_or(0, |e| e.id), Vec::new())
        }
    };
    let cfg = state.config.audit.clone();
    let (tx, rx) = mpsc::channel::<SseEvent>(cfg.stream_buffer);
    let _ = tx.try_send(SseEvent::default().retry(RETRY).comment("audit stream"));
    metrics::gauge!("sessiond_audit_streams").increment(1.0);
    tokio::spawn(async move {
        follow(state, handle, last, first, tx).await;
        metrics::gauge!("sessiond_audit_streams").decrement(1.0);
        drop(permit);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let keep = KeepAlive::new()
        .interval(cfg.stream_keep_alive)
        .text("keep-alive");
    let mut r = Sse::new(stream).keep_alive(keep).into_response();
    // Proxies (nginx) would otherwise hold events back in their buffers.
    r.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(r)
}

async fn backlog(
    state: &AppState,
    handle: Option<String>,
    after: i64,
) -> ApiResult<Vec<AuditEvent>> {
    Ok(state
        .store
        .query_audit(&AuditFilter {
            handle,
            after_id: Some(after),
            limit: PAGE,
            ..Default::default()
        })
        .await?)
}

/// Sends `first`, then every event after the last one sent, polling the store, until
/// the client goes, stops reading for `stream_send_timeout`, the store fails (the client
/// resumes) or the server shuts down.
async fn follow(
    state: AppState,
    handle: Option<String>,
    mut last: i64,
    first: Vec<AuditEvent>,
    tx: mpsc::Sender<SseEvent>,
) {
    let cfg = state.config.audit.clone();
    let mut page = first;
    loop {
        let full = page.len() >= PAGE;
        for e in page {
            let id = e.id;
            match tokio::time::timeout(cfg.stream_send_timeout, tx.send(sse_event(e))).await {
                Ok(Ok(())) => last = id,
                Ok(Err(_)) => return,
                Err(_) => {
                    metrics::counter!("sessiond_audit_stream_slow_total").increment(1);
                    tracing::info!(
                        last_sent = last,
                        "audit stream client too slow; disconnected"
                    );
                    return;
                }
            }
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(cfg.stream_poll_interval) => {}
                _ = tx.closed() => return,
                _ = state.shutdown.cancelled() => return,
            }
        }
        page = match backlog(&state, handle.clone(), last).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = ?e, last_sent = last, "audit stream ended: store read failed");
                return;
            }
        };
    }
}

/// The key a request presents, as the admin page needs it.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// The key's id (as the audit trail names it).
    #[schema(example = "dashboard")]
    pub id: String,
    /// `admin` or `read` (a `tickets` key is refused here).
    #[schema(example = "read")]
    pub scope: String,
}

/// The presented key's id and scope, so a dashboard can offer only what the key allows.
#[utoipa::path(get, path = "/v1/admin/key", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = KeyView), AdminErrors))]
pub async fn whoami(r: Reader) -> Json<KeyView> {
    Json(KeyView {
        id: r.key,
        scope: r.scope.as_str().to_owned(),
    })
}

/// One node of the cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    #[schema(example = "node-1")]
    pub node: String,
    /// The node answering this request.
    pub this_node: bool,
    /// Its WebSocket connections (at its last lease renewal for other nodes).
    pub connections: Option<u64>,
    /// Milliseconds since its lease was last renewed; null on a single node (no lease)
    /// and for a node whose lease is gone (dead, not cleaned up yet).
    pub lease_age_ms: Option<i64>,
    /// When the lease was last renewed.
    pub lease_renewed_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// Whether the store is shared (Redis): other nodes may exist.
    pub clustered: bool,
    pub nodes: Vec<NodeView>,
}

/// The cluster's nodes with their connection counts and lease ages (this node alone on
/// SQLite or memory).
#[utoipa::path(get, path = "/v1/admin/nodes", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = NodeList), AdminErrors))]
pub async fn nodes(_: Reader, State(state): State<AppState>) -> ApiResult<Json<NodeList>> {
    let leases = state.presence.nodes().await?;
    let now = state.clock.now();
    let here = state.hub.len() as u64;
    let clustered = !leases.is_empty();
    let mut nodes: Vec<NodeView> = leases
        .into_iter()
        .map(|l| {
            let this_node = l.node == state.node_id;
            NodeView {
                this_node,
                connections: if this_node { Some(here) } else { l.connections },
                lease_age_ms: l.renewed_at.map(|t| (now - t).max(0)),
                lease_renewed_at: l.renewed_at.map(to_rfc3339),
                node: l.node,
            }
        })
        .collect();
    if !nodes.iter().any(|n| n.this_node) {
        nodes.insert(
            0,
            NodeView {
                node: state.node_id.clone(),
                this_node: true,
                connections: Some(here),
                lease_age_ms: None,
                lease_renewed_at: None,
            },
        );
    }
    Ok(Json(NodeList { clustered, nodes }))
}

/// Drops one WebSocket connection: it is closed with 4011 (`dropped`), its rooms see it
/// leave as `lost`, and an audit event `connection_dropped` names the key. The session
/// stays valid and the client reconnects. A connection of another node is dropped there
/// (through the cluster bus): 202.
#[utoipa::path(delete, path = "/v1/admin/connections/{id}", tag = "admin",
    params(("id" = String, Path, description = "Connection id, as listed by /v1/admin/connections")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "Dropped (the connection was on this node)"),
        (status = 202, description = "Sent to the node holding it"),
        AdminErrors, NotFoundErrors))]
pub async fn drop_connection(
    admin: Admin,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    if id.is_empty() || id.len() > 200 {
        return Err(ApiError::NotFound);
    }
    if state.hub.is_local_id(&id) {
        return if crate::ws::tasks::drop_connection(&state, &id, &admin.key) {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::NotFound)
        };
    }
    // Another node's: only a live registered node can hold it.
    let known = state.presence.nodes().await?.into_iter().any(|n| {
        n.renewed_at.is_some()
            && id
                .strip_prefix(n.node.as_str())
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|r| r.parse::<u64>().is_ok())
    });
    if !known {
        return Err(ApiError::NotFound);
    }
    state.bus.publish(Event::DropConnection {
        connection_id: id,
        key: admin.key,
    });
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_the_header_then_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_cursor(&h, None).unwrap(), None);
        assert_eq!(parse_cursor(&h, Some(7)).unwrap(), Some(7));
        assert!(parse_cursor(&h, Some(-1)).is_err());
        h.insert("last-event-id", "12".parse().unwrap());
        assert_eq!(parse_cursor(&h, Some(7)).unwrap(), Some(12));
        h.insert("last-event-id", "x".parse().unwrap());
        assert!(parse_cursor(&h, None).is_err());
    }
}
