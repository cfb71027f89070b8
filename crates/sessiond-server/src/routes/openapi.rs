//! `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! Every documented handler is listed in [`ApiDoc`]'s `paths(...)` below: add new ones
//! there (the one place), next to their module's group. Error answers are described once
//! each ([`ProblemKind`]) and named by operations through the sets below
//! ([`ReadErrors`], [`WriteErrors`], ...), never row by row.

use crate::error::Problem;
use crate::routes::{admin, demo, drafts, ops, session, snapshots, verify};
use crate::state::AppState;
use crate::ws;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use utoipa::openapi::response::{Response as ResponseDoc, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

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
        // forward-auth
        verify::verify,
        // admin
        admin::list_sessions,
        admin::get_session,
        admin::revoke_session,
        admin::end_principal,
        admin::audit,
        admin::mint_ticket,
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

/// Raw bytes (`format: binary`): the body of attachments and snapshots in the document.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

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

/// One kind of problem+json answer, described once and inlined wherever a set names it
/// (so each operation's document is self-contained).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyMismatch,
    StoreUnavailable,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 9] = [
        ProblemKind::BadRequest,
        ProblemKind::Unauthorized,
        ProblemKind::Forbidden,
        ProblemKind::NotFound,
        ProblemKind::Conflict,
        ProblemKind::PayloadTooLarge,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::IdempotencyMismatch,
        ProblemKind::StoreUnavailable,
    ];

    pub fn status(self) -> u16 {
        match self {
            ProblemKind::BadRequest => 400,
            ProblemKind::Unauthorized => 401,
            ProblemKind::Forbidden => 403,
            ProblemKind::NotFound => 404,
            ProblemKind::Conflict => 409,
            ProblemKind::PayloadTooLarge => 413,
            ProblemKind::UnsupportedMediaType => 415,
            ProblemKind::IdempotencyMismatch => 422,
            ProblemKind::StoreUnavailable => 503,
        }
    }

    /// The codes it carries and when (docs/protocol.md has the full list).
    fn description(self) -> &'static str {
        match self {
            ProblemKind::BadRequest => "invalid_request: a malformed body, query, path parameter or header (the `detail` says which); \
                invalid_conversation for a bad conversation id",
            ProblemKind::Unauthorized => "unauthenticated (no valid session), session_expired (the session ended; `reason` says why), \
                or invalid_ticket on sign-in",
            ProblemKind::Forbidden => "forbidden (admin: missing or invalid API key; snapshots: not a member of the room), \
                or forbidden_origin (a cookie-authenticated write from a disallowed origin)",
            ProblemKind::NotFound => "not_found (for a deleted draft, `seq` is its tombstone's, which the next write names)",
            ProblemKind::Conflict => "conflict: a stale seq or version, or a concurrent change; `current` holds what is stored now",
            ProblemKind::PayloadTooLarge => "payload_too_large (over the endpoint's limit), or quota_exceeded for attachments",
            ProblemKind::UnsupportedMediaType => "unsupported_media_type: a Content-Type that is not allowed here",
            ProblemKind::IdempotencyMismatch => "idempotency_mismatch: the Idempotency-Key was used with a different request",
            ProblemKind::StoreUnavailable => "store_unavailable: the store failed or did not answer; retry after `Retry-After` seconds",
        }
    }

    fn component(self) -> ResponseDoc {
        ResponseBuilder::new()
            .description(self.description())
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    }

    fn entry(self) -> (String, RefOr<ResponseDoc>) {
        (self.status().to_string(), RefOr::T(self.component()))
    }
}

/// Declares error sets: each a [`utoipa::IntoResponses`] of some [`ProblemKind`]s.
macro_rules! problem_sets {
    ($($(#[$doc:meta])* $name:ident = [$($kind:ident),+];)+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
                [$(ProblemKind::$kind),+].into_iter().map(ProblemKind::entry).collect()
            }
        }
    )+};
}

problem_sets! {
    /// Any operation that authenticates a session: no or an ended session; the store.
    ReadErrors = [Unauthorized, StoreUnavailable];
    /// A session-authenticated write: also the origin check and bad input.
    WriteErrors = [BadRequest, Unauthorized, Forbidden, StoreUnavailable];
    /// An operation taking a body (JSON or bytes): malformed or over the limit.
    BodyErrors = [BadRequest, PayloadTooLarge];
    /// Admin operations: the API key; the store.
    AdminErrors = [Forbidden, StoreUnavailable];
    /// Operations taking a query, path or header that is validated.
    InputErrors = [BadRequest];
    /// Operations limited to some sessions (a snapshot's room members).
    ForbiddenErrors = [Forbidden];
    /// Operations on something that may not exist.
    NotFoundErrors = [NotFound];
    /// Conditional writes (seq, version).
    ConflictErrors = [Conflict];
    /// Uploads with an allow-listed Content-Type.
    MediaTypeErrors = [UnsupportedMediaType];
    /// `POST /v1/session` with an Idempotency-Key.
    IdempotencyErrors = [IdempotencyMismatch];
    /// Operations that read the store without a session.
    StoreErrors = [StoreUnavailable];
}

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
}
