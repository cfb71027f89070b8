//! The router: each resource module exposes `router()`, merged here in one place.

pub mod admin;
pub mod demo;
pub mod drafts;
pub mod openapi;
pub mod ops;
pub mod schemas;
pub mod session;
pub mod snapshots;
pub mod verify;
pub mod web;

use crate::state::AppState;
use axum::Router;

pub fn app(state: AppState) -> Router {
    let mut r = Router::new()
        .merge(ops::router())
        .merge(session::router())
        .merge(admin::router())
        .merge(verify::router())
        .merge(openapi::router())
        .merge(web::router())
        .merge(crate::ws::router())
        .merge(drafts::router())
        .merge(snapshots::router());
    if state.config.dev {
        r = r.merge(demo::router());
    }
    // Unknown paths answer problem+json like every other error.
    r.fallback(|| async { crate::error::ApiError::NotFound })
        .with_state(state)
}
