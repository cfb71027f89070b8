//! Test support for sessiond backends.
pub mod conformance;
pub mod redis_guard;
pub mod server;
