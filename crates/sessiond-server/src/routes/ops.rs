//! Operations endpoints: liveness, readiness (the store answers) and Prometheus metrics.

use crate::error::{ApiError, Problem};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = serde_json::Value, example = json!({"status": "ok"}))))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the store answers within a second.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready: the store answered", body = serde_json::Value,
         example = json!({"status": "ready", "store": "ok", "node": "node-1"})),
        (status = 503, description = "store_unavailable: the store failed or did not answer within a second", body = Problem, content_type = "application/problem+json"),
    ))]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(
            serde_json::json!({"status": "ready", "store": "ok", "node": state.node_id}),
        )),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ApiError::StoreUnavailable("ping timed out".into())),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!("sessiond_scheduler_sessions").set(state.sessions.timer_len() as f64);
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
