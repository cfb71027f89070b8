//! Operations endpoints: liveness, readiness (the store answers) and Prometheus metrics.

use crate::error::ApiError;
use crate::routes::listeners::Side;
use crate::routes::problems::StoreErrors;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// `GET /readyz` when ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: &'static str,
    #[schema(example = "ok")]
    pub store: &'static str,
    /// This process's node id: only on the internal listener (`internal_listen`), so
    /// the public side does not tell which node answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "node-1")]
    pub node: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready when the store answers within a second.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready: the store answered", body = Ready),
        StoreErrors,
    ))]
async fn readyz(
    State(state): State<AppState>,
    side: Option<Extension<Side>>,
) -> Result<Json<Ready>, ApiError> {
    let internal = side.is_some_and(|Extension(s)| s == Side::Internal);
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(Ready {
            status: "ready",
            store: "ok",
            node: internal.then(|| state.node_id.clone()),
        })),
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
