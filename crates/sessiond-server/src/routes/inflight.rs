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

/// Every place is taken: answered 503 `overloaded` (and counted).
pub struct Shed;

impl IntoResponse for Shed {
    fn into_response(self) -> Response {
        metrics::counter!("sessiond_requests_shed_total").increment(1);
        ApiError::Overloaded.into_response()
    }
}

/// Takes a place for a request to `path` (held until the response head is ready; a
/// WebSocket or a streamed body goes on without it, bounded by its own limits): `None`
/// for an exempt path.
pub fn admit(state: &AppState, path: &str) -> Result<Option<OwnedSemaphorePermit>, Shed> {
    if exempt(path) {
        return Ok(None);
    }
    state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map(Some)
        .map_err(|_| Shed)
}
