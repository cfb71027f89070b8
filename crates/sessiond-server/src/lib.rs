//! sessiond's server: axum HTTP + WebSocket routes over a [`sessiond_core::Store`].
//!
//! [`ServerBuilder`] builds it (configuration, optional store and clock) into a
//! [`Server`]: the router plus a [`ServerGuard`] owning the background tasks. [`run`]
//! takes a configuration, a bound listener and a shutdown future, so tests start it on
//! `127.0.0.1:0` with their own shutdown; the binary only parses arguments.
//!
//! Modules form layers with no import cycle (checked by `cargo test -p sessiond-server
//! module_graph`): leaves (`config`, `bus`, `error`, `demo_messages`, `ws::protocol`,
//! `origin`, `tls`), then `ws::hub`, `sessions`, `tickets`, `cluster`, then `state`, then
//! everything that reads the state (auth, routes, WebSocket tasks), and `builder` on top.

pub mod auth;
pub mod builder;
pub mod bus;
pub mod client;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod demo_messages;
pub mod drafts;
pub mod error;
pub mod idempotency;
pub mod keyed_lock;
pub mod member_info;
#[cfg(test)]
mod module_graph;
pub mod origin;
pub mod quotas;
pub mod ratelimit;
pub mod rooms;
pub mod routes;
pub mod serve;
pub mod sessions;
pub mod state;
pub mod telemetry;
pub mod tickets;
pub mod tls;
pub mod useragent;
pub mod webhooks;
pub mod ws;

pub use builder::{run, Server, ServerBuilder, ServerError, ServerGuard, DEV_API_KEY};
