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

/// The whole API as a router (what embedders serve): one route, the fallback, holding
/// [`service`].
pub fn app(state: AppState) -> Router {
    Router::new().fallback_service(service(state))
}

/// The whole API as a tower service: the edge, the cross-cutting checks, the router.
/// The server's own loop serves this directly, without the outer router's matching and
/// boxed route.
pub fn service(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    let c = &state.config;
    let cookie = c.cookie.name.as_str();
    // Each API router with its edge ([`edge::api`]), so every route is wrapped once. A
    // known API path with another method is a problem+json 405 (with `Allow`), behind
    // the same edge; the embedded web pages keep axum's plain answer.
    let edged = |r: Router<AppState>, cache: Option<&'static str>, body_limit: Option<usize>| {
        let r = r.method_not_allowed_fallback(|m: Method| async move {
            ApiError::MethodNotAllowed(m.to_string())
        });
        edge::api(r, cookie, edge::Api { cache, body_limit })
    };
    const NO_STORE: Option<&str> = Some("no-store");
    const PRIVATE: Option<&str> = Some("private, no-store");
    let json = Some(JSON_BODY_LIMIT);
    let mut api = Router::new()
        .merge(edged(ops::router(), None, None))
        .merge(edged(openapi::router(), None, None))
        .merge(edged(session::router(), NO_STORE, Some(session::MAX_BODY)))
        .merge(edged(devices::router(), NO_STORE, json))
        .merge(edged(admin::router(), NO_STORE, json))
        .merge(edged(live::router(), NO_STORE, None))
        .merge(edged(webhooks::router(), NO_STORE, json))
        .merge(edged(grants::router(), NO_STORE, json))
        .merge(edged(verify::router(), NO_STORE, None))
        .merge(edged(crate::ws::router(), NO_STORE, None))
        .merge(edged(drafts::router(&c.drafts), PRIVATE, None))
        .merge(edged(snapshots::router(&c.snapshots), PRIVATE, None));
    if c.dev {
        api = api.merge(edged(demo::router(), NO_STORE, json));
    }
    let app = api
        .merge(edge::tagged(web::router()))
        // Unknown paths answer problem+json like every other error.
        .fallback(|| async { ApiError::NotFound })
        .with_state(state.clone());
    // The edge and the cross-cutting checks ([`front`]) wrap the router once, outside
    // routing, rather than every route: a layer on a router wraps each route's whole
    // boxed stack, which is cloned and called through on each request.
    front::with_edges(state, app)
}
