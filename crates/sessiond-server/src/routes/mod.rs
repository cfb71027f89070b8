//! The router: each resource module exposes `router()`, merged here in one place.

pub mod ops;

use crate::state::AppState;
use axum::Router;

pub fn app(state: AppState) -> Router {
    Router::new().merge(ops::router()).with_state(state)
}
