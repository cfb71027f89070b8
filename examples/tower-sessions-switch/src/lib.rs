//! A tiny axum counter app on tower-sessions: the app code knows only
//! `tower_sessions::Session`; which store holds the sessions is chosen by whoever
//! builds the router (see `main.rs`: the one-line switch to sessiond).

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use tower_sessions::{SessionManagerLayer, SessionStore};

/// `GET /`: this visitor's count, one more each time. `POST /reset`: starts over.
pub fn app<S: SessionStore + Clone>(store: S) -> Router {
    Router::new()
        .route("/", get(count))
        .route("/reset", post(reset))
        // Plain HTTP on loopback in the example; keep the default (secure) in production.
        .layer(SessionManagerLayer::new(store).with_secure(false))
}

async fn count(session: tower_sessions::Session) -> Result<String, StatusCode> {
    // A store outage is the app's to map: 503, at once.
    let n: u64 = session
        .get("count")
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .unwrap_or(0)
        + 1;
    session
        .insert("count", n)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(n.to_string())
}

async fn reset(session: tower_sessions::Session) -> Result<StatusCode, StatusCode> {
    session
        .flush()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(StatusCode::NO_CONTENT)
}
