//! Test support for sessiond: the backend conformance suite for `sessiond_core::Store`,
//! Redis and `sessiond` processes for tests, bounded waits, and (feature `server`) the
//! one integration harness every server test binary uses: in-process servers and cluster
//! nodes, an HTTP client with a cookie jar, and a WebSocket client reading typed frames.
pub mod conformance;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod inproc;
#[cfg(feature = "server")]
pub mod logs;
pub mod redis_guard;
pub mod server;
pub mod wait;
#[cfg(feature = "server")]
pub mod webhook_receiver;
#[cfg(feature = "server")]
pub mod ws;
