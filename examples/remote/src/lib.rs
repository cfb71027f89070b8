//! A Rust backend next to a sessiond server: the browser holds sessiond's cookie (it
//! talks to sessiond for the session itself, e.g. through the same reverse proxy), and
//! this app checks it with `sessiond-axum` in remote mode on every request, signs users
//! in and out through sessiond's API, and keeps a per-session note in session data.

use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sessiond_axum::{Error, MaybeSession, RemoteConfig, Session, Sessiond};

/// The remote client for the sessiond server at `url`, with one of its API keys.
/// `secure_cookie` is false only for plain-HTTP development.
pub fn sessiond(url: &str, api_key: &str, secure_cookie: bool) -> Result<Sessiond, Error> {
    Sessiond::remote(RemoteConfig::new(url, api_key).cookie_secure(secure_cookie))
}

/// The app's routes, with the sessiond layer.
pub fn app(sessiond: &Sessiond) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/login", post(login))
        .route("/api/renew", post(renew))
        .route("/api/logout", post(logout))
        .route("/api/note", get(note).put(set_note))
        .layer(sessiond.layer())
}

fn view(s: &sessiond_axum::SessionInfo) -> Value {
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    json!({
        "handle": s.handle, "principal": s.principal, "user_id": s.user_id, "role": s.role,
        "idle_expires_at": secs(s.idle_expires_at),
        "absolute_expires_at": secs(s.absolute_expires_at),
    })
}

async fn me(s: Session) -> Json<Value> {
    Json(view(&s))
}

#[derive(Deserialize)]
struct Login {
    user: String,
    #[serde(default = "editor")]
    role: String,
}

fn editor() -> String {
    "editor".into()
}

/// A real backend checks a password or an identity provider here; this example signs
/// in whoever names themselves.
async fn login(maybe: MaybeSession, Json(l): Json<Login>) -> Result<Json<Value>, Error> {
    Ok(Json(view(&maybe.sign_in(&l.user, &l.role).await?.info)))
}

async fn renew(mut s: Session) -> Result<Json<Value>, Error> {
    Ok(Json(view(s.renew().await?)))
}

async fn logout(s: Session) -> Result<(), Error> {
    s.sign_out().await
}

async fn note(s: Session) -> Result<Json<Value>, Error> {
    Ok(Json(s.data::<Value>("note").await?.unwrap_or(Value::Null)))
}

async fn set_note(s: Session, Json(v): Json<Value>) -> Result<(), Error> {
    s.set_data("note", &v).await
}
