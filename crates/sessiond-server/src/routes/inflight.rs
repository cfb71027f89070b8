//! The in-flight bound (`http.max_in_flight`): a request that finds every place taken is
//! answered 503 `overloaded` before any work, so an overload sheds at the door instead
//! of queueing requests that would be answered too late to matter. Health, readiness and
//! metrics always pass: an operator must be able to see the overload.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths never refused (the operator's view of the node).
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The middleware: holds a place until the response head is ready (a WebSocket or a
/// streamed body goes on without it, bounded by its own limits).
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(_place) = state.in_flight.clone().try_acquire_owned() else {
        metrics::counter!("sessiond_requests_shed_total").increment(1);
        return ApiError::Overloaded.into_response();
    };
    next.run(req).await
}
