//! The serving loop: hyper-util's connection builder with a timer, so slow clients are
//! cut off (`http.header_read_timeout` for a request's head and for an idle kept-alive
//! connection, `http.body_idle_timeout` for a stalled request body), and connection caps
//! enforced at accept (`http.max_connections`, `http.max_connections_per_ip`): a socket
//! over a cap is closed at once, before any byte is read, so refusing costs nothing.
//! `axum::serve` has no timer and no caps, which let idle sockets exhaust the process.
//! With a TLS acceptor the handshake comes first, bounded by the same header timeout.

use crate::config::HttpConfig;
use crate::error::Problem;
use crate::routes::listeners::Side;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `app` ([`crate::routes::service`]) on `listener` until `token` is cancelled, then stops accepting, lets
/// every connection finish its request in flight and returns when all are closed.
/// Requests carry `ConnectInfo<SocketAddr>` (the TCP peer) and, on the internal listener,
/// their [`Side`] (set here rather than by a router layer, which would wrap every route
/// in one more boxed service); WebSocket upgrades work.
/// With `tls`, every connection is TLS (its ALPN choice decides HTTP/2 or HTTP/1.1).
pub async fn serve<S>(
    listener: tokio::net::TcpListener,
    app: S,
    side: Side,
    config: &HttpConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    token: CancellationToken,
) where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let limits = Arc::new(ConnLimits::new(
        config.max_connections,
        config.max_connections_per_ip,
    ));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper starts the header timer whenever it waits for a request head, so it also
    // closes a kept-alive connection that sends no next request.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.header_read_timeout)
        .keep_alive_timeout(config.header_read_timeout);
    let builder = Arc::new(builder);
    // Every connection task holds a receiver: when all are gone, every connection closed.
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a reset before accept: wait a moment
                    // rather than spin, and keep serving the connections already open.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = token.cancelled() => break,
        };
        let Some(permit) = limits.admit(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let token = token.clone();
        let closed_rx = closed_rx.clone();
        // Shared with an upgraded WebSocket, which outlives this connection's task.
        let place = ConnPlace {
            _held: Arc::new(permit),
        };
        let tls = tls.clone();
        let handshake_timeout = config.header_read_timeout;
        tokio::spawn(async move {
            let _closed = closed_rx;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    // Only a request that can become a WebSocket (an HTTP/1.1 upgrade, an
                    // HTTP/2 extended CONNECT) needs to keep the connection's place.
                    if req.headers().contains_key(axum::http::header::UPGRADE)
                        || req.method() == axum::http::Method::CONNECT
                    {
                        req.extensions_mut().insert(place.clone());
                    }
                    // Absent means public ([`crate::routes::listeners::side`]).
                    if side == Side::Internal {
                        req.extensions_mut().insert(side);
                    }
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let Some(tls) = tls else {
                return serve_conn(&builder, stream, svc, &token, peer).await;
            };
            // A client that stalls its handshake holds a place like one that stalls its
            // request head: the same timer cuts it off.
            let handshake = tokio::select! {
                r = tokio::time::timeout(handshake_timeout, tls.accept(stream)) => r,
                _ = token.cancelled() => return,
            };
            match handshake {
                Ok(Ok(stream)) => serve_conn(&builder, stream, svc, &token, peer).await,
                Ok(Err(e)) => {
                    metrics::counter!("sessiond_tls_handshake_failures_total").increment(1);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    metrics::counter!("sessiond_tls_handshake_failures_total").increment(1);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
    drop(listener);
    drop(closed_rx);
    closed_tx.closed().await;
}

/// Serves one connection (plain TCP or TLS) until it ends or, on shutdown, until its
/// request in flight is answered.
async fn serve_conn<I, S>(
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    io: I,
    svc: S,
    token: &CancellationToken,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = token.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts and resets of misbehaving clients: expected, not an alarm.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Open connections, in all and per peer IP; admitted connections hold a [`ConnPermit`].
struct ConnLimits {
    max: usize,
    per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl ConnLimits {
    fn new(max: usize, per_ip: usize) -> Self {
        ConnLimits {
            max,
            per_ip,
            open: Mutex::new(Open::default()),
        }
    }

    /// A permit for one more connection from `ip`, or `None` (counted) when a cap is full.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let refused = if open.total >= self.max {
            Some("global")
        } else if open.by_ip.get(&ip).copied().unwrap_or(0) >= self.per_ip {
            Some("per_ip")
        } else {
            None
        };
        if let Some(cap) = refused {
            metrics::counter!("sessiond_http_connections_refused_total", "cap" => cap).increment(1);
            tracing::debug!(%ip, cap, "connection refused: over the cap");
            return None;
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_default() += 1;
        metrics::gauge!("sessiond_http_connections_open").set(open.total as f64);
        Some(ConnPermit {
            limits: self.clone(),
            ip,
        })
    }
}

/// A connection's place under the caps, in each request's extensions: the WebSocket
/// handler keeps it, so an upgraded socket counts until it closes.
#[derive(Clone)]
pub struct ConnPlace {
    /// Held only for its `Drop`.
    _held: Arc<ConnPermit>,
}

/// Gives its connection's place back when the connection and any WebSocket upgraded
/// from it have ended.
struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Removed at zero so the map holds only IPs with open connections.
                open.by_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("sessiond_http_connections_open").set(open.total as f64);
    }
}

/// A request body that yields nothing for `idle` fails, and the request is answered 408
/// `request_timeout` (hyper then closes the connection, the body unread).
pub struct BodyIdleTimer {
    idle: Duration,
    /// `None` for a request without a body (nothing to time).
    fired: Option<Arc<AtomicBool>>,
}

impl BodyIdleTimer {
    /// Puts the idle timer on `req`'s body.
    pub fn wrap(idle: Duration, req: Request) -> (Request, BodyIdleTimer) {
        // Most requests (every GET, the forward-auth path's) have no body: nothing to wrap.
        if http_body::Body::is_end_stream(req.body()) {
            return (req, BodyIdleTimer { idle, fired: None });
        }
        let fired = Arc::new(AtomicBool::new(false));
        let req = req.map(|inner| {
            Body::new(IdleBody {
                inner,
                idle,
                sleep: None,
                fired: fired.clone(),
            })
        });
        (
            req,
            BodyIdleTimer {
                idle,
                fired: Some(fired),
            },
        )
    }

    /// The answer: `response`, or the 408 if the body timed out while it was read.
    pub fn finish(self, response: Response) -> Response {
        if !self.fired.is_some_and(|f| f.load(Ordering::Relaxed)) {
            return response;
        }
        metrics::counter!("sessiond_http_body_timeouts_total").increment(1);
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "Request Timeout",
            format!(
                "the request body sent nothing for {}",
                humantime_serde::re::humantime::format_duration(self.idle)
            ),
        )
        .into_response()
    }
}

/// A request body whose every frame must come within `idle` of the last one (the timer
/// starts when the handler first waits for the body, not when the head arrived).
struct IdleBody {
    inner: Body,
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    fired: Arc<AtomicBool>,
}

/// The error a stalled body yields to the handler reading it.
#[derive(Debug, thiserror::Error)]
#[error("request body idle timeout")]
struct BodyIdle;

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.fired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(axum::Error::new(BodyIdle))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this.sleep.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + idle))
                });
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.fired.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(axum::Error::new(BodyIdle))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_ip_and_in_all_and_give_places_back() {
        let limits = Arc::new(ConnLimits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(
            limits.admit(a).is_none(),
            "third from one IP is over the per-IP cap"
        );
        let _b1 = limits.admit(b).unwrap();
        assert!(
            limits.admit(b).is_none(),
            "fourth in all is over the global cap"
        );
        drop(a1);
        assert!(
            limits.admit(a).is_some(),
            "a closed connection gives its place back"
        );
        assert!(limits.open.lock().unwrap().by_ip.len() <= 2);
    }
}
