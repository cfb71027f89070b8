//! Integration tests of the HTTP API: the real server started in-process with `run()` on
//! `127.0.0.1:0`, on SQLite in a temp directory (and the memory store where cheap),
//! driven by a real HTTP client.

mod admin;
mod common;
mod cookies;
mod cors;
mod devices;
mod edges;
mod expiry;
mod forward_auth;
mod http_bounds;
mod idempotency;
mod keys;
mod listeners;
mod live;
mod member_info;
mod openapi;
mod origin;
mod ratelimit;
mod secrets;
mod session;
mod signin;
mod tls;
mod unavailable;
mod web;
