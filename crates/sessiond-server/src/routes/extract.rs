//! The request extractors every handler uses, so that a malformed body, query or path is
//! answered with problem+json and a stable code like every other error (axum's own
//! rejections are plain text).
//!
//! Body size is not checked here: each router sets its limit with `DefaultBodyLimit`
//! (see [`super::edge`]), and an overflow surfaces as a buffering rejection mapped to 413.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// A JSON request body. Unlike axum's `Json` it does not insist on a `Content-Type`
/// (clients have always been able to omit it); a body that is not the expected JSON is
/// 400 `invalid_request` with the parser's reason, one over the router's limit is 413
/// `payload_too_large`.
///
/// `Option<ApiJson<T>>` accepts an empty (or all-whitespace) body as `None`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiBytes(body) = ApiBytes::from_request(req, state).await?;
        parse(&body).map(ApiJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let ApiBytes(body) = ApiBytes::from_request(req, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        parse(&body).map(|t| Some(ApiJson(t)))
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// The whole request body, within the router's `DefaultBodyLimit`.
#[derive(Debug)]
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(body_rejection)
    }
}

fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge {
            code: "payload_too_large",
            detail: "request body too large".into(),
        }
    } else {
        ApiError::invalid(format!("cannot read the request body: {}", r.body_text()))
    }
}

/// Query parameters; a malformed query is 400 `invalid_request`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::from_request_parts(parts, state)
            .await
            .map(|Query(t)| ApiQuery(t))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}

/// Path parameters; one that cannot be decoded (e.g. not UTF-8) is 400 `invalid_request`.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::from_request_parts(parts, state)
            .await
            .map(|Path(t)| ApiPath(t))
            .map_err(|e: PathRejection| match e {
                // Only reachable when a handler is mounted on a route without its parameters.
                PathRejection::MissingPathParams(m) => ApiError::Internal(m.body_text()),
                e => ApiError::invalid(e.body_text()),
            })
    }
}
