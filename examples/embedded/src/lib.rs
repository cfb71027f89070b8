//! An axum app with sessiond embedded: its own routes use the `Session` extractors, and
//! sessiond's HTTP + WebSocket API is nested under `/sessiond`, where the page's browser
//! SDK talks to it (and loads itself from: `/sessiond/sdk/sessiond.js`).

use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sessiond_axum::{Error, MaybeSession, Session, Sessiond};
use sessiond_server::config::Config;
use sessiond_server::{ServerBuilder, ServerError, ServerGuard};

/// The built app: serve `router` (with `ConnectInfo<SocketAddr>`), keep `guard` alive
/// while serving (it runs sessiond's scheduler, flusher and purgers), then call
/// `guard.shutdown()` to flush.
pub struct App {
    pub router: Router,
    pub guard: ServerGuard,
    pub sessiond: Sessiond,
}

/// Builds sessiond from `config` and the app around it.
pub async fn build(config: Config) -> Result<App, ServerError> {
    let server = ServerBuilder::new(config).build().await?;
    let sessiond = Sessiond::embedded(&server);
    let (api, guard) = server.into_parts();
    let router = Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("../static/index.html")) }),
        )
        .route("/api/me", get(me))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .nest_service("/sessiond", api)
        .layer(sessiond.layer());
    Ok(App {
        router,
        guard,
        sessiond,
    })
}

/// Who is signed in, for the page.
async fn me(s: Session) -> Json<Value> {
    Json(json!({
        "handle": s.handle, "principal": s.principal, "user_id": s.user_id, "role": s.role,
    }))
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// A real app checks a password (or an identity provider) here; this example signs in
/// whoever names themselves, as an `editor`.
async fn login(maybe: MaybeSession, Json(l): Json<Login>) -> Result<Json<Value>, Error> {
    let signed = maybe.sign_in(&l.user, "editor").await?;
    Ok(Json(json!({"principal": signed.info.principal})))
}

async fn logout(s: Session) -> Result<(), Error> {
    s.sign_out().await
}
