//! The router: each resource module exposes `router()`, merged here in one place, with
//! the HTTP edge (limits, `no-store`, 404/405, request ids, tracing) applied as layers.

pub mod admin;
pub mod cors;
pub mod demo;
pub mod devices;
pub mod drafts;
pub mod edge;
pub mod extract;
pub mod front;
pub mod grants;
pub mod inflight;
pub mod limits;
pub mod listeners;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod problems;
pub mod schemas;
pub mod session;
pub mod snapshots;
pub mod timing;
pub mod verify;
pub mod web;
pub mod webhooks;

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::Method;
use axum::Router;

/// Body limit of the JSON routers that never set one (axum's default, kept explicit).
const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

pub fn app(state: AppState) -> Router {
    let c = &state.config;
    let mut api = Router::new()
        .merge(ops::router())
        .merge(openapi::router())
        .merge(edge::no_store(
            edge::body_limit(session::router(), session::MAX_BODY),
            "no-store",
        ))
        .merge(edge::no_store(
            edge::body_limit(devices::router(), JSON_BODY_LIMIT),
            "no-store",
        ))
        .merge(edge::no_store(
            edge::body_limit(admin::router(), JSON_BODY_LIMIT),
            "no-store",
        ))
        .merge(edge::no_store(live::router(), "no-store"))
        .merge(edge::no_store(
            edge::body_limit(webhooks::router(), JSON_BODY_LIMIT),
            "no-store",
        ))
        .merge(edge::no_store(
            edge::body_limit(grants::router(), JSON_BODY_LIMIT),
            "no-store",
        ))
        .merge(edge::no_store(verify::router(), "no-store"))
        .merge(edge::no_store(crate::ws::router(), "no-store"))
        .merge(edge::no_store(
            drafts::router(&c.drafts),
            "private, no-store",
        ))
        .merge(edge::no_store(
            snapshots::router(&c.snapshots),
            "private, no-store",
        ));
    if c.dev {
        api = api.merge(edge::no_store(
            edge::body_limit(demo::router(), JSON_BODY_LIMIT),
            "no-store",
        ));
    }
    // A known API path with another method is a problem+json 405 (with `Allow`); the
    // embedded web pages, merged after, keep axum's plain answer.
    let api = api.method_not_allowed_fallback(|m: Method| async move {
        ApiError::MethodNotAllowed(m.to_string())
    });
    let api = edge::single_session_cookie(api, c.cookie.name.clone());
    let app = api
        .merge(web::router())
        // Unknown paths answer problem+json like every other error.
        .fallback(|| async { ApiError::NotFound })
        // Each route names itself on its answer and span, for the layers below.
        .layer(timing::RouteTagLayer)
        .with_state(state.clone());
    // The cross-cutting checks ([`front`]) wrap the router once, outside routing, rather
    // than every route: a `from_fn` layer clones the service it wraps on each request,
    // which for a route is its whole boxed stack and for the router one reference count.
    let app = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            front::layer,
        ))
        .service(app);
    edge::with_edges(Router::new().fallback_service(app))
}
