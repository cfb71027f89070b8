//! Test support for sessiond backends.
pub mod conformance;
pub mod server;
pub mod redis_guard;
