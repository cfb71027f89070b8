//! The tower layer: gives each request a context the extractors find (which sessiond to
//! ask) and a slot where an action leaves the `Set-Cookie` it needs (sign-in, sign-out),
//! which the layer adds to the response on its way out.

use crate::Sessiond;
use axum::http::{header, HeaderValue, Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Installs sessiond on a router: `Router::new().route(..).layer(sessiond.layer())`.
///
/// Every route under it can use the [`Session`](crate::Session) and
/// [`MaybeSession`](crate::MaybeSession) extractors; a sign-in or sign-out there sets or
/// clears the session cookie on the response.
#[derive(Clone)]
pub struct SessiondLayer {
    pub(crate) sessiond: Sessiond,
}

impl<S> tower::Layer<S> for SessiondLayer {
    type Service = SessiondService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessiondService {
            inner,
            sessiond: self.sessiond.clone(),
        }
    }
}

/// The service [`SessiondLayer`] wraps around the app's routes.
#[derive(Clone)]
pub struct SessiondService<S> {
    inner: S,
    sessiond: Sessiond,
}

/// What the layer shares with the extractors of one request.
#[derive(Clone)]
pub(crate) struct RequestContext(pub(crate) Arc<ContextInner>);

pub(crate) struct ContextInner {
    pub(crate) sessiond: Sessiond,
    /// The cookie an action wants on the response; the last action wins (a sign-out
    /// after a sign-in in the same handler clears the cookie).
    set_cookie: Mutex<Option<HeaderValue>>,
}

impl RequestContext {
    pub(crate) fn set_cookie(&self, cookie: HeaderValue) {
        *self.0.set_cookie.lock().unwrap_or_else(|e| e.into_inner()) = Some(cookie);
    }

    fn take_cookie(&self) -> Option<HeaderValue> {
        self.0
            .set_cookie
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for SessiondService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let ctx = RequestContext(Arc::new(ContextInner {
            sessiond: self.sessiond.clone(),
            set_cookie: Mutex::new(None),
        }));
        req.extensions_mut().insert(ctx.clone());
        // The clone that was made ready is the one called (tower's readiness contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut res = inner.call(req).await?;
            if let Some(cookie) = ctx.take_cookie() {
                res.headers_mut().append(header::SET_COOKIE, cookie);
            }
            Ok(res)
        })
    }
}
