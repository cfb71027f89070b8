//! The in-flight bound (`http.max_in_flight`): a request that finds every place taken is
//! answered 503 `overloaded` before any work, so an overload sheds at the door instead
//! of queueing requests that would be answered too late to matter. Health, readiness and
//! metrics always pass: an operator must be able to see the overload.

use crate::error::ApiError;
use crate::state::AppState;
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

/// Paths never refused (the operator's view of the node).
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Takes a place for a request to `path` (held until the response head is ready; a
/// WebSocket or a streamed body goes on without it, bounded by its own limits): `None`
/// for an exempt path, `Err` with the 503 to send when every place is taken.
pub fn admit(state: &AppState, path: &str) -> Result<Option<OwnedSemaphorePermit>, Response> {
    if exempt(path) {
        return Ok(None);
    }
    match state.in_flight.clone().try_acquire_owned() {
        Ok(place) => Ok(Some(place)),
        Err(_) => {
            metrics::counter!("sessiond_requests_shed_total").increment(1);
            Err(ApiError::Overloaded.into_response())
        }
    }
}
