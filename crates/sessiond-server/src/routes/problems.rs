//! The problem+json error-response sets that operations name in their OpenAPI
//! annotations, each kind described once. A leaf module (like [`super::schemas`]): the
//! document ([`super::openapi`]) lists every handler, so handlers must not import it.

use std::collections::BTreeMap;
use utoipa::openapi::response::{Response as ResponseDoc, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::IntoResponses;

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
    RateLimited,
    BadGateway,
    StoreUnavailable,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 11] = [
        ProblemKind::BadRequest,
        ProblemKind::Unauthorized,
        ProblemKind::Forbidden,
        ProblemKind::NotFound,
        ProblemKind::Conflict,
        ProblemKind::PayloadTooLarge,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::IdempotencyMismatch,
        ProblemKind::RateLimited,
        ProblemKind::BadGateway,
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
            ProblemKind::RateLimited => 429,
            ProblemKind::BadGateway => 502,
            ProblemKind::StoreUnavailable => 503,
        }
    }

    /// The codes it carries and when (docs/protocol.md has the full list).
    fn description(self) -> &'static str {
        match self {
            ProblemKind::BadRequest => "invalid_request: a malformed body, query, path parameter or header (the `detail` says which); \
                invalid_conversation for a bad conversation id; duplicate_cookie when the session cookie is sent twice; \
                empty_attachment for an attachment of no bytes",
            ProblemKind::Unauthorized => "unauthenticated (no valid session), session_expired (the session ended; `reason` says why), \
                or invalid_ticket on sign-in (a replayed ticket included)",
            ProblemKind::Forbidden => "forbidden (admin: missing or invalid API key), room_not_allowed (snapshots: no grant admits \
                the session to the room, or its room token was refused), \
                not_signed_in (my devices: an anonymous session), \
                or forbidden_origin (a cookie-authenticated write from a disallowed origin)",
            ProblemKind::NotFound => "not_found (for a deleted draft, `seq` is its tombstone's, which the next write names)",
            ProblemKind::Conflict => "conflict: a stale seq or version, or a concurrent change; `current` holds what is stored now; \
                idempotency_expired: an Idempotency-Key repeated after its replay window (no token; send a new key)",
            ProblemKind::PayloadTooLarge => "payload_too_large (over the endpoint's limit), or quota_exceeded: the write would take \
                the session or principal over a storage quota (`[quotas]`, smaller while anonymous); `limit` names it, `max` is its \
                value; nothing was written",
            ProblemKind::UnsupportedMediaType => "unsupported_media_type: a Content-Type that is not allowed here",
            ProblemKind::IdempotencyMismatch => "idempotency_mismatch: the Idempotency-Key was used with a different request",
            ProblemKind::RateLimited => "rate_limited: over a per-IP or per-session rate limit (`[rate_limits]`); \
                nothing was done; retry after `Retry-After` seconds",
            ProblemKind::BadGateway => "webhook_delivery_failed: the endpoint refused the event again or did not answer; \
                the dead letter stays, its attempts, status and error updated (`detail` has the status or error)",
            ProblemKind::StoreUnavailable => "store_unavailable: the store failed or did not answer; \
                overloaded: more requests in flight than `http.max_in_flight`, refused before any work; \
                retry after `Retry-After` seconds",
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
    IdempotencyErrors = [Conflict, IdempotencyMismatch];
    /// Rate-limited operations (creation, sign-in, renew, writes, the WebSocket upgrade).
    RateLimitErrors = [RateLimited];
    /// A manual webhook retry: the endpoint failed again.
    WebhookErrors = [BadGateway];
    /// Operations that read the store without a session.
    StoreErrors = [StoreUnavailable];
}
