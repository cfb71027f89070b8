//! `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! Every documented handler is listed in [`ApiDoc`]'s `paths(...)` below: add new ones
//! there (the one place), next to their module's group. Error answers are described once
//! each ([`ProblemKind`]) and named by operations through the sets below
//! ([`ReadErrors`], [`WriteErrors`], ...), never row by row.

use crate::error::Problem;
use crate::routes::{
    admin, demo, devices, drafts, grants, live, ops, session, snapshots, verify, webhooks,
};
use crate::state::AppState;
use crate::ws;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::OnceLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiond",
        description = "Session lifecycle server: identity, idle and absolute timeouts, presence, drafts, audit. \
                       Errors are RFC 9457 application/problem+json with a stable `code`; see docs/protocol.md."
    ),
    paths(
        // session
        session::create,
        session::read,
        session::activity,
        session::renew,
        session::sign_out,
        session::sign_in,
        session::local_key,
        session::get_data,
        session::put_data,
        session::delete_data,
        // my devices
        devices::list,
        devices::end_one,
        devices::end_others,
        // forward-auth
        verify::verify,
        // admin
        admin::list_sessions,
        admin::get_session,
        admin::revoke_session,
        admin::end_principal,
        admin::put_member_info,
        admin::audit,
        admin::mint_ticket,
        live::audit_stream,
        live::nodes,
        live::whoami,
        live::drop_connection,
        // webhooks (admin)
        webhooks::list_endpoints,
        webhooks::list_dead_letters,
        webhooks::retry_dead_letter,
        webhooks::delete_dead_letter,
        // room access (admin)
        grants::grant_session,
        grants::revoke_session,
        grants::grant_principal,
        grants::revoke_principal,
        grants::mint_room_token,
        // drafts
        drafts::list,
        drafts::get_one,
        drafts::put_text,
        drafts::delete,
        drafts::put_attachment,
        drafts::get_attachment,
        drafts::delete_attachment,
        // snapshots
        snapshots::get_snapshot,
        snapshots::put_snapshot,
        // realtime
        ws::upgrade,
        ws::admin_rooms,
        ws::admin_room,
        ws::admin_connections,
        // ops
        ops::healthz,
        ops::readyz,
        ops::metrics,
        // demo (dev only)
        demo::ticket,
        demo::send,
        demo::list,
    ),
    components(schemas(Problem)),
    modifiers(&Security),
    tags(
        (name = "session", description = "The browser's own session (cookie or bearer token)"),
        (name = "forward-auth", description = "For reverse proxies"),
        (name = "admin", description = "For the app's backend and operators (API key)"),
        (name = "drafts", description = "Unsent text and attachments per conversation, for the signed-in principal"),
        (name = "snapshots", description = "A room's latest state blob, for its members"),
        (name = "realtime", description = "The WebSocket and the admin views of rooms and connections"),
        (name = "ops", description = "Liveness, readiness and Prometheus metrics"),
        (name = "demo (dev only)", description = "Mounted only with `dev = true`, for the demo page"),
    )
)]
pub struct ApiDoc;

pub use super::schemas::Binary;

/// Declares the API-key scheme the admin paths name.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub use super::problems::*;

/// The document as JSON, rendered once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|| async {
            ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_the_session_paths() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        for p in [
            "/v1/session",
            "/v1/session/signin",
            "/v1/admin/sessions",
            "/v1/auth/verify",
        ] {
            assert!(doc["paths"].get(p).is_some(), "{p} missing");
        }
    }

    /// Found by schemathesis: events without details are served with `"detail": null`.
    #[test]
    fn audit_detail_may_be_null() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        let detail = &doc["components"]["schemas"]["AuditView"]["properties"]["detail"];
        let types = &detail["type"];
        assert!(
            types == &serde_json::json!(["object", "null"])
                || detail["oneOf"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|s| s["type"] == "null")),
            "{detail}"
        );
    }
}
